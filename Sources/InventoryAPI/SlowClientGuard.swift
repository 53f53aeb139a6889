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

/// Answers `Expect: 100-continue` with the interim `100 Continue` (issue 22 item 11): a client that waits for it
/// before sending its body (curl does for large bodies) otherwise waited out its own timeout. The interim answer
/// goes out only when no earlier response on the connection is still being written (a request read while another
/// is answered gets its 100 once that answer has ended, never inside it), and only for a request with a body.
final class ExpectContinueHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The requests whose response has not ended, oldest first: whether each still waits for its 100.
    private var waiting: [Bool] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let fields = head.headerFields
            let hasBody = fields[.transferEncoding] != nil || (fields[.contentLength].flatMap { Int($0) } ?? 0) > 0
            waiting.append(hasBody && fields[.expect]?.lowercased() == "100-continue")
            if waiting.count == 1 { sendContinueIfWaiting(context: context) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let part = unwrapOutboundIn(data)
        context.write(data, promise: promise)
        if case .head(let head) = part, head.status.kind != .informational, !waiting.isEmpty {
            // The final answer came first (a refusal before the body): no 100 for this request any more.
            waiting[0] = false
        }
        if case .end = part, !waiting.isEmpty {
            waiting.removeFirst()
            sendContinueIfWaiting(context: context)
        }
    }

    private func sendContinueIfWaiting(context: ChannelHandlerContext) {
        guard waiting.first == true else { return }
        waiting[0] = false
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
    }
}
