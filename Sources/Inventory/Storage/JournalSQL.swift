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

/// DATETIME(3) text in UTC, as the journal stores `expires_at`, to and from Unix milliseconds.
enum JournalTime {
    /// "YYYY-MM-DD HH:MM:SS.mmm" in UTC; clamped to the years 1970-9999.
    static func datetime(milliseconds: Int64) -> String {
        let clamped = min(max(milliseconds, 0), 253_402_300_799_999)
        let days = clamped / 86_400_000
        var rest = clamped % 86_400_000
        let (year, month, day) = civil(fromDays: days)
        let hour = rest / 3_600_000
        rest %= 3_600_000
        let minute = rest / 60_000
        rest %= 60_000
        let second = rest / 1000
        let millisecond = rest % 1000
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2)) \(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(millisecond, 3))"
    }

    /// Unix milliseconds of "YYYY-MM-DD HH:MM:SS[.fff...]" read as UTC; nil when the text is not of that form.
    static func milliseconds(fromDatetime text: String) -> Int64? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 19 else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for index in range {
                let byte = bytes[index]
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var millisecond: Int64 = 0
        if bytes.count > 20, bytes[19] == UInt8(ascii: ".") {
            let digits = min(bytes.count, 23)
            guard let fraction = number(20..<digits) else { return nil }
            millisecond = fraction
            for _ in digits..<23 { millisecond *= 10 }
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millisecond
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count since 1970-01-01.
    private static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
