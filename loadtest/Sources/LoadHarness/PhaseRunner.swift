import Foundation
import Histogram
import NIOCore
import NIOPosix

/// How requests arrive: as fast as answers come back, or at a fixed rate.
public enum LoadMode: Sendable, Equatable {
    /// Each connection sends its next job as soon as the previous one is answered.
    case closed
    /// Jobs arrive at `rate` per second across all connections, whatever the service does (see `OpenLoopPacer`).
    case open(rate: Double)
}

/// Everything one phase (one target, one scenario, one setting) needs to run.
struct PhasePlan: Sendable {
    var label: String
    var target: Target
    var address: SocketAddress?
    var scenario: Scenario
    var bizId: String
    var orderPrefix: String
    var connections: Int
    var mode: LoadMode
    var duration: Duration?
    /// Jobs in total (an order, or a health check); nil when the duration bounds the phase.
    var jobs: Int?
    var timeout: Duration
    var sampler: ZipfSampler
    var mix: LifecycleMix
    var seed: UInt64
}

/// One second (or the last, shorter, interval) of a phase.
public struct TimelinePoint: Sendable, Codable, Equatable {
    /// Seconds since the phase started, at the end of this interval.
    public var t: Double
    public var requests: Int
    public var rate: Double
    public var errors: Int
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var maxMs: Double
}

/// What a phase measured.
struct PhaseMeasurement: Sendable {
    var elapsedSeconds: Double
    var totals: RecorderTotals
    var timeline: [TimelinePoint]
}

/// Where progress lines go (stderr in the command, nowhere in tests).
public protocol ProgressSink: Sendable {
    func line(_ text: String)
}

/// Writes progress to standard error.
public struct StandardErrorSink: ProgressSink {
    public init() {}
    public func line(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
}

/// Discards progress.
public struct SilentSink: ProgressSink {
    public init() {}
    public func line(_ text: String) {}
}

/// The connections of one event loop in a phase, with the recorder they share and the timeout ticker.
final class LoopWorkers {
    let recorder: Recorder
    var connections: [LoadConnection] = []
    var ticker: RepeatedTask?

    init(recorder: Recorder) { self.recorder = recorder }
}

/// Runs phases on an event loop group.
struct PhaseRunner: Sendable {
    let group: MultiThreadedEventLoopGroup
    let progress: any ProgressSink
    let items: Int

    func run(_ plan: PhasePlan) async throws -> PhaseMeasurement {
        let loops = Array(group.makeIterator())
        let items = self.items
        var bound: [(EventLoop, NIOLoopBound<LoopWorkers>)] = []
        var opened: [EventLoopFuture<Void>] = []
        for (loopIndex, loop) in loops.enumerated() {
            let (workers, open) = try await loop.submit { () -> (NIOLoopBound<LoopWorkers>, [EventLoopFuture<Void>]) in
                let workers = LoopWorkers(recorder: Recorder(items: items))
                for index in stride(from: loopIndex, to: plan.connections, by: loops.count) {
                    workers.connections.append(Self.makeConnection(plan, index: index, loop: loop, recorder: workers.recorder))
                }
                return (NIOLoopBound(workers, eventLoop: loop), workers.connections.map { $0.open() })
            }.get()
            bound.append((loop, workers))
            opened += open
        }
        try await EventLoopFuture.andAllComplete(opened, on: loops[0]).get()

        let start = monotonicNow() + 1_000_000
        var finished: [EventLoopFuture<Void>] = []
        for (loop, workers) in bound {
            finished += try await loop.submit { () -> [EventLoopFuture<Void>] in
                let local = workers.value
                let timeoutCheck = TimeAmount.nanoseconds(Swift.max(10_000_000, Swift.min(100_000_000, plan.timeout.nanoseconds / 4)))
                local.ticker = loop.scheduleRepeatedTask(initialDelay: timeoutCheck, delay: timeoutCheck) { _ in
                    let now = monotonicNow()
                    for connection in workers.value.connections { connection.checkTimeout(now: now) }
                }
                for connection in local.connections { connection.start(at: start) }
                return local.connections.map { $0.done.futureResult }
            }.get()
        }

        let allDone = EventLoopFuture.andAllComplete(finished, on: loops[0])
        let workersByLoop = bound
        let progress = self.progress
        let label = plan.label
        let timeline = try await withThrowingTaskGroup(of: [TimelinePoint]?.self) { group in
            group.addTask {
                try await allDone.get()
                return nil
            }
            group.addTask {
                var points: [TimelinePoint] = []
                var last = start
                var tick = 1
                while true {
                    let wake = start + UInt64(tick) * 1_000_000_000
                    let now = monotonicNow()
                    if wake > now {
                        do { try await Task.sleep(nanoseconds: wake - now) } catch { return points }
                    }
                    let point = try await Self.sample(workersByLoop, since: last, start: start)
                    last = monotonicNow()
                    points.append(point)
                    progress.line(Self.progressLine(label, point))
                    tick += 1
                }
            }
            var timeline: [TimelinePoint] = []
            while let result = try await group.next() {
                if let points = result {
                    timeline = points
                } else {
                    group.cancelAll()
                }
            }
            return timeline
        }
        let end = monotonicNow()
        var points = timeline
        // The last, partial interval: kept when it is long enough for its rate to mean something (its requests are
        // in the totals either way).
        let tailStart = start + UInt64(points.count) * 1_000_000_000
        let tail = try await Self.sample(bound, since: tailStart, start: start)
        if (tail.requests > 0 || tail.errors > 0) && end >= tailStart + 500_000_000 { points.append(tail) }

        var totals: RecorderTotals?
        for (loop, workers) in bound {
            let part = try await loop.submit {
                workers.value.ticker?.cancel()
                return workers.value.recorder.totals()
            }.get()
            if totals == nil { totals = part } else { totals!.add(part) }
        }
        return PhaseMeasurement(elapsedSeconds: Double(end - start) / 1e9, totals: totals!, timeline: points)
    }

    private static func makeConnection(_ plan: PhasePlan, index: Int, loop: EventLoop, recorder: Recorder) -> LoadConnection {
        let jobs = plan.jobs.map { $0 / plan.connections + (index < $0 % plan.connections ? 1 : 0) }
        let factory = JobFactory(
            scenario: plan.scenario, sampler: plan.sampler, mix: plan.mix, orderPrefix: "\(plan.orderPrefix)c\(index)-",
            seed: plan.seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15
        )
        let core = DriverCore(
            mode: plan.mode, index: index, connections: plan.connections, jobs: jobs,
            duration: plan.duration.map { UInt64($0.nanoseconds) }, factory: factory, recorder: recorder
        )
        // Connections spread over the target's instances, round robin (the first instance's address is resolved).
        let instances = plan.target.instances
        let instance = instances[index % instances.count]
        let address = index % instances.count == 0 ? plan.address : try? SocketAddress(ipAddress: instance.connectHost, port: instance.port)
        return LoadConnection(
            loop: loop, address: address, target: instance,
            renderer: RequestRenderer(target: instance, bizId: plan.bizId), timeout: plan.timeout, core: core
        )
    }

    /// Takes every loop's interval counts and merges them into one timeline point.
    private static func sample(_ bound: [(EventLoop, NIOLoopBound<LoopWorkers>)], since: UInt64, start: UInt64) async throws -> TimelinePoint {
        var merged: IntervalSample?
        for (loop, workers) in bound {
            let part = try await loop.submit { workers.value.recorder.takeInterval() }.get()
            if merged == nil { merged = part } else { merged!.add(part) }
        }
        let now = monotonicNow()
        let seconds = Swift.max(Double(now - Swift.min(since, now)) / 1e9, 1e-3)
        let sample = merged!
        let histogram = sample.histogram
        return TimelinePoint(
            t: (Double(now - Swift.min(start, now)) / 1e9 * 1000).rounded() / 1000,
            requests: sample.requests, rate: Double(sample.requests) / seconds, errors: sample.errors,
            p50Ms: Self.ms(histogram, 50), p90Ms: Self.ms(histogram, 90), p99Ms: Self.ms(histogram, 99),
            maxMs: histogram.totalCount == 0 ? 0 : Double(histogram.max) / 1000
        )
    }

    static func ms(_ histogram: Histogram<UInt64>, _ percentile: Double) -> Double {
        histogram.totalCount == 0 ? 0 : Double(histogram.valueAtPercentile(percentile)) / 1000
    }

    static func progressLine(_ label: String, _ point: TimelinePoint) -> String {
        let elapsed = String(format: "%5.0fs", point.t)
        let rate = Format.grouped(Int(point.rate.rounded()))
        return "[\(label)] \(elapsed)  \(rate) req/s  p99 \(Format.ms(point.p99Ms))  errors \(point.errors)"
    }
}
