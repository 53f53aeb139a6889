import ArgumentParser
import Foundation
import Inventory
import ModelCheck

/// `modelcheck`: seeded random programs against the real engine and the reference model (see README, "Model check").
@main
struct ModelCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modelcheck",
        abstract: "Runs seeded random programs of calls and faults against the real stores and a reference model."
    )

    @Option(help: "The first seed (a failing run prints the seed that replays it).")
    var seed: UInt64 = 1

    @Option(help: "How many seeds to run, from --seed on.")
    var seeds = 1

    @Option(help: "Steps per program.")
    var steps = 300

    @Option(help: "Durability mode: async or sync.")
    var durability = "async"

    @Flag(help: "Run on the Redis Cluster of scripts/cluster.sh instead of the single Redis.")
    var cluster = false

    @Flag(help: "The first model check's programs: no second instance, no MariaDB outages (replays its seeds).")
    var basic = false

    @Flag(help: "Print the program of --seed (its first --steps steps) and stop, without running it.")
    var print = false

    func run() async throws {
        guard let mode = Durability(rawValue: durability) else { throw ValidationError("durability is async or sync") }
        if print {
            say("\(Program.generate(seed: seed, count: steps, features: basic ? [] : .all))")
            return
        }
        let clock = ContinuousClock()
        let start = clock.now
        var done = 0
        for offset in 0..<seeds {
            let current = seed &+ UInt64(offset)
            do {
                try await ModelCheck.check(
                    seed: current, steps: steps, durability: mode, cluster: cluster, features: basic ? [] : .all
                )
            } catch let counterexample as ModelCheck.Counterexample {
                say("\(counterexample)")
                throw ExitCode(1)
            }
            done += steps
            let seconds = Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds)
            say(
                "seed \(current): \(steps) steps passed (\(done) in all, \(String(format: "%.0f", Double(done) / max(seconds, 0.001))) steps/s)"
            )
        }
    }
}

/// One line to standard output at once: progress shows while the run goes on, also when output goes to a file.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
