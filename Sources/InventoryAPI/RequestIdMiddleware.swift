import Foundation
import HTTPTypes
import Hummingbird
import Inventory

/// Gives every request an id: the caller's `X-Request-Id` when it is a sane token, else a new one. The id is
/// echoed in the response and carried (task-local) into every log line written while the request is served.
struct RequestIdMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let incoming = request.headers[.requestId]
        let id = incoming.flatMap { Self.isSane($0) ? $0 : nil } ?? Self.newId()
        var response = await RequestMetadata.$requestId.withValue(id) {
            await Self.answer(request, context: context, next: next)
        }
        response.headers[.requestId] = id
        return response
    }

    /// The handler's answer, or its error as an answer: errors become responses here rather than in the router,
    /// so that they carry the id too, and an unexpected one is logged while the request id is still known.
    private static func answer(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            do {
                return try error.response(from: request, context: context)
            } catch {
                return Problem.unexpected(error, request: request, logger: context.logger)
            }
        } catch {
            return Problem.unexpected(error, request: request, logger: context.logger)
        }
    }

    /// 1-128 visible ASCII characters: anything else (control characters, huge values) is not logged as given.
    static func isSane(_ value: String) -> Bool {
        !value.isEmpty && value.utf8.count <= 128 && value.utf8.allSatisfy { (0x21...0x7E).contains($0) }
    }

    static func newId() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt64, radix: 16)
    }
}

extension HTTPField.Name {
    static let requestId = HTTPField.Name("X-Request-Id")!
}
