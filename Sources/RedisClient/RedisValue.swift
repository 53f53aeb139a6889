/// A reply from Redis, converted from hiredis' `redisReply` into plain Swift values so that no C memory
/// outlives the decoder.
public enum RedisValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case status(String)
    case error(String)
    case integer(Int64)
    case string(String)
    case array([RedisValue])

    /// The value as an integer, accepting the string form Lua and HGET return.
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .string(let text), .status(let text): return Int64(text)
        default: return nil
        }
    }

    /// The value as text, for strings, statuses and integers.
    public var text: String? {
        switch self {
        case .string(let text), .status(let text): return text
        case .integer(let value): return String(value)
        default: return nil
        }
    }

    /// The elements of an array reply, or nil for any other kind.
    public var array: [RedisValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The server's error text when the reply is an error.
    public var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }

    public var description: String {
        switch self {
        case .null: return "nil"
        case .status(let text): return text
        case .error(let message): return "ERR(\(message))"
        case .integer(let value): return String(value)
        case .string(let text): return "\"\(text)\""
        case .array(let elements): return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
