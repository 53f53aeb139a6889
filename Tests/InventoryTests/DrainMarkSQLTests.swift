@testable import Inventory
import InventoryTestSupport
import MySQLClient
import Testing

/// MySQL's side of the drain marks.
@Suite("Drain marks in MySQL")
struct DrainMarkSQLTests {
    @Test("marks are locked only in a READ COMMITTED transaction, whose plain read of them is then current: elsewhere refused")
    func lockNeedsReadCommitted() async throws {
        try await TestStores.with { stores in
            let mark = "\(stores.keys.prefix):test-mark"
            for isolation in [nil, MySQLIsolation.repeatableRead] {
                await #expect(throws: MySQLError.self, "at \(String(describing: isolation))") {
                    try await stores.mysql.withTransaction(isolation: isolation) { session in
                        _ = try await session.perform { try DrainMarkSQL.lock([mark], on: $0) }
                    }
                }
            }
            #expect(try await stores.mysql.query("SELECT seq FROM drain_marks WHERE mark = ?", [.string(mark)]).rows.isEmpty)
            let locked = try await stores.mysql.withTransaction(isolation: .readCommitted) { session in
                try await session.perform { try DrainMarkSQL.lock([mark], on: $0) }
            }
            #expect(locked == [mark: 0])
            _ = try await stores.mysql.query("DELETE FROM drain_marks WHERE mark = ?", [.string(mark)])
        }
    }
}
