import Inventory
import InventoryTestSupport

/// `Step.retryAfterRetention`: an order that ended is forgotten by Redis and its reserve sent again; or an order still
/// held whose keys vanish (all but its item's count of its hold) is sent again, a duplicate of a live order.
extension Driver {
    func retryAfterRetention(
        order: Int, lines: [Line], shortage: ShortageMode, options: ReserveOptions, confirm: Bool, rebuild: Bool = false,
        model: inout ReferenceModel
    ) async throws {
        // Only an order that ended and held something (a retention period runs from its end), or one still held in
        // full (its keys vanish piece by piece); not while Redis is full (the reserve would wait for room, a step of
        // its own).
        let live = model.liveWithHolds(order: order, shortage: shortage, options: options)
        guard live || model.endedWithHolds(order: order), !redisFull.isSet else { return }
        // Long ago: everything of it is in MySQL, and a journal window a data loss opened has closed (the markers say
        // so: Redis's clock is past them).
        try await inject(.drain)
        if model.journalWindow {
            for shard in 0..<stores.keys.shards {
                _ = try await retrying { try await stores.redis.command("SET", stores.keys.generation(shard: shard), "0") }
            }
            model.retentionPassed()
        }
        try await forgetKeys(order: order, model: model)
        // In a journal window the reserve asks the journal before it holds anything. In sync mode it holds first, as
        // for a new order (a refusal is that order's), and only a hold meets the journal at its commit: taken back,
        // and answered from the journal.
        var asNew = model
        asNew.forget(order: order, asksJournal: false)
        let user = model.namesUsers ? ReferenceModel.user(order) : nil
        let held = asNew.reserve(order: order, lines: lines, shortage: shortage, user: user, options: options)
        let refused = if case .failure = held { true } else { false }
        model.forget(order: order, asksJournal: model.journalWindow || (model.reservesAskJournal && !refused))
        try await perform(.reserve(order: order, lines: lines, shortage: shortage, options: options), model: &model)
        // Refused (nothing held): the order is the journal's, and a confirm finds it there.
        if model.orders[order] == nil { model.duplicatesSettled() }
        // The item vanishes while the duplicate waits for the worker: rebuilt from MySQL, it counts the duplicate of an
        // ended order (a hold of its own until it is taken back or goes on) and the journal's live row of a held one
        // (its duplicate is taken back giving nothing, or sells that hold). An item without per-user counts or codes,
        // whose rebuild the model need not follow (`itemRebuilt`).
        if rebuild, let sku = lines.map(\.sku).first(where: { $0 != 1 && $0 != Features.codeItem && model.items[$0] != nil }) {
            try await inject(.deleteItem(sku: sku))
            _ = try await retrying { try await stores.engine.stock(stores.item(sku)) }
            model.itemRebuilt(sku: sku)
        }
        if confirm && !options.contains(.dispense) { try await perform(.confirm(order: order), model: &model) }
        try await inject(.drain)
        model.duplicatesSettled()
    }

    /// Deletes every key of the order (its hash or parts and directory, its reserve, rollback and applied marks on
    /// every item), as their TTLs would a retention period after it ended; the bystander's orders of the same id
    /// (another business) keep theirs.
    func forgetKeys(order: Int, model: ReferenceModel) async throws {
        let keys = stores.keys
        let name = stores.orderName(orderId(order))
        var doomed = (0..<keys.shards).map { keys.order(name, shard: $0) }
        if keys.clustered { doomed.append(keys.directory(name)) }
        for sku in Self.items(model) {
            let item = stores.item(sku)
            doomed += [keys.reserveKey(item, orderId: name), keys.rollbackKey(item, orderId: name)]
            doomed += ["confirm", "refund"].map { keys.appliedMarker(item, orderId: name, kind: $0) }
        }
        for key in doomed { _ = try await retrying { try await stores.redis.command("DEL", key) } }
    }
}
