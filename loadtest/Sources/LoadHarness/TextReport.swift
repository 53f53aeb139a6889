/// The final table printed at the end of a run.
public enum TextReport {
    public static func render(_ report: RunReport, files: [String]) -> String {
        var out = ""
        let settings = report.settings
        var header = "loadgen \(settings.scenario.rawValue): \(settings.mode) loop, \(settings.connections) connections, "
        header += "\(settings.threads) threads"
        if let duration = settings.durationSeconds { header += ", \(duration)s" }
        if let requests = settings.requests { header += ", \(Format.grouped(requests)) requests" }
        if let rate = settings.rate { header += ", \(Format.rate(rate))/s offered" }
        if settings.scenario.reservesStock { header += ", bizId \(settings.bizId)" }
        out += header + "\n\n"

        let width = max(8, report.phases.map(\.name.count).max() ?? 0)
        let columns = ["requests", "TPS", "p50", "p90", "p99", "p99.9", "max", "errors"]
        out += Format.pad("phase", width, left: true) + columns.map { Format.pad($0, 11) }.joined() + "\n"
        for phase in report.phases {
            let l = phase.latencyMs
            let cells = [
                Format.grouped(phase.requests), Format.rate(phase.tps), Format.ms(l.p50), Format.ms(l.p90), Format.ms(l.p99),
                Format.ms(l.p999), Format.ms(l.max), Format.grouped(phase.errorCount),
            ]
            out += Format.pad(phase.name, width, left: true) + cells.map { Format.pad($0, 11) }.joined() + "\n"
        }

        out += "\nanswers by status, errors by kind:\n"
        for phase in report.phases {
            var parts: [String] = []
            for operation in phase.operations {
                let statuses = operation.statuses.sorted { $0.key < $1.key }.map { "\($0.key) ×\(Format.grouped($0.value))" }
                parts.append("\(operation.operation) \(statuses.joined(separator: ", "))")
            }
            let errors = phase.errors.filter { $0.value > 0 }.sorted { $0.key < $1.key }
            parts.append(errors.isEmpty ? "no errors" : "errors: " + errors.map { "\($0.key) \(Format.grouped($0.value))" }.joined(separator: ", "))
            out += "  \(Format.pad(phase.name, width, left: true))  \(parts.joined(separator: "; "))\n"
        }

        for phase in report.phases {
            guard let steps = phase.steps else { continue }
            out += "\nsteps of \(phase.name) (limit p99 ≤ \(Format.ms(settings.maxP99Ms ?? 0))):\n"
            out += "  " + ["offered", "achieved", "requests", "errors", "p99", "held"].map { Format.pad($0, 11) }.joined() + "\n"
            for step in steps {
                let cells = [
                    Format.rate(step.rate), Format.rate(step.achievedRate), Format.grouped(step.requests),
                    Format.grouped(step.errors), Format.ms(step.p99Ms), step.held ? "yes" : "no",
                ]
                out += "  " + cells.map { Format.pad($0, 11) }.joined() + "\n"
            }
            out += phase.heldRate.map { "  highest rate that held: \(Format.rate($0))/s\n" } ?? "  no step held the limit\n"
        }

        if !report.comparisons.isEmpty {
            out += "\nratios:\n"
            for comparison in report.comparisons {
                var line = "  \(Format.pad(comparison.name, 28, left: true)) \(Format.pad(Format.ratio(comparison.value), 8))"
                line += "   \(comparison.detail)"
                if let target = comparison.target {
                    line += "   design ≥ \(Format.ratio(target)): \(comparison.met == true ? "met" : "MISSED")"
                }
                out += line + "\n"
            }
        }

        if !report.checks.isEmpty {
            out += "\ncorrectness:\n"
            for check in report.checks {
                out += "  \(check.passed ? "PASS" : "FAIL")  \(check.phase): \(check.name): \(check.detail)\n"
            }
        }
        out += "\nresult: \(report.passed ? "PASS" : "FAIL")\n"
        if !files.isEmpty { out += "written: \(files.joined(separator: ", "))\n" }
        return out
    }
}
