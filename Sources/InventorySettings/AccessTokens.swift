import Crypto
import Inventory
import Foundation

/// Who may call what: bearer tokens, each with a role, kept only as SHA-256 digests and compared in constant time.
///
/// Entries come from `INVENTORY_TOKENS` (comma-separated) and `INVENTORY_TOKENS_FILE` (one per line, `#` starts a
/// comment), each `ROLE:sha256:HEX` (the digest of the token, as `inventoryd token` prints it: the secret itself is
/// not in the configuration) or `ROLE:TOKEN` (digested when read). Several entries per role let a token be rotated:
/// add the new one, move the clients, remove the old one.
///
/// `ROLE@BIZ+BIZ:…` limits a token to those businesses: it may call only routes that name one of them (orders under
/// `/v1/businesses/{bizId}/…`, the old order paths for business `default`, a reserve's `bizId`, `/v1/stock/{bizId}/…`),
/// and nothing that lists every business (status, metrics). Without `@` a token may touch every business.
public struct AccessTokens: Sendable, Equatable {
    /// What a token may do.
    public enum Role: String, Sendable, CaseIterable {
        /// Reservations (reserve, confirm, cancel, refund, read) and stock reads.
        case checkout
        /// Everything: stock writes, adjustments, code pools, code upload and export, status.
        case admin
    }

    struct Entry: Sendable, Equatable {
        let role: Role
        let digest: [UInt8]
        /// The businesses the token may touch; nil for all.
        var businesses: Set<String>? = nil
    }

    /// What a presented token may do: its role, and the businesses it may touch (nil: all).
    public struct Grant: Sendable, Equatable {
        public let role: Role
        public let businesses: Set<String>?

        public init(role: Role, businesses: Set<String>? = nil) {
            self.role = role
            self.businesses = businesses
        }

        /// Whether the token may touch `bizId`.
        public func allows(_ bizId: String) -> Bool { businesses?.contains(bizId) ?? true }
    }

    private(set) var entries: [Entry] = []

    /// No tokens: the API is open, and the service listens on loopback only.
    public init() {}

    /// Whether any token is configured.
    public var isEmpty: Bool { entries.isEmpty }

    /// How many tokens each role has (for the start-up log line; never the tokens).
    public var counts: [Role: Int] {
        entries.reduce(into: [:]) { $0[$1.role, default: 0] += 1 }
    }

    /// Parses entries; throws naming `source` and the entry's position (never its secret) when one is malformed.
    public static func parse(_ text: String, separator: Character, source: String) throws -> AccessTokens {
        var tokens = AccessTokens()
        // Lines end in \n or \r\n (one Character in Swift, which a split on "\n" would not see).
        let entries = separator == "\n"
            ? text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            : text.split(separator: separator, omittingEmptySubsequences: false)
        for (index, raw) in entries.enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let entry = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if entry.isEmpty { continue }
            let position = separator == "\n" ? "line \(index + 1)" : "entry \(index + 1)"
            guard let colon = entry.firstIndex(of: ":") else {
                throw ConfigurationError(
                    description: "\(source): \(position) is not ROLE:TOKEN or ROLE:sha256:HEX with ROLE checkout or admin"
                )
            }
            let head = entry[..<colon].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
            guard let role = Role(rawValue: String(head[0])) else {
                throw ConfigurationError(
                    description: "\(source): \(position) is not ROLE:TOKEN or ROLE:sha256:HEX with ROLE checkout or admin"
                )
            }
            var businesses: Set<String>?
            if head.count == 2 {
                let names = head[1].split(separator: "+", omittingEmptySubsequences: false).map(String.init)
                guard !names.isEmpty, names.allSatisfy({ Patterns.isBizId($0) }) else {
                    throw ConfigurationError(
                        description: "\(source): \(position): after ROLE@ come businesses joined by '+', each \(Patterns.bizIdRule)"
                    )
                }
                businesses = Set(names)
            }
            let secret = entry[entry.index(after: colon)...]
            if secret.hasPrefix("sha256:") {
                guard let digest = Self.bytes(hex: secret.dropFirst("sha256:".count)), digest.count == 32 else {
                    throw ConfigurationError(description: "\(source): \(position): sha256: must be followed by 64 hex digits")
                }
                tokens.entries.append(Entry(role: role, digest: digest, businesses: businesses))
            } else {
                guard secret.utf8.count >= 16 else {
                    throw ConfigurationError(description: "\(source): \(position): a token must be at least 16 characters")
                }
                tokens.entries.append(Entry(role: role, digest: Self.digest(String(secret)), businesses: businesses))
            }
        }
        return tokens
    }

    /// Adds the entries of `other`.
    public mutating func merge(_ other: AccessTokens) {
        entries += other.entries
    }

    /// The role of the bearer token `token`, or nil when it is none of them. Every entry is compared, each in time
    /// independent of where the digests differ, so the answer's timing tells nothing about the tokens.
    public func role(of token: Substring) -> Role? { grant(of: token)?.role }

    /// What the bearer token `token` may do, or nil when it is none of them. A token configured more than once gets
    /// the highest role, and the businesses of every entry of that role (all when one of them names none).
    public func grant(of token: Substring) -> Grant? {
        let presented = Self.digest(String(token))
        var matched: [Entry] = []
        for entry in entries {
            var difference: UInt8 = 0
            for (left, right) in zip(entry.digest, presented) { difference |= left ^ right }
            if difference == 0 { matched.append(entry) }
        }
        guard !matched.isEmpty else { return nil }
        let role: Role = matched.contains { $0.role == .admin } ? .admin : .checkout
        let ofRole = matched.filter { $0.role == role }
        let businesses = ofRole.contains { $0.businesses == nil }
            ? nil : ofRole.reduce(into: Set<String>()) { $0.formUnion($1.businesses ?? []) }
        return Grant(role: role, businesses: businesses)
    }

    /// A new random token (32 bytes, URL-safe base64) and the entry that configures it without the secret.
    /// `businesses`: the businesses it may touch (empty: all).
    public static func generate(role: Role, businesses: [String] = []) -> (token: String, entry: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let token = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        let scope = businesses.isEmpty ? "" : "@" + businesses.joined(separator: "+")
        return (token, "\(role.rawValue)\(scope):sha256:\(hex(digest(token)))")
    }

    /// Whether `name` may name a business (what `ROLE@BIZ` accepts).
    public static func isBusinessName(_ name: String) -> Bool { Patterns.isBizId(name) }

    static func digest(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func bytes(hex: Substring) -> [UInt8]? {
        guard hex.count % 2 == 0 else { return nil }
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            result.append(byte)
            index = next
        }
        return result
    }
}
