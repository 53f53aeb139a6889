import Foundation
import Inventory
import Logging
import MySQLClient
import InventoryTestSupport
import Testing

/// Integration tests against the real MariaDB started by `scripts/setup.sh` (database `inventory_test`).
@Suite("MySQLClient against MariaDB")
struct MySQLClientTests {
    // MARK: - Values

    @Test("bound parameters of every kind come back unchanged")
    func boundParametersRoundTrip() async throws {
        try await withClient { client in
            try await withTable(
                client,
                """
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                i BIGINT NULL, u BIGINT UNSIGNED NULL, d DOUBLE NULL, s VARCHAR(255) NULL, t LONGTEXT NULL,
                b VARBINARY(255) NULL, n DECIMAL(30,10) NULL, dt DATETIME(3) NULL, flag TINYINT(1) NULL
                """
            ) { table in
                let tricky = "it's \"quoted\" \\ ; DROP TABLE x; -- 🦄 日本語 ñ\0end"
                // Longer than the initial fetch buffer, so it takes the mysql_stmt_fetch_column path.
                let long = String(repeating: "ü€🦄x", count: 25_000)
                let bytes: [UInt8] = [0, 1, 0x27, 0x5C, 0x22, 0xFF, 0x00]
                let insert = "INSERT INTO \(table) (i, u, d, s, t, b, n, dt, flag) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"

                let first = try await client.query(
                    insert,
                    [
                        .int(Int64.max), .string("18446744073709551615"), .double(3.141592653589793), .string(tricky),
                        .string(long), .bytes(bytes), "12345678901234567890.0123456789", "2024-02-29 12:34:56.789", true,
                    ]
                )
                #expect(first.affectedRows == 1)
                #expect(first.lastInsertID > 0)
                _ = try await client.query(insert, [.int(Int64.min), nil, nil, nil, nil, nil, nil, nil, nil])
                _ = try await client.query(insert, [0, 0, -0.5, "", "", .bytes([]), "-1.5", nil, false])

                let rows = try await client.query("SELECT i, u, d, s, t, b, n, dt, flag FROM \(table) ORDER BY id").rows
                try #require(rows.count == 3)
                #expect(rows[0].columns == ["i", "u", "d", "s", "t", "b", "n", "dt", "flag"])
                #expect(rows[0].values == [
                    .int(Int64.max), .string("18446744073709551615"), .double(3.141592653589793), .string(tricky),
                    .string(long), .bytes(bytes), .string("12345678901234567890.0123456789"),
                    .string("2024-02-29 12:34:56.789"), .int(1),
                ])
                #expect(rows[0].uint64("u") == UInt64.max)
                #expect(rows[0].bool("flag") == true)
                #expect(rows[0].string("s") == tricky)
                #expect(rows[1].values == [.int(Int64.min), nil, nil, nil, nil, nil, nil, nil, nil])
                #expect(rows[1].int64("u") == nil)
                #expect(rows[2].values == [0, 0, -0.5, "", "", .bytes([]), "-1.5000000000", nil, 0])

                let selected = try await client.query(
                    "SELECT ? AS i, ? AS d, ? AS s, ? AS b, ? AS n",
                    [.int(Int64.max), .double(-1e300), .string(tricky), .bytes(bytes), .null]
                )
                #expect(selected.rows.first?.values == [.int(Int64.max), .double(-1e300), .string(tricky), .bytes(bytes), .null])
            }
        }
    }

    @Test("a second insert of a unique value fails with .duplicateKey and the connection stays usable")
    func duplicateKey() async throws {
        try await withClient(poolSize: 1) { client in
            try await withTable(client, "name VARCHAR(64) NOT NULL PRIMARY KEY") { table in
                _ = try await client.query("INSERT INTO \(table) (name) VALUES (?)", ["order-1"])
                let error = await #expect(throws: MySQLError.self) {
                    try await client.query("INSERT INTO \(table) (name) VALUES (?)", ["order-1"])
                }
                #expect(error?.code == .duplicateKey)
                #expect(error?.errno == 1062)
                #expect(error?.sqlState == "23000")
                let count = try await client.query("SELECT COUNT(*) AS n FROM \(table)")
                #expect(count.rows.first?.int64("n") == 1)
            }
        }
    }

    @Test("a cached statement follows a schema change of its table")
    func cachedStatementAfterSchemaChange() async throws {
        try await withClient(poolSize: 1) { client in
            try await withTable(client, "id BIGINT NOT NULL PRIMARY KEY") { table in
                _ = try await client.query("INSERT INTO \(table) (id) VALUES (?)", [1])
                #expect(try await client.query("SELECT * FROM \(table)").rows.first?.columns == ["id"])
                try await client.withConnection { try $0.execute("ALTER TABLE \(table) ADD COLUMN note VARCHAR(16) NOT NULL DEFAULT 'x'") }
                let row = try await client.query("SELECT * FROM \(table)").rows.first
                #expect(row?.columns == ["id", "note"])
                #expect(row?.values == [1, "x"])
            }
        }
    }

    @Test("a statement whose rows end in an error runs again at once, without waiting for rows that never come")
    func errorAfterFirstRows() async throws {
        // The write-back batch's locking read met this as a deadlock found after its first row was sent: the
        // cached statement's next execution waited out the read timeout (10 s) and lost the connection.
        // A scalar subquery that returns two rows for the second row only is the same error after a row, on
        // demand.
        try await withClient(poolSize: 1, readTimeoutSeconds: 2) { client in
            try await withTable(client, "n INT NOT NULL PRIMARY KEY") { table in
                _ = try await client.query("INSERT INTO \(table) (n) VALUES (1), (2)")
                let select = "SELECT n, (SELECT 1 FROM \(table) AS other WHERE \(table).n > ?) AS pair FROM \(table) ORDER BY n"
                let connectionID = try await client.query("SELECT CONNECTION_ID() AS id").rows.first?.int64("id")
                let error = await #expect(throws: MySQLError.self) { try await client.query(select, [1]) }
                #expect(error?.errno == 1242)  // ER_SUBQUERY_NO_1_ROW

                // Waiting for rows that never come ends in the read timeout, which loses the connection: this query
                // would throw, and the next would run on a new connection. No timing asserted (a busy machine).
                let rows = try await client.query(select, [2]).rows
                #expect(rows.map { $0.int64("n") } == [1, 2])
                #expect(try await client.query("SELECT CONNECTION_ID() AS id").rows.first?.int64("id") == connectionID)
            }
        }
    }

    @Test("a wrong number of bound values is refused before reaching the server")
    func placeholderCountMismatch() async throws {
        try await withClient { client in
            let error = await #expect(throws: MySQLError.self) {
                try await client.query("SELECT ? + ?", [1])
            }
            #expect(error?.code == .queryFailed)
            let sum = try await client.query("SELECT ? + ? AS sum", [1, 2])
            #expect(sum.rows.first?.int64("sum") == 3)
        }
    }

    // MARK: - Transactions

    @Test("a transaction whose body throws leaves nothing behind; one that returns is committed")
    func transactionRollback() async throws {
        struct Abort: Error {}
        try await withClient(poolSize: 1) { client in
            try await withTable(client, "id BIGINT NOT NULL PRIMARY KEY") { table in
                await #expect(throws: Abort.self) {
                    try await client.withTransaction { connection in
                        _ = try connection.query("INSERT INTO \(table) (id) VALUES (?)", [1])
                        _ = try connection.query("INSERT INTO \(table) (id) VALUES (?)", [2])
                        throw Abort()
                    }
                }
                #expect(try await client.query("SELECT id FROM \(table)").rows.isEmpty)

                let inserted = try await client.withTransaction { connection in
                    try connection.query("INSERT INTO \(table) (id) VALUES (?)", [3]).affectedRows
                }
                #expect(inserted == 1)
                // The same (only) connection is back in autocommit mode: a plain insert is visible elsewhere.
                _ = try await client.query("INSERT INTO \(table) (id) VALUES (?)", [4])
                try await withClient { other in
                    let ids = try await other.query("SELECT id FROM \(table) ORDER BY id").rows.map { $0.int64("id") }
                    #expect(ids == [3, 4])
                }
            }
        }
    }

    @Test("a transaction left open by withConnection is rolled back when the connection returns")
    func leakedTransactionIsRolledBack() async throws {
        try await withClient(poolSize: 1) { client in
            try await withTable(client, "id BIGINT NOT NULL PRIMARY KEY") { table in
                try await client.withConnection { connection in
                    try connection.execute("START TRANSACTION")
                    _ = try connection.query("INSERT INTO \(table) (id) VALUES (?)", [1])
                }
                #expect(try await client.query("SELECT id FROM \(table)").rows.isEmpty)
            }
        }
    }

    // MARK: - Connections (the pool's own tests: MySQLClientTests+Pool.swift)

    @Test("a killed connection is replaced: at once when validated, on the next lease when it broke mid-query")
    func reconnectsAfterConnectionLoss() async throws {
        try await withClient { admin in
            try await withClient(poolSize: 1, idleValidationSeconds: 0) { client in
                let before = try await client.query("SELECT CONNECTION_ID() AS id").rows[0].int64("id")
                try await kill(try #require(before), using: admin)
                let after = try await client.query("SELECT CONNECTION_ID() AS id").rows[0].int64("id")
                #expect(after != nil && after != before)
            }
            try await withClient(poolSize: 1, idleValidationSeconds: 3600) { client in
                let before = try await client.query("SELECT CONNECTION_ID() AS id").rows[0].int64("id")
                try await kill(try #require(before), using: admin)
                let error = await #expect(throws: MySQLError.self) {
                    try await client.query("SELECT CONNECTION_ID() AS id")
                }
                #expect(error?.code == .connectionLost)
                let after = try await client.query("SELECT CONNECTION_ID() AS id").rows[0].int64("id")
                #expect(after != nil && after != before)
                try await client.ping()
            }
        }
    }

    @Test("an unreachable server fails with .connectionFailed, and shutdown is idempotent")
    func connectionFailureAndShutdown() async throws {
        var configuration = Self.configuration(poolSize: 1)
        configuration.port = 1  // nothing listens there
        let unreachable = MySQLClient(configuration: configuration, logger: Self.logger)
        let error = await #expect(throws: MySQLError.self) { try await unreachable.ping() }
        #expect(error?.code == .connectionFailed)
        await unreachable.shutdown()

        let client = MySQLClient(configuration: Self.configuration(poolSize: 2), logger: Self.logger)
        _ = try await client.query("SELECT 1")
        await client.shutdown()
        await client.shutdown()
        let closed = await #expect(throws: MySQLError.self) { try await client.query("SELECT 1") }
        #expect(closed?.code == .poolClosed)
    }

    @Test("a statement past the server's or the client's time limit fails with .timeout, and the client recovers")
    func timeouts() async throws {
        var configuration = Self.configuration(poolSize: 1)
        configuration.readTimeoutSeconds = 1
        let client = MySQLClient(configuration: configuration, logger: Self.logger)
        let serverSide = await #expect(throws: MySQLError.self) {
            try await client.query("SET STATEMENT max_statement_time = 0.1 FOR SELECT SLEEP(2)")
        }
        #expect(serverSide?.code == .timeout)
        let clientSide = await #expect(throws: MySQLError.self) { try await client.query("SELECT SLEEP(3)") }
        #expect(clientSide?.code == .timeout)
        #expect(clientSide?.errno == 2013)
        #expect(try await client.query("SELECT 1 AS one").rows.first?.int64("one") == 1)
        await client.shutdown()
    }

    // MARK: - Migrator

    @Test("the project's migrations apply once; a second run applies nothing")
    func projectMigrationsAreIdempotent() async throws {
        try await withClient { client in
            let migrator = Migrator(
                client: client,
                directory: ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR"),
                logger: Self.logger
            )
            _ = try await migrator.migrate()
            #expect(try await migrator.migrate() == [])
            let tables = try await client.query(
                "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE()"
            ).rows.compactMap { $0.string("name") }
            for table in ["schema_migrations", "stock", "stock_ledger", "reservation_journal", "reconcile_results"] {
                #expect(tables.contains(table))
            }
        }
    }

    @Test("new migrations apply in numeric order exactly once, even from two concurrent runs")
    func migratorAppliesNewFilesOnce() async throws {
        let suffix = Self.uniqueSuffix()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("migrations_\(suffix)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let files = ["0001_first_\(suffix).sql", "0002_second_\(suffix).sql"]
        try """
            -- a comment before the statement
            CREATE TABLE IF NOT EXISTS m1_\(suffix) (
                id BIGINT NOT NULL PRIMARY KEY
            );
            INSERT INTO m1_\(suffix) (id) VALUES (1);
            -- a trailing comment
            """.write(to: directory.appendingPathComponent(files[0]), atomically: true, encoding: .utf8)
        // Depends on the first file: it only works when the files run in order.
        try "INSERT INTO m1_\(suffix) (id) SELECT id + 1 FROM m1_\(suffix);\n"
            .write(to: directory.appendingPathComponent(files[1]), atomically: true, encoding: .utf8)
        try "not a migration".write(to: directory.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)

        try await withClient { client in
            defer { try? FileManager.default.removeItem(at: directory) }
            do {
                let migrator = Migrator(client: client, directory: directory, logger: Self.logger)
                async let firstRun = migrator.migrate()
                async let secondRun = migrator.migrate()
                let applied = try await firstRun + secondRun
                #expect(applied.sorted() == files)
                #expect(try await migrator.migrate() == [])
                let ids = try await client.query("SELECT id FROM m1_\(suffix) ORDER BY id").rows.map { $0.int64("id") }
                #expect(ids == [1, 2])
            } catch {
                Issue.record(error)
            }
            _ = try? await client.query("DROP TABLE IF EXISTS m1_\(suffix)")
            for file in files {
                _ = try? await client.query("DELETE FROM schema_migrations WHERE version = ?", [.string(file)])
            }
        }
    }

    // MARK: - StockRepository

    @Test("a stock change applies once per source and keeps the ledger")
    func stockRepositoryAppliesOnce() async throws {
        try await withClient { client in
            _ = try await Migrator(
                client: client,
                directory: ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR"),
                logger: Self.logger
            ).migrate()
            let bizId = "t_\(Self.uniqueSuffix())"
            do {
                try await exerciseStockRepository(client: client, bizId: bizId)
            } catch {
                Issue.record(error)
            }
            _ = try? await client.query("DELETE FROM stock WHERE biz_id = ?", [.string(bizId)])
            _ = try? await client.query("DELETE FROM stock_ledger WHERE biz_id = ?", [.string(bizId)])
        }
    }

    private func exerciseStockRepository(client: MySQLClient, bizId: String) async throws {
        let repository = StockRepository(client: client)
        #expect(try await repository.row(bizId: bizId, skuId: 42) == nil)
        let first = StockChange(bizId: bizId, skuId: 42, delta: 10, reason: "set", source: "\(bizId):set:1")
        guard case .applied(10, let firstVersion?) = try await repository.apply(first) else {
            Issue.record("the first change was not applied with a version")
            return
        }
        #expect(try await repository.apply(first) == .duplicate(half: .unnamed))
        let second = StockChange(
            bizId: bizId, skuId: 42, delta: -3, reason: "damage", source: "\(bizId):adj:2",
            infinite: false, dangerNum: 5, backorderLimit: 2
        )
        #expect(try await repository.apply(second) == .applied(stockAfter: 7, version: firstVersion + 1))
        #expect(
            try await repository.row(bizId: bizId, skuId: 42)
                == StockRow(bizId: bizId, skuId: 42, stock: 7, infinite: false, dangerNum: 5, backorderLimit: 2)
        )
        let ledger = try await client.query(
            "SELECT delta, stock_after, reason FROM stock_ledger WHERE biz_id = ? ORDER BY id",
            [.string(bizId)]
        ).rows.map { [$0.int64("delta"), $0.int64("stock_after")] }
        #expect(ledger == [[10, 10], [-3, 7]])

        // Concurrent changes of one item serialise on its row; every one lands exactly once.
        try await withThrowingTaskGroup(of: StockChangeOutcome.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try await repository.apply(
                        StockChange(bizId: bizId, skuId: 42, delta: 1, reason: "inbound", source: "\(bizId):in:\(index % 10)")
                    )
                }
            }
            let outcomes = try await group.reduce(into: []) { $0.append($1) }
            #expect(outcomes.filter { $0 == .duplicate(half: .unnamed) }.count == 10)
        }
        #expect(try await repository.row(bizId: bizId, skuId: 42)?.stock == 17)
    }

    private func kill(_ connectionID: Int64, using admin: MySQLClient) async throws {
        // KILL cannot be prepared, and the id is a number this test read itself.
        try await admin.withConnection { try $0.execute("KILL CONNECTION \(connectionID)") }
    }

    // MARK: - Helpers

    static let logger: Logger = {
        var logger = Logger(label: "MySQLClientTests")
        logger.logLevel = .warning
        return logger
    }()

    static func configuration(poolSize: Int = 4, idleValidationSeconds: Int = 5) -> MySQLConfiguration {
        var configuration = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
        configuration.poolSize = poolSize
        configuration.idleValidationSeconds = idleValidationSeconds
        return configuration
    }

    static func uniqueSuffix() -> String {
        String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12)).lowercased()
    }
}

/// Runs `body` with a client on the test database and shuts the client down however `body` ends.
func withClient<T>(
    poolSize: Int = 4,
    idleValidationSeconds: Int = 5,
    readTimeoutSeconds: Int = 10,
    _ body: (MySQLClient) async throws -> T
) async throws -> T {
    var configuration = MySQLClientTests.configuration(poolSize: poolSize, idleValidationSeconds: idleValidationSeconds)
    configuration.readTimeoutSeconds = readTimeoutSeconds
    let client = MySQLClient(configuration: configuration, logger: MySQLClientTests.logger)
    do {
        let value = try await body(client)
        await client.shutdown()
        return value
    } catch {
        await client.shutdown()
        throw error
    }
}

/// Runs `body` with a fresh table of the given columns, named uniquely so parallel tests never share one, and
/// drops it however `body` ends.
private func withTable<T>(
    _ client: MySQLClient,
    _ columns: String,
    _ body: (String) async throws -> T
) async throws -> T {
    let table = "t_\(MySQLClientTests.uniqueSuffix())"
    try await client.withConnection { try $0.execute("CREATE TABLE \(table) (\(columns)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4") }
    do {
        let value = try await body(table)
        try await client.withConnection { try $0.execute("DROP TABLE IF EXISTS \(table)") }
        return value
    } catch {
        try? await client.withConnection { try $0.execute("DROP TABLE IF EXISTS \(table)") }
        throw error
    }
}

