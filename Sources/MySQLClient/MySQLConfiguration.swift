/// Where and how `MySQLClient` connects. Every setting has a default that matches the development server started by
/// `scripts/setup.sh`, so tests and the dev binary need no configuration.
public struct MySQLConfiguration: Sendable {
    /// Server host name or IP address. An IP avoids a DNS lookup on every reconnect.
    public var host: String
    /// Server TCP port.
    public var port: Int
    /// User name.
    public var user: String
    /// Password.
    public var password: String
    /// Default database of every connection.
    public var database: String
    /// Most connections open at once; also the number of threads the client runs blocking C calls on.
    public var poolSize: Int
    /// Limit for establishing a TCP connection and completing the handshake.
    public var connectTimeoutSeconds: Int
    /// Limit for waiting on one read from the server. A query running longer than this fails with `.timeout`
    /// and its connection is discarded, so keep it above the slowest legitimate query.
    public var readTimeoutSeconds: Int
    /// Limit for one write to the server.
    public var writeTimeoutSeconds: Int
    /// Limit for waiting for a pooled connection when every one is leased: past it the caller fails with `.timeout`
    /// (nothing was sent), so callers do not queue without limit behind a slow server.
    public var acquireTimeoutSeconds: Int
    /// A connection idle for at least this long is pinged before it is handed out, and silently replaced if the
    /// ping fails; this is what lets the client ride over a server restart without failing the first queries.
    /// 0 pings on every lease.
    public var idleValidationSeconds: Int
    /// TLS to the server (nil: whatever the server and library negotiate by default, unverified).
    public var tls: TLS?

    /// TLS required and the server's certificate verified: against `caFile` (PEM) or, when nil, the library's
    /// default trust store; the certificate must name the host connected to.
    public struct TLS: Sendable, Equatable {
        public var caFile: String?

        public init(caFile: String? = nil) {
            self.caFile = caFile
        }
    }

    /// Creates a configuration; every argument has the development default.
    public init(
        host: String = "127.0.0.1",
        port: Int = 3390,
        user: String = "inventory",
        password: String = "inventory",
        database: String = "inventory",
        poolSize: Int = 4,
        connectTimeoutSeconds: Int = 3,
        readTimeoutSeconds: Int = 10,
        writeTimeoutSeconds: Int = 10,
        acquireTimeoutSeconds: Int = 10,
        idleValidationSeconds: Int = 5
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.poolSize = poolSize
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.readTimeoutSeconds = readTimeoutSeconds
        self.writeTimeoutSeconds = writeTimeoutSeconds
        self.acquireTimeoutSeconds = acquireTimeoutSeconds
        self.idleValidationSeconds = idleValidationSeconds
    }
}
