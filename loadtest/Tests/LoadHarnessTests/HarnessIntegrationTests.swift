import Foundation
import Testing

@testable import LoadHarness

/// Whole runs of the harness against the in-process fake service: NIO client, checks, files.
@Suite("Harness against an in-process server")
struct HarnessIntegrationTests {
    func configuration(_ port: Int, _ arguments: [String]) throws -> HarnessConfiguration {
        var config = try LoadgenCommand.parse(["--target", "fake=http://127.0.0.1:\(port)", "--no-files"] + arguments)
            .makeConfiguration()
        config.drain = .milliseconds(200)
        return config
    }

    @Test("hot item with a small stock: exactly the stock succeeds, the rest is 409, checks pass, files written")
    func hotItem() async throws {
        try await FakeInventoryServer.with { server in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("loadgen-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: directory) }
            var config = try configuration(server.port, ["-c", "8", "-n", "300", "--stock", "100", "--biz", "t1", "--healthz"])
            config.outputDirectory = directory
            let outcome = try await Harness(configuration: config, progress: SilentSink()).run()
            let report = outcome.report
            #expect(report.passed)
            #expect(report.phases.map(\.name) == ["healthz", "hot"])
            let hot = report.phases[1]
            #expect(hot.statuses == ["201": 100, "409": 200])
            #expect(hot.errors.isEmpty)
            #expect(report.phases[0].statuses == ["200": 300])
            #expect(report.comparisons.map(\.name) == ["hot/healthz fake"])
            #expect(server.item("t1", 1)?.reserved == 100 && server.item("t1", 1)?.available == 0)
            #expect(outcome.files.count == 2)
            let json = try RunReport.decode(Data(contentsOf: URL(fileURLWithPath: outcome.files[0])))
            #expect(json == report)
            let html = try String(contentsOfFile: outcome.files[1], encoding: .utf8)
            #expect(HTMLReport.chartIds.allSatisfy { html.contains("id=\"\($0)\"") })
        }
    }

    @Test("a service that oversells fails the run")
    func oversellCaught() async throws {
        try await FakeInventoryServer.with(oversell: true) { server in
            let config = try configuration(server.port, ["-c", "4", "-n", "120", "--stock", "100"])
            let report = try await Harness(configuration: config, progress: SilentSink()).run().report
            #expect(!report.passed)
            let failed = report.checks.filter { !$0.passed }.map(\.name)
            #expect(failed.contains("no oversell"))
        }
    }

    @Test("retry: every reserve twice, 201 then a 200 replay; a service that reserves twice is caught")
    func retry() async throws {
        try await FakeInventoryServer.with { server in
            let config = try configuration(server.port, ["--scenario", "retry", "-c", "4", "-n", "100", "--stock", "1000"])
            let report = try await Harness(configuration: config, progress: SilentSink()).run().report
            #expect(report.passed)
            let operations = Dictionary(uniqueKeysWithValues: report.phases[0].operations.map { ($0.operation, $0.statuses) })
            #expect(operations["reserve"] == ["201": 100] && operations["replay"] == ["200": 100])
        }
        try await FakeInventoryServer.with(replayCreates: true) { server in
            let config = try configuration(server.port, ["--scenario", "retry", "-c", "4", "-n", "20", "--stock", "1000"])
            let report = try await Harness(configuration: config, progress: SilentSink()).run().report
            #expect(!report.passed)
            #expect(report.checks.contains { $0.name == "replays" && !$0.passed })
        }
    }

    @Test("lifecycle and multi: confirms and cancels balance; open loop keeps its rate")
    func lifecycleAndOpenLoop() async throws {
        try await FakeInventoryServer.with { server in
            let lifecycle = try configuration(
                server.port, ["--scenario", "lifecycle", "--mix", "confirm=50,cancel=50", "-c", "4", "-n", "200", "--stock", "50"]
            )
            let report = try await Harness(configuration: lifecycle, progress: SilentSink()).run().report
            #expect(report.passed, "\(report.checks)")
            let stock = try #require(report.phases[0].stock)
            #expect(stock.confirmed + stock.cancelled == stock.held)
            #expect(stock.confirmed <= 50)

            let multi = try configuration(server.port, ["--scenario", "multi", "--items", "20", "-c", "4", "-n", "200", "--stock", "30"])
            #expect(try await Harness(configuration: multi, progress: SilentSink()).run().report.passed)

            let open = try configuration(server.port, ["--rate", "400", "-d", "1s", "-c", "4", "--stock", "100000"])
            let phase = try await Harness(configuration: open, progress: SilentSink()).run().report.phases[0]
            #expect(phase.mode == "open" && phase.rate == 400)
            #expect(phase.requests >= 390 && phase.requests <= 401, "\(phase.requests)")
        }
    }

    @Test("a target that is not listening: connect errors, no hang")
    func nothingListening() async throws {
        let port = try await FakeInventoryServer.with { $0.port }
        var config = try configuration(port, ["--scenario", "healthz", "-c", "2", "-n", "4", "--timeout", "500ms"])
        config.timeout = .milliseconds(500)
        let report = try await Harness(configuration: config, progress: SilentSink()).run().report
        #expect(report.phases[0].errors == ["connect": 4])
        #expect(report.phases[0].requests == 0)
    }
}
