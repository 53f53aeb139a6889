/// A failure talking to MySQL/MariaDB, reduced to the few codes callers act on; `errno`, `sqlState` and `message`
/// keep the server's or client library's detail for logs.
public struct MySQLError: Error, Sendable, CustomStringConvertible {
    /// What callers can do about a failure.
    public enum Code: Sendable {
        /// No connection could be established (refused, unknown host, bad credentials, connect timeout).
        case connectionFailed
        /// The connection broke while a statement was in flight: the statement may or may not have taken effect.
        case connectionLost
        /// A time limit passed: the server's (`max_statement_time`; the statement did not take effect), the client's
        /// read timeout (the connection is dropped and the statement may or may not have taken effect), or the wait
        /// for a pooled connection (`MySQLConfiguration.acquireTimeoutSeconds`; nothing was sent).
        case timeout
        /// A unique or primary key already holds the value (errno 1062).
        case duplicateKey
        /// The transaction was rolled back to resolve a deadlock or a lock wait timeout (errno 1213 / 1205); retrying
        /// the whole transaction is safe.
        case deadlock
        /// Any other error from the server or in the SQL.
        case queryFailed
        /// The client was shut down.
        case poolClosed
        /// The connection broke (or timed out) while COMMIT was in flight: the transaction may or may not be
        /// committed. Read back what it wrote before acting on either (a locking read waits for a transaction the
        /// server is still finishing).
        case commitOutcomeUnknown
    }

    /// What callers can do about it.
    public let code: Code
    /// Server errno (1000-1999, 3000+, 4000+) or client library errno (2000-2999, 5000+); 0 when raised by this module.
    public let errno: UInt32
    /// The five-character SQLSTATE, "HY000" when none applies.
    public let sqlState: String
    /// Human-readable detail, for logs.
    public let message: String

    /// Creates an error; `code` is usually derived with `MySQLError(errno:sqlState:message:)` instead.
    public init(code: Code, errno: UInt32 = 0, sqlState: String = "HY000", message: String) {
        self.code = code
        self.errno = errno
        self.sqlState = sqlState
        self.message = message
    }

    /// Creates an error from what the server or the client library reported, deriving its code from the errno.
    public init(errno: UInt32, sqlState: String, message: String) {
        self.init(code: Self.code(forErrno: errno), errno: errno, sqlState: sqlState, message: message)
    }

    /// A description for logs.
    public var description: String {
        "MySQLError(\(code), errno \(errno), SQLSTATE \(sqlState)): \(message)"
    }

    /// Whether the connection failed or broke (the server is down, restarting, or the network cut it), rather
    /// than the statement: a later attempt, on a new connection, may succeed.
    public var isConnectionError: Bool { discardsConnection }

    /// Whether the connection that produced this error can no longer be trusted: its socket is gone or the
    /// protocol state is unknown, so it must be closed rather than returned to the pool.
    var discardsConnection: Bool {
        switch code {
        case .connectionFailed, .connectionLost, .commitOutcomeUnknown: return true
        // A client-side read timeout (errno 2013) drops the socket; a server-side statement timeout does not.
        default: return Self.lostErrnos.contains(errno) || Self.desynchronisingErrnos.contains(errno)
        }
    }

    static func code(forErrno errno: UInt32) -> Code {
        switch errno {
        case 1062, 1586: return .duplicateKey  // ER_DUP_ENTRY, ER_DUP_ENTRY_WITH_KEY_NAME
        case 1213, 1205: return .deadlock  // ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
        case 1969, 3024: return .timeout  // MariaDB max_statement_time, MySQL max_execution_time
        case _ where lostErrnos.contains(errno): return .connectionLost
        case _ where connectErrnos.contains(errno): return .connectionFailed
        default: return .queryFailed
        }
    }

    /// Errors after which the server is no longer on the other end of the socket.
    private static let lostErrnos: Set<UInt32> = [
        2006,  // CR_SERVER_GONE_ERROR: found dead before sending
        2013,  // CR_SERVER_LOST: died (or read timeout) during a query
        2055,  // CR_SERVER_LOST_EXTENDED
        5013, 5014,  // CR_ERR_NET_READ, CR_ERR_NET_WRITE
        1053,  // ER_SERVER_SHUTDOWN
        1927,  // ER_CONNECTION_KILLED
        4031,  // ER_CLIENT_INTERACTION_TIMEOUT: server closed an idle session
    ]

    /// Client errors that only happen while establishing a connection. Server errors during connect (access
    /// denied, unknown database, too many connections) also mean `.connectionFailed`, but the same errnos can come
    /// from ordinary statements, so the connect path sets that code itself.
    private static let connectErrnos: Set<UInt32> = [
        2001, 2002, 2003, 2004, 2005, 2012,  // socket, refused, host error, IP socket, unknown host, handshake
    ]

    /// Client errors that leave the connection's protocol state unknown even though the socket may be open.
    private static let desynchronisingErrnos: Set<UInt32> = [
        2000,  // CR_UNKNOWN_ERROR
        2014,  // CR_COMMANDS_OUT_OF_SYNC
        2027,  // CR_MALFORMED_PACKET
        2008,  // CR_OUT_OF_MEMORY
    ]
}
