import Foundation
import InventoryTestSupport
import RedisClient
import Testing

@testable import Inventory

/// The Swift half of each script's contract (Scripts/), without Redis: keys and arguments where the script's header
/// says it reads them, and every reply it documents decoded into what it means.
@Suite("Script contracts")
struct ScriptReplyTests {
    let layout = KeyLayout(prefix: "u", shards: 4, clustered: false)
    let id = StockItemID(bizId: "b", skuId: 7)

    static func reply(_ fields: String...) -> RedisValue { .array(fields.map { .string($0) }) }

    @Test("one list of scripts: every ScriptName has its file in lua/, every script file has its name")
    func oneList() throws {
        let directory = ProjectFiles.repositoryDirectory("lua")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".lua") }
        #expect(Set(files.map { String($0.dropLast(4)) }) == Set(ScriptName.allCases.map(\.rawValue)))
        let scripts = try InventoryScripts.load()
        let allowOOM = "#!lua flags=allow-oom\n"
        for name in ScriptName.allCases {
            let source = scripts[name].source
            let header = source.hasPrefix(allowOOM) ? source.dropFirst(allowOOM.count) : Substring(source)
            #expect(header.hasPrefix("-- \(name.rawValue).lua:"), "\(name) loads its own file")
        }
        // Those that run when Redis is full (README "Redis full"): each settles what exists, none makes a hold.
        #expect(
            Set(ScriptName.allCases.filter { scripts[$0].source.hasPrefix(allowOOM) }) == Set(ScriptName.settlingWhenFull)
        )
        let includes = scripts.all.filter { $0.source.split(separator: "\n").contains { $0.hasPrefix("--!include ") } }
        #expect(includes.isEmpty, "libraries are inlined")
    }

    @Test("reserve.lua: KEYS[4+3i..], usage hashes at 4+3n, code sets at 4+4n, the marker last; ARGV[13+3i] per item")
    func reserveLayout() {
        let command = ReserveCommand(
            orderId: "o1", bizId: "b", userId: "u1",
            items: [.init(skuId: 7, quantity: 2), .init(skuId: 8, quantity: 1, codes: ["A", "B"])], ttlSeconds: 60,
            shortage: .reject
        )
        let call = ReserveCall(
            command, shard: 2, fingerprint: "fp", shortage: "reject", journal: .asked, dispense: true, failpoint: "",
            retentionSeconds: 100, itemTTLSeconds: 50, layout: layout
        )
        let second = StockItemID(bizId: "b", skuId: 8)
        let n = 2
        // Lua's KEYS[k] is keys[k - 1].
        #expect(call.keys.count == 4 + 5 * n)
        // The order's keys carry its Redis name (business b's o1), the item's keys its own id.
        #expect(call.keys[0] == layout.order("b/o1", shard: 2))
        #expect(call.arguments[0] == "b/o1")
        #expect(call.keys[4 + 3 * 1 - 1] == layout.item(second))
        #expect(call.keys[5 + 3 * 1 - 1] == layout.reserveKey(second, orderId: "o1"))
        #expect(call.keys[4 + 3 * n + 1 - 1] == layout.userUsage(second))
        #expect(call.keys[4 + 4 * n + 1 - 1] == layout.codes(second))
        #expect(call.keys.last == layout.generation(shard: 2))
        #expect(call.arguments[5 - 1] == "reject")
        #expect(call.arguments[11 - 1] == "1", "dispense")
        #expect(call.arguments[12 - 1] == "1", "journal asked")
        #expect(Array(call.arguments[(13 + 3 * 1 - 1)...]) == ["8", "1", "A|B"])
    }

    @Test("reserve.lua: every documented reply")
    func reserveReplies() throws {
        let held = try ReserveCall.decode(Self.reply("ok", "1000", "7:2:2,8:1:1", "1-0", "e1,e2", ",A", ""))
        #expect(
            held
                == .held(
                    .init(
                        expiresAtMilliseconds: 1000,
                        lines: [
                            ReservationLine(skuId: 7, requested: 2, reserved: 2),
                            ReservationLine(skuId: 8, requested: 1, reserved: 1, codes: ["A"]),
                        ],
                        eventId: "1-0", epochs: ["e1", "e2"], confirmEventId: ""
                    )
                )
        )
        #expect(
            try ReserveCall.decode(Self.reply("replay", "confirmed", "1000", "7:2:2", ""))
                == .replay(status: .confirmed, expiresAtMilliseconds: 1000, lines: [ReservationLine(skuId: 7, requested: 2, reserved: 2)])
        )
        #expect(try ReserveCall.decode(Self.reply("conflict")) == .conflict)
        #expect(try ReserveCall.decode(Self.reply("cancelled", "")) == .closed(.cancelled), "an unknown state reads as cancelled")
        #expect(
            try ReserveCall.decode(Self.reply("replay", "", "", "", "")) == .replay(status: .reserved, expiresAtMilliseconds: nil, lines: []),
            "a replay without a known state is a hold"
        )
        #expect(try ReserveCall.decode(Self.reply("cancelled", "expired")) == .closed(.expired))
        #expect(try ReserveCall.decode(Self.reply("ask", "marker")) == .askJournal(markerMissing: true))
        #expect(try ReserveCall.decode(Self.reply("ask", "journal")) == .askJournal(markerMissing: false))
        #expect(try ReserveCall.decode(Self.reply("vanished")) == .vanished)
        #expect(try ReserveCall.decode(Self.reply("missing", "1,3")) == .missing([1, 3]))
        #expect(try ReserveCall.decode(Self.reply("nouser", "2")) == .userRequired([2]))
        #expect(
            try ReserveCall.decode(Self.reply("userlimit", "1:5:4,2:3:3"))
                == .userLimit([.init(position: 1, limit: 5, used: 4), .init(position: 2, limit: 3, used: 3)])
        )
        #expect(try ReserveCall.decode(Self.reply("short", "0,4")) == .short([0, 4]))
        #expect(
            try ReserveCall.decode(.array([.string("pool"), .integer(2), .string("expired")]))
                == .poolUnavailable(position: 2, reason: "expired")
        )
        #expect(
            try ReserveCall.decode(.array([.string("code"), .integer(1), .string("A")]))
                == .codeUnavailable(position: 1, code: "A")
        )
    }

    @Test("a stored stock reversal keeps its half's name; one stored before names reads without it")
    func undoStockTaskPayload() {
        let task = CompensationTask.undoStock(
            itemKey: "p:{b:1}:item", adjustmentKey: "p:{b:1}:adj:a", delta: -3, fingerprint: "-3|x", marker: "m",
            token: "e/0@9", settings: "", surplus: true, half: "e/0@7", source: "adj:b:1:a"
        )
        #expect(CompensationTask(kind: task.kind, payload: task.payload) == task)
        // Ten fields unless given up: a binary from before reads ten at most (and skips a task it cannot read).
        #expect(task.payload.split(separator: "\t", omittingEmptySubsequences: false).count == 10)
        let givenUp = CompensationTask.undoStock(
            itemKey: "p:{b:1}:item", adjustmentKey: "p:{b:1}:item", delta: 20, fingerprint: "", marker: "m", token: "e/0@9",
            givenUp: true
        )
        #expect(CompensationTask(kind: givenUp.kind, payload: givenUp.payload) == givenUp)
        let before = ["p:{b:1}:item", "p:{b:1}:adj:a", "-3", "-3|x", "m", "e/0@9", "", "surplus"].joined(separator: "\t")
        #expect(
            CompensationTask(kind: "undo_stock", payload: before)
                == .undoStock(
                    itemKey: "p:{b:1}:item", adjustmentKey: "p:{b:1}:adj:a", delta: -3, fingerprint: "-3|x", marker: "m",
                    token: "e/0@9", settings: "", surplus: true, half: ""
                )
        )
    }

    @Test("an answer a script does not document is 503-unavailable naming the script, not a guess")
    func undocumentedReply() {
        #expect(throws: InventoryError.unavailable(#"reserve script answered ["what"]"#)) {
            try ReserveCall.decode(Self.reply("what"))
        }
        #expect(throws: InventoryError.unavailable("confirm script answered nil")) { try ConfirmCall.decode(.null) }
        #expect(throws: InventoryError.unavailable(#"lease script answered ["1"]"#)) { try LeaseCall.decode(Self.reply("1")) }
    }

    @Test("confirm, rollback and refund: keys per line, every documented reply")
    func transitions() throws {
        let lines = [ReservationLine(skuId: 7, requested: 2, reserved: 2)]
        let confirm = ConfirmCall(
            orderId: "o1", shard: 1, bizId: "b", lines: lines, linesText: "7:2:2", deadlineChecked: true, layout: layout
        )
        #expect(confirm.keys == [
            layout.order("o1", shard: 1), layout.outbox(shard: 1), layout.expiryIndex(shard: 1), layout.item(id),
            layout.reserveKey(id, orderId: "o1"),
        ])
        #expect(confirm.arguments == ["o1", "", "7:2:2", "1"])
        #expect(confirm.items == [id])
        #expect(try ConfirmCall.decode(Self.reply("ok", "7:2:2", "5-0")) == .confirmed(eventId: "5-0"))
        #expect(try ConfirmCall.decode(Self.reply("replay", "refunded")) == .replay(.refunded))
        #expect(try ConfirmCall.decode(Self.reply("cancelled", "expired")) == .closed(.expired))
        #expect(try ConfirmCall.decode(Self.reply("expired")) == .expired)
        #expect(try ConfirmCall.decode(Self.reply("stale")) == .stale)
        #expect(try ConfirmCall.decode(Self.reply("lost")) == .lost)
        #expect(try ConfirmCall.decode(Self.reply("replay", "")) == .replay(.confirmed), "an unknown state reads as confirmed")

        let rollback = RollbackCall(
            orderId: "o1", shard: 1, bizId: "b", lines: lines, linesText: "7:2:2", reason: .expired, expiryDecided: true,
            retentionSeconds: 60, layout: layout
        )
        #expect(rollback.keys.count == 3 + 5 * lines.count)
        #expect(rollback.keys[5] == layout.rollbackKey(id, orderId: "o1"))
        #expect(rollback.keys[6] == layout.userUsage(id))
        #expect(rollback.keys[7] == layout.codes(id))
        #expect(rollback.arguments == ["o1", "expired", "", "60", "", "7:2:2", "1", ""])
        let fence = RollbackCall(
            orderId: "o1", shard: 1, bizId: "b", lines: [], linesText: "", reason: .cancelled, knownOrder: true,
            retentionSeconds: 60, layout: layout
        )
        #expect(fence.arguments == ["o1", "cancelled", "", "60", "", "", "", "1"])
        #expect(try RollbackCall.decode(Self.reply("ok", "cancelled", "7:2:2", "6-0")) == .released(eventId: "6-0"))
        #expect(try RollbackCall.decode(Self.reply("replay", "expired")) == .replay(.expired))
        #expect(try RollbackCall.decode(Self.reply("replay", "")) == .replay(nil), "the caller's reason stands in")
        #expect(try RollbackCall.decode(Self.reply("empty", "7-0")) == .recordedEmpty(eventId: "7-0"))
        #expect(try RollbackCall.decode(Self.reply("gone")) == .gone)
        #expect(try RollbackCall.decode(Self.reply("confirmed", "refunded")) == .confirmed(.refunded))
        #expect(try RollbackCall.decode(Self.reply("notexpired")) == .notExpired)
        #expect(try RollbackCall.decode(Self.reply("stale")) == .stale)

        let refund = RefundCall(orderId: "o1", shard: 1, bizId: "b", lines: lines, linesText: "7:2:2", layout: layout)
        #expect(refund.keys == [layout.order("o1", shard: 1), layout.outbox(shard: 1), layout.item(id), layout.codes(id)])
        #expect(try RefundCall.decode(Self.reply("ok", "7:2:2")) == .refunded)
        #expect(try RefundCall.decode(Self.reply("replay")) == .replay)
        #expect(try RefundCall.decode(Self.reply("state", "reserved")) == .state(.reserved))
        #expect(try RefundCall.decode(Self.reply("stale")) == .stale)
    }

    @Test("directory scripts: every documented reply")
    func directory() throws {
        let open = DirOpenCall(
            orderId: "o1", fingerprint: "fp", bizId: "b", shards: [3, 7], ttlSeconds: 90, deadlineMilliseconds: 10_000,
            journalAsked: false, layout: layout
        )
        #expect(open.keys == [layout.directory("o1"), layout.pendingIndex(forOrder: "o1"), layout.generation(shard: layout.shard(of: "o1"))])
        #expect(open.arguments == ["fp", "b", "3,7", "90", "o1", "10000", ""])
        #expect(try DirOpenCall.decode(Self.reply("new")) == .opened)
        #expect(try DirOpenCall.decode(Self.reply("same", "reserving")) == .same)
        #expect(try DirOpenCall.decode(Self.reply("conflict")) == .conflict)
        #expect(try DirOpenCall.decode(Self.reply("closed", "expired")) == .closed(.expired))
        #expect(try DirOpenCall.decode(Self.reply("ask", "marker")) == .askJournal(markerMissing: true))
        #expect(try DirOpenCall.decode(Self.reply("ask", "journal")) == .askJournal(markerMissing: false))
        #expect(try DirOpenCall.decode(Self.reply("closed", "???")) == .closed(.cancelled), "an unknown state reads as cancelled")

        #expect(try DirCommitCall.decode(Self.reply("ok")) == .reserved)
        #expect(try DirCommitCall.decode(Self.reply("decided", "confirmed")) == .decided(.confirmed))
        #expect(try DirCommitCall.decode(Self.reply("state", "cancelled")) == .state("cancelled"))
        #expect(try DirCommitCall.decode(Self.reply("state")) == .state(""))
        #expect(try DirCloseCall.decode(.integer(1)))
        #expect(try !DirCloseCall.decode(.integer(0)))

        let record = DirTransitionCall(
            orderId: "o1", to: "cancelled", from: ["reserved", "reserving"], recordingSeconds: 60, tombstone: true,
            layout: layout
        )
        #expect(record.keys == [layout.directory("o1"), layout.pendingIndex(forOrder: "o1"), layout.outbox(shard: layout.shard(of: "o1"))])
        #expect(record.arguments == ["cancelled", "reserved|reserving", "60", "", "", "o1", "1", ""])
        #expect(try DirTransitionCall.decode(Self.reply("ok")) == .changed)
        #expect(try DirTransitionCall.decode(Self.reply("same")) == .same)
        #expect(try DirTransitionCall.decode(Self.reply("state", "reserving")) == .state("reserving"))
        #expect(try DirTransitionCall.decode(Self.reply("created", "8-0")) == .created(eventId: "8-0"))
        #expect(try DirTransitionCall.decode(Self.reply("none")) == .absent)
    }

    @Test("stock scripts: every documented reply, each field where the script puts it")
    func stock() throws {
        #expect(
            try SetStockCall.decode(Self.reply("ok", "-3", "ep", "danger_num=1>2"))
                == .changed(delta: -3, token: "ep", before: "danger_num=1>2")
        )
        #expect(try SetStockCall.decode(Self.reply("missing", "1")) == .missing)
        #expect(try SetStockCall.decode(Self.reply("below_reserved", "4")) == .belowReserved(reserved: 4))
        #expect(try SetStockCall.decode(Self.reply("codes")) == .oneTimeCodes)
        #expect(try AdjustStockCall.decode(Self.reply("ok", "5", "2", "ep/0")) == .applied(token: "ep/0"))
        #expect(try AdjustStockCall.decode(Self.reply("below_reserved", "1", "6")) == .belowReserved(reserved: 6))
        #expect(try AdjustStockCall.decode(Self.reply("unsettled", "5", "2", "ep/1@9", "ep/1@7")) == .unsettled(token: "ep/1@9", half: "ep/1@7"))
        #expect(try AdjustStockCall.decode(Self.reply("busy")) == .busy)
        #expect(try UnsettleCall.decode(Self.reply("ok")))
        #expect(try !UnsettleCall.decode(Self.reply("gone")))
        #expect(try AdjustStockCall.decode(Self.reply("replay", "5", "2")) == .replay)
        #expect(try AdjustStockCall.decode(Self.reply("conflict")) == .conflict)
        #expect(try AdjustStockCall.decode(Self.reply("missing")) == .missing)
        #expect(try AdjustStockCall.decode(Self.reply("codes")) == .oneTimeCodes)
        #expect(try UndoStockCall.decode(Self.reply("done")) == .done)
        #expect(try FixItemCall.decode(Self.reply("ok")) == .fixed)
        #expect(try FixItemCall.decode(Self.reply("missing")) == .missing)
        #expect(try AdminDoneCall.decode(Self.reply("ok")) == .closed)
        #expect(try AdminDoneCall.decode(Self.reply("surplus", "ep/1@9", "ep/1@7")) == .surplus(token: "ep/1@9", half: "ep/1@7"))
        #expect(try UndoStockCall.decode(Self.reply("ok", "3")) == .reversed)
        #expect(try UndoStockCall.decode(Self.reply("rebuilt")) == .rebuilt)
        #expect(try UndoStockCall.decode(Self.reply("check")) == .check)
        #expect(try FixItemCall.decode(Self.reply("fenced")) == .fenced)
        #expect(try FixItemCall.decode(Self.reply("moved")) == .moved)
        #expect(try AdminDoneCall.decode(Self.reply("missing")) == .missing)
        #expect(try AdminDoneCall.decode(Self.reply("dropped")) == .dropped)
        // Lua's ARGV[n] is arguments[n - 1]: the MySQL half's version, the delta, the settings, the ledger's half.
        #expect(AdminDoneCall(itemKey: "i", token: "e/0@5", adjustmentKey: "a", fingerprint: "3|", version: 42, delta: 3).arguments == ["e/0@5", "3|", "42", "3", "", ""])
        #expect(AdminDoneCall(itemKey: "i", token: "e/0@5", settings: "danger_num=1>2").arguments == ["e/0@5", "", "", "0", "danger_num=1>2", ""])
        #expect(AdminDoneCall(itemKey: "i", token: "*", adjustmentKey: "a", fingerprint: "3|", ledgerHalf: "e/0@4").arguments[6 - 1] == "e/0@4")
        let undo = UndoStockCall(
            itemKey: "i", adjustmentKey: "a", marker: "m", delta: 3, fingerprint: "3|", token: "e/0@5", settings: "", half: "e/0@4",
            ledgerHalf: "none", retentionSeconds: 9
        )
        #expect(undo.arguments[7 - 1] == "e/0@4" && undo.arguments[8 - 1] == "none", "the half's name ARGV[7], the ledger's ARGV[8]")
        let counters = ReconcileDifference.Counters(stockNum: 1, usedStockNum: 2, confirmedUnapplied: 3, refundUnapplied: 4)
        #expect(FixItemCall(itemKey: "i", read: counters, target: counters, version: 7).arguments[9 - 1] == "7", "the row's version, ARGV[9]")
    }

    @Test("rebuild, code pool and journal scripts: every documented reply")
    func others() throws {
        #expect(try InitLockCall.decode(Self.reply("ready")) == .ready)
        #expect(try InitLockCall.decode(Self.reply("locked")) == .locked)
        #expect(try InitLockCall.decode(Self.reply("wait")) == .wait)
        #expect(try InitItemCall.decode(Self.reply("ok")))
        #expect(try !InitItemCall.decode(Self.reply("lost")))
        #expect(try RestoreOrderCall.decode(Self.reply("ok")))
        #expect(try !RestoreOrderCall.decode(Self.reply("exists")))
        #expect(try UndoReserveCall.decode(Self.reply("ok")) == .undone)
        #expect(try UndoReserveCall.decode(Self.reply("settled")) == .settled)
        #expect(try UndoReserveCall.decode(Self.reply("gone")) == .gone)
        #expect(try SetPoolCall.decode(Self.reply("ok")))
        #expect(try !SetPoolCall.decode(Self.reply("missing")))
        #expect(try AddCodesCall.decode(.array([.string("ok"), .integer(3)])) == .added(3))
        #expect(try AddCodesCall.decode(Self.reply("missing")) == .missing)
        let counts = try PoolCountsCall.decode(.array([.array([.string("4"), .integer(4)]), .array([.string(""), .integer(0)])]))
        #expect(counts.map(\.stock) == [4, nil])
        #expect(counts.map(\.codes) == [4, 0])
        #expect(try AckCall.decode(.integer(2)) == 2)
        #expect(try AppliedCall.decode(.integer(1)))
        #expect(try !AppliedCall.decode(.integer(0)))
        #expect(try AbsentCall.decode(.integer(1)))
        #expect(try !AbsentCall.decode(.integer(0)))
        #expect(AbsentCall(id, milliseconds: 2_000, layout: layout).keys == [layout.absent(id), layout.made(id)])
        #expect(try LeaseCall.decode(.integer(1)))
        #expect(try !LeaseCall.decode(.integer(0)))
        #expect(try OutboxGroupCall.decode(.integer(1)))
        #expect(try !OutboxGroupCall.decode(.integer(0)))
        #expect(throws: (any Error).self) { try OutboxGroupCall.decode(.integer(2)) }
        #expect(try RaiseToCall.decode(.integer(7)) == 7)
        #expect(throws: (any Error).self) { try RaiseToCall.decode(.string("x")) }
    }

    @Test("outbox_read, outbox_claim, outbox_entries: their keys, arguments and replies")
    func outboxReadContract() throws {
        let call = OutboxReadCall(streams: ["s0", "s1"], owner: "w#1", group: "g", consumer: "c", count: 0, pending: false)
        #expect(call.keys == ["s0:lease", "s0", "s1:lease", "s1"])
        #expect(call.arguments == ["w#1", "g", "c", "1", ">"])
        #expect(OutboxReadCall(streams: ["s0"], owner: "w", group: "g", consumer: "c", count: 5, pending: true).arguments.last == "0")
        let entry = RedisValue.array([.string("1-0"), .array([.string("type"), .string("reserve")])])
        let reply = RedisValue.array([
            .array([.string("read"), .array([entry]), .string("")]),
            .array([.string("lost")]),
            .array([.string("read"), .array([]), .string("7-1")]),
            .array([.string("nogroup")]),
        ])
        #expect(try OutboxReadCall.decode(reply) == [
            .read(entries: .array([entry]), last: ""), .lost, .read(entries: .array([]), last: "7-1"), .noGroup,
        ])
        #expect(throws: (any Error).self) { try OutboxReadCall.decode(.array([.array([.string("read"), .array([])])])) }
        #expect(throws: (any Error).self) { try OutboxReadCall.decode(.array([.array([.string("held")])])) }
        #expect(throws: (any Error).self) { try OutboxReadCall.decode(.array([.integer(1)])) }
        let claim = OutboxClaimCall(stream: "s0", owner: "w#1", group: "g", consumer: "c", idle: 0, cursor: "0-0", count: 10)
        #expect(claim.keys == ["s0:lease", "s0"])
        #expect(claim.arguments == ["w#1", "g", "c", "0", "0-0", "10"])
        #expect(try OutboxClaimCall.decode(.array([.string("claimed"), .string("5-1"), .integer(3)])) == .claimed(next: "5-1", entries: 3))
        #expect(try OutboxClaimCall.decode(.array([.string("lost")])) == .lost)
        #expect(try OutboxClaimCall.decode(.array([.string("nogroup")])) == .noGroup)
        #expect(throws: (any Error).self) { try OutboxClaimCall.decode(.array([.string("claimed"), .string("5-1")])) }
        let entries = OutboxEntriesCall(stream: "s0", ids: [StreamEntryID(milliseconds: 5, sequence: 1)])
        #expect(entries.keys == ["s0"])
        #expect(entries.arguments == ["5-1"])
        #expect(try OutboxEntriesCall.decode(.array([.string("entries"), entry])) == .array([entry]))
        #expect(throws: (any Error).self) { try OutboxEntriesCall.decode(.array([entry])) }
    }

    @Test("restore_order.lua: quantities from ARGV[9], then the codes per line, then the request")
    func restoreOrderLayout() {
        let call = RestoreOrderCall(
            orderId: "o1", shard: 3, bizId: "b", userId: nil, status: "reserved",
            lines: [.init(skuId: 7, quantity: 2), .init(skuId: 8, quantity: 1)], codes: [["A", "B"], []],
            expiresAtMilliseconds: 9_000, request: "#sha", retentionSeconds: 60, layout: layout
        )
        let eight = StockItemID(bizId: "b", skuId: 8)
        #expect(call.keys == [
            layout.order("o1", shard: 3), layout.expiryIndex(shard: 3), layout.reserveKey(id, orderId: "o1"),
            layout.rollbackKey(id, orderId: "o1"), layout.reserveKey(eight, orderId: "o1"),
            layout.rollbackKey(eight, orderId: "o1"), layout.item(id), layout.item(eight),
        ])
        #expect(call.arguments == ["o1", "b", "", "reserved", "7:2:2,8:1:1", "9000", "", "60", "2", "1", "A|B,", "#sha"])
    }

    @Test("init_item.lua: holds, codes and usage where the header counts them")
    func initItemLayout() {
        let snapshot = StockRepository.InitSnapshot(
            row: StockRow(bizId: "b", skuId: 7, stock: 10, infinite: false, dangerNum: 1, backorderLimit: 0),
            liveHolds: [(orderId: "o1", quantity: 3, expiresAtMilliseconds: 5_000)],
            duplicateHolds: [.init(orderId: "o9", quantity: 2, reserveEvent: "5-0")], userWindow: 0,
            usage: [UserUsage(userId: "u1", units: 3)], pool: nil, codes: ["A", "B"], version: 9
        )
        let call = InitItemCall(
            id, caller: "c", snapshot: snapshot, epoch: "ep", drainedEpochs: ["e2", "e1"], outboxes: ["s0", "s1"],
            now: 2_000, itemTTLSeconds: 0, retentionSeconds: 60, layout: layout
        )
        // The hold's order (business b's "o1": its name is b/o1), whose record of the hold gets the new epoch too.
        // And the same order under its bare orderId, where one made before orders were scoped is still kept.
        let order = layout.order("b/o1", shard: layout.partShard(orderId: "b/o1", item: id))
        let bare = layout.order("o1", shard: layout.partShard(orderId: "o1", item: id))
        // Then the duplicate hold of an ended order: its reserve key and its order's record, before the streams.
        let duplicate = [layout.reserveKey(id, orderId: "o9"), layout.order("b/o9", shard: layout.partShard(orderId: "b/o9", item: id))]
        #expect(call.keys == [layout.item(id), layout.userUsage(id), layout.codes(id), layout.reserveKey(id, orderId: "o1"), order, bare] + duplicate + ["s0", "s1"])
        // On a cluster the order's part that holds the item shares the item's slot: one script writes both.
        let cluster = KeyLayout(prefix: "u", shards: 8, clustered: true)
        let clustered = InitItemCall(
            id, caller: "c", snapshot: snapshot, epoch: "ep", drainedEpochs: [], outboxes: ["s0"],
            now: 2_000, itemTTLSeconds: 0, retentionSeconds: 60, layout: cluster
        )
        #expect(clustered.keys[4] == cluster.order("b/o1", shard: cluster.itemShard(id)))
        #expect(clustered.keys[5] == cluster.order("o1", shard: cluster.itemShard(id)))
        #expect(Set(clustered.keys.dropLast().map { $0.split(separator: "}").first ?? "" }).count == 1)
        // Lua's ARGV[n] is arguments[n - 1].
        let c = 2
        let h = 1
        #expect(call.arguments[2 - 1] == "7", "stock_num: db stock minus live reserved")
        #expect(call.arguments[16 - 1] == "e1,e2")
        #expect(call.arguments[17 - 1] == "0", "no codes written by parts before")
        #expect(call.arguments[18 - 1] == "0", "no user counts written by parts before")
        #expect(call.arguments[19 - 1] == String(c))
        #expect(Array(call.arguments[(20 - 1)..<(19 + c)]) == ["A", "B"])
        #expect(call.arguments[20 + c - 1] == String(h))
        #expect(call.arguments[19 + c + 2 - 1] == "3", "the hold's quantity")
        #expect(call.arguments[20 + c + 2 - 1] == "63", "its key's TTL: 3 s left plus the retention")
        #expect(Array(call.arguments[(21 + c + 2 * h - 1)..<(24 + c + 2 * h)]) == ["1", "2", "5-0", "60"], "one duplicate: quantity, event, TTL")
        let usageStart: Int = 22 + c + 2 * h + 3 - 1
        #expect(Array(call.arguments[usageStart...]) == ["u1", "3", "9"], "then the stock row's version, last")
        // After parts: only the rest of each, and how many the parts wrote.
        let last = InitItemCall(
            id, caller: "c", snapshot: snapshot, epoch: "ep", drainedEpochs: [], outboxes: ["s0"], now: 2_000,
            itemTTLSeconds: 0, retentionSeconds: 60, layout: layout, before: RebuildParts(holds: 1, codes: 1, users: 1)
        )
        #expect(Array(last.arguments[(17 - 1)...]) == ["1", "1", "1", "B", "0", "1", "2", "5-0", "60", "9"], "codes 1 and users 1 before; code B; no holds; the duplicate (never in parts); the version")
        #expect(last.keys == [layout.item(id), layout.userUsage(id), layout.codes(id)] + duplicate + ["s0"])
    }

    @Test("fill_part.lua: the item and the set or hash; caller, lock, kind, count before, window, then the members")
    func fillPartLayout() throws {
        let codes = FillPartCall(
            id, caller: "c", lockMilliseconds: 5_000, codes: ["A", "B"], before: 4, itemTTLSeconds: 600, layout: layout
        )
        #expect(codes.keys == [layout.item(id), layout.codes(id)])
        #expect(codes.arguments == ["c", "5000", "codes", "4", "", "600", "A", "B"])
        let users = FillPartCall(
            id, caller: "c", lockMilliseconds: 5_000, usage: [UserUsage(userId: "u1", units: 3)], window: 9, before: 0,
            itemTTLSeconds: 0, layout: layout
        )
        #expect(users.keys == [layout.item(id), layout.userUsage(id)])
        #expect(users.arguments == ["c", "5000", "users", "0", "9", "0", "u1", "3"])
        #expect(try FillPartCall.decode(Self.reply("ok")))
        #expect(try !FillPartCall.decode(Self.reply("lost")))
    }

    @Test("a rebuild's part of holds: the item, then per hold its reserve key, order and bare-name order; the epochs named before")
    func restampHoldsLayout() throws {
        let holds: ArraySlice<StockRepository.LiveHold> = [
            (orderId: "o1", quantity: 3, expiresAtMilliseconds: 5_000), (orderId: "o2", quantity: 4, expiresAtMilliseconds: 0),
        ]
        let call = RestampHoldsCall(
            id, caller: "c", epoch: "ep", holds: holds, now: 2_000, retentionSeconds: 60, lockMilliseconds: 5_000, layout: layout
        )
        func order(_ name: String) -> String { layout.order(name, shard: layout.partShard(orderId: name, item: id)) }
        #expect(
            call.keys == [
                layout.item(id), layout.reserveKey(id, orderId: "o1"), layout.reserveKey(id, orderId: "o2"), order("b/o1"),
                order("b/o2"), order("o1"), order("o2"),
            ]
        )
        #expect(call.arguments == ["c", "ep", "5000", "2", "3", "63", "4", "60"])
        // The last part goes with the item: init_item.lua gets only those holds.
        let snapshot = StockRepository.InitSnapshot(
            row: StockRow(bizId: "b", skuId: 7, stock: 10, infinite: false, dangerNum: 1, backorderLimit: 0),
            liveHolds: Array(holds), userWindow: 0, usage: [], pool: nil, codes: []
        )
        let last = InitItemCall(
            id, caller: "c", snapshot: snapshot, epoch: "ep", drainedEpochs: [], outboxes: ["s0"], now: 2_000,
            itemTTLSeconds: 0, retentionSeconds: 60, layout: layout, before: RebuildParts(holds: 1)
        )
        #expect(last.keys == [layout.item(id), layout.userUsage(id), layout.codes(id), layout.reserveKey(id, orderId: "o2"), order("b/o2"), order("o2"), "s0"])
        #expect(Array(last.arguments.suffix(5)) == ["1", "4", "60", "0", "0"], "one hold, no duplicate, the version")
        #expect(last.arguments[2] == "7", "used_stock_num counts every hold (3 + 4), not only the last part's")
        #expect(try RestampHoldsCall.decode(Self.reply("ok", "e1,e2")) == .restamped(previousEpochs: ["e1", "e2"]))
        #expect(try RestampHoldsCall.decode(Self.reply("ok", "")) == .restamped(previousEpochs: []))
        #expect(try RestampHoldsCall.decode(Self.reply("lost")) == .lost)
    }

    @Test("snapshot and epochs: per-item entries in key order, a missing item nil")
    func reads() throws {
        let snapshot = try SnapshotCall.decode(
            .array([
                .array([
                    .array([.integer(1), .string("5"), .string("2"), .string("1"), .string("0"), .string("0"), .integer(1)]),
                    .array([.integer(0)]),
                ]),
                .array([
                    .array([.string("reserve"), .string("o1"), .string("b"), .string("7"), .string("2"), .string("1-0"), .string(""), .integer(0)])
                ]),
            ])
        )
        #expect(snapshot.items.count == 2)
        #expect(snapshot.items[0]?.counters == .init(stockNum: 5, usedStockNum: 2, confirmedUnapplied: 1, refundUnapplied: 0))
        #expect(snapshot.items[0]?.fenced == true)
        #expect(snapshot.items[1] == nil)
        #expect(snapshot.lines.map(\.item) == [id])
        #expect(snapshot.lines.first?.quantity == 2)
        let epochs = try EpochsCall.decode(.array([.array([.string("e3"), .string(",e1,e2,")]), .null]))
        #expect(epochs == [ItemEpoch("e3", absorbed: ["e1", "e2"]), nil])
    }
}
