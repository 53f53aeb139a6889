import Foundation
import Inventory
import Logging
import MySQLClient
import RedisClient

/// Every setting of the service, read from `INVENTORY_*` environment variables; each has a default that works
/// with the servers `scripts/setup.sh` starts. The README lists them.
public struct ServiceConfiguration: Sendable {
    public var httpHost = "127.0.0.1"
    public var httpPort = 8080
    /// Seconds a connection may sit without a complete request part (idle, or a head that never ends), and a
    /// request's body may take after its head, before the connection is closed; 0 = no limit.
    public var httpIdleTimeoutSeconds = 10
    public var redis = RedisConfiguration()
    /// Redis Cluster: nodes to read the slot map from ("host:port"); empty for a single Redis (`redis`). The
    /// connections, timeout and password of `redis` apply to every node.
    public var redisCluster: [String] = []
    public var mysql = MySQLConfiguration()
    /// A read replica for the reconciler's first pass; nil = read the primary.
    public var mysqlReplica: MySQLConfiguration?
    public var engine = EngineConfiguration()
    public var limits = InputLimits()
    public var logLevel = "info"
    /// Reservations admitted per item per window by the hot-item limiter; 0 = off.
    public var hotItemLimit = 0
    public var hotItemWindowMilliseconds = 10
    /// Code exports and uploads run at once per instance (`BulkGate`; 4 × as many more wait their turn).
    public var bulkConcurrency = 1
    /// The percentage of each bulk place's time bulk work may take (`BulkGate`: a place held d rests
    /// d × (100 − share) / share); 100 = no rest.
    public var bulkSharePercent = 5
    /// Give memory the process freed back to the system every this many seconds (`MemoryReturner`); 0 = never.
    public var mallocTrimSeconds = 10
    /// Requests per second each business may send to this instance (`BusinessAdmission`); 0 = off.
    public var businessRateLimit = 0
    /// Requests a business may send at once; 0 = one second's worth of `businessRateLimit`.
    public var businessBurst = 0
    /// `json` (one object per line) or `text`.
    public var logFormat = "json"
    /// `redis` (the service) or `db` (the database-only design, for side-by-side benchmarks).
    public var engineKind = "redis"
    /// Run the write-back worker inside `serve`.
    public var runWorker = true
    public var worker = WriteBackConfiguration()
    /// Run the expiry sweeper inside `serve`, every this many milliseconds; 0 = off.
    public var sweepIntervalMilliseconds = 1000
    /// Run the reconciler inside `serve`, every this many seconds; 0 = off.
    public var reconcileIntervalSeconds = 300
    /// Let the periodic reconciler repair what it finds.
    public var reconcileFix = false
    /// Start although Redis's `maxmemory-policy` may evict keys (anything but `noeviction`); off by default.
    public var allowEviction = false
    /// Milliseconds added to this instance's clock (`EngineConfiguration.clock`); 0 by default. For fault runs
    /// and tests only: it shows that instances whose clocks differ agree on every hold.
    public var clockSkewMilliseconds = 0
    /// Bearer tokens and their roles (`INVENTORY_TOKENS`, `INVENTORY_TOKENS_FILE`); none: the API is open and the
    /// service may listen on loopback only.
    public var tokens = AccessTokens()
    /// Whether `/metrics` and the status page `/` answer without a token when tokens are configured.
    public var openMetrics = false
    /// The host names requests may name (`Host`, and the site of a browser's `Origin`); nil for the default: on a
    /// loopback listener the loopback names (web pages of other sites, and DNS rebinding, are refused), elsewhere any
    /// (bearer tokens guard a listener that is not loopback, and a browser cannot send them unasked). ["*"]: any.
    public var allowedHosts: [String]?

    /// The host names the browser guard lets through, nil when it lets every request through.
    public var effectiveAllowedHosts: Set<String>? {
        guard let allowedHosts else {
            guard Self.isLoopback(httpHost) else { return nil }
            return ["localhost", "127.0.0.1", "::1", httpHost.lowercased()]
        }
        if allowedHosts.contains("*") { return nil }
        return Set(allowedHosts.map { Authority.hostName($0) })
    }
    /// HTTPS: the server's certificate chain and private key, PEM files (`INVENTORY_TLS_CERT_FILE`,
    /// `INVENTORY_TLS_KEY_FILE`); both nil = plain HTTP.
    public var tlsCertificateFile: String?
    public var tlsKeyFile: String?
    /// Off loopback, serve plain HTTP although tokens are configured (a proxy in front terminates TLS).
    public var allowPlainHTTP = false

    public init() {}

    /// Whether `host` is a loopback address (only this machine can connect).
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        // 127.0.0.0/8 as an address, not a name that merely starts with "127." (127.0.0.1.example.com).
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else { return false }
        return UInt32(bigEndian: address.s_addr) >> 24 == 127
    }

    /// Refuses to expose an API without tokens: anyone who reaches the port could set stock and export codes.
    /// Refuses, off loopback, an API without tokens (anyone who reaches the port could set stock and export codes)
    /// and tokens sent in the clear (without HTTPS, unless `INVENTORY_ALLOW_PLAIN_HTTP` says a proxy in front
    /// terminates TLS).
    public func checkExposure() throws {
        guard !Self.isLoopback(httpHost) else { return }
        if tokens.isEmpty {
            throw ConfigurationError(
                description: "INVENTORY_HTTP_HOST=\(httpHost) is not loopback, and no access tokens are configured: set "
                    + "INVENTORY_TOKENS or INVENTORY_TOKENS_FILE (`inventoryd token` makes one), or listen on 127.0.0.1"
            )
        }
        if tlsCertificateFile == nil && !allowPlainHTTP {
            throw ConfigurationError(
                description: "INVENTORY_HTTP_HOST=\(httpHost) is not loopback, and without HTTPS the bearer tokens cross the "
                    + "network in the clear: set INVENTORY_TLS_CERT_FILE and INVENTORY_TLS_KEY_FILE, or "
                    + "INVENTORY_ALLOW_PLAIN_HTTP=on when a proxy in front terminates TLS"
            )
        }
    }

    /// Reads the environment; an unparsable value is an error naming the variable, not a silent default.
    /// Also reads `INVENTORY_CONFIG_FILE` and `INVENTORY_SECRETS_DIR` (`SettingsSources`); the environment wins.
    public static func fromEnvironment(_ processEnvironment: [String: String]) throws -> ServiceConfiguration {
        let environment = try SettingsSources.merged(processEnvironment)
        var settings = ServiceConfiguration()
        let reader = EnvironmentReader(environment: environment)
        settings.httpHost = reader.string("INVENTORY_HTTP_HOST", settings.httpHost)
        settings.httpPort = try reader.int("INVENTORY_HTTP_PORT", settings.httpPort, 1...65535)
        if let hosts = environment["INVENTORY_ALLOWED_HOSTS"], !hosts.trimmingCharacters(in: .whitespaces).isEmpty {
            settings.allowedHosts = hosts.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        settings.httpIdleTimeoutSeconds = try reader.int("INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS", settings.httpIdleTimeoutSeconds, 0...3600)
        settings.redis.host = reader.string("INVENTORY_REDIS_HOST", settings.redis.host)
        settings.redis.port = try reader.int("INVENTORY_REDIS_PORT", settings.redis.port, 1...65535)
        settings.redis.connections = try reader.int("INVENTORY_REDIS_CONNECTIONS", settings.redis.connections, 1...256)
        settings.redis.commandTimeoutMilliseconds = Int64(
            try reader.int("INVENTORY_REDIS_TIMEOUT_MS", Int(settings.redis.commandTimeoutMilliseconds), 1...600_000)
        )
        settings.redis.password = environment["INVENTORY_REDIS_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        settings.redis.username = environment["INVENTORY_REDIS_USERNAME"].flatMap { $0.isEmpty ? nil : $0 }
        if settings.redis.username != nil && settings.redis.password == nil {
            throw ConfigurationError(
                description: "INVENTORY_REDIS_USERNAME is set but INVENTORY_REDIS_PASSWORD is not: an ACL user logs in with its password"
            )
        }
        settings.redis.database = try reader.int("INVENTORY_REDIS_DB", settings.redis.database, 0...15)
        // A TLS detail set while TLS is off would leave the connection in the clear without a word: refused.
        for (switch_, details) in [
            ("INVENTORY_REDIS_TLS", ["INVENTORY_REDIS_TLS_CA_FILE", "INVENTORY_REDIS_TLS_SERVER_NAME"]),
            ("INVENTORY_MYSQL_TLS", ["INVENTORY_MYSQL_TLS_CA_FILE"]),
        ] where try !reader.bool(switch_, false) {
            if let detail = details.first(where: { !(environment[$0] ?? "").isEmpty }) {
                throw ConfigurationError(description: "\(detail) is set but \(switch_) is off: set \(switch_)=on (or unset \(detail))")
            }
        }
        if try reader.bool("INVENTORY_REDIS_TLS", false) {
            settings.redis.tls = try Self.clientTLS(caFile: environment["INVENTORY_REDIS_TLS_CA_FILE"], variable: "INVENTORY_REDIS_TLS_CA_FILE")
            settings.redis.tlsServerName = environment["INVENTORY_REDIS_TLS_SERVER_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        }
        settings.redisCluster = reader.string("INVENTORY_REDIS_CLUSTER", "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for node in settings.redisCluster where Int(node.split(separator: ":").last ?? "") == nil || !node.contains(":") {
            throw ConfigurationError(description: "INVENTORY_REDIS_CLUSTER: \(node) is not host:port")
        }
        settings.mysql.host = reader.string("INVENTORY_MYSQL_HOST", settings.mysql.host)
        settings.mysql.port = try reader.int("INVENTORY_MYSQL_PORT", settings.mysql.port, 1...65535)
        settings.mysql.user = reader.string("INVENTORY_MYSQL_USER", settings.mysql.user)
        settings.mysql.password = reader.string("INVENTORY_MYSQL_PASSWORD", settings.mysql.password)
        settings.mysql.database = reader.string("INVENTORY_MYSQL_DATABASE", settings.mysql.database)
        settings.mysql.poolSize = try reader.int("INVENTORY_MYSQL_POOL_SIZE", settings.mysql.poolSize, 1...256)
        if try reader.bool("INVENTORY_MYSQL_TLS", false) {
            let caFile = environment["INVENTORY_MYSQL_TLS_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
            if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
                throw ConfigurationError(description: "INVENTORY_MYSQL_TLS_CA_FILE=\(caFile) cannot be read")
            }
            settings.mysql.tls = MySQLConfiguration.TLS(caFile: caFile)
        }
        if let replicaHost = environment["INVENTORY_MYSQL_REPLICA_HOST"], !replicaHost.isEmpty {
            var replica = settings.mysql
            replica.host = replicaHost
            replica.port = try reader.int("INVENTORY_MYSQL_REPLICA_PORT", settings.mysql.port, 1...65535)
            replica.poolSize = 2
            settings.mysqlReplica = replica
        }
        settings.engine.defaultTTLSeconds = try reader.int(
            "INVENTORY_RESERVATION_TTL_SECONDS", settings.engine.defaultTTLSeconds, 1...86_400
        )
        settings.engine.retentionSeconds = try reader.int(
            "INVENTORY_RETENTION_SECONDS", settings.engine.retentionSeconds, 60...(365 * 86_400)
        )
        settings.engine.itemTTLSeconds = try reader.int(
            "INVENTORY_ITEM_TTL_SECONDS", settings.engine.itemTTLSeconds, 0...(365 * 86_400)
        )
        settings.engine.maxPoolCodes = try reader.int("INVENTORY_MAX_POOL_CODES", settings.engine.maxPoolCodes, 1...10_000_000)
        settings.engine.rebuildChunk = try reader.int(
            "INVENTORY_REBUILD_CHUNK", settings.engine.rebuildChunk, 1...100_000
        )
        settings.engine.absentMilliseconds = Int64(
            try reader.int("INVENTORY_UNKNOWN_ITEM_MS", Int(settings.engine.absentMilliseconds), 1...3_600_000)
        )
        settings.engine.keys = KeyLayout(
            prefix: reader.string("INVENTORY_KEY_PREFIX", settings.engine.keys.prefix),
            shards: try reader.int("INVENTORY_SHARDS", settings.engine.keys.shards, 1...16384),
            clustered: !settings.redisCluster.isEmpty
        )
        settings.limits.maxQuantity = Int64(try reader.int("INVENTORY_MAX_QUANTITY", Int(settings.limits.maxQuantity), 1...Int(Int32.max)))
        settings.limits.maxBodyBytes = try reader.int("INVENTORY_MAX_BODY_BYTES", settings.limits.maxBodyBytes, 1024...(16 << 20))
        settings.logLevel = reader.string("INVENTORY_LOG_LEVEL", settings.logLevel)
        guard Logger.Level(rawValue: settings.logLevel) != nil else {
            throw ConfigurationError(description: "INVENTORY_LOG_LEVEL=\(settings.logLevel) is not trace, debug, info, notice, warning, error or critical")
        }
        settings.hotItemLimit = try reader.int("INVENTORY_HOT_ITEM_LIMIT", settings.hotItemLimit, 0...1_000_000)
        settings.bulkConcurrency = try reader.int("INVENTORY_BULK_CONCURRENCY", settings.bulkConcurrency, 1...64)
        settings.bulkSharePercent = try reader.int("INVENTORY_BULK_SHARE", settings.bulkSharePercent, 1...100)
        settings.mallocTrimSeconds = try reader.int("INVENTORY_MALLOC_TRIM_SECONDS", settings.mallocTrimSeconds, 0...3600)
        settings.businessRateLimit = try reader.int("INVENTORY_BIZ_RATE_LIMIT", settings.businessRateLimit, 0...10_000_000)
        settings.businessBurst = try reader.int("INVENTORY_BIZ_BURST", settings.businessBurst, 0...10_000_000)
        settings.hotItemWindowMilliseconds = try reader.int(
            "INVENTORY_HOT_ITEM_WINDOW_MS", settings.hotItemWindowMilliseconds, 1...60_000
        )
        settings.logFormat = reader.string("INVENTORY_LOG_FORMAT", settings.logFormat)
        guard ["json", "text"].contains(settings.logFormat) else {
            throw ConfigurationError(description: "INVENTORY_LOG_FORMAT=\(settings.logFormat) is not json or text")
        }
        let durability = reader.string("INVENTORY_DURABILITY", settings.engine.durability.rawValue)
        guard let mode = Durability(rawValue: durability) else {
            throw ConfigurationError(description: "INVENTORY_DURABILITY=\(durability) is not async or sync")
        }
        settings.engine.durability = mode
        settings.runWorker = try reader.bool("INVENTORY_WORKER", settings.runWorker)
        settings.engineKind = reader.string("INVENTORY_ENGINE", settings.engineKind)
        guard ["redis", "db"].contains(settings.engineKind) else {
            throw ConfigurationError(description: "INVENTORY_ENGINE=\(settings.engineKind) is not redis or db")
        }
        settings.worker.consumer = reader.string("INVENTORY_WORKER_CONSUMER", settings.worker.consumer)
        settings.worker.batchSize = try reader.int("INVENTORY_WORKER_BATCH", settings.worker.batchSize, 1...100_000)
        settings.worker.claimIdleMilliseconds = try reader.int(
            "INVENTORY_WORKER_CLAIM_IDLE_MS", settings.worker.claimIdleMilliseconds, 100...3_600_000
        )
        settings.worker.leaseMilliseconds = try reader.int(
            "INVENTORY_WORKER_LEASE_MS", settings.worker.leaseMilliseconds, 2000...600_000
        )
        settings.sweepIntervalMilliseconds = try reader.int(
            "INVENTORY_SWEEP_INTERVAL_MS", settings.sweepIntervalMilliseconds, 0...3_600_000
        )
        settings.reconcileIntervalSeconds = try reader.int(
            "INVENTORY_RECONCILE_INTERVAL_SECONDS", settings.reconcileIntervalSeconds, 0...86_400
        )
        settings.reconcileFix = try reader.bool("INVENTORY_RECONCILE_FIX", settings.reconcileFix)
        settings.allowEviction = try reader.bool("INVENTORY_ALLOW_EVICTION", settings.allowEviction)
        settings.clockSkewMilliseconds = try reader.int(
            "INVENTORY_CLOCK_SKEW_MS", settings.clockSkewMilliseconds, -3_600_000...3_600_000
        )
        settings.tokens = try AccessTokens.parse(
            environment["INVENTORY_TOKENS"] ?? "", separator: ",", source: "INVENTORY_TOKENS"
        )
        if let path = environment["INVENTORY_TOKENS_FILE"], !path.isEmpty {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ConfigurationError(description: "INVENTORY_TOKENS_FILE=\(path) cannot be read")
            }
            let fromFile = try AccessTokens.parse(text, separator: "\n", source: "INVENTORY_TOKENS_FILE")
            guard !fromFile.isEmpty else {
                throw ConfigurationError(description: "INVENTORY_TOKENS_FILE=\(path) holds no token entry")
            }
            settings.tokens.merge(fromFile)
        }
        settings.openMetrics = try reader.bool("INVENTORY_OPEN_METRICS", settings.openMetrics)
        settings.tlsCertificateFile = environment["INVENTORY_TLS_CERT_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        settings.tlsKeyFile = environment["INVENTORY_TLS_KEY_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        if (settings.tlsCertificateFile == nil) != (settings.tlsKeyFile == nil) {
            throw ConfigurationError(description: "INVENTORY_TLS_CERT_FILE and INVENTORY_TLS_KEY_FILE go together: set both or neither")
        }
        _ = try settings.serverTLS()
        settings.allowPlainHTTP = try reader.bool("INVENTORY_ALLOW_PLAIN_HTTP", settings.allowPlainHTTP)
        if settings.clockSkewMilliseconds != 0 {
            let skew = Int64(settings.clockSkewMilliseconds)
            settings.engine.clock = { InventoryEngine.nowMilliseconds() + skew }
        }
        return settings
    }
}

/// An environment variable that is set but cannot be used.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) {
        self.description = description
    }
}

struct EnvironmentReader {
    let environment: [String: String]

    func string(_ name: String, _ fallback: String) -> String {
        guard let value = environment[name], !value.isEmpty else { return fallback }
        return value
    }

    func bool(_ name: String, _ fallback: Bool) throws -> Bool {
        guard let text = environment[name], !text.isEmpty else { return fallback }
        switch text.lowercased() {
        case "1", "true", "on", "yes": return true
        case "0", "false", "off", "no": return false
        default: throw ConfigurationError(description: "\(name)=\(text) is not on or off")
        }
    }

    func int(_ name: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
        guard let text = environment[name], !text.isEmpty else { return fallback }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(description: "\(name)=\(text) is not an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }
}
