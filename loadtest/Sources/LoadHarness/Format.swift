import Foundation

/// Number formatting shared by the progress line, the table and the HTML report.
enum Format {
    /// 1234567 → "1,234,567".
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { out += "," }
            out.append(character)
        }
        return value < 0 ? "-" + out : out
    }

    /// Milliseconds with a precision that suits the size: "0.412ms", "12.3ms", "1,204ms".
    static func ms(_ value: Double) -> String {
        if value < 10 { return String(format: "%.3fms", value) }
        if value < 100 { return String(format: "%.2fms", value) }
        if value < 1000 { return String(format: "%.1fms", value) }
        return grouped(Int(value.rounded())) + "ms"
    }

    /// Requests per second, whole.
    static func rate(_ value: Double) -> String { grouped(Int(value.rounded())) }

    /// A ratio such as 0.512 or 3.41.
    static func ratio(_ value: Double) -> String { String(format: value < 10 ? "%.3f" : "%.1f", value) }

    /// Pads to a width (left-aligned when `left`).
    static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let count = text.count
        if count >= width { return text }
        let padding = String(repeating: " ", count: width - count)
        return left ? text + padding : padding + text
    }

    /// "20261121T175714Z".
    static func stamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// RFC 3339 UTC with milliseconds.
    static func iso(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
