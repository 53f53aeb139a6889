import Testing

@testable import LoadHarness

/// The connection's decisions with a made-up clock (nanoseconds): the latency each answer records.
@Suite("Open and closed loop accounting")
struct DriverTests {
    static let ms: UInt64 = 1_000_000

    func core(_ mode: LoadMode, jobs: Int? = nil, duration: UInt64? = nil, scenario: Scenario = .hot, recorder: Recorder)
        -> DriverCore
    {
        let factory = JobFactory(
            scenario: scenario, sampler: ZipfSampler(count: 1, exponent: 0), mix: .standard, orderPrefix: "t-", seed: 1
        )
        return DriverCore(
            mode: mode, index: 0, connections: 1, jobs: jobs, duration: duration, factory: factory, recorder: recorder
        )
    }

    /// Latencies recorded for reserve, in whole milliseconds (the histogram keeps microseconds).
    func recordedMs(_ recorder: Recorder) -> (min: UInt64, max: UInt64, count: UInt64) {
        let histogram = recorder.latency[Operation.reserve.rawValue]
        return (histogram.min / 1000, histogram.max / 1000, histogram.totalCount)
    }

    @Test("open loop: a request sent X late because the connection was busy records latency ≥ X")
    func coordinatedOmission() {
        let recorder = Recorder(items: 1)
        // 100 jobs/s on one connection: intended at 0, 10, 20 ... ms.
        var driver = core(.open(rate: 100), jobs: 3, recorder: recorder)
        driver.begin(at: 0)
        #expect(driver.nextJob(now: 0) == .send(.reserve))
        driver.didSend(now: 0)
        // The service stalls: the first answer comes at 50 ms.
        #expect(driver.didAnswer(status: 201, replayed: false, now: 50 * Self.ms) == nil)
        // The second job was due at 10 ms; it goes out at 50 ms, 40 ms late, and is answered 1 ms later.
        #expect(driver.nextJob(now: 50 * Self.ms) == .send(.reserve))
        driver.didSend(now: 50 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 51 * Self.ms)
        let histogram = recorder.latency[Operation.reserve.rawValue]
        #expect(histogram.totalCount == 2)
        // Recorded: 50 ms and 41 ms (= 40 ms waiting + 1 ms service), not 1 ms.
        #expect(histogram.min >= 40_000 && histogram.min <= 41_100, "min \(histogram.min) µs")
        #expect(histogram.max >= 50_000 && histogram.max <= 50_100)
        // The third job (due at 20 ms) is late too and is sent at once, counted from 20 ms.
        #expect(driver.nextJob(now: 51 * Self.ms) == .send(.reserve))
        driver.didSend(now: 51 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 52 * Self.ms)
        #expect(recorder.latency[Operation.reserve.rawValue].count(within: 31_000...33_000) == 1)
        #expect(driver.nextJob(now: 52 * Self.ms) == .finished)
    }

    @Test("open loop: an idle connection waits for the next intended time; nothing starts at or after the deadline")
    func waitsForSchedule() {
        let recorder = Recorder(items: 1)
        var driver = core(.open(rate: 100), duration: 25 * Self.ms, recorder: recorder)
        driver.begin(at: 1_000 * Self.ms)
        #expect(driver.nextJob(now: 1_000 * Self.ms) == .send(.reserve))
        driver.didSend(now: 1_000 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 1_002 * Self.ms)
        #expect(driver.nextJob(now: 1_002 * Self.ms) == .wait(until: 1_010 * Self.ms))
        #expect(driver.nextJob(now: 1_010 * Self.ms) == .send(.reserve))
        driver.didSend(now: 1_010 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 1_011 * Self.ms)
        #expect(driver.nextJob(now: 1_020 * Self.ms) == .send(.reserve))
        driver.didSend(now: 1_020 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 1_021 * Self.ms)
        // The next arrival (1,030 ms) is past the deadline (1,025 ms).
        #expect(driver.nextJob(now: 1_021 * Self.ms) == .finished)
        // Answers on time record the service time only.
        #expect(recordedMs(recorder).max == 2)
    }

    @Test("the connections of an open loop share the rate evenly")
    func pacerSpread() {
        var times: [UInt64] = []
        for index in 0..<4 {
            var pacer = OpenLoopPacer(start: 0, rate: 1000, index: index, connections: 4)
            for _ in 0..<5 { times.append(pacer.take()) }
        }
        // 1000/s over 4 connections: one arrival every millisecond overall.
        #expect(times.sorted() == (0..<20).map { UInt64($0) * Self.ms })
    }

    @Test("closed loop: latency counts from the send; the job budget ends the connection")
    func closedLoop() {
        let recorder = Recorder(items: 1)
        var driver = core(.closed, jobs: 2, recorder: recorder)
        driver.begin(at: 0)
        #expect(driver.nextJob(now: 5 * Self.ms) == .send(.reserve))
        driver.didSend(now: 7 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 10 * Self.ms)
        #expect(driver.nextJob(now: 10 * Self.ms) == .send(.reserve))
        driver.didSend(now: 10 * Self.ms)
        _ = driver.didAnswer(status: 409, replayed: false, now: 11 * Self.ms)
        #expect(driver.nextJob(now: 11 * Self.ms) == .finished)
        #expect(recordedMs(recorder) == (min: 1, max: 3, count: 2))
        #expect(recorder.ledger[0].successes == 1 && recorder.ledger[0].held == 1)
        #expect(recorder.statuses[Operation.reserve.rawValue] == [201: 1, 409: 1])
        #expect(recorder.errors.isEmpty)
    }

    @Test("retry: the replay follows at once; a 201 to a replay is counted as a violation")
    func retryReplay() {
        let recorder = Recorder(items: 1)
        var driver = core(.closed, jobs: 2, scenario: .retry, recorder: recorder)
        driver.begin(at: 0)
        #expect(driver.nextJob(now: 0) == .send(.reserve))
        driver.didSend(now: 0)
        #expect(driver.didAnswer(status: 201, replayed: false, now: Self.ms) == .send(.replay))
        driver.didSend(now: Self.ms)
        #expect(driver.didAnswer(status: 200, replayed: true, now: 2 * Self.ms) == nil)
        #expect(driver.nextJob(now: 2 * Self.ms) == .send(.reserve))
        driver.didSend(now: 2 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 3 * Self.ms)
        driver.didSend(now: 3 * Self.ms)
        _ = driver.didAnswer(status: 201, replayed: false, now: 4 * Self.ms)
        #expect(recorder.replayCreated == 1)
        #expect(recorder.errors[.status] == 1)
        #expect(recorder.ledger[0].held == 3)
    }

    @Test("a request lost after it was sent makes its quantity uncertain; a connect failure does not")
    func uncertainty() {
        let recorder = Recorder(items: 1)
        var driver = core(.closed, jobs: 3, recorder: recorder)
        driver.begin(at: 0)
        _ = driver.nextJob(now: 0)
        driver.didFail(.connect)
        _ = driver.nextJob(now: 0)
        driver.didSend(now: 0)
        driver.didFail(.timeout)
        _ = driver.nextJob(now: 0)
        driver.didSend(now: 0)
        _ = driver.didAnswer(status: 503, replayed: false, now: Self.ms)
        #expect(recorder.ledger[0].uncertain == 2)
        #expect(recorder.errors == [.connect: 1, .timeout: 1, .status: 1])
    }
}
