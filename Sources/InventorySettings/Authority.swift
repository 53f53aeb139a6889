/// The parts of an HTTP authority (`Host`, the site of an `Origin`) the settings and the browser guard compare.
public enum Authority {
    /// The host of `host[:port]` or `[v6]:port`, lowercased, without brackets.
    public static func hostName(_ authority: String) -> String {
        let lower = authority.lowercased()
        if lower.hasPrefix("["), let end = lower.firstIndex(of: "]") {
            return String(lower[lower.index(after: lower.startIndex)..<end])
        }
        if lower.filter({ $0 == ":" }).count > 1 { return lower }  // a bare IPv6 address
        return String(lower.split(separator: ":", maxSplits: 1).first ?? "")
    }
}
