import NIOConcurrencyHelpers
import NIOCore

/// Bulk work (code exports and uploads: up to 200,000 codes, 8 MiB bodies) runs `concurrency` at a time per
/// instance, so a client asking for many at once takes a bounded share of the CPU and of Redis from every other
/// request. Up to `queueLimit` more wait their turn (in order); a request past that is answered 429 at once.
/// `INVENTORY_BULK_CONCURRENCY`. A place is held only while the work runs, never while a client is slow: an upload
/// takes its place once its body has arrived, an export holds it while it reads a page from Redis, not while the
/// page waits for the client to read it.
///
/// A place that was held for a time d rests d × (1 − share) / share before it is taken again (`share`,
/// `INVENTORY_BULK_SHARE`, 25 % by default): without the rest one client sending uploads back to back kept a place
/// busy all the time, a core's worth of CPU, however cheap each upload was (RESULTS.md session 17). With it bulk work
/// takes at most `share` of each place's time, and the rest of the machine is the other requests'.
public final class BulkGate: Sendable {
    private struct State {
        var running = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
        /// When each place's rest ends (uptime ns), the earliest first: a place taken waits for the earliest.
        var restUntil: [UInt64]
    }

    public let concurrency: Int
    public let queueLimit: Int
    /// The part of each place's time bulk work may take (0 < share ≤ 1; 1: no rest).
    public let share: Double
    private let state: NIOLockedValueBox<State>
    /// The clock and the wait (uptime ns); tests give their own.
    private let now: @Sendable () -> UInt64
    private let rest: @Sendable (UInt64) async -> Void

    public convenience init(concurrency: Int, queueLimit: Int? = nil, share: Double = 1) {
        self.init(
            concurrency: concurrency, queueLimit: queueLimit, share: share,
            now: { NIODeadline.now().uptimeNanoseconds },
            rest: { nanoseconds in try? await Task.sleep(nanoseconds: nanoseconds) }
        )
    }

    init(
        concurrency: Int, queueLimit: Int? = nil, share: Double, now: @escaping @Sendable () -> UInt64,
        rest: @escaping @Sendable (UInt64) async -> Void
    ) {
        self.concurrency = max(concurrency, 1)
        self.queueLimit = queueLimit ?? 4 * max(concurrency, 1)
        self.share = min(max(share, 0.01), 1)
        self.state = NIOLockedValueBox(State(restUntil: Array(repeating: 0, count: max(concurrency, 1))))
        self.now = now
        self.rest = rest
    }

    /// Whether a request would find room, running or in the queue, now (a request that finds none gets 429).
    public var hasRoom: Bool {
        state.withLockedValue { $0.running + $0.waiting.count < concurrency + queueLimit }
    }

    /// Runs `body` once one of the `concurrency` places is free and has rested.
    public func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let started = await enter()
        defer { leave(since: started) }
        return try await body()
    }

    /// Takes a place (waiting in turn, then for the place's rest); returns when the work began, for `leave(since:)`.
    func enter() async -> UInt64 {
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
        // The place is held while it rests: nothing else starts meanwhile.
        let restUntil = state.withLockedValue { $0.restUntil[0] }
        let time = now()
        if restUntil > time { await rest(restUntil - time) }
        return max(time, restUntil)
    }

    /// Gives the place back; it rests for what the work since `started` took, × (1 − share) / share.
    func leave(since started: UInt64) {
        let ended = now()
        let held = Double(ended > started ? ended - started : 0)
        let restEnds = ended + UInt64(held * (1 - share) / share)
        // The place passes to the first waiter, if any (running stays the same); else it is freed.
        let next = state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            // This place's rest replaces the earliest one (the place this work took).
            state.restUntil[0] = restEnds
            state.restUntil.sort()
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
