import NIOConcurrencyHelpers

/// Bulk work (code exports and uploads: up to 200,000 codes, 8 MiB bodies) runs `concurrency` at a time per
/// instance, so a client asking for many at once takes a bounded share of the CPU and of Redis from every other
/// request. Up to `queueLimit` more wait their turn (in order); a request past that is answered 429 at once.
/// `INVENTORY_BULK_CONCURRENCY`. A place is held only while the work runs, never while a client is slow: an upload
/// takes its place once its body has arrived, an export holds it while it reads a page from Redis, not while the
/// page waits for the client to read it.
public final class BulkGate: Sendable {
    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    public let concurrency: Int
    public let queueLimit: Int
    private let state = NIOLockedValueBox(State())

    public init(concurrency: Int, queueLimit: Int? = nil) {
        self.concurrency = max(concurrency, 1)
        self.queueLimit = queueLimit ?? 4 * max(concurrency, 1)
    }

    /// Whether a request would find room, running or in the queue, now (a request that finds none gets 429).
    public var hasRoom: Bool {
        state.withLockedValue { $0.running + $0.waiting.count < concurrency + queueLimit }
    }

    /// Runs `body` once one of the `concurrency` places is free.
    public func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await enter()
        defer { leave() }
        return try await body()
    }

    func enter() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { state -> Bool in
                if state.running < concurrency {
                    state.running += 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func leave() {
        // The place passes to the first waiter, if any (running stays the same); else it is freed.
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.running -= 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }

    /// Requests running and waiting (for tests).
    var load: (running: Int, waiting: Int) { state.withLockedValue { ($0.running, $0.waiting.count) } }
}
