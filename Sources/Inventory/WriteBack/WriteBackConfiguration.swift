import Foundation

/// Settings of the write-back worker.
public struct WriteBackConfiguration: Sendable {
    /// Consumer group shared by every worker.
    public var group: String
    /// This worker's name in the group: what it read and did not acknowledge stays pending under this name until
    /// it, restarted, or another worker takes the stream over (its leases carry a number of the process's own too).
    public var consumer: String
    /// Entries read per batch (per stream).
    public var batchSize: Int
    /// How long one read waits for new entries.
    public var blockMilliseconds: Int
    /// Entries another consumer has held this long without acknowledging are taken over (a crashed worker).
    public var claimIdleMilliseconds: Int
    /// Longest pause between retries while MySQL is down.
    public var maxBackoffMilliseconds: Int
    /// How long a stream's lease lasts without renewal (renewed about once a second; at least 2,000); a worker stops
    /// reading a stream a fifth of this before its lease could run out.
    public var leaseMilliseconds: Int

    public init(
        group: String = "writeback",
        consumer: String = ProcessInfo.processInfo.hostName,
        batchSize: Int = 1000,
        blockMilliseconds: Int = 50,
        claimIdleMilliseconds: Int = 30_000,
        maxBackoffMilliseconds: Int = 2000,
        leaseMilliseconds: Int = 10_000
    ) {
        self.group = group
        self.consumer = consumer
        self.batchSize = batchSize
        self.blockMilliseconds = blockMilliseconds
        self.claimIdleMilliseconds = claimIdleMilliseconds
        self.maxBackoffMilliseconds = maxBackoffMilliseconds
        self.leaseMilliseconds = max(leaseMilliseconds, 2000)
    }
}

/// What the worker has done so far, for metrics, tests and the load harness.
public struct WriteBackStats: Sendable {
    public var batches = 0
    public var events = 0
    public var duplicates = 0
    public var failedAttempts = 0
    /// Time spent reading the outbox (mostly while the batch before is applied), in the MySQL transaction,
    /// settling Redis and acknowledging (while the next batch is applied), in ms.
    public var readMilliseconds = 0.0
    public var applyMilliseconds = 0.0
    public var settleMilliseconds = 0.0
    public var acknowledgeMilliseconds = 0.0
    /// Time spent between batches on the streams' leases (about once a second), in ms; batches wait meanwhile.
    public var leaseRefreshMilliseconds = 0.0
    /// Time spent between batches on the check whether Redis went back in time (about once a second), in ms.
    public var checkMilliseconds = 0.0
    /// Time spent between batches taking over entries of consumers that stopped (every `claimIdleMilliseconds / 2`).
    public var claimMilliseconds = 0.0
    /// Claims of a taken-over stream's pending entries that failed (the stream waits for a later one).
    public var failedClaims = 0
    /// Streams found, at a read or a claim, to be leased to another worker (or to no one) now: no longer read here.
    public var lostStreams = 0
    /// Journal lag (event appended in Redis → committed in MySQL) of recent events, in milliseconds.
    public var recentLagMilliseconds: [Int64] = []
    /// The lag sample of the window before: the progress log starts a new sample every 10 s, and a reader just
    /// after that still wants recent numbers.
    public var previousLagMilliseconds: [Int64] = []
    /// Events applied in each of the last seconds.
    var rate = EventRate()

    /// The lag percentile (0...100) of the recent sample, or nil when there is none.
    public func lagPercentile(_ percentile: Double) -> Int64? {
        Self.percentile(percentile, of: recentLagMilliseconds)
    }

    /// The percentile (0...100) of a sample by nearest rank, or nil for an empty sample.
    static func percentile(_ percentile: Double, of sample: [Int64]) -> Int64? {
        guard !sample.isEmpty else { return nil }
        let sorted = sample.sorted()
        let rank = Int((percentile / 100 * Double(sorted.count - 1)).rounded())
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }
}

/// What the status page shows of a running worker.
public struct WriteBackProgress: Sendable, Equatable {
    /// Journal lag of the events applied in the last 10-20 s; nil when none were.
    public var lagP50Milliseconds: Int64?
    public var lagP99Milliseconds: Int64?
    /// Events applied per second over the last (up to 10) whole seconds; nil in the worker's first second.
    public var eventsPerSecond: Int?
}

/// Events counted per second since a start, kept for the last `windowSeconds` seconds only: a rate that follows
/// the load, in bounded memory.
struct EventRate: Sendable {
    static let windowSeconds: Int64 = 10
    private var started = ContinuousClock.now
    private var counts: [Int64: Int] = [:]

    /// Counts events at `now`.
    mutating func record(_ events: Int, at now: ContinuousClock.Instant = .now) {
        let second = Self.wholeSeconds(now - started)
        counts[second, default: 0] += events
        counts = counts.filter { $0.key > second - Self.windowSeconds }
    }

    /// Events per second over the whole seconds of the window before the current one; nil before the first
    /// whole second.
    func perSecond(at now: ContinuousClock.Instant = .now) -> Int? {
        let current = Self.wholeSeconds(now - started)
        let span = min(Self.windowSeconds, current)
        guard span > 0 else { return nil }
        let total = counts.filter { $0.key >= current - span && $0.key < current }.values.reduce(0, +)
        return Int((Double(total) / Double(span)).rounded())
    }

    private static func wholeSeconds(_ duration: Duration) -> Int64 {
        max(duration.components.seconds, 0)
    }
}

/// One entry read from an outbox stream; `event` is nil for an entry deleted while pending (acknowledged as is).
typealias OutboxEntry = (stream: String, id: String, event: OutboxEvent?)
