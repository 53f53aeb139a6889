import Foundation

/// A plain redis-server of a test's own (no persistence, loopback), for settings the shared one must not take: an
/// evicting policy, a small maxmemory.
public enum TestRedisServer {
    /// Starts redis-server on a free port with `settings` (e.g. `["--maxmemory-policy", "allkeys-lru"]`) and waits
    /// until it listens; `stop()` kills and reaps it.
    public static func start(_ settings: [String] = []) async throws -> TLSTestServers.Server {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let port = try TLSTestServers.freePort()
        return try await TLSTestServers.launch(
            "redis-server", "/usr/bin/env",
            ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path]
                + settings,
            port: port, certificate: "", directory: directory
        )
    }
}
