/// Where everything lives in Redis.
///
/// Orders are named by `OrderRef.name` (the orderId for business `default`, `bizId/orderId` otherwise) in every key,
/// index and stream entry of the order; an item's keys of an order (reserve, rollback, applied markers) use the
/// business's own orderId, since the item is the business's.
///
/// On a single Redis an item's keys share the hash tag `{bizId:skuId}`, and an order's hash, the outbox stream its
/// events go to and its expiry index share the tag `{sN}` of the order's shard (a hash of the orderId), so all of
/// one order's events land in one stream, in order, for the write-back worker; one script may touch both.
///
/// On Redis Cluster (`clustered`) a script may only touch keys of one slot. There an item's keys carry the tag of
/// the item's shard (`{sN}`, N a hash of bizId:skuId), and an order is kept in parts, one per shard its items are in:
/// each part (hash, outbox stream, expiry index) shares its items' tag, so one script holds a part's stock and
/// writes its journal event together. The order's directory, in the order's own shard, names its parts and is the
/// one place where the order's state is decided (see `InventoryEngine`).
public struct KeyLayout: Sendable {
    public let prefix: String
    public let shards: Int
    /// Keys laid out for Redis Cluster: item tags are shard tags, orders are kept in parts.
    public let clustered: Bool

    public init(prefix: String = "inv", shards: Int = 16, clustered: Bool = false) {
        self.prefix = prefix
        self.shards = max(1, shards)
        self.clustered = clustered
    }

    /// The common start of an item's keys: `prefix:{biz:sku}`, or `prefix:{sN}:i:biz:sku` on a cluster. There items
    /// share their tag with orders, directories and streams, so they have a namespace of their own (`i:`): a
    /// business named `order` or `dir` must not name the key of an order whose id contains ':'.
    private func itemBase(_ id: StockItemID) -> String {
        clustered ? "\(prefix):{s\(itemShard(id))}:i:\(id.bizId):\(id.skuId)" : "\(prefix):{\(id.bizId):\(id.skuId)}"
    }

    /// The shard of an item on a cluster (the tag of its keys and of the order parts holding it).
    public func itemShard(_ id: StockItemID) -> Int { shard(of: "\(id.bizId):\(id.skuId)") }

    /// The shard where the part of an order that holds `item` is kept: the order's own shard on a single Redis
    /// (one part), the item's on a cluster.
    public func partShard(orderId: String, item: StockItemID) -> Int { clustered ? itemShard(item) : shard(of: orderId) }

    public func item(_ id: StockItemID) -> String { itemBase(id) + ":item" }

    /// An item's keys of an order name it by its business's own orderId: the item is the business's already. Either
    /// the order's Redis name (`OrderRef.name`) or that orderId may be passed.
    public func reserveKey(_ id: StockItemID, orderId: String) -> String { itemBase(id) + ":rsv:" + Self.ownId(orderId) }

    public func rollbackKey(_ id: StockItemID, orderId: String) -> String { itemBase(id) + ":rbk:" + Self.ownId(orderId) }

    /// The business's own orderId of an order's Redis name (or of that orderId itself).
    static func ownId(_ orderId: String) -> String { OrderRef(name: orderId).orderId }

    /// Per-user usage of an item with a per-user limit: userId -> "window:units" (see `reserve.lua`).
    public func userUsage(_ id: StockItemID) -> String { itemBase(id) + ":users" }

    /// "MySQL has no such item", remembered for `EngineConfiguration.absentMilliseconds` (a negative entry): an unknown
    /// item costs one MySQL lookup, not one per request.
    public func absent(_ id: StockItemID) -> String { itemBase(id) + ":absent" }

    /// "The item's MySQL row was just made" (a PUT or a pool): a lookup that read MySQL before does not write its
    /// negative entry after it (lua/absent.lua).
    public func made(_ id: StockItemID) -> String { itemBase(id) + ":made" }

    /// The code set of an item with a code pool: the usable codes (one-time) or all codes (reusable).
    public func codes(_ id: StockItemID) -> String { itemBase(id) + ":codes" }

    public func adjustmentKey(_ id: StockItemID, adjustmentId: String) -> String { itemBase(id) + ":adj:" + adjustmentId }

    /// Marks that the worker has counted a confirm or refund line as applied (see `applied.lua`).
    public func appliedMarker(_ id: StockItemID, orderId: String, kind: String) -> String {
        itemBase(id) + ":applied:\(kind):\(Self.ownId(orderId))"
    }

    /// A cluster's order directory: which parts an order has, and its state (see `dir_open.lua`).
    public func directory(_ orderId: String) -> String { "\(prefix):{s\(shard(of: orderId))}:dir:\(orderId)" }

    /// A cluster shard's index of reserves of several parts under way (orderId → the deadline, ms), in the slot of
    /// the directories of its orders.
    public func pendingIndex(shard: Int) -> String { "\(prefix):{s\(shard)}:pending" }

    /// The pending index next to an order's directory.
    public func pendingIndex(forOrder orderId: String) -> String { pendingIndex(shard: shard(of: orderId)) }

    /// The part of an order kept in `shard` (on a single Redis the whole order, in its own shard).
    public func order(_ orderId: String, shard: Int) -> String { "\(prefix):{s\(shard)}:order:\(orderId)" }

    public func expiryIndex(shard: Int) -> String { "\(prefix):{s\(shard)}:expiry" }

    public func undoneMarker(orderId: String, eventId: String, shard: Int) -> String {
        "\(prefix):{s\(shard)}:undone:\(eventId)"
    }

    /// The reconciler's lease: one reconciliation at a time across all instances.
    public var reconcileLease: String { "\(prefix):reconcile:lease" }

    /// Every outbox stream, one per shard.
    public var outboxes: [String] { (0..<shards).map { outbox(shard: $0) } }

    /// Every shard's drain mark (`drainMark(shard:)`).
    public var drainMarks: [String] { (0..<shards).map { drainMark(shard: $0) } }

    /// Every expiry index, one per shard.
    public var expiryIndexes: [String] { (0..<shards).map { expiryIndex(shard: $0) } }

    // MARK: - What the topology decides (asked here, not by checking `clustered` in the flows)

    /// The groups of items one script may read together: all of them on a single Redis, one group per shard (one
    /// slot) on a cluster. Groups keep the items' order; a shard's group its items' first appearance.
    public func scriptGroups(_ items: [StockItemID]) -> [[StockItemID]] {
        guard clustered else { return items.isEmpty ? [] : [items] }
        var order: [Int] = []
        var groups: [Int: [StockItemID]] = [:]
        for item in items {
            let shard = itemShard(item)
            if groups[shard] == nil { order.append(shard) }
            groups[shard, default: []].append(item)
        }
        return order.map { groups[$0]! }
    }

    /// The outbox streams an item's events may be in: every shard's on a single Redis (an order's shard picks the
    /// stream), its own shard's on a cluster (a part is kept with its items).
    public func outboxes(holding item: StockItemID) -> [String] {
        clustered ? [outbox(shard: itemShard(item))] : outboxes
    }

    /// The outbox streams an order's events may be in: its shard's on a single Redis; on a cluster its parts'
    /// shards', which only its directory names: every shard's.
    public func outboxes(ofOrder orderId: String) -> [String] {
        clustered ? outboxes : [outbox(forOrder: orderId)]
    }

    /// The order's hash on a single Redis (its only part).
    public func order(_ orderId: String) -> String { order(orderId, shard: shard(of: orderId)) }

    /// The hash of the part of order `orderId` (its Redis name, or a bare orderId) that holds `item`: on a cluster the
    /// part on the item's shard, on a single Redis the whole order.
    public func orderPart(_ orderId: String, item: StockItemID) -> String {
        order(orderId, shard: partShard(orderId: orderId, item: item))
    }

    public func outbox(forOrder orderId: String) -> String { outbox(shard: shard(of: orderId)) }

    /// Marks a reserve event whose hold was taken back (see `undo_reserve.lua`); in the order's slot.
    public func undoneMarker(orderId: String, eventId: String) -> String {
        undoneMarker(orderId: orderId, eventId: eventId, shard: shard(of: orderId))
    }

    public func expiryIndex(forOrder orderId: String) -> String { expiryIndex(shard: shard(of: orderId)) }

    public func outbox(shard: Int) -> String { "\(prefix):{s\(shard)}:outbox" }

    /// The lease of the expiry sweeper that sweeps a shard (one instance at a time).
    public func sweepLease(shard: Int) -> String { "\(prefix):{s\(shard)}:sweep:lease" }

    /// A shard's drain mark (lua/drain_mark.lua, migrations/0017), in its outbox stream's slot: raised by every MySQL
    /// transaction that records the shard's changes (by one on a cluster; on a single Redis to the drain sequence's
    /// next value); below MySQL's value when Redis went back in time.
    public func drainMark(shard: Int) -> String { "\(prefix):{s\(shard)}:drained" }

    /// A single Redis's drain sequence (lua/drain_mark.lua): every shard's mark is raised to its next value, so the
    /// highest value MySQL recorded of any shard is at most this key's unless Redis went back in time, which one GET
    /// tells (lua/lib/floor.lua). Nil on a cluster, whose scripts reach their own shard's slot only.
    public var drainSequence: String? { clustered ? nil : "\(prefix):{s0}:drained:seq" }

    /// The drain mark a stock change of an item raises (a PUT's or an adjustment's MySQL half): its shard's, in the
    /// slot of the item's keys on a cluster.
    public func drainMark(item: StockItemID) -> String { drainMark(shard: itemShard(item)) }

    /// The lease of the write-back worker that drains an outbox stream (one instance at a time; lua/lease.lua).
    public static func streamLease(_ stream: String) -> String { stream + ":lease" }

    /// The drain mark of the shard an outbox stream (`prefix:{sN}:outbox`) belongs to.
    public static func drainMark(ofStream stream: String) -> String {
        stream.hasSuffix(":outbox") ? String(stream.dropLast(":outbox".count)) + ":drained" : stream + ":drained"
    }

    /// `text` as a SCAN MATCH pattern matching itself only (glob characters escaped).
    public static func globEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\^".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }

    /// A shard's generation marker: made once (lua/reserve.lua, lua/dir_open.lua), so its absence means Redis lost
    /// the shard's data. Holds the Redis time (ms) until which a reserve of an order Redis does not know asks the
    /// journal first (0: never).
    public func generation(shard: Int) -> String { "\(prefix):{s\(shard)}:gen" }

    /// The key prefix of an outbox stream's name (`prefix:{sN}:outbox`), as the write-back worker reads it from an
    /// event: what the deployment's records in MySQL are kept under.
    public static func prefix(ofStream stream: String) -> String {
        guard let end = stream.range(of: ":{s", options: .backwards) else { return "" }
        return String(stream[..<end.lowerBound])
    }

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
