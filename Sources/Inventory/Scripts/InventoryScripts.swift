import Foundation
import RedisClient

/// The Lua scripts of `lua/`, by file name: the one list of them. Each has one typed call in `Scripts/` (its keys,
/// its arguments and its reply), and its header in `lua/` says the same from the Lua side.
public enum ScriptName: String, CaseIterable, Sendable {
    // Reservations (ReservationScripts.swift, TransitionScripts.swift)
    case reserve, confirm, rollback, refund
    case undoReserve = "undo_reserve"
    // Redis Cluster: an order's directory (DirectoryScripts.swift)
    case dirOpen = "dir_open", dirCommit = "dir_commit", dirClose = "dir_close", dirTransition = "dir_transition"
    // Stock administration and the reconciler's repair (StockScripts.swift)
    case setStock = "set_stock", adjustStock = "adjust_stock", undoStock = "undo_stock", adminDone = "admin_done"
    case unsettle
    case fixItem = "fix_item"
    // Rebuilding items and orders from MySQL (RebuildScripts.swift)
    case initLock = "init_lock", initItem = "init_item", restampHolds = "restamp_holds", fillPart = "fill_part"
    case restoreOrder = "restore_order", partEnding = "part_ending"
    case absent
    // Code pools (CodePoolScripts.swift)
    case setPool = "set_pool", addCodes = "add_codes", poolCounts = "pool_counts"
    // The outbox, the write-back worker, the reconciler's snapshot and the sweeper (JournalScripts.swift)
    case ack, applied, epochs, snapshot, lease
    case duplicateHeld = "duplicate_held"
    case drainMark = "drain_mark", raiseTo = "raise_to", outboxGroup = "outbox_group"
    case outboxRead = "outbox_read", outboxClaim = "outbox_claim", outboxEntries = "outbox_entries"
    // Reading a hash once Redis is known not to have gone back (InventoryScripts.swift)
    case readFields = "read_fields"
}

/// The scripts' sources, read from `lua/` once.
public struct InventoryScripts: Sendable {
    private let scripts: [ScriptName: RedisScript]

    public subscript(name: ScriptName) -> RedisScript {
        // `load` reads every name: one missing here is a defect of this type, not of the caller.
        guard let script = scripts[name] else { preconditionFailure("script \(name.rawValue) was not loaded") }
        return script
    }

    /// Every script, in `ScriptName` order.
    public var all: [RedisScript] { ScriptName.allCases.map { self[$0] } }

    /// Reads the scripts from a directory (by default the repository's `lua/`, or `INVENTORY_LUA_DIR`).
    public static func load(from directory: String = ProjectFiles.directory("lua", environmentVariable: "INVENTORY_LUA_DIR"))
        throws -> InventoryScripts
    {
        func read(_ path: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path), let source = String(data: data, encoding: .utf8)
            else {
                throw InventoryError.unavailable("cannot read Lua script \(path)")
            }
            return source
        }
        // A line `--!include NAME` stands for `lib/NAME.lua`: helpers several scripts share, written once.
        func script(_ name: String) throws -> RedisScript {
            let lines = try read(directory + "/" + name + ".lua").split(separator: "\n", omittingEmptySubsequences: false)
            let source = try lines.map { line -> String in
                guard line.hasPrefix("--!include ") else { return String(line) }
                let library = line.dropFirst("--!include ".count).trimmingCharacters(in: .whitespaces)
                return try read(directory + "/lib/" + library + ".lua")
            }.joined(separator: "\n")
            return RedisScript(name: name, source: source)
        }
        var scripts: [ScriptName: RedisScript] = [:]
        for name in ScriptName.allCases { scripts[name] = try script(name.rawValue) }
        return InventoryScripts(scripts: scripts)
    }
}

/// One call of one script: its keys and arguments in the order the script reads them, and its reply decoded into
/// what it means. The Swift half of a script's contract lives in its call type and nowhere else; `decode` is pure,
/// so every reply a script documents is tested without Redis (ScriptReplyTests).
protocol ScriptCall: Sendable {
    associatedtype Reply: Sendable
    static var name: ScriptName { get }
    var keys: [String] { get }
    var arguments: [String] { get }
    /// The reply as the script documents it; an answer it does not document throws `unavailable`.
    static func decode(_ reply: RedisValue) throws -> Reply
    /// The drain mark of the script's shard, which it checks against this instance's floor first (lua/lib/floor.lua:
    /// a mark's key and the floor are appended by `EngineStores.runScript`), nil for a script that does not.
    var drainMark: String? { get }
}

extension ScriptCall {
    var drainMark: String? { nil }
}

/// A call of a script that changes stock items and first checks they are whole (lua/lib/items.lua): it may answer
/// `{'missing', 'i,j'}` instead of its own reply, naming the items (1-based, in the order of `items`) to rebuild from
/// MySQL before it runs again (`InventoryEngine.run(onItems:)`, the one path for it).
protocol ItemScriptCall: ScriptCall {
    /// The script's items in the order its key list names them.
    var items: [StockItemID] { get }
}

extension RedisScriptRunner {
    /// Runs one call of a script of `scripts` and decodes its reply; a script that checks a drain mark is given its
    /// own with no floor (nothing checked: the engine's `EngineStores.runScript` knows the floors).
    func run<Call: ScriptCall>(_ call: Call, of scripts: InventoryScripts) async throws -> Call.Reply {
        guard let mark = call.drainMark else {
            return try Call.decode(try await run(scripts[Call.name], keys: call.keys, arguments: call.arguments))
        }
        return try Call.decode(try await run(scripts[Call.name], keys: call.keys + [mark], arguments: call.arguments + ["0"]))
    }
}

extension ScriptCall {
    /// The error for a reply the script does not document.
    static func unexpected(_ reply: RedisValue) -> InventoryError {
        .unavailable("\(name.rawValue) script answered \(reply)")
    }
}

/// Reading a script's reply, `{'tag', field, ...}`: absent fields read as empty, as Lua's `nil` does.
struct ScriptReply {
    let fields: [RedisValue]

    init(_ reply: RedisValue) { fields = reply.array ?? [] }

    /// The first field: what the script answered.
    var tag: String { text(0) }

    func text(_ index: Int) -> String { fields[safe: index]?.text ?? "" }

    func int(_ index: Int) -> Int64? { fields[safe: index]?.int }

    /// A comma-separated list of 1-based positions ('2,3').
    func positions(_ index: Int) -> [Int] { text(index).split(separator: ",").compactMap { Int($0) } }

    func status(_ index: Int) -> ReservationStatus? { ReservationStatus(rawValue: text(index)) }
}

extension Bool {
    /// The scripts' flag arguments: '1' or ''.
    var scriptFlag: String { self ? "1" : "" }
}

/// lua/read_fields.lua: fields of one hash (HMGET), read once Redis is known not to be behind this instance's floor.
struct ReadFieldsCall: ScriptCall {
    static let name = ScriptName.readFields

    let keys: [String]
    let arguments: [String]
    /// The hash's shard's drain mark, checked first (lua/lib/floor.lua).
    let drainMark: String?

    /// `shard`: the hash's (its key's hash tag).
    init(_ key: String, fields: [String], shard: Int, layout: KeyLayout) {
        keys = [key]
        arguments = fields
        drainMark = layout.drainMark(shard: shard)
    }

    /// The fields' values in the order asked for (`.null` for a missing one).
    static func decode(_ value: RedisValue) throws -> [RedisValue] {
        let fields = value.array ?? []
        guard fields.first?.text == "fields" else { throw unexpected(value) }
        return Array(fields.dropFirst())
    }
}
