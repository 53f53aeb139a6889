import Foundation
import Hummingbird

/// An RFC 9457 problem: every error the API answers is one of these, as `application/problem+json`.
public struct Problem: Error, HTTPResponseError, Sendable {
    /// One invalid input, located by a JSON pointer into the body (or `path`/`header`).
    public struct FieldError: Encodable, Sendable, Equatable {
        public let pointer: String
        public let detail: String
    }

    /// One stock line that could not be held.
    public struct ItemShortage: Encodable, Sendable, Equatable {
        public let skuId: UInt64
        public let requested: Int64
        public let available: Int64
    }

    /// One stock line that would take the user past its per-user limit.
    public struct UserLimitLine: Encodable, Sendable, Equatable {
        public let skuId: UInt64
        public let requested: Int64
        public let limit: Int64
        public let used: Int64
    }

    public let status: HTTPResponse.Status
    public let type: String
    public let title: String
    public let detail: String
    public var errors: [FieldError]?
    public var items: [ItemShortage]?
    public var unknownSkuIds: [UInt64]?
    public var userLimits: [UserLimitLine]?
    public var userRequiredSkuIds: [UInt64]?
    public var headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status, type: String, title: String, detail: String,
        errors: [FieldError]? = nil, items: [ItemShortage]? = nil, unknownSkuIds: [UInt64]? = nil,
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.errors = errors
        self.items = items
        self.unknownSkuIds = unknownSkuIds
        self.headers = headers
    }

    /// Problem types are URIs relative to this base, documented in the README and the OpenAPI document.
    static let typeBase = "https://inventory.example/problems/"

    private struct Body: Encodable {
        let type: String
        let title: String
        let status: Int
        let detail: String
        let errors: [FieldError]?
        let items: [ItemShortage]?
        let unknownSkuIds: [UInt64]?
        let userLimits: [UserLimitLine]?
        let userRequiredSkuIds: [UInt64]?
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        makeResponse()
    }

    func makeResponse() -> Response {
        let body = Body(
            type: Self.typeBase + type, title: title, status: status.code, detail: detail, errors: errors,
            items: items, unknownSkuIds: unknownSkuIds, userLimits: userLimits,
            userRequiredSkuIds: userRequiredSkuIds
        )
        let data = (try? JSONEncoder().encode(body)) ?? Data("{}".utf8)
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension Problem {
    static func badRequest(_ detail: String, errors: [FieldError]? = nil) -> Problem {
        Problem(.badRequest, type: "malformed-request", title: "Malformed request", detail: detail, errors: errors)
    }

    static func invalid(_ errors: [FieldError]) -> Problem {
        Problem(
            .unprocessableContent, type: "validation-failed", title: "Invalid fields",
            detail: errors.map { "\($0.pointer): \($0.detail)" }.joined(separator: "; "), errors: errors
        )
    }

    static func notFound(_ detail: String) -> Problem {
        Problem(.notFound, type: "not-found", title: "Not found", detail: detail)
    }

    /// A 429: this instance will not take the request now; `Retry-After` says when to ask again.
    static func tooMany(type: String, title: String, detail: String, retryAfterSeconds: Int = 1) -> Problem {
        var headers = HTTPFields()
        headers[.retryAfter] = String(retryAfterSeconds)
        return Problem(.tooManyRequests, type: type, title: title, detail: detail, headers: headers)
    }

    static func unavailable(_ detail: String) -> Problem {
        var headers = HTTPFields()
        headers[.retryAfter] = "1"
        return Problem(
            .serviceUnavailable, type: "store-unavailable", title: "A store is unavailable", detail: detail,
            headers: headers
        )
    }
}
