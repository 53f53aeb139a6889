import Foundation
import RedisClient

/// The Lua scripts of `lua/`, one operation each.
public struct InventoryScripts: Sendable {
    public let reserve: RedisScript
    public let rollback: RedisScript
    public let confirm: RedisScript
    public let setStock: RedisScript
    public let adjustStock: RedisScript
    public let undoStock: RedisScript
    public let refund: RedisScript
    public let undoReserve: RedisScript
    public let applied: RedisScript
    public let ack: RedisScript
    public let initLock: RedisScript
    public let initItem: RedisScript
    public let snapshot: RedisScript
    public let fixItem: RedisScript
    public let restoreOrder: RedisScript
    public let epochs: RedisScript
    public let setPool: RedisScript
    public let addCodes: RedisScript
    public let poolCounts: RedisScript
    public let dirOpen: RedisScript
    public let dirTransition: RedisScript
    public let dirClose: RedisScript
    public let dirCommit: RedisScript
    public let adminDone: RedisScript
    public let lease: RedisScript

    public var all: [RedisScript] {
        [
            reserve, rollback, confirm, setStock, adjustStock, undoStock, refund, undoReserve, applied, ack, initLock,
            initItem, snapshot, fixItem, restoreOrder, epochs, setPool, addCodes, poolCounts, dirOpen, dirTransition, dirClose, dirCommit,
            adminDone, lease,
        ]
    }

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
        return InventoryScripts(
            reserve: try script("reserve"),
            rollback: try script("rollback"),
            confirm: try script("confirm"),
            setStock: try script("set_stock"),
            adjustStock: try script("adjust_stock"),
            undoStock: try script("undo_stock"),
            refund: try script("refund"),
            undoReserve: try script("undo_reserve"),
            applied: try script("applied"),
            ack: try script("ack"),
            initLock: try script("init_lock"),
            initItem: try script("init_item"),
            snapshot: try script("snapshot"),
            fixItem: try script("fix_item"),
            restoreOrder: try script("restore_order"),
            epochs: try script("epochs"),
            setPool: try script("set_pool"),
            addCodes: try script("add_codes"),
            poolCounts: try script("pool_counts"),
            dirOpen: try script("dir_open"),
            dirTransition: try script("dir_transition"),
            dirClose: try script("dir_close"),
            dirCommit: try script("dir_commit"),
            adminDone: try script("admin_done"),
            lease: try script("lease")
        )
    }
}
