import NIOCore

/// A request body in the plain subset of JSON that well-formed clients send: objects, arrays, ASCII strings without
/// escapes, integers from 0 to 2^64-1, `true` and `false`. The hot route (a reserve) reads such a body without
/// `JSONDecoder` and Foundation's `Data` (about a tenth of the service's CPU per reserve, RESULTS.md); anything
/// outside the subset (`null`, fractions, exponents, negative numbers, escapes, other bytes than printable ASCII in a
/// string, a key given twice, nesting deeper than `maxDepth`, or invalid JSON) makes `parse` answer nil, and the
/// caller reads the body with `JSONDecoder` as before, so every problem report stays the one it was.
enum PlainJSON: Equatable {
    case object([String: PlainJSON])
    case array([PlainJSON])
    case string(String)
    case integer(UInt64)
    case bool(Bool)

    static let maxDepth = 8

    /// The value `bytes` hold, or nil when they are not in the plain subset (or not JSON).
    static func parse(_ buffer: ByteBuffer) -> PlainJSON? {
        buffer.withUnsafeReadableBytes { bytes in
            var parser = Parser(bytes: bytes)
            parser.skipSpace()
            guard let value = parser.value(depth: 0) else { return nil }
            parser.skipSpace()
            return parser.index == bytes.count ? value : nil
        }
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        /// Consumes `byte` if it comes next.
        mutating func take(_ byte: UInt8) -> Bool {
            guard current == byte else { return false }
            index += 1
            return true
        }

        mutating func value(depth: Int) -> PlainJSON? {
            guard depth < PlainJSON.maxDepth, let byte = current else { return nil }
            switch byte {
            case UInt8(ascii: "{"): return object(depth: depth)
            case UInt8(ascii: "["): return array(depth: depth)
            case UInt8(ascii: "\""): return string().map(PlainJSON.string)
            case UInt8(ascii: "t"): return literal("true") ? .bool(true) : nil
            case UInt8(ascii: "f"): return literal("false") ? .bool(false) : nil
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return integer().map(PlainJSON.integer)
            default: return nil
            }
        }

        mutating func object(depth: Int) -> PlainJSON? {
            index += 1  // {
            var fields: [String: PlainJSON] = [:]
            skipSpace()
            if take(UInt8(ascii: "}")) { return .object(fields) }
            while true {
                skipSpace()
                guard current == UInt8(ascii: "\""), let key = string() else { return nil }
                skipSpace()
                guard take(UInt8(ascii: ":")) else { return nil }
                skipSpace()
                guard let value = value(depth: depth + 1), fields.updateValue(value, forKey: key) == nil else { return nil }
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                return take(UInt8(ascii: "}")) ? .object(fields) : nil
            }
        }

        mutating func array(depth: Int) -> PlainJSON? {
            index += 1  // [
            var elements: [PlainJSON] = []
            skipSpace()
            if take(UInt8(ascii: "]")) { return .array(elements) }
            while true {
                skipSpace()
                guard let element = value(depth: depth + 1) else { return nil }
                elements.append(element)
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                return take(UInt8(ascii: "]")) ? .array(elements) : nil
            }
        }

        /// A string of printable ASCII without escapes (the opening quote is next).
        mutating func string() -> String? {
            index += 1  // "
            let start = index
            while let byte = current {
                if byte == UInt8(ascii: "\"") {
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    index += 1
                    return text
                }
                guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            return nil
        }

        /// Digits without a leading zero (but "0" itself), fitting in UInt64, followed by no fraction or exponent
        /// (the caller then finds a byte it does not expect and gives up).
        mutating func integer() -> UInt64? {
            var value: UInt64 = 0
            let start = index
            while let byte = current, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
                let (times, overflowA) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflowB) = times.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
                guard !overflowA, !overflowB else { return nil }
                value = sum
                index += 1
            }
            if bytes[start] == UInt8(ascii: "0") && index - start > 1 { return nil }
            return value
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }
    }
}

/// A field type a body reads from a plain value (`PlainJSON`) as well as through `Decodable`; nil when the value is
/// of another type or out of the type's range (the body is then read by `JSONDecoder`, which reports it).
protocol PlainDecodable {
    init?(plain: PlainJSON)
}

extension String: PlainDecodable {
    init?(plain: PlainJSON) {
        guard case .string(let text) = plain else { return nil }
        self = text
    }
}

extension Bool: PlainDecodable {
    init?(plain: PlainJSON) {
        guard case .bool(let flag) = plain else { return nil }
        self = flag
    }
}

/// The integers a body reads: a plain integer within the type's range.
extension PlainDecodable where Self: FixedWidthInteger {
    init?(plain: PlainJSON) {
        guard case .integer(let value) = plain, let read = Self(exactly: value) else { return nil }
        self = read
    }
}

extension UInt64: PlainDecodable {}
extension Int64: PlainDecodable {}
extension Int: PlainDecodable {}

extension Array: PlainDecodable where Element: PlainDecodable {
    init?(plain: PlainJSON) {
        guard case .array(let values) = plain else { return nil }
        var elements: [Element] = []
        elements.reserveCapacity(values.count)
        for value in values {
            guard let element = Element(plain: value) else { return nil }
            elements.append(element)
        }
        self = elements
    }
}

/// The fields of a plain object, read as `FieldReader` reads a decoder's: an absent field is nil (and, required, a
/// problem); a field whose value the type does not take marks the read `unsupported`, and the caller reads the body
/// with `JSONDecoder` instead.
struct PlainFields: FieldSource {
    let fields: [String: PlainJSON]
    let pointer: String
    var problems: [Problem.FieldError] = []
    private(set) var unsupported = false

    init(_ fields: [String: PlainJSON], pointer: String) {
        self.fields = fields
        self.pointer = pointer
    }

    mutating func read<T: Decodable & PlainDecodable>(_ field: String, _ type: T.Type, expected: String) -> T? {
        guard let value = fields[field] else { return nil }
        guard let read = T(plain: value) else {
            unsupported = true
            return nil
        }
        return read
    }
}
