import CMariaDB

/// Input buffers for one execution: one `MYSQL_BIND` per placeholder, pointing at copies of the values.
struct ParameterBindings {
    let binds: UnsafeMutablePointer<MYSQL_BIND>
    private let lengths: UnsafeMutablePointer<CUnsignedLong>
    private let buffers: [UnsafeMutableRawPointer?]

    init(_ values: [MySQLValue]) {
        let capacity = max(values.count, 1)
        binds = .allocate(capacity: capacity)
        binds.initialize(repeating: MYSQL_BIND(), count: capacity)
        lengths = .allocate(capacity: capacity)
        lengths.initialize(repeating: 0, count: capacity)
        var buffers: [UnsafeMutableRawPointer?] = []
        buffers.reserveCapacity(values.count)
        for (index, value) in values.enumerated() {
            var bind = MYSQL_BIND()
            let buffer: UnsafeMutableRawPointer?
            let length: Int
            switch value {
            case .null:
                bind.buffer_type = MYSQL_TYPE_NULL
                buffer = nil
                length = 0
            case .int(let integer):
                bind.buffer_type = MYSQL_TYPE_LONGLONG
                buffer = Self.copy(integer)
                length = MemoryLayout<Int64>.size
            case .double(let double):
                bind.buffer_type = MYSQL_TYPE_DOUBLE
                buffer = Self.copy(double)
                length = MemoryLayout<Double>.size
            case .string(let text):
                bind.buffer_type = MYSQL_TYPE_STRING
                buffer = Self.copy(text.utf8)
                length = text.utf8.count
            case .bytes(let bytes):
                // BLOB, not STRING, so the server treats the value as binary rather than utf8mb4 text.
                bind.buffer_type = MYSQL_TYPE_BLOB
                buffer = Self.copy(bytes)
                length = bytes.count
            }
            lengths[index] = CUnsignedLong(length)
            bind.buffer = buffer
            bind.buffer_length = CUnsignedLong(length)
            bind.length = lengths + index
            binds[index] = bind
            buffers.append(buffer)
        }
        self.buffers = buffers
    }

    func deallocate() {
        for buffer in buffers {
            buffer?.deallocate()
        }
        binds.deallocate()
        lengths.deallocate()
    }

    private static func copy<T: BitwiseCopyable>(_ value: T) -> UnsafeMutableRawPointer {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        buffer.storeBytes(of: value, as: T.self)
        return buffer
    }

    private static func copy<C: Collection<UInt8>>(_ bytes: C) -> UnsafeMutableRawPointer {
        // At least one byte, so an empty value still points at memory of its own rather than at whatever a
        // zero-byte allocation returns.
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
        UnsafeMutableRawBufferPointer(start: buffer, count: bytes.count).copyBytes(from: bytes)
        return buffer
    }
}

/// Output buffers for one result set, which `mysql_stmt_fetch` fills row by row.
///
/// Integers and floats are fetched in their binary form (no text round trip, no precision loss); everything else
/// as text or bytes into a buffer of modest size, and a value that does not fit is fetched again, whole, with
/// `mysql_stmt_fetch_column`, so large TEXT/BLOB columns cost memory only for the rows that need it.
struct ResultBindings {
    private enum Kind: Equatable {
        case integer(unsigned: Bool)
        case double
        case text
        case binary
    }

    /// Large enough for every number, date and typical VARCHAR; larger values take the re-fetch path.
    private static let maximumInitialCapacity = 1024
    /// MySQL's charset number for binary strings.
    private static let binaryCharset: UInt32 = 63

    let binds: UnsafeMutablePointer<MYSQL_BIND>
    private let kinds: [Kind]
    private let buffers: [UnsafeMutableRawPointer]
    private let capacities: [Int]
    private let lengths: UnsafeMutablePointer<CUnsignedLong>
    private let nulls: UnsafeMutablePointer<my_bool>
    private let truncations: UnsafeMutablePointer<my_bool>

    init(fields: UnsafeMutablePointer<MYSQL_FIELD>, count: Int) {
        binds = .allocate(capacity: count)
        binds.initialize(repeating: MYSQL_BIND(), count: count)
        lengths = .allocate(capacity: count)
        lengths.initialize(repeating: 0, count: count)
        nulls = .allocate(capacity: count)
        nulls.initialize(repeating: 0, count: count)
        truncations = .allocate(capacity: count)
        truncations.initialize(repeating: 0, count: count)
        var kinds: [Kind] = []
        var buffers: [UnsafeMutableRawPointer] = []
        var capacities: [Int] = []
        for index in 0..<count {
            let field = fields[index]
            let kind = Self.kind(of: field)
            var bind = MYSQL_BIND()
            let capacity: Int
            switch kind {
            case .integer(let unsigned):
                bind.buffer_type = MYSQL_TYPE_LONGLONG
                bind.is_unsigned = unsigned ? 1 : 0
                capacity = MemoryLayout<Int64>.size
            case .double:
                bind.buffer_type = MYSQL_TYPE_DOUBLE
                capacity = MemoryLayout<Double>.size
            case .text, .binary:
                bind.buffer_type = kind == .text ? MYSQL_TYPE_STRING : MYSQL_TYPE_BLOB
                // One spare byte, where Connector/C puts a terminating NUL when there is room.
                let declared = Int(clamping: field.length) &+ 1
                capacity = min(max(declared, 32), Self.maximumInitialCapacity)
            }
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
            bind.buffer = buffer
            bind.buffer_length = CUnsignedLong(capacity)
            bind.length = lengths + index
            bind.is_null = nulls + index
            bind.error = truncations + index
            binds[index] = bind
            kinds.append(kind)
            buffers.append(buffer)
            capacities.append(capacity)
        }
        self.kinds = kinds
        self.buffers = buffers
        self.capacities = capacities
    }

    func deallocate() {
        for buffer in buffers {
            buffer.deallocate()
        }
        binds.deallocate()
        lengths.deallocate()
        nulls.deallocate()
        truncations.deallocate()
    }

    /// The value of one column of the row the last `mysql_stmt_fetch` produced.
    func value(
        at column: Int,
        of statement: UnsafeMutablePointer<MYSQL_STMT>,
        onError: (UnsafeMutablePointer<MYSQL_STMT>) -> MySQLError
    ) throws -> MySQLValue {
        if nulls[column] != 0 {
            return .null
        }
        let buffer = buffers[column]
        switch kinds[column] {
        case .integer(unsigned: false):
            return .int(buffer.load(as: Int64.self))
        case .integer(unsigned: true):
            let value = buffer.load(as: UInt64.self)
            return value <= UInt64(Int64.max) ? .int(Int64(value)) : .string(String(value))
        case .double:
            return .double(buffer.load(as: Double.self))
        case .text:
            return .string(try withBytes(of: column, statement, onError) { String(decoding: $0, as: UTF8.self) })
        case .binary:
            return .bytes(try withBytes(of: column, statement, onError) { Array($0) })
        }
    }

    private func withBytes<R>(
        of column: Int,
        _ statement: UnsafeMutablePointer<MYSQL_STMT>,
        _ onError: (UnsafeMutablePointer<MYSQL_STMT>) -> MySQLError,
        _ body: (UnsafeRawBufferPointer) -> R
    ) throws -> R {
        let length = Int(lengths[column])
        if length <= capacities[column] {
            return body(UnsafeRawBufferPointer(start: buffers[column], count: length))
        }
        let whole = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 1)
        defer { whole.deallocate() }
        var bind = binds[column]
        bind.buffer = whole
        bind.buffer_length = CUnsignedLong(length)
        guard mysql_stmt_fetch_column(statement, &bind, UInt32(column), 0) == 0 else {
            throw onError(statement)
        }
        return body(UnsafeRawBufferPointer(start: whole, count: min(length, Int(lengths[column]))))
    }

    private static func kind(of field: MYSQL_FIELD) -> Kind {
        switch field.type {
        case MYSQL_TYPE_TINY, MYSQL_TYPE_SHORT, MYSQL_TYPE_INT24, MYSQL_TYPE_LONG, MYSQL_TYPE_LONGLONG, MYSQL_TYPE_YEAR:
            return .integer(unsigned: field.flags & UInt32(UNSIGNED_FLAG) != 0)
        case MYSQL_TYPE_FLOAT, MYSQL_TYPE_DOUBLE:
            return .double
        case MYSQL_TYPE_STRING, MYSQL_TYPE_VAR_STRING, MYSQL_TYPE_VARCHAR, MYSQL_TYPE_TINY_BLOB,
            MYSQL_TYPE_MEDIUM_BLOB, MYSQL_TYPE_LONG_BLOB, MYSQL_TYPE_BLOB, MYSQL_TYPE_BIT, MYSQL_TYPE_GEOMETRY:
            return field.charsetnr == binaryCharset ? .binary : .text
        default:
            // DECIMAL, dates and times, JSON, ENUM, SET: the server's text form is exact and what callers expect.
            return .text
        }
    }
}
