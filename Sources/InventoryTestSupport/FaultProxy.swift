import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on loopback in front of a real server (Redis or MariaDB) that can inject network faults, so tests
/// see a store fail exactly when they choose, without stopping the server other tests share:
/// - `dropReplies`: requests reach the server, its answers are thrown away (a reply lost on the way back);
/// - `down`: open connections are cut and new ones closed at once (the server is unreachable).
public final class FaultProxy: Sendable {
    public let port: Int
    private let state: NIOLockedValueBox<State>
    private let server: any Channel

    struct State {
        var dropReplies = false
        var down = false
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    /// Whether replies from upstream are currently thrown away.
    public var dropReplies: Bool {
        get { state.withLockedValue { $0.dropReplies } }
        set { state.withLockedValue { $0.dropReplies = newValue } }
    }

    /// Whether the server is unreachable through the proxy. Setting it cuts every open connection.
    public var down: Bool {
        get { state.withLockedValue { $0.down } }
        set {
            let open = state.withLockedValue { state -> [any Channel] in
                state.down = newValue
                return newValue ? Array(state.connections.values) : []
            }
            for channel in open { channel.close(promise: nil) }
        }
    }

    public static func start(upstreamHost: String, upstreamPort: Int) async throws -> FaultProxy {
        let state = NIOLockedValueBox(State())
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { inbound in
                if state.withLockedValue({ $0.down }) {
                    return inbound.close()
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(Forwarder(peer: inbound, state: state, upstream: true))
                        }
                    }
                    .connect(host: upstreamHost, port: upstreamPort)
                    .flatMap { outbound in
                        state.withLockedValue { state in
                            state.connections[ObjectIdentifier(inbound)] = inbound
                            state.connections[ObjectIdentifier(outbound)] = outbound
                        }
                        return inbound.pipeline.addHandler(Forwarder(peer: outbound, state: state, upstream: false))
                    }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return FaultProxy(port: server.localAddress?.port ?? 0, state: state, server: server)
    }

    private init(port: Int, state: NIOLockedValueBox<State>, server: any Channel) {
        self.port = port
        self.state = state
        self.server = server
    }

    public func close() async {
        down = true
        try? await server.close()
    }
}

/// Copies bytes to the peer channel; on the upstream side, drops them while replies are being dropped.
private final class Forwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let peer: any Channel
    let state: NIOLockedValueBox<FaultProxy.State>
    let upstream: Bool

    init(peer: any Channel, state: NIOLockedValueBox<FaultProxy.State>, upstream: Bool) {
        self.peer = peer
        self.state = state
        self.upstream = upstream
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // While down nothing passes either way, even on a connection whose close is still on its way.
        let (down, dropReplies) = state.withLockedValue { ($0.down, $0.dropReplies) }
        if down || (upstream && dropReplies) { return }
        peer.writeAndFlush(unwrapInboundIn(data), promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let channel = context.channel
        state.withLockedValue { _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
        peer.close(promise: nil)
    }
}
