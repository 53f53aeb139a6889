import Logging
import ServiceLifecycle

/// One of the engine's small background services: `round` now and then every `intervalMilliseconds` until the service
/// group shuts down gracefully. A round that throws is logged at debug level as `failure` (the next round is the retry).
public final class EngineLoop: Service, Sendable {
    private let intervalMilliseconds: Int
    private let failure: String
    private let logger: Logger
    private let round: @Sendable () async throws -> Void

    init(everyMilliseconds intervalMilliseconds: Int, logger: Logger, failure: String, _ round: @escaping @Sendable () async throws -> Void) {
        self.intervalMilliseconds = intervalMilliseconds
        self.failure = failure
        self.logger = logger
        self.round = round
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await self.round()
                } catch {
                    self.logger.debug("\(self.failure)", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(self.intervalMilliseconds))
            }
        }
    }

    /// Runs the stored retry tasks every few seconds until each succeeds (the second level of compensation).
    public static func compensations(_ engine: InventoryEngine, everyMilliseconds: Int = 2000, logger: Logger) -> EngineLoop {
        EngineLoop(everyMilliseconds: everyMilliseconds, logger: logger, failure: "retry tasks not read this round") {
            _ = try await engine.retryCompensations()
        }
    }

    /// Keeps the instance's drain floors (`DrainFloors`) at MySQL's marks about once a second, whether or not the
    /// instance runs a write-back worker, so that its scripts find a Redis gone back past what any instance recorded
    /// (lua/lib/floor.lua) rather than only past its own transactions. A round that cannot read MySQL keeps the floors
    /// it had.
    public static func drainFloors(_ engine: InventoryEngine, everyMilliseconds: Int = 1000, logger: Logger) -> EngineLoop {
        EngineLoop(everyMilliseconds: everyMilliseconds, logger: logger, failure: "drain floors not read this round") {
            try await engine.refreshDrainFloors()
        }
    }

    /// Reads how full Redis is into `inventory_redis_memory_used_ratio` about every 10 s (`recordRedisMemory`).
    public static func redisMemory(_ engine: InventoryEngine, everyMilliseconds: Int = 10_000, logger: Logger) -> EngineLoop {
        EngineLoop(everyMilliseconds: everyMilliseconds, logger: logger, failure: "Redis memory not read this round") {
            try await engine.recordRedisMemory()
        }
    }
}
