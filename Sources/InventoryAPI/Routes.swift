import Foundation
import HTTPTypes
import Hummingbird
import Inventory
import InventorySettings
import Logging

/// The HTTP API v1 over an engine: decode and validate, call the engine, encode. No business rules here.
public struct InventoryRoutes: Sendable {
    let engine: any InventoryService
    let limits: InputLimits
    let limiter: HotItemLimiter?
    let admission: BusinessAdmission?
    let bulk: BulkGate?

    public init(
        engine: any InventoryService, limits: InputLimits = InputLimits(), limiter: HotItemLimiter? = nil,
        admission: BusinessAdmission? = nil, bulk: BulkGate? = nil
    ) {
        self.engine = engine
        self.limits = limits
        self.limiter = limiter
        self.admission = admission
        self.bulk = bulk
    }

    /// Adds every route to a router.
    public func register(on router: Router<BasicRequestContext>) {
        router.post("/v1/reservations") { request, context in try await self.reserve(request, context, pathBizId: nil) }
        router.post("/v1/businesses/:bizId/reservations") { request, context in
            try await self.reserve(request, context, pathBizId: try self.business(context))
        }
        // A business's orders; the paths without one are business `default`'s (as before orders were scoped).
        for (prefix, scoped) in [("/v1/businesses/:bizId/reservations", true), ("/v1/reservations", false)] {
            router.get(RouterPath(prefix + "/:orderId")) { request, context in
                let order = try self.order(context, scoped: scoped)
                return try await self.call(orderId: order.orderId) {
                    let reservation = try await self.engine.reservation(orderId: order.orderId, bizId: order.bizId)
                    return try self.json(.ok, ReservationBody(reservation))
                }
            }
            router.post(RouterPath(prefix + "/:orderId/confirm")) { request, context in
                let order = try self.order(context, scoped: scoped)
                return try await self.call(orderId: order.orderId) {
                    let outcome = try await self.engine.confirm(orderId: order.orderId, bizId: order.bizId)
                    return try self.json(.ok, ReservationBody(outcome.reservation), replayed: outcome.replayed)
                }
            }
            router.post(RouterPath(prefix + "/:orderId/cancel")) { request, context in
                let order = try self.order(context, scoped: scoped)
                return try await self.call(orderId: order.orderId) {
                    let outcome = try await self.engine.cancel(orderId: order.orderId, bizId: order.bizId)
                    return try self.json(.ok, ReservationBody(outcome.reservation), replayed: outcome.replayed)
                }
            }
            router.post(RouterPath(prefix + "/:orderId/refund")) { request, context in
                let order = try self.order(context, scoped: scoped)
                return try await self.call(orderId: order.orderId) {
                    let outcome = try await self.engine.refund(orderId: order.orderId, bizId: order.bizId)
                    return try self.json(.ok, ReservationBody(outcome.reservation), replayed: outcome.replayed)
                }
            }
        }
        router.get("/v1/stock/:bizId/:skuId") { request, context in
            let id = try self.stockItem(context)
            return try await self.call { try self.json(.ok, StockLevelBody(try await self.engine.stock(id))) }
        }
        router.put("/v1/stock/:bizId/:skuId") { request, context in
            let id = try self.stockItem(context)
            let body = try await self.decode(StockBody.self, request, context)
            guard let settings = body.settings else { throw Problem.invalid(body.problems) }
            return try await self.call { try self.json(.ok, StockLevelBody(try await self.engine.setStock(id, settings))) }
        }
        router.post("/v1/stock/:bizId/:skuId/adjustments") { request, context in
            let id = try self.stockItem(context)
            let body = try await self.decode(AdjustmentBody.self, request, context)
            guard let adjustment = body.adjustment else { throw Problem.invalid(body.problems) }
            return try await self.call {
                let outcome = try await self.engine.adjustStock(id, adjustment)
                return try self.json(.ok, StockLevelBody(outcome.level), replayed: outcome.replayed)
            }
        }
        router.put("/v1/stock/:bizId/:skuId/pool") { request, context in
            let id = try self.stockItem(context)
            let body = try await self.decode(PoolBody.self, request, context)
            guard let pool = body.pool else { throw Problem.invalid(body.problems) }
            return try await self.call { try self.json(.ok, PoolAnswer(item: id, pool: try await self.engine.setPool(id, pool))) }
        }
        router.get("/v1/stock/:bizId/:skuId/pool") { request, context in
            let id = try self.stockItem(context)
            return try await self.call { try self.json(.ok, PoolAnswer(item: id, pool: try await self.engine.pool(id))) }
        }
        router.post("/v1/stock/:bizId/:skuId/codes") { request, context in
            let id = try self.stockItem(context)
            // The pool first: a body for an item without one is not parsed at all (404 no-code-pool).
            do { _ = try await self.engine.pool(id) } catch let error as InventoryError { throw Problem(error) }
            try self.checkBulkRoom()
            // The body first (its own deadline bounds a slow client), then the parse and the load in the gate's turn.
            let body = try await self.uploadBody(request)
            return try await self.bulkWork { try await self.upload(id, body) }
        }
        router.get("/v1/stock/:bizId/:skuId/codes") { request, context in
            let id = try self.stockItem(context)
            return try await self.call {
                // The pool and its item are checked here (a 4xx or 503 is an answer); the codes are written a page at a
                // time as the client reads them, one export (or upload) at a time per place of the bulk gate. Redis
                // failing half-way ends the response early (the connection closes; no 200 with a silently short list).
                let export = try await self.engine.exportCodes(id)
                try self.checkBulkRoom()
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
                    body: .init { writer in
                        // The gate's place is held while a page is read from Redis and formatted, and given up
                        // while the page is written: a client that stops reading holds no place (BulkGate).
                        var held = await self.bulk?.enter()
                        defer { if let held { self.bulk?.leave(since: held) } }
                        try await export.forEachPage { page in
                            var buffer = ByteBuffer()
                            buffer.reserveCapacity(page.reduce(0) { $0 + $1.utf8.count + 1 })
                            for code in page {
                                buffer.writeString(code)
                                buffer.writeInteger(UInt8(ascii: "\n"))
                            }
                            if let started = held {
                                self.bulk?.leave(since: started)
                                held = nil
                            }
                            try await writer.write(buffer)
                            held = await self.bulk?.enter()
                        }
                        if let started = held {
                            self.bulk?.leave(since: started)
                            held = nil
                        }
                        try await writer.finish(nil)
                    }
                )
            }
        }
        router.get("/healthz") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}"))
            )
        }
        router.get("/readyz") { _, _ in
            let checks = await self.engine.readinessChecks()
            let ready = checks.allSatisfy(\.ok)
            return try self.json(ready ? .ok : .serviceUnavailable, ReadinessBody(ready: ready, checks: checks))
        }
        OpenAPIDocument.load().register(on: router)
    }

    /// `pathBizId`: the business the path names (`/v1/businesses/{bizId}/reservations`), which a `bizId` in the
    /// body must repeat; nil for `/v1/reservations` (the body's, else `default`).
    private func reserve(_ request: Request, _ context: BasicRequestContext, pathBizId: String?) async throws -> Response {
        let body = try await decode(ReserveBody.self, request, context)
        guard body.problems.isEmpty, let orderId = body.orderId else { throw Problem.invalid(body.problems) }
        if let pathBizId, let named = body.bizId, named != pathBizId {
            throw Problem(
                .unprocessableContent, type: "business-mismatch", title: "The body names another business",
                detail: "the body's bizId \(named) is not the path's \(pathBizId); leave it out or repeat the path's"
            )
        }
        let command = ReserveCommand(
            orderId: orderId,
            bizId: pathBizId ?? body.bizId ?? OrderRef.defaultBusiness,
            userId: body.userId,
            items: body.items.compactMap { item in
                guard let sku = item.skuId, let quantity = item.quantity else { return nil }
                return ReserveCommand.Item(skuId: sku, quantity: quantity, codes: item.codes ?? [])
            },
            ttlSeconds: body.ttlSeconds ?? engine.defaultTTLSeconds,
            shortage: body.shortage ?? .reject,
            dispense: body.dispense
        )
        try AccessScope.check(command.bizId)
        try admit(command.bizId)
        if let limiter, !limiter.admit(command.items.map { StockItemID(bizId: command.bizId, skuId: $0.skuId) }) {
            InventoryMetrics.limited()
            throw Problem.tooMany(
                type: "hot-item-limited", title: "Too many reservations of this item",
                detail: "an item of this order takes more reservations than this instance admits per window; retry"
            )
        }
        // Where the order lives: the business's own paths (the short ones are business default's only).
        // An id of dots only is sent percent-encoded: a client would otherwise resolve "." or ".." as a path step.
        let pathId = orderId.allSatisfy { $0 == "." } ? orderId.replacingOccurrences(of: ".", with: "%2E") : orderId
        let location = "/v1/businesses/\(command.bizId)/reservations/\(pathId)"
        return try await call(orderId: orderId) {
            switch try await engine.reserve(command) {
            case .created(let reservation):
                return try json(.created, ReservationBody(reservation), location: location)
            case .replayed(let reservation):
                return try json(.ok, ReservationBody(reservation), replayed: true, location: location)
            }
        }
    }

    /// A code upload's body, parsed and loaded (inside the bulk gate: parsing 8 MiB is the work it bounds).
    private func upload(_ id: StockItemID, _ body: ByteBuffer) async throws -> Response {
        let upload = CodeUpload(body)
        guard upload.problems.isEmpty else {
            throw Problem(
                .unprocessableContent, type: "invalid-codes", title: "Invalid code upload",
                detail: "\(upload.problems.count) problem(s), the first: \(upload.problems[0].detail); nothing was loaded",
                errors: upload.problems
            )
        }
        return try await call {
            let outcome = try await engine.loadCodes(id, upload.codes)
            return try json(
                .ok, CodeLoadBody(outcome: CodeLoadOutcome(added: outcome.added, duplicates: outcome.duplicates + upload.repeated))
            )
        }
    }

    // MARK: - Helpers

    /// A 429 when the bulk gate (`BulkGate`) has no room, running or queued, for one more export or upload.
    private func checkBulkRoom() throws {
        guard let bulk, !bulk.hasRoom else { return }
        InventoryMetrics.bulkRefused()
        throw Problem.tooMany(
            type: "bulk-busy", title: "Too many code exports and uploads",
            detail: "this instance runs \(bulk.concurrency) code export(s) or upload(s) at a time and \(bulk.queueLimit) wait; retry"
        )
    }

    /// Runs bulk work in its turn of the bulk gate (at once without one).
    private func bulkWork<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard let bulk else { return try await body() }
        return try await bulk.run(body)
    }

    /// The per-business admission limit (`BusinessAdmission`): a 429 when `bizId` sent more than its rate.
    private func admit(_ bizId: String) throws {
        guard let admission, case .refused(let seconds) = admission.admit(bizId) else { return }
        InventoryMetrics.businessLimited()
        throw Problem.tooMany(
            type: "business-rate-limited", title: "Too many requests for this business",
            detail: "business \(bizId) sent more than the \(Int(admission.rate)) requests per second this instance admits; retry",
            retryAfterSeconds: seconds
        )
    }

    /// Runs an engine call, turning its errors into problems; log lines written meanwhile name the order.
    private func call(orderId: String? = nil, _ body: () async throws -> Response) async throws -> Response {
        do {
            if let orderId { return try await RequestMetadata.$orderId.withValue(orderId) { try await body() } }
            return try await body()
        } catch let error as InventoryError {
            throw Problem(error)
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext) async throws -> T {
        let buffer = try await body(request, as: "application/json", upTo: limits.maxBodyBytes)
        // A body in the plain subset of JSON is read without JSONDecoder (the hot route's; see PlainJSON).
        if let plainType = T.self as? any PlainBody.Type, let json = PlainJSON.parse(buffer),
            let read = plainType.init(plain: json, limits: limits) as? T
        {
            return read
        }
        let decoder = JSONDecoder()
        decoder.userInfo[.inputLimits] = limits
        do {
            return try decoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
            throw Problem.badRequest("the body must be a JSON object")
        } catch {
            throw Problem.badRequest("the body is not valid JSON")
        }
    }

    /// A text/plain body (a code upload), up to `limits.maxCodeUploadBytes`; codes are ASCII, so any other byte is
    /// reported on its line by `CodeUpload`.
    private func uploadBody(_ request: Request) async throws -> ByteBuffer {
        try await body(request, as: "text/plain", upTo: limits.maxCodeUploadBytes)
    }

    /// The whole body of a request sent as `mediaType` (parameters such as charset allowed), at most `limit` bytes.
    private func body(_ request: Request, as mediaType: String, upTo limit: Int) async throws -> ByteBuffer {
        guard let contentType = request.headers[.contentType] else {
            throw Problem(
                .unsupportedMediaType, type: "unsupported-media-type", title: "Unsupported media type",
                detail: "send the body as \(mediaType) (no Content-Type was given)"
            )
        }
        // Not split(separator:), which drops empty pieces and so would read ";application/json" as JSON.
        let given = contentType.prefix { $0 != ";" }.trimmingCharacters(in: .whitespaces).lowercased()
        guard given == mediaType else {
            throw Problem(
                .unsupportedMediaType, type: "unsupported-media-type", title: "Unsupported media type",
                detail: "send the body as \(mediaType), not \(contentType)"
            )
        }
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            // NIOTooManyBytesError: ProblemResponder answers it as the documented http-413 problem, the same as a body
            // that is too large for Hummingbird itself.
            throw error
        } catch {
            // The connection broke or was cut off (a body too slow to arrive) before the body was complete.
            throw Problem.badRequest("the body ended before it was complete")
        }
    }

    /// A path parameter as the client meant it: the router hands it over percent-encoded, and a client may encode
    /// any character (":" as %3A). Empty when it does not decode to UTF-8, which no rule accepts.
    private func parameter(_ name: String, _ context: BasicRequestContext) -> String {
        Self.parameter(name, context)
    }

    static func parameter(_ name: String, _ context: BasicRequestContext) -> String {
        context.parameters.get(name)?.removingPercentEncoding ?? ""
    }

    /// The business a path names (`{bizId}`): 400 unless valid, 403 unless the token may touch it.
    static func pathBusiness(_ context: BasicRequestContext) throws -> String {
        let bizId = parameter("bizId", context)
        guard Patterns.isBizId(bizId) else {
            throw Problem.badRequest(
                "bizId in the path must be \(Patterns.bizIdRule)",
                errors: [.init(pointer: "path/bizId", detail: "must be \(Patterns.bizIdRule)")]
            )
        }
        try AccessScope.check(bizId)
        return bizId
    }

    /// The order a path names: its business (`scoped`: from the path, else `default`) and its orderId, checked
    /// against the token's businesses and the business's admission limit.
    private func order(_ context: BasicRequestContext, scoped: Bool) throws -> OrderRef {
        let bizId = scoped ? try business(context) : OrderRef.defaultBusiness
        let orderId = parameter("orderId", context)
        guard Patterns.isOrderId(orderId) else {
            throw Problem.badRequest(
                "orderId in the path must be \(Patterns.orderIdRule)",
                errors: [.init(pointer: "path/orderId", detail: "must be \(Patterns.orderIdRule)")]
            )
        }
        if !scoped {
            try AccessScope.check(bizId)
            try admit(bizId)
        }
        return OrderRef(bizId: bizId, orderId: orderId)
    }

    /// The business a path names (`/v1/businesses/{bizId}/…`), checked against the token's businesses and admitted.
    private func business(_ context: BasicRequestContext) throws -> String {
        let bizId = try Self.pathBusiness(context)
        try admit(bizId)
        return bizId
    }

    private func stockItem(_ context: BasicRequestContext) throws -> StockItemID {
        let biz = parameter("bizId", context)
        let skuText = parameter("skuId", context)
        var errors: [Problem.FieldError] = []
        if !Patterns.isBizId(biz) { errors.append(.init(pointer: "path/bizId", detail: "must be \(Patterns.bizIdRule)")) }
        // Positive and signed 64-bit: what the MySQL column and every client language hold exactly. Decimal digits
        // only: UInt64("+1") would take a sign the document does not allow.
        let sku = skuText.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ? UInt64(skuText) : nil
        if sku == nil || sku == 0 || sku! > UInt64(Int64.max) {
            errors.append(.init(pointer: "path/skuId", detail: "must be an integer from 1 to \(Int64.max)"))
        }
        guard errors.isEmpty, let sku else {
            throw Problem.badRequest(errors.map { "\($0.pointer) \($0.detail)" }.joined(separator: "; "), errors: errors)
        }
        try AccessScope.check(biz)
        try admit(biz)
        return StockItemID(bizId: biz, skuId: sku)
    }

    private func json(
        _ status: HTTPResponse.Status, _ value: some ResponseBody, replayed: Bool = false, location: String? = nil
    ) throws -> Response {
        var writer = JSONWriter()
        value.write(to: &writer)
        var headers: HTTPFields = [.contentType: "application/json"]
        if replayed { headers[.idempotentReplayed] = "true" }
        if let location { headers[.location] = location }
        return Response(status: status, headers: headers, body: .init(byteBuffer: writer.buffer))
    }
}

extension HTTPField.Name {
    static let idempotentReplayed = HTTPField.Name("Idempotent-Replayed")!
}
