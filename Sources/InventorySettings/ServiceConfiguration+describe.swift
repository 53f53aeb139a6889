import Inventory

extension ServiceConfiguration {
    /// The effective settings by variable name, as `inventoryd config` prints them: defaults filled in, secrets
    /// masked (a password shows only whether it is set; tokens only how many each role has).
    public func described() -> [(name: String, value: String)] {
        func secret(_ value: String?) -> String { (value ?? "").isEmpty ? "(not set)" : "(set, masked)" }
        var rows: [(String, String)] = [
            ("INVENTORY_HTTP_HOST", httpHost), ("INVENTORY_HTTP_PORT", String(httpPort)),
            ("INVENTORY_HTTP_IDLE_TIMEOUT_SECONDS", String(httpIdleTimeoutSeconds)),
            ("INVENTORY_TOKENS / INVENTORY_TOKENS_FILE",
                tokens.isEmpty ? "(none: loopback only)"
                    : AccessTokens.Role.allCases.map { "\($0.rawValue) \(tokens.counts[$0] ?? 0)" }.joined(separator: ", ")),
            ("INVENTORY_OPEN_METRICS", openMetrics ? "on" : "off"),
        ]
        if redisCluster.isEmpty {
            rows += [("INVENTORY_REDIS_HOST", redis.host), ("INVENTORY_REDIS_PORT", String(redis.port)),
                ("INVENTORY_REDIS_DB", String(redis.database))]
        } else {
            rows.append(("INVENTORY_REDIS_CLUSTER", redisCluster.joined(separator: ",")))
        }
        rows += [
            ("INVENTORY_REDIS_CONNECTIONS", String(redis.connections)),
            ("INVENTORY_REDIS_TIMEOUT_MS", String(redis.commandTimeoutMilliseconds)),
            ("INVENTORY_REDIS_USERNAME", redis.username ?? "(the default user)"),
            ("INVENTORY_REDIS_PASSWORD", secret(redis.password)),
            ("INVENTORY_REDIS_TLS", redis.tls == nil ? "off" : "on (verified; name \(redis.tlsServerName ?? "the host"))"),
            ("INVENTORY_MYSQL_HOST", mysql.host), ("INVENTORY_MYSQL_PORT", String(mysql.port)),
            ("INVENTORY_MYSQL_USER", mysql.user), ("INVENTORY_MYSQL_PASSWORD", secret(mysql.password)),
            ("INVENTORY_MYSQL_TLS", mysql.tls.map { "on (verified against \($0.caFile ?? "the default trust store"))" } ?? "off"),
            ("INVENTORY_MYSQL_DATABASE", mysql.database), ("INVENTORY_MYSQL_POOL_SIZE", String(mysql.poolSize)),
            ("INVENTORY_MYSQL_REPLICA_HOST", mysqlReplica.map { "\($0.host):\($0.port)" } ?? "(none)"),
            ("INVENTORY_DURABILITY", engine.durability.rawValue),
            ("INVENTORY_RESERVATION_TTL_SECONDS", String(engine.defaultTTLSeconds)),
            ("INVENTORY_RETENTION_SECONDS", String(engine.retentionSeconds)),
            ("INVENTORY_ITEM_TTL_SECONDS", String(engine.itemTTLSeconds)),
            ("INVENTORY_MAX_POOL_CODES", String(engine.maxPoolCodes)),
            ("INVENTORY_REBUILD_CHUNK", String(engine.rebuildChunk)),
            ("INVENTORY_UNKNOWN_ITEM_MS", String(engine.absentMilliseconds)),
            ("INVENTORY_ALLOWED_HOSTS", effectiveAllowedHosts.map { $0.sorted().joined(separator: ",") } ?? "*"),
            ("INVENTORY_KEY_PREFIX", engine.keys.prefix), ("INVENTORY_SHARDS", String(engine.keys.shards)),
            ("INVENTORY_MAX_QUANTITY", String(limits.maxQuantity)), ("INVENTORY_MAX_BODY_BYTES", String(limits.maxBodyBytes)),
            ("INVENTORY_LOG_LEVEL", logLevel), ("INVENTORY_LOG_FORMAT", logFormat),
            ("INVENTORY_HOT_ITEM_LIMIT", String(hotItemLimit)), ("INVENTORY_HOT_ITEM_WINDOW_MS", String(hotItemWindowMilliseconds)),
            ("INVENTORY_BIZ_RATE_LIMIT", String(businessRateLimit)), ("INVENTORY_BIZ_BURST", String(businessBurst)),
            ("INVENTORY_MALLOC_TRIM_SECONDS", String(mallocTrimSeconds)), ("INVENTORY_BULK_CONCURRENCY", String(bulkConcurrency)),
            ("INVENTORY_BULK_SHARE", String(bulkSharePercent)),
            ("INVENTORY_ENGINE", engineKind), ("INVENTORY_WORKER", runWorker ? "on" : "off"),
            ("INVENTORY_WORKER_CONSUMER", worker.consumer), ("INVENTORY_WORKER_BATCH", String(worker.batchSize)),
            ("INVENTORY_WORKER_CLAIM_IDLE_MS", String(worker.claimIdleMilliseconds)),
            ("INVENTORY_WORKER_LEASE_MS", String(worker.leaseMilliseconds)),
            ("INVENTORY_SWEEP_INTERVAL_MS", String(sweepIntervalMilliseconds)),
            ("INVENTORY_RECONCILE_INTERVAL_SECONDS", String(reconcileIntervalSeconds)),
            ("INVENTORY_RECONCILE_FIX", reconcileFix ? "on" : "off"),
            ("INVENTORY_ALLOW_EVICTION", allowEviction ? "on" : "off"),
            ("INVENTORY_CLOCK_SKEW_MS", String(clockSkewMilliseconds)),
            ("INVENTORY_LUA_DIR", ProjectFiles.directory("lua", environmentVariable: "INVENTORY_LUA_DIR")),
            ("INVENTORY_MIGRATIONS_DIR", ProjectFiles.directory("migrations", environmentVariable: "INVENTORY_MIGRATIONS_DIR")),
            ("INVENTORY_OPENAPI_DIR", ProjectFiles.directory("openapi", environmentVariable: "INVENTORY_OPENAPI_DIR")),
        ]
        return rows.map { (name: $0.0, value: $0.1) }
    }
}
