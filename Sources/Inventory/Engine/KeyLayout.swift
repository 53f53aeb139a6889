/// Where everything lives in Redis.
///
/// An item's keys share the hash tag `{bizId:skuId}`, so one item's script runs on one Redis Cluster slot. An
/// order's hash, the outbox stream its events go to and its expiry index share the tag `{sN}` of the order's shard
/// (a hash of the orderId), so all of one order's events land in one stream, in order, for the write-back worker.
public struct KeyLayout: Sendable {
    public let prefix: String
    public let shards: Int

    public init(prefix: String = "inv", shards: Int = 16) {
        self.prefix = prefix
        self.shards = max(1, shards)
    }

    public func item(_ id: StockItemID) -> String { "\(prefix):{\(id.bizId):\(id.skuId)}:item" }

    public func reserveKey(_ id: StockItemID, orderId: String) -> String {
        "\(prefix):{\(id.bizId):\(id.skuId)}:rsv:\(orderId)"
    }

    public func rollbackKey(_ id: StockItemID, orderId: String) -> String {
        "\(prefix):{\(id.bizId):\(id.skuId)}:rbk:\(orderId)"
    }

    /// Per-user usage of an item with a per-user limit: userId -> "window:units" (see `reserve.lua`).
    public func userUsage(_ id: StockItemID) -> String { "\(prefix):{\(id.bizId):\(id.skuId)}:users" }

    /// The code set of an item with a code pool: the usable codes (one-time) or all codes (reusable).
    public func codes(_ id: StockItemID) -> String { "\(prefix):{\(id.bizId):\(id.skuId)}:codes" }

    public func adjustmentKey(_ id: StockItemID, adjustmentId: String) -> String {
        "\(prefix):{\(id.bizId):\(id.skuId)}:adj:\(adjustmentId)"
    }

    /// Marks that the worker has counted a confirm or refund line as applied (see `applied.lua`).
    public func appliedMarker(_ id: StockItemID, orderId: String, kind: String) -> String {
        "\(prefix):{\(id.bizId):\(id.skuId)}:applied:\(kind):\(orderId)"
    }

    /// The reconciler's lease: one reconciliation at a time across all instances.
    public var reconcileLease: String { "\(prefix):reconcile:lease" }

    /// Every outbox stream, one per shard.
    public var outboxes: [String] { (0..<shards).map { outbox(shard: $0) } }

    /// Every expiry index, one per shard.
    public var expiryIndexes: [String] { (0..<shards).map { "\(prefix):{s\($0)}:expiry" } }

    public func order(_ orderId: String) -> String { "\(prefix):{s\(shard(of: orderId))}:order:\(orderId)" }

    public func outbox(forOrder orderId: String) -> String { outbox(shard: shard(of: orderId)) }

    /// Marks a reserve event whose hold was taken back (see `undo_reserve.lua`); in the order's slot.
    public func undoneMarker(orderId: String, eventId: String) -> String {
        "\(prefix):{s\(shard(of: orderId))}:undone:\(eventId)"
    }

    public func expiryIndex(forOrder orderId: String) -> String { "\(prefix):{s\(shard(of: orderId))}:expiry" }

    public func outbox(shard: Int) -> String { "\(prefix):{s\(shard)}:outbox" }

    /// FNV-1a: stable across processes and versions, unlike Swift's seeded `hashValue`.
    public func shard(of orderId: String) -> Int {
        var hash: UInt32 = 2_166_136_261
        for byte in orderId.utf8 {
            hash ^= UInt32(byte)
            hash = hash &* 16_777_619
        }
        return Int(hash % UInt32(shards))
    }
}
