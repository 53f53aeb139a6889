import Foundation
import LoadHarness
import NIOCore
import NIOHTTP1
import NIOPosix

/// What the clients were told, order by order: the ground truth the journal and the stores are checked against.
final class Ledger: @unchecked Sendable {
    struct Order: Sendable {
        let sku: Int
        let quantity: Int64
        /// Seconds since the scenario started when the hold was acknowledged.
        let acknowledgedAt: Double
        /// Reserved with a 1 s TTL: the hold may have expired and its unit been sold again.
        var expiring = false
        var confirmed = false
        var cancelled = false
        /// Seconds since the scenario started when the confirm or cancel was acknowledged.
        var settledAt: Double?
        /// A reserve sent again after the TTL was refused as expired.
        var expired = false
    }

    private let lock = NSLock()
    private(set) var orders: [String: Order] = [:]
    private(set) var statuses: [Int: Int] = [:]
    private(set) var transportErrors = 0
    private(set) var hung = 0
    private(set) var gaveUp = 0
    private(set) var abandonedSteps: [String] = []
    private(set) var sequenceViolations: [String] = []

    func answered(_ status: Int) { lock.withLock { statuses[status, default: 0] += 1 } }
    func transportError(timeout: Bool) {
        lock.withLock {
            transportErrors += 1
            if timeout { hung += 1 }
        }
    }
    func held(_ orderId: String, sku: Int, quantity: Int64, at: Double, expiring: Bool = false) {
        lock.withLock { orders[orderId] = Order(sku: sku, quantity: quantity, acknowledgedAt: at, expiring: expiring) }
    }
    func expired(_ orderId: String) { lock.withLock { orders[orderId]?.expired = true } }
    func confirmed(_ orderId: String, at: Double) {
        lock.withLock {
            orders[orderId]?.confirmed = true
            orders[orderId]?.settledAt = at
        }
    }
    func cancelled(_ orderId: String, at: Double) {
        lock.withLock {
            orders[orderId]?.cancelled = true
            orders[orderId]?.settledAt = at
        }
    }
    /// A step retried past the limit; the first few are named in the report, to find them in the service's log.
    func abandoned(_ step: String) {
        lock.withLock {
            gaveUp += 1
            if abandonedSteps.count < 5 { abandonedSteps.append(step) }
        }
    }
    func violation(_ text: String) { lock.withLock { sequenceViolations.append(text) } }
    var snapshot: (
        orders: [String: Order], statuses: [Int: Int], transport: Int, hung: Int, gaveUp: Int, abandoned: [String],
        violations: [String]
    ) {
        lock.withLock { (orders, statuses, transportErrors, hung, gaveUp, abandonedSteps, sequenceViolations) }
    }
}

/// The steady workload: `lanes` clients, each on its own connection (reopened after a failure), reserving one
/// unit of a random item, then confirming, cancelling or leaving the hold. Every request whose outcome is unknown
/// (503, connection lost, no answer) is retried with the same orderId until it gets a definite answer, as a
/// checkout service would. Some orders are also sent twice, confirmed twice, confirmed after their cancel,
/// cancelled before they reserve, or reserved with a 1 s TTL and sent again after it ran out, and the answers to
/// those are checked.
struct Workload: Sendable {
    /// The service's instances; lane i sends to `clients[i % clients.count]`.
    let clients: [SetupClient]
    let bizId: String
    let runId: String
    let items: Int
    let lanes: Int
    let start: ContinuousClock.Instant
    let ledger: Ledger
    let stop: StopFlag
    /// How long one step is retried before it is given up.
    let retryLimit: Duration
    /// Reserves name a user (`u<lane>`), for items with a per-user limit.
    var userIds = false

    enum Step: Sendable {
        case reserve(order: String, sku: Int, repeatAfter: Bool)
        case reserveAgain(order: String, sku: Int)
        case confirm(order: String, repeatAfter: Bool)
        case cancel(order: String)
        case cancelAfterConfirm(order: String)
        case cancelFirst(order: String, sku: Int)
        case reserveAfterCancel(order: String, sku: Int)
        case confirmAfterCancel(order: String)
        /// A hold that runs out after 1 s, and the same request sent again once the sweeper had time to expire it.
        case reserveExpiring(order: String, sku: Int)
        case reserveAfterExpiry(order: String, sku: Int)
    }

    /// Seconds after an expiring hold's acknowledgement that it is sent again: its 1 s TTL, the sweeper's 1 s
    /// interval, and slack.
    static let expiryCheckDelay = Duration.seconds(4)

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask { await runLane(lane) }
            }
        }
    }

    private func seconds() -> Double { (ContinuousClock.now - start).seconds }

    private func runLane(_ lane: Int) async {
        let client = clients[lane % clients.count]
        let user = userIds ? #","userId":"u\#(lane)""# : ""
        var random = SplitMix64(seed: UInt64(lane + 1) &* 0x9E37_79B9 &+ UInt64(runId.hashValue & 0xffff))
        var counter = 0
        var queue: [Step] = []
        // Steps due later (a reserve sent again after its hold's TTL), taken when the queue is empty.
        var later: [(due: ContinuousClock.Instant, step: Step)] = []
        var stepStarted = ContinuousClock.now
        var lastStatus: Int?
        func nextOrder() {
            counter += 1
            let order = "\(runId)-\(lane)-\(counter)"
            let sku = 1 + Int(random.next() % UInt64(items))
            if counter % 10 == 0 {
                queue.append(.cancelFirst(order: order, sku: sku))
            } else if counter % 10 == 7 {
                queue.append(.reserveExpiring(order: order, sku: sku))
            } else {
                queue.append(.reserve(order: order, sku: sku, repeatAfter: counter % 5 == 0))
            }
            stepStarted = .now
        }
        while true {
            do {
                try await client.withConnection { connection in
                    while true {
                        if queue.isEmpty {
                            if stop.isSet { return }
                            if let due = later.firstIndex(where: { $0.due <= .now }) {
                                queue.append(later.remove(at: due).step)
                                stepStarted = .now
                            } else {
                                nextOrder()
                            }
                        }
                        guard let step = queue.first else { continue }
                        if ContinuousClock.now - stepStarted > retryLimit {
                            ledger.abandoned("\(step) (last answer \(lastStatus.map(String.init) ?? "none"))")
                            queue.removeFirst()
                            stepStarted = .now
                            lastStatus = nil
                            continue
                        }
                        let sent = ContinuousClock.now
                        let status: Int
                        do {
                            status = try await send(step, user: user, on: connection).status
                        } catch {
                            // No answer within the client's timeout is a hang; a connection reset is not.
                            ledger.transportError(timeout: ContinuousClock.now - sent >= client.timeout * 0.95)
                            throw error
                        }
                        ledger.answered(status)
                        lastStatus = status
                        if status == 503 || status == 429 || status >= 500 {
                            try await Task.sleep(for: .milliseconds(50))
                            continue
                        }
                        queue.removeFirst()
                        stepStarted = .now
                        lastStatus = nil
                        let next = follow(step, status: status, random: &random)
                        for step in next {
                            if case .reserveAfterExpiry = step {
                                later.append((.now + Self.expiryCheckDelay, step))
                            }
                        }
                        queue.insert(
                            contentsOf: next.filter { if case .reserveAfterExpiry = $0 { false } else { true } }, at: 0
                        )
                    }
                }
                return
            } catch {
                // A failed connect (the service is down) is counted when the request itself failed, not here.
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    private func send(_ step: Step, user: String, on connection: SetupConnection) async throws -> (status: Int, body: String) {
        switch step {
        case .reserve(let order, let sku, _), .reserveAgain(let order, let sku), .reserveAfterCancel(let order, let sku):
            return try await connection.request(
                .POST, "/v1/reservations",
                json: #"{"orderId":"\#(order)","bizId":"\#(bizId)"\#(user),"items":[{"skuId":\#(sku),"quantity":1}]}"#
            )
        case .reserveExpiring(let order, let sku), .reserveAfterExpiry(let order, let sku):
            return try await connection.request(
                .POST, "/v1/reservations",
                json: #"{"orderId":"\#(order)","bizId":"\#(bizId)"\#(user),"items":[{"skuId":\#(sku),"quantity":1}],"ttlSeconds":1}"#
            )
        case .confirm(let order, _), .confirmAfterCancel(let order):
            return try await connection.request(.POST, "/v1/businesses/\(bizId)/reservations/\(order)/confirm")
        case .cancel(let order), .cancelFirst(let order, _), .cancelAfterConfirm(let order):
            return try await connection.request(.POST, "/v1/businesses/\(bizId)/reservations/\(order)/cancel")
        }
    }

    /// Records a definite answer and returns the steps that follow it.
    private func follow(_ step: Step, status: Int, random: inout SplitMix64) -> [Step] {
        switch step {
        case .reserve(let order, let sku, let repeatAfter):
            guard status == 200 || status == 201 else {
                if status != 409 { ledger.violation("reserve \(order): \(status)") }
                return []
            }
            ledger.held(order, sku: sku, quantity: 1, at: seconds())
            // The same request again must be a replay (200) that holds nothing more.
            var next: [Step] = repeatAfter ? [.reserveAgain(order: order, sku: sku)] : []
            let roll = random.next() % 10
            if roll < 4 {
                next.append(.confirm(order: order, repeatAfter: roll == 0))
            } else if roll < 7 {
                next.append(.cancel(order: order))
            }
            return next
        case .reserveAgain(let order, _):
            if status != 200 { ledger.violation("reserve sent twice \(order): \(status)") }
            return []
        case .confirm(let order, let repeatAfter):
            guard status == 200 else {
                ledger.violation("confirm \(order): \(status)")
                return []
            }
            ledger.confirmed(order, at: seconds())
            // A confirm sent twice is a replay; a cancel after it is refused (409).
            return repeatAfter ? [.confirm(order: order, repeatAfter: false), .cancelAfterConfirm(order: order)] : []
        case .cancel(let order):
            if status == 200 {
                ledger.cancelled(order, at: seconds())
                // A confirm after the cancel must be refused (409).
                return random.next() % 4 == 0 ? [.confirmAfterCancel(order: order)] : []
            } else if status != 409 {
                ledger.violation("cancel \(order): \(status)")
            }
            return []
        case .confirmAfterCancel(let order):
            if status != 409 { ledger.violation("confirm after cancel \(order): \(status)") }
            return []
        case .reserveExpiring(let order, let sku):
            guard status == 200 || status == 201 else {
                if status != 409 { ledger.violation("reserve \(order): \(status)") }
                return []
            }
            ledger.held(order, sku: sku, quantity: 1, at: seconds(), expiring: true)
            return [.reserveAfterExpiry(order: order, sku: sku)]
        case .reserveAfterExpiry(let order, let sku):
            // 409 once the sweeper expired the hold; 200 (a replay) if it has not got to it yet (it was down, or
            // Redis was); never a new hold.
            if status == 409 {
                ledger.expired(order)
            } else if status == 201 {
                ledger.violation("reserve after expiry \(order): \(status)")
                ledger.held(order, sku: sku, quantity: 1, at: seconds())
            } else if status != 200 {
                ledger.violation("reserve after expiry \(order): \(status)")
            }
            return []
        case .cancelAfterConfirm(let order):
            if status != 409 { ledger.violation("cancel after confirm \(order): \(status)") }
            return []
        case .cancelFirst(let order, let sku):
            if status != 200 { ledger.violation("cancel before reserve \(order): \(status)") }
            return [.reserveAfterCancel(order: order, sku: sku)]
        case .reserveAfterCancel(let order, let sku):
            if status == 200 || status == 201 {
                // The anti-hanging guard failed: a reserve after its cancel must be refused. Keep the truth.
                ledger.violation("reserve after cancel \(order): \(status)")
                ledger.held(order, sku: sku, quantity: 1, at: seconds())
            } else if status != 409 {
                ledger.violation("reserve after cancel \(order): \(status)")
            }
            return []
        }
    }
}

/// Tells the lanes to finish what they are doing and stop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
