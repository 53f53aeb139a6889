import Foundation
import Testing

@testable import LoadHarness

@Suite("Zipf sampler and lifecycle mix")
struct SamplingTests {
    @Test("probabilities follow 1/k^s and sum to 1")
    func probabilities() {
        let sampler = ZipfSampler(count: 1000, exponent: 1.1)
        let total = (0..<1000).reduce(0.0) { $0 + sampler.probability(ofRank: $1) }
        #expect(abs(total - 1) < 1e-9)
        // p(rank 1) / p(rank 2) = 2^s, p(rank 1) / p(rank 10) = 10^s.
        #expect(abs(sampler.probability(ofRank: 0) / sampler.probability(ofRank: 1) - pow(2, 1.1)) < 1e-9)
        #expect(abs(sampler.probability(ofRank: 0) / sampler.probability(ofRank: 9) - pow(10, 1.1)) < 1e-9)
    }

    @Test("200,000 draws match the expected frequencies (chi-square over the top ranks and the tail)")
    func drawnDistribution() {
        let sampler = ZipfSampler(count: 1000, exponent: 1.1)
        var generator = SplitMix64(seed: 42)
        let draws = 200_000
        var counts = [Int](repeating: 0, count: 1000)
        for _ in 0..<draws { counts[sampler.sample(using: &generator)] += 1 }
        // Bins: ranks 1..20 each, then the rest together; 20 degrees of freedom, 99.9% critical value ≈ 45.3.
        var chiSquare = 0.0
        var tailObserved = 0
        var tailExpected = 0.0
        for rank in 0..<1000 {
            let expected = sampler.probability(ofRank: rank) * Double(draws)
            if rank < 20 {
                chiSquare += pow(Double(counts[rank]) - expected, 2) / expected
            } else {
                tailObserved += counts[rank]
                tailExpected += expected
            }
        }
        chiSquare += pow(Double(tailObserved) - tailExpected, 2) / tailExpected
        #expect(chiSquare < 45.3, "chi-square \(chiSquare)")
        // The hottest item gets about 1/H(1000, 1.1) ≈ 14% of the draws.
        let share = Double(counts[0]) / Double(draws)
        #expect(abs(share - sampler.probability(ofRank: 0)) < 0.005)
        #expect(counts[0] > counts[1] && counts[1] > counts[9])
    }

    @Test("s = 0 is uniform; one item always draws rank 0")
    func uniformAndSingle() {
        let uniform = ZipfSampler(count: 4, exponent: 0)
        for rank in 0..<4 { #expect(abs(uniform.probability(ofRank: rank) - 0.25) < 1e-12) }
        var generator = SplitMix64(seed: 7)
        var counts = [0, 0, 0, 0]
        for _ in 0..<40_000 { counts[uniform.sample(using: &generator)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 })
        let single = ZipfSampler(count: 1, exponent: 1.1)
        #expect((0..<100).allSatisfy { _ in single.sample(using: &generator) == 0 })
    }

    @Test("distinct draws for multi-item orders, even with a steep skew over few items")
    func distinct() {
        var generator = SplitMix64(seed: 3)
        let sampler = ZipfSampler(count: 1000, exponent: 1.1)
        for _ in 0..<1000 {
            let picked = sampler.sampleDistinct(5, using: &generator)
            #expect(Set(picked).count == 5)
        }
        let steep = ZipfSampler(count: 5, exponent: 10)
        #expect(Set(steep.sampleDistinct(5, using: &generator)) == Set(0..<5))
    }

    @Test("--mix parses weights and picks fates in proportion")
    func mix() throws {
        let mix = try #require(LifecycleMix.parse("confirm=60,cancel=30,expire=10"))
        #expect(mix == LifecycleMix(confirm: 60, cancel: 30, expire: 10))
        #expect(LifecycleMix.parse("confirm=1") == LifecycleMix(confirm: 1, cancel: 0, expire: 0))
        #expect(LifecycleMix.parse("confirm=0,cancel=0") == nil)
        #expect(LifecycleMix.parse("refund=5") == nil)
        #expect(LifecycleMix.parse("confirm=-1,cancel=2") == nil)
        var generator = SplitMix64(seed: 11)
        var counts: [LifecycleMix.Fate: Int] = [:]
        for _ in 0..<100_000 { counts[mix.pick(using: &generator), default: 0] += 1 }
        #expect(abs(counts[.confirm, default: 0] - 60_000) < 1_000)
        #expect(abs(counts[.cancel, default: 0] - 30_000) < 1_000)
        #expect(abs(counts[.expire, default: 0] - 10_000) < 1_000)
    }
}
