import HTTPTypes
import Hummingbird

/// Lets a request through only with a bearer token whose role may call its route (see `AccessTokens`); 401 without
/// a valid token, 403 with a token of the wrong role, both problem+json. With no tokens configured everything
/// passes (the service then listens on loopback only: `ServiceConfiguration.checkExposure`). The token is never
/// logged: only the role it maps to is used.
struct AccessMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: AccessTokens
    /// Whether `/metrics` and the status page `/` need no token (`INVENTORY_OPEN_METRICS`).
    let openMetrics: Bool

    /// Who may call a route.
    enum Access: Equatable {
        case open
        case checkout
        case admin
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !tokens.isEmpty else { return try await next(request, context) }
        // HEAD is the GET without its body: the same role.
        let needed = Self.access(request.method == .head ? .get : request.method, request.uri.path, openMetrics: openMetrics)
        if needed == .open { return try await next(request, context) }
        guard let token = Self.bearer(request.headers[.authorization]), let role = tokens.role(of: token) else {
            throw Problem.unauthorized()
        }
        if needed == .admin && role != .admin { throw Problem.forbidden() }
        return try await next(request, context)
    }

    /// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive), nil otherwise.
    static func bearer(_ header: String?) -> Substring? {
        guard let header, header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        let token = header.dropFirst(7).drop { $0 == " " }
        return token.isEmpty ? nil : token
    }

    /// Which role a route needs. Reservations and stock reads are the checkout's; health, readiness and the API
    /// document are open; `/metrics` and `/` follow `openMetrics`; everything else, known path or not, is admin's
    /// (an unknown path under /v1 tells nothing to a caller without a token).
    static func access(_ method: HTTPRequest.Method, _ path: String, openMetrics: Bool) -> Access {
        switch path {
        case "/healthz", "/readyz", "/openapi.json": return .open
        case "/metrics", "/": return openMetrics ? .open : .admin
        default: break
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard parts.first == "v1" else { return .admin }
        let rest = Array(parts.dropFirst())
        switch (method, rest.count, rest.first) {
        case (.post, 1, "reservations"): return .checkout
        case (.get, 2, "reservations"): return .checkout
        case (.post, 3, "reservations") where ["confirm", "cancel", "refund"].contains(rest[2]): return .checkout
        case (.get, 3, "stock"): return .checkout
        default: return .admin
        }
    }
}

extension Problem {
    static func unauthorized() -> Problem {
        var headers = HTTPFields()
        headers[.wwwAuthenticate] = #"Bearer realm="inventory""#
        return Problem(
            .unauthorized, type: "unauthorized", title: "Unauthorized",
            detail: "this route needs a valid bearer token (Authorization: Bearer TOKEN)", headers: headers
        )
    }

    static func forbidden() -> Problem {
        Problem(.forbidden, type: "forbidden", title: "Forbidden", detail: "this route needs an admin token")
    }
}
