import FaultSuite
import Foundation
import Inventory
import MySQLClient
import InventoryTestSupport
import RedisClient

/// What must hold after every step and at the end of a program.
extension Driver {
    /// Every item's level is the model's (reading it rebuilds an item Redis lost, as any client's read would).
    func checkLevels(_ model: ReferenceModel) async throws {
        for sku in Self.items(model) {
            // While Redis is full an item not in it cannot be rebuilt (503 until room): checked once there is room.
            if redisFull.isSet, try await stores.redis.command("HEXISTS", stores.keys.item(stores.item(sku)), "stock_num").int != 1 {
                continue
            }
            let expected = model.level(sku: sku)
            let answer = try await answering {
                let level = try await stores.engine.stock(stores.item(sku))
                return .level(available: level.available, reserved: level.reserved)
            }
            if answer != expected {
                throw CheckFailed(message: "item \(sku): the service says \(answer); the model says \(expected)")
            }
        }
    }

    /// No item hash in Redis without stock_num (a partial item a script wrote into).
    func checkWhole(_ model: ReferenceModel) async throws {
        for sku in Self.items(model) {
            let key = stores.keys.item(stores.item(sku))
            let fields = try await stores.redis.command("HGETALL", key).array?.compactMap(\.text) ?? []
            if !fields.isEmpty && !stride(from: 0, to: fields.count, by: 2).contains(where: { fields[$0] == "stock_num" }) {
                throw CheckFailed(message: "item \(sku) is partial in Redis: \(fields)")
            }
        }
    }

    /// Whether `step` deletes the code pool's set or item.
    static func removesCodes(_ step: Step) -> Bool {
        switch step {
        case .fault(.deleteCodeSet), .fault(.deleteItem(Features.codeItem)), .fault(.drainThenLoseEverything), .fault(.goBack): true
        case .onSecondInstance(let inner): removesCodes(inner)
        default: false
        }
    }

    /// The program's items: the drawn ones, and the code pool's and the infinite one when they have been made.
    static func items(_ model: ReferenceModel) -> [UInt64] {
        Program.items + [Features.codeItem, Features.infiniteItem].filter { model.items[$0] != nil }
    }

    /// The pool's unused codes (its export) are the model's usable ones.
    func checkCodes(_ model: ReferenceModel) async throws {
        guard let pool = model.pool else { return }
        let unused = try await retrying { try await stores.engine.unusedCodes(stores.item(Features.codeItem)) }
        if unused.sorted() != pool.usable.sorted() {
            throw CheckFailed(message: "the pool's unused codes are \(unused.sorted()); the model has \(pool.usable.sorted())")
        }
    }

    func finalChecks(_ model: ReferenceModel) async throws {
        // Reversals stored as retry tasks (the store they needed was away) run as the retrier would run them, and all
        // succeed now that both stores answer: a task that keeps failing is a defect (a script that errors, a
        // reversal that can never apply).
        _ = try await afterOutage { try await stores.engine.retryCompensations(limit: 1000) }
        let stuck = try await afterOutage { try await stores.pendingRetryTasks() }
        if stuck != 0 {
            throw CheckFailed(message: "\(stuck) retry task(s) still pending after a retry with both stores up")
        }
        guard try await afterOutage({ try await stores.drainWithWorker() }) else { throw CheckFailed(message: "the outbox did not drain") }
        // A code set that vanished after the last step is mended by its next use, as any client's would: the
        // reconciler reports it until then (an empty set and a vanished one look the same to it).
        try await checkCodes(model)
        let report = try await afterOutage { try await stores.reconciler().run(.business(stores.bizId)) }
        if !report.clean {
            throw CheckFailed(message: "reconcile after the drain: \(report.differences) \(report.codeDifferences)")
        }
        for (sku, item) in model.items.sorted(by: { $0.key < $1.key }) {
            let stock = try await afterOutage { try await stores.mysqlStock(sku) }
            if stock != item.onHand {
                throw CheckFailed(message: "MySQL stock of item \(sku) is \(stock.map(String.init) ?? "none"); the model says \(item.onHand)")
            }
        }
        var expected: [JournalLine] = []
        for (order, current) in model.orders {
            // (a duplicate hold its order went on with is not the journal's row: the earlier order's is)
            // (and its rows' states may differ: `JournalState.movedLines`)
            let state = current.journal.map(ReferenceModel.Order.init(journal:)) ?? current
            for line in state.lines where line.reserved > 0 {
                let status = current.journal?.status(of: line.skuId) ?? state.status
                expected.append(
                    JournalLine(
                        orderId: orderId(order), skuId: line.skuId, quantity: line.reserved,
                        status: status.rawValue.uppercased()
                    )
                )
            }
        }
        let rows = try await afterOutage { try await stores.journalRows() }
        let sortedExpected = expected.sorted { ($0.orderId, $0.skuId) < ($1.orderId, $1.skuId) }
        let sortedRows = rows.sorted { ($0.orderId, $0.skuId) < ($1.orderId, $1.skuId) }
        if sortedRows != sortedExpected {
            let missing = sortedExpected.filter { !sortedRows.contains($0) }
            let extra = sortedRows.filter { !sortedExpected.contains($0) }
            throw CheckFailed(message: "journal: missing \(missing), unexpected \(extra)")
        }
    }
}
