import ArgumentParser
import FaultSuite
import Foundation

/// `faults`: the fault-injection suite, against Redis and MariaDB servers of its own and the real `inventoryd`.
@main
struct Faults: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Injects faults under load into a real inventoryd and checks that nothing is lost or oversold."
    )

    @Flag(help: "The long run (30 s MariaDB outage, several injections of each fault); default: the quick run.")
    var full = false

    @Option(help: "Run only these faults (comma-separated): \(Fault.allCases.map(\.rawValue).joined(separator: ", ")).")
    var only: String?

    @Option(help: "Run only the scenarios of this durability mode (sync or async).")
    var durability: String?

    @Flag(help: "Run the service on a Redis Cluster of three masters (a restart or a slow node hits one master, FLUSHALL and a full memory hit every master).")
    var cluster = false

    @Option(help: "The inventoryd binary to run.")
    var inventoryd = ".build/release/inventoryd"

    @Option(help: "Where the suite's servers keep their data and every process its log.")
    var directory = ".local/faults"

    @Option(help: "Directory for the JSON and Markdown results.")
    var results = "loadtest/results"

    func run() async throws {
        var selected: Set<Fault>?
        if let only {
            selected = Set(try only.split(separator: ",").map { name in
                guard let fault = Fault(rawValue: String(name)) else { throw ValidationError("unknown fault \(name)") }
                return fault
            })
        }
        guard FileManager.default.isExecutableFile(atPath: inventoryd) else {
            throw ValidationError("no inventoryd at \(inventoryd): build it first (swift build -c release --product inventoryd)")
        }
        let runDirectory = "\(directory)/\(Self.stamp())"
        let runner = FaultRunner(profile: full ? .full : .quick, inventoryd: inventoryd, directory: runDirectory) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        let outcome = try await runner.run(only: selected, durability: durability, cluster: cluster)
        let table = FaultRunner.markdown(outcome)
        print(table)
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        let base = "\(results)/faults-\(Self.stamp())-\(full ? "full" : "quick")\(cluster ? "-cluster" : "")"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(outcome).write(to: URL(fileURLWithPath: base + ".json"))
        try (table + "\n").write(toFile: base + ".md", atomically: true, encoding: .utf8)
        FileHandle.standardError.write(Data("results: \(base).json, \(base).md\n".utf8))
        if outcome.contains(where: { !$0.passed }) { throw ExitCode(1) }
    }

    static func stamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date())
    }
}
