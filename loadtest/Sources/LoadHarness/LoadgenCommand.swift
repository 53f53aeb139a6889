import ArgumentParser
import Foundation

extension Scenario: ExpressibleByArgument {}

/// `loadgen`: the command line of the harness. Parsing and validation only; `Harness` does the work.
public struct LoadgenCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "loadgen",
        abstract: "Load-test the inventory service: TPS and latency percentiles, with no-oversell checks.",
        discussion: """
            Closed loop by default (-c connections, each one request at a time, like wrk); --rate for an open loop \
            measured from the intended send time; --step-start for a step search of the highest rate that keeps p99 \
            under --max-p99. Every run is bounded by --duration or --requests. Results go to --out as JSON and HTML.
            """
    )

    @Option(help: "hot | zipf | lifecycle | retry | multi | mixed | healthz.")
    var scenario: Scenario = .hot

    @Option(name: [.customShort("c"), .long], help: "Connections, each with one request in flight.")
    var connections = 64

    @Option(name: [.customShort("t"), .long], help: "Event-loop threads of the harness.")
    var threads = 2

    @Option(name: [.customShort("d"), .long], help: "Length of each phase (e.g. 15s, 500ms, 2m); the budget of a step run (default 300s there).")
    var duration: String?

    @Option(name: [.customShort("n"), .long], help: "Jobs per phase (orders, or health checks), shared over the connections.")
    var requests: Int?

    @Option(help: "Open loop: jobs per second over all connections.")
    var rate: Double?

    @Option(name: .customLong("step-start"), help: "Step mode: the first rate (jobs/s).")
    var stepStart: Double?

    @Option(name: .customLong("step-add"), help: "Step mode: added to the rate at every step (default: --step-start).")
    var stepAdd: Double?

    @Option(name: .customLong("step-every"), help: "Step mode: length of a step.")
    var stepEvery = "5s"

    @Option(name: .customLong("max-p99"), help: "Step mode: a step holds while its p99 is at most this.")
    var maxP99 = "10ms"

    @Option(name: .customLong("step-max-rate"), help: "Step mode: stop before offering more than this.")
    var stepMaxRate: Double = 1_000_000

    @Option(help: "Items the scenario spreads over (default 1; 1000 for zipf and multi).")
    var items: Int?

    @Option(name: .customLong("zipf-s"), help: "Zipf exponent of the item choice (0 = uniform).")
    var zipfS = 1.1

    @Option(help: "Lifecycle: weights of confirm, cancel and expire (expire reserves with ttlSeconds 1).")
    var mix = "confirm=60,cancel=30,expire=10"

    @Option(help: "Stock set on every item before a phase (small, e.g. 1000, to watch the no-oversell check).")
    var stock: Int64 = 1_000_000_000

    @Option(help: "bizId of the run (default lt<random>; with several targets or rounds each phase appends -<n>).")
    var biz: String?

    @Option(name: .customLong("target"), help: "Base URL or name=URL (default http://127.0.0.1:8080); name=URL1,URL2 spreads the connections over instances of one service; repeat to compare targets: redis=URL --target db=URL.")
    var targets: [String] = []

    @Option(help: "With several targets: run them alternately this many times (A B A B for 2).")
    var rounds = 1

    @Flag(help: "First run a GET /healthz closed-loop phase on each target and print the scenario/healthz ratio.")
    var healthz = false

    @Option(help: "A request without a complete answer after this is an error (timeout) and its connection is reopened.")
    var timeout = "5s"

    @Option(help: "After a phase, wait up to this long for reserved to settle (expiring holds need the sweeper).")
    var drain = "5s"

    @Option(name: .customLong("reconcile-with"), help: "Path of inventoryd: after each phase run `inventoryd reconcile --biz <bizId>` (same INVENTORY_* environment) and require it clean.")
    var reconcileWith: String?

    @Option(help: "Directory of the JSON and HTML results.")
    var out = "loadtest/results"

    @Flag(name: .customLong("no-files"), help: "Write no result files.")
    var noFiles = false

    @Option(help: "Seed of the item and lifecycle choices.")
    var seed: UInt64 = 1

    @Flag(name: .customLong("allow-remote"), help: "Allow a target that is not a loopback address.")
    var allowRemote = false

    @Flag(name: [.customShort("q"), .long], help: "No progress lines.")
    var quiet = false

    public init() {}

    /// Turns the flags into a run configuration, or says what is wrong with them.
    public func makeConfiguration(command: [String] = []) throws -> HarnessConfiguration {
        var config = HarnessConfiguration()
        config.command = command
        config.scenario = scenario
        guard (1...10_000).contains(connections) else { throw ValidationError("-c must be 1...10000") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
        config.connections = connections
        config.threads = threads

        config.duration = try duration.map { try Self.duration($0, "--duration") }
        if let requests {
            guard requests >= 1 else { throw ValidationError("--requests must be at least 1") }
            config.requests = requests
        }
        if rate != nil && stepStart != nil { throw ValidationError("--rate and --step-start exclude each other") }
        if let rate {
            guard rate > 0 else { throw ValidationError("--rate must be positive") }
            config.mode = .open(rate: rate)
        }
        if let stepStart {
            guard stepStart > 0 else { throw ValidationError("--step-start must be positive") }
            let add = stepAdd ?? stepStart
            guard add > 0 else { throw ValidationError("--step-add must be positive") }
            let every = try Self.duration(stepEvery, "--step-every")
            guard every > .zero else { throw ValidationError("--step-every must be positive") }
            let limit = try Self.duration(maxP99, "--max-p99")
            guard requests == nil else { throw ValidationError("a step run is bounded by --duration, not --requests") }
            config.mode = .step(.init(start: stepStart, add: add, every: every, maxP99Ms: limit.seconds * 1000, maxRate: stepMaxRate))
        } else if stepAdd != nil {
            throw ValidationError("--step-add needs --step-start")
        }
        if case .step = config.mode {} else if config.duration == nil && config.requests == nil {
            config.duration = .seconds(10)
        }
        if let duration = config.duration, duration <= .zero { throw ValidationError("--duration must be positive") }

        let itemCount = scenario == .hot ? 1 : (items ?? scenario.defaultItems)
        if scenario == .hot, let items, items != 1 { throw ValidationError("the hot scenario uses one item; use zipf for more") }
        guard (1...1_000_000).contains(itemCount) else { throw ValidationError("--items must be 1...1000000") }
        if scenario == .multi && itemCount < 2 { throw ValidationError("multi needs --items of at least 2") }
        config.items = itemCount
        guard zipfS >= 0 && zipfS <= 10 else { throw ValidationError("--zipf-s must be 0...10") }
        config.zipfS = zipfS
        guard let parsedMix = LifecycleMix.parse(mix) else {
            throw ValidationError("--mix must look like confirm=60,cancel=30,expire=10 (non-negative weights, some positive)")
        }
        config.mix = parsedMix
        guard stock >= 0 else { throw ValidationError("--stock must be at least 0") }
        config.stock = stock
        if let biz {
            guard (1...28).contains(biz.count), biz.allSatisfy({ ("a"..."z").contains($0) || $0.isNumber || $0 == "_" || $0 == "-" }),
                biz.allSatisfy(\.isASCII)
            else { throw ValidationError("--biz must be 1-28 of a-z 0-9 _ - (the harness may append -<n>)") }
            config.bizId = biz
        }

        if !targets.isEmpty {
            var parsed: [Target] = []
            for spec in targets {
                do { parsed.append(try Target.parse(spec)) } catch { throw ValidationError(error.description) }
            }
            guard Set(parsed.map(\.name)).count == parsed.count else { throw ValidationError("target names must differ") }
            config.targets = parsed
        }
        for target in config.targets where !target.isLoopback && !allowRemote {
            throw ValidationError(
                "\(target.url) is not a loopback address; load tests aim at this machine only (--allow-remote to override)"
            )
        }
        guard (1...100).contains(rounds) else { throw ValidationError("--rounds must be 1...100") }
        config.rounds = rounds
        config.healthz = healthz
        config.timeout = try Self.duration(timeout, "--timeout")
        guard config.timeout > .zero else { throw ValidationError("--timeout must be positive") }
        config.drain = try Self.duration(drain, "--drain")
        config.reconcileCommand = reconcileWith
        config.outputDirectory = noFiles ? nil : out
        config.seed = seed
        return config
    }

    private static func duration(_ text: String, _ flag: String) throws -> Duration {
        guard let value = DurationText.parse(text) else { throw ValidationError("\(flag): not a duration: \(text) (e.g. 15s, 500ms)") }
        return value
    }

    public func validate() throws { _ = try makeConfiguration() }

    public func run() async throws {
        let config = try makeConfiguration(command: ["loadgen"] + CommandLine.arguments.dropFirst())
        let harness = Harness(configuration: config, progress: quiet ? SilentSink() : StandardErrorSink())
        let outcome: Harness.Outcome
        do {
            outcome = try await harness.run()
        } catch {
            // Not a measurement: the service did not answer, a stock PUT was refused, a file could not be written.
            FileHandle.standardError.write(Data("loadgen: \(error)\n".utf8))
            throw ExitCode(2)
        }
        print(TextReport.render(outcome.report, files: outcome.files), terminator: "")
        if !outcome.report.passed { throw ExitCode(1) }
    }
}
