import NIOSSL

/// Where Redis is and how the client talks to it.
public struct RedisConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Connections kept open; callers are spread over them and pipelined on each.
    public var connections: Int
    /// How long a connect may take.
    public var connectTimeoutMilliseconds: Int64
    /// How long a command may wait for its reply before it fails with `.timeout`.
    public var commandTimeoutMilliseconds: Int64
    /// Optional `AUTH` password.
    public var password: String?
    /// The ACL user `AUTH` names with `password` (nil: the `default` user, `AUTH <password>`); see
    /// `deploy/redis-user.acl` for what the service needs.
    public var username: String?
    /// Database index sent with `SELECT` on connect (single-node Redis only).
    public var database: Int
    /// TLS to Redis (nil: plain TCP): the trust roots and verification (full by default) of a client
    /// configuration; the certificate must name `tlsServerName`, or the host when that is nil.
    public var tls: TLSConfiguration?
    /// The name the server's certificate must carry (and SNI sends); nil: `host`, unless it is an IP address
    /// (then the certificate must carry that address).
    public var tlsServerName: String?

    public init(
        host: String = "127.0.0.1",
        port: Int = 6390,
        connections: Int = 4,
        connectTimeoutMilliseconds: Int64 = 1000,
        commandTimeoutMilliseconds: Int64 = 2000,
        password: String? = nil,
        database: Int = 0
    ) {
        self.host = host
        self.port = port
        self.connections = max(1, connections)
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.commandTimeoutMilliseconds = commandTimeoutMilliseconds
        self.password = password
        self.database = database
    }
}
