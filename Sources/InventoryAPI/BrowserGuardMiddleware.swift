import HTTPTypes
import Hummingbird
import InventorySettings

/// Keeps web pages from driving an instance (issue 22 item 10). A page a developer or operator opens can send
/// requests to their loopback, and a DNS-rebinding page can read the answers: a request naming a host this service
/// does not answer to (`Host`) is refused with 421, and one a browser sends for another site (`Origin`) with 403,
/// both problem+json, before any route runs. A browser always sends `Host`, and `Origin` on every cross-site request
/// that changes state; clients that are not browsers send no `Origin`.
struct BrowserGuardMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The host names requests may name, lowercased, without ports.
    let allowedHosts: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Health probes (a load balancer's, an orchestrator's by pod address) tell nothing and change nothing.
        if request.uri.path == "/healthz" || request.uri.path == "/readyz" { return try await next(request, context) }
        switch BrowserGuard.verdict(authority: request.head.authority, origin: request.headers[.origin], allowed: allowedHosts) {
        case .pass: return try await next(request, context)
        case .foreignHost(let host):
            throw Problem(
                .misdirectedRequest, type: "host-not-allowed", title: "Host not allowed",
                detail: "this service does not answer to \(host) (INVENTORY_ALLOWED_HOSTS)"
            )
        case .foreignOrigin(let origin):
            throw Problem(
                .forbidden, type: "cross-origin", title: "Cross-origin request",
                detail: "requests from web pages of \(origin) are refused (INVENTORY_ALLOWED_HOSTS)"
            )
        }
    }
}

/// The guard's decision, apart from HTTP.
enum BrowserGuard {
    enum Verdict: Equatable {
        case pass
        case foreignHost(String)
        case foreignOrigin(String)
    }

    /// What to do with a request naming `authority` (`Host`, possibly with a port) and `origin` (`Origin`).
    static func verdict(authority: String?, origin: String?, allowed: Set<String>) -> Verdict {
        if let authority, !authority.isEmpty, !allowed.contains(Authority.hostName(authority)) { return .foreignHost(authority) }
        if let origin {
            // `scheme://host[:port]`; "null" (a sandboxed or file page) is never allowed. The page must be of an
            // allowed host and, when the request names its host, of the same port: a page another server on the
            // same machine serves (a dev server, a notebook) is another site.
            // (Ports as written: a Host without one, as a proxy on 80 or 443 forwards it, matches an Origin without one.)
            guard let range = origin.range(of: "://") else { return .foreignOrigin(origin) }
            let originAuthority = String(origin[range.upperBound...])
            guard allowed.contains(Authority.hostName(originAuthority)) else { return .foreignOrigin(origin) }
            if let authority, !authority.isEmpty, port(originAuthority) != port(authority) { return .foreignOrigin(origin) }
        }
        return .pass
    }

    /// The port of `host:port` or `[v6]:port`, nil when it names none.
    static func port(_ authority: String) -> Int? {
        if authority.hasPrefix("[") {
            guard let end = authority.firstIndex(of: "]") else { return nil }
            let rest = authority[authority.index(after: end)...]
            return rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil
        }
        if authority.filter({ $0 == ":" }).count != 1 { return nil }
        return authority.split(separator: ":").last.flatMap { Int($0) }
    }
}
