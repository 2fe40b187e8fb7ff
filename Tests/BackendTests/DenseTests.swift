// matmul (all transposes, strided batches, bias), bias backward, embedding, layer norm, GELU,
// memory ops and casts: each against a naive loop; every backward by finite differences.
import Backend
import Foundation
import Kernels
import XCTest

func referenceGemm(_ a: [Float], _ b: [Float], _ c0: [Float], _ g: Gemm, bias: [Float]? = nil) -> [Double] {
    var c = c0.map(Double.init)
    for batch in 0..<g.batch {
        let sa = batch * g.strideA, sb = batch * g.strideB, sc = batch * g.strideC
        for i in 0..<g.m {
            for j in 0..<g.n {
                var s = 0.0
                for p in 0..<g.k {
                    let x = g.transA ? a[sa + p * g.lda + i] : a[sa + i * g.lda + p]
                    let y = g.transB ? b[sb + j * g.ldb + p] : b[sb + p * g.ldb + j]
                    s += Double(x) * Double(y)
                }
                let index = sc + i * g.ldc + j
                c[index] = Double(g.alpha) * s + Double(g.beta) * Double(c0[index]) + Double(bias?[j] ?? 0)
            }
        }
    }
    return c
}

final class DenseTests: XCTestCase {
    func testMatmulEveryTransposeBatchedWithAlphaBeta() throws {
        var rng = SeededRandom(1)
        for backend in try backends() {
            for (m, n, k) in [(7, 5, 3), (1, 13, 9), (33, 17, 65), (5, 100, 33), (64, 130, 40), (300, 70, 9)] {   // m ≤ 256, n ≥ 64: the split path
                for transA in [false, true] {
                    for transB in [false, true] {
                        let g = Gemm(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 0.5, beta: 0.25, batch: transA ? 3 : 1)
                        let a = rng.floats(3 * m * k), b = rng.floats(3 * k * n), c0 = rng.floats(3 * m * n)
                        let c = try backend.upload(c0)
                        backend.matmul(c, try backend.upload(a), try backend.upload(b), bias: nil, g)
                        assertClose(backend.floats(c), referenceGemm(a, b, c0, g), "\(backend.kind) matmul \(m)x\(n)x\(k) tA=\(transA) tB=\(transB)")
                    }
                }
            }
        }
    }

    func testMatmulWithBiasAndStridedViews() throws {
        var rng = SeededRandom(2)
        for backend in try backends() {
            // A is a column slice of a wider matrix (lda > k), as a head inside [B,T,C].
            let g = Gemm(m: 6, n: 4, k: 5, transB: true, lda: 12, batch: 2, strideA: 5)
            let a = rng.floats(6 * 12), b = rng.floats(2 * 4 * 5), bias = rng.floats(4)
            let c = try backend.zeros(2 * 6 * 4)
            backend.matmul(c, try backend.upload(a), try backend.upload(b), bias: try backend.upload(bias), g)
            assertClose(backend.floats(c), referenceGemm(a, b, [Float](repeating: 0, count: 48), g, bias: bias), "\(backend.kind) matmul bias")
            // Few rows with a strided A (rows of [B,T,C]) and a bias, as the pooler: on the CPU the
            // weight-row kernel at 3 rows, the column-split BLAS path at 40.
            for m in [3, 40] {
                let h = Gemm(m: m, n: 96, k: 80, transB: true, lda: 4 * 80)
                let x = rng.floats(m * 4 * 80), w = rng.floats(96 * 80), hb = rng.floats(96)
                let y = try backend.zeros(m * 96)
                backend.matmul(y, try backend.upload(x), try backend.upload(w), bias: try backend.upload(hb), h)
                assertClose(backend.floats(y), referenceGemm(x, w, [Float](repeating: 0, count: m * 96), h, bias: hb),
                            "\(backend.kind) few-row matmul m=\(m)")
            }
            // An empty product (k = 0) is C = beta·C + bias.
            let e = Gemm(m: 3, n: 4, k: 0, beta: 0.5, lda: 1)
            let c0 = rng.floats(12)
            let z = try backend.upload(c0)
            backend.matmul(z, try backend.upload(a), try backend.upload(b), bias: try backend.upload(bias), e)
            assertClose(backend.floats(z), (0..<12).map { 0.5 * c0[$0] + bias[$0 % 4] }, "\(backend.kind) empty matmul")
        }
    }

    func testBiasBackwardSumsRows() throws {
        var rng = SeededRandom(3)
        // 5,000 columns: with up to four threads a thread's run of column blocks goes in more than
        // one 1,024-column piece. The CPU's is each column's Float sum over the rows in order, from
        // 0, then added (the same bits whatever the thread count).
        for backend in try backends() {
            for (N, C) in [(37, 70), (5, 5000)] {
                let dout = rng.floats(N * C), start = rng.floats(C)
                let db = try backend.upload(start)
                backend.biasBackward(db, dOut: try backend.upload(dout), rows: N, channels: C)
                let expected = (0..<C).map { c in Double(start[c]) + (0..<N).reduce(0.0) { $0 + Double(dout[$1 * C + c]) } }
                assertClose(backend.floats(db), expected, "\(backend.kind) bias backward \(N)×\(C)")
                if backend.kind == .cpu {
                    let inOrder = (0..<C).map { c in start[c] + (0..<N).reduce(Float(0)) { $0 + dout[$1 * C + c] } }
                    XCTAssertEqual(backend.floats(db), inOrder, "cpu bias backward \(N)×\(C): a sum over the rows in order")
                }
            }
        }
    }

    func testEmbeddingForwardAndBackward() throws {
        var rng = SeededRandom(4)
        for backend in try backends() {
            // Word row 4 and position row 4 are padding rows: they never receive a gradient.
            let s = EmbeddingShape(tokens: 7, channels: 13, vocabulary: 11, positions: 9, tokenTypes: 2, wordPadding: 4, positionPadding: 4)
            var ids = rng.ints(7, below: 11)
            ids[3] = 11   // out of range: contributes zeros, never a crash
            ids[5] = 4
            let positions = (0..<7).map { Int32($0 + 2) }, types = rng.ints(7, below: 2)
            let word = rng.floats(11 * 13), position = rng.floats(9 * 13), type = rng.floats(2 * 13)
            let out = try backend.zeros(7 * 13)
            let tIds = try backend.upload(ids), tPos = try backend.upload(positions), tTypes = try backend.upload(types)
            backend.embeddingForward(out, ids: tIds, positions: tPos, types: tTypes, word: try backend.upload(word),
                                     position: try backend.upload(position), type: try backend.upload(type), s)
            var expected = [Double](repeating: 0, count: 7 * 13)
            for t in 0..<7 {
                for c in 0..<13 {
                    let w = ids[t] < 11 ? Double(word[Int(ids[t]) * 13 + c]) : 0
                    expected[t * 13 + c] = w + Double(position[Int(positions[t]) * 13 + c]) + Double(type[Int(types[t]) * 13 + c])
                }
            }
            assertClose(backend.floats(out), expected, "\(backend.kind) embedding forward")

            let dout = rng.floats(7 * 13)
            let dWord = try backend.zeros(11 * 13), dPos = try backend.zeros(9 * 13), dType = try backend.zeros(2 * 13)
            backend.embeddingBackward(dWord: dWord, dPosition: dPos, dType: dType, dOut: try backend.upload(dout),
                                      ids: tIds, positions: tPos, types: tTypes,
                                      segments: try EmbeddingSegments(ids: ids, positions: positions, types: types, s, backend: backend), s)
            var eWord = [Double](repeating: 0, count: 11 * 13), ePos = [Double](repeating: 0, count: 9 * 13)
            var eType = [Double](repeating: 0, count: 2 * 13)
            for t in 0..<7 {
                for c in 0..<13 {
                    if ids[t] < 11 && ids[t] != 4 { eWord[Int(ids[t]) * 13 + c] += Double(dout[t * 13 + c]) }
                    if positions[t] != 4 { ePos[Int(positions[t]) * 13 + c] += Double(dout[t * 13 + c]) }
                    eType[Int(types[t]) * 13 + c] += Double(dout[t * 13 + c])
                }
            }
            assertClose(backend.floats(dWord), eWord, "\(backend.kind) embedding dWord")
            assertClose(backend.floats(dPos), ePos, "\(backend.kind) embedding dPosition")
            assertClose(backend.floats(dType), eType, "\(backend.kind) embedding dType")
        }
    }

    func testLayerNormForwardMatchesNaiveLoop() throws {
        var rng = SeededRandom(5)
        for backend in try backends() {
            for (N, C) in [(1, 1), (7, 13), (5, 384)] {
                let x = rng.floats(N * C, -3, 3), w = rng.floats(C), b = rng.floats(C)
                let out = try backend.zeros(N * C), mean = try backend.zeros(N), rstd = try backend.zeros(N)
                backend.layerNormForward(out, mean: mean, rstd: rstd, try backend.upload(x), weight: try backend.upload(w),
                                         bias: try backend.upload(b), rows: N, channels: C, eps: 1e-5)
                var expected = [Double](repeating: 0, count: N * C), eMean = [Double](), eRstd = [Double]()
                for n in 0..<N {
                    let row = x[(n * C)..<(n * C + C)].map(Double.init)
                    let m = row.reduce(0, +) / Double(C)
                    let v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(C)
                    let s = 1 / (v + 1e-5).squareRoot()
                    for c in 0..<C { expected[n * C + c] = (row[c] - m) * s * Double(w[c]) + Double(b[c]) }
                    eMean.append(m)
                    eRstd.append(s)
                }
                assertClose(backend.floats(out), expected, "\(backend.kind) layernorm \(N)x\(C)")
                assertClose(backend.floats(mean), eMean, "\(backend.kind) layernorm mean")
                assertClose(backend.floats(rstd), eRstd, atol: 1e-4, "\(backend.kind) layernorm rstd")
            }
        }
    }

    func testLayerNormBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(6)
        for backend in try backends() {
            let (N, C) = (7, 13)
            let xv = rng.floats(N * C, -2, 2), wv = rng.floats(C), bv = rng.floats(C), w8 = rng.floats(N * C)
            let x = try backend.upload(xv), weight = try backend.upload(wv), bias = try backend.upload(bv)
            let out = try backend.zeros(N * C), mean = try backend.zeros(N), rstd = try backend.zeros(N)
            let loss = { () -> Double in
                backend.layerNormForward(out, mean: mean, rstd: rstd, x, weight: weight, bias: bias, rows: N, channels: C, eps: 1e-5)
                return dot(backend.floats(out), w8)
            }
            _ = loss()
            let dx = try backend.zeros(N * C), dw = try backend.zeros(C), db = try backend.zeros(C)
            backend.layerNormBackward(dx: dx, dWeight: dw, dBias: db, dOut: try backend.upload(w8), x, weight: weight,
                                      mean: mean, rstd: rstd, rows: N, channels: C)
            checkGradient("layernorm dx", backend: backend, input: x, values: xv, analytic: backend.floats(dx), loss: loss)
            checkGradient("layernorm dweight", backend: backend, input: weight, values: wv, analytic: backend.floats(dw), loss: loss)
            checkGradient("layernorm dbias", backend: backend, input: bias, values: bv, analytic: backend.floats(db), loss: loss)
        }
    }

    /// Llama's RMSNorm: the forward against a loop in double, the backward by finite differences.
    func testRMSNormForwardAndBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(16)
        for backend in try backends() {
            let (N, C) = (7, 13)
            let xv = rng.floats(N * C, -2, 2), wv = rng.floats(C), w8 = rng.floats(N * C)
            let x = try backend.upload(xv), weight = try backend.upload(wv)
            let out = try backend.zeros(N * C), rstd = try backend.zeros(N)
            backend.rmsNormForward(out, rstd: rstd, x, weight: weight, rows: N, channels: C, eps: 1e-6)
            var expected = [Double](repeating: 0, count: N * C)
            for n in 0..<N {
                let row = xv[(n * C)..<((n + 1) * C)].map(Double.init)
                let r = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(C) + 1e-6).squareRoot()
                for c in 0..<C { expected[n * C + c] = row[c] * r * Double(wv[c]) }
            }
            assertClose(backend.floats(out), expected, atol: 1e-6, rtol: 1e-5, "\(backend.kind) rmsnorm forward")
            let loss = { () -> Double in
                backend.rmsNormForward(out, rstd: rstd, x, weight: weight, rows: N, channels: C, eps: 1e-6)
                return dot(backend.floats(out), w8)
            }
            _ = loss()
            let dx = try backend.zeros(N * C), dw = try backend.zeros(C)
            backend.rmsNormBackward(dx: dx, dWeight: dw, dOut: try backend.upload(w8), x, weight: weight, rstd: rstd, rows: N, channels: C)
            checkGradient("rmsnorm dx", backend: backend, input: x, values: xv, analytic: backend.floats(dx), loss: loss)
            checkGradient("rmsnorm dweight", backend: backend, input: weight, values: wv, analytic: backend.floats(dw), loss: loss)
        }
    }

    /// Decoding attention against a loop in double: softmax over each sequence's cached keys,
    /// query heads sharing key/value heads in groups. The second cache is longer than the CPU
    /// kernel's 128-position chunks (lengths on, past and short of a boundary); a sequence decoded
    /// alone gives the same floats as in that batch.
    func testDecodeAttentionIsSoftmaxOverTheCachedKeys() throws {
        var rng = SeededRandom(22)
        for backend in try backends() {
            for (s, lengths) in [(DecodeShape(batch: 2, heads: 4, keyValueHeads: 2, headSize: 40, capacity: 9), [9, 4] as [Int32]),
                                 (DecodeShape(batch: 3, heads: 6, keyValueHeads: 2, headSize: 40, capacity: 300), [300, 5, 128])] {
                let qv = rng.floats(s.queries, -2, 2), kv = rng.floats(s.cache, -2, 2), vv = rng.floats(s.cache)
                let out = try backend.zeros(s.queries)
                backend.decodeAttention(out, q: try backend.upload(qv), keyCache: try backend.upload(kv), valueCache: try backend.upload(vv),
                                        lengths: try backend.upload(lengths), s)
                var expected = [Double](repeating: 0, count: s.queries)
                let HS = s.headSize, group = s.heads / s.keyValueHeads, row = s.keyValueHeads * HS
                for b in 0..<s.batch {
                    for h in 0..<s.heads {
                        // cache [B, Tmax, NKV·HS]: position t of key/value head h/group at cache + t·row
                        let cache = b * s.capacity * row + h / group * HS, query = (b * s.heads + h) * HS
                        let scores = (0..<Int(lengths[b])).map { t in
                            (0..<HS).reduce(0.0) { $0 + Double(qv[query + $1]) * Double(kv[cache + t * row + $1]) } / Double(HS).squareRoot()
                        }
                        let top = scores.max()!, weights = scores.map { exp($0 - top) }, total = weights.reduce(0, +)
                        for d in 0..<HS {
                            expected[query + d] = zip(weights, 0..<weights.count).reduce(0.0) { $0 + $1.0 * Double(vv[cache + $1.1 * row + d]) } / total
                        }
                    }
                }
                let got = backend.floats(out)
                assertClose(got, expected, atol: 1e-6, rtol: 1e-5, "\(backend.kind) decode attention, lengths \(lengths)")
                // The last sequence alone, in a cache of its own length.
                let last = s.batch - 1, alone = DecodeShape(batch: 1, heads: s.heads, keyValueHeads: s.keyValueHeads, headSize: HS,
                                                             capacity: Int(lengths[last]))
                let cache = Array(last * s.capacity * row..<(last * s.capacity + Int(lengths[last])) * row)
                let single = try backend.zeros(alone.queries)
                backend.decodeAttention(single, q: try backend.upload(Array(qv[(last * s.heads * HS)...])),
                                        keyCache: try backend.upload(cache.map { kv[$0] }), valueCache: try backend.upload(cache.map { vv[$0] }),
                                        lengths: try backend.upload([lengths[last]]), alone)
                XCTAssertEqual(backend.floats(single), Array(got[(last * s.heads * HS)...]), "\(backend.kind): a sequence alone vs in a batch")
            }
        }
    }

    /// RoPE: HF Llama's rotate_half formula in double, and the backward by finite differences.
    func testRoPEIsHFLlamasRotationAndBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(20)
        for backend in try backends() {
            let (BT, NH, HS) = (5, 2, 8)
            let s = RoPEShape(tokens: BT, heads: NH, headSize: HS)
            let frequencies: [Float] = (0..<(HS / 2)).map { i in Float(1 / pow(500000.0, Double(2 * i) / Double(HS))) }
            let positionValues: [Int32] = [0, 1, 7, 300, 2]
            let xv = rng.floats(s.count), w = rng.floats(s.count)
            let x = try backend.upload(xv), out = try backend.zeros(s.count)
            let positions = try backend.upload(positionValues), inverse = try backend.upload(frequencies)
            backend.rope(out, x, positions: positions, inverseFrequencies: inverse, s)
            var expected = [Double](repeating: 0, count: s.count)
            for r in 0..<BT {
                for h in 0..<NH {
                    let base = (r * NH + h) * HS
                    for j in 0..<HS {   // x·cos + rotate_half(x)·sin, cos and sin of [freqs, freqs]
                        let angle = Double(Float(positionValues[r]) * frequencies[j % (HS / 2)])
                        let rotated = j < HS / 2 ? -Double(xv[base + j + HS / 2]) : Double(xv[base + j - HS / 2])
                        expected[base + j] = Double(xv[base + j]) * cos(angle) + rotated * sin(angle)
                    }
                }
            }
            assertClose(backend.floats(out), expected, atol: 1e-6, rtol: 1e-5, "\(backend.kind) rope forward")
            let loss = { () -> Double in
                backend.rope(out, x, positions: positions, inverseFrequencies: inverse, s)
                return dot(backend.floats(out), w)
            }
            let dx = try backend.zeros(s.count)
            backend.rope(dx, try backend.upload(w), positions: positions, inverseFrequencies: inverse, s, backward: true)
            checkGradient("rope dx", backend: backend, input: x, values: xv, analytic: backend.floats(dx), loss: loss)
        }
    }

    /// Llama's MLP gate: silu(gate)·up against a double loop, both gradients by finite differences.
    func testSwiGLUForwardAndBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(18)
        for backend in try backends() {
            let n = 97
            let gv = rng.floats(n, -8, 8), uv = rng.floats(n, -2, 2), w = rng.floats(n)
            let gate = try backend.upload(gv), up = try backend.upload(uv), out = try backend.zeros(n)
            backend.swigluForward(out, gate: gate, up: up, count: n)
            let expected = zip(gv, uv).map { g, u -> Double in let d = Double(g); return d / (1 + exp(-d)) * Double(u) }
            assertClose(backend.floats(out), expected, atol: 1e-7, rtol: 1e-5, "\(backend.kind) swiglu forward")
            let loss = { () -> Double in backend.swigluForward(out, gate: gate, up: up, count: n); return dot(backend.floats(out), w) }
            let dGate = try backend.zeros(n), dUp = try backend.zeros(n)
            backend.swigluBackward(dGate: dGate, dUp: dUp, dOut: try backend.upload(w), gate: gate, up: up, count: n)
            checkGradient("swiglu dgate", backend: backend, input: gate, values: gv, analytic: backend.floats(dGate), loss: loss)
            checkGradient("swiglu dup", backend: backend, input: up, values: uv, analytic: backend.floats(dUp), loss: loss)
        }
    }

    /// The erf form (BERT) and GPT-2's tanh form, each against its formula in double, and both
    /// backwards by finite differences.
    func testGeluForwardIsTheErfOrTanhFormAndBackwardByFiniteDifferences() throws {
        var rng = SeededRandom(7)
        for backend in try backends() {
            for tanhForm in [false, true] {
                let n = 1001
                let xv = (0..<n).map { Float($0 - 500) / 50 }   // −10 … 10 in steps of 0.02
                let x = try backend.upload(xv), out = try backend.zeros(n)
                backend.geluForward(out, x, count: n, tanh: tanhForm)
                let expected = xv.map { v -> Double in
                    let d = Double(v)
                    return tanhForm ? 0.5 * d * (1 + tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d)))
                                    : 0.5 * d * (1 + erf(d / 2.0.squareRoot()))
                }
                assertClose(backend.floats(out), expected, atol: 1e-7, rtol: 1e-5, "\(backend.kind) gelu forward (tanh \(tanhForm))")

                let small = rng.floats(97, -4, 4), w = rng.floats(97)
                let xs = try backend.upload(small), ys = try backend.zeros(97), dx = try backend.zeros(97)
                let loss = { () -> Double in backend.geluForward(ys, xs, count: 97, tanh: tanhForm); return dot(backend.floats(ys), w) }
                backend.geluBackward(dx: dx, dOut: try backend.upload(w), xs, count: 97, tanh: tanhForm)
                checkGradient("gelu dx (tanh \(tanhForm))", backend: backend, input: xs, values: small, analytic: backend.floats(dx),
                              samples: 97, step: 1e-3, loss: loss)
            }
        }
    }

    func testTanhForwardAndBackward() throws {
        var rng = SeededRandom(9)
        for backend in try backends() {
            let xv = rng.floats(301, -12, 12) + [0, -0.0, 1e-8, 30, -30]
            let x = try backend.upload(xv), out = try backend.zeros(xv.count)
            backend.tanhForward(out, x, count: xv.count)
            assertClose(backend.floats(out), xv.map { Foundation.tanh(Double($0)) }, atol: 2e-7, rtol: 1e-6, "\(backend.kind) tanh")
            let small = rng.floats(50, -3, 3), w = rng.floats(50)
            let xs = try backend.upload(small), ys = try backend.zeros(50), dx = try backend.zeros(50)
            let loss = { () -> Double in backend.tanhForward(ys, xs, count: 50); return dot(backend.floats(ys), w) }
            _ = loss()
            backend.tanhBackward(dx: dx, dOut: try backend.upload(w), out: ys, count: 50)
            checkGradient("tanh dx", backend: backend, input: xs, values: small, analytic: backend.floats(dx), samples: 50, step: 1e-3, loss: loss)
        }
    }

    func testDropoutKeepsTheRateAndItsBackwardUsesTheSameMask() throws {
        var rng = SeededRandom(10)
        for backend in try backends() {
            let n = 20_000, xv = rng.floats(n)
            let x = try backend.upload(xv), out = try backend.zeros(n)
            backend.dropout(out, x, count: n, p: 0.25, seed: 77)
            let y = backend.floats(out)
            var dropped = 0
            for i in 0..<n {
                let keep = rt_dropout_keep(77, UInt64(i), 0.25) != 0
                if !keep { dropped += 1 }
                XCTAssertEqual(y[i], keep ? xv[i] / 0.75 : 0, accuracy: 1e-6)
            }
            XCTAssertEqual(Double(dropped) / Double(n), 0.25, accuracy: 0.015)
            // The backward is the same call on the gradient: the same elements are zeroed.
            let g = try backend.upload([Float](repeating: 1, count: n)), dg = try backend.zeros(n)
            backend.dropout(dg, g, count: n, p: 0.25, seed: 77)
            XCTAssertEqual(backend.floats(dg).map { $0 == 0 }, y.enumerated().map { rt_dropout_keep(77, UInt64($0.offset), 0.25) == 0 })
            backend.dropout(out, x, count: n, p: 0, seed: 1)
            XCTAssertEqual(backend.floats(out), xv)
        }
    }

    func testMemoryOpsAndCasts() throws {
        var rng = SeededRandom(8)
        for backend in try backends() {
            let n = 100_003
            let xv = rng.floats(n)
            let x = try backend.upload(xv), out = try backend.zeros(1)
            backend.sumOfSquares(out, x, count: n)
            assertClose(backend.floats(out), [xv.reduce(0.0) { $0 + Double($1) * Double($1) }], rtol: 1e-6, "sum of squares")
            backend.scale(x, count: n, by: 0.5)
            assertClose(backend.floats(x), xv.map { Double($0) * 0.5 }, "scale")
            let y0 = rng.floats(n), y = try backend.upload(y0)
            backend.axpy(y, x, count: n, alpha: -2)
            assertClose(backend.floats(y), zip(y0, xv).map { Double($0) - 2 * Double($1) * 0.5 }, "axpy")
            backend.fill(x.slice(10, 5), 3)
            XCTAssertEqual(Array(backend.floats(x)[9...15]), [xv[9] * 0.5, 3, 3, 3, 3, 3, xv[15] * 0.5])

            // Casts: round to nearest even, exact round trips where representable.
            let values: [Float] = [1, 1.00390625, 1.01171875, -3.14159, 65504, 0]
            let src = try backend.upload(values), half = try backend.allocate(values.count, .bf16)
            backend.cast(half, src, count: values.count)
            var bits = [UInt16](repeating: 0, count: values.count)
            bits.withUnsafeMutableBytes { backend.download($0, half) }
            XCTAssertEqual(bits, [0x3F80, 0x3F80, 0x3F82, 0xC049, 0x4780, 0x0000])
            let back = try backend.zeros(values.count)
            backend.cast(back, half, count: values.count)
            XCTAssertEqual(backend.floats(back), [1, 1, 1.015625, -3.140625, 65536, 0])
            let f16 = try backend.allocate(values.count, .f16)
            backend.cast(f16, src, count: values.count)
            bits.withUnsafeMutableBytes { backend.download($0, f16) }
            XCTAssertEqual(bits, [0x3C00, 0x3C04, 0x3C0C, 0xC248, 0x7BFF, 0x0000])
            backend.cast(back, f16, count: values.count)
            XCTAssertEqual(backend.floats(back), [1, 1.00390625, 1.01171875, -3.140625, 65504, 0])
        }
    }
}
