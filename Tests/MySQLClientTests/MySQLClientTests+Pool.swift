import Foundation
import InventoryTestSupport
import MySQLClient
import Synchronization
import Testing

/// The pool: how many connections concurrent callers share, how long a caller waits for one, and cancellation and
/// shutdown while callers wait.
extension MySQLClientTests {
    @Test("many concurrent queries share at most poolSize connections")
    func concurrentQueries() async throws {
        try await withClient(poolSize: 4) { client in
            let results = try await withThrowingTaskGroup(of: (Int64, Int64, Int64).self) { group in
                for value in Int64(0)..<300 {
                    group.addTask {
                        let row = try await client.query("SELECT ? * 2 AS doubled, CONNECTION_ID() AS connection", [.int(value)])
                            .rows[0]
                        return (value, row.int64("doubled") ?? -1, row.int64("connection") ?? -1)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.count == 300)
            #expect(results.allSatisfy { $0.1 == $0.0 * 2 })
            let connections = Set(results.map(\.2))
            #expect(connections.count >= 1 && connections.count <= 4)
        }
    }

    /// A client of one connection, held by a statement that waits for a user lock another client holds, so it stays
    /// leased until the test lets it go, however slow the machine is. The statement's own lock timeout (90 s, and the
    /// read timeout above it) only bounds a failing run (8 s ran out once on a loaded CI machine). `body` gets the
    /// client once the statement holds its connection, the statement's task, and `letGo`, which releases the lock; on
    /// a throw the lock is let go and the client shut down.
    func withHeldConnection(
        _ name: String, configure: (inout MySQLConfiguration) -> Void = { _ in },
        _ body: (MySQLClient, Task<MySQLResult, any Error>, @escaping @Sendable () async throws -> Void) async throws -> Void
    ) async throws {
        let lock = "\(name)-\(Self.uniqueSuffix())"
        try await withClient(poolSize: 1) { holder in
            #expect(try await holder.query("SELECT GET_LOCK(?, 0) AS got", [.string(lock)]).rows.first?.int64("got") == 1)
            var configuration = Self.configuration(poolSize: 1)
            configuration.readTimeoutSeconds = 120
            configure(&configuration)
            let client = MySQLClient(configuration: configuration, logger: Self.logger)
            let busy = Task { try await client.query("SELECT GET_LOCK(?, 90) AS got", [.string(lock)]) }
            let letGo: @Sendable () async throws -> Void = { _ = try await holder.query("SELECT RELEASE_LOCK(?)", [.string(lock)]) }
            do {
                try await waitFor("the first caller leased the connection") { client.occupancy == (1, 0) }
                try await body(client, busy, letGo)
            } catch {
                try? await letGo()
                await client.shutdown()
                throw error
            }
        }
    }

    @Test("a caller waits for a pooled connection at most acquireTimeoutSeconds: .timeout, nothing sent; the pool goes on")
    func acquireTimeout() async throws {
        try await withHeldConnection("acquire", configure: { $0.acquireTimeoutSeconds = 1 }) { client, busy, letGo in
            let answered = Mutex(false)
            let waiting = Task {
                defer { answered.withLock { $0 = true } }
                return try await client.query("SELECT 1 AS one")
            }
            do {
                try await waitFor("the waiting caller answered", within: .seconds(30)) { answered.withLock { $0 } }
            } catch {
                Issue.record("the caller waited for a connection without limit: \(error)")
                try? await letGo()
            }
            let refused = await #expect(throws: MySQLError.self) { try await waiting.value }
            #expect(refused?.code == .timeout)
            #expect(client.occupancy == (1, 0), "the connection stays with its holder")
            try await letGo()
            #expect(try await busy.value.rows.first?.int64("got") == 1)
            #expect(try await client.query("SELECT 1 AS one").rows.first?.int64("one") == 1, "the pool goes on")
            await client.shutdown()
        }
    }

    @Test("a caller waiting for a connection can be cancelled; shutdown lets leased work finish and fails waiters")
    func waitingCancellationAndShutdown() async throws {
        try await withHeldConnection("waiting") { client, busy, letGo in
            let cancelled = Task { try await client.query("SELECT 1") }
            try await waitFor("the second caller is queued") { client.occupancy == (1, 1) }
            cancelled.cancel()
            await #expect(throws: CancellationError.self) { try await cancelled.value }
            #expect(client.occupancy == (1, 0), "the cancelled caller left the queue")

            let waiting = Task { try await client.query("SELECT 1") }
            try await waitFor("the third caller is queued") { client.occupancy == (1, 1) }
            let shutdown = Task { await client.shutdown() }
            // The waiter is failed at once, while the leased statement still runs.
            let refused = await #expect(throws: MySQLError.self) { try await waiting.value }
            #expect(refused?.code == .poolClosed)
            #expect(client.occupancy.leased == 1, "shutdown did not take the leased connection away")
            try await letGo()
            await shutdown.value
            // 1: the statement ran to its end after shutdown began (0 would be its own 90 s timeout, NULL a kill).
            #expect(try await busy.value.rows.first?.int64("got") == 1)
        }
    }
}
