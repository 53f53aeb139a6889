import Foundation
import InventoryTestSupport

/// A child process the fault suite starts, kills and restarts: a server of its own (Redis, MariaDB) or the
/// service. Output goes to a log file in the run's directory.
public final class ChildProcess: @unchecked Sendable {
    let name: String
    let executable: String
    let arguments: [String]
    let environment: [String: String]
    let logPath: String
    private let lock = NSLock()
    /// The running process (posix_spawn, see `PosixSpawn`), and its exit status once it has been reaped.
    private var pidValue: pid_t?
    private var exited: Int32?

    public init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], logPath: String) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.logPath = logPath
    }

    /// Starts the process; it must not be running.
    public func start() throws {
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw FaultSuiteError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        let pid = try PosixSpawn.spawn(executable, arguments, environment: environment, output: log)
        lock.withLock {
            self.pidValue = pid
            self.exited = nil
        }
    }

    /// Whether the process runs (reaping it once it has ended).
    public var isRunning: Bool {
        lock.withLock {
            guard let pid = pidValue, exited == nil else { return false }
            if let status = PosixSpawn.exitStatus(pid) {
                exited = status
                return false
            }
            return true
        }
    }

    var pid: Int32? { lock.withLock { pidValue } }

    /// Sends `signal` and waits (bounded) for the process to exit; returns its exit status, nil if it did not exit.
    @discardableResult
    public func stop(signal: Int32, within seconds: Double = 60) async -> Int32? {
        if isRunning, let pid { kill(pid, signal) }
        return await waitForExit(within: seconds)
    }

    /// Waits (bounded) for the process to exit; returns its exit status, nil if it did not exit.
    func waitForExit(within seconds: Double) async -> Int32? {
        guard pid != nil else { return nil }
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning, Date() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if isRunning { return nil }
        return lock.withLock {
            defer {
                pidValue = nil
                exited = nil
            }
            return exited
        }
    }
}

/// Where the fault suite finds the servers' programs (installed by scripts/setup.sh).
public enum Tools {
    public static func find(_ names: String...) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for name in names {
            for directory in path + ["/usr/sbin", "/sbin", "/usr/bin", "/usr/local/bin"] {
                let candidate = "\(directory)/\(name)"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
        }
        throw FaultSuiteError("none of \(names.joined(separator: ", ")) is installed (run scripts/setup.sh)")
    }

    /// A TCP port nothing listens on right now, below the kernel's range of ephemeral ports (`TestPorts.free`).
    public static func freePort(below: Int? = nil) throws -> Int { try TestPorts.free(below: below) }

    /// A free port whose cluster bus port (port + 10,000) is free too, both below the ephemeral range.
    static func freeClusterPort() throws -> Int {
        for _ in 0..<200 {
            let port = try freePort(below: TestPorts.ephemeralStart - 10_000)
            if TestPorts.canBind(port + 10_000) { return port }
        }
        throw FaultSuiteError("cannot find a free port for a cluster node (and its bus port)")
    }

    /// Runs a program to completion; throws with its output when it fails.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw FaultSuiteError("cannot make a pipe") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do {
            pid = try PosixSpawn.spawn(executable, arguments, environment: environment, output: ends[1])
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        close(ends[1])
        let output = String(decoding: FileHandle(fileDescriptor: ends[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        let status = PosixSpawn.exitStatus(pid, wait: true) ?? -1
        guard status == 0 else {
            throw FaultSuiteError("\(executable) \(arguments.joined(separator: " ")) exited \(status): \(output)")
        }
        return output
    }

    /// Runs a program to completion with its output in `logPath`; returns its exit status.
    static func status(_ executable: String, _ arguments: [String], environment: [String: String], logPath: String) throws -> Int32 {
        let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw FaultSuiteError("cannot open \(logPath): \(String(cString: strerror(errno)))") }
        defer { close(log) }
        let pid = try PosixSpawn.spawn(executable, arguments, environment: environment, output: log)
        return PosixSpawn.exitStatus(pid, wait: true) ?? -1
    }
}

/// A Redis of the suite's own, with append-only files, on free loopback ports: one server, or (`cluster`) a Redis
/// Cluster of three masters. A fault that hits "Redis" hits the one server, or on a cluster: a restart or a slow
/// node is the first master, a FLUSHALL or a full memory is every master.
public final class PrivateRedis: Sendable {
    /// The server, or the cluster's first node (the one a restart or a slow-down hits).
    public var port: Int { ports[0] }
    public let ports: [Int]
    let directory: String
    public let clustered: Bool
    private let children: [ChildProcess]

    /// - Parameter appendfsync: the AOF's fsync policy: `everysec` (a kill may lose the last second), `always`
    ///   (every acknowledged write survives a kill).
    public init(directory: String, cluster: Bool = false, appendfsync: String = "everysec") throws {
        self.directory = directory
        self.clustered = cluster
        let ports = try (0..<(cluster ? 3 : 1)).map { _ in cluster ? try Tools.freeClusterPort() : try Tools.freePort() }
        self.ports = ports
        let server = try Tools.find("redis-server")
        children = try ports.map { port in
            let dir = cluster ? "\(directory)/\(port)" : directory
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var arguments = [
                "--port", String(port), "--bind", "127.0.0.1", "--protected-mode", "no", "--dir", dir,
                "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync, "--enable-debug-command", "local",
            ]
            if cluster {
                // A node slowed down for a few seconds is slow, not failed: the timeout is above the suite's sleeps.
                arguments += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "8000"]
            }
            return ChildProcess(name: "redis-\(port)", executable: server, arguments: arguments, logPath: dir + "/redis.log")
        }
    }

    /// Starts the servers that are not running (all at first; the killed one after a restart) and, the first time,
    /// forms the cluster.
    public func start() async throws {
        let cli = try Tools.find("redis-cli")
        for (port, child) in zip(ports, children) where !child.isRunning {
            try child.start()
            try await waitUntil("redis on port \(port)") { (try? Tools.run(cli, ["-p", String(port), "ping"])) == "PONG\n" }
        }
        guard clustered else { return }
        let known = try Tools.run(cli, ["-p", String(ports[0]), "CLUSTER", "INFO"])
        if known.contains("cluster_known_nodes:1\r") || known.contains("cluster_known_nodes:1\n") {
            try Tools.run(cli, ["--cluster", "create"] + ports.map { "127.0.0.1:\($0)" } + ["--cluster-replicas", "0", "--cluster-yes"])
        }
        for port in ports {
            try await waitUntil("the cluster on port \(port)") {
                (try? Tools.run(cli, ["-p", String(port), "CLUSTER", "INFO"]))?.contains("cluster_state:ok") == true
            }
        }
    }

    /// SIGKILL of the server (the cluster's first node): the process dies at once; what it wrote to the AOF (every
    /// write, fsync'd once a second) survives.
    public func kill() async { await children[0].stop(signal: SIGKILL) }

    /// Runs a redis-cli command on the server (the cluster's first node).
    @discardableResult
    func cli(_ arguments: String...) throws -> String {
        try Tools.run(try Tools.find("redis-cli"), ["-p", String(port)] + arguments)
    }

    /// Runs a redis-cli command on the server, or on every node of the cluster.
    func everyNode(_ arguments: String...) throws {
        for port in ports { try Tools.run(try Tools.find("redis-cli"), ["-p", String(port)] + arguments) }
    }

    /// Entries in these outbox streams (on a cluster each is read on the node serving it).
    func length(of streams: [String]) throws -> Int {
        let cli = try Tools.find("redis-cli")
        guard clustered else {
            let script = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('XLEN', k) end return n"
            let output = try Tools.run(cli, ["-p", String(port), "EVAL", script, String(streams.count)] + streams)
            return Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        var total = 0
        for stream in streams {
            let output = try Tools.run(cli, ["-c", "-p", String(port), "XLEN", stream])
            total += Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        return total
    }

    /// Stops the servers: SHUTDOWN NOSAVE over the protocol (a server started from a thread that blocks SIGTERM
    /// inherits the block and never sees the signal), SIGKILL if one has not exited within 10 s.
    public func shutdown() async {
        for (port, child) in zip(ports, children) {
            _ = try? Tools.run(try Tools.find("redis-cli"), ["-p", String(port), "SHUTDOWN", "NOSAVE"])
            if await child.waitForExit(within: 10) == nil {
                await child.stop(signal: SIGKILL)
            }
        }
    }
}

/// A MariaDB server of the suite's own (initialised once into its directory) on a free loopback port.
final class PrivateMariaDB: Sendable {
    let port: Int
    let directory: String
    private let child: ChildProcess
    private let socket: String

    init(directory: String) throws {
        self.port = try Tools.freePort()
        self.directory = directory
        self.socket = directory + "/mysqld.sock"
        let user = ProcessInfo.processInfo.environment["USER"] ?? (try? Tools.run("/usr/bin/id", ["-un"]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? "root"
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: directory + "/data/mysql") {
            try Tools.run(
                try Tools.find("mariadb-install-db", "mysql_install_db"),
                [
                    "--no-defaults", "--datadir=\(directory)/data", "--user=\(user)",
                    "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve",
                ]
            )
        }
        child = ChildProcess(
            name: "mariadb", executable: try Tools.find("mariadbd", "mysqld"),
            arguments: [
                "--no-defaults", "--user=\(user)", "--datadir=\(directory)/data", "--port=\(port)",
                "--bind-address=127.0.0.1", "--socket=\(socket)", "--pid-file=\(directory)/mysqld.pid",
                "--log-error=\(directory)/error.log", "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2", "--max-connections=300", "--skip-name-resolve",
            ],
            logPath: directory + "/mariadbd.out"
        )
    }

    func start() async throws {
        try child.start()
        let admin = try Tools.find("mariadb-admin", "mysqladmin")
        try await waitUntil("mariadb on port \(port)") {
            (try? Tools.run(admin, ["--no-defaults", "--socket=\(self.socket)", "-uroot", "--connect-timeout=2", "ping"])) != nil
        }
    }

    /// Creates the database and the application user (idempotent).
    func prepare(database: String, user: String, password: String) throws {
        try Tools.run(
            try Tools.find("mariadb", "mysql"),
            [
                "--no-defaults", "--socket=\(socket)", "-uroot", "-e",
                """
                CREATE DATABASE IF NOT EXISTS `\(database)`;
                CREATE USER IF NOT EXISTS '\(user)'@'%' IDENTIFIED BY '\(password)';
                CREATE USER IF NOT EXISTS '\(user)'@'127.0.0.1' IDENTIFIED BY '\(password)';
                GRANT ALL ON `\(database)`.* TO '\(user)'@'%';
                GRANT ALL ON `\(database)`.* TO '\(user)'@'127.0.0.1';
                """,
            ]
        )
    }

    /// A clean stop (SIGTERM), as an operator's restart would do.
    func stop() async { await child.stop(signal: SIGTERM, within: 120) }
}

extension Duration {
    /// The duration in seconds, fractions included.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// Polls `condition` every 100 ms for up to `seconds`.
func waitUntil(_ what: String, within seconds: Double = 60, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if (try? await condition()) == true { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw FaultSuiteError("\(what) not ready within \(Int(seconds)) s")
}

/// The suite could not set up or run a scenario (not a failed invariant: those are in the report).
public struct FaultSuiteError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
