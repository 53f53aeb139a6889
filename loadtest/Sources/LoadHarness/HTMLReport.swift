import Foundation

/// The self-contained HTML report of a run: tables and three inline SVG charts (throughput over time, latency
/// percentiles over time, the percentile distribution). No script, no external file: it opens from disk anywhere.
public enum HTMLReport {
    /// The ids of the three charts, in page order.
    public static let chartIds = ["chart-throughput", "chart-latency", "chart-distribution"]

    public static func render(_ report: RunReport) -> String {
        var html = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <title>loadgen \(escape(report.settings.scenario.rawValue)) \(escape(report.startedAt))</title>
            <style>
            body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #1d2430; }
            h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #d8dde6; }
            table { border-collapse: collapse; margin: 8px 0; }
            th, td { padding: 3px 10px; border-bottom: 1px solid #e6e9ef; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            th { background: #f3f5f9; }
            .pass { color: #17803d; font-weight: 600; } .fail { color: #b42318; font-weight: 600; }
            .muted { color: #667085; } code { background: #f3f5f9; padding: 1px 4px; }
            svg { background: #fff; border: 1px solid #e6e9ef; }
            svg text { font: 11px system-ui, sans-serif; fill: #475467; }
            </style>
            </head>
            <body>

            """
        let verdict = report.passed ? "<span class=\"pass\">PASS</span>" : "<span class=\"fail\">FAIL</span>"
        html += "<h1>loadgen: \(escape(report.settings.scenario.rawValue)) \(verdict)</h1>\n"
        html += "<p class=\"muted\">\(escape(report.startedAt)) → \(escape(report.finishedAt))<br><code>"
        html += escape(report.command.joined(separator: " ")) + "</code></p>\n"

        html += "<h2>Summary</h2>\n" + summaryTable(report.phases)
        if !report.comparisons.isEmpty { html += "<h2>Ratios</h2>\n" + comparisonTable(report.comparisons) }
        if !report.checks.isEmpty { html += "<h2>Correctness</h2>\n" + checkTable(report.checks) }
        for phase in report.phases where phase.steps != nil { html += "<h2>Steps: \(escape(phase.name))</h2>\n" + stepTable(phase) }

        let colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f"]
        func color(_ index: Int) -> String { colors[index % colors.count] }

        html += "<h2>Throughput over time</h2>\n"
        html += Chart(
            id: chartIds[0], title: "answered requests per second", xLabel: "seconds since the phase started", yLabel: "req/s",
            series: report.phases.enumerated().map { index, phase in
                Chart.Series(name: phase.name, color: color(index), points: phase.timeline.map { ($0.t, $0.rate) })
            }
        ).svg()

        html += "<h2>Latency percentiles over time</h2>\n"
        var latencySeries: [Chart.Series] = []
        for (index, phase) in report.phases.enumerated() {
            latencySeries.append(Chart.Series(name: "\(phase.name) p99", color: color(index), points: phase.timeline.map { ($0.t, $0.p99Ms) }))
            latencySeries.append(
                Chart.Series(name: "\(phase.name) p50", color: color(index), dashed: true, points: phase.timeline.map { ($0.t, $0.p50Ms) })
            )
        }
        html += Chart(
            id: chartIds[1], title: "p99 (solid) and p50 (dashed) of each second", xLabel: "seconds since the phase started",
            yLabel: "ms", series: latencySeries
        ).svg()

        html += "<h2>Percentile distribution</h2>\n"
        html += Chart(
            id: chartIds[2], title: "latency by percentile (all answers of the phase)", xLabel: "percentile", yLabel: "ms",
            series: report.phases.enumerated().map { index, phase in
                Chart.Series(
                    name: phase.name, color: color(index),
                    points: phase.distribution.filter { $0.percentile < 100 }.map { (Chart.percentileX($0.percentile), $0.ms) }
                )
            },
            percentileAxis: true
        ).svg()

        html += "<h2>Answers and errors</h2>\n" + statusTable(report.phases)
        html += "<h2>Settings</h2>\n" + settingsTable(report.settings)
        html += "</body>\n</html>\n"
        return html
    }

    // MARK: Tables

    private static func summaryTable(_ phases: [PhaseReport]) -> String {
        var rows = "<table>\n<tr><th>phase</th><th>target</th><th>requests</th><th>TPS</th><th>p50</th><th>p90</th>"
        rows += "<th>p99</th><th>p99.9</th><th>max</th><th>errors</th></tr>\n"
        for phase in phases {
            let l = phase.latencyMs
            rows += "<tr><td>\(escape(phase.name))</td><td>\(escape(phase.target))</td><td>\(Format.grouped(phase.requests))</td>"
            rows += "<td>\(Format.rate(phase.tps))</td><td>\(Format.ms(l.p50))</td><td>\(Format.ms(l.p90))</td>"
            rows += "<td>\(Format.ms(l.p99))</td><td>\(Format.ms(l.p999))</td><td>\(Format.ms(l.max))</td>"
            rows += "<td>\(Format.grouped(phase.errorCount))</td></tr>\n"
        }
        return rows + "</table>\n"
    }

    private static func comparisonTable(_ comparisons: [Comparison]) -> String {
        var rows = "<table>\n<tr><th>ratio</th><th>value</th><th>design target</th><th>from</th></tr>\n"
        for comparison in comparisons {
            let target: String
            switch comparison.met {
            case .some(true): target = "<span class=\"pass\">≥ \(Format.ratio(comparison.target!)) met</span>"
            case .some(false): target = "<span class=\"fail\">≥ \(Format.ratio(comparison.target!)) missed</span>"
            case .none: target = ""
            }
            rows += "<tr><td>\(escape(comparison.name))</td><td>\(Format.ratio(comparison.value))</td><td>\(target)</td>"
            rows += "<td>\(escape(comparison.detail))</td></tr>\n"
        }
        return rows + "</table>\n"
    }

    private static func checkTable(_ checks: [CheckResult]) -> String {
        var rows = "<table>\n<tr><th>phase</th><th>check</th><th>result</th><th>detail</th></tr>\n"
        for check in checks {
            let result = check.passed ? "<span class=\"pass\">PASS</span>" : "<span class=\"fail\">FAIL</span>"
            rows += "<tr><td>\(escape(check.phase))</td><td>\(escape(check.name))</td><td>\(result)</td>"
            rows += "<td style=\"text-align:left\">\(escape(check.detail))</td></tr>\n"
        }
        return rows + "</table>\n"
    }

    private static func stepTable(_ phase: PhaseReport) -> String {
        var rows = "<table>\n<tr><th>offered rate</th><th>achieved</th><th>requests</th><th>errors</th><th>p99</th><th>held</th></tr>\n"
        for step in phase.steps ?? [] {
            let held = step.held ? "<span class=\"pass\">yes</span>" : "<span class=\"fail\">no</span>"
            rows += "<tr><td>\(Format.rate(step.rate))</td><td>\(Format.rate(step.achievedRate))</td>"
            rows += "<td>\(Format.grouped(step.requests))</td><td>\(Format.grouped(step.errors))</td>"
            rows += "<td>\(Format.ms(step.p99Ms))</td><td>\(held)</td></tr>\n"
        }
        rows += "</table>\n"
        if let held = phase.heldRate {
            rows += "<p>Highest rate that held the limit: <b>\(Format.rate(held))/s</b></p>\n"
        } else {
            rows += "<p class=\"fail\">No step held the limit.</p>\n"
        }
        return rows
    }

    private static func statusTable(_ phases: [PhaseReport]) -> String {
        var rows = "<table>\n<tr><th>phase</th><th>operation</th><th>requests</th><th>p99</th><th>statuses</th></tr>\n"
        for phase in phases {
            for operation in phase.operations {
                let statuses = operation.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \(Format.grouped($0.value))" }
                rows += "<tr><td>\(escape(phase.name))</td><td>\(escape(operation.operation))</td>"
                rows += "<td>\(Format.grouped(operation.requests))</td><td>\(Format.ms(operation.latencyMs.p99))</td>"
                rows += "<td>\(escape(statuses.joined(separator: ", ")))</td></tr>\n"
            }
            let errors = phase.errors.sorted { $0.key < $1.key }.map { "\($0.key): \(Format.grouped($0.value))" }
            if !errors.isEmpty {
                rows += "<tr><td>\(escape(phase.name))</td><td>errors</td><td>\(Format.grouped(phase.errorCount))</td><td></td>"
                rows += "<td>\(escape(errors.joined(separator: ", ")))</td></tr>\n"
            }
        }
        return rows + "</table>\n"
    }

    private static func settingsTable(_ settings: RunSettings) -> String {
        var pairs: [(String, String)] = [
            ("scenario", settings.scenario.rawValue), ("mode", settings.mode), ("connections", "\(settings.connections)"),
            ("threads", "\(settings.threads)"), ("items", "\(settings.items)"), ("stock per item", Format.grouped(Int(settings.stock))),
            ("bizId", settings.bizId), ("rounds", "\(settings.rounds)"), ("healthz phase", settings.healthz ? "yes" : "no"),
            ("timeout", "\(settings.timeoutSeconds)s"), ("seed", "\(settings.seed)"),
            ("targets", settings.targets.map { "\($0.name)=\($0.url)" }.joined(separator: " ")),
        ]
        if let duration = settings.durationSeconds { pairs.append(("duration", "\(duration)s")) }
        if let requests = settings.requests { pairs.append(("requests", Format.grouped(requests))) }
        if let rate = settings.rate { pairs.append(("rate", Format.rate(rate))) }
        if settings.scenario == .zipf || settings.scenario == .multi { pairs.append(("zipf s", "\(settings.zipfS)")) }
        if settings.scenario == .lifecycle || settings.scenario == .mixed { pairs.append(("mix", settings.mix)) }
        var rows = "<table>\n"
        for (name, value) in pairs { rows += "<tr><td>\(escape(name))</td><td style=\"text-align:left\">\(escape(value))</td></tr>\n" }
        return rows + "</table>\n"
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}

/// A line chart drawn as inline SVG.
struct Chart {
    struct Series {
        var name: String
        var color: String
        var dashed = false
        var points: [(Double, Double)]
    }

    var id: String
    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var percentileAxis = false

    private let width = 960.0
    private let height = 340.0
    private let left = 64.0
    private let right = 20.0
    private let top = 46.0
    private let bottom = 44.0

    init(id: String, title: String, xLabel: String, yLabel: String, series: [Series], percentileAxis: Bool = false) {
        self.id = id
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.percentileAxis = percentileAxis
    }

    /// x position of a percentile on the 1/(1−p) log scale: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3 ...
    static func percentileX(_ percentile: Double) -> Double {
        log10(1 / Swift.max(1 - percentile / 100, 1e-7))
    }

    func svg() -> String {
        let allPoints = series.flatMap(\.points)
        let maxX = Swift.max(allPoints.map(\.0).max() ?? 1, percentileAxis ? 3 : 1)
        let maxY = Chart.niceCeiling(Swift.max(allPoints.map(\.1).max() ?? 1, 1e-3))
        let plotWidth = width - left - right
        let plotHeight = height - top - bottom
        func x(_ value: Double) -> Double { left + value / maxX * plotWidth }
        func y(_ value: Double) -> Double { top + plotHeight - value / maxY * plotHeight }
        func n(_ value: Double) -> String { String(format: "%.1f", value) }

        var svg = "<svg id=\"\(id)\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\""
        svg += " width=\"100%\" role=\"img\" aria-label=\"\(HTMLReport.escape(title))\">\n"
        svg += "<title>\(HTMLReport.escape(title))</title>\n"
        // Grid and y ticks.
        for tick in 0...5 {
            let value = maxY * Double(tick) / 5
            svg += "<line x1=\"\(n(left))\" y1=\"\(n(y(value)))\" x2=\"\(n(width - right))\" y2=\"\(n(y(value)))\" stroke=\"#eef0f4\"/>"
            svg += "<text x=\"\(n(left - 6))\" y=\"\(n(y(value) + 4))\" text-anchor=\"end\">\(Chart.label(value))</text>\n"
        }
        // x ticks.
        if percentileAxis {
            let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
            for decade in 0...Int(maxX.rounded(.down)) where decade < labels.count {
                let position = x(Double(decade))
                svg += "<line x1=\"\(n(position))\" y1=\"\(n(top))\" x2=\"\(n(position))\" y2=\"\(n(top + plotHeight))\" stroke=\"#eef0f4\"/>"
                svg += "<text x=\"\(n(position))\" y=\"\(n(top + plotHeight + 16))\" text-anchor=\"middle\">\(labels[decade])</text>\n"
            }
        } else {
            let step = Chart.niceCeiling(maxX / 8)
            var value = 0.0
            while value <= maxX + 1e-9 {
                svg += "<text x=\"\(n(x(value)))\" y=\"\(n(top + plotHeight + 16))\" text-anchor=\"middle\">\(Chart.label(value))</text>\n"
                value += step
            }
        }
        svg += "<line x1=\"\(n(left))\" y1=\"\(n(top + plotHeight))\" x2=\"\(n(width - right))\" y2=\"\(n(top + plotHeight))\" stroke=\"#98a2b3\"/>"
        svg += "<line x1=\"\(n(left))\" y1=\"\(n(top))\" x2=\"\(n(left))\" y2=\"\(n(top + plotHeight))\" stroke=\"#98a2b3\"/>\n"
        svg += "<text x=\"\(n(left + plotWidth / 2))\" y=\"\(n(height - 8))\" text-anchor=\"middle\">\(HTMLReport.escape(xLabel))</text>\n"
        svg += "<text x=\"14\" y=\"\(n(top + plotHeight / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(n(top + plotHeight / 2)))\">"
        svg += "\(HTMLReport.escape(yLabel))</text>\n"
        // Lines.
        for line in series where !line.points.isEmpty {
            let path = line.points.map { "\(n(x($0.0))),\(n(y($0.1)))" }.joined(separator: " ")
            svg += "<polyline class=\"series\" fill=\"none\" stroke=\"\(line.color)\" stroke-width=\"1.8\""
            if line.dashed { svg += " stroke-dasharray=\"5 4\"" }
            svg += " points=\"\(path)\"><title>\(HTMLReport.escape(line.name))</title></polyline>\n"
            if line.points.count == 1, let point = line.points.first {
                svg += "<circle cx=\"\(n(x(point.0)))\" cy=\"\(n(y(point.1)))\" r=\"3\" fill=\"\(line.color)\"/>\n"
            }
        }
        // Legend.
        var legendX = left
        var legendY = 12.0
        for line in series {
            let itemWidth = 30 + Double(line.name.count) * 6.2
            if legendX + itemWidth > width - right && legendX > left {
                legendX = left
                legendY += 14
                if legendY > top - 8 { break }
            }
            svg += "<line x1=\"\(n(legendX))\" y1=\"\(n(legendY))\" x2=\"\(n(legendX + 18))\" y2=\"\(n(legendY))\" stroke=\"\(line.color)\" stroke-width=\"2\""
            if line.dashed { svg += " stroke-dasharray=\"5 4\"" }
            svg += "/><text x=\"\(n(legendX + 22))\" y=\"\(n(legendY + 4))\">\(HTMLReport.escape(line.name))</text>\n"
            legendX += itemWidth
        }
        if allPoints.isEmpty {
            svg += "<text x=\"\(n(left + plotWidth / 2))\" y=\"\(n(top + plotHeight / 2))\" text-anchor=\"middle\">no data</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// The smallest 1, 2, 2.5 or 5 × 10^k at or above `value`.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let magnitude = pow(10, (log10(value)).rounded(.down))
        for factor in [1.0, 2.0, 2.5, 5.0, 10.0] where factor * magnitude >= value * (1 - 1e-9) { return factor * magnitude }
        return 10 * magnitude
    }

    static func label(_ value: Double) -> String {
        if value == value.rounded() && value < 1000 { return String(Int(value)) }
        if value >= 1000 { return Format.grouped(Int(value.rounded())) }
        if value >= 10 { return String(format: "%.0f", value) }
        if value >= 1 { return String(format: "%.1f", value) }
        return String(format: "%.2f", value)
    }
}
