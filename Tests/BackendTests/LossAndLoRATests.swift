// Losses, the fused LoRA branch, masked softmax and AdamW: forward against naive loops,
// gradients by finite differences, AdamW against a step computed by hand.
import Backend
import Foundation
import Kernels
import XCTest

func logSoftmax(_ x: ArraySlice<Float>, _ scale: Double = 1) -> [Double] {
    let s = x.map { Double($0) * scale }, m = s.max()!
    let lse = m + log(s.reduce(0) { $0 + exp($1 - m) })
    return s.map { $0 - lse }
}

final class LossAndLoRATests: XCTestCase {
    func testCrossEntropyIgnoresLabelsOutsideTheClassesAndMatchesNaiveLoop() throws {
        var rng = SeededRandom(21)
        // V = 37: two 16-lane blocks and a tail of the vector loops; V = 5: the tail alone.
        for backend in try backends() {
          for (N, V, labels) in [(6, 5, [0, 4, -100, 2, 7, 1] as [Int32]), (4, 37, [36, -1, 17, 0])] {
            let xv = rng.floats(N * V, -3, 3)
            let x = try backend.upload(xv), tLabels = try backend.upload(labels)
            let loss = try backend.zeros(1), dx = try backend.zeros(N * V)
            backend.crossEntropy(loss, dLogits: dx, logits: x, labels: tLabels, rows: N, classes: V, gradScale: 2)
            var expected = 0.0, valid = 0.0
            for n in 0..<N where labels[n] >= 0 && labels[n] < V {
                expected -= logSoftmax(xv[(n * V)..<(n * V + V)])[Int(labels[n])]
                valid += 1
            }
            assertClose(backend.floats(loss), [expected / valid], "\(backend.kind) cross entropy")
            let grad = backend.floats(dx)
            for n in 0..<N where labels[n] < 0 || labels[n] >= V {
                XCTAssertEqual(Array(grad[(n * V)..<(n * V + V)]), [Float](repeating: 0, count: V), "ignored row has no gradient")
            }
            checkGradient("cross entropy dlogits V=\(V)", backend: backend, input: x, values: xv, analytic: grad.map { $0 / 2 }, samples: 30) {
                backend.crossEntropy(loss, dLogits: nil, logits: x, labels: tLabels, rows: N, classes: V, gradScale: 1)
                return Double(backend.floats(loss)[0])
            }
          }
        }
    }

    func testSoftCrossEntropyAtTemperature() throws {
        var rng = SeededRandom(22)
        for backend in try backends() {
            let (N, V, T) = (4, 3, Float(2))
            let sv = rng.floats(N * V, -3, 3), tv = rng.floats(N * V, -3, 3)
            let s = try backend.upload(sv), t = try backend.upload(tv), loss = try backend.zeros(1), ds = try backend.zeros(N * V)
            backend.softCrossEntropy(loss, dLogits: ds, logits: s, teacher: t, rows: N, classes: V, temperature: T, gradScale: 1)
            var expected = 0.0
            for n in 0..<N {
                let ls = logSoftmax(sv[(n * V)..<(n * V + V)], 0.5), lt = logSoftmax(tv[(n * V)..<(n * V + V)], 0.5)
                for j in 0..<V { expected -= exp(lt[j]) * ls[j] }
            }
            assertClose(backend.floats(loss), [expected / Double(N)], "\(backend.kind) soft cross entropy")
            checkGradient("soft cross entropy", backend: backend, input: s, values: sv, analytic: backend.floats(ds), samples: 12) {
                backend.softCrossEntropy(loss, dLogits: nil, logits: s, teacher: t, rows: N, classes: V, temperature: T, gradScale: 1)
                return Double(backend.floats(loss)[0])
            }
        }
    }

    func testMSEAndCosine() throws {
        var rng = SeededRandom(23)
        for backend in try backends() {
            let (N, C) = (5, 13)
            let av = rng.floats(N * C), bv = rng.floats(N * C)
            let a = try backend.upload(av), b = try backend.upload(bv), loss = try backend.zeros(1), da = try backend.zeros(N * C)
            backend.mse(loss, dA: da, a, b, count: N * C, gradScale: 1)
            let mse = zip(av, bv).reduce(0.0) { $0 + pow(Double($1.0) - Double($1.1), 2) } / Double(N * C)
            assertClose(backend.floats(loss), [mse], "\(backend.kind) mse")
            checkGradient("mse", backend: backend, input: a, values: av, analytic: backend.floats(da)) {
                backend.mse(loss, dA: nil, a, b, count: N * C, gradScale: 1)
                return Double(backend.floats(loss)[0])
            }
            backend.cosine(loss, dA: da, a, b, rows: N, channels: C, gradScale: 1)
            var cosine = 0.0
            for n in 0..<N {
                let x = av[(n * C)..<(n * C + C)].map(Double.init), y = bv[(n * C)..<(n * C + C)].map(Double.init)
                let xy = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
                cosine += 1 - xy / (x.reduce(0) { $0 + $1 * $1 } * y.reduce(0) { $0 + $1 * $1 }).squareRoot()
            }
            assertClose(backend.floats(loss), [cosine / Double(N)], "\(backend.kind) cosine")
            checkGradient("cosine", backend: backend, input: a, values: av, analytic: backend.floats(da)) {
                backend.cosine(loss, dA: nil, a, b, rows: N, channels: C, gradScale: 1)
                return Double(backend.floats(loss)[0])
            }
        }
    }

    func testMaskedSoftmaxForwardAndBackward() throws {
        var rng = SeededRandom(24)
        for backend in try backends() {
            let s = AttentionShape(batch: 2, length: 5, heads: 2, headSize: 4)
            let mask: [Int32] = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]   // second sequence fully padded
            let xv = rng.floats(s.scores, -2, 2), bv = rng.floats(2 * 25)
            let x = try backend.upload(xv), p = try backend.zeros(s.scores)
            let tMask = try backend.upload(mask), tBias = try backend.upload(bv)
            backend.maskedSoftmaxForward(p, scores: x, mask: tMask, bias: tBias, s)
            var expected = [Double](repeating: 0, count: s.scores)
            for b in 0..<1 {
                for h in 0..<2 {
                    for i in 0..<5 {
                        let row = (0..<3).map { j in Double(xv[((b * 2 + h) * 5 + i) * 5 + j]) + Double(bv[(h * 5 + i) * 5 + j]) }
                        let m = row.max()!, e = row.map { exp($0 - m) }, sum = e.reduce(0, +)
                        for j in 0..<3 { expected[((b * 2 + h) * 5 + i) * 5 + j] = e[j] / sum }
                    }
                }
            }
            assertClose(backend.floats(p), expected, "\(backend.kind) masked softmax")
            let w = rng.floats(s.scores), dx = try backend.zeros(s.scores)
            backend.maskedSoftmaxBackward(dScores: dx, dProbs: try backend.upload(w), probs: p, s)
            checkGradient("masked softmax", backend: backend, input: x, values: xv, analytic: backend.floats(dx), samples: 40) {
                backend.maskedSoftmaxForward(p, scores: x, mask: tMask, bias: tBias, s)
                return dot(backend.floats(p), w)
            }
        }
    }

    func testLoRAForwardMatchesNaiveLoopAndBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(25)
        for backend in try backends() {
            for (N, In, Out, R, p) in [(5, 13, 7, 3, Float(0)), (9, 70, 33, 4, Float(0.25)), (1, 8, 8, 1, Float(0.1))] {
                let s = LoRAShape(rows: N, inFeatures: In, outFeatures: Out, rank: R, scale: 2, dropout: p, seed: 1234)
                let xv = rng.floats(N * In), av = rng.floats(R * In), bv = rng.floats(Out * R), y0 = rng.floats(N * Out)
                let x = try backend.upload(xv), a = try backend.upload(av), b = try backend.upload(bv)
                let y = try backend.upload(y0), xa = try backend.zeros(N * R)
                backend.loraForward(y, xa: xa, x, a: a, b: b, s)
                // Naive: the same counter-based dropout mask, then two small matmuls.
                let keep = (0..<(N * In)).map { p == 0 ? 1.0 : (rt_dropout_keep(1234, UInt64($0), p) != 0 ? 1 / Double(1 - p) : 0) }
                var eXa = [Double](repeating: 0, count: N * R), eY = y0.map(Double.init)
                for n in 0..<N {
                    for r in 0..<R { for i in 0..<In { eXa[n * R + r] += Double(xv[n * In + i]) * keep[n * In + i] * Double(av[r * In + i]) } }
                    for o in 0..<Out { for r in 0..<R { eY[n * Out + o] += 2 * eXa[n * R + r] * Double(bv[o * R + r]) } }
                }
                assertClose(backend.floats(xa), eXa, "\(backend.kind) lora xa \(N)x\(In)x\(Out) r\(R) p\(p)")
                assertClose(backend.floats(y), eY, "\(backend.kind) lora y")
                if p > 0 && N * In >= 200 {
                    let dropped = keep.filter { $0 == 0 }.count
                    XCTAssertGreaterThan(dropped, 0, "dropout dropped nothing")
                    XCTAssertLessThan(Double(dropped) / Double(N * In), Double(p) * 2, "dropout rate far above p")
                }

                let w = rng.floats(N * Out), dx0 = rng.floats(N * In)
                let dx = try backend.upload(dx0), dA = try backend.zeros(R * In), dB = try backend.zeros(Out * R)
                backend.loraBackward(dx: dx, dA: dA, dB: dB, dY: try backend.upload(w), x, xa: xa, a: a, b: b, s)
                let loss = { () -> Double in
                    backend.fill(y, 0)
                    backend.loraForward(y, xa: xa, x, a: a, b: b, s)
                    return dot(backend.floats(y), w)
                }
                let dxAccumulated = zip(backend.floats(dx), dx0).map { $0 - $1 }   // dx accumulates
                checkGradient("lora dx", backend: backend, input: x, values: xv, analytic: dxAccumulated, loss: loss)
                checkGradient("lora dA", backend: backend, input: a, values: av, analytic: backend.floats(dA), loss: loss)
                checkGradient("lora dB", backend: backend, input: b, values: bv, analytic: backend.floats(dB), loss: loss)
            }
        }
    }

    func testAdamWAgainstAHandComputedStep() throws {
        for backend in try backends() {
            let p = try backend.upload([Float(1), -2]), g = try backend.upload([Float(0.1), -0.3])
            let m = try backend.zeros(2), v = try backend.zeros(2)
            let h = AdamW(learningRate: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1)
            backend.adamw(p, grads: g, m: m, v: v, count: 2, h, step: 1)
            // Step 1 by hand, p = 1, g = 0.1: m = 0.01, v = 1e-5, m̂ = 0.1, v̂ = 0.01,
            // p = 1 − 0.01·0.1·1 − 0.01·0.1/(0.1 + 1e-8) = 0.98900000099…
            // p = −2, g = −0.3: m̂ = −0.3, v̂ = 0.09 → p = −2 + 0.002 + 0.01·0.3/(0.3 + 1e-8) = −1.988
            assertClose(backend.floats(p), [0.989000001, -1.988], atol: 1e-7, rtol: 1e-7, "\(backend.kind) adamw step 1")
            assertClose(backend.floats(m), [0.01, -0.03], atol: 1e-9, rtol: 1e-6, "adamw m")
            assertClose(backend.floats(v), [1e-5, 9e-5], atol: 1e-12, rtol: 1e-6, "adamw v")
            // Step 2 with the same gradient: m = 0.019, v = 1.999e-5; m̂ = 0.019/0.19 = 0.1,
            // v̂ = 1.999e-5/0.001999 = 0.01 → the same size of step again, on the decayed weight.
            backend.adamw(p, grads: g, m: m, v: v, count: 2, h, step: 2)
            let p1 = 0.989000001, expected = p1 - 0.01 * 0.1 * p1 - 0.01 * 0.1 / (0.1 + 1e-8)
            assertClose([backend.floats(p)[0]], [expected], atol: 1e-7, rtol: 1e-7, "adamw step 2")
        }
    }
}
