import NIOCore

/// One command on its way to Redis: its encoded bytes and the promise its reply completes.
struct RedisRequest {
    var bytes: ByteBuffer
    var promise: EventLoopPromise<RedisValue>
    var deadline: NIODeadline
}

/// Pipelines commands on one connection: replies arrive in the order commands were written, so a FIFO of
/// promises pairs them up. Lives on one event loop; nothing here blocks.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader = HiredisReader()
    private var pending = CircularBuffer<(promise: EventLoopPromise<RedisValue>, deadline: NIODeadline)>(
        initialCapacity: 64
    )
    private var timer: Scheduled<Void>?
    private var closedError: RedisError?
    private var flushScheduled = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if closedError != nil {
            let error = RedisError(.notSent, "connection to Redis is closing; the command was not sent")
            request.promise.fail(error)
            promise?.fail(error)
            return
        }
        pending.append((request.promise, request.deadline))
        if timer == nil { armTimer(context: context, deadline: request.deadline) }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
        // Callers write without flushing; one flush is queued behind the writes already waiting on the event loop,
        // so a burst of commands leaves in one syscall instead of one each.
        if !flushScheduled {
            flushScheduled = true
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, context) = loopBound.value
                handler.flushScheduled = false
                context.flush()
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        do {
            try buffer.withUnsafeReadableBytes { try reader.feed($0) }
            while let reply = try reader.next() {
                guard let head = pending.popFirst() else {
                    throw RedisError(.protocolError, "reply without a pending command")
                }
                head.promise.succeed(reply)
            }
        } catch {
            failAll(error as? RedisError ?? RedisError(.protocolError, "\(error)"))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "connection to Redis closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(RedisError(.connectionClosed, "connection error: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if closedError == nil { closedError = error }
        timer?.cancel()
        timer = nil
        while let head = pending.popFirst() {
            head.promise.fail(error)
        }
    }

    /// One timer per connection, set for the oldest command's deadline: cheaper than a timer per command.
    /// A reply that is late means the pairing of later replies can't be trusted to arrive in time either, so
    /// the connection is closed and every waiting caller fails with a timeout.
    private func armTimer(context: ChannelHandlerContext, deadline: NIODeadline) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            handler.value.timerFired(context: loopBound.value)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        guard let head = pending.first else { return }
        if head.deadline <= .now() {
            failAll(RedisError(.timeout, "no reply from Redis in time"))
            context.close(promise: nil)
        } else {
            armTimer(context: context, deadline: head.deadline)
        }
    }
}
