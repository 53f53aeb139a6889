import NIOCore

/// What a run sends. Each scenario turns into jobs (one order, or one health check) of one to two requests.
public enum Scenario: String, CaseIterable, Sendable, Codable {
    /// One item, reserve quantity 1, unique orderIds.
    case hot
    /// `--items` items drawn with a Zipf skew (`--zipf-s`).
    case zipf
    /// Reserve, then confirm / cancel / let expire (`--mix`); expiring holds use ttlSeconds 1.
    case lifecycle
    /// Every reserve sent twice: 201, then a 200 replay.
    case retry
    /// Orders of 2-5 distinct items, drawn with the Zipf skew.
    case multi
    /// Orders of 1-4 distinct items (Zipf), then confirm / cancel / let expire (`--mix`), as `lifecycle`: on a Redis
    /// Cluster their items are on different masters.
    case mixed
    /// GET /healthz only: the server's HTTP ceiling (no stock, no checks).
    case healthz

    /// True when the scenario reserves stock (and so sets it first and checks it after).
    public var reservesStock: Bool { self != .healthz }

    /// The number of items used when `--items` is not given.
    public var defaultItems: Int {
        switch self {
        case .zipf, .multi, .mixed: 1000
        case .hot, .lifecycle, .retry, .healthz: 1
        }
    }
}

/// The kinds of request the harness sends; latency and statuses are kept per operation.
public enum Operation: Int, CaseIterable, Sendable, Codable {
    case reserve, replay, confirm, cancel, healthz

    public var name: String {
        switch self {
        case .reserve: "reserve"
        case .replay: "replay"
        case .confirm: "confirm"
        case .cancel: "cancel"
        case .healthz: "healthz"
        }
    }

    /// True when the request changes stock, so a lost answer leaves its effect unknown.
    var mutatesStock: Bool { self != .healthz }
}

/// One order line: an item (0-based index; skuId = index + 1) and a quantity.
struct OrderLine: Sendable, Equatable {
    var item: Int
    var quantity: Int
}

/// The requests of one job, in order; a later step is sent only if the one before it succeeded.
enum Plan: Sendable, Equatable {
    case healthz
    case reserve
    case reserveTwice
    case reserveThenConfirm
    case reserveThenCancel
    /// Reserve with ttlSeconds 1 and leave the hold to the service's expiry sweeper.
    case reserveToExpire

    func operation(at step: Int) -> Operation? {
        switch (self, step) {
        case (.healthz, 0): .healthz
        case (.reserve, 0), (.reserveTwice, 0), (.reserveThenConfirm, 0), (.reserveThenCancel, 0), (.reserveToExpire, 0):
            .reserve
        case (.reserveTwice, 1): .replay
        case (.reserveThenConfirm, 1): .confirm
        case (.reserveThenCancel, 1): .cancel
        default: nil
        }
    }
}

/// One unit of work: an order (or a health check) and the requests it takes.
struct Job: Sendable {
    var orderId: String
    var lines: [OrderLine]
    var plan: Plan
    var ttlSeconds: Int?
}

/// Makes the jobs of one connection: unique orderIds `<prefix><n>`, items drawn from the shared sampler.
struct JobFactory: Sendable {
    let scenario: Scenario
    let sampler: ZipfSampler
    let mix: LifecycleMix
    let orderPrefix: String
    var generator: SplitMix64
    private(set) var made = 0

    init(scenario: Scenario, sampler: ZipfSampler, mix: LifecycleMix, orderPrefix: String, seed: UInt64) {
        self.scenario = scenario
        self.sampler = sampler
        self.mix = mix
        self.orderPrefix = orderPrefix
        generator = SplitMix64(seed: seed)
    }

    mutating func next() -> Job {
        made += 1
        let orderId = orderPrefix + String(made)
        switch scenario {
        case .healthz:
            return Job(orderId: orderId, lines: [], plan: .healthz)
        case .hot:
            return Job(orderId: orderId, lines: [OrderLine(item: 0, quantity: 1)], plan: .reserve)
        case .zipf:
            return Job(orderId: orderId, lines: [OrderLine(item: sampler.sample(using: &generator), quantity: 1)], plan: .reserve)
        case .retry:
            return Job(
                orderId: orderId, lines: [OrderLine(item: sampler.sample(using: &generator), quantity: 1)], plan: .reserveTwice
            )
        case .multi:
            let size = Swift.min(2 + Int(generator.next() % 4), sampler.count)
            let lines = sampler.sampleDistinct(size, using: &generator).map { OrderLine(item: $0, quantity: 1) }
            return Job(orderId: orderId, lines: lines, plan: .reserve)
        case .lifecycle, .mixed:
            let lines: [OrderLine]
            if scenario == .mixed {
                let size = Swift.min(1 + Int(generator.next() % 4), sampler.count)
                lines = sampler.sampleDistinct(size, using: &generator).map { OrderLine(item: $0, quantity: 1) }
            } else {
                lines = [OrderLine(item: sampler.sample(using: &generator), quantity: 1)]
            }
            switch mix.pick(using: &generator) {
            case .confirm: return Job(orderId: orderId, lines: lines, plan: .reserveThenConfirm)
            case .cancel: return Job(orderId: orderId, lines: lines, plan: .reserveThenCancel)
            case .expire: return Job(orderId: orderId, lines: lines, plan: .reserveToExpire, ttlSeconds: 1)
            }
        }
    }
}

/// Builds the HTTP/1.1 requests of jobs for one target and business line, as bytes (see `HTTPWire.swift`).
struct RequestRenderer: Sendable {
    let target: Target
    let bizId: String
    private let reservePath: String
    /// The business's orders (`/v1/businesses/{bizId}/reservations`): confirm and cancel name the business.
    private let ordersPath: String
    private let hostLine: String
    private let healthz: ByteBuffer
    private let reserveHead: String

    init(target: Target, bizId: String) {
        self.target = target
        self.bizId = bizId
        reservePath = target.basePath + "/v1/reservations"
        ordersPath = target.basePath + "/v1/businesses/\(bizId)/reservations"
        hostLine = "Host: \(target.hostHeader)\r\n"
        healthz = ByteBuffer(string: "GET \(target.basePath)/healthz HTTP/1.1\r\n\(hostLine)\r\n")
        reserveHead = "POST \(reservePath) HTTP/1.1\r\n\(hostLine)Content-Type: application/json\r\nContent-Length: "
    }

    /// The JSON body of the job's reserve (also its replay: a replay must be byte-for-byte the same order).
    func reserveBody(_ job: Job) -> String {
        var body = "{\"orderId\":\"\(job.orderId)\",\"bizId\":\"\(bizId)\",\"items\":["
        for (index, line) in job.lines.enumerated() {
            if index > 0 { body += "," }
            body += "{\"skuId\":\(line.item + 1),\"quantity\":\(line.quantity)}"
        }
        body += "]"
        if let ttl = job.ttlSeconds { body += ",\"ttlSeconds\":\(ttl)" }
        body += "}"
        return body
    }

    /// The bytes of one step of a job.
    func request(_ operation: Operation, _ job: Job, allocator: ByteBufferAllocator) -> ByteBuffer {
        switch operation {
        case .healthz:
            return healthz
        case .reserve, .replay:
            let body = reserveBody(job)
            var buffer = allocator.buffer(capacity: reserveHead.utf8.count + body.utf8.count + 12)
            buffer.writeString(reserveHead)
            buffer.writeString(String(body.utf8.count))
            buffer.writeStaticString("\r\n\r\n")
            buffer.writeString(body)
            return buffer
        case .confirm, .cancel:
            let action = operation == .confirm ? "confirm" : "cancel"
            return allocator.buffer(
                string: "POST \(ordersPath)/\(job.orderId)/\(action) HTTP/1.1\r\n\(hostLine)Content-Length: 0\r\n\r\n"
            )
        }
    }
}
