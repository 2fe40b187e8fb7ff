// Fused attention against a naive double-precision loop (out, lse, scores), with key-padding
// masks (right, and left: causal rows with no key), additive per-head bias, T = 1 and 7, head
// sizes not a multiple of 8 or 16, a fully padded sequence, causal masking and grouped-query
// heads; backward (dq, dk, dv, dbias, and gradients arriving through the scores
// output) by finite differences; and the fused kernels against the composed default every
// backend without them gets (matmuls, masked softmax, dropout).
import Backend
import Foundation
import Kernels
import XCTest

struct AttentionCase {
    let shape: AttentionShape
    let q, k, v: [Float]
    let mask: [Int32]?
    let bias: [Float]?

    init(batch: Int, length: Int, heads: Int, headSize: Int, keyValueHeads: Int? = nil, causal: Bool = false, padded: [Int] = [],
         leftPadded: [Int] = [], bias: Bool, seed: UInt64, dropout: Float = 0) {
        var rng = SeededRandom(seed)
        shape = AttentionShape(batch: batch, length: length, heads: heads, headSize: headSize, keyValueHeads: keyValueHeads,
                               causal: causal, dropout: dropout, seed: seed &* 31)
        q = rng.floats(shape.activations, -2, 2)
        k = rng.floats(shape.keyValueActivations, -2, 2)
        v = rng.floats(shape.keyValueActivations)
        // padded[b] / leftPadded[b] = how many keys at the end / start of sequence b are padding.
        mask = padded.isEmpty && leftPadded.isEmpty ? nil : (0..<batch).flatMap { b in
            (0..<length).map { j in Int32(j < length - (padded.isEmpty ? 0 : padded[b]) && j >= (leftPadded.isEmpty ? 0 : leftPadded[b]) ? 1 : 0) }
        }
        self.bias = bias ? rng.floats(heads * length * length) : nil
    }

    /// (out, lse, scores) in double precision.
    func reference() -> ([Double], [Double], [Double]) {
        let (B, T, NH, HS) = (shape.batch, shape.length, shape.heads, shape.headSize), C = NH * HS
        let (CK, G) = (shape.keyValueChannels, shape.group)
        var out = [Double](repeating: 0, count: shape.activations)
        var lse = [Double](repeating: .infinity, count: shape.rows), scores = [Double](repeating: 0, count: shape.scores)
        for b in 0..<B {
            for h in 0..<NH {
                for i in 0..<T {
                    var s = [Double](repeating: -.infinity, count: T)
                    for j in 0..<T where (mask == nil || mask![b * T + j] != 0) && (!shape.causal || j <= i) {
                        var d = 0.0
                        for c in 0..<HS { d += Double(q[(b * T + i) * C + h * HS + c]) * Double(k[(b * T + j) * CK + h / G * HS + c]) }
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
                        for j in 0..<T { o += e[j] / sum * keep[j] * Double(v[(b * T + j) * CK + h / G * HS + c]) }
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
        ("causal T=7 HS=5 mask+bias", AttentionCase(batch: 2, length: 7, heads: 3, headSize: 5, causal: true, padded: [0, 3], bias: true, seed: 20)),
        ("GQA NH=6 NKV=2 T=9 bias", AttentionCase(batch: 2, length: 9, heads: 6, headSize: 8, keyValueHeads: 2, padded: [0, 2], bias: true, seed: 21)),
        ("causal GQA NH=4 NKV=2 T=37 HS=16", AttentionCase(batch: 2, length: 37, heads: 4, headSize: 16, keyValueHeads: 2, causal: true,
                                                           padded: [0, 5], bias: false, seed: 22)),
        ("causal left-padded (rows without keys)", AttentionCase(batch: 2, length: 9, heads: 2, headSize: 8, causal: true,
                                                                 leftPadded: [3, 0], bias: true, seed: 23)),
        ("causal GQA NKV=1 dropout 0.2", AttentionCase(batch: 1, length: 11, heads: 3, headSize: 6, keyValueHeads: 1, causal: true,
                                                       bias: false, seed: 24, dropout: 0.2)),
        ("causal GQA T=70 HS=32", AttentionCase(batch: 1, length: 70, heads: 4, headSize: 32, keyValueHeads: 2, causal: true,
                                                padded: [3], bias: false, seed: 25)),
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
                let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.keyValueActivations)
                let dv = try backend.zeros(s.keyValueActivations)
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

    /// The composition of primitives every backend without fused attention gets (ComposedOps.swift)
    /// equals the fused kernels: out, lse, scores, every gradient, with masks, bias, dropout and
    /// both kinds of score gradient.
    func testFusedEqualsTheComposedDefault() throws {
        for backend in try backends() {
            for (name, c) in cases {
                let s = c.shape
                var rng = SeededRandom(5)
                let dOut = try backend.upload(rng.floats(s.activations)), given = try backend.upload(rng.floats(s.scores))
                let q = try backend.upload(c.q), k = try backend.upload(c.k), v = try backend.upload(c.v)
                let tq = try backend.upload(rng.floats(s.activations)), tk = try backend.upload(rng.floats(s.activations))
                let mask = try c.mask.map { try backend.upload($0) }, bias = try c.bias.map { try backend.upload($0) }
                let target = ScoreTarget(q: tq, k: tk, bias: bias, headSize: s.headSize)
                for gradient: ScoreGradient? in [nil, .dense(given), .scoreMSE(target, gradScale: 3)] {
                    func run(composed: Bool) throws -> [[Float]] {
                        let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows), scores = try backend.zeros(s.scores)
                        let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.keyValueActivations)
                        let dv = try backend.zeros(s.keyValueActivations)
                        let dBias = try bias.map { _ in try backend.zeros(s.heads * s.length * s.length) }, loss = try backend.zeros(1)
                        if composed {
                            backend.composedAttentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
                            backend.composedAttentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: gradient,
                                                              q: q, k: k, v: v, mask: mask, bias: bias, s)
                        } else {
                            backend.attentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
                            backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: gradient, out: out,
                                                      lse: lse, q: q, k: k, v: v, mask: mask, bias: bias, s)
                        }
                        if s.causal || s.keyValueHeads != s.heads {   // the score loss is for encoders: its slot stays 0
                        } else if composed {
                            backend.composedAttentionScoreLoss(loss, q: q, k: k, mask: mask, bias: bias, target: target, s)
                        } else {
                            backend.attentionScoreLoss(loss, q: q, k: k, mask: mask, bias: bias, target: target, s)
                        }
                        return [out, lse, scores, dq, dk, dv].map(backend.floats) + [dBias.map(backend.floats) ?? [], backend.floats(loss)]
                    }
                    let (fused, composed) = (try run(composed: false), try run(composed: true))
                    let what = "\(name), score gradient \(gradient.map { "\($0)".prefix(9) } ?? "none")"
                    for (i, output) in ["out", "lse", "scores", "dq", "dk", "dv", "dBias", "score loss"].enumerated() {
                        let finite = fused[i].map { $0.isFinite ? $0 : 0 }, finiteComposed = composed[i].map { $0.isFinite ? $0 : 0 }
                        XCTAssertEqual(fused[i].map(\.isFinite), composed[i].map(\.isFinite), "\(what): \(output) is not finite in the same places")
                        assertClose(finiteComposed, finite, atol: 1e-4, rtol: 1e-4, "\(what): composed \(output)")
                    }
                }
            }
        }
    }
}
