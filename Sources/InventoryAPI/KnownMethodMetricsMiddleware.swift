import Hummingbird

/// Hummingbird's request metrics, for the standard methods only.
///
/// `MetricsMiddleware` labels its series with the request's method as sent, and keeps every series it made, so a
/// client inventing a new method per request (`FOO1`, `FOO2`, ...) would grow the service's memory and `/metrics`
/// without bound. Requests with other methods are still answered (404 or 405); they are just not counted.
struct KnownMethodMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    static var knownMethods: Set<HTTPRequest.Method> {
        [.get, .head, .post, .put, .delete, .patch, .options, .trace, .connect]
    }

    private let metrics = MetricsMiddleware<Context>()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.knownMethods.contains(request.method) else { return try await next(request, context) }
        return try await metrics.handle(request, context: context, next: next)
    }
}
