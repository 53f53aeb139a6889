import NIOConcurrencyHelpers

/// What this instance knows MySQL has recorded of each shard's drain mark (migrations/0017): its floor. A script that
/// decides on orders or stock is given its shard's floor and answers `behind` when Redis's mark is below it
/// (lua/lib/floor.lua): Redis went back in time past something MySQL has, and is checked and forgotten before the
/// script runs again (`EngineStores.runScript`), rather than a second after by the write-back worker's check, while
/// clients acted on it.
///
/// A floor rises with every value Redis hands out to a transaction of this instance (`raise`; one that then rolls back
/// leaves a floor above MySQL's, which Redis's mark is at or above all the same: marks only go up, unless Redis loses
/// or goes back, which is what the check is for) and is set to MySQL's values whenever they are read (`reset`, by the
/// check and by the refresh: a MySQL restored from a backup takes its floors down with it). A floor of 0 checks
/// nothing; an instance learns MySQL's values as it starts (`InventoryEngine.loadScripts`) and about once a second after
/// (`EngineLoop.drainFloors` in a service, with or without a write-back worker).
final class DrainFloors: Sendable {
    /// The check of every shard's mark against MySQL's, forgetting Redis where it is behind
    /// (`InventoryEngine.forgetIfWentBack`), which resets the floors; installed by the engine.
    typealias Check = @Sendable (EngineStores) async throws -> Void

    private let shardOfMark: [String: Int]
    /// Each shard's floor, how many raises were noted (`token`), and per shard the number of the last raise noted and
    /// its value.
    private let floors: NIOLockedValueBox<State>

    private struct State {
        var floors: [Int64]
        var raises = 0
        var lastRaise: [(number: Int, value: Int64)]
    }
    /// A single Redis's drain sequence (nil on a cluster).
    private let sequence: String?
    private let check = NIOLockedValueBox<Check?>(nil)
    /// Whether a check is under way, and the callers waiting for it: concurrent scripts that meet a Redis behind share
    /// one, and each waits for it a bounded time (`settle`).
    private let checking = NIOLockedValueBox(Checking())

    private struct Checking {
        var running = false
        /// Each waiter with its timer, which the check cancels as it answers.
        var waiters: [Int: (continuation: CheckedContinuation<Void, any Error>, timer: Task<Void, Never>)] = [:]
        var lastWaiter = 0
    }

    init(keys: KeyLayout) {
        shardOfMark = Dictionary(uniqueKeysWithValues: keys.drainMarks.enumerated().map { ($0.element, $0.offset) })
        sequence = keys.drainSequence
        floors = NIOLockedValueBox(
            State(floors: Array(repeating: 0, count: keys.shards), lastRaise: Array(repeating: (0, 0), count: keys.shards))
        )
    }

    /// The key a script of `mark`'s shard checks, and its floor (0: none known). On a cluster the shard's own mark (a
    /// script's keys are in one slot). On a single Redis, whose shards go back in time together, the drain sequence
    /// (`KeyLayout.drainSequence`), which every mark's value was drawn from and which stays at or above them all, against
    /// the highest floor of any shard: a copy of Redis older than any raise this instance saw or read from MySQL has it
    /// below.
    func fence(for mark: String) -> (key: String, floor: Int64) {
        floors.withLockedValue { state in
            guard let sequence else { return (mark, shardOfMark[mark].map { state.floors[$0] } ?? 0) }
            return (sequence, state.floors.max() ?? 0)
        }
    }

    /// Redis handed out these values of marks (by key) to a transaction of this instance.
    func raise(_ values: [String: Int64]) {
        guard !values.isEmpty else { return }
        floors.withLockedValue { state in
            state.raises += 1
            for (mark, value) in values {
                guard let shard = shardOfMark[mark] else { continue }
                state.floors[shard] = max(state.floors[shard], value)
                state.lastRaise[shard] = (state.raises, value)
            }
        }
    }

    /// Taken before MySQL's values are read for `reset`.
    func token() -> Int { floors.withLockedValue { $0.raises } }

    /// MySQL's values of these marks (by key; a mark left out has no row: 0), read after `token` was taken. They replace
    /// the floors (a MySQL restored from a backup takes its floors down; a floor raised by a transaction that rolled
    /// back comes down to what MySQL has), but for a shard whose mark this instance saw raised since `token`: its floor
    /// is at least that raise's value (the read may have missed it).
    func reset(_ marks: [String], to values: [String: Int64], since token: Int) {
        floors.withLockedValue { state in
            for mark in marks {
                guard let shard = shardOfMark[mark] else { continue }
                let value = values[mark] ?? 0
                let last = state.lastRaise[shard]
                state.floors[shard] = last.number > token ? max(value, last.value) : value
            }
        }
    }

    func install(_ check: @escaping Check) {
        self.check.withLockedValue { $0 = check }
    }

    /// A script met a Redis below a floor: runs the check (one at a time; callers meanwhile wait for it) and waits for it
    /// at most `wait`: past it `unavailable` (503), and the check goes on (a forget of a large Redis, MySQL slow to
    /// answer: requests do not pile up behind it without limit).
    func settle(_ stores: EngineStores, within wait: Duration) async throws {
        guard let check = check.withLockedValue({ $0 }) else {
            throw InventoryError.unavailable("Redis's drain mark is below what MySQL recorded, and nothing checks it")
        }
        try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
            let start = checking.withLockedValue { state -> Bool in
                state.lastWaiter += 1
                let id = state.lastWaiter
                let timer = Task {
                    guard (try? await Task.sleep(for: wait)) != nil else { return }
                    self.checking.withLockedValue { $0.waiters.removeValue(forKey: id) }?.continuation.resume(
                        throwing: InventoryError.unavailable(
                            "Redis is behind MySQL's drain marks (it went back in time) and still being checked after \(wait); retry"
                        )
                    )
                }
                state.waiters[id] = (waiter, timer)
                defer { state.running = true }
                return !state.running
            }
            guard start else { return }
            // Detached: the check is every waiting caller's, not the first one's (its request id, its cancellation). Its
            // answer goes to the callers waiting as it ends, so one that meets Redis behind after that starts a check
            // of its own rather than taking this one's answer, read before.
            Task.detached {
                let result: Result<Void, any Error>
                do { result = .success(try await check(stores)) } catch { result = .failure(error) }
                let waiters = self.checking.withLockedValue { state in
                    defer {
                        state.waiters = [:]
                        state.running = false
                    }
                    return state.waiters
                }
                for waiter in waiters.values {
                    waiter.timer.cancel()
                    waiter.continuation.resume(with: result)
                }
            }
        }
    }
}
