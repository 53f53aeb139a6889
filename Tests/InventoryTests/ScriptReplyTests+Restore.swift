import Foundation
import RedisClient
import Testing

@testable import Inventory

/// The take-back's and the restore's script contracts: where undo_reserve.lua finds a part's keys and the earlier
/// hold's arguments, and what part_ending.lua answers.
extension ScriptReplyTests {
    @Test("on a cluster a line's keys are in its part's shard: undo_reserve finds the part from its lines")
    func clusterParts() {
        let cluster = KeyLayout(prefix: "u", shards: 8, clustered: true)
        let call = UndoReserveCall(
            orderId: "o1", bizId: "b", eventId: "1-0", lines: "7:2", earlierEventId: "", retentionSeconds: 60, layout: cluster
        )
        let shard = cluster.partShard(orderId: "o1", item: id)
        #expect(shard == cluster.itemShard(id))
        #expect(call.keys[0] == cluster.order("o1", shard: shard))
        #expect(call.keys[3] == call.keys[4], "no earlier event: this event's own marker stands in its place")
        #expect(call.keys[5] == cluster.item(id))
        // then per line the earlier hold's quantity, codes and reserve time (0, '', '' with no earlier event), the
        // epoch the line was held in ('' unknown), then the earlier event
        #expect(call.arguments == ["o1", "1-0", "", "60", "2", "0", "", "", "", ""])
        #expect(call.items == [id])
        let named = UndoReserveCall(
            orderId: "o1", bizId: "b", eventId: "1-0", lines: "7:2:e1", earlierEventId: "0-5",
            earlier: [7: HeldLine(quantity: 1, codes: ["A", "B"], reservedAt: 1700)], retentionSeconds: 60, layout: cluster
        )
        #expect(named.arguments == ["o1", "1-0", "", "60", "2", "1", "A|B", "1700", "e1", "0-5"])
        #expect(named.keys[4] == cluster.undoneMarker(orderId: "o1", eventId: "0-5", shard: shard))
    }

    @Test("part_ending.lua: the stream's last id while the part is absent, nothing while it is present")
    func partEnding() throws {
        let layout = KeyLayout(prefix: "u", shards: 8, clustered: true)
        let call = PartEndingCall(orderId: "o1", shard: 3, layout: layout)
        #expect(call.keys == [layout.order("o1", shard: 3), layout.outbox(shard: 3)])
        #expect(try PartEndingCall.decode(.array([.string("absent"), .string("17-2")])) == "17-2")
        #expect(try PartEndingCall.decode(.array([.string("present")])) == nil)
        #expect(throws: (any Error).self) { try PartEndingCall.decode(.array([.string("absent"), .string("x")])) }
    }
}
