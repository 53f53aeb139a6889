import Inventory
import NIOConcurrencyHelpers
import NIOCore

/// An in-process admission limit per business: each business may send `rate` requests per second, with bursts of up
/// to `burst` (a token bucket); past it, its requests are answered 429 with `Retry-After` at once, before any Redis
/// or MySQL work, so one business's flood queues nobody else's requests behind it. Counts every request that names a
/// business: reserves (the body's `bizId`) and every `/v1/stock/{bizId}/…` route. Off unless
/// `INVENTORY_BIZ_RATE_LIMIT` is set. Per instance: N instances admit N × the rate.
public final class BusinessAdmission: Sendable {
    private struct Bucket {
        var tokens: Double
        var at: UInt64
    }

    /// Requests per second each business may send.
    public let rate: Double
    /// Requests a business may send at once after a quiet spell.
    public let burst: Double
    private struct Table {
        var buckets: [String: Bucket] = [:]
        var prunedAt: UInt64 = 0
    }

    private let table = NIOLockedValueBox(Table())
    /// Buckets kept at most. bizId is the client's to choose: past this many businesses, the buckets that refilled (a
    /// full bucket admits what no bucket does) are forgotten, at most once a second; businesses that still find no
    /// room share one overflow bucket, so a flood of ever new bizIds is admitted at one business's rate.
    static let tableLimit = 10_000
    /// The overflow bucket's name: not a bizId any request can carry.
    static let overflow = "\u{0}overflow"

    /// - Parameters:
    ///   - rate: requests per second per business (> 0).
    ///   - burst: requests admitted at once; 0 = one second's worth (`rate`).
    public init(rate: Int, burst: Int = 0) {
        self.rate = Double(max(rate, 1))
        self.burst = Double(burst > 0 ? burst : max(rate, 1))
    }

    /// Admits one request of `bizId` now, or answers how many seconds until it would be admitted.
    public enum Verdict: Equatable, Sendable {
        case admitted
        case refused(retryAfterSeconds: Int)
    }

    public func admit(_ bizId: String, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Verdict {
        table.withLockedValue { table in
            var name = bizId
            if table.buckets[name] == nil && table.buckets.count >= Self.tableLimit {
                if now >= table.prunedAt + 1_000_000_000 {
                    table.prunedAt = now
                    table.buckets = table.buckets.filter { refilled($0.value, now) < burst }
                }
                if table.buckets.count >= Self.tableLimit { name = Self.overflow }
            }
            var bucket = table.buckets[name] ?? Bucket(tokens: burst, at: now)
            bucket.tokens = refilled(bucket, now)
            bucket.at = max(bucket.at, now)
            defer { table.buckets[name] = bucket }
            guard bucket.tokens >= 1 else {
                return .refused(retryAfterSeconds: max(1, Int(((1 - bucket.tokens) / rate).rounded(.up))))
            }
            bucket.tokens -= 1
            return .admitted
        }
    }

    /// A bucket's tokens at `now`: what it had plus what the time since gave back, up to `burst`.
    private func refilled(_ bucket: Bucket, _ now: UInt64) -> Double {
        guard now > bucket.at else { return bucket.tokens }
        return min(burst, bucket.tokens + Double(now - bucket.at) / 1e9 * rate)
    }

    /// Businesses with a bucket (for tests: the table stays bounded).
    var tracked: Int { table.withLockedValue { $0.buckets.count } }
}
