import MySQLClient
import RedisClient

/// Code pools: settings, uploads and the export of unused codes.
extension InventoryEngine {
    /// Creates or changes the item's code pool (its kind is fixed once set), in MySQL, then in Redis.
    public func setPool(_ id: StockItemID, _ pool: CodePool) async throws -> CodePool {
        do {
            try await codePools.setPool(bizId: id.bizId, skuId: id.skuId, pool)
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw mapMySQL(error)
        }
        // An item Redis does not have is rebuilt with its pool; one it has gets the settings written.
        guard try await ensureItem(id) else { throw InventoryError.notFound }
        if try await !run(SetPoolCall(id, pool, layout: keys)), try await !ensureItem(id) {
            throw InventoryError.notFound
        }
        return try await self.pool(id)
    }

    /// The item's code pool; `notFound` when it has none.
    public func pool(_ id: StockItemID) async throws -> CodePool {
        let pool: CodePool?
        do { pool = try await codePools.pool(bizId: id.bizId, skuId: id.skuId) } catch { throw mapMySQL(error) }
        guard let pool else { throw InventoryError.noCodePool(id.skuId) }
        return pool
    }

    /// Adds codes to the item's pool: recorded in MySQL (new ones only, in one transaction; a one-time pool's
    /// stock grows by as many), then added in Redis. `codes` must already be valid and distinct.
    public func loadCodes(_ id: StockItemID, _ codes: [String]) async throws -> CodeLoadOutcome {
        let fresh: [String]
        do {
            fresh = try await codePools.loadCodes(bizId: id.bizId, skuId: id.skuId, codes)
        } catch let refusal as CodePoolRepository.Refusal {
            throw Self.inventoryError(refusal, id)
        } catch {
            throw mapMySQL(error)
        }
        if !fresh.isEmpty {
            do {
                // Not whole in Redis (lib/items.lua): rebuilt now, with the codes MySQL just recorded.
                if try await run(AddCodesCall(id, codes: fresh, layout: keys)) == .missing { _ = try await ensureItem(id) }
            } catch {
                // MySQL has the codes: an item Redis drops is rebuilt from it on its next use.
                _ = try? await redisCall { try await self.redis.command("DEL", self.keys.item(id)) }
                throw error
            }
        }
        return CodeLoadOutcome(added: fresh.count, duplicates: codes.count - fresh.count)
    }

    /// The pool's codes still unused, live from Redis, sorted: a one-time pool's usable codes (neither held nor
    /// used), a reusable pool's codes (never used up), a batch pool's code.
    public func unusedCodes(_ id: StockItemID) async throws -> [String] {
        let pool = try await pool(id)
        if pool.kind == .batch { return pool.batchCode.map { [$0] } ?? [] }
        guard try await ensureItem(id) else { throw InventoryError.notFound }
        var codes: [String] = []
        try await redisCall { try await self.redis.scanSet(self.keys.codes(id)) { codes += $0 } }
        return codes.sorted()
    }

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
        }
    }
}
