import RedisClient
import Testing

@testable import Inventory

/// The scripts that check a drain mark against this instance's floor first (lua/lib/floor.lua) name their shard's mark;
/// the engine appends a mark and the floor as their last key and argument, and the script takes both off.
extension ScriptReplyTests {
    @Test("floor checks: the scripts that include lib/floor name their shard's drain mark, the others none")
    func drainMarksNamed() throws {
        let scripts = try InventoryScripts.load()
        let lines = [ReservationLine(skuId: 7, requested: 2, reserved: 2)]
        let command = ReserveCommand(orderId: "o1", bizId: "b", userId: nil, items: [.init(skuId: 7, quantity: 2)], ttlSeconds: 60, shortage: .reject)
        let named: [(ScriptName, String?)] = [
            (
                .reserve,
                ReserveCall(
                    command, shard: 2, fingerprint: "fp", shortage: "reject", journal: .asked, dispense: false, failpoint: "",
                    retentionSeconds: 100, itemTTLSeconds: 50, layout: layout
                ).drainMark
            ),
            (.confirm, ConfirmCall(orderId: "o1", shard: 2, bizId: "b", lines: lines, linesText: "7:2:2", deadlineChecked: false, layout: layout).drainMark),
            (
                .rollback,
                RollbackCall(
                    orderId: "o1", shard: 2, bizId: "b", lines: lines, linesText: "7:2:2", reason: .cancelled, retentionSeconds: 1,
                    layout: layout
                ).drainMark
            ),
            (.refund, RefundCall(orderId: "o1", shard: 2, bizId: "b", lines: lines, linesText: "7:2:2", layout: layout).drainMark),
            (.readFields, ReadFieldsCall("k", fields: ["a"], shard: 2, layout: layout).drainMark),
        ]
        for (name, mark) in named {
            #expect(scripts[name].source.contains("local behind = behindFloor()"), "\(name) checks the floor")
            #expect(mark == layout.drainMark(shard: 2), "\(name) names its shard's mark")
        }
        #expect(SetStockCall(id, StockSettings(stock: 1), itemTTLSeconds: 0, layout: layout).drainMark == layout.drainMark(item: id))
        #expect(!scripts[.initItem].source.contains("behindFloor()"))
        #expect(AckCall(stream: "s", group: "g", ids: ["1-0"]).drainMark == nil)
    }

    @Test("read_fields.lua: the fields after its tag; anything else is not its answer")
    func readFieldsReplies() throws {
        #expect(try ReadFieldsCall.decode(.array([.string("fields"), .string("1"), .null])) == [.string("1"), .null])
        #expect(throws: InventoryError.self) { try ReadFieldsCall.decode(Self.reply("behind")) }
        let call = ReadFieldsCall("k", fields: ["a", "b"], shard: 1, layout: layout)
        #expect(call.keys == ["k"] && call.arguments == ["a", "b"])
    }

    @Test("drain_mark.lua: raised marks first, then checked ones, the sequence last when given; its replies")
    func drainMarkLayout() throws {
        let call = DrainMarkCall(raise: [(mark: "m1", seq: 4)], check: [(mark: "m2", seq: 7)], sequence: "seq")
        #expect(call.keys == ["m1", "m2", "seq"])
        #expect(call.arguments == ["1", "1", "4", "7"])
        let clustered = DrainMarkCall(raise: [(mark: "m1", seq: 4)])
        #expect(clustered.keys == ["m1"] && clustered.arguments == ["1", "", "4"])
        #expect(try DrainMarkCall.decode(.array([.string("raised"), .integer(9)])) == .raised([9]))
        #expect(try DrainMarkCall.decode(.array([.string("behind"), .integer(2)])) == .behind([1]))
        #expect(throws: InventoryError.self) { try DrainMarkCall.decode(.array([.string("behind"), .integer(0)])) }
        #expect(layout.drainSequence == "u:{s0}:drained:seq")
        #expect(KeyLayout(prefix: "u", shards: 4, clustered: true).drainSequence == nil)
    }

    @Test("floors: a raise lifts one, a reset sets them to MySQL's unless a raise came after its read began")
    func floorsRaiseAndReset() {
        let floors = DrainFloors(keys: layout)
        let (m1, m2) = (layout.drainMark(shard: 1), layout.drainMark(shard: 2))
        #expect(floors.fence(for: m1) == (key: "u:{s0}:drained:seq", floor: 0))
        floors.raise([m1: 7])
        #expect(floors.fence(for: m2).floor == 7, "a single Redis checks its sequence against the highest floor")
        let token = floors.token()
        floors.raise([m2: 9])
        floors.reset([m1, m2], to: [m1: 3, m2: 4], since: token)
        #expect(floors.fence(for: m1).floor == 9, "the raise after the read stands")
        floors.reset([m1, m2], to: [m1: 3], since: floors.token())
        #expect(floors.fence(for: m1).floor == 3, "MySQL restored from a backup takes the floors down")
        let clustered = DrainFloors(keys: KeyLayout(prefix: "u", shards: 4, clustered: true))
        clustered.raise([m1: 7])
        #expect(clustered.fence(for: m1) == (key: m1, floor: 7))
        #expect(clustered.fence(for: m2) == (key: m2, floor: 0), "a cluster's script checks its own shard")
    }
}
