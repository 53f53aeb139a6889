import Foundation
import Testing

import Inventory
@testable import InventoryAPI

@Suite("Hand-written JSON")
struct JSONWriterTests {
    @Test("timestamps agree with Foundation's ISO 8601 formatter", arguments: [
        Int64(0), 951_782_400_123, 1_763_700_000_999, 4_102_444_799_999, 1_709_208_000_000, 86_399_500,
    ])
    func timestamps(milliseconds: Int64) {
        let expected = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
            .formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        #expect(Timestamp.rfc3339(milliseconds: milliseconds) == expected)
    }

    @Test("strings are escaped so the output parses back to the same values")
    func escaping() throws {
        var writer = JSONWriter()
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{07} unicode ü 🎉 slash /"
        writer.beginObject()
        writer.field("text", tricky)
        writer.field("count", Int64(-42))
        writer.field("big", UInt64.max)
        writer.field("flag", true)
        writer.field("none", nil as String?)
        writer.beginArray("list")
        writer.beginObject()
        writer.field("a", Int64(1))
        writer.endObject()
        writer.beginObject()
        writer.endObject()
        writer.endArray()
        writer.endObject()
        let data = Data(writer.buffer.readableBytesView)
        let object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["text"] as? String == tricky)
        #expect(object["count"] as? Int == -42)
        #expect(object["flag"] as? Bool == true)
        #expect(object["none"] is NSNull)
        #expect((object["list"] as? [[String: Any]])?.count == 2)
        #expect(String(decoding: data, as: UTF8.self).contains("\"big\":18446744073709551615"))
    }
}

@Suite("Hot-item limiter")
struct HotItemLimiterTests {
    @Test("admits the limit per item per window, refuses the rest, and starts again in the next window")
    func windows() {
        let limiter = HotItemLimiter(limit: 3, windowMilliseconds: 10)
        let hot = StockItemID(bizId: "b", skuId: 1)
        let other = StockItemID(bizId: "b", skuId: 2)
        let start: UInt64 = 1_000_000_000
        #expect((0..<5).map { _ in limiter.admit([hot], now: start) } == [true, true, true, false, false])
        #expect(limiter.admit([other], now: start + 1))
        #expect(limiter.admit([other, hot], now: start + 2) == false, "all-or-nothing: a hot item refuses the order")
        #expect(limiter.admit([other], now: start + 3), "the refused order counted nothing")
        #expect(limiter.admit([hot], now: start + 10_000_000))
    }
}
