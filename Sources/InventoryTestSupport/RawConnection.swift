import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A plain TCP connection that sends exactly the bytes it is given, for tests that play a misbehaving HTTP client
/// (slow, silent, or sending what no HTTP client library would).
public final class RawConnection: Sendable {
    private let channel: any Channel
    private let collector: Collector

    /// Connects to a port on the loopback interface.
    public static func connect(host: String = "127.0.0.1", port: Int) async throws -> RawConnection {
        let collector = Collector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(2))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: host, port: port)
            .get()
        return RawConnection(channel: channel, collector: collector)
    }

    private init(channel: any Channel, collector: Collector) {
        self.channel = channel
        self.collector = collector
    }

    /// Sends bytes; throws once the peer has closed the connection.
    public func send(_ bytes: some Sequence<UInt8>) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: Array(bytes))).get()
    }

    public func send(_ text: String) async throws { try await send(Array(text.utf8)) }

    /// Whether the connection is closed (by the peer, or by `close`).
    public var isClosed: Bool { !channel.isActive }

    /// Everything received so far.
    public var received: [UInt8] { collector.bytes.withLockedValue { $0 } }

    /// Waits until the peer closes the connection, at most `seconds`; true if it did.
    public func closedByPeer(within seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if isClosed { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return isClosed
    }

    /// Waits until `predicate` holds for the bytes received, at most `seconds`; the bytes received by then.
    public func receive(within seconds: Double, until predicate: ([UInt8]) -> Bool) async -> [UInt8] {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline, !predicate(received), !isClosed {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return received
    }

    public func close() async {
        try? await channel.close().get()
    }

    /// Keeps every inbound byte.
    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = NIOLockedValueBox<[UInt8]>([])

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            bytes.withLockedValue { $0.append(contentsOf: buffer.readableBytesView) }
        }
    }
}
