import CMariaDB

/// One leased connection, handed to the closure of `MySQLClient.withConnection` / `withTransaction`.
///
/// Every method blocks the calling thread on the network, which is why the type is not `Sendable`: it only exists
/// inside a closure that the client runs on its own thread pool, and it stops working when that closure returns.
public final class MySQLConnection {
    /// Most prepared statements kept per connection; the server caps the total (`max_prepared_stmt_count`).
    static let statementCacheLimit = 256

    private let handle: MySQLConnectionHandle
    private var isLeased = true
    /// When the current call into Connector/C began, to recognise a read timeout.
    private var operationStarted = ContinuousClock.now
    /// The statement running now, for the log line of a connection it breaks.
    private var currentSQL = ""
    /// The isolation the transaction in progress was started with (`MySQLClient.withTransaction(isolation:)`); nil
    /// when none was named (the server's default) or outside a transaction. For statements whose correctness depends
    /// on it to check.
    public private(set) var transactionIsolation: MySQLIsolation?

    init(handle: MySQLConnectionHandle) {
        self.handle = handle
    }

    /// Runs one statement through the binary protocol with `binds` as the values of its `?` placeholders, and
    /// returns all of its rows. Values never become part of the SQL text, so they need no escaping. The statement
    /// is prepared once per connection and reused.
    public func query(_ sql: String, _ binds: [MySQLValue] = []) throws -> MySQLResult {
        try handle.enter(sql)
        defer { handle.leave() }
        let mysql = try liveConnection()
        currentSQL = sql
        do {
            return try run(preparedStatement(sql, on: mysql), binds)
        } catch let error as MySQLError where error.errno == 1615 || error.errno == 2057 {
            // A schema change invalidated the cached statement: the server could not re-prepare it by itself
            // (ER_NEED_REPREPARE), or its result now has a different number of columns (CR_NEW_STMT_METADATA).
            // Closing it also discards the result Connector/C left pending; a fresh prepare sees the new schema.
            dropStatement(sql)
            return try run(preparedStatement(sql, on: mysql), binds)
        }
    }

    /// Runs SQL text as is, through the text protocol, discarding any rows. Meant for DDL and statements the
    /// binary protocol cannot prepare; never build its text from outside input, use `query` with binds for values.
    public func execute(_ sql: String) throws {
        try handle.enter(sql)
        defer { handle.leave() }
        let mysql = try liveConnection()
        currentSQL = sql
        let status = sql.withCString { mysql_real_query(mysql, $0, CUnsignedLong(sql.utf8.count)) }
        guard status == 0 else { throw connectionError(mysql) }
        while true {
            if let result = mysql_store_result(mysql) {
                mysql_free_result(result)
            } else if mysql_field_count(mysql) != 0 {
                throw connectionError(mysql)
            }
            let next = mysql_next_result(mysql)
            if next > 0 { throw connectionError(mysql) }
            if next < 0 { return }
        }
    }

    // MARK: - Used by MySQLClient

    func ping() throws {
        let mysql = try liveConnection()
        guard mysql_ping(mysql) == 0 else { throw connectionError(mysql) }
    }

    /// Starts a transaction: `SET TRANSACTION ISOLATION LEVEL` first when `isolation` is given (it applies to the
    /// next transaction only, so the pooled connection keeps the server's default), then `START TRANSACTION` (one
    /// round trip, where turning autocommit off and back on around the COMMIT took one more), `WITH CONSISTENT
    /// SNAPSHOT` when asked. A start that fails after its isolation was set breaks the connection: the setting would
    /// otherwise wait on it for the next lease's transaction.
    func begin(isolation: MySQLIsolation? = nil, consistentSnapshot: Bool = false) throws {
        transactionIsolation = nil
        if let isolation { try execute("SET TRANSACTION ISOLATION LEVEL \(isolation.rawValue)") }
        do {
            try execute(consistentSnapshot ? "START TRANSACTION WITH CONSISTENT SNAPSHOT" : "START TRANSACTION")
        } catch {
            if isolation != nil && !handle.isBroken {
                handle.isBroken = true
                handle.brokenBy = "START TRANSACTION after SET TRANSACTION failed: \(error)"
            }
            throw error
        }
        transactionIsolation = isolation
    }

    /// Commits; a COMMIT that failed otherwise is rolled back and its error rethrown. Throws `.commitOutcomeUnknown`
    /// when the connection broke during COMMIT: it may have reached the server and taken effect, and the caller must
    /// not take it as rolled back.
    func commitOrRollBack() throws {
        transactionIsolation = nil
        do {
            let mysql = try liveConnection()
            guard mysql_commit(mysql) == 0 else { throw connectionError(mysql) }
        } catch let error as MySQLError where error.discardsConnection {
            throw MySQLError(
                code: .commitOutcomeUnknown, errno: error.errno, sqlState: error.sqlState,
                message: "commit outcome unknown: \(error.message)"
            )
        } catch {
            rollbackQuietly()
            throw error
        }
    }

    /// Rolls back (and turns autocommit back on if anyone turned it off), ignoring failures: it runs while another
    /// error is already on its way out, and a connection that cannot roll back is broken and will be closed, which
    /// rolls back too.
    func rollbackQuietly() {
        transactionIsolation = nil
        guard let mysql = try? liveConnection() else { return }
        if mysql_rollback(mysql) != 0 {
            _ = connectionError(mysql)
            return
        }
        if mysql.pointee.server_status & UInt32(SERVER_STATUS_AUTOCOMMIT) == 0, mysql_autocommit(mysql, 1) != 0 {
            _ = connectionError(mysql)
        }
    }

    /// Ends the lease: a connection still inside a transaction (the closure began one and did not finish it) is
    /// rolled back, so the next lease never inherits half a transaction.
    func endLease() -> (wasInTransaction: Bool, isBroken: Bool, brokenBy: String) {
        var wasInTransaction = false
        if let mysql = handle.mysql, !handle.isBroken {
            let status = mysql.pointee.server_status
            let inTransaction = status & UInt32(SERVER_STATUS_IN_TRANS) != 0
            let autocommitOff = status & UInt32(SERVER_STATUS_AUTOCOMMIT) == 0
            if inTransaction || autocommitOff {
                wasInTransaction = inTransaction
                rollbackQuietly()
            }
        }
        isLeased = false
        return (wasInTransaction, handle.isBroken, handle.brokenBy)
    }

    // MARK: - Statements

    private func liveConnection() throws -> UnsafeMutablePointer<MYSQL> {
        guard isLeased else {
            throw MySQLError(code: .queryFailed, message: "MySQLConnection used after its withConnection closure returned")
        }
        guard !handle.isBroken, let mysql = handle.mysql else {
            throw MySQLError(code: .connectionLost, message: "the connection was lost earlier in this closure")
        }
        operationStarted = .now
        return mysql
    }

    private func preparedStatement(_ sql: String, on mysql: UnsafeMutablePointer<MYSQL>) throws -> UnsafeMutablePointer<MYSQL_STMT> {
        if let cached = handle.statements[sql] {
            return cached
        }
        guard let statement = mysql_stmt_init(mysql) else { throw connectionError(mysql) }
        let status = sql.withCString { mysql_stmt_prepare(statement, $0, CUnsignedLong(sql.utf8.count)) }
        guard status == 0 else {
            let error = statementError(statement)
            mysql_stmt_close(statement)
            throw error
        }
        if handle.statements.count >= Self.statementCacheLimit, let victim = handle.statements.first {
            // Any victim will do: a working set larger than the cache means ad-hoc SQL, which no order saves.
            mysql_stmt_close(victim.value)
            handle.statements.removeValue(forKey: victim.key)
        }
        handle.statements[sql] = statement
        return statement
    }

    private func dropStatement(_ sql: String) {
        if let statement = handle.statements.removeValue(forKey: sql) {
            mysql_stmt_close(statement)
        }
    }

    private func run(_ statement: UnsafeMutablePointer<MYSQL_STMT>, _ binds: [MySQLValue]) throws -> MySQLResult {
        let placeholders = Int(mysql_stmt_param_count(statement))
        guard binds.count == placeholders else {
            throw MySQLError(
                code: .queryFailed,
                sqlState: "07001",
                message: "the statement has \(placeholders) placeholders but \(binds.count) values were bound"
            )
        }
        // Connector/C keeps pointers into these buffers until mysql_stmt_execute has sent them.
        let parameters = ParameterBindings(binds)
        defer { parameters.deallocate() }
        if placeholders > 0, mysql_stmt_bind_param(statement, parameters.binds) != 0 {
            throw statementError(statement)
        }
        guard mysql_stmt_execute(statement) == 0 else { throw statementError(statement) }
        defer { _ = mysql_stmt_free_result(statement) }

        do {
            var result = MySQLResult()
            if mysql_stmt_field_count(statement) > 0 {
                result.rows = try fetchRows(statement)
            }
            result.affectedRows = mysql_stmt_affected_rows(statement)
            result.lastInsertID = mysql_stmt_insert_id(statement)
            try discardFurtherResults(statement)
            return result
        } catch {
            // An error in place of a row (InnoDB found a deadlock after a locking read sent its first rows) leaves
            // Connector/C counting rows as still to come, which mysql_stmt_free_result does not clear: the
            // statement's next execution would first wait for them, for the whole read timeout, and lose the
            // connection. A reset makes it a prepared statement again.
            _ = mysql_stmt_reset(statement)
            throw error
        }
    }

    private func fetchRows(_ statement: UnsafeMutablePointer<MYSQL_STMT>) throws -> [MySQLRow] {
        guard let metadata = mysql_stmt_result_metadata(statement) else { throw statementError(statement) }
        defer { mysql_free_result(metadata) }
        let count = Int(mysql_num_fields(metadata))
        guard count > 0, let fields = mysql_fetch_fields(metadata) else { return [] }
        let columns = (0..<count).map { String(cString: fields[$0].name) }

        // Buffering the whole result first frees the server (and its locks) before rows are converted.
        guard mysql_stmt_store_result(statement) == 0 else { throw statementError(statement) }
        let outputs = ResultBindings(fields: fields, count: count)
        defer { outputs.deallocate() }
        guard mysql_stmt_bind_result(statement, outputs.binds) == 0 else { throw statementError(statement) }

        var rows: [MySQLRow] = []
        rows.reserveCapacity(Int(clamping: mysql_stmt_num_rows(statement)))
        while true {
            let status = mysql_stmt_fetch(statement)
            if status == MYSQL_NO_DATA { break }
            // MYSQL_DATA_TRUNCATED only says some column did not fit its buffer; `value` fetches those whole.
            guard status == 0 || status == MYSQL_DATA_TRUNCATED else { throw statementError(statement) }
            var values: [MySQLValue] = []
            values.reserveCapacity(count)
            for column in 0..<count {
                values.append(try outputs.value(at: column, of: statement, onError: statementError))
            }
            rows.append(MySQLRow(columns: columns, values: values))
        }
        return rows
    }

    /// A CALL returns a status result after its rows; leaving it unread would put the connection out of sync.
    private func discardFurtherResults(_ statement: UnsafeMutablePointer<MYSQL_STMT>) throws {
        while mysql_stmt_more_results(statement) != 0 {
            let next = mysql_stmt_next_result(statement)
            if next > 0 { throw statementError(statement) }
            if next < 0 { return }
            if mysql_stmt_field_count(statement) > 0 {
                guard mysql_stmt_store_result(statement) == 0 else { throw statementError(statement) }
                _ = mysql_stmt_free_result(statement)
            }
        }
    }

    // MARK: - Errors

    /// Reads the connection's last error, and marks the connection broken when the error says it is.
    private func connectionError(_ mysql: UnsafeMutablePointer<MYSQL>) -> MySQLError {
        record(MySQLError(
            errno: mysql_errno(mysql),
            sqlState: String(cString: mysql_sqlstate(mysql)),
            message: String(cString: mysql_error(mysql))
        ))
    }

    private func statementError(_ statement: UnsafeMutablePointer<MYSQL_STMT>) -> MySQLError {
        record(MySQLError(
            errno: mysql_stmt_errno(statement),
            sqlState: String(cString: mysql_stmt_sqlstate(statement)),
            message: String(cString: mysql_stmt_error(statement))
        ))
    }

    private func record(_ error: MySQLError) -> MySQLError {
        var error = error
        if error.errno == 2013, operationStarted.duration(to: .now) >= handle.readTimeout {
            error = MySQLError(
                code: .timeout,
                errno: error.errno,
                sqlState: error.sqlState,
                message: "\(error.message) (no reply within the \(handle.readTimeout) read timeout)"
            )
        }
        if error.discardsConnection {
            handle.isBroken = true
            let elapsed = operationStarted.duration(to: .now)
            let statement = currentSQL.split(whereSeparator: \.isWhitespace).joined(separator: " ").prefix(120)
            handle.brokenBy = "\(statement) (after \(elapsed)): \(error.message)"
        }
        return error
    }
}

@available(*, unavailable, message: "a MySQLConnection lives on one pool thread inside one closure")
extension MySQLConnection: Sendable {}
