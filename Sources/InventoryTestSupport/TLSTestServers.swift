import Foundation

/// Certificates and a TLS-only Redis for the TLS tests, made with the system's openssl and redis-server.
public enum TLSTestServers {
    /// A self-signed certificate and key in `directory` naming `names` (e.g. `DNS:localhost`), for one day.
    public static func makeCertificate(in directory: URL, names: String = "DNS:localhost") throws -> (certificate: String, key: String) {
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        try run("/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=\(names)", "-keyout", key, "-out", certificate,
        ])
        return (certificate, key)
    }

    /// A server process a test started, with the certificate it serves; `stop()` kills and reaps it and removes
    /// its folder.
    public struct Server: Sendable {
        public let port: Int
        public let certificate: String
        let pid: Int32
        let directory: URL

        public func stop() {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// A redis-server of its own, TLS only, without persistence.
    public typealias Redis = Server

    /// Starts the TLS Redis on a free port (its certificate names localhost) and waits until it listens.
    public static func startRedis() async throws -> Redis {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("redis-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let made = try makeCertificate(in: directory)
        let port = try freePort()
        return try await launch(
            "redis-server (TLS)", "/usr/bin/redis-server",
            [
                "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--tls-cert-file", made.certificate,
                "--tls-key-file", made.key, "--tls-ca-cert-file", made.certificate, "--tls-auth-clients", "no", "--save", "",
                "--appendonly", "no", "--dir", directory.path,
            ],
            port: port, certificate: made.certificate, directory: directory
        )
    }

    /// Starts `executable` with `arguments` and waits until it listens on `port` (and `ready` holds) for up to
    /// `limit`; a server that exits or does not get there is killed and reaped, its folder removed, and the wait's
    /// error thrown.
    static func launch(
        _ what: String, _ executable: String, _ arguments: [String], port: Int, certificate: String, directory: URL,
        within limit: Duration = .seconds(10), ready: @escaping () -> Bool = { true }
    ) async throws -> Server {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let server = Server(port: port, certificate: certificate, pid: process.processIdentifier, directory: directory)
        do {
            try await waitFor("\(what) listening on \(port)", within: limit, every: .milliseconds(20)) {
                guard process.isRunning else { throw TLSTestError(description: "\(what) on \(port) exited during start-up") }
                return listening(port) && ready()
            }
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    /// A mariadbd of its own whose certificate (names localhost and 127.0.0.1) is `certificate`, with a user
    /// `tls` (password `tls-password`) that must use TLS, on database `tls`.
    public struct MariaDB: Sendable {
        public let server: Server
        public var port: Int { server.port }
        public var certificate: String { server.certificate }
        public let user = "tls"
        public let password = "tls-password"
        public let database = "tls"

        public func stop() { server.stop() }
    }

    /// Initialises a data directory and starts mariadbd with TLS on a free port (a few seconds).
    public static func startMariaDB() async throws -> MariaDB {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mariadb-tls-\(UUID().uuidString)")
        let data = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let made = try makeCertificate(in: directory, names: "DNS:localhost,IP:127.0.0.1")
        let user = ProcessInfo.processInfo.userName
        try run("/usr/bin/mariadb-install-db", [
            "--no-defaults", "--datadir=\(data.path)", "--user=\(user)", "--auth-root-authentication-method=normal",
            "--skip-test-db", "--skip-name-resolve",
        ])
        let port = try freePort()
        let socket = directory.appendingPathComponent("mysql.sock").path
        let server = MariaDB(
            server: try await launch(
                "mariadbd (TLS)", "/usr/sbin/mariadbd",
                [
                    "--no-defaults", "--user=\(user)", "--datadir=\(data.path)", "--port=\(port)", "--bind-address=127.0.0.1",
                    "--socket=\(socket)", "--pid-file=\(directory.appendingPathComponent("mariadbd.pid").path)",
                    "--log-error=\(directory.appendingPathComponent("error.log").path)", "--skip-name-resolve",
                    "--innodb-buffer-pool-size=16M", "--ssl-ca=\(made.certificate)", "--ssl-cert=\(made.certificate)",
                    "--ssl-key=\(made.key)",
                ],
                port: port, certificate: made.certificate, directory: directory, within: .seconds(30),
                ready: { FileManager.default.fileExists(atPath: socket) }
            )
        )
        do {
            try run("/usr/bin/mariadb", [
                "--no-defaults", "--socket=\(socket)", "-uroot", "-e",
                "CREATE DATABASE tls; CREATE USER 'tls'@'%' IDENTIFIED BY 'tls-password' REQUIRE SSL; "
                    + "GRANT ALL PRIVILEGES ON tls.* TO 'tls'@'%';",
            ])
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    struct TLSTestError: Error, CustomStringConvertible {
        let description: String
    }

    static func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TLSTestError(description: "\(tool) \(arguments.joined(separator: " ")) failed")
        }
    }

    /// A port nothing listens on now (`TestPorts.free`: not one the kernel may hand an outgoing connection).
    static func freePort() throws -> Int { try TestPorts.free() }

    static func listening(_ port: Int) -> Bool {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = loopback(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return address
    }
}
