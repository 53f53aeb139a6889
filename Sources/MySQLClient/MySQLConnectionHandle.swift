import CMariaDB
import NIOConcurrencyHelpers
import NIOPosix

/// Process-wide Connector/C setup.
enum MariaDBLibrary {
    /// `mysql_library_init` is not thread-safe and must finish before any other thread calls into the library. A
    /// Swift static's initialiser runs exactly once, behind `swift_once`, which gives both guarantees.
    /// (`mysql_library_init` is a function-like macro, which Swift cannot import, so its target is called.)
    private static let initStatus: Int32 = mysql_server_init(0, nil, nil)

    /// `mysql_thread_end` must run on the thread that called `mysql_thread_init`. A thread-specific value is
    /// released by its thread's exit, so a pool thread ends its own registration when the thread pool stops.
    private static let registration = ThreadSpecificVariable<ThreadRegistration>()

    /// Makes the library ready for use on the calling thread; call first in every work item.
    static func prepareCurrentThread() throws {
        guard initStatus == 0 else {
            throw MySQLError(code: .connectionFailed, message: "mysql_library_init failed (\(initStatus))")
        }
        if registration.currentValue == nil {
            _ = mysql_thread_init()
            registration.currentValue = ThreadRegistration()
        }
    }
}

private final class ThreadRegistration: Sendable {
    deinit {
        mysql_thread_end()
    }
}

/// One Connector/C connection (`MYSQL *`) and the statements prepared on it.
///
/// `@unchecked Sendable` is safe because the pool gives a handle to one lease at a time, hands it over under the
/// pool's lock (which orders every access of one lease before the next), and a lease touches the handle only
/// inside one work item on the client's `NIOThreadPool`. Connector/C allows a connection to move between threads
/// as long as only one thread uses it at a time.
final class MySQLConnectionHandle: @unchecked Sendable {
    /// Nil until opened, and again after a failure closed it.
    private(set) var mysql: UnsafeMutablePointer<MYSQL>?
    /// Prepared statements keyed by their SQL, so a hot statement is prepared once per connection.
    var statements: [String: UnsafeMutablePointer<MYSQL_STMT>] = [:]
    /// Set when an error left the connection unusable; the end of the lease then closes it.
    var isBroken = false
    /// What broke it: the statement (its first 120 characters), how long it ran and the error, for the log.
    var brokenBy = ""
    /// The statement running on this connection now, if any: Connector/C must never see two threads on one
    /// connection (their packets would interleave), so a second statement meanwhile is refused, loudly.
    private let running = NIOLockedValueBox<String?>(nil)

    /// Marks `sql` as running; throws if another statement is running on this connection.
    func enter(_ sql: String) throws {
        let other = running.withLockedValue { current -> String? in
            if let current { return current }
            current = sql
            return nil
        }
        if let other {
            throw MySQLError(
                code: .queryFailed,
                message: "a MySQL connection was used by two threads at once: \(sql.prefix(80)) while \(other.prefix(80)) ran"
            )
        }
    }

    /// Marks the running statement as finished.
    func leave() {
        running.withLockedValue { $0 = nil }
    }
    /// When the last lease ended, to decide whether the connection needs a ping before reuse.
    var lastUsed = ContinuousClock.now
    /// The read timeout the connection was opened with: Connector/C reports its expiry as an ordinary lost
    /// connection, which only the elapsed time tells apart.
    private(set) var readTimeout = Duration.seconds(10)

    init() {}

    /// Opens the connection with the configured timeouts and character set.
    func open(_ configuration: MySQLConfiguration) throws {
        precondition(mysql == nil, "opening a connection handle twice would leak the first connection")
        guard let mysql = mysql_init(nil) else {
            throw MySQLError(code: .connectionFailed, errno: 2008, message: "mysql_init: out of memory")
        }
        var connectTimeout = UInt32(clamping: configuration.connectTimeoutSeconds)
        var readTimeout = UInt32(clamping: configuration.readTimeoutSeconds)
        var writeTimeout = UInt32(clamping: configuration.writeTimeoutSeconds)
        // Auto-reconnect would silently drop session state (an open transaction, GET_LOCK locks, autocommit off) in
        // the middle of a lease; the pool reconnects between leases instead.
        var reconnect: my_bool = 0
        // A hostile server could otherwise ask the client to upload local files.
        var localInfile: UInt32 = 0
        mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &connectTimeout)
        mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &readTimeout)
        mysql_options(mysql, MYSQL_OPT_WRITE_TIMEOUT, &writeTimeout)
        mysql_options(mysql, MYSQL_OPT_RECONNECT, &reconnect)
        mysql_options(mysql, MYSQL_OPT_LOCAL_INFILE, &localInfile)
        mysql_options(mysql, MYSQL_SET_CHARSET_NAME, "utf8mb4")
        if let tls = configuration.tls {
            // TLS or no connection, and a certificate that does not verify (CA, host name) fails the connect.
            var enforce: my_bool = 1
            var verify: my_bool = 1
            guard mysql_options(mysql, MYSQL_OPT_SSL_ENFORCE, &enforce) == 0,
                mysql_options(mysql, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify) == 0,
                tls.caFile.map({ mysql_options(mysql, MYSQL_OPT_SSL_CA, $0) == 0 }) ?? true
            else {
                mysql_close(mysql)
                throw MySQLError(code: .connectionFailed, message: "the MariaDB client library refused the TLS options")
            }
        }
        let connected = mysql_real_connect(
            mysql,
            configuration.host,
            configuration.user,
            configuration.password,
            configuration.database,
            UInt32(clamping: configuration.port),
            nil,
            0
        )
        guard connected != nil else {
            // Every failure here is a connect failure, including server errnos (access denied, unknown database)
            // that would mean something else on an established connection.
            let error = MySQLError(
                code: .connectionFailed,
                errno: mysql_errno(mysql),
                sqlState: String(cString: mysql_sqlstate(mysql)),
                message: String(cString: mysql_error(mysql))
            )
            mysql_close(mysql)
            throw error
        }
        if configuration.tls != nil, mysql_get_ssl_cipher(mysql) == nil {
            // Never a connection in the clear when TLS was asked for, whatever the library negotiated.
            mysql_close(mysql)
            throw MySQLError(code: .connectionFailed, message: "TLS was required but the connection is not encrypted")
        }
        self.mysql = mysql
        self.isBroken = false
        self.brokenBy = ""
        self.readTimeout = .seconds(configuration.readTimeoutSeconds)
    }

    /// Closes the statements and the connection; the handle can be opened again.
    func close() {
        for statement in statements.values {
            mysql_stmt_close(statement)
        }
        statements.removeAll()
        if let mysql {
            mysql_close(mysql)
        }
        mysql = nil
        isBroken = false
        brokenBy = ""
    }
}
