import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on loopback in front of Redis that can swallow the server's replies, so a test can make a command
/// run in Redis while its answer never reaches the client: the "lost reply" of a real network, deterministically.
public final class ReplyDroppingProxy: Sendable {
    public let port: Int
    private let dropping: NIOLockedValueBox<Bool>
    private let server: any Channel

    /// Whether replies from upstream are currently thrown away.
    public var dropReplies: Bool {
        get { dropping.withLockedValue { $0 } }
        set { dropping.withLockedValue { $0 = newValue } }
    }

    public static func start(upstreamHost: String, upstreamPort: Int) async throws -> ReplyDroppingProxy {
        let dropping = NIOLockedValueBox(false)
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(
                                Forwarder(peer: inbound, dropping: dropping)
                            )
                        }
                    }
                    .connect(host: upstreamHost, port: upstreamPort)
                    .flatMap { outbound in
                        inbound.pipeline.addHandler(Forwarder(peer: outbound, dropping: nil))
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ReplyDroppingProxy(port: server.localAddress?.port ?? 0, dropping: dropping, server: server)
    }

    private init(port: Int, dropping: NIOLockedValueBox<Bool>, server: any Channel) {
        self.port = port
        self.dropping = dropping
        self.server = server
    }

    public func close() async {
        try? await server.close()
    }
}

/// Copies bytes to the peer channel; on the upstream side, drops them while the switch is on.
private final class Forwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let peer: any Channel
    let dropping: NIOLockedValueBox<Bool>?

    init(peer: any Channel, dropping: NIOLockedValueBox<Bool>?) {
        self.peer = peer
        self.dropping = dropping
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if dropping?.withLockedValue({ $0 }) == true { return }
        peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
    }
}
