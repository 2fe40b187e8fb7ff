// The sampler sorts only the head of the vocabulary it needs (whole weight buckets); it must draw exactly the tokens a
// full sort would (temperature, top-k, top-p, and their mix), and take the argmax when greedy.
import Foundation
@testable import Models
import XCTest

final class SamplerTests: XCTestCase {
    /// The reference: every token sorted by logit (ties by index), top-k, the top-p prefix, a draw.
    func reference(_ logits: [Float], _ o: SamplingOptions, draw u: Double) -> Int32 {
        var order = Array(logits.indices)
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if o.topK > 0 { order = Array(order.prefix(o.topK)) }
        let top = Double(logits[order[0]])
        var weights = order.map { exp((Double(logits[$0]) - top) / o.temperature) }
        if o.topP < 1 {
            let total = weights.reduce(0, +)
            var kept = 0, mass = 0.0
            while kept < weights.count && (kept == 0 || mass < o.topP * total) { mass += weights[kept]; kept += 1 }
            order = Array(order.prefix(kept)); weights = Array(weights.prefix(kept))
        }
        let draw = u * weights.reduce(0, +)
        var running = 0.0
        for (token, w) in zip(order, weights) { running += w; if draw < running { return Int32(token) } }
        return Int32(order.last!)
    }

    func testDrawsTheTokensAFullSortWould() {
        var rng = SplitMix(seed: 5)
        for (k, p, t) in [(0, 1.0, 1.0), (0, 0.95, 1.2), (40, 1.0, 0.7), (40, 0.9, 1.0), (1, 1.0, 1.0), (0, 0.5, 0.3), (0, 0.999, 3.0)] {
            for trial in 0..<8 {
                // Peaked logits over a 3,000-token vocabulary, with repeated values (ties).
                let logits = (0..<3000).map { _ in Float(Int(rng.next() % 4000)) / 200 - Float(trial % 3) * 5 }
                var options = SamplingOptions(temperature: t, topK: k, topP: p, seed: UInt64(trial))
                var sampler = Sampler(options)
                var draws = Sampler(options)   // the same random stream, read directly
                for _ in 0..<12 {
                    let u = draws.random.uniform()
                    XCTAssertEqual(sampler.next(logits[...]), reference(logits, options, draw: u), "k \(k) p \(p) T \(t)")
                }
                options.temperature = 0
                var greedy = Sampler(options)
                XCTAssertEqual(greedy.next(logits[...]), Int32(logits.indices.max { logits[$0] < logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }!))
            }
        }
    }

    /// A vocabulary of SmolLM2's size with flat logits: the nucleus spans many weight buckets, and
    /// the sampler's buffers are reused from row to row as in generation.
    func testLargeFlatVocabularyDrawsTheTokensAFullSortWould() {
        var rng = SplitMix(seed: 9)
        var scratch = SamplerScratch()
        for (k, p, t) in [(0, 0.95, 1.0), (0, 0.999, 2.0), (500, 0.9, 1.0), (0, 1.0, 1.0), (40, 1.0, 0.1), (40, 0.9, 0.05)] {
            let options = SamplingOptions(temperature: t, topK: k, topP: p, seed: 3)
            var sampler = Sampler(options), draws = Sampler(options)
            for row in 0..<6 {
                let logits = (0..<49_152).map { _ in Float(Int(rng.next() % 100_000)) / 10_000 - Float(row) }
                let u = draws.random.uniform()
                XCTAssertEqual(sampler.next(logits[...], scratch: &scratch), reference(logits, options, draw: u), "k \(k) p \(p) T \(t) row \(row)")
            }
        }
    }

    func testRowsThatOverflowedAndHugeTopKDoNotTrap() {
        var sampler = Sampler(SamplingOptions(temperature: 1, topK: 0, topP: 0.9, seed: 1))
        XCTAssertEqual(sampler.next([Float.nan, .nan, .nan][...]), 0, "no finite logit: the first token")
        for _ in 0..<20 { XCTAssertEqual(sampler.next([Float.nan, 2, .infinity, -.infinity][...]), 1, "only token 1 is finite") }
        var wide = Sampler(SamplingOptions(temperature: 1, topK: 100_000, seed: 2))
        let logits: [Float] = (0..<500).map { Float($0 % 7) }
        var reference = Sampler(SamplingOptions(temperature: 1, topK: 100_000, seed: 2))
        for _ in 0..<10 {
            let u = reference.random.uniform()
            XCTAssertEqual(wide.next(logits[...]), self.reference(logits, SamplingOptions(temperature: 1, topK: 100_000), draw: u))
        }
    }
}
