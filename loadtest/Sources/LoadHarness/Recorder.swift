import Histogram

/// Why a request produced no usable answer, or an answer the scenario does not expect.
public enum ErrorKind: String, CaseIterable, Sendable, Codable {
    /// The connection could not be opened (the job is not sent).
    case connect
    /// No complete answer within `--timeout`; the connection is closed and opened again.
    case timeout
    /// The connection was closed or reset while a request was waiting for its answer.
    case closed
    /// Writing the request failed.
    case write
    /// The answer was not valid HTTP/1.1.
    case `protocol`
    /// An HTTP status the scenario does not expect (5xx, 429, a 201 replay, ...): see the status counts.
    case status
}

/// Latency histograms in microseconds, from 1 µs to one hour, 3 significant digits (HdrHistogram).
public enum Latency {
    public static let highest: UInt64 = 3_600_000_000

    public static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }

    /// Nanoseconds to whole microseconds, rounded up so a wait of X is never recorded as less than X.
    static func microseconds(_ nanoseconds: UInt64) -> UInt64 {
        Swift.min((nanoseconds + 999) / 1000, highest)
    }
}

/// What the harness did to one stock item, from the answers it got; the checks compare it with the service.
public struct ItemLedger: Sendable, Codable, Equatable {
    /// The on-hand stock the harness set before the run.
    public var stock: Int64 = 0
    /// Reserves answered 201.
    public var successes: Int64 = 0
    /// Quantity of those 201s (and of any 201 to a replay, which must never happen).
    public var held: Int64 = 0
    /// Quantity confirmed (200 to confirm).
    public var confirmed: Int64 = 0
    /// Quantity cancelled (200 to cancel).
    public var cancelled: Int64 = 0
    /// Quantity held with ttlSeconds 1 and left to expire.
    public var expiring: Int64 = 0
    /// Quantity of stock-changing requests whose outcome is unknown (no answer, or a 5xx): the tolerance of the checks.
    public var uncertain: Int64 = 0

    public init(stock: Int64 = 0) { self.stock = stock }

    /// The reserved quantity the service should show once every expiring hold has been swept.
    public var expectedReserved: Int64 { held - confirmed - cancelled - expiring }

    mutating func add(_ other: ItemLedger) {
        successes += other.successes
        held += other.held
        confirmed += other.confirmed
        cancelled += other.cancelled
        expiring += other.expiring
        uncertain += other.uncertain
    }
}

/// Everything one event loop's connections measured in a phase. Touched only on its event loop.
final class Recorder {
    /// Latency per operation (µs), for answers with any HTTP status.
    var latency: [Histogram<UInt64>]
    /// Latency of every answer since the last progress tick.
    var interval = Latency.makeHistogram()
    var intervalRequests = 0
    var intervalErrors = 0
    /// Answers by operation and HTTP status.
    var statuses: [[Int: Int]]
    var errors: [ErrorKind: Int] = [:]
    var ledger: [ItemLedger]
    var jobs = 0
    /// Replays answered 201: the service created a second reservation for the same order.
    var replayCreated = 0
    /// Replays answered 200 without `Idempotent-Replayed: true`.
    var replayUnmarked = 0

    init(items: Int) {
        latency = Operation.allCases.map { _ in Latency.makeHistogram() }
        statuses = Operation.allCases.map { _ in [:] }
        ledger = Array(repeating: ItemLedger(), count: items)
    }

    func recordAnswer(_ operation: Operation, status: Int, latencyNanoseconds: UInt64, isError: Bool) {
        let micros = Latency.microseconds(latencyNanoseconds)
        latency[operation.rawValue].record(micros)
        interval.record(micros)
        intervalRequests += 1
        statuses[operation.rawValue][status, default: 0] += 1
        if isError {
            errors[.status, default: 0] += 1
            intervalErrors += 1
        }
    }

    func recordFailure(_ kind: ErrorKind) {
        errors[kind, default: 0] += 1
        intervalErrors += 1
    }

    /// Takes the counts since the last tick and starts a new interval.
    func takeInterval() -> IntervalSample {
        let sample = IntervalSample(requests: intervalRequests, errors: intervalErrors, histogram: interval)
        interval.reset()
        intervalRequests = 0
        intervalErrors = 0
        return sample
    }

    /// The phase totals, to be merged across event loops.
    func totals() -> RecorderTotals {
        RecorderTotals(
            latency: latency, statuses: statuses, errors: errors, ledger: ledger, jobs: jobs,
            replayCreated: replayCreated, replayUnmarked: replayUnmarked
        )
    }
}

/// One event loop's answers since the previous progress tick.
struct IntervalSample: Sendable {
    var requests: Int
    var errors: Int
    var histogram: Histogram<UInt64>

    mutating func add(_ other: IntervalSample) {
        requests += other.requests
        errors += other.errors
        histogram.add(other.histogram)
    }
}

/// A phase's totals (one event loop's, or merged).
struct RecorderTotals: Sendable {
    var latency: [Histogram<UInt64>]
    var statuses: [[Int: Int]]
    var errors: [ErrorKind: Int]
    var ledger: [ItemLedger]
    var jobs: Int
    var replayCreated: Int
    var replayUnmarked: Int

    var all: Histogram<UInt64> {
        var merged = Latency.makeHistogram()
        for histogram in latency { merged.add(histogram) }
        return merged
    }

    mutating func add(_ other: RecorderTotals) {
        for index in latency.indices { latency[index].add(other.latency[index]) }
        for index in statuses.indices { statuses[index].merge(other.statuses[index], uniquingKeysWith: +) }
        errors.merge(other.errors, uniquingKeysWith: +)
        for index in ledger.indices { ledger[index].add(other.ledger[index]) }
        jobs += other.jobs
        replayCreated += other.replayCreated
        replayUnmarked += other.replayUnmarked
    }
}
