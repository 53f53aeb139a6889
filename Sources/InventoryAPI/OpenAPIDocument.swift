import Foundation
import Hummingbird
import Inventory

/// The OpenAPI 3.1 document of API v1 (`openapi/openapi.json` in the repository), read once when the routes are
/// built and served byte for byte at `GET /openapi.json`. A missing file does not stop the service: the route then
/// answers a 404 problem.
struct OpenAPIDocument: Sendable {
    /// Where the document was looked for.
    let path: String
    /// The file's bytes; nil when it could not be read.
    let bytes: ByteBuffer?

    /// `$INVENTORY_OPENAPI_DIR/openapi.json`, or the repository's `openapi/openapi.json`.
    static var defaultPath: String {
        ProjectFiles.directory("openapi", environmentVariable: "INVENTORY_OPENAPI_DIR") + "/openapi.json"
    }

    /// Reads the file now.
    static func load(path: String = OpenAPIDocument.defaultPath) -> OpenAPIDocument {
        OpenAPIDocument(path: path, bytes: FileManager.default.contents(atPath: path).map { ByteBuffer(bytes: $0) })
    }

    /// Adds `GET /openapi.json`.
    func register(on router: Router<BasicRequestContext>) {
        router.get("/openapi.json") { _, _ in try self.response() }
    }

    func response() throws -> Response {
        guard let bytes else {
            throw Problem.notFound("the OpenAPI document was not found at \(path) when the service started")
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: bytes))
    }
}
