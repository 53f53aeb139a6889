/// A condition a test waited for did not hold by its deadline.
public struct ConditionTimedOut: Error, CustomStringConvertible {
    public let description: String
}

/// Asks `condition` every `interval` until it holds; throws `ConditionTimedOut` once `limit` has passed. How a test
/// waits for another task or process to reach a state, instead of sleeping for a time that is too short on a busy
/// machine.
public func waitFor(
    _ what: String,
    within limit: Duration = .seconds(10),
    every interval: Duration = .milliseconds(5),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            throw ConditionTimedOut(description: "\(what): not within \(limit)")
        }
        try await Task.sleep(for: interval)
    }
}
