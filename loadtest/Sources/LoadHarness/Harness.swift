import Foundation
import NIOCore
import NIOPosix

/// A validated run: what `loadgen`'s flags turn into.
public struct HarnessConfiguration: Sendable {
    /// The step search of `--step-start`: raise the open-loop rate until a step's p99 passes the limit.
    public struct StepPlan: Sendable, Equatable {
        public var start: Double
        public var add: Double
        public var every: Duration
        public var maxP99Ms: Double
        public var maxRate: Double

        public init(start: Double, add: Double, every: Duration, maxP99Ms: Double, maxRate: Double) {
            self.start = start
            self.add = add
            self.every = every
            self.maxP99Ms = maxP99Ms
            self.maxRate = maxRate
        }
    }

    public enum Mode: Sendable, Equatable {
        case closed
        case open(rate: Double)
        case step(StepPlan)

        var name: String {
            switch self {
            case .closed: "closed"
            case .open: "open"
            case .step: "step"
            }
        }
    }

    public var scenario: Scenario = .hot
    public var targets: [Target] = [Target(name: "127.0.0.1:8080", host: "127.0.0.1", port: 8080)]
    public var mode: Mode = .closed
    public var connections = 64
    public var threads = 2
    /// Phase length (closed and open loop); the whole step search's budget in step mode.
    public var duration: Duration?
    /// Jobs per phase (closed and open loop).
    public var requests: Int?
    public var items = 1
    public var zipfS = 1.1
    public var mix = LifecycleMix.standard
    public var stock: Int64 = 1_000_000_000
    /// The business line of the run; nil picks `lt<random>`.
    public var bizId: String?
    public var rounds = 1
    public var healthz = false
    public var timeout: Duration = .seconds(5)
    public var drain: Duration = .seconds(5)
    /// `inventoryd` to run as `reconcile --biz <bizId>` after each phase (same INVENTORY_* environment), or nil.
    public var reconcileCommand: String?
    /// Where the JSON and HTML files go; nil writes none.
    public var outputDirectory: String? = "loadtest/results"
    public var seed: UInt64 = 1
    public var command: [String] = []

    public init() {}
}

extension Harness {
    /// Runs `command reconcile --biz <biz>`: the service's own proof that Redis and MySQL agree on every item of
    /// the phase, work in flight included (exit 0 clean, 1 differences, 2 could not run).
    static func reconcile(_ command: String, biz: String, phase: String) -> CheckResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = ["reconcile", "--biz", biz]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            return CheckResult(phase: phase, name: "reconciler clean", passed: false, detail: "cannot run \(command): \(error)")
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("reconcile:") }
        return CheckResult(
            phase: phase, name: "reconciler clean", passed: process.terminationStatus == 0,
            detail: "exit \(process.terminationStatus): \(text.map(String.init) ?? String(decoding: data.prefix(300), as: UTF8.self))"
        )
    }
}

/// Runs a configured load test: sets stock, drives every phase, checks the stock, prints and writes the results.
public struct Harness: Sendable {
    public let configuration: HarnessConfiguration
    public let progress: any ProgressSink

    public init(configuration: HarnessConfiguration, progress: any ProgressSink = StandardErrorSink()) {
        self.configuration = configuration
        self.progress = progress
    }

    /// The outcome of `run()`: the report and the files written.
    public struct Outcome: Sendable {
        public var report: RunReport
        public var files: [String]
    }

    public func run() async throws -> Outcome {
        let config = configuration
        let group = MultiThreadedEventLoopGroup(numberOfThreads: config.threads)
        do {
            let outcome = try await run(on: group)
            try await group.shutdownGracefully()
            return outcome
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func run(on group: MultiThreadedEventLoopGroup) async throws -> Outcome {
        let config = configuration
        let started = Date()
        var generator = SplitMix64(seed: UInt64(started.timeIntervalSince1970 * 1e6) ^ UInt64(ProcessInfo.processInfo.processIdentifier))
        let runTag = String(generator.next() & 0xFF_FFFF_FFFF, radix: 16)
        let bizBase = config.bizId ?? "lt\(runTag)"
        let items = config.scenario.reservesStock ? config.items : 1
        let sampler = ZipfSampler(count: items, exponent: config.scenario == .hot ? 0 : config.zipfS)
        let runner = PhaseRunner(group: group, progress: progress, items: items)
        var addresses: [SocketAddress?] = []
        for target in config.targets {
            addresses.append(try? SocketAddress(ipAddress: target.connectHost, port: target.port))
        }

        var phases: [PhaseReport] = []
        var checks: [CheckResult] = []
        var phaseNumber = 0

        func plan(_ label: String, target index: Int, scenario: Scenario, biz: String, mode: LoadMode, duration: Duration?,
                  jobs: Int?) -> PhasePlan {
            phaseNumber += 1
            return PhasePlan(
                label: label, target: config.targets[index], address: addresses[index], scenario: scenario, bizId: biz,
                orderPrefix: "\(runTag)p\(phaseNumber)", connections: config.connections, mode: mode, duration: duration,
                jobs: jobs, timeout: config.timeout, sampler: sampler, mix: config.mix,
                seed: config.seed &+ UInt64(phaseNumber) &* 0xD1B5_4A32_D192_ED03
            )
        }

        if config.healthz {
            for (index, target) in config.targets.enumerated() {
                // Same length as the measured phases; a step run's --duration is its budget, so 10s there.
                let byCount = config.mode == .closed && config.requests != nil
                let phasePlan = plan(
                    config.targets.count > 1 ? "healthz \(target.name)" : "healthz", target: index, scenario: .healthz,
                    biz: bizBase, mode: .closed, duration: byCount ? config.duration : (stepFreeDuration ?? .seconds(10)),
                    jobs: byCount ? config.requests : nil
                )
                let measurement = try await runner.run(phasePlan)
                phases.append(
                    PhaseReport(
                        name: phasePlan.label, target: target, scenario: .healthz, round: nil, mode: .closed,
                        connections: config.connections, measurement: measurement
                    )
                )
            }
        }

        let measuredCount = config.rounds * config.targets.count
        var measuredIndex = 0
        for round in 1...config.rounds {
            for (index, target) in config.targets.enumerated() {
                measuredIndex += 1
                let biz = measuredCount == 1 ? bizBase : "\(bizBase)-\(measuredIndex)"
                var label = config.scenario.rawValue
                if config.targets.count > 1 { label += " \(target.name)" }
                if config.rounds > 1 { label += " r\(round)" }
                let setup = SetupClient(group: group, target: target, address: addresses[index], timeout: config.timeout)
                if config.scenario.reservesStock {
                    progress.line("[\(label)] setting stock \(config.stock) on \(items) item(s) of bizId \(biz)")
                    let stock = config.stock
                    _ = try await setup.forEach(items, parallel: 8) { connection, item in
                        try await connection.setStock(biz: biz, sku: item + 1, stock: stock)
                    }
                }
                var report: PhaseReport
                var totals: RecorderTotals
                switch config.mode {
                case .closed, .open:
                    let mode: LoadMode = { if case .open(let rate) = config.mode { .open(rate: rate) } else { .closed } }()
                    let phasePlan = plan(
                        label, target: index, scenario: config.scenario, biz: biz, mode: mode, duration: config.duration,
                        jobs: config.requests
                    )
                    let measurement = try await runner.run(phasePlan)
                    totals = measurement.totals
                    report = PhaseReport(
                        name: label, target: target, scenario: config.scenario, round: round, mode: mode,
                        connections: config.connections, measurement: measurement
                    )
                case .step(let steps):
                    (report, totals) = try await runSteps(steps, label: label, target: target, round: round) { rate in
                        plan(
                            "\(label) @\(Format.rate(rate))/s", target: index, scenario: config.scenario, biz: biz,
                            mode: .open(rate: rate), duration: steps.every, jobs: nil
                        )
                    } run: { try await runner.run($0) }
                }
                report.round = config.rounds > 1 ? round : nil
                if config.scenario.reservesStock {
                    var ledgers = totals.ledger
                    for index in ledgers.indices { ledgers[index].stock = config.stock }
                    let (observed, settledAfter) = try await observe(setup, biz: biz, ledgers: ledgers)
                    checks += StockChecks.evaluate(
                        phase: label, ledgers: ledgers, observed: observed, replayCreated: totals.replayCreated,
                        replayUnmarked: totals.replayUnmarked, drained: settledAfter
                    )
                    if let command = config.reconcileCommand {
                        checks.append(Self.reconcile(command, biz: biz, phase: label))
                    }
                    report.stock = StockSummary(
                        bizId: biz, items: items, stockPerItem: config.stock,
                        successes: ledgers.reduce(0) { $0 + $1.successes }, held: ledgers.reduce(0) { $0 + $1.held },
                        confirmed: ledgers.reduce(0) { $0 + $1.confirmed }, cancelled: ledgers.reduce(0) { $0 + $1.cancelled },
                        expiring: ledgers.reduce(0) { $0 + $1.expiring }, uncertain: ledgers.reduce(0) { $0 + $1.uncertain },
                        observedAvailable: observed.reduce(0) { $0 + $1.available },
                        observedReserved: observed.reduce(0) { $0 + $1.reserved }
                    )
                }
                phases.append(report)
            }
        }

        let finished = Date()
        let report = RunReport(
            startedAt: Format.iso(started), finishedAt: Format.iso(finished), command: config.command,
            settings: settings(bizBase: bizBase, items: items), phases: phases,
            comparisons: Self.comparisons(phases, scenario: config.scenario, targets: config.targets),
            checks: checks, passed: checks.allSatisfy(\.passed)
        )
        var files: [String] = []
        if let directory = config.outputDirectory {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let base = (directory as NSString).appendingPathComponent("\(Format.stamp(started))-\(config.scenario.rawValue)")
            try report.json().write(to: URL(fileURLWithPath: base + ".json"))
            try Data(HTMLReport.render(report).utf8).write(to: URL(fileURLWithPath: base + ".html"))
            files = [base + ".json", base + ".html"]
        }
        return Outcome(report: report, files: files)
    }

    /// The healthz phase's length in a step run: the step budget is not a phase length.
    private var stepFreeDuration: Duration? {
        if case .step = configuration.mode { return nil }
        return configuration.duration
    }

    /// Reads every item until reserved shows what the ledger expects (expiring holds need the sweeper), or the drain
    /// time is up; returns the last reading and, when it settled, after how long.
    private func observe(_ setup: SetupClient, biz: String, ledgers: [ItemLedger]) async throws -> ([StockObservation], Double?) {
        let begin = monotonicNow()
        let drainEnd = begin + UInt64(configuration.drain.nanoseconds)
        while true {
            let levels = try await setup.forEach(ledgers.count, parallel: 8) { connection, item in
                try await connection.stock(biz: biz, sku: item + 1)
            }
            let observed = levels.map { StockObservation(available: $0.available, reserved: $0.reserved) }
            let now = monotonicNow()
            if StockChecks.settled(ledgers, observed) { return (observed, Double(now - begin) / 1e9) }
            if now >= drainEnd { return (observed, nil) }
            try await Task.sleep(nanoseconds: Swift.min(250_000_000, drainEnd - now))
        }
    }

    /// The step search: open-loop steps at a rising rate until one misses the p99 limit (or errors above 1%, or the
    /// achieved rate below 90% of the offered one), the rate limit or the time budget is reached.
    private func runSteps(
        _ steps: HarnessConfiguration.StepPlan, label: String, target: Target, round: Int,
        plan: (Double) -> PhasePlan, run: (PhasePlan) async throws -> PhaseMeasurement
    ) async throws -> (PhaseReport, RecorderTotals) {
        let budget = configuration.duration ?? .seconds(300)
        var rate = steps.start
        var spent = Duration.zero
        var stepReports: [StepReport] = []
        var combined: PhaseMeasurement?
        var heldRate: Double?
        while rate <= steps.maxRate && spent + steps.every <= budget {
            let measurement = try await run(plan(rate))
            spent += steps.every
            let histogram = measurement.totals.all
            let requests = Int(histogram.totalCount)
            let errors = measurement.totals.errors.values.reduce(0, +)
            let p99 = PhaseRunner.ms(histogram, 99)
            let achieved = measurement.elapsedSeconds > 0 ? Double(measurement.totals.jobs) / measurement.elapsedSeconds : 0
            let held = requests > 0 && p99 <= steps.maxP99Ms && Double(errors) <= 0.01 * Double(requests + errors)
                && achieved >= 0.9 * rate
            stepReports.append(
                StepReport(
                    rate: rate, achievedRate: (achieved * 10).rounded() / 10, requests: requests, errors: errors,
                    p99Ms: p99, held: held
                )
            )
            progress.line(
                "[\(label)] step \(Format.rate(rate))/s: achieved \(Format.rate(achieved))/s, p99 \(Format.ms(p99)), "
                    + "errors \(errors) → \(held ? "held" : "missed")"
            )
            if var merged = combined {
                let offset = merged.timeline.last?.t ?? 0
                merged.timeline += measurement.timeline.map { point in
                    var shifted = point
                    shifted.t = ((point.t + offset) * 1000).rounded() / 1000
                    return shifted
                }
                merged.totals.add(measurement.totals)
                merged.elapsedSeconds += measurement.elapsedSeconds
                combined = merged
            } else {
                combined = measurement
            }
            guard held else { break }
            heldRate = rate
            rate += steps.add
        }
        guard let combined else { throw SetupError("the step budget (--duration) is shorter than one step (--step-every)") }
        var report = PhaseReport(
            name: label, target: target, scenario: configuration.scenario, round: round, mode: .closed,
            connections: configuration.connections, measurement: combined
        )
        report.mode = "step"
        report.steps = stepReports
        report.heldRate = heldRate
        return (report, combined.totals)
    }

    private func settings(bizBase: String, items: Int) -> RunSettings {
        let config = configuration
        var settings = RunSettings(
            scenario: config.scenario, mode: config.mode.name, connections: config.connections, threads: config.threads,
            durationSeconds: config.duration?.seconds, requests: config.requests, rate: nil, stepStart: nil, stepAdd: nil,
            stepEverySeconds: nil, maxP99Ms: nil, items: items, zipfS: config.zipfS, mix: config.mix.description,
            stock: config.stock, bizId: bizBase, rounds: config.rounds, healthz: config.healthz,
            timeoutSeconds: config.timeout.seconds, drainSeconds: config.drain.seconds, seed: config.seed,
            targets: config.targets
        )
        switch config.mode {
        case .closed: break
        case .open(let rate): settings.rate = rate
        case .step(let steps):
            settings.stepStart = steps.start
            settings.stepAdd = steps.add
            settings.stepEverySeconds = steps.every.seconds
            settings.maxP99Ms = steps.maxP99Ms
        }
        return settings
    }

    /// Ratios between phases: each target's scenario rate against its /healthz rate (design: ≥ 0.55 for the hot item
    /// on the first target),
    /// and the first target against each other one (design: redis-first ≥ 3× the database-only engine).
    static func comparisons(_ phases: [PhaseReport], scenario: Scenario, targets: [Target]) -> [Comparison] {
        var comparisons: [Comparison] = []
        func measured(_ target: Target) -> [PhaseReport] {
            phases.filter { $0.target == target.name && $0.scenario == scenario && scenario != .healthz }
        }
        /// Mean TPS over rounds; a step run compares the highest rate that held.
        func rate(_ phases: [PhaseReport]) -> Double? {
            let values = phases.compactMap { $0.steps != nil ? $0.heldRate : $0.tps }
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
        for target in targets {
            guard let health = phases.first(where: { $0.target == target.name && $0.scenario == .healthz }), health.tps > 0,
                let mean = rate(measured(target))
            else { continue }
            comparisons.append(
                Comparison(
                    name: "\(scenario.rawValue)/healthz \(target.name)", value: (mean / health.tps * 1000).rounded() / 1000,
                    detail: "\(Format.rate(mean)) / \(Format.rate(health.tps)) req/s",
                    // The design's bound is for the service under test (the first target), not a baseline.
                    target: scenario == .hot && target == targets.first ? 0.55 : nil
                )
            )
        }
        if targets.count > 1, let first = targets.first, let firstRate = rate(measured(first)) {
            for other in targets.dropFirst() {
                let others = measured(other)
                guard let otherRate = rate(others), otherRate > 0 else { continue }
                let designTarget: Double? = first.name == "redis" && other.name == "db" && scenario == .hot ? 3 : nil
                comparisons.append(
                    Comparison(
                        name: "\(first.name)/\(other.name) TPS", value: (firstRate / otherRate * 1000).rounded() / 1000,
                        detail: "\(Format.rate(firstRate)) / \(Format.rate(otherRate)) req/s (mean of rounds)",
                        target: designTarget
                    )
                )
                let firstP99 = measured(first).map(\.latencyMs.p99).reduce(0, +) / Double(max(measured(first).count, 1))
                let otherP99 = others.map(\.latencyMs.p99).reduce(0, +) / Double(max(others.count, 1))
                if firstP99 > 0 {
                    comparisons.append(
                        Comparison(
                            name: "\(other.name)/\(first.name) p99", value: (otherP99 / firstP99 * 1000).rounded() / 1000,
                            detail: "\(Format.ms(otherP99)) / \(Format.ms(firstP99)) (mean of rounds)", target: nil
                        )
                    )
                }
            }
        }
        return comparisons
    }
}
