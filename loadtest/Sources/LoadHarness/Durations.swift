import Foundation

/// Durations as the command line writes them: `15s`, `500ms`, `2m`, `1.5s`, `250us`, `1h` (a bare number is seconds).
public enum DurationText {
    /// Parses a duration; nil when the text is not one or is negative.
    public static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(suffix: String, nanoseconds: Double)] = [
            ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
        ]
        // Longest suffix first so "ms" is not read as "m" + "s".
        for (suffix, scale) in units.sorted(by: { $0.suffix.count > $1.suffix.count }) where trimmed.hasSuffix(suffix) {
            return make(String(trimmed.dropLast(suffix.count)), scale)
        }
        return make(trimmed, 1e9)
    }

    private static func make(_ number: String, _ scale: Double) -> Duration? {
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number), value >= 0,
            value * scale < 9e18
        else { return nil }
        return .nanoseconds(Int64((value * scale).rounded()))
    }

    /// Short human form: `15s`, `500ms`, `1.5s`.
    public static func format(_ duration: Duration) -> String {
        let ns = duration.nanoseconds
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns >= 1_000_000_000 { return "\(Double(ns) / 1e9)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        return "\(Double(ns) / 1e6)ms"
    }
}

extension Duration {
    /// The whole duration in nanoseconds (saturating; load-test durations are far below the limit).
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// The duration in seconds as a floating-point number.
    public var seconds: Double { Double(nanoseconds) / 1e9 }
}
