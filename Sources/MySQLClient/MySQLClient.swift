import CMariaDB
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A MySQL/MariaDB client for many concurrent callers: a bounded pool of Connector/C connections, opened on first
/// use, whose blocking calls run on the client's own thread pool (one thread per connection), never on an event
/// loop or the Swift cooperative pool. A connection that breaks is closed and replaced on a later lease, so the
/// client recovers by itself after the server restarts.
///
/// Call `shutdown()` before dropping the client: it owns threads.
public final class MySQLClient: Sendable, Service {
    /// The settings the client was created with.
    public let configuration: MySQLConfiguration
    private let logger: Logger
    private let threadPool: NIOThreadPool
    private let state: NIOLockedValueBox<PoolState>

    /// Creates a client and starts its threads; no connection is opened until the first lease.
    public init(configuration: MySQLConfiguration, logger: Logger) {
        let size = max(configuration.poolSize, 1)
        self.configuration = configuration
        self.logger = logger
        self.threadPool = NIOThreadPool(numberOfThreads: size)
        self.threadPool.start()
        self.state = NIOLockedValueBox(PoolState(handles: (0..<size).map { _ in MySQLConnectionHandle() }))
    }

    /// Runs one statement with bound parameters on any pooled connection (see `MySQLConnection.query`).
    public func query(_ sql: String, _ binds: [MySQLValue] = []) async throws -> MySQLResult {
        try await withConnection { try $0.query(sql, binds) }
    }

    /// Leases a connection, waiting while all `poolSize` are busy, and runs `body` with it on the client's thread
    /// pool. `body` escapes only in the type system: it runs, and is released, before this returns. A transaction
    /// `body` leaves open is rolled back.
    public func withConnection<T: Sendable>(
        _ body: @escaping @Sendable (MySQLConnection) throws -> T
    ) async throws -> T {
        let handle = try await lease()
        // Release runs only after the work item finished: runIfActive resumes when the body has run, or when the
        // work item was cancelled before it started, and never while the handle is in use.
        defer { release(handle) }
        do {
            return try await threadPool.runIfActive { [configuration, logger] in
                try MariaDBLibrary.prepareCurrentThread()
                try Self.makeReady(handle, configuration: configuration, logger: logger)
                let connection = MySQLConnection(handle: handle)
                defer { Self.endLease(connection, handle, logger: logger) }
                return try body(connection)
            }
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw MySQLError(code: .poolClosed, message: "the MySQL client is shut down")
        }
    }

    /// Runs `body` in one transaction (at `isolation`; nil keeps the server's default): `START TRANSACTION`, commit
    /// when `body` returns, rollback when it throws (the error is rethrown). A `.deadlock` error means the whole transaction was rolled back and may be retried;
    /// `.commitOutcomeUnknown` that the connection broke during COMMIT, which may or may not have taken effect.
    public func withTransaction<T: Sendable>(
        isolation: MySQLIsolation? = nil, _ body: @escaping @Sendable (MySQLConnection) throws -> T
    ) async throws -> T {
        try await withConnection { connection in
            try connection.begin(isolation: isolation)
            let value: T
            do {
                value = try body(connection)
            } catch {
                connection.rollbackQuietly()
                throw error
            }
            try connection.commitOrRollBack()
            return value
        }
    }

    /// Runs until graceful shutdown, then closes the pool (as `shutdown()`): a service group that lists the client
    /// before the services using it closes it after them.
    public func run() async throws {
        try? await gracefulShutdown()
        await shutdown()
    }

    /// Checks that the server answers. Stale pooled connections (the server restarted) are replaced rather than
    /// reported: only a server that cannot be reached on a fresh connection fails the ping.
    public func ping() async throws {
        var attempts = 0
        while true {
            do {
                return try await withConnection { try $0.ping() }
            } catch let error as MySQLError where error.code == .connectionLost && attempts < configuration.poolSize {
                // That connection is now closed; another stale one may be next in line.
                attempts += 1
            }
        }
    }

    /// Waits for leased connections to come back, closes every connection and stops the threads. Waiting and
    /// later callers get `.poolClosed`. Safe to call more than once; every call returns once the client is closed.
    public func shutdown() async {
        let role = state.withLockedValue { $0.beginShutdown() }
        switch role {
        case .closed:
            return
        case .follower:
            await withCheckedContinuation { continuation in
                let isClosed = state.withLockedValue { state in
                    if state.lifecycle == .closed { return true }
                    state.closeWaiters.append(continuation)
                    return false
                }
                if isClosed { continuation.resume() }
            }
        case .closer(let waiters):
            let closed = MySQLError(code: .poolClosed, message: "the MySQL client is shut down")
            for waiter in waiters {
                waiter.timer?.cancel()
                waiter.continuation.resume(throwing: closed)
            }
            await withCheckedContinuation { continuation in
                let isDrained = state.withLockedValue { state in
                    if state.leased == 0 { return true }
                    state.drained = continuation
                    return false
                }
                if isDrained { continuation.resume() }
            }
            let handles = state.withLockedValue { state in
                state.lifecycle = .closing
                defer { state.idle.removeAll() }
                return state.idle
            }
            _ = try? await threadPool.runIfActive {
                for handle in handles {
                    handle.close()
                }
            }
            try? await threadPool.shutdownGracefully()
            let followers = state.withLockedValue { state in
                state.lifecycle = .closed
                defer { state.closeWaiters.removeAll() }
                return state.closeWaiters
            }
            for follower in followers {
                follower.resume()
            }
            logger.debug("MySQL client shut down")
        }
    }

    /// Connections leased and callers queued for one, right now. For tests that order their callers by the
    /// pool's state instead of by sleeps.
    package var occupancy: (leased: Int, waiting: Int) {
        state.withLockedValue { ($0.leased, $0.waiters.count) }
    }

    // MARK: - Pool

    private func lease() async throws -> MySQLConnectionHandle {
        let id = state.withLockedValue { $0.makeWaiterID() }
        let limit = configuration.acquireTimeoutSeconds
        let box = state
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<MySQLConnectionHandle, any Error>) in
                let outcome = state.withLockedValue { state -> Result<MySQLConnectionHandle, any Error>? in
                    // Checked under the lock that the cancellation handler also takes, so a cancellation either
                    // sees this waiter queued or happened before this check.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.answersAtOnce {
                        return state.lease(waiter: Waiter(id: id, continuation: continuation, timer: nil))
                    }
                    // Queued: a timer fails the wait after `acquireTimeoutSeconds` unless a connection came first
                    // (whoever takes the waiter out of the queue resumes it; a hand-over cancels the timer).
                    let timer = Task {
                        guard (try? await Task.sleep(for: .seconds(limit))) != nil else { return }
                        box.withLockedValue { $0.removeWaiter(id: id) }?.continuation.resume(
                            throwing: MySQLError(
                                code: .timeout, message: "no pooled MySQL connection free within \(limit) s (nothing was sent)"
                            )
                        )
                    }
                    return state.lease(waiter: Waiter(id: id, continuation: continuation, timer: timer))
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { $0.removeWaiter(id: id) }
            waiter?.timer?.cancel()
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func release(_ handle: MySQLConnectionHandle) {
        let action = state.withLockedValue { $0.release(handle) }
        switch action {
        case .none:
            break
        case .handOver(let waiter):
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: handle)
        case .drained(let continuation):
            continuation.resume()
        }
    }

    /// Opens the handle if it has no connection, and pings it first if it sat idle long enough to have gone
    /// stale; runs on a pool thread.
    private static func makeReady(_ handle: MySQLConnectionHandle, configuration: MySQLConfiguration, logger: Logger) throws {
        if let mysql = handle.mysql,
            handle.lastUsed.duration(to: .now) >= .seconds(configuration.idleValidationSeconds),
            mysql_ping(mysql) != 0
        {
            logger.info(
                "discarding a stale MySQL connection",
                metadata: ["mysql.errno": "\(mysql_errno(mysql))", "mysql.error": "\(String(cString: mysql_error(mysql)))"]
            )
            handle.close()
        }
        if handle.mysql == nil {
            try handle.open(configuration)
            logger.debug("opened a MySQL connection", metadata: ["mysql.host": "\(configuration.host):\(configuration.port)"])
        }
    }

    private static func endLease(_ connection: MySQLConnection, _ handle: MySQLConnectionHandle, logger: Logger) {
        let outcome = connection.endLease()
        if outcome.wasInTransaction {
            logger.warning("a MySQL connection came back inside a transaction; it was rolled back")
        }
        if outcome.isBroken {
            logger.warning(
                "closing a broken MySQL connection; the next lease opens a new one",
                metadata: ["brokenBy": "\(outcome.brokenBy)"]
            )
            handle.close()
        }
        handle.lastUsed = .now
    }
}

// MARK: - Sessions

/// A leased connection whose statements are awaited one after another, for work that must keep a transaction
/// open across other awaits (the reconciler holds row locks while it reads Redis).
///
/// `@unchecked Sendable`: the wrapped connection is only touched on the client's pool threads, by one statement
/// at a time; the `busy` flag refuses a second statement from another task while one runs, so the C handle is
/// never used concurrently.
public final class MySQLSession: @unchecked Sendable {
    fileprivate let connection: MySQLConnection
    fileprivate let threadPool: NIOThreadPool
    private let busy = NIOLockedValueBox(false)

    fileprivate init(connection: MySQLConnection, threadPool: NIOThreadPool) {
        self.connection = connection
        self.threadPool = threadPool
    }

    /// Runs one statement with bound parameters (see `MySQLConnection.query`).
    public func query(_ sql: String, _ binds: [MySQLValue] = []) async throws -> MySQLResult {
        try await run { try $0.query(sql, binds) }
    }

    /// Runs a statement that cannot be prepared (see `MySQLConnection.execute`).
    public func execute(_ sql: String) async throws {
        try await run { try $0.execute(sql) }
    }

    /// Runs `body` with the session's connection on the client's pool, for several statements in one hop.
    public func perform<T: Sendable>(_ body: @escaping @Sendable (MySQLConnection) throws -> T) async throws -> T {
        try await run(body)
    }

    private func run<T: Sendable>(_ body: @escaping @Sendable (MySQLConnection) throws -> T) async throws -> T {
        let free = busy.withLockedValue { busy -> Bool in
            if busy { return false }
            busy = true
            return true
        }
        guard free else {
            throw MySQLError(code: .queryFailed, message: "a MySQLSession was used by two tasks at once")
        }
        defer { busy.withLockedValue { $0 = false } }
        let box = UncheckedConnection(connection: connection)
        do {
            return try await threadPool.runIfActive {
                try MariaDBLibrary.prepareCurrentThread()
                return try body(box.connection)
            }
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw MySQLError(code: .poolClosed, message: "the MySQL client is shut down")
        }
    }
}

/// Carries the session's connection into a pool work item; see `MySQLSession` for why that is safe.
private struct UncheckedConnection: @unchecked Sendable {
    let connection: MySQLConnection
}

extension MySQLClient {
    /// Leases a connection for `body`, whose statements run on the pool one at a time while `body` may await
    /// anything else in between. A transaction `body` leaves open is rolled back when the lease ends.
    public func withSession<T: Sendable>(_ body: (MySQLSession) async throws -> T) async throws -> T {
        let handle = try await lease()
        defer { release(handle) }
        let box: UncheckedConnection
        do {
            box = try await threadPool.runIfActive { [configuration, logger] in
                try MariaDBLibrary.prepareCurrentThread()
                try Self.makeReady(handle, configuration: configuration, logger: logger)
                return UncheckedConnection(connection: MySQLConnection(handle: handle))
            }
        } catch is NIOThreadPoolError.ThreadPoolInactive {
            throw MySQLError(code: .poolClosed, message: "the MySQL client is shut down")
        }
        let session = MySQLSession(connection: box.connection, threadPool: threadPool)
        let result: Result<T, any Error>
        do {
            result = .success(try await body(session))
        } catch {
            result = .failure(error)
        }
        _ = try? await threadPool.runIfActive { [logger] in
            Self.endLease(box.connection, handle, logger: logger)
        }
        return try result.get()
    }
}

/// The isolation of one transaction (`SET TRANSACTION ISOLATION LEVEL`, which applies to the next transaction only,
/// so a pooled connection keeps the server's default for its next lease).
public enum MySQLIsolation: String, Sendable {
    case readCommitted = "READ COMMITTED"
    case repeatableRead = "REPEATABLE READ"
}

extension MySQLClient {
    /// Runs `body` in one transaction on a leased session, whose statements may be interleaved with other awaits
    /// (Redis calls while row locks are held): committed when `body` returns, rolled back when it throws (the error
    /// is rethrown).
    /// - Parameters:
    ///   - isolation: this transaction's isolation (`SET TRANSACTION ISOLATION LEVEL` first); nil keeps the server's
    ///     default. Either way the transaction begins and ends as `withTransaction(isolation:_:)`'s does (`START TRANSACTION`,
    ///     then COMMIT), so all look the same on the wire (the test proxies' patterns).
    ///   - consistentSnapshot: starts the transaction `WITH CONSISTENT SNAPSHOT`: every read sees the instant it
    ///     started, not the instant of its first read.
    /// - Throws: `.commitOutcomeUnknown` when the connection broke during COMMIT, which may or may not have taken
    ///   effect (as `withTransaction(isolation:_:)`).
    public func withTransaction<T: Sendable>(
        isolation: MySQLIsolation?, consistentSnapshot: Bool = false, _ body: (MySQLSession) async throws -> T
    ) async throws -> T {
        try await withSession { session in
            // The isolation and the start in one hop to the pool's thread.
            try await session.perform { connection in
                try connection.begin(isolation: isolation, consistentSnapshot: consistentSnapshot)
            }
            let value: T
            do {
                value = try await body(session)
            } catch {
                try? await session.perform { connection in connection.rollbackQuietly() }
                throw error
            }
            try await session.perform { connection in try connection.commitOrRollBack() }
            return value
        }
    }
}
