import Logging
import ServiceLifecycle

/// Runs `round` now and then every `intervalMilliseconds` until the service group shuts down gracefully: the loop of
/// the engine's small background services (`CompensationRetrier`, `DrainFloorRefresher`, `RedisMemoryGauge`). A round that throws is logged
/// at debug level as `failure` (the next round is the retry).
func repeatUntilShutdown(
    everyMilliseconds intervalMilliseconds: Int, logger: Logger, failure: String, _ round: @escaping @Sendable () async throws -> Void
) async {
    await cancelWhenGracefulShutdown {
        while !Task.isCancelled {
            do {
                try await round()
            } catch {
                logger.debug("\(failure)", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(intervalMilliseconds))
        }
    }
}
