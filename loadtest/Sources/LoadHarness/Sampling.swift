import Foundation

/// A small, fast, seedable generator (SplitMix64) so a run's choices can be repeated with `--seed`.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform double in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Draws item ranks 0..<count with P(rank k) ∝ 1/(k+1)^s: rank 0 is the hottest item. s = 0 is uniform.
///
/// The cumulative distribution is computed once (count doubles) and shared by every connection; a draw is one
/// uniform number and a binary search.
public struct ZipfSampler: Sendable {
    public let count: Int
    public let exponent: Double
    private let cumulative: [Double]

    public init(count: Int, exponent: Double) {
        precondition(count >= 1 && exponent >= 0)
        self.count = count
        self.exponent = exponent
        var running = 0.0
        var cumulative = [Double]()
        cumulative.reserveCapacity(count)
        for rank in 1...count {
            running += 1.0 / pow(Double(rank), exponent)
            cumulative.append(running)
        }
        self.cumulative = cumulative.map { $0 / running }
    }

    /// The probability of drawing `rank` (0-based).
    public func probability(ofRank rank: Int) -> Double {
        rank == 0 ? cumulative[0] : cumulative[rank] - cumulative[rank - 1]
    }

    /// One draw: a rank in 0..<count.
    public func sample(using generator: inout some RandomNumberGenerator) -> Int {
        if count == 1 { return 0 }
        let u = Double(generator.next() >> 11) * 0x1.0p-53
        var low = 0
        var high = count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] > u { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// `n` distinct ranks (n ≤ count), each drawn from the same skew.
    public func sampleDistinct(_ n: Int, using generator: inout some RandomNumberGenerator) -> [Int] {
        precondition(n <= count)
        var picked: [Int] = []
        picked.reserveCapacity(n)
        var attempts = 0
        while picked.count < n {
            let rank = sample(using: &generator)
            attempts += 1
            if !picked.contains(rank) {
                picked.append(rank)
            } else if attempts > 64 * n {
                // A very steep skew over few items: fill with the first ranks not taken yet.
                for fallback in 0..<count where !picked.contains(fallback) && picked.count < n { picked.append(fallback) }
            }
        }
        return picked
    }
}


/// What happens to a lifecycle order after its reserve: proportions of confirm / cancel / expire (let the TTL run out).
public struct LifecycleMix: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Fate: String, Sendable, Codable, CaseIterable {
        case confirm, cancel, expire
    }

    public var confirm: Int
    public var cancel: Int
    public var expire: Int

    public init(confirm: Int, cancel: Int, expire: Int) {
        self.confirm = confirm
        self.cancel = cancel
        self.expire = expire
    }

    public static let standard = LifecycleMix(confirm: 60, cancel: 30, expire: 10)

    /// Parses `confirm=60,cancel=30,expire=10` (weights, any positive total; a missing name is 0).
    public static func parse(_ text: String) -> LifecycleMix? {
        var mix = LifecycleMix(confirm: 0, cancel: 0, expire: 0)
        for part in text.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let weight = Int(pair[1].trimmingCharacters(in: .whitespaces)), weight >= 0 else {
                return nil
            }
            switch pair[0].trimmingCharacters(in: .whitespaces).lowercased() {
            case "confirm": mix.confirm = weight
            case "cancel": mix.cancel = weight
            case "expire": mix.expire = weight
            default: return nil
            }
        }
        return mix.total > 0 ? mix : nil
    }

    var total: Int { confirm + cancel + expire }

    /// The fate for a uniform draw.
    func pick(using generator: inout some RandomNumberGenerator) -> Fate {
        let roll = Int(generator.next() % UInt64(total))
        if roll < confirm { return .confirm }
        if roll < confirm + cancel { return .cancel }
        return .expire
    }

    public var description: String { "confirm=\(confirm),cancel=\(cancel),expire=\(expire)" }
}
