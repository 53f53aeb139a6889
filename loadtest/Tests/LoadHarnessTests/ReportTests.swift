import Foundation
import Testing

@testable import LoadHarness

/// The result file and the HTML report, from a phase measured with a made-up clock.
@Suite("Result JSON and HTML report")
struct ReportTests {
    /// A hot-item phase: 1,000 answers from 1 to 1,000 µs... plus a slow tail, over three "seconds".
    static func sampleReport(name: String = "hot") -> RunReport {
        let recorder = Recorder(items: 1)
        for index in 1...1000 {
            recorder.recordAnswer(.reserve, status: index <= 900 ? 201 : 409, latencyNanoseconds: UInt64(index) * 1000, isError: false)
        }
        recorder.recordAnswer(.reserve, status: 503, latencyNanoseconds: 250_000_000, isError: true)
        recorder.recordFailure(.timeout)
        recorder.ledger[0].held = 900
        recorder.ledger[0].successes = 900
        let timeline = (1...3).map { second in
            TimelinePoint(
                t: Double(second), requests: 333, rate: 333, errors: second == 3 ? 2 : 0, p50Ms: 0.5, p90Ms: 0.9,
                p99Ms: 1.0, maxMs: second == 3 ? 250 : 1
            )
        }
        let measurement = PhaseMeasurement(elapsedSeconds: 3, totals: recorder.totals(), timeline: timeline)
        let target = Target(name: "redis", host: "127.0.0.1", port: 8080)
        var phase = PhaseReport(
            name: name, target: target, scenario: .hot, round: 1, mode: .closed, connections: 64, measurement: measurement
        )
        phase.stock = StockSummary(
            bizId: "lt1", items: 1, stockPerItem: 1000, successes: 900, held: 900, confirmed: 0, cancelled: 0, expiring: 0,
            uncertain: 1, observedAvailable: 100, observedReserved: 900
        )
        var health = PhaseReport(
            name: "healthz", target: target, scenario: .healthz, round: nil, mode: .closed, connections: 64,
            measurement: PhaseMeasurement(elapsedSeconds: 3, totals: Recorder(items: 1).totals(), timeline: [])
        )
        health.tps = 1000
        let phases = [health, phase]
        let settings = RunSettings(
            scenario: .hot, mode: "closed", connections: 64, threads: 2, durationSeconds: 3, requests: nil, rate: nil,
            stepStart: nil, stepAdd: nil, stepEverySeconds: nil, maxP99Ms: nil, items: 1, zipfS: 1.1,
            mix: LifecycleMix.standard.description, stock: 1000, bizId: "lt1", rounds: 1, healthz: true, timeoutSeconds: 5,
            drainSeconds: 5, seed: 1, targets: [target]
        )
        let checks = StockChecks.evaluate(
            phase: name, ledgers: [ItemLedger(stock: 1000).with(held: 900)],
            observed: [StockObservation(available: 100, reserved: 900)]
        )
        return RunReport(
            startedAt: "2026-01-01T00:00:00.000Z", finishedAt: "2026-01-01T00:00:04.000Z", command: ["loadgen", "--healthz"],
            settings: settings, phases: phases,
            comparisons: Harness.comparisons(phases, scenario: .hot, targets: [target]), checks: checks,
            passed: checks.allSatisfy(\.passed)
        )
    }

    @Test("a phase report carries TPS, percentiles, statuses and errors by kind")
    func phaseNumbers() throws {
        let phase = Self.sampleReport().phases[1]
        #expect(phase.requests == 1001)
        #expect(abs(phase.tps - 333.7) < 0.1)
        #expect(abs(phase.latencyMs.p50 - 0.5) < 0.01)
        #expect(abs(phase.latencyMs.p99 - 0.99) < 0.01)
        #expect(phase.latencyMs.max >= 250 && phase.latencyMs.max < 251)
        #expect(phase.statuses == ["201": 900, "409": 100, "503": 1])
        #expect(phase.errors == ["status": 1, "timeout": 1])
        #expect(phase.errorCount == 2)
        #expect(phase.distribution.first?.percentile == 0)
        #expect(phase.distribution.last?.percentile == 100)
        #expect(phase.distribution.map(\.ms) == phase.distribution.map(\.ms).sorted())
    }

    @Test("the JSON result round-trips and names its fields plainly")
    func json() throws {
        let report = Self.sampleReport()
        let data = try report.json()
        #expect(try RunReport.decode(data) == report)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["tool"] as? String == "loadgen")
        #expect(object["passed"] as? Bool == true)
        let phases = try #require(object["phases"] as? [[String: Any]])
        let hot = phases[1]
        #expect(hot["tps"] as? Double != nil)
        let latency = try #require(hot["latencyMs"] as? [String: Any])
        #expect(Set(latency.keys) == ["p50", "p90", "p99", "p999", "max", "mean"])
        #expect((hot["timeline"] as? [Any])?.count == 3)
        let comparisons = try #require(object["comparisons"] as? [[String: Any]])
        #expect(comparisons.first?["name"] as? String == "hot/healthz redis")
        #expect(abs((comparisons.first?["value"] as? Double ?? 0) - 0.334) < 0.001)
    }

    @Test("the HTML report is one self-contained page with the three charts")
    func html() throws {
        let html = HTMLReport.render(Self.sampleReport(name: "hot <b>&"))
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.hasSuffix("</html>\n"))
        for id in HTMLReport.chartIds {
            #expect(html.contains("<svg id=\"\(id)\""), "chart \(id)")
        }
        #expect(html.components(separatedBy: "<svg ").count - 1 == 3)
        #expect(html.components(separatedBy: "</svg>").count - 1 == 3)
        // Lines drawn: throughput (2 phases, one with points), latency p50/p99, distribution.
        #expect(html.components(separatedBy: "<polyline").count - 1 >= 4)
        for tag in ["html", "head", "body", "table", "style", "title", "h2"] {
            #expect(
                html.components(separatedBy: "<\(tag)").count == html.components(separatedBy: "</\(tag)>").count,
                "unbalanced <\(tag)>"
            )
        }
        // Nothing is fetched: no script, no stylesheet link, no image source.
        #expect(!html.contains("<script"))
        #expect(!html.contains("<link"))
        #expect(!html.contains("src="))
        #expect(!html.contains("href="))
        // Names are escaped.
        #expect(html.contains("hot &lt;b&gt;&amp;"))
        #expect(!html.contains("hot <b>&"))
        #expect(html.contains("PASS"))
    }

    @Test("percentile axis: 90% → 1, 99% → 2, 99.9% → 3")
    func percentileAxis() {
        #expect(Chart.percentileX(0) == 0)
        #expect(abs(Chart.percentileX(90) - 1) < 1e-9)
        #expect(abs(Chart.percentileX(99) - 2) < 1e-9)
        #expect(abs(Chart.percentileX(99.9) - 3) < 1e-9)
        #expect(Chart.niceCeiling(7.3) == 10)
        #expect(Chart.niceCeiling(0.23) == 0.25)
        #expect(Chart.niceCeiling(31_000) == 50_000)
    }

    @Test("the final table lists each phase, the ratio against healthz and the verdict")
    func table() {
        let text = TextReport.render(Self.sampleReport(), files: ["x.json", "x.html"])
        #expect(text.contains("healthz"))
        #expect(text.contains("reserve 201 ×900, 409 ×100, 503 ×1"))
        #expect(text.contains("errors: status 1, timeout 1"))
        #expect(text.contains("hot/healthz redis"))
        #expect(text.contains("design ≥ 0.550: MISSED"))
        #expect(text.contains("result: PASS"))
        #expect(text.contains("written: x.json, x.html"))
    }
}

extension ItemLedger {
    func with(held: Int64 = 0, confirmed: Int64 = 0, cancelled: Int64 = 0, expiring: Int64 = 0, uncertain: Int64 = 0)
        -> ItemLedger
    {
        var ledger = self
        ledger.held = held
        ledger.successes = held
        ledger.confirmed = confirmed
        ledger.cancelled = cancelled
        ledger.expiring = expiring
        ledger.uncertain = uncertain
        return ledger
    }
}
