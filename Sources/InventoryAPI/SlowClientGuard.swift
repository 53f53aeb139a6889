import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// Keeps slow and silent clients from holding connections for ever (slowloris).
///
/// Hummingbird's idle timeout closes a connection on which no complete request part arrived for the timeout: an
/// idle keep-alive connection, one that never sends anything, and one that drips the bytes of a request head that
/// never ends. It does not close one that drips a body, because every body byte is a part. The body deadline does:
/// a request whose body has not ended within the timeout after its head is cut off, whatever the handler is doing
/// with it (reading it, or draining it after an early answer such as a 413).
enum SlowClientGuard {
    /// The HTTP/1.1 server with both limits; 0 turns them off.
    static func server(timeoutSeconds: Int, logger: Logger) -> HTTPServerBuilder {
        guard timeoutSeconds > 0 else {
            return .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()]))
        }
        let timeout = TimeAmount.seconds(Int64(timeoutSeconds))
        return .http1(
            configuration: .init(
                additionalChannelHandlers: [ExpectContinueHandler(), RequestBodyDeadlineHandler(timeout: timeout, logger: logger)],
                idleTimeout: timeout
            )
        )
    }
}

/// Closes the connection when a request's body has not fully arrived `timeout` after its head.
final class RequestBodyDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    private let logger: Logger
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            deadline?.cancel()
            let logger = logger
            let timeout = timeout
            deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                logger.notice(
                    "closing a connection whose request body did not arrive in time",
                    metadata: ["timeoutSeconds": "\(timeout.nanoseconds / 1_000_000_000)"]
                )
                context.close(promise: nil)
            }
        case .body:
            break
        case .end:
            deadline?.cancel()
            deadline = nil
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }
}

/// Answers `Expect: 100-continue` with the interim `100 Continue` as the head arrives (issue 22 item 11): a client
/// that waits for it before sending its body (curl does for large bodies) otherwise waited out its own timeout. The
/// final answer follows as always; one that refuses the request early (a 413, a 401) is allowed by RFC 9110 too.
final class ExpectContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data),
            head.headerFields[.expect]?.lowercased() == "100-continue"
        {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}
