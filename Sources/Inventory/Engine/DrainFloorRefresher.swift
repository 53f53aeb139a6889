import Logging
import ServiceLifecycle

/// Keeps an instance's drain floors (`DrainFloors`) at MySQL's marks: at start and about once a second, whether or not
/// the instance runs a write-back worker, so that its scripts find a Redis gone back past what any instance recorded
/// (lua/lib/floor.lua) rather than only past its own transactions. A round that cannot read MySQL keeps the floors it
/// had.
public final class DrainFloorRefresher: Service, Sendable {
    private let engine: InventoryEngine
    private let intervalMilliseconds: Int
    private let logger: Logger

    public init(engine: InventoryEngine, intervalMilliseconds: Int = 1000, logger: Logger) {
        self.engine = engine
        self.intervalMilliseconds = intervalMilliseconds
        self.logger = logger
    }

    public func run() async throws {
        await repeatUntilShutdown(everyMilliseconds: intervalMilliseconds, logger: logger, failure: "drain floors not read this round") {
            try await self.engine.refreshDrainFloors()
        }
    }
}
