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
/// `INVENTORY_BULK_SHARE`, 5 % by default): without the rest one client sending uploads back to back kept a place
/// busy all the time, a core's worth of CPU, however cheap each upload was (RESULTS.md session 17). With it bulk work
/// takes at most `share` of each place's time, and the rest of the machine is the other requests'. Why 5: on two
/// cores any process burning CPU in bursts a quarter (or a tenth) of the time costs another business's reserve p99
/// about 3×, a twentieth of the time 1.5× (RESULTS.md session 18); an admin's 200,000-code export then takes ~7 s
/// instead of 0.2. A rest is at most
/// `maxRest` (the hold counts waiting too: a slow MySQL insert must not stop bulk work for minutes).
public final class BulkGate: Sendable {
    private struct State {
        var running = 0
        /// Requests waiting for a place, in order; each is handed the place with the time its rest ends.
        var waiting: [CheckedContinuation<UInt64, Never>] = []
        /// When the rest of each free place ends (uptime ns; 0: none), earliest first. A request takes a place
        /// with its rest, and gives it back with the next one: the list always has a value per free place.
        var freeRests: [UInt64]
    }

    public let concurrency: Int
    public let queueLimit: Int
    /// The part of each place's time bulk work may take (0 < share ≤ 1; 1: no rest).
    public let share: Double
    /// The longest rest (5 s).
    static let maxRest: UInt64 = 5_000_000_000
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
        self.state = NIOLockedValueBox(State(freeRests: Array(repeating: 0, count: max(concurrency, 1))))
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
        let restEnds = await withCheckedContinuation { (continuation: CheckedContinuation<UInt64, Never>) in
            let taken = state.withLockedValue { state -> UInt64? in
                if state.running < concurrency {
                    state.running += 1
                    return state.freeRests.removeFirst()
                }
                state.waiting.append(continuation)
                return nil
            }
            if let taken { continuation.resume(returning: taken) }
        }
        // The place is held while it rests: nothing else starts on it meanwhile. (A request cancelled meanwhile
        // goes on at once; its work is counted from the rest's end, so the place's next rest is not shortened.)
        let time = now()
        if restEnds > time { await rest(restEnds - time) }
        return max(time, restEnds)
    }

    /// Gives the place back: it rests for what the work since `started` took, × (1 − share) / share, at most
    /// `maxRest`. The place passes to the first waiter, if any (running stays the same), else it is freed.
    func leave(since started: UInt64) {
        let ended = max(now(), started)
        let restEnds = ended + min(UInt64(Double(ended - started) * (1 - share) / share), Self.maxRest)
        let next = state.withLockedValue { state -> CheckedContinuation<UInt64, Never>? in
            if state.waiting.isEmpty {
                state.running -= 1
                state.freeRests.append(restEnds)
                state.freeRests.sort()
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume(returning: restEnds)
    }

    /// Requests running and waiting (for tests).
    var load: (running: Int, waiting: Int) { state.withLockedValue { ($0.running, $0.waiting.count) } }
}
