import FaultSuite
import Foundation
import Inventory
import InventoryTestSupport

/// The processes a program kills (`Features.processKills`): its own Redis, a write-back worker process, and a
/// service process in the middle of a burst of reserves sent to it over HTTP.
extension Driver {
    /// Kills the program's own Redis (the cluster's first node) and starts it again from its append-only file.
    func restartRedis() async throws {
        guard let ownRedis else { throw CheckFailed(message: "a Redis restart in a program without a Redis of its own") }
        redisRestarting.set(true)
        defer { redisRestarting.set(false) }
        await ownRedis.kill()
        try await ownRedis.start()
        // A restarted Redis forgot the maxmemory CONFIG SET gave it: full it stays, as the program says.
        if redisFull.isSet { try await setMaxmemory("1") }
    }

    /// Starts a write-back worker process on this program's stores (the consumer name of the harness's own drains,
    /// small batches, short leases), waits until it has applied some of the outbox (or a few seconds), and kills it
    /// `afterMilliseconds / 10` ms later (SIGKILL), somewhere in its work.
    func killWorker(afterMilliseconds: Int) async throws {
        var environment = processEnvironment()
        environment["INVENTORY_WORKER_CONSUMER"] = "test"
        environment["INVENTORY_WORKER_BATCH"] = "2"
        // Its streams go back to the harness's drains 2 s after the kill (the shortest lease), not 10.
        environment["INVENTORY_WORKER_LEASE_MS"] = "2000"
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("modelcheck-worker-\(stores.bizId).log").path
        let worker = ChildProcess(
            name: "worker", executable: TestStores.inventorydBinary, arguments: ["worker"], environment: environment,
            logPath: log
        )
        let before = try await retrying { Int64(try await stores.engine.outboxLength()) }
        try worker.start()
        // Whether it got to work or not, it is killed: a wait bounded by its start-up, not an ordering the checks need.
        try? await waitFor("the worker process applying the outbox", within: .seconds(5), every: .milliseconds(2)) {
            if before == 0 { return true }
            return Int64(try await stores.engine.outboxLength()) < before
        }
        try? await Task.sleep(for: .milliseconds(afterMilliseconds / 10))
        if !worker.isRunning {
            // it stopped on its own: a worker that cannot start is not a kill
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            try? FileManager.default.removeItem(atPath: log)
            throw CheckFailed(message: "the worker process exited before it was killed: \(output.suffix(2000))")
        }
        await worker.stop(signal: SIGKILL)
        try? FileManager.default.removeItem(atPath: log)
    }

    /// The environment of an `inventoryd` process on this program's stores (its Redis, MariaDB through the proxy
    /// when there is one), without the expiry sweeper or the periodic reconciler: the program decides when holds
    /// expire and when the reconciler runs.
    func processEnvironment() -> [String: String] {
        var environment = stores.serviceEnvironment()
        environment["INVENTORY_SWEEP_INTERVAL_MS"] = "0"
        environment["INVENTORY_RECONCILE_INTERVAL_SECONDS"] = "0"
        environment["INVENTORY_LOG_LEVEL"] = "error"
        if let ownRedis {
            if ownRedis.clustered {
                environment["INVENTORY_REDIS_CLUSTER"] = ownRedis.ports.map { "127.0.0.1:\($0)" }.joined(separator: ",")
            } else {
                environment["INVENTORY_REDIS_PORT"] = String(ownRedis.port)
            }
        }
        if let mysqlProxy { environment["INVENTORY_MYSQL_PORT"] = String(mysqlProxy.port) }
        return environment
    }

    /// A burst sent over HTTP to a service process (`inventoryd serve`, no worker) that is killed (SIGKILL)
    /// `afterMilliseconds` ms after the requests went out: a reserve whose answer did not come (or came as 503) is
    /// retried through `engine`, another instance, as a client would after a lost connection.
    func burstThroughKilledService(
        _ orders: [Int], _ lines: [Line], afterMilliseconds: Int, model: inout ReferenceModel, on engine: InventoryEngine
    ) async throws {
        var environment = processEnvironment()
        let port = try Tools.freePort()
        environment["INVENTORY_HTTP_HOST"] = "127.0.0.1"
        environment["INVENTORY_HTTP_PORT"] = String(port)
        environment["INVENTORY_WORKER"] = "false"
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("modelcheck-serve-\(stores.bizId).log").path
        let service = ChildProcess(
            name: "service", executable: TestStores.inventorydBinary, arguments: ["serve"], environment: environment,
            logPath: log
        )
        try service.start()
        do {
            // live, not ready: ready needs MariaDB, which may be down now (the reserves need only Redis)
            try await waitFor("the service process listening", within: .seconds(60), every: .milliseconds(20)) {
                await Self.request(port: port, "GET", "/healthz").status == 200
            }
        } catch {
            await service.stop(signal: SIGKILL)
            throw CheckFailed(message: "the service process did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let bizId = stores.bizId
        let namesUsers = model.namesUsers
        let orderIds = Dictionary(uniqueKeysWithValues: orders.map { ($0, orderId($0)) })
        try await burst(
            orders, lines, model: &model, on: engine,
            meanwhile: {
                try? await Task.sleep(for: .milliseconds(afterMilliseconds))
                await service.stop(signal: SIGKILL)
            },
            firstAttempt: { order in
                let user = namesUsers ? "\"userId\":\"\(ReferenceModel.burstUser(order))\"," : ""
                let items = lines.map { "{\"skuId\":\($0.sku),\"quantity\":\($0.quantity)}" }.joined(separator: ",")
                let body = "{\"orderId\":\"\(orderIds[order]!)\",\"bizId\":\"\(bizId)\",\(user)\"items\":[\(items)],\"ttlSeconds\":3600}"
                let (status, answer) = await Self.request(port: port, "POST", "/v1/reservations", json: body)
                switch status {
                case 201 where answer.contains("\"status\":\"reserved\""): return true
                case 409 where answer.contains("insufficient-stock"): return false
                case nil, 503: return nil  // no answer (killed), or outcome unknown: retried through another instance
                default: throw CheckFailed(message: "a burst reserve of o\(order) over HTTP answered \(status ?? 0): \(answer)")
                }
            }
        )
        await service.stop(signal: SIGKILL)
        try? FileManager.default.removeItem(atPath: log)
    }

    /// One HTTP request on a connection of its own: the status and the body, or a nil status when no whole answer
    /// came back.
    static func request(port: Int, _ method: String, _ path: String, json: String = "") async -> (status: Int?, body: String) {
        guard let connection = try? await RawConnection.connect(port: port) else { return (nil, "") }
        defer { Task { await connection.close() } }
        let head =
            "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            + (json.isEmpty ? "" : "Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n") + "\r\n"
        guard (try? await connection.send(head + json)) != nil else { return (nil, "") }
        let received = await connection.receive(within: 30) { Self.answer(in: $0) != nil }
        return Self.answer(in: received) ?? (nil, "")
    }

    /// The status and body of a whole HTTP answer in `bytes` (its body as long as its Content-Length), or nil.
    static func answer(in bytes: [UInt8]) -> (status: Int?, body: String)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 "), let end = text.range(of: "\r\n\r\n") else { return nil }
        let head = text[..<end.lowerBound].lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        let body = Array(text[end.upperBound...].utf8)
        guard body.count >= length else { return nil }
        return (Int(text.dropFirst(9).prefix(3)), String(decoding: body.prefix(length), as: UTF8.self))
    }
}
