import Foundation

// What the driver's steps share beside the model: values kept from one step for a later one, behind a lock (a
// burst's reserves run concurrently).

/// The latest of the times it was given (a lock, since the driver's steps may run concurrently in a burst).
final class LatestTime: @unchecked Sendable {
    let lock = NSLock()
    var latest: Int64 = 0

    var value: Int64 { lock.withLock { latest } }

    func advance(to time: Int64) {
        lock.withLock { latest = max(latest, time) }
    }
}

/// A value one step keeps for a later one.
final class Kept<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value?

    func keep(_ new: Value) { lock.withLock { value = new } }

    /// The value kept, and nothing kept any more.
    func take() -> Value? {
        lock.withLock {
            defer { value = nil }
            return value
        }
    }
}

/// A flag several tasks read (a lock: a burst's reserves run concurrently).
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { lock.withLock { value } }

    func set(_ on: Bool) {
        lock.withLock { value = on }
    }
}

/// Deadlines by order (a lock: a burst's reserves run concurrently).
final class Deadlines: @unchecked Sendable {
    let lock = NSLock()
    var deadlines: [Int: Int64] = [:]

    var value: [Int: Int64] { lock.withLock { deadlines } }

    func set(_ order: Int, _ deadline: Int64) {
        lock.withLock { deadlines[order] = deadline }
    }
}
