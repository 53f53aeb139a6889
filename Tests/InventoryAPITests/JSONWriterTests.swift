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

@Suite("Per-business admission")
struct BusinessAdmissionTests {
    @Test("a business gets its burst, then its rate; another business is not touched; Retry-After says when")
    func buckets() {
        let admission = BusinessAdmission(rate: 10, burst: 3)
        let start: UInt64 = 5_000_000_000
        #expect((0..<5).map { _ in admission.admit("flood", now: start) }
            == [.admitted, .admitted, .admitted, .refused(retryAfterSeconds: 1), .refused(retryAfterSeconds: 1)])
        #expect(admission.admit("quiet", now: start) == .admitted, "another business has a bucket of its own")
        // 10 per second: one token back after 100 ms, not before
        #expect(admission.admit("flood", now: start + 99_000_000) == .refused(retryAfterSeconds: 1))
        #expect(admission.admit("flood", now: start + 100_000_000) == .admitted)
        #expect(admission.admit("flood", now: start + 100_000_001) == .refused(retryAfterSeconds: 1))
        // a quiet spell gives back the burst, no more
        #expect((0..<4).map { _ in admission.admit("flood", now: start + 60_000_000_000) }
            == [.admitted, .admitted, .admitted, .refused(retryAfterSeconds: 1)])
    }

    @Test("a slow rate answers the seconds until a request is admitted")
    func retryAfter() {
        let admission = BusinessAdmission(rate: 1, burst: 1)
        #expect(admission.admit("b", now: 1) == .admitted)
        #expect(admission.admit("b", now: 2) == .refused(retryAfterSeconds: 1))
        let slow = BusinessAdmission(rate: 1, burst: 0)
        #expect(slow.burst == 1, "burst 0: one second's worth")
    }

    @Test("businesses named by clients cannot grow the table: new ones past the limit share one bucket; refilled ones are forgotten")
    func bounded() {
        let admission = BusinessAdmission(rate: 2, burst: 2)
        let limit = BusinessAdmission.tableLimit
        for index in 0..<limit { _ = admission.admit("biz-\(index)", now: 1_000) }
        // the table is full: new businesses share the overflow bucket (2 at once), known ones keep their own
        #expect(admission.admit("new-1", now: 2_000) == .admitted)
        #expect(admission.admit("new-2", now: 2_000) == .admitted)
        #expect(admission.admit("new-3", now: 2_000) == .refused(retryAfterSeconds: 1))
        #expect(admission.admit("biz-7", now: 2_000) == .admitted)
        #expect(admission.admit("biz-7", now: 2_000) == .refused(retryAfterSeconds: 1))
        #expect(admission.tracked == limit + 1)
        // a second later every bucket has refilled: the next new business finds them all forgotten
        #expect(admission.admit("late", now: 1_000_002_000) == .admitted)
        #expect(admission.tracked == 1)
    }
}

