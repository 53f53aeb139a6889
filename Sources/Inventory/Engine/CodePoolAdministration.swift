import MySQLClient
import RedisClient

/// Code pools: an item's pool settings, code uploads and the export of unused codes (their holds and returns are
/// the reserve and transition scripts'). MySQL first, then Redis; an item Redis does not have is rebuilt with its
/// pool through the one init path.
struct CodePoolAdministration: Sendable {
    let stores: EngineStores
    let rebuilder: ItemRebuilder
    let repository: CodePoolRepository

    /// Creates or changes the item's code pool (its kind is fixed once set), in MySQL, then in Redis.
    func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool {
        do {
            try await repository.setPool(bizId: id.bizId, skuId: id.skuId, pool)
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw stores.mapMySQL(error)
        }
        // An item Redis does not have is rebuilt with its pool (the pool made its stock row if it had none); one it
        // has gets the settings written.
        guard try await rebuilder.ensureMadeItem(id, countsAsRebuild: true) else { throw InventoryError.notFound }
        if try await !stores.run(SetPoolCall(id, pool, layout: stores.keys)), try await !rebuilder.ensureMadeItem(id, countsAsRebuild: true) {
            throw InventoryError.notFound
        }
        return try await self.pool(id)
    }

    /// The item's code pool; `notFound` when it has none.
    func pool(_ id: StockItemID) async throws -> CodePool {
        let pool: CodePool?
        do { pool = try await repository.pool(bizId: id.bizId, skuId: id.skuId) } catch { throw stores.mapMySQL(error) }
        guard let pool else { throw InventoryError.noCodePool(id.skuId) }
        return pool
    }

    /// Adds codes to the item's pool: recorded in MySQL (new ones only, in one transaction; a one-time pool's
    /// stock grows by as many), then added in Redis. `codes` must already be valid and distinct.
    func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome {
        let fresh: [String]
        let stockVersion: Int64?
        do {
            (fresh, stockVersion) = try await repository.loadCodes(
                bizId: id.bizId, skuId: id.skuId, codes, maxCodes: stores.configuration.maxPoolCodes
            )
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw stores.mapMySQL(error)
        }
        if !fresh.isEmpty {
            do {
                // Not whole in Redis (lib/items.lua): rebuilt, then the codes added to it, unless it counted them (a
                // one-time pool's rebuild that read MySQL after this commit; a reusable pool's may have read it before,
                // so the rebuild it waited for would lack them).
                let call = AddCodesCall(id, codes: fresh, stockVersion: stockVersion, layout: stores.keys)
                if try await stores.run(call) == .missing {
                    _ = try await rebuilder.ensureMadeItem(id, countsAsRebuild: true)
                    _ = try await stores.run(call)
                }
            } catch {
                // MySQL has the codes: an item Redis drops is rebuilt from it on its next use. (Also when Redis filled
                // since the upload's check: kept, the item would never get the codes, as a retry finds them recorded;
                // dropped, its holds wait for room to be settled.)
                _ = try? await stores.redisCall { try await self.stores.redis.command("DEL", self.stores.keys.item(id)) }
                throw error
            }
        }
        return CodeLoadOutcome(added: fresh.count, duplicates: codes.count - fresh.count)
    }

    /// The pool's codes still unused, live from Redis: a one-time pool's usable codes (neither held nor used), a
    /// reusable pool's codes (never used up), a batch pool's code. The pool and its item are looked up now (an
    /// error is the call's); the codes follow a page at a time when the export is read (SSCAN: memory stays a page,
    /// whatever the pool's size; a code held or loaded meanwhile may be named or not, and one may be named twice if
    /// the set changes while it is read).
    func exportCodes(_ id: StockItemID) async throws -> CodeExport {
        let pool = try await pool(id)
        if pool.kind == .batch {
            let code = pool.batchCode
            return CodeExport { page in if let code { try await page([code]) } }
        }
        // The pool exists, so the item's MySQL row does.
        guard try await rebuilder.ensureMadeItem(id, countsAsRebuild: true) else { throw InventoryError.notFound }
        // Refused here, a 503 of its own, when the item went again (another caller's rebuild is filling its set); once
        // the answer has begun, the check below can only cut it.
        guard try await codeSetState(id) != nil else { throw Self.notWhole }
        let key = stores.keys.codes(id)
        return CodeExport { page in
            // SSCAN ends quietly when its set goes (a rebuild rewrites it, it expires, Redis restarts): the item's
            // epoch and the set's presence are read before and after, and a change ends the export with an error
            // instead of a complete-looking short list. An item not whole before (a rebuild is filling its set in
            // parts) sends nothing.
            guard let before = try await self.codeSetState(id) else { throw Self.notWhole }
            try await self.stores.redisCall { try await self.stores.redis.scanSet(key) { try await page($0) } }
            guard try await self.codeSetState(id) == before else {
                throw InventoryError.unavailable("the pool's codes changed while they were exported (its item was rebuilt or lost); export again")
            }
        }
    }

    /// The item's epoch, when the item and its code set are whole (lib/items.lua's rule), nil otherwise.
    func codeSetState(_ id: StockItemID) async throws -> String? {
        let itemKey = stores.keys.item(id)
        let fields = try await stores.redisCall {
            try await self.stores.redis.send(["HMGET", itemKey, "epoch", "stock_num", "pool_kind", "codes_n"], routingKey: itemKey)
        }.array ?? []
        guard let stock = fields[safe: 1]?.int else { return nil }
        let kind = fields[safe: 2]?.text ?? ""
        let expected = kind == "one_time" ? stock > 0 : kind == "reusable" ? (fields[safe: 3]?.int ?? 0) > 0 : false
        if expected {
            let codes = stores.keys.codes(id)
            guard try await stores.redisCall({ try await self.stores.redis.send(["EXISTS", codes], routingKey: codes) }).int == 1 else { return nil }
        }
        return fields[safe: 0]?.text ?? ""
    }

    /// Every unused code, sorted and each once (`exportCodes` read whole): for tests and small pools.
    func unusedCodes(_ id: StockItemID) async throws -> [String] {
        var codes: Set<String> = []
        try await exportCodes(id).forEachPage { codes.formUnion($0) }
        return codes.sorted()
    }

    static let notWhole = InventoryError.unavailable("the pool's item is being rebuilt or was lost; export again")

    static let oneTimeStock = InventoryError.poolConflict(
        "the item has a one-time code pool: its stock is its codes; upload codes instead of setting or adjusting stock"
    )

    static func inventoryError(_ refusal: CodePoolRepository.Refusal, _ id: StockItemID) -> InventoryError {
        switch refusal {
        case .kindChange(let kind):
            return .poolConflict("the pool is \(kind.rawValue); a pool's kind cannot change")
        case .stockWithoutCodes(let stock):
            return .poolConflict(
                "the item has \(stock) unit(s) of stock: a one-time pool's stock is its codes, so it needs an item with none"
            )
        case .noPool:
            return .noCodePool(id.skuId)
        case .infinite:
            return .poolConflict("the item never runs out: a one-time pool has exactly its codes")
        case .full(let limit, let has):
            return .poolConflict(
                "a pool has at most \(limit) codes (INVENTORY_MAX_POOL_CODES); this one has \(has): nothing was loaded"
            )
        }
    }
}
