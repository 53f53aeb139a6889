import FaultSuite
import Foundation
import Inventory
import InventoryTestSupport

/// Runs seeded programs, each in a business of its own on the shared servers, and shrinks a failing one to a
/// shorter program that still fails, to print with its seed.
public enum ModelCheck {
    /// A failing program: its seed, the shortest program found that still fails, and why.
    public struct Counterexample: Error, Sendable, CustomStringConvertible {
        public let seed: UInt64
        public let steps: Int
        public let failure: Driver.Failure
        public let program: Program
        /// The options that replay it besides seed and steps (`--cluster`, `--durability sync`).
        public let options: String

        public var description: String {
            """
            model check failed: seed \(seed) (\(steps) steps); replay with `modelcheck --seed \(seed) --steps \(steps)\(options)`
            \(failure)
            shortest program found that fails (\(program.steps.count) steps):
            \(program)
            """
        }
    }

    /// Runs one program in fresh stores; nil when every check held.
    public static func failure(
        of program: Program, durability: Durability = .async, cluster: Bool = TestStores.clusterByDefault
    ) async throws -> Driver.Failure? {
        // MariaDB behind a proxy only when the program takes it down (the proxy costs every query a hop).
        var proxy: FaultProxy?
        if program.steps.contains(.fault(.mysqlDown)) {
            let upstream = TestStores.mysqlConfiguration(ProcessInfo.processInfo.environment)
            proxy = try await FaultProxy.start(upstreamHost: upstream.host, upstreamPort: upstream.port)
        }
        defer { if let proxy { Task { await proxy.close() } } }
        // A Redis (or cluster) of the program's own when it kills or fills Redis, its append-only file fsync'd at every
        // write.
        var ownRedis: PrivateRedis?
        var ownDirectory: String?
        if program.ownsRedis {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("modelcheck-redis-\(UUID().uuidString)").path
            ownDirectory = directory
            let redis: PrivateRedis
            do {
                redis = try PrivateRedis(directory: directory, cluster: cluster, appendfsync: "always")
            } catch {
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
            ownRedis = redis
            do {
                try await redis.start()
            } catch {
                // (The nodes already started must not outlive a cluster that never got ready.)
                await stop(redis, directory)
                throw error
            }
        }
        do {
            let failure = try await run(program, durability: durability, cluster: cluster, proxy: proxy, ownRedis: ownRedis)
            await stop(ownRedis, ownDirectory)
            return failure
        } catch {
            await stop(ownRedis, ownDirectory)
            throw error
        }
    }

    private static func stop(_ redis: PrivateRedis?, _ directory: String?) async {
        await redis?.shutdown()
        if let directory { try? FileManager.default.removeItem(atPath: directory) }
    }

    private static func run(
        _ program: Program, durability: Durability, cluster: Bool, proxy: FaultProxy?, ownRedis: PrivateRedis?
    ) async throws -> Driver.Failure? {
        try await TestStores.with(
            redisPort: cluster ? nil : ownRedis?.port, mysqlPort: proxy?.port, durability: durability, cluster: cluster,
            clusterSeeds: cluster ? ownRedis?.ports.map { "127.0.0.1:\($0)" } : nil
        ) { [proxy, ownRedis] stores in
            do {
                try await Driver(stores: stores, mysqlProxy: proxy, ownRedis: ownRedis).run(program)
                return nil
            } catch let failure as Driver.Failure {
                if ProcessInfo.processInfo.environment["MODELCHECK_DUMP"] == "1" {
                    FileHandle.standardError.write(Data("model check: \(failure)\n".utf8))
                    FileHandle.standardError.write(Data(await Driver.dump(stores).utf8))
                }
                return failure
            }
        }
    }

    /// Runs the program of `seed`; on a failure, shrinks it and throws the counterexample.
    public static func check(
        seed: UInt64, steps: Int, durability: Durability = .async, cluster: Bool = TestStores.clusterByDefault,
        features: Features = .all, shrinkBudget: Int = 60
    ) async throws {
        let program = Program.generate(seed: seed, count: steps, features: features)
        guard let failure = try await failure(of: program, durability: durability, cluster: cluster) else { return }
        // Shrinking runs the program up to `shrinkBudget` times more: say what failed first.
        FileHandle.standardError.write(Data("model check: seed \(seed) failed (\(failure)); shrinking the program\n".utf8))
        let (shortest, why) = try await shrink(program, failure, durability: durability, cluster: cluster, budget: shrinkBudget)
        let options = (cluster ? " --cluster" : "") + (durability == .sync ? " --durability sync" : "")
            + (features.isEmpty ? " --basic" : "")
        throw Counterexample(seed: seed, steps: steps, failure: why, program: shortest, options: options)
    }

    /// Whether `failure` of `candidate` fails where the original did: at a step equal to `target`, or in the final
    /// checks when `target` is nil.
    public static func sameFailure(_ failure: Driver.Failure, in candidate: Program, as target: Step?) -> Bool {
        switch (failure.step, target) {
        case (nil, nil): return true
        case (let step?, let target?): return candidate.steps.indices.contains(step) && candidate.steps[step] == target
        default: return false
        }
    }

    /// Leaves out chunks of steps, then single steps (delta debugging, bounded by `budget` runs), keeping every
    /// shorter program that still fails. Steps after the failing one are dropped first.
    static func shrink(
        _ program: Program, _ failure: Driver.Failure, durability: Durability, cluster: Bool, budget: Int
    ) async throws -> (Program, Driver.Failure) {
        var best = program
        var why = failure
        // Only a candidate that fails at the same step (or in the final checks, as the original) is kept: one that
        // fails for another reason (a burst before any PUT finds no items) is another counterexample, not a shorter one.
        let target = failure.step.map { program.steps[$0] }
        if let step = failure.step { best.steps = Array(best.steps.prefix(step + 1)) }
        var runs = 0
        var chunk = max(1, best.steps.count / 2)
        while chunk >= 1 && runs < budget {
            var start = 0
            var removedAny = false
            while start < best.steps.count && runs < budget {
                var candidate = best
                candidate.steps.removeSubrange(start..<min(start + chunk, candidate.steps.count))
                runs += 1
                if !candidate.steps.isEmpty,
                    let again = try await self.failure(of: candidate, durability: durability, cluster: cluster),
                    Self.sameFailure(again, in: candidate, as: target)
                {
                    best = candidate
                    why = again
                    if let step = again.step { best.steps = Array(best.steps.prefix(step + 1)) }
                    removedAny = true
                } else {
                    start += chunk
                }
            }
            if !removedAny { chunk /= 2 }
        }
        return (best, why)
    }
}
