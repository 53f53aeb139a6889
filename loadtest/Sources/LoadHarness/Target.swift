import Foundation

/// One service the harness drives: a name for the tables (`redis`, `db`, or the host) and an `http://` base URL.
public struct Target: Sendable, Equatable, Codable {
    /// Short name used in tables, file names and ratios.
    public var name: String
    /// Host as written (`127.0.0.1`, `localhost`, `::1`).
    public var host: String
    public var port: Int
    /// Path prefix without a trailing slash ("" for none); every API path is appended to it.
    public var basePath: String
    /// More instances of the same service (same stores): the connections are spread over this one and these,
    /// round robin, as a load balancer would (`name=URL1,URL2`).
    public var others: [Target]?

    /// This instance and the others.
    public var instances: [Target] { [self] + (others ?? []) }

    /// The base URL, normalised.
    public var url: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "http://\(shownHost):\(port)\(basePath)"
    }

    /// The value of the `Host` header.
    public var hostHeader: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(shownHost):\(port)"
    }

    /// True for 127.0.0.0/8, ::1 and `localhost`: the only addresses a load test may aim at without `--allow-remote`.
    public var isLoopback: Bool {
        if let others, !others.allSatisfy(\.isLoopback) { return false }
        let lower = host.lowercased()
        if lower == "localhost" || lower == "::1" || lower == "0:0:0:0:0:0:0:1" { return true }
        let octets = lower.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ UInt8($0) != nil }) else { return false }
        return octets[0] == "127"
    }

    /// The address to connect to: `localhost` is pinned to 127.0.0.1 so a run never depends on the resolver.
    var connectHost: String { host.lowercased() == "localhost" ? "127.0.0.1" : host }

    public init(name: String, host: String, port: Int, basePath: String = "") {
        self.name = name
        self.host = host
        self.port = port
        self.basePath = basePath
    }

    /// Parses `URL` or `name=URL`, or several URLs of one service's instances separated by commas (`name=URL1,URL2`).
    /// Only `http://` is supported (the harness speaks plain HTTP/1.1).
    public static func parse(_ spec: String) throws(TargetError) -> Target {
        var name: String?
        var urlText = spec
        if let equals = spec.firstIndex(of: "="), !spec[..<equals].contains(":"), !spec[..<equals].contains("/") {
            name = String(spec[..<equals])
            urlText = String(spec[spec.index(after: equals)...])
            guard let name, !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw TargetError("target name must be letters, digits, - or _: \(spec)")
            }
        }
        let urls = urlText.split(separator: ",").map(String.init)
        if urls.count > 1 {
            var first = try parse(urls[0])
            first.others = []
            for url in urls.dropFirst() { first.others!.append(try parse(url)) }
            guard first.others!.allSatisfy({ $0.basePath == first.basePath }) else {
                throw TargetError("instances of one target must share a path: \(urlText)")
            }
            first.name = name ?? first.name + "+\(urls.count - 1)"
            return first
        }
        guard urlText.lowercased().hasPrefix("http://") else {
            if urlText.lowercased().hasPrefix("https://") {
                throw TargetError("https is not supported (plain HTTP/1.1 only): \(urlText)")
            }
            throw TargetError("target must be an http:// URL: \(urlText)")
        }
        let rest = urlText.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        while path.hasSuffix("/") { path.removeLast() }
        var host: String
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw TargetError("unbalanced [ in \(urlText)") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                throw TargetError("unexpected text after ] in \(urlText)")
            }
        } else if let colon = authority.firstIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            host = String(authority)
        }
        guard !host.isEmpty else { throw TargetError("no host in \(urlText)") }
        var port = 80
        if let portText {
            guard let parsed = Int(portText), (1...65535).contains(parsed) else {
                throw TargetError("bad port in \(urlText)")
            }
            port = parsed
        }
        guard !path.contains("?"), !path.contains("#") else { throw TargetError("no query or fragment allowed: \(urlText)") }
        host = host.lowercased()
        return Target(name: name ?? "\(host):\(port)", host: host, port: port, basePath: path)
    }
}

/// A `--target` that cannot be used.
public struct TargetError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
