/// When a connection's jobs are meant to start in an open-loop run.
///
/// The rate is shared by all connections: connection `index` of `connections` owns the arrivals
/// `start + (index + k·connections) / rate`, so together they arrive evenly at `rate`. A job whose connection is
/// still busy at its intended time is sent as soon as the connection frees up, and its latency still counts from the
/// intended time: the wait is part of what a user would have seen (no coordinated omission).
public struct OpenLoopPacer: Sendable {
    public let start: UInt64
    public let rate: Double
    public let index: Int
    public let connections: Int
    public private(set) var issued = 0

    public init(start: UInt64, rate: Double, index: Int, connections: Int) {
        precondition(rate > 0 && connections > 0 && (0..<connections).contains(index))
        self.start = start
        self.rate = rate
        self.index = index
        self.connections = connections
    }

    /// The intended start of the next job (not consumed).
    public var nextIntended: UInt64 {
        start + UInt64(((Double(index) + Double(issued) * Double(connections)) * 1e9 / rate).rounded())
    }

    /// Consumes the next arrival and returns its intended time.
    public mutating func take() -> UInt64 {
        let time = nextIntended
        issued += 1
        return time
    }
}

/// The decisions of one connection, free of I/O so they can be tested with a made-up clock: which job to send and
/// when, what latency each answer records, what an answer means for the stock ledger.
///
/// Times are nanoseconds on a monotonic clock. In a closed loop a job's latency counts from when it is sent; in an
/// open loop the first request of a job counts from its intended time (see `OpenLoopPacer`). A later step of a job
/// (the confirm after a reserve) follows its predecessor at once, so it counts from when it is sent.
struct DriverCore {
    enum Pacing {
        case closed
        case open(OpenLoopPacer)
    }

    enum Next: Equatable {
        /// Send this operation of the current job now.
        case send(Operation)
        /// Nothing to send before this time.
        case wait(until: UInt64)
        /// No more jobs: the deadline passed or the request budget is spent.
        case finished
    }

    private(set) var pacing: Pacing
    /// Jobs this connection may still start (nil: bounded by the deadline only).
    private(set) var remainingJobs: Int?
    /// How long the phase runs, in nanoseconds (nil: bounded by the job count only).
    let duration: UInt64?
    /// No job starts at or after this time; set by `begin(at:)`.
    private(set) var deadline: UInt64?
    private var begun = false
    var factory: JobFactory
    let recorder: Recorder

    private(set) var job: Job?
    private(set) var step = 0
    private var intended: UInt64 = 0
    private var sent = false
    private var firstStatus = 0

    /// A connection's decisions: `index` of `connections` shares an open-loop rate with the others.
    init(
        mode: LoadMode, index: Int, connections: Int, jobs: Int?, duration: UInt64?, factory: JobFactory, recorder: Recorder
    ) {
        precondition(jobs != nil || duration != nil, "every run is bounded by a duration or a request count")
        switch mode {
        case .closed: pacing = .closed
        case .open(let rate): pacing = .open(OpenLoopPacer(start: 0, rate: rate, index: index, connections: connections))
        }
        remainingJobs = jobs
        self.duration = duration
        self.factory = factory
        self.recorder = recorder
    }

    /// Starts the phase clock (once the connections are open, so connecting is not measured): open-loop arrivals
    /// count from `start`, and no job starts `duration` after it.
    mutating func begin(at start: UInt64) {
        begun = true
        deadline = duration.map { start + $0 }
        if case .open(let pacer) = pacing {
            pacing = .open(OpenLoopPacer(start: start, rate: pacer.rate, index: pacer.index, connections: pacer.connections))
        }
    }

    var isBusy: Bool { job != nil }
    var currentOperation: Operation? { job.flatMap { $0.plan.operation(at: step) } }

    /// Starts the next job if one is due.
    mutating func nextJob(now: UInt64) -> Next {
        precondition(job == nil, "one job at a time per connection")
        precondition(begun, "begin(at:) first")
        if remainingJobs == 0 { return .finished }
        switch pacing {
        case .closed:
            if let deadline, now >= deadline { return .finished }
            intended = now
        case .open(var pacer):
            let due = pacer.nextIntended
            if let deadline, due >= deadline { return .finished }
            if due > now { return .wait(until: due) }
            intended = pacer.take()
            pacing = .open(pacer)
        }
        if let remaining = remainingJobs { remainingJobs = remaining - 1 }
        job = factory.next()
        step = 0
        sent = false
        return .send(job!.plan.operation(at: 0)!)
    }

    /// The current request went out. A closed loop and every later step count latency from here.
    mutating func didSend(now: UInt64) {
        sent = true
        if step > 0 { intended = now }
        if case .closed = pacing, step == 0 { intended = now }
    }

    /// An answer arrived: records it and says whether the job continues.
    mutating func didAnswer(status: Int, replayed: Bool, now: UInt64) -> Next? {
        guard let job, let operation = job.plan.operation(at: step) else { preconditionFailure("answer without a request") }
        let latency = now >= intended ? now - intended : 0
        let outcome = classify(operation, status: status, replayed: replayed)
        recorder.recordAnswer(operation, status: status, latencyNanoseconds: latency, isError: outcome == .unexpected)
        account(operation, job, status: status, replayed: replayed, outcome: outcome)
        if step == 0 { firstStatus = status }
        let proceed = outcome == .success || (operation == .reserve && job.plan == .reserveTwice && outcome == .rejected)
        if proceed, let following = job.plan.operation(at: step + 1) {
            step += 1
            sent = false
            return .send(following)
        }
        finishJob()
        return nil
    }

    /// The current request failed without an answer (or could not be sent): the job ends here.
    mutating func didFail(_ kind: ErrorKind) {
        guard let job, let operation = job.plan.operation(at: step) else { return }
        recorder.recordFailure(kind)
        if sent && operation.mutatesStock {
            for line in job.lines { recorder.ledger[line.item].uncertain += Int64(line.quantity) }
        }
        finishJob()
    }

    private mutating func finishJob() {
        job = nil
        step = 0
        sent = false
        recorder.jobs += 1
    }

    enum Outcome: Equatable {
        case success
        /// 409 to a reserve: not enough stock, nothing held. Expected once a small stock runs out.
        case rejected
        case unexpected
    }

    private func classify(_ operation: Operation, status: Int, replayed: Bool) -> Outcome {
        switch operation {
        case .reserve:
            return status == 201 ? .success : status == 409 ? .rejected : .unexpected
        case .replay:
            // A replay repeats the first answer: 200 + Idempotent-Replayed after a 201, 409 again after a 409.
            if firstStatus == 201 { return status == 200 ? .success : .unexpected }
            return status == firstStatus ? .rejected : .unexpected
        case .confirm, .cancel, .healthz:
            return status == 200 ? .success : .unexpected
        }
    }

    private func account(_ operation: Operation, _ job: Job, status: Int, replayed: Bool, outcome: Outcome) {
        if operation == .replay && status == 201 { recorder.replayCreated += 1 }
        if operation == .replay && status == 200 && !replayed { recorder.replayUnmarked += 1 }
        guard operation.mutatesStock else { return }
        for line in job.lines {
            let quantity = Int64(line.quantity)
            switch (operation, status) {
            case (.reserve, 201), (.replay, 201):
                recorder.ledger[line.item].held += quantity
                recorder.ledger[line.item].successes += 1
                if job.plan == .reserveToExpire { recorder.ledger[line.item].expiring += quantity }
            case (.confirm, 200):
                recorder.ledger[line.item].confirmed += quantity
            case (.cancel, 200):
                recorder.ledger[line.item].cancelled += quantity
            case (_, 500...):
                // 503 and friends: the service may or may not have applied it.
                recorder.ledger[line.item].uncertain += quantity
            default:
                break
            }
        }
    }
}
