import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on loopback in front of a real server (Redis or MariaDB) that can inject network faults, so tests
/// see a store fail exactly when they choose, without stopping the server other tests share:
/// - `dropReplies`: requests reach the server, its answers are thrown away (a reply lost on the way back);
/// - `down`: open connections are cut and new ones closed at once (the server is unreachable);
/// - `cutAfterRequest(containing:)`: the next request holding those bytes reaches the server, then its connection
///   is cut before the answer comes back (the request took effect, the client cannot know);
/// - `holdRequest(containing:)`: the next request holding those bytes waits in the proxy, with what follows it on its
///   connection, until `release()` (a client stalled just before that request, for as long as the test wants).
public final class FaultProxy: Sendable {
    public let port: Int
    private let state: NIOLockedValueBox<State>
    private let server: any Channel

    struct State {
        var dropReplies = false
        var down = false
        /// Bytes whose next appearance in a request cuts its connection after forwarding it (one-shot).
        var cutPattern: [UInt8]?
        /// Upstream channels of cut connections: their replies are thrown away.
        var cut: Set<ObjectIdentifier> = []
        /// Whether the cut also takes the proxy down.
        var downAfterCut = false
        /// Whether the request that triggers the cut is forwarded first.
        var forwardCut = true
        var connections: [ObjectIdentifier: any Channel] = [:]
        /// Bytes whose next appearance in a request holds its connection's requests (one-shot).
        var holdPattern: [UInt8]?
        /// The client channel whose requests are held, and what it sent since (in order).
        var holding: ObjectIdentifier?
        var held: [ByteBuffer] = []
        var heldPeer: (any Channel)?
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

    /// The bytes of a MySQL COMMIT as a pattern: the query command's byte, then the statement (a bare "COMMIT" would
    /// also match a `SET TRANSACTION ISOLATION LEVEL READ COMMITTED` before the transaction).
    public static let commit = "\u{03}COMMIT"

    /// The bytes of a transaction's start (`MySQLClient.withTransaction`) as a pattern: nothing of the transaction has
    /// reached the server before it (one that names an isolation sends a `SET TRANSACTION` first, which changes
    /// nothing by itself). Also matches `START TRANSACTION WITH CONSISTENT SNAPSHOT`.
    public static let begin = "\u{03}START TRANSACTION"

    /// The next request (client to server bytes, as one read delivers them) that contains `pattern` is forwarded
    /// to the server, and then that client's connection is cut and the server's reply thrown away; with
    /// `thenDown` the proxy goes `down` at that moment too (the server became unreachable right after).
    public func cutAfterRequest(containing pattern: String, thenDown: Bool = false) {
        state.withLockedValue {
            $0.cutPattern = Array(pattern.utf8)
            $0.downAfterCut = thenDown
            $0.forwardCut = true
        }
    }

    /// Like `cutAfterRequest`, but the request never reaches the server: the connection is cut with it unsent
    /// (the client cannot tell this from a request that took effect and lost its answer).
    public func cutBeforeRequest(containing pattern: String, thenDown: Bool = false) {
        state.withLockedValue {
            $0.cutPattern = Array(pattern.utf8)
            $0.downAfterCut = thenDown
            $0.forwardCut = false
        }
    }

    /// The next request that contains `pattern` is not forwarded: it and whatever its connection sends after it wait
    /// in the proxy until `release()`.
    public func holdRequest(containing pattern: String) {
        state.withLockedValue { $0.holdPattern = Array(pattern.utf8) }
    }

    /// Whether a request is being held (`holdRequest`).
    public var isHolding: Bool { state.withLockedValue { $0.holding != nil } }

    /// Forwards the held requests, in order, and stops holding.
    public func release() {
        let (peer, held) = state.withLockedValue { state -> ((any Channel)?, [ByteBuffer]) in
            defer {
                state.holding = nil
                state.held = []
                state.heldPeer = nil
            }
            return (state.heldPeer, state.held)
        }
        guard let peer else { return }
        for bytes in held { peer.write(bytes, promise: nil) }
        peer.flush()
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
        let bytes = unwrapInboundIn(data)
        let channel = context.channel
        let heldNow = !upstream && state.withLockedValue { state -> Bool in
            if state.holding == nil, let pattern = state.holdPattern, Self.contains(bytes, pattern) {
                state.holdPattern = nil
                state.holding = ObjectIdentifier(channel)
                state.heldPeer = peer
            }
            guard state.holding == ObjectIdentifier(channel) else { return false }
            state.held.append(bytes)
            return true
        }
        if heldNow { return }
        let (down, dropReplies, cutNow, forward) = state.withLockedValue { state -> (Bool, Bool, Bool, Bool) in
            if upstream { return (state.down, state.dropReplies || state.cut.contains(ObjectIdentifier(channel)), false, true) }
            guard let pattern = state.cutPattern, Self.contains(bytes, pattern) else { return (state.down, false, false, true) }
            state.cutPattern = nil
            state.cut.insert(ObjectIdentifier(peer))
            if state.downAfterCut { state.down = true }
            return (false, false, true, state.forwardCut)
        }
        if down || (upstream && dropReplies) { return }
        guard cutNow else {
            peer.writeAndFlush(bytes, promise: nil)
            return
        }
        // Closed only once the request is on its way to the server, so that it still takes effect there.
        // (Taken down, the other open connections are cut as `down` does.)
        let others = state.withLockedValue { state in
            state.down ? state.connections.values.filter { $0 !== channel && $0 !== self.peer } : []
        }
        for other in others { other.close(promise: nil) }
        guard forward else {
            channel.close(promise: nil)
            return
        }
        peer.writeAndFlush(bytes).whenComplete { _ in channel.close(promise: nil) }
    }

    static func contains(_ buffer: ByteBuffer, _ pattern: [UInt8]) -> Bool {
        let bytes = buffer.readableBytesView
        guard !pattern.isEmpty, bytes.count >= pattern.count else { return false }
        var start = bytes.startIndex
        while start <= bytes.endIndex - pattern.count {
            if bytes[start..<start + pattern.count].elementsEqual(pattern) { return true }
            start += 1
        }
        return false
    }

    func channelInactive(context: ChannelHandlerContext) {
        let channel = context.channel
        state.withLockedValue {
            _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel))
            _ = $0.cut.remove(ObjectIdentifier(channel))
        }
        peer.close(promise: nil)
    }
}
