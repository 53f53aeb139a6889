import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// A Redis client for many concurrent callers: a few connections, each pipelining whatever callers send it, with
/// hiredis decoding replies on the event loop. Nothing blocks a thread; a closed connection is reopened on the
/// next command, so the client recovers by itself after Redis restarts.
public final class RedisClient: Sendable, Service {
    /// The settings this client was made with.
    public let configuration: RedisConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let slots: [ConnectionSlot]
    private let next = NIOLockedValueBox(0)
    private let isShutdown = NIOLockedValueBox(false)

    /// Creates a client; no connection is opened until the first command.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.logger = logger
        self.slots = (0..<configuration.connections).map { _ in ConnectionSlot() }
    }

    /// Runs until graceful shutdown, then closes the connections.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Closes every connection; later commands fail with `.shutdown`.
    public func shutdown() async {
        isShutdown.withLockedValue { $0 = true }
        for slot in slots {
            if let channel = slot.current() {
                try? await channel.close()
            }
        }
    }

    /// Sends one command and waits for its reply. Error replies come back as `.error`, not thrown: callers such
    /// as the script runner need to look at them (NOSCRIPT).
    public func send(_ arguments: [String]) async throws -> RedisValue {
        try await sendFuture(arguments).get()
    }

    /// Sends `ASKING` and then one command on the same connection, back to back: Redis Cluster's answer to an `ASK`
    /// redirection (the flag holds for that connection's next command only). Returns the command's reply.
    public func sendAsking(_ arguments: [String]) async throws -> RedisValue {
        if isShutdown.withLockedValue({ $0 }) { throw RedisError(.shutdown, "Redis client is shut down") }
        let slot = slots[next.withLockedValue { value -> Int in
            value = (value &+ 1) % slots.count
            return value
        }]
        let timeout = configuration.commandTimeoutMilliseconds
        return try await channel(slot: slot).flatMap { channel -> EventLoopFuture<RedisValue> in
            let asking = Self.request(["ASKING"], on: channel, timeoutMilliseconds: timeout)
            return asking.and(Self.request(arguments, on: channel, timeoutMilliseconds: timeout)).map { $0.1 }
        }.get()
    }

    /// Sends one command; a `.error` reply is thrown as `RedisError(.server, …)`.
    @discardableResult
    public func command(_ arguments: String...) async throws -> RedisValue {
        let reply = try await send(arguments)
        if case .error(let message) = reply { throw RedisError(.server, message) }
        return reply
    }

    private func sendFuture(_ arguments: [String]) -> EventLoopFuture<RedisValue> {
        if isShutdown.withLockedValue({ $0 }) {
            return group.any().makeFailedFuture(RedisError(.shutdown, "Redis client is shut down"))
        }
        let index = next.withLockedValue { value -> Int in
            value = (value &+ 1) % slots.count
            return value
        }
        return send(arguments, slot: slots[index], retryIfNotSent: true)
    }

    private func send(_ arguments: [String], slot: ConnectionSlot, retryIfNotSent: Bool) -> EventLoopFuture<RedisValue> {
        let timeout = configuration.commandTimeoutMilliseconds
        return channel(slot: slot).flatMap { channel in
            Self.request(arguments, on: channel, timeoutMilliseconds: timeout).flatMapError { error in
                // A command that never left is safe to send again, once the closing connection is gone.
                guard retryIfNotSent, let redisError = error as? RedisError, redisError.code == .notSent else {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                return channel.closeFuture.flatMap {
                    self.send(arguments, slot: slot, retryIfNotSent: false)
                }
            }
        }
    }

    /// Writes one command on `channel` and returns its reply. The handler flushes once per event-loop tick (see
    /// RedisChannelHandler.write). A write that fails fails the reply with `.notSent` (the command never left, so it
    /// may be sent again): without that, a connection closed before the write reached the handler left the reply,
    /// and every caller waiting on that connection, waiting forever (the OpenAPI store-down test hung about one run
    /// in two, on a reconnect through its cut proxy).
    private static func request(
        _ arguments: [String], on channel: any Channel, timeoutMilliseconds: Int64
    ) -> EventLoopFuture<RedisValue> {
        var buffer = channel.allocator.buffer(capacity: RESPEncoder.encodedSize(arguments))
        RESPEncoder.encode(arguments, into: &buffer)
        let promise = channel.eventLoop.makePromise(of: RedisValue.self)
        let request = RedisRequest(bytes: buffer, promise: promise, deadline: .now() + .milliseconds(timeoutMilliseconds))
        channel.write(request).whenFailure { error in
            promise.fail(error as? RedisError ?? RedisError(.notSent, "write failed: \(error)"))
        }
        return promise.futureResult
    }

    private func channel(slot: ConnectionSlot) -> EventLoopFuture<any Channel> {
        slot.channel { self.connect() }
    }

    private func connect() -> EventLoopFuture<any Channel> {
        let configuration = self.configuration
        let logger = self.logger
        let tls: NIOSSLContext?
        do {
            tls = try configuration.tls.map { try NIOSSLContext(configuration: $0) }
        } catch {
            return group.next().makeFailedFuture(RedisError(.connectionFailed, "Redis TLS configuration: \(error)"))
        }
        let serverName = configuration.tlsServerName ?? (Self.isIPAddress(configuration.host) ? nil : configuration.host)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(configuration.connectTimeoutMilliseconds))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        // TLS in front of the RESP handler: it sees plain bytes either way.
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandler(RedisChannelHandler())
                }
            }
        let connected = bootstrap.connect(host: configuration.host, port: configuration.port)
            .flatMapErrorThrowing { error -> any Channel in
                throw RedisError(
                    .connectionFailed,
                    "cannot connect to Redis at \(configuration.host):\(configuration.port): \(error)"
                )
            }
        return connected.flatMap { channel in
            Self.prepare(channel: channel, configuration: configuration).map { channel }
        }.map { channel in
            logger.debug("redis connected", metadata: ["redis.port": "\(configuration.port)"])
            return channel
        }
    }

    /// Whether `host` is an IPv4 or IPv6 literal (no SNI is sent for those).
    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// AUTH (as `username` when set) and SELECT before the connection is handed to callers.
    private static func prepare(channel: any Channel, configuration: RedisConfiguration) -> EventLoopFuture<Void> {
        var commands: [[String]] = []
        if let password = configuration.password {
            commands.append(["AUTH"] + (configuration.username.map { [$0] } ?? []) + [password])
        }
        if configuration.database != 0 { commands.append(["SELECT", String(configuration.database)]) }
        var chain = channel.eventLoop.makeSucceededVoidFuture()
        for arguments in commands {
            chain = chain.flatMap {
                request(arguments, on: channel, timeoutMilliseconds: configuration.commandTimeoutMilliseconds)
                    .flatMapErrorThrowing { error in
                        guard let redisError = error as? RedisError, redisError.code == .notSent else { throw error }
                        throw RedisError(.connectionFailed, "\(arguments[0]) not sent: \(redisError.message)")
                    }
                    .flatMapThrowing { reply in
                        if case .error(let message) = reply {
                            throw RedisError(.connectionFailed, "\(arguments[0]) failed: \(message)")
                        }
                    }
            }
        }
        return chain
    }
}

/// One connection's place in the pool: open, being opened, or not open. Shared by all callers, so it is
/// guarded by a lock; the lock is held only to read or swap the state, never across I/O.
private final class ConnectionSlot: Sendable {
    private enum State {
        case idle
        case connecting(EventLoopFuture<any Channel>)
        case connected(any Channel)
    }

    private let state = NIOLockedValueBox(State.idle)

    func current() -> (any Channel)? {
        state.withLockedValue { state in
            if case .connected(let channel) = state { return channel }
            return nil
        }
    }

    func channel(connect: () -> EventLoopFuture<any Channel>) -> EventLoopFuture<any Channel> {
        // Starting a connect only schedules work on an event loop, so it is done under the lock: two callers
        // that find the slot idle at once then share one connection instead of racing to open two.
        let (future, started): (EventLoopFuture<any Channel>, Bool) = state.withLockedValue { state in
            switch state {
            case .connected(let channel) where channel.isActive:
                return (channel.eventLoop.makeSucceededFuture(channel), false)
            case .connecting(let future):
                return (future, false)
            default:
                let future = connect()
                state = .connecting(future)
                return (future, true)
            }
        }
        if started {
            future.whenComplete { result in
                self.state.withLockedValue { state in
                    switch result {
                    case .success(let channel): state = .connected(channel)
                    case .failure: state = .idle
                    }
                }
            }
        }
        return future
    }
}
