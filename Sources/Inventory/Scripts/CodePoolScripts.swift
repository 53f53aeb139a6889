import RedisClient

/// lua/set_pool.lua: writes an item's code pool settings into its hash.
struct SetPoolCall: ScriptCall {
    static let name = ScriptName.setPool

    let keys: [String]
    let arguments: [String]

    init(_ id: StockItemID, _ pool: CodePool, layout: KeyLayout) {
        keys = [layout.item(id)]
        arguments = pool.scriptArguments + [pool.maxPerUser.map(String.init) ?? ""]
    }

    /// Whether the item was there to write (false: it is not whole in Redis).
    static func decode(_ value: RedisValue) throws -> Bool {
        switch ScriptReply(value).tag {
        case "ok": return true
        case "missing": return false
        default: throw unexpected(value)
        }
    }
}

/// lua/add_codes.lua: adds codes MySQL has just recorded to an item's code set.
struct AddCodesCall: ScriptCall {
    static let name = ScriptName.addCodes

    enum Reply: Sendable, Equatable {
        case added(Int64)
        /// The item is not whole in Redis: nothing added.
        case missing
    }

    let keys: [String]
    let arguments: [String]

    /// `codes`: new to the pool (MySQL's unique key kept out those it had). `stockVersion`: a one-time pool's stock
    /// row version the upload made (`CodePoolRepository.loadCodes`).
    init(_ id: StockItemID, codes: [String], stockVersion: Int64?, layout: KeyLayout) {
        keys = [layout.item(id), layout.codes(id)]
        arguments = [stockVersion.map(String.init) ?? ""] + codes
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        let reply = ScriptReply(value)
        switch reply.tag {
        case "ok": return .added(reply.int(1) ?? 0)
        case "missing": return .missing
        default: throw unexpected(value)
        }
    }
}

/// lua/pool_counts.lua: the reconciler's read of one-time pools: each item's stock_num and the size of its code set,
/// at one instant. The items must share a slot on a cluster.
struct PoolCountsCall: ScriptCall {
    static let name = ScriptName.poolCounts

    /// Per item: its stock_num (nil when the item is not in Redis) and how many codes its set holds.
    typealias Reply = [(stock: Int64?, codes: Int64)]

    let keys: [String]
    var arguments: [String] { [] }

    init(_ items: [StockItemID], layout: KeyLayout) {
        keys = items.flatMap { [layout.item($0), layout.codes($0)] }
    }

    static func decode(_ value: RedisValue) throws -> Reply {
        guard let pairs = value.array else { throw unexpected(value) }
        return pairs.map { pair in
            let fields = pair.array ?? []
            return (fields.first?.int, fields[safe: 1]?.int ?? 0)
        }
    }
}
