import Hummingbird
import Logging

/// Wraps the router so that every answer that is not a success is problem+json: the router's own "no route"
/// becomes 404 or, when the path exists with other methods, 405 with `Allow`; anything thrown that is not a
/// `Problem` becomes a 500 problem and is logged, instead of the server's plain-text default. Every answer leaves
/// with an `X-Request-Id`: the one `RequestIdMiddleware` gave it, or a fresh one for an answer made out here.
struct ProblemResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context == BasicRequestContext {
    typealias Context = BasicRequestContext

    let inner: Inner
    let routes: [(method: HTTPRequest.Method, path: [Substring])]
    let logger: Logger

    func respond(to request: Request, context: Context) async throws -> Response {
        var response = await answer(request, context: context)
        if response.headers[.requestId] == nil {
            response.headers[.requestId] = RequestIdMiddleware<Context>.newId()
        }
        return response
    }

    private func answer(_ request: Request, context: Context) async -> Response {
        // The router reads "/v1/stock//1/codes" as "/v1/stock/1/codes", which another route's template matches
        // ("/v1/stock/:bizId/:skuId" with skuId "codes"): a path with an empty segment is no route's, before routing.
        if Self.hasEmptySegment(request.uri.path) {
            return Problem.notFound("no resource at \(request.uri.path)").makeResponse()
        }
        do {
            let response = try await inner.respond(to: request, context: context)
            // Only answers without a body of ours are re-said: problems pass, and so do JSON answers such as
            // /readyz's 503 with its per-check results.
            let contentType = response.headers[.contentType]
            guard response.status.code >= 400, contentType != "application/problem+json", contentType != "application/json"
            else {
                return response
            }
            // The router answers a path it does not know, and errors thrown by Hummingbird itself (a body over
            // the limit), in its own format; they are re-said as problems here, once for every route.
            var problem = response.status == .notFound ? routeMiss(request) : genericProblem(response)
            problem.headers[.requestId] = response.headers[.requestId]
            return problem
        } catch let problem as Problem {
            return problem.makeResponse()
        } catch let error as HTTPError {
            return Problem(error.status, type: "http-\(error.status.code)", title: error.status.reasonPhrase, detail: error.body ?? error.status.reasonPhrase).makeResponse()
        } catch {
            return Problem.unexpected(error, request: request, logger: logger)
        }
    }

    private func genericProblem(_ response: Response) -> Response {
        Problem(
                response.status, type: "http-\(response.status.code)", title: response.status.reasonPhrase,
                detail: response.status == .contentTooLarge ? "the body is larger than the service accepts" : response.status.reasonPhrase
        ).makeResponse()
    }

    static func hasEmptySegment(_ path: String) -> Bool { ProblemResponderRoutes.hasEmptySegment(path) }

    private func routeMiss(_ request: Request) -> Response {
        let segments = request.uri.path.split(separator: "/")
        let allowed = Self.hasEmptySegment(request.uri.path) ? [] : routes.filter { route in
            ProblemResponderRoutes.matches(route.path, segments)
        }.map(\.method.rawValue)
        if allowed.isEmpty {
            return Problem.notFound("no resource at \(request.uri.path)").makeResponse()
        }
        var headers = HTTPFields()
        headers[.allow] = Set(allowed).sorted().joined(separator: ", ")
        return Problem(
            .methodNotAllowed, type: "method-not-allowed", title: "Method not allowed",
            detail: "\(request.method.rawValue) is not allowed on \(request.uri.path); use \(headers[.allow] ?? "")",
            headers: headers
        ).makeResponse()
    }
}
