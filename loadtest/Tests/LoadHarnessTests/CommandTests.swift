import Testing

@testable import LoadHarness

@Suite("Flags, targets and durations")
struct CommandTests {
    func configuration(_ arguments: [String]) throws -> HarnessConfiguration {
        try LoadgenCommand.parse(arguments).makeConfiguration()
    }

    @Test("targets: URL or name=URL, or a service's instances as URL,URL; loopback only unless --allow-remote")
    func targets() throws {
        let plain = try Target.parse("http://127.0.0.1:8080")
        #expect(plain.name == "127.0.0.1:8080" && plain.port == 8080 && plain.basePath == "" && plain.isLoopback)
        let named = try Target.parse("db=http://localhost:8091/")
        #expect(named.name == "db" && named.connectHost == "127.0.0.1" && named.isLoopback)
        #expect(try Target.parse("http://[::1]:9000").isLoopback)
        #expect(try Target.parse("http://127.9.9.9").port == 80)
        #expect(try !Target.parse("http://10.0.0.5:8080").isLoopback)
        #expect(try !Target.parse("http://example.com:8080").isLoopback)
        #expect(throws: TargetError.self) { try Target.parse("https://127.0.0.1") }
        #expect(throws: TargetError.self) { try Target.parse("127.0.0.1:8080") }
        #expect(throws: TargetError.self) { try Target.parse("http://127.0.0.1:99999") }
        #expect(throws: (any Error).self) { try configuration(["--target", "http://192.168.1.10:8080"]) }
        let spread = try Target.parse("cluster=http://127.0.0.1:8080,http://127.0.0.1:8082")
        #expect(spread.name == "cluster" && spread.instances.map(\.port) == [8080, 8082] && spread.isLoopback)
        #expect(try Target.parse("http://127.0.0.1:8080,http://127.0.0.1:8082").name == "127.0.0.1:8080+1")
        #expect(try !Target.parse("http://127.0.0.1:8080,http://10.0.0.5:8080").isLoopback)
        #expect(throws: TargetError.self) { try Target.parse("http://127.0.0.1:8080/a,http://127.0.0.1:8082/b") }
        let remote = try configuration(["--target", "http://192.168.1.10:8080", "--allow-remote"])
        #expect(remote.targets.map(\.host) == ["192.168.1.10"])
    }

    @Test("durations: 15s, 500ms, 2m, 1.5s, bare seconds")
    func durations() {
        #expect(DurationText.parse("15s") == .seconds(15))
        #expect(DurationText.parse("500ms") == .milliseconds(500))
        #expect(DurationText.parse("2m") == .seconds(120))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        #expect(DurationText.parse("10") == .seconds(10))
        #expect(DurationText.parse("250us") == .microseconds(250))
        #expect(DurationText.parse("fast") == nil)
        #expect(DurationText.parse("-1s") == nil)
    }

    @Test("modes: closed by default for 10s, open with --rate, step with --step-start; every run bounded")
    func modes() throws {
        let plain = try configuration([])
        #expect(plain.mode == .closed && plain.duration == .seconds(10) && plain.connections == 64)
        #expect(plain.targets.map(\.url) == ["http://127.0.0.1:8080"])
        let counted = try configuration(["-n", "1000"])
        #expect(counted.duration == nil && counted.requests == 1000)
        #expect(try configuration(["--rate", "5000", "-d", "5s"]).mode == .open(rate: 5000))
        let step = try configuration(["--step-start", "1000", "--step-add", "500", "--step-every", "2s", "--max-p99", "10ms"])
        #expect(step.mode == .step(.init(start: 1000, add: 500, every: .seconds(2), maxP99Ms: 10, maxRate: 1_000_000)))
        #expect(throws: (any Error).self) { try configuration(["--step-start", "1000", "-n", "50"]) }
        #expect(throws: (any Error).self) { try configuration(["--rate", "1", "--step-start", "1"]) }
        #expect(throws: (any Error).self) { try configuration(["--scenario", "hot", "--items", "10"]) }
        #expect(throws: (any Error).self) { try configuration(["--biz", "Bad.Biz"]) }
        #expect(try configuration(["--scenario", "zipf"]).items == 1000)
        let compare = try configuration(["--target", "redis=http://127.0.0.1:8080", "--target", "db=http://127.0.0.1:8081", "--rounds", "2"])
        #expect(compare.targets.map(\.name) == ["redis", "db"] && compare.rounds == 2)
        #expect(throws: (any Error).self) {
            try configuration(["--target", "a=http://127.0.0.1:1", "--target", "a=http://127.0.0.1:2"])
        }
    }
}
