import Foundation
import Histogram

/// Latency percentiles of a set of answers, in milliseconds.
public struct LatencySummary: Sendable, Codable, Equatable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var mean: Double

    public init(p50: Double, p90: Double, p99: Double, p999: Double, max: Double, mean: Double) {
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
        self.mean = mean
    }

    init(_ histogram: Histogram<UInt64>) {
        let ms = { (p: Double) in PhaseRunner.ms(histogram, p) }
        self.init(
            p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9),
            max: histogram.totalCount == 0 ? 0 : Double(histogram.max) / 1000,
            mean: histogram.totalCount == 0 ? 0 : (histogram.mean / 1000 * 1000).rounded() / 1000
        )
    }
}

/// One point of the percentile distribution: `percentile` of answers took at most `ms`.
public struct DistributionPoint: Sendable, Codable, Equatable {
    public var percentile: Double
    public var ms: Double

    public init(percentile: Double, ms: Double) {
        self.percentile = percentile
        self.ms = ms
    }

    /// Percentiles spaced evenly on the 1/(1−p) scale of HdrHistogram plots, 0 up to 99.999, then the maximum.
    static func points(_ histogram: Histogram<UInt64>) -> [DistributionPoint] {
        guard histogram.totalCount > 0 else { return [] }
        var points: [DistributionPoint] = []
        for step in 0...40 {
            let percentile = 100 * (1 - pow(10, -Double(step) / 8))
            points.append(DistributionPoint(percentile: (percentile * 10_000).rounded() / 10_000, ms: PhaseRunner.ms(histogram, percentile)))
        }
        points.append(DistributionPoint(percentile: 100, ms: Double(histogram.max) / 1000))
        return points
    }
}

/// One operation's answers in a phase.
public struct OperationReport: Sendable, Codable, Equatable {
    public var operation: String
    public var requests: Int
    public var latencyMs: LatencySummary
    /// Answers by HTTP status ("201": 123).
    public var statuses: [String: Int]
}

/// One step of a step run: the offered rate and what it got.
public struct StepReport: Sendable, Codable, Equatable {
    public var rate: Double
    public var achievedRate: Double
    public var requests: Int
    public var errors: Int
    public var p99Ms: Double
    public var held: Bool
}

/// What the harness did to the items of a phase, summed, and what the service showed after.
public struct StockSummary: Sendable, Codable, Equatable {
    public var bizId: String
    public var items: Int
    public var stockPerItem: Int64
    public var successes: Int64
    public var held: Int64
    public var confirmed: Int64
    public var cancelled: Int64
    public var expiring: Int64
    public var uncertain: Int64
    public var observedAvailable: Int64?
    public var observedReserved: Int64?
}

/// One measured phase: a target driven with one scenario and one setting.
public struct PhaseReport: Sendable, Codable, Equatable {
    /// "hot redis r1", "healthz redis".
    public var name: String
    public var target: String
    public var url: String
    public var scenario: Scenario
    public var round: Int?
    /// "closed", "open" or "step".
    public var mode: String
    /// The offered rate of an open-loop phase (jobs per second).
    public var rate: Double?
    public var connections: Int
    public var elapsedSeconds: Double
    /// HTTP requests answered (any status).
    public var requests: Int
    /// Jobs finished (orders, or health checks), answered or not.
    public var jobs: Int
    /// Answered requests per second over the phase.
    public var tps: Double
    public var latencyMs: LatencySummary
    public var operations: [OperationReport]
    /// Answers by HTTP status over all operations.
    public var statuses: [String: Int]
    /// Errors by kind (see `ErrorKind`); "status" counts answers with an unexpected status.
    public var errors: [String: Int]
    public var timeline: [TimelinePoint]
    public var distribution: [DistributionPoint]
    public var steps: [StepReport]?
    /// Step mode: the highest offered rate whose step held the p99 limit.
    public var heldRate: Double?
    public var stock: StockSummary?

    public var errorCount: Int { errors.values.reduce(0, +) }
}

/// A ratio between two phases' numbers, with the design's target where there is one.
public struct Comparison: Sendable, Codable, Equatable {
    public var name: String
    public var value: Double
    public var detail: String
    /// The design's bound (value must be ≥ it), if any.
    public var target: Double?

    public var met: Bool? { target.map { value >= $0 } }
}

/// The settings a run used, as given on the command line.
public struct RunSettings: Sendable, Codable, Equatable {
    public var scenario: Scenario
    public var mode: String
    public var connections: Int
    public var threads: Int
    public var durationSeconds: Double?
    public var requests: Int?
    public var rate: Double?
    public var stepStart: Double?
    public var stepAdd: Double?
    public var stepEverySeconds: Double?
    public var maxP99Ms: Double?
    public var items: Int
    public var zipfS: Double
    public var mix: String
    public var stock: Int64
    public var bizId: String
    public var rounds: Int
    public var healthz: Bool
    public var timeoutSeconds: Double
    public var drainSeconds: Double
    public var seed: UInt64
    public var targets: [Target]
}

/// A whole run: what the JSON result file holds and what the HTML report shows.
public struct RunReport: Sendable, Codable, Equatable {
    public var tool = "loadgen"
    public var formatVersion = 1
    public var startedAt: String
    public var finishedAt: String
    public var command: [String]
    public var settings: RunSettings
    public var phases: [PhaseReport]
    public var comparisons: [Comparison]
    public var checks: [CheckResult]
    /// False when any check failed.
    public var passed: Bool

    /// The JSON result file's content (sorted keys, indented, so two results diff well).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(contentsOf: Array("\n".utf8))
        return data
    }

    public static func decode(_ data: Data) throws -> RunReport {
        try JSONDecoder().decode(RunReport.self, from: data)
    }
}

extension PhaseReport {
    /// Builds the report of a measured phase.
    init(
        name: String, target: Target, scenario: Scenario, round: Int?, mode: LoadMode, connections: Int,
        measurement: PhaseMeasurement
    ) {
        let totals = measurement.totals
        let all = totals.all
        var statuses: [String: Int] = [:]
        var operations: [OperationReport] = []
        for operation in Operation.allCases {
            let counts = totals.statuses[operation.rawValue]
            let requests = counts.values.reduce(0, +)
            guard requests > 0 else { continue }
            let byStatus = Dictionary(uniqueKeysWithValues: counts.map { (String($0.key), $0.value) })
            statuses.merge(byStatus, uniquingKeysWith: +)
            operations.append(
                OperationReport(
                    operation: operation.name, requests: requests, latencyMs: LatencySummary(totals.latency[operation.rawValue]),
                    statuses: byStatus
                )
            )
        }
        let requests = Int(all.totalCount)
        self.init(
            name: name, target: target.name, url: target.url, scenario: scenario, round: round,
            mode: mode == .closed ? "closed" : "open", rate: { if case .open(let rate) = mode { rate } else { nil } }(),
            connections: connections, elapsedSeconds: (measurement.elapsedSeconds * 1000).rounded() / 1000,
            requests: requests, jobs: totals.jobs,
            tps: measurement.elapsedSeconds > 0 ? (Double(requests) / measurement.elapsedSeconds * 10).rounded() / 10 : 0,
            latencyMs: LatencySummary(all), operations: operations, statuses: statuses,
            errors: Dictionary(uniqueKeysWithValues: totals.errors.map { ($0.key.rawValue, $0.value) }),
            timeline: measurement.timeline, distribution: DistributionPoint.points(all), steps: nil, heldRate: nil,
            stock: nil
        )
    }
}
