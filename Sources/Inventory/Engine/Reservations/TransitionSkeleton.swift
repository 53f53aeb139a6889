/// The one shape of confirm, cancel, expiry and refund (`Reservations+Transitions.swift`).
extension Reservations {
    /// What an attempt of a transition does once the order is read (and, on a cluster, its directory has decided).
    enum TransitionStart<Outcome> {
        /// Run the transition's script on each of these: the order's parts (on a single Redis the order itself), or
        /// `[nil]`, the order's own shard, for an order Redis does not hold.
        case move([StoredOrder?])
        /// The answer is known without moving any part.
        case answer(Outcome)
    }

    /// What one part's script said.
    enum PartMove<Outcome> {
        /// Moved (or found moved already): on to the next part.
        case moved
        /// The order changed under this attempt (a part's lines are not the ones read): read it again.
        case stale
        /// The answer is known; the parts after this one are left as they are.
        case answer(Outcome)
    }

    /// Runs a transition: up to three attempts, each of which reads the order, lets `start` decide (the directory on
    /// a cluster), moves each part with `move`, and answers with `finish`. A part that answers `.stale` starts a
    /// new attempt with a fresh `state`; three stale attempts in a row are 503.
    /// - Parameters:
    ///   - orderId: the order's Redis name (`OrderRef.name`).
    ///   - state: what an attempt gathers from its parts (replayed or not, the status a replay found), fresh for each.
    func transition<State, Outcome>(
        _ orderId: String, _ what: String, state initial: State,
        start: (StoredOrder?, inout State) async throws -> TransitionStart<Outcome>,
        move: (_ order: StoredOrder?, _ part: StoredOrder?, inout State) async throws -> PartMove<Outcome>,
        finish: (StoredOrder?, State) throws -> Outcome
    ) async throws -> Outcome {
        attempts: for _ in 0..<3 {
            var state = initial
            let order = try await orders.readOrder(orderId)
            let parts: [StoredOrder?]
            switch try await start(order, &state) {
            case .answer(let outcome): return outcome
            case .move(let list): parts = list
            }
            for part in parts {
                switch try await move(order, part, &state) {
                case .moved: continue
                case .stale: continue attempts
                case .answer(let outcome): return outcome
                }
            }
            return try finish(order, state)
        }
        throw InventoryError.unavailable("order \(orderId) kept changing during \(what)")
    }
}
