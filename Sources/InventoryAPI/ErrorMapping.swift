import Hummingbird
import Inventory
import Logging

extension Problem {
    /// The one place domain errors become HTTP answers.
    init(_ error: InventoryError) {
        switch error {
        case .insufficientStock(let shortages):
            self.init(
                .conflict, type: "insufficient-stock", title: "Insufficient stock",
                detail: "not enough stock for \(shortages.count) item(s); nothing was reserved",
                items: shortages.map { .init(skuId: $0.skuId, requested: $0.requested, available: $0.available) }
            )
        case .userLimitExceeded(let lines):
            self.init(
                .conflict, type: "user-limit-exceeded", title: "Per-user limit reached",
                detail: "the user would get more than \(lines.count) item(s)' per-user limit allows; nothing was reserved"
            )
            userLimits = lines.map { .init(skuId: $0.skuId, requested: $0.requested, limit: $0.limit, used: $0.used) }
        case .userRequired(let skus):
            // 409, not 422: the body is well-formed; the item's settings (a per-user limit) ask for more.
            self.init(
                .conflict, type: "user-required", title: "A user is required",
                detail: "skuId \(skus.map(String.init).joined(separator: ", ")) has a per-user limit: the order must name its userId; nothing was reserved",
                unknownSkuIds: nil
            )
            userRequiredSkuIds = skus
        case .poolUnavailable(let sku, let reason):
            self.init(
                .conflict, type: "code-pool-unavailable", title: "Code pool unavailable",
                detail: "the code pool of skuId \(sku) is \(reason): it hands out no codes; nothing was reserved"
            )
        case .codeUnavailable(let sku, let code):
            self.init(
                .conflict, type: "code-unavailable", title: "Code not available",
                detail: "code \(code) is not a usable code of skuId \(sku)'s pool (unknown, held or used); nothing was reserved"
            )
        case .noCodePool(let sku):
            self.init(
                .notFound, type: "no-code-pool", title: "No code pool",
                detail: "skuId \(sku) has no code pool"
            )
        case .poolConflict(let detail):
            self.init(.conflict, type: "code-pool-conflict", title: "Not allowed for this code pool", detail: detail)
        case .unknownItems(let skus):
            self.init(
                .notFound, type: "unknown-stock-item", title: "Unknown stock item",
                detail: "no stock is set up for skuId \(skus.map(String.init).joined(separator: ", ")); nothing was reserved",
                unknownSkuIds: skus
            )
        case .orderClosed(let status):
            self.init(
                .conflict, type: "order-closed", title: "Order already \(status.rawValue)",
                detail: "the order was \(status.rawValue) before; it cannot be reserved or confirmed"
            )
        case .idempotencyConflict:
            self.init(
                .unprocessableContent, type: "idempotency-conflict", title: "Same id, different request",
                detail: "this id was already used with a different body; use a new id or resend the original body"
            )
        case .notFound:
            self = .notFound("no such resource")
        case .invalidState(let status):
            self.init(
                .conflict, type: "invalid-state", title: "Not allowed in state \(status.rawValue)",
                detail: "the order is \(status.rawValue), which does not allow this operation"
            )
        case .belowReserved(let reserved):
            self.init(
                .conflict, type: "below-reserved", title: "Stock below what is reserved",
                detail: "on-hand stock may not go below the \(reserved) unit(s) held by live reservations"
            )
        case .unavailable(let detail):
            self = .unavailable("\(detail); nothing was changed")
        case .notSupported(let detail):
            self.init(.notImplemented, type: "not-supported", title: "Not supported by this engine", detail: detail)
        case .outcomeUnknown(let detail):
            self = .unavailable("\(detail); the change may or may not have been made: retry with the same id")
        case .madeUnread(let detail):
            self = .unavailable("the change was made; the stock level it left could not be read (\(detail)): read it again")
        }
    }
}

extension Problem {
    /// An error nothing expected (a bug, or a failure no layer maps): logged with the request's path (and, through
    /// the task-local metadata, its id), answered as a 500 problem that says nothing about the internals.
    static func unexpected(_ error: any Error, request: Request, logger: Logger) -> Response {
        logger.error("unhandled error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
        return Problem(.internalServerError, type: "internal", title: "Internal error", detail: "an unexpected error occurred")
            .makeResponse()
    }
}
