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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory.path] + settings
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let redis = TLSTestServers.Server(port: port, certificate: "", pid: process.processIdentifier, directory: directory)
        do {
            try await waitFor("redis-server listening on \(port)", within: .seconds(10), every: .milliseconds(20)) {
                guard process.isRunning else { throw TLSTestServers.TLSTestError(description: "redis-server on \(port) exited") }
                return TLSTestServers.listening(port)
            }
        } catch {
            redis.stop()
            throw error
        }
        return redis
    }
}
