import Hummingbird
import Inventory

/// The status page at `GET /` and the JSON it polls, `GET /v1/status`: low items, outbox, journal lag, worker
/// throughput and the last reconciliation, for an operator's eye (Prometheus has the same numbers for alerts).
/// `GET /v1/businesses/{bizId}/status`: one business's low items, nothing of the others.
struct StatusRoutes: Sendable {
    /// Low items shown at most, the lowest first; `lowStockCount` tells how many there are.
    static let lowStockLimit = 100

    let engine: any InventoryService
    /// The write-back worker running in this process, if any.
    let worker: WriteBackWorker?

    /// Adds `GET /` and `GET /v1/status`.
    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: StatusPage.html)
            )
        }
        router.get("/v1/status") { _, _ in try await self.status() }
        router.get("/v1/businesses/:bizId/status") { _, context in
            try await self.businessStatus(try InventoryRoutes.pathBusiness(context))
        }
    }

    /// One business's status: its low items only (a token limited to the business may read it; `/v1/status` lists
    /// every business's and is for unlimited admin tokens).
    private func businessStatus(_ bizId: String) async throws -> Response {
        let low: (levels: [StockLevel], count: Int)
        do {
            low = try await engine.lowStock(of: bizId, limit: Self.lowStockLimit)
        } catch let error as InventoryError {
            throw Problem(error)
        }
        var writer = JSONWriter(capacity: 256)
        writer.beginObject()
        writer.field("generatedAt", Timestamp.rfc3339(milliseconds: InventoryEngine.nowMilliseconds()))
        writer.field("bizId", bizId)
        writer.beginArray("lowStock")
        for level in low.levels { StockLevelBody(level).write(to: &writer) }
        writer.endArray()
        writer.field("lowStockCount", low.count)
        writer.endObject()
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: writer.buffer)
        )
    }

    private func status() async throws -> Response {
        let engineStatus: EngineStatus
        do {
            engineStatus = try await engine.status(lowStockLimit: Self.lowStockLimit)
        } catch let error as InventoryError {
            throw Problem(error)
        }
        let body = StatusBody(
            generatedAt: Timestamp.rfc3339(milliseconds: InventoryEngine.nowMilliseconds()), engine: engineStatus,
            worker: worker?.progress
        )
        var writer = JSONWriter(capacity: 512)
        body.write(to: &writer)
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: writer.buffer)
        )
    }
}

/// `GET /v1/status` (the `Status` schema of the OpenAPI document). Unknown numbers are null, never left out.
struct StatusBody: ResponseBody {
    let generatedAt: String
    let engine: EngineStatus
    /// Nil when no worker runs in this process.
    let worker: WriteBackProgress?

    func write(to writer: inout JSONWriter) {
        writer.beginObject()
        writer.field("generatedAt", generatedAt)
        writer.beginArray("lowStock")
        for level in engine.lowStock {
            StockLevelBody(level).write(to: &writer)
        }
        writer.endArray()
        writer.field("lowStockCount", engine.lowStockCount)
        writer.optional("outboxEntries", engine.outboxEntries)
        writeWorker(to: &writer)
        writeReconcile(to: &writer)
        writer.endObject()
    }

    private func writeWorker(to writer: inout JSONWriter) {
        guard let worker else {
            writer.null("worker")
            return
        }
        writer.beginObject("worker")
        writer.optional("journalLagP50Ms", worker.lagP50Milliseconds)
        writer.optional("journalLagP99Ms", worker.lagP99Milliseconds)
        writer.optional("eventsPerSecond", worker.eventsPerSecond)
        writer.endObject()
    }

    private func writeReconcile(to writer: inout JSONWriter) {
        guard let reconcile = engine.lastReconcile else {
            writer.null("lastReconcile")
            return
        }
        writer.beginObject("lastReconcile")
        writer.field("startedAt", Timestamp.rfc3339(milliseconds: reconcile.startedAtMilliseconds))
        writer.field("finishedAt", reconcile.finishedAtMilliseconds.map(Timestamp.rfc3339(milliseconds:)))
        writer.field("itemsChecked", reconcile.itemsChecked)
        writer.field("differences", reconcile.differences)
        writer.endObject()
    }
}

extension JSONWriter {
    /// `key` with an integer, or null.
    fileprivate mutating func optional(_ key: String, _ value: (some BinaryInteger)?) {
        if let value { field(key, value) } else { null(key) }
    }
}
