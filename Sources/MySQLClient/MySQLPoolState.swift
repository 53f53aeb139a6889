import NIOCore

/// A caller queued for a pooled connection (`MySQLClient.lease`).
struct Waiter: Sendable {
    let id: UInt64
    let continuation: CheckedContinuation<MySQLConnectionHandle, any Error>
    /// Fails the wait after `MySQLConfiguration.acquireTimeoutSeconds` (nil: not queued).
    let timer: Task<Void, Never>?
}

/// The pool's bookkeeping, only touched under the client's lock. Handles without a connection are pool slots too:
/// they are opened on the pool thread by the lease that takes them.
struct PoolState: Sendable {
    enum Lifecycle: Equatable {
        case running, draining, closing, closed
    }

    enum ShutdownRole {
        /// This call closes the pool; these waiters must be failed.
        case closer([Waiter])
        /// Another call is closing the pool; wait for it.
        case follower
        case closed
    }

    enum ReleaseAction {
        case none
        case handOver(Waiter)
        case drained(CheckedContinuation<Void, Never>)
    }

    /// Unleased handles; connected ones at the end, where leases take from, so an unopened slot is used only
    /// when every open connection is busy.
    var idle: [MySQLConnectionHandle]
    var leased = 0
    var waiters = CircularBuffer<Waiter>()
    var nextWaiterID: UInt64 = 0
    var lifecycle = Lifecycle.running
    var drained: CheckedContinuation<Void, Never>?
    var closeWaiters: [CheckedContinuation<Void, Never>] = []

    init(handles: [MySQLConnectionHandle]) {
        self.idle = handles
    }

    mutating func makeWaiterID() -> UInt64 {
        defer { nextWaiterID &+= 1 }
        return nextWaiterID
    }

    /// A handle now, a failure now, or nil when the waiter was queued.
    /// Whether `lease` answers without queueing (a connection is idle, or the pool is closing).
    var answersAtOnce: Bool { lifecycle != .running || !idle.isEmpty }

    mutating func lease(waiter: Waiter) -> Result<MySQLConnectionHandle, any Error>? {
        guard lifecycle == .running else {
            return .failure(MySQLError(code: .poolClosed, message: "the MySQL client is shut down"))
        }
        if let handle = idle.popLast() {
            leased += 1
            return .success(handle)
        }
        waiters.append(waiter)
        return nil
    }

    mutating func removeWaiter(id: UInt64) -> Waiter? {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return waiters.remove(at: index)
    }

    mutating func release(_ handle: MySQLConnectionHandle) -> ReleaseAction {
        if let waiter = waiters.popFirst() {
            return .handOver(waiter)
        }
        leased -= 1
        if handle.mysql == nil {
            idle.insert(handle, at: 0)
        } else {
            idle.append(handle)
        }
        if leased == 0, let drained {
            self.drained = nil
            return .drained(drained)
        }
        return .none
    }

    mutating func beginShutdown() -> ShutdownRole {
        switch lifecycle {
        case .running:
            lifecycle = .draining
            defer { waiters.removeAll() }
            return .closer(Array(waiters))
        case .draining, .closing:
            return .follower
        case .closed:
            return .closed
        }
    }
}
