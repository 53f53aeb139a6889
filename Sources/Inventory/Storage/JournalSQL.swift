import MySQLClient

// MARK: - SQL helpers

/// Runs an INSERT of rows this transaction found missing a moment ago. A duplicate key means another transaction
/// wrote one of them since (the same events applied concurrently): that is turned into `.deadlock`, so the batch
/// rolls back and is retried, and the retry finds those rows.
func insertingConcurrently(_ connection: MySQLConnection, _ sql: String, _ binds: [MySQLValue]) throws -> MySQLResult {
    do {
        return try connection.query(sql, binds)
    } catch let error as MySQLError where error.code == .duplicateKey {
        throw MySQLError(
            code: .deadlock, errno: error.errno, sqlState: error.sqlState,
            message: "a row appeared while the batch ran (applied concurrently): \(error.message)"
        )
    }
}

/// The placeholder of every sku_id value. sku_id is BIGINT UNSIGNED but `MySQLValue` carries signed integers: ids up
/// to `Int64.max` bind as `.int`, larger ones as their decimal text (`skuValue`). A bare text parameter is not
/// compared exactly with the column: in an IN list of several such values MariaDB reads them through a double, and
/// 18446744073709551614 matches the row of 18446744073709551615. The cast makes every value an exact unsigned integer
/// (and keeps the IN lists range scans of the unique key).
let skuPlaceholder = "CAST(? AS UNSIGNED)"

/// A sku_id parameter, for the `skuPlaceholder` placeholder.
func skuValue(_ skuId: UInt64) -> MySQLValue {
    if let signed = Int64(exactly: skuId) { return .int(signed) }
    return .string(String(skuId))
}

/// `count` copies of `tuple`, separated by commas.
func tuples(_ count: Int, _ tuple: String, separator: String = ", ") -> String {
    Array(repeating: tuple, count: count).joined(separator: separator)
}

/// Chunks of at most `limit` elements, for INSERTs, which must not repeat a row.
func exactChunks<T>(_ items: [T], limit: Int = JournalRepository.maxRowsPerStatement) -> [ArraySlice<T>] {
    stride(from: 0, to: items.count, by: limit).map { items[$0..<min($0 + limit, items.count)] }
}

/// Chunks of at most `limit` elements (a power of two), the last one padded to the next power of two by repeating
/// its last element, for statements that a repeated key does not change: an IN list matches the same rows, a CASE
/// takes its first matching branch. Each such statement then has at most log2(limit) shapes, which the
/// connections' prepared-statement caches keep, instead of one per batch size.
///
/// Never one element: MariaDB turns `(a, b) IN ((?, ?))` into a row equality that its single-table UPDATE and
/// DELETE cannot use an index for, and scans the whole table (EXPLAIN: `index PRIMARY`, 1.7M rows examined for
/// one journal row; the stock row's lock held meanwhile). Two equal tuples keep the range plan.
func paddedChunks<T>(_ items: [T], limit: Int = JournalRepository.maxRowsPerStatement) -> [ArraySlice<T>] {
    exactChunks(items, limit: limit).map { chunk in
        var size = 2
        while size < chunk.count { size <<= 1 }
        guard size > chunk.count, let last = chunk.last else { return chunk }
        return (Array(chunk) + repeatElement(last, count: size - chunk.count))[...]
    }
}


// MARK: - Time

/// Times of the journal and the code pools (`expires_at`, DATETIME(3) holding UTC) to and from Unix milliseconds,
/// converted by MySQL with interval arithmetic from the epoch: no time zone enters (neither the server's nor the
/// session's), and no calendar arithmetic is done here.
enum JournalTime {
    /// The placeholder of a time written or compared; bind `value(milliseconds:)` (or `.null` for none).
    static let placeholder = "(TIMESTAMP'1970-01-01 00:00:00' + INTERVAL ? MICROSECOND)"

    /// `column` read back as Unix milliseconds (NULL stays NULL).
    static func milliseconds(_ column: String) -> String {
        "TIMESTAMPDIFF(MICROSECOND, TIMESTAMP'1970-01-01 00:00:00', \(column)) DIV 1000"
    }

    /// The bind value of `placeholder`: microseconds since the epoch, clamped to the years 1970-9999 (DATETIME's).
    static func value(milliseconds: Int64) -> MySQLValue {
        .int(min(max(milliseconds, 0), 253_402_300_799_999) * 1000)
    }
}
