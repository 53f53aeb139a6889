import HTTPTypes
import Hummingbird
import InventorySettings

/// Lets a request through only with a bearer token whose role may call its route (see `AccessTokens`); 401 without
/// a valid token, 403 with a token of the wrong role, both problem+json. With no tokens configured everything
/// passes (the service then listens on loopback only: `ServiceConfiguration.checkExposure`). The token is never
/// logged: only the role it maps to is used.
/// A token limited to some businesses (`ROLE@BIZ`) may call only routes that name a business; the route checks it is
/// one of them (`AccessScope`), since a reserve names its business in the body. Other routes (status, metrics):
/// 403.
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
        guard let token = Self.bearer(request.headers[.authorization]), let grant = tokens.grant(of: token) else {
            throw Problem.unauthorized()
        }
        if needed == .admin && grant.role != .admin { throw Problem.forbidden() }
        guard let businesses = grant.businesses else { return try await next(request, context) }
        guard Self.namesBusiness(request.uri.path) else {
            throw Problem(
                .forbidden, type: "forbidden", title: "Forbidden",
                detail: "this token is limited to some businesses; this route is not about one business"
            )
        }
        return try await AccessScope.$businesses.withValue(businesses) { try await next(request, context) }
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
        case (.post, 3, "businesses") where rest[2] == "reservations": return .checkout
        case (.get, 4, "businesses") where rest[2] == "reservations": return .checkout
        case (.post, 5, "businesses") where rest[2] == "reservations" && ["confirm", "cancel", "refund"].contains(rest[4]):
            return .checkout
        case (.get, 3, "stock"): return .checkout
        default: return .admin
        }
    }

    /// Whether a route is about one business, which the route itself checks against the token's (`AccessScope`):
    /// reservations (the old paths are business `default`'s, a reserve names its business in the body), a business's
    /// orders, an item's stock, pool and codes.
    static func namesBusiness(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard parts.first == "v1", parts.count >= 2 else { return false }
        return ["reservations", "businesses", "stock"].contains(parts.dropFirst().first ?? "")
    }
}

/// The businesses the request's bearer token may touch (`AccessTokens` `ROLE@BIZ`), set by `AccessMiddleware` for
/// the routes that name a business; nil when the token may touch every business, or no tokens are configured.
enum AccessScope {
    @TaskLocal static var businesses: Set<String>?

    /// Refuses (403) a business the token may not touch.
    static func check(_ bizId: String) throws {
        guard let businesses, !businesses.contains(bizId) else { return }
        throw Problem(
            .forbidden, type: "forbidden", title: "Forbidden", detail: "this token may not touch business \(bizId)"
        )
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
