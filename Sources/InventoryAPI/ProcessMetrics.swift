import Foundation

/// The process's own gauges in the Prometheus text format, read from /proc when `/metrics` is scraped (the names
/// the Prometheus client libraries use): resident memory, CPU seconds, open file descriptors and their limit, start
/// time. Empty where /proc is not there (not Linux).
enum ProcessMetrics {
    static func text() -> String {
        var lines: [String] = []
        func gauge(_ name: String, _ help: String, _ value: Double?, type: String = "gauge") {
            guard let value else { return }
            lines.append("# HELP \(name) \(help)")
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))")
        }
        let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let stat = statFields()
        // /proc/self/stat after the command name: field 14 utime, 15 stime, 22 starttime (ticks since boot), 23
        // vsize (bytes), 24 rss (pages); indexes here count from field 3.
        gauge("process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
            stat.flatMap { fields in
                guard let user = Double(fields[safe: 11] ?? ""), let system = Double(fields[safe: 12] ?? "") else { return nil }
                return (user + system) / ticks
            }, type: "counter")
        gauge("process_resident_memory_bytes", "Resident memory size, in bytes.",
            stat.flatMap { Double($0[safe: 21] ?? "") }.map { $0 * pageSize })
        gauge("process_virtual_memory_bytes", "Virtual memory size, in bytes.", stat.flatMap { Double($0[safe: 20] ?? "") })
        if let started = stat.flatMap({ Double($0[safe: 19] ?? "") }), let boot = bootTime() {
            gauge("process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", boot + started / ticks)
        }
        gauge("process_open_fds", "Open file descriptors.",
            (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map { Double($0.count) })
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            gauge("process_max_fds", "Maximum number of open file descriptors.", Double(limit.rlim_cur))
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// The fields of /proc/self/stat after the command name (which may hold spaces), from field 3 (state) on.
    static func statFields() -> [String]? {
        guard let text = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        return text[text.index(after: close)...].split(separator: " ").map(String.init)
    }

    /// When the machine booted (Unix seconds), from /proc/stat's btime.
    static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst("btime ".count))
        }
        return nil
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
