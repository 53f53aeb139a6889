import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The monotonic clock every measurement uses (nanoseconds; the same clock as `NIODeadline`).
@inline(__always)
func monotonicNow() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

/// One keep-alive HTTP/1.1 connection that sends one request at a time, like a wrk connection.
///
/// Lives on one event loop and is only touched there: the decisions are `DriverCore`'s, this class does the I/O.
/// A request without an answer after the timeout, or a connection that drops, ends the job with an error and the
/// next job opens a new connection.
final class LoadConnection {
    private let loop: EventLoop
    private let address: SocketAddress?
    private let target: Target
    private let renderer: RequestRenderer
    private let timeoutNanoseconds: UInt64
    private(set) var core: DriverCore
    let done: EventLoopPromise<Void>

    private var handler: LoadHandler?
    private var generation = 0
    private var connecting = false
    private var timer: Scheduled<Void>?
    private var inFlightSince: UInt64?
    private var finished = false
    private var started = false
    /// Completed when the first connection attempt ends (either way).
    private var opened: EventLoopPromise<Void>?

    init(
        loop: EventLoop, address: SocketAddress?, target: Target, renderer: RequestRenderer, timeout: Duration,
        core: DriverCore
    ) {
        self.loop = loop
        self.address = address
        self.target = target
        self.renderer = renderer
        timeoutNanoseconds = UInt64(timeout.nanoseconds)
        self.core = core
        done = loop.makePromise()
    }

    /// Opens the connection before the phase starts, so connecting is not part of the first request's latency. A
    /// failure is not counted here: the first job tries again and counts it.
    func open() -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        opened = promise
        connect()
        return promise.futureResult
    }

    /// Starts sending: the phase clock starts at `start`.
    func start(at start: UInt64) {
        started = true
        core.begin(at: start)
        pump()
    }

    /// Starts the next job when one is due; otherwise waits for its time or finishes.
    private func pump() {
        guard started, !finished, !core.isBusy, timer == nil else { return }
        switch core.nextJob(now: monotonicNow()) {
        case .finished:
            finish()
        case .wait(let until):
            timer = loop.assumeIsolated().scheduleTask(deadline: .uptimeNanoseconds(until)) {
                self.timer = nil
                self.pump()
            }
        case .send(let operation):
            send(operation)
        }
    }

    private func send(_ operation: Operation) {
        guard let handler, let job = core.job else {
            connect()
            return
        }
        let bytes = renderer.request(operation, job, allocator: handler.allocator)
        let now = monotonicNow()
        core.didSend(now: now)
        inFlightSince = now
        handler.send(bytes)
    }

    private func connect() {
        guard !connecting else { return }
        connecting = true
        generation += 1
        let generation = self.generation
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(Int64(timeoutNanoseconds)))
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
        let future = address.map { bootstrap.connect(to: $0) } ?? bootstrap.connect(host: target.connectHost, port: target.port)
        future.assumeIsolated().whenComplete { result in
            self.connecting = false
            if let opened = self.opened {
                self.opened = nil
                if case .success(let channel) = result, !self.finished {
                    self.adopt(channel, generation: generation)
                } else if case .success(let channel) = result {
                    channel.close(promise: nil)
                }
                opened.succeed()
                return
            }
            switch result {
            case .success(let channel):
                guard !self.finished, generation == self.generation else {
                    channel.close(promise: nil)
                    return
                }
                guard self.adopt(channel, generation: generation) else {
                    self.connectFailed()
                    return
                }
                if let operation = self.core.currentOperation { self.send(operation) } else { self.pump() }
            case .failure:
                self.connectFailed()
            }
        }
    }

    /// Puts the handler on a new channel; false (and the channel closed) if that fails.
    @discardableResult
    private func adopt(_ channel: Channel, generation: Int) -> Bool {
        let handler = LoadHandler(connection: self, generation: generation)
        do {
            try channel.pipeline.syncOperations.addHandler(handler)
            self.handler = handler
            return true
        } catch {
            channel.close(promise: nil)
            return false
        }
    }

    /// The job waiting for the connection fails (nothing was sent); the next try waits a little so a server that is
    /// down does not turn the run into a connect storm.
    private func connectFailed() {
        core.didFail(.connect)
        timer = loop.assumeIsolated().scheduleTask(in: .milliseconds(100)) {
            self.timer = nil
            self.pump()
        }
    }

    // MARK: Events from the handler

    func answered(generation: Int, status: Int, replayed: Bool, keepAlive: Bool) {
        guard generation == self.generation, inFlightSince != nil else { return }
        inFlightSince = nil
        let next = core.didAnswer(status: status, replayed: replayed, now: monotonicNow())
        if !keepAlive { dropChannel() }
        if case .send(let operation) = next { send(operation) } else { pump() }
    }

    func failed(generation: Int, _ kind: ErrorKind) {
        guard generation == self.generation else { return }
        dropChannel()
        if inFlightSince != nil {
            inFlightSince = nil
            core.didFail(kind)
        }
        pump()
    }

    /// Called by the event loop's ticker: a request past the timeout ends its job and its connection.
    func checkTimeout(now: UInt64) {
        guard let since = inFlightSince, now - since > timeoutNanoseconds else { return }
        inFlightSince = nil
        dropChannel()
        core.didFail(.timeout)
        pump()
    }

    private func dropChannel() {
        generation += 1
        handler?.close()
        handler = nil
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        timer = nil
        dropChannel()
        done.succeed()
    }
}

/// The only handler of a `LoadConnection`'s channel: writes request bytes, parses answers with `ResponseParser`,
/// reports to the connection.
final class LoadHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connection: LoadConnection
    private let generation: Int
    private var context: ChannelHandlerContext?
    private var parser = ResponseParser()
    private var reported = false

    init(connection: LoadConnection, generation: Int) {
        self.connection = connection
        self.generation = generation
    }

    var allocator: ByteBufferAllocator { context?.channel.allocator ?? ByteBufferAllocator() }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func send(_ bytes: ByteBuffer) {
        guard let context else {
            connection.failed(generation: generation, .write)
            return
        }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }

    func close() {
        reported = true
        context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Parse first, report after: reporting may close the channel, which re-enters this handler.
        var first: ParsedResponse?
        var more: [ParsedResponse] = []
        var failed = false
        do {
            try parser.feed(unwrapInboundIn(data)) { response in
                if first == nil { first = response } else { more.append(response) }
            }
        } catch {
            failed = true
        }
        if let first { deliver(first) }
        for response in more { deliver(response) }
        if failed {
            report(.protocol)
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        report(Self.kind(of: error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // An answer delimited by the close completes here; either way the connection learns the channel is gone (an
        // answer cut short counts as `closed` only if a request was waiting).
        var last: ParsedResponse?
        _ = parser.finish { last = $0 }
        if let last { deliver(last) }
        report(.closed)
        context.fireChannelInactive()
    }

    private func deliver(_ response: ParsedResponse) {
        connection.answered(
            generation: generation, status: response.status, replayed: response.replayed, keepAlive: response.keepAlive
        )
    }

    private func report(_ kind: ErrorKind) {
        guard !reported else { return }
        reported = true
        connection.failed(generation: generation, kind)
    }

    static func kind(of error: Error) -> ErrorKind {
        if let error = error as? IOError, error.errnoCode == EPIPE { return .write }
        return .closed
    }
}
