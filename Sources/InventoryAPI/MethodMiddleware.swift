import Hummingbird

/// Methods on known paths (issue 22 item 11): `HEAD` on a `GET` route answers as the `GET` would, with its length and
/// without its body (and without reading an export's pages); a method a known path does not have is 405 with
/// `Allow`, thrown here, inside the request metrics, so `hb_requests` counts it as 405 and not as the router's 404.
struct MethodMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: [(method: HTTPRequest.Method, path: [Substring])]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if ProblemResponderRoutes.hasEmptySegment(path) { return try await next(request, context) }
        let segments = path.split(separator: "/")
        let methods = Set(routes.filter { ProblemResponderRoutes.matches($0.path, segments) }.map(\.method))
        if request.method == .head && methods.contains(.get) {
            // The router runs the GET route for it (`autoGenerateHeadEndpoints`); its length stays, its body goes (an
            // export's pages are never read).
            var response = try await next(request, context)
            let length = response.headers[.contentLength] ?? response.body.contentLength.map(String.init)
            response.body = .init()  // sets Content-Length: 0, which a HEAD must not claim
            response.headers[.contentLength] = length
            return response
        }
        if methods.isEmpty || methods.contains(request.method) { return try await next(request, context) }
        var allowed = methods.map(\.rawValue)
        if methods.contains(.get) { allowed.append("HEAD") }
        var headers = HTTPFields()
        headers[.allow] = allowed.sorted().joined(separator: ", ")
        throw Problem(
            .methodNotAllowed, type: "method-not-allowed", title: "Method not allowed",
            detail: "\(request.method.rawValue) is not allowed on \(path); use \(headers[.allow] ?? "")", headers: headers
        )
    }
}

/// How a path is matched against the route templates (`InventoryRoutes.templates`), shared with `ProblemResponder`.
enum ProblemResponderRoutes {
    /// An empty segment ("/v1/reservations//confirm", a trailing "/") makes another resource, not a route's.
    static func hasEmptySegment(_ path: String) -> Bool {
        path != "/" && path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().contains("")
    }

    static func matches(_ template: [Substring], _ segments: [Substring]) -> Bool {
        template.count == segments.count
            && zip(template, segments).allSatisfy { template, segment in template.hasPrefix(":") || template == segment }
    }
}
