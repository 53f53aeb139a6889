/// One bound parameter or one result cell.
///
/// Results map column types as follows: integer columns become `.int` (an unsigned BIGINT above `Int64.max`
/// becomes `.string` with its decimal digits, so no value is ever wrapped), FLOAT and DOUBLE become `.double`,
/// binary strings and BLOBs become `.bytes`, and everything else (text, DECIMAL, dates, JSON) becomes `.string` in
/// the server's text form, which keeps DECIMAL exact.
public enum MySQLValue: Sendable, Hashable {
    /// SQL NULL.
    case null
    /// A signed 64-bit integer.
    case int(Int64)
    /// A double-precision float.
    case double(Double)
    /// UTF-8 text.
    case string(String)
    /// Raw bytes, for binary columns.
    case bytes([UInt8])
}

extension MySQLValue: ExpressibleByStringLiteral {
    /// A `.string` from a literal.
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension MySQLValue: ExpressibleByIntegerLiteral {
    /// An `.int` from a literal.
    public init(integerLiteral value: Int64) {
        self = .int(value)
    }
}

extension MySQLValue: ExpressibleByFloatLiteral {
    /// A `.double` from a literal.
    public init(floatLiteral value: Double) {
        self = .double(value)
    }
}

extension MySQLValue: ExpressibleByBooleanLiteral {
    /// `.int(1)` or `.int(0)`, which is how MySQL stores booleans.
    public init(booleanLiteral value: Bool) {
        self = .int(value ? 1 : 0)
    }
}

extension MySQLValue: ExpressibleByNilLiteral {
    /// `.null`.
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension MySQLValue {
    /// Whether this is SQL NULL.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The value as an integer: `.int` as is, `.string` when it is an integer in decimal (DECIMAL columns and
    /// `SUM()` results arrive as text), `.double` when it is integral.
    public var int64: Int64? {
        switch self {
        case .int(let value): return value
        case .string(let text): return Int64(text)
        case .double(let value): return Int64(exactly: value)
        case .null, .bytes: return nil
        }
    }

    /// The value as an unsigned integer, including unsigned BIGINT values above `Int64.max`.
    public var uint64: UInt64? {
        switch self {
        case .int(let value): return UInt64(exactly: value)
        case .string(let text): return UInt64(text)
        case .double(let value): return UInt64(exactly: value)
        case .null, .bytes: return nil
        }
    }

    /// The value as a double: `.double`, `.int`, or numeric `.string` (DECIMAL).
    public var double: Double? {
        switch self {
        case .double(let value): return value
        case .int(let value): return Double(value)
        case .string(let text): return Double(text)
        case .null, .bytes: return nil
        }
    }

    /// The value as text: `.string` as is, numbers in decimal, `.bytes` when they are valid UTF-8.
    public var string: String? {
        switch self {
        case .string(let text): return text
        case .int(let value): return String(value)
        case .double(let value): return String(value)
        case .bytes(let bytes):
            // Decoding repairs invalid UTF-8 with U+FFFD; comparing the bytes back tells whether it had to.
            let text = String(decoding: bytes, as: UTF8.self)
            return text.utf8.elementsEqual(bytes) ? text : nil
        case .null: return nil
        }
    }

    /// The value as bytes: `.bytes` as is, `.string` as its UTF-8.
    public var bytes: [UInt8]? {
        switch self {
        case .bytes(let bytes): return bytes
        case .string(let text): return Array(text.utf8)
        case .null, .int, .double: return nil
        }
    }

    /// The value as a boolean, for TINYINT(1) columns: non-zero is true.
    public var bool: Bool? {
        int64.map { $0 != 0 }
    }
}

/// One result row: column names in select order and one value per column.
public struct MySQLRow: Sendable {
    /// Column names (or aliases) in select order.
    public let columns: [String]
    /// One value per column, in the same order.
    public let values: [MySQLValue]

    /// Creates a row; `columns` and `values` must have the same count.
    public init(columns: [String], values: [MySQLValue]) {
        precondition(columns.count == values.count, "a row needs one value per column")
        self.columns = columns
        self.values = values
    }

    /// The value at a column position.
    public subscript(index: Int) -> MySQLValue {
        values[index]
    }

    /// The value of the first column with this name, nil when there is no such column (a NULL cell is `.null`).
    public subscript(column: String) -> MySQLValue? {
        guard let index = columns.firstIndex(of: column) else { return nil }
        return values[index]
    }

    /// The column as an integer; nil for NULL, a missing column, or a non-integer value (see `MySQLValue.int64`).
    public func int64(_ column: String) -> Int64? {
        self[column]?.int64
    }

    /// The column as an unsigned integer (see `MySQLValue.uint64`).
    public func uint64(_ column: String) -> UInt64? {
        self[column]?.uint64
    }

    /// The column as a double (see `MySQLValue.double`).
    public func double(_ column: String) -> Double? {
        self[column]?.double
    }

    /// The column as text; nil for NULL or a missing column (see `MySQLValue.string`).
    public func string(_ column: String) -> String? {
        self[column]?.string
    }

    /// The column as bytes (see `MySQLValue.bytes`).
    public func bytes(_ column: String) -> [UInt8]? {
        self[column]?.bytes
    }

    /// The column as a boolean (see `MySQLValue.bool`).
    public func bool(_ column: String) -> Bool? {
        self[column]?.bool
    }
}

/// What one statement produced.
public struct MySQLResult: Sendable {
    /// The rows of the statement's result set; empty for statements without one.
    public var rows: [MySQLRow]
    /// Rows changed by INSERT/UPDATE/DELETE (MySQL counts an upsert that updated as 2, an unchanged row as 0);
    /// for a SELECT, the number of rows returned.
    public var affectedRows: UInt64
    /// The AUTO_INCREMENT value generated by an INSERT, 0 when none was generated.
    public var lastInsertID: UInt64

    /// Creates a result.
    public init(rows: [MySQLRow] = [], affectedRows: UInt64 = 0, lastInsertID: UInt64 = 0) {
        self.rows = rows
        self.affectedRows = affectedRows
        self.lastInsertID = lastInsertID
    }
}
