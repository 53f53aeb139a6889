import Foundation
import HTTPTypes
import HummingbirdTesting
import Inventory
import InventoryTestSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// `inventoryd serve` as a process, stopped with SIGTERM while clients keep reserving.
@Suite("Graceful shutdown")
struct ShutdownTests {
    static let connections = 16
    static let stock: Int64 = 1_000_000

    @Test(
        "SIGTERM under load: exit 0, every 2xx reserve held and journalled once, no 5xx but 503",
        arguments: [Durability.async, .sync]
    )
    func sigtermUnderLoad(durability: Durability) async throws {
        let binary = TestStores.inventorydBinary
        try #require(FileManager.default.isExecutableFile(atPath: binary), "build inventoryd first (scripts/test.sh does)")
        try await TestStores.with { stores in
            _ = try await stores.engine.setStock(stores.item(1), StockSettings(stock: Self.stock))
            let server = try await ServeProcess.start(binary: binary, stores: stores, durability: durability)
            defer { server.killIfRunning() }
            let tally = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for connection in 0..<Self.connections {
                    group.addTask {
                        await Self.reserveUntilRefused(port: server.port, bizId: stores.bizId, connection: connection, tally: tally)
                    }
                }
                // Stop the service in the middle of the load: once every client has been answered and the worker
                // is writing the journal. The clients go on until refused.
                try await waitFor("every client served, the journal being written", within: .seconds(60), every: .milliseconds(20)) {
                    let acknowledged = tally.snapshot.acknowledged
                    let clients = Set(acknowledged.map { $0.split(separator: "-").dropLast().joined(separator: "-") })
                    guard acknowledged.count >= 200, clients.count == Self.connections else { return false }
                    return try await Self.journalled(stores) > 0
                }
                tally.sigtermSent()
                server.terminate()
                try await group.waitForAll()
            }
            let exit = try await server.exitStatus(within: .seconds(10))
            let outcome = tally.snapshot
            print("SIGTERM under load (\(durability.rawValue)): \(outcome)")
            #expect(exit == 0, "inventoryd exited with \(exit.map(String.init) ?? "no status (killed)"); its output:\n\(server.output())")
            #expect(outcome.refused == Self.connections, "every client went on until a connection was refused")
            #expect(outcome.unexpected.isEmpty, "\(outcome.unexpected.prefix(5))")
            let badStatuses = outcome.statuses.filter { $0.key >= 500 && $0.key != 503 }
            #expect(badStatuses.isEmpty, "5xx other than 503: \(badStatuses)")
            #expect(Set(outcome.statuses.keys).isSubset(of: [201, 503]), "\(outcome.statuses)")

            // Every acknowledged hold is in Redis, and nothing else is.
            let level = try await stores.engine.stock(stores.item(1))
            #expect(level.reserved == Int64(outcome.acknowledged.count))
            #expect(level.available == Self.stock - Int64(outcome.acknowledged.count))
            for orderId in outcome.acknowledged.prefix(50) {
                #expect(try await stores.engine.reservation(orderId: orderId, bizId: stores.bizId).status == .reserved)
            }
            // The worker finished the batch in hand before it stopped: nothing read and left unacknowledged.
            #expect(try await Self.pendingEntries(stores) == 0)
            let worker = stores.worker()
            let run = Task { try await worker.run() }
            let drained = try await stores.drained()
            worker.stop()
            try await run.value
            #expect(drained)
            let rows = try await stores.journalRows()
            #expect(rows.count == outcome.acknowledged.count)
            #expect(Set(rows.map(\.orderId)) == Set(outcome.acknowledged))
            if exit == 0 { server.removeLog() }
        }
    }

    /// One keep-alive connection reserving one unit per request; after a closed connection it connects again,
    /// and it stops when a connection is refused after SIGTERM (or, as a bound, 8 s after it).
    static func reserveUntilRefused(port: Int, bizId: String, connection: Int, tally: Tally) async {
        var client: TestClient?
        var sequence = 0
        while !tally.pastDeadline {
            let current: TestClient
            if let client {
                current = client
            } else {
                current = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(5)))
                current.connect()
                do {
                    _ = try await current.getChannel()
                } catch {
                    try? await current.shutdown()
                    if tally.afterSigterm { return tally.refused() }
                    tally.unexpected("connection \(connection) refused before SIGTERM: \(error)")
                    return
                }
                client = current
            }
            let orderId = "sd-\(connection)-\(sequence)"
            sequence += 1
            let body = #"{"orderId": "\#(orderId)", "bizId": "\#(bizId)", "items": [{"skuId": 1, "quantity": 1}]}"#
            do {
                let response = try await current.post(
                    "/v1/reservations", headers: [.contentType: "application/json"], body: ByteBuffer(string: body)
                )
                tally.record(orderId, status: Int(response.status.code))
            } catch {
                // The server closed the connection: between requests (the request never reached it), or with this
                // one in flight (then the Redis count below finds a hold nobody was told about).
                try? await current.shutdown()
                client = nil
                if !tally.afterSigterm { tally.unexpected("connection \(connection) failed before SIGTERM: \(error)") }
            }
        }
        try? await client?.shutdown()
    }

    /// Journal rows of this test's business.
    static func journalled(_ stores: TestStores) async throws -> Int64 {
        let count = try await stores.mysql.query(
            "SELECT COUNT(*) AS n FROM reservation_journal WHERE biz_id = ?", [.string(stores.bizId)]
        )
        return count.rows.first?.int64("n") ?? 0
    }

    /// Entries of this test's outbox streams that a consumer read and did not acknowledge.
    static func pendingEntries(_ stores: TestStores) async throws -> Int {
        var total = 0
        for stream in stores.keys.outboxes {
            let reply = try await stores.redis.send(["XPENDING", stream, "writeback"], routingKey: stream)
            total += Int(reply.array?.first?.int ?? 0)
        }
        return total
    }
}

/// What the clients saw, shared between their tasks.
final class Tally: Sendable {
    struct Snapshot: Sendable, CustomStringConvertible {
        var acknowledged: [String] = []
        var acknowledgedAfterSigterm = 0
        var statuses: [Int: Int] = [:]
        var unexpected: [String] = []
        var sigtermAt: ContinuousClock.Instant?
        /// Clients that stopped because a connection was refused after SIGTERM.
        var refused = 0

        var description: String {
            "\(acknowledged.count) acknowledged (\(acknowledgedAfterSigterm) after SIGTERM), statuses \(statuses)"
        }
    }

    private let state = NIOLockedValueBox(Snapshot())

    var snapshot: Snapshot { state.withLockedValue { $0 } }
    var afterSigterm: Bool { state.withLockedValue { $0.sigtermAt != nil } }
    /// A bound on the clients if the service never stops accepting.
    var pastDeadline: Bool {
        state.withLockedValue { state in state.sigtermAt.map { ContinuousClock.now - $0 > .seconds(8) } ?? false }
    }

    func sigtermSent() { state.withLockedValue { $0.sigtermAt = .now } }

    func record(_ orderId: String, status: Int) {
        state.withLockedValue { state in
            state.statuses[status, default: 0] += 1
            guard (200..<300).contains(status) else { return }
            state.acknowledged.append(orderId)
            if state.sigtermAt != nil { state.acknowledgedAfterSigterm += 1 }
        }
    }

    func refused() { state.withLockedValue { $0.refused += 1 } }

    func unexpected(_ what: String) { state.withLockedValue { $0.unexpected.append(what) } }
}

/// `inventoryd serve` on a free port over a test's key prefix, business and database, its output in a file.
struct ServeProcess {
    let process: Process
    let port: Int
    let logFile: URL

    static func start(binary: String, stores: TestStores, durability: Durability) async throws -> ServeProcess {
        let port = try await freePort()
        var environment = stores.serviceEnvironment()
        environment["INVENTORY_HTTP_HOST"] = "127.0.0.1"
        environment["INVENTORY_HTTP_PORT"] = String(port)
        environment["INVENTORY_WORKER_CONSUMER"] = "serve-\(stores.keys.prefix)"
        environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
        environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
        environment["INVENTORY_DURABILITY"] = durability.rawValue
        let server = try launch(binary: binary, environment: environment, port: port)
        try await server.waitUntilServing()
        return server
    }

    /// Starts `inventoryd serve` with exactly `environment` (a free port unless it names one), without waiting.
    static func launch(binary: String, environment: [String: String], port: Int? = nil) throws -> ServeProcess {
        var environment = environment
        let port = try port ?? Int(environment["INVENTORY_HTTP_PORT"] ?? "") ?? freePortNow()
        environment["INVENTORY_HTTP_HOST"] = "127.0.0.1"
        environment["INVENTORY_HTTP_PORT"] = String(port)
        environment["INVENTORY_LOG_LEVEL"] = environment["INVENTORY_LOG_LEVEL"] ?? "notice"
        environment["INVENTORY_LOG_FORMAT"] = "text"
        let logFile = FileManager.default.temporaryDirectory.appendingPathComponent("inventoryd-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let output = try FileHandle(forWritingTo: logFile)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve"]
        process.environment = environment
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return ServeProcess(process: process, port: port, logFile: logFile)
    }

    /// A port nothing listens on now (`TestPorts.free`: below the ephemeral range, so no outgoing connection takes it
    /// between its pick and the service's bind, which failed a start once: "Address already in use").
    static func freePortNow() throws -> Int { try TestPorts.free() }

    static func freePort() async throws -> Int { try TestPorts.free() }

    /// Polls `/healthz` until it answers (bounded).
    func waitUntilServing() async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline, process.isRunning {
            let client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(2)))
            client.connect()
            let healthy = (try? await client.get("/healthz"))?.status == .ok
            try? await client.shutdown()
            if healthy { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw ServeError(description: "inventoryd did not serve on port \(port); its output:\n\(output())")
    }

    func terminate() { kill(process.processIdentifier, SIGTERM) }

    /// Whatever happened to the test, no process is left behind.
    func killIfRunning() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// The exit status once the process has ended; nil (after SIGKILL) when it did not end in time.
    func exitStatus(within limit: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + limit
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func removeLog() { try? FileManager.default.removeItem(at: logFile) }

    /// The last part of what the process wrote.
    func output() -> String {
        let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        return String(text.suffix(4000))
    }

    struct ServeError: Error, CustomStringConvertible {
        let description: String
    }
}
