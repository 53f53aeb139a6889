import NIOConcurrencyHelpers

/// Group commit of journal rows for sync mode: while one transaction is running, arriving rows queue up, and
/// the next transaction takes all of them. Under load many requests share one commit; alone, a request waits for
/// one transaction only.
final class JournalCommitter: Sendable {
    private typealias Waiter = (event: OutboxEvent, continuation: CheckedContinuation<JournalBatchResult, any Error>)

    private struct State {
        var queue: [Waiter] = []
        var running = false
    }

    private let journal: JournalRepository
    private let fences: any BatchFences
    private let state = NIOLockedValueBox(State())
    /// Rows per transaction at most, so one commit stays short.
    private let maxBatch: Int

    init(journal: JournalRepository, fences: any BatchFences, maxBatch: Int = 1000) {
        self.journal = journal
        self.fences = fences
        self.maxBatch = maxBatch
    }

    /// Commits the event's rows, in a batch with whatever else is waiting; returns that batch's result.
    func commit(_ event: OutboxEvent) async throws -> JournalBatchResult {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLockedValue { state -> Bool in
                state.queue.append((event, continuation))
                if state.running { return false }
                state.running = true
                return true
            }
            if start {
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLockedValue { state -> [Waiter] in
                let batch = Array(state.queue.prefix(maxBatch))
                state.queue.removeFirst(batch.count)
                if batch.isEmpty { state.running = false }
                return batch
            }
            if batch.isEmpty { return }
            do {
                // Requests as they come, not in their streams' order.
                let result = try await journal.apply(batch.map(\.event), fences: fences, inStreamOrder: false)
                for waiter in batch { waiter.continuation.resume(returning: result) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
        }
    }
}
