/// What can go wrong talking to Redis, as a small set of codes callers map once (to 503, for most).
public struct RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure.
    public enum Code: Sendable, Equatable {
        /// No connection could be made (refused, unreachable, connect timeout).
        case connectionFailed
        /// The connection closed while the command was in flight: the command may or may not have run.
        case connectionClosed
        /// No reply within the command timeout: the command may or may not have run.
        case timeout
        /// The bytes from the server could not be parsed.
        case protocolError
        /// The server answered with an error reply.
        case server
        /// The command was never written (its connection was closing); it did not run. The client retries such a
        /// command once on a new connection before reporting this.
        case notSent
        /// The client has been shut down.
        case shutdown
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// Whether the command may have been executed although no reply arrived.
    public var outcomeUnknown: Bool { code == .connectionClosed || code == .timeout }

    /// Whether Redis refused for memory (`maxmemory` reached with `noeviction`): the reply's `OOM` error, also as a
    /// script runner quotes it (`script NAME: OOM …`). Nothing was written.
    public var outOfMemory: Bool { code == .server && Self.outOfMemory(message) }

    /// Whether an error reply's message is Redis's refusal for memory.
    public static func outOfMemory(_ message: String) -> Bool { message.hasPrefix("OOM ") || message.contains(": OOM ") }

    public var description: String { "RedisError(\(code)): \(message)" }
}
