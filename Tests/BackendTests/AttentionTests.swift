// Fused attention against a naive double-precision loop (out, lse, scores), with key-padding
// masks, additive per-head bias, T = 1 and 7, head sizes not a multiple of 8 or 16, a fully
// padded sequence; backward (dq, dk, dv, dbias, and gradients arriving through the scores
// output) by finite differences; and the fused path against the unfused composition of
// matmul + masked softmax.
import Backend
import Foundation
import Kernels
import XCTest

struct AttentionCase {
    let shape: AttentionShape
    let q, k, v: [Float]
    let mask: [Int32]?
    let bias: [Float]?

    init(batch: Int, length: Int, heads: Int, headSize: Int, padded: [Int] = [], bias: Bool, seed: UInt64, dropout: Float = 0) {
        var rng = SeededRandom(seed)
        shape = AttentionShape(batch: batch, length: length, heads: heads, headSize: headSize, dropout: dropout, seed: seed &* 31)
        q = rng.floats(shape.activations, -2, 2)
        k = rng.floats(shape.activations, -2, 2)
        v = rng.floats(shape.activations)
        // padded[b] = how many keys at the end of sequence b are padding.
        mask = padded.isEmpty ? nil : (0..<batch).flatMap { b in (0..<length).map { Int32($0 < length - padded[b] ? 1 : 0) } }
        self.bias = bias ? rng.floats(heads * length * length) : nil
    }

    /// (out, lse, scores) in double precision.
    func reference() -> ([Double], [Double], [Double]) {
        let (B, T, NH, HS) = (shape.batch, shape.length, shape.heads, shape.headSize), C = NH * HS
        var out = [Double](repeating: 0, count: shape.activations)
        var lse = [Double](repeating: .infinity, count: shape.rows), scores = [Double](repeating: 0, count: shape.scores)
        for b in 0..<B {
            for h in 0..<NH {
                for i in 0..<T {
                    var s = [Double](repeating: -.infinity, count: T)
                    for j in 0..<T where mask == nil || mask![b * T + j] != 0 {
                        var d = 0.0
                        for c in 0..<HS { d += Double(q[(b * T + i) * C + h * HS + c]) * Double(k[(b * T + j) * C + h * HS + c]) }
                        s[j] = d * Double(shape.scale) + Double(bias?[(h * T + i) * T + j] ?? 0)
                        scores[((b * NH + h) * T + i) * T + j] = s[j]
                    }
                    let mx = s.max()!
                    guard mx > -.infinity else { continue }
                    let e = s.map { exp($0 - mx) }, sum = e.reduce(0, +)
                    lse[(b * NH + h) * T + i] = mx + log(sum)
                    // Dropout on the probabilities: the same counter-based mask as the kernel.
                    let keep = (0..<T).map { j -> Double in
                        guard shape.dropout > 0 else { return 1 }
                        let index = UInt64(((b * NH + h) * T + i) * T + j)
                        return rt_dropout_keep(shape.seed, index, shape.dropout) != 0 ? 1 / Double(1 - shape.dropout) : 0
                    }
                    for c in 0..<HS {
                        var o = 0.0
                        for j in 0..<T { o += e[j] / sum * keep[j] * Double(v[(b * T + j) * C + h * HS + c]) }
                        out[(b * T + i) * C + h * HS + c] = o
                    }
                }
            }
        }
        return (out, lse, scores)
    }
}

final class AttentionTests: XCTestCase {
    let cases: [(String, AttentionCase)] = [
        ("T=7 HS=5 mask+bias", AttentionCase(batch: 2, length: 7, heads: 3, headSize: 5, padded: [0, 3], bias: true, seed: 11)),
        ("T=1", AttentionCase(batch: 2, length: 1, heads: 2, headSize: 8, bias: true, seed: 12)),
        ("T=37 HS=20 mask", AttentionCase(batch: 2, length: 37, heads: 2, headSize: 20, padded: [5, 30], bias: false, seed: 13)),
        ("T=40 HS=64 bias", AttentionCase(batch: 1, length: 40, heads: 2, headSize: 64, bias: true, seed: 14)),
        ("T=64 HS=32", AttentionCase(batch: 2, length: 64, heads: 2, headSize: 32, padded: [0, 10], bias: false, seed: 15)),
        ("fully padded sequence", AttentionCase(batch: 2, length: 6, heads: 2, headSize: 7, padded: [6, 2], bias: true, seed: 16)),
        ("HS=100", AttentionCase(batch: 1, length: 9, heads: 1, headSize: 100, padded: [1], bias: false, seed: 17)),
        ("T=7 mask+bias dropout 0.3", AttentionCase(batch: 2, length: 7, heads: 3, headSize: 5, padded: [0, 3], bias: true, seed: 18, dropout: 0.3)),
        ("T=37 dropout 0.1", AttentionCase(batch: 1, length: 37, heads: 2, headSize: 16, padded: [4], bias: false, seed: 19, dropout: 0.1)),
    ]

    func testForwardMatchesNaiveLoop() throws {
        for backend in try backends() {
            for (name, c) in cases {
                let s = c.shape
                let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows), scores = try backend.zeros(s.scores)
                backend.attentionForward(out, lse: lse, scores: scores, q: try backend.upload(c.q), k: try backend.upload(c.k),
                                         v: try backend.upload(c.v), mask: try c.mask.map { try backend.upload($0) },
                                         bias: try c.bias.map { try backend.upload($0) }, s)
                let (eOut, eLse, eScores) = c.reference()
                assertClose(backend.floats(out), eOut, "\(backend.kind) \(name): out")
                let gotLse = backend.floats(lse)
                XCTAssertEqual(gotLse.map(\.isInfinite), eLse.map(\.isInfinite), "\(name): rows with no valid key")
                assertClose(gotLse.map { $0.isInfinite ? 0 : $0 }, eLse.map { $0.isInfinite ? 0 : $0 }, "\(backend.kind) \(name): lse")
                assertClose(backend.floats(scores), eScores, "\(backend.kind) \(name): scores")
                // Without the optional outputs the result is the same.
                let out2 = try backend.zeros(s.activations)
                backend.attentionForward(out2, lse: lse, scores: nil, q: try backend.upload(c.q), k: try backend.upload(c.k),
                                         v: try backend.upload(c.v), mask: try c.mask.map { try backend.upload($0) },
                                         bias: try c.bias.map { try backend.upload($0) }, s)
                XCTAssertEqual(backend.floats(out2), backend.floats(out), "\(name): scores output changes the result")
            }
        }
    }

    func testBackwardByFiniteDifferencesIncludingScoresGradient() throws {
        for backend in try backends() {
            for (name, c) in cases where c.shape.activations <= 2000 {
                let s = c.shape
                var rng = SeededRandom(99)
                let wOut = rng.floats(s.activations), wScores = rng.floats(s.scores)
                let q = try backend.upload(c.q), k = try backend.upload(c.k), v = try backend.upload(c.v)
                let mask = try c.mask.map { try backend.upload($0) }, bias = try c.bias.map { try backend.upload($0) }
                let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows), scores = try backend.zeros(s.scores)
                // L = Σ wOut·out + Σ wScores·scores: the second term sends a gradient in through dScores.
                let loss = { () -> Double in
                    backend.attentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
                    return dot(backend.floats(out), wOut) + dot(backend.floats(scores), wScores)
                }
                _ = loss()
                let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.activations), dv = try backend.zeros(s.activations)
                let dBias = try c.bias.map { _ in try backend.zeros(s.heads * s.length * s.length) }
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: try backend.upload(wOut),
                                          dScores: .dense(try backend.upload(wScores)), out: out, lse: lse, q: q, k: k, v: v,
                                          mask: mask, bias: bias, s)
                checkGradient("\(name) dq", backend: backend, input: q, values: c.q, analytic: backend.floats(dq), loss: loss)
                checkGradient("\(name) dk", backend: backend, input: k, values: c.k, analytic: backend.floats(dk), loss: loss)
                checkGradient("\(name) dv", backend: backend, input: v, values: c.v, analytic: backend.floats(dv), loss: loss)
                if let bias, let dBias, let values = c.bias {
                    checkGradient("\(name) dbias", backend: backend, input: bias, values: values, analytic: backend.floats(dBias), loss: loss)
                }
            }
        }
    }

    func testFusedEqualsUnfusedComposition() throws {
        for backend in try backends() {
            for (name, c) in cases where c.shape.dropout == 0 {   // the unfused path has no dropout
                let s = c.shape, (B, T, NH, HS) = (s.batch, s.length, s.heads, s.headSize), C = NH * HS
                var rng = SeededRandom(5)
                let dOutValues = rng.floats(s.activations)
                let q = try backend.upload(c.q), k = try backend.upload(c.k), v = try backend.upload(c.v)
                let mask = try c.mask.map { try backend.upload($0) }, bias = try c.bias.map { try backend.upload($0) }
                let dOut = try backend.upload(dOutValues)
                // Fused.
                let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows)
                let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.activations), dv = try backend.zeros(s.activations)
                backend.attentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: mask, bias: bias, s)
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dOut, dScores: nil, out: out, lse: lse,
                                          q: q, k: k, v: v, mask: mask, bias: bias, s)
                // Unfused: per batch item, NH-batched matmuls over head views of [T,C].
                let u = try UnfusedAttention(backend, s)
                u.forward(q: q, k: k, v: v, mask: mask, bias: bias)
                u.backward(dOut: dOut, q: q, k: k, v: v)
                assertClose(backend.floats(u.out), backend.floats(out), atol: 1e-5, "\(name): unfused out")
                assertClose(backend.floats(u.dq), backend.floats(dq), atol: 1e-4, "\(name): unfused dq")
                assertClose(backend.floats(u.dk), backend.floats(dk), atol: 1e-4, "\(name): unfused dk")
                assertClose(backend.floats(u.dv), backend.floats(dv), atol: 1e-4, "\(name): unfused dv")
                _ = (B, T, C)
            }
        }
    }
}
