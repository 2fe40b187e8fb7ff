// Every Backend op, run on a candidate backend and on the CPU reference with the same seeded
// inputs, outputs compared element by element (as ggml's test-backend-ops). Shapes are chosen
// to hit the awkward cases: lengths that are not multiples of 32, padded and fully masked
// batch items, misaligned tensor views, dropout masks (shared by CPU and CUDA, so they must
// agree exactly in which elements they drop).
import Backend
import Foundation
import Models

/// One op case: builds its inputs from a seeded generator on the given backend, runs, and returns
/// named outputs (downloaded). Run once per backend; outputs compared with atol + rtol·|ref|.
public struct OpCase: Sendable {
    public let name: String
    public let atol, rtol: Double
    let run: @Sendable (Backend) throws -> [(String, [Float])]
}

struct Inputs {
    private var rng: SplitMix
    let backend: Backend
    init(_ backend: Backend, seed: UInt64) { self.backend = backend; rng = SplitMix(mixing: seed) }
    mutating func values(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] { (0..<n).map { _ in lo + (hi - lo) * rng.unit() } }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) throws -> Tensor { try backend.tensor(values(n, lo, hi), .f32) }
    mutating func ints(_ n: Int, below: Int, offset: Int = 0) throws -> Tensor { try ints(intValues(n, below: below, offset: offset)) }
    mutating func intValues(_ n: Int, below: Int, offset: Int = 0) -> [Int32] {
        (0..<n).map { _ in Int32(Int(rng.next() % UInt64(below)) + offset) }
    }
    func ints(_ values: [Int32]) throws -> Tensor { try backend.tensor(values, .i32) }
    func zeros(_ n: Int) throws -> Tensor { try backend.zeros(n) }
}

public extension SplitMix {
    /// The op tests' seeding: the seed spread over the state (odd, so 0 is a good seed too).
    init(mixing seed: UInt64) { self.init(seed: seed &* 0x9E37_79B9_7F4A_7C15 | 1) }
    /// Uniform in [0, 1) with 24 random bits.
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
}

/// Key mask for B items of length T: item b keeps its first T − 3b keys; the last item keeps none.
func keyMask(batch B: Int, length T: Int) -> [Int32] {
    (0..<B).flatMap { b in (0..<T).map { j in b == B - 1 && B > 2 ? 0 : Int32(j < T - 3 * b ? 1 : 0) } }
}

public enum OpCases {
    public static let all: [OpCase] = dense + layers + attention + lossesAndOptimizer + recurrent

    static let dense: [OpCase] = [
        OpCase(name: "matmul (every transpose, alpha, beta, batched)", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 1)
            var outputs: [(String, [Float])] = []
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (m, n, k, batch) = (37, 45, 29, 3)
                let a = try x.floats(batch * m * k), b = try x.floats(batch * k * n), c = try x.floats(batch * m * n)
                backend.matmul(c, a, b, bias: nil, Gemm(m: m, n: n, k: k, transA: ta, transB: tb, alpha: 0.7, beta: 0.3, batch: batch))
                outputs.append(("C transA \(ta) transB \(tb)", backend.floats(c)))
            }
            return outputs
        },
        OpCase(name: "matmul with bias, misaligned views, batched bias", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 2)
            let (m, n, k) = (33, 24, 17)
            let a = try x.floats(m * k + 1), b = try x.floats(k * n + 3), bias = try x.floats(n + 4), c = try x.zeros(2 * m * n + 1)
            backend.matmul(c.slice(1, m * n), a.slice(1, m * k), b.slice(3, k * n), bias: bias.slice(1, n), Gemm(m: m, n: n, k: k))
            // A bias 16- but not 32-byte aligned (as parameter biases in one flat buffer often are)
            // with aligned operands: the one cuBLASLt's epilogue may take, or refuse.
            let c16 = try x.zeros(m * n), a16 = try x.floats(m * k), b16 = try x.floats(n * k)
            backend.matmul(c16, a16, b16, bias: bias.slice(4, n), Gemm(m: m, n: n, k: k, transB: true))
            let c2 = try x.zeros(2 * m * n)
            let a2 = try x.floats(2 * m * k), b2 = try x.floats(2 * k * n)
            backend.matmul(c2, a2, b2, bias: bias.slice(0, n), Gemm(m: m, n: n, k: k, transB: false, batch: 2))
            // An empty product (k = 0): C = beta·C + bias, as BLAS defines it.
            let c3 = try x.floats(m * n)
            backend.matmul(c3, a, b, bias: bias.slice(0, n), Gemm(m: m, n: n, k: 0, beta: 0.5, lda: 1))
            return [("C", backend.floats(c)), ("C, bias 16-byte aligned", backend.floats(c16)), ("C batched", backend.floats(c2)),
                    ("C of an empty product", backend.floats(c3))]
        },
        OpCase(name: "biasBackward", atol: 1e-4, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 3)
            let (N, C) = (301, 70)
            let dOut = try x.floats(N * C), dBias = try x.floats(C)
            backend.biasBackward(dBias, dOut: dOut, rows: N, channels: C)
            return [("dBias", backend.floats(dBias))]
        },
        // The integer sums are exact and the epilogue is one product and one fma on every
        // backend, so the outputs must be equal bit for bit. Rows of x 50 apart (a view), K not a
        // multiple of 4, a zero row, a bias and none. A backend without int8 kernels has no outputs.
        OpCase(name: "int8 linear, dynamic (x quantized per row)", atol: 0, rtol: 0) { backend in
            try int8LinearOutputs(backend, kind: .dynamic, seed: 40)
        },
        // Weight-only sums K fp32 products in each backend's own order (the CPU's 37 rows: the
        // dequantized weight's products in k order; its few rows: 16 lanes at a time):
        // about √K·2⁻²⁴·Σ|x·w|·scale apart, ≈ √301 · 6e-8 · 300 ≈ 3e-4 for these inputs at K = 301.
        OpCase(name: "int8 linear, weight-only (x in fp32)", atol: 3e-4, rtol: 1e-5) { backend in
            try int8LinearOutputs(backend, kind: .weightOnly, seed: 41)
        },
    ]

    /// y = x·Wᵀ (+ bias) through int8Linear for int8 W with per-row scales, x 37 rows: W [29, 45]
    /// (one tile of K on CUDA) and W [70, 301] (several K tiles, rows longer than a block).
    static func int8LinearOutputs(_ backend: Backend, kind: Int8Weight.Kind, seed: UInt64) throws -> [(String, [Float])] {
        try int8LinearOutputs(backend, kind: kind, seed: seed, N: 29, K: 45, ldx: 50)
            + int8LinearOutputs(backend, kind: kind, seed: seed + 100, N: 70, K: 301, ldx: 310)
    }

    static func int8LinearOutputs(_ backend: Backend, kind: Int8Weight.Kind, seed: UInt64, N: Int, K: Int, ldx: Int) throws -> [(String, [Float])] {
        var x = Inputs(backend, seed: seed)
        let M = 37
        let values = x.intValues(N * K, below: 255, offset: -127).map { Int8($0) }, scales = x.values(N, 0.001, 0.02)
        guard let weight = try backend.int8Weight(values: values, scales: scales, outFeatures: N, inFeatures: K, kind: kind) else { return [] }
        var input = x.values(M * ldx, -3, 3)
        for k in 0..<K { input[5 * ldx + k] = 0 }   // a zero row: scale 0
        let xs = try backend.tensor(input, .f32), bias = try x.floats(N), y = try x.zeros(M * N), yNoBias = try x.zeros(M * N)
        backend.int8Linear(y, xs, weight: weight, bias: bias, rows: M, inputStride: ldx)
        backend.int8Linear(yNoBias, xs, weight: weight, bias: nil, rows: M, inputStride: ldx)
        return [("y, K \(K)", backend.floats(y)), ("y without bias, K \(K)", backend.floats(yNoBias))]
    }

    static let layers: [OpCase] = [
        // 150 tokens: word rows of one to a few tokens (one piece each), token types of about 75
        // (segments of several pieces: both stages of the device reduction).
        OpCase(name: "embedding forward/backward (padding rows, ids out of range, long segments)", atol: 1e-5, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 4)
            let s = EmbeddingShape(tokens: 150, channels: 40, vocabulary: 50, positions: 30, tokenTypes: 2, wordPadding: 1, positionPadding: 0)
            let idValues = x.intValues(s.tokens, below: 53, offset: -1), positionValues = x.intValues(s.tokens, below: 30)
            let typeValues = x.intValues(s.tokens, below: 2)
            let ids = try x.ints(idValues), positions = try x.ints(positionValues), types = try x.ints(typeValues)
            let segments = try EmbeddingSegments(ids: idValues, positions: positionValues, types: typeValues, s, backend: backend)
            let word = try x.floats(50 * 40), position = try x.floats(30 * 40), type = try x.floats(2 * 40)
            let out = try x.zeros(s.tokens * 40), dOut = try x.floats(s.tokens * 40)
            let dWord = try x.floats(50 * 40), dPosition = try x.floats(30 * 40), dType = try x.floats(2 * 40)
            backend.embeddingForward(out, ids: ids, positions: positions, types: types, word: word, position: position, type: type, s)
            backend.embeddingBackward(dWord: dWord, dPosition: dPosition, dType: dType, dOut: dOut, ids: ids, positions: positions,
                                      types: types, segments: segments, s)
            return [("out", backend.floats(out)), ("dWord", backend.floats(dWord)), ("dPosition", backend.floats(dPosition)),
                    ("dType", backend.floats(dType))]
        },
        // Then a weight that does not train (no dWeight) and a frozen norm (neither gradient).
        OpCase(name: "layerNorm forward/backward", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 5)
            let (N, C) = (67, 96)
            let input = try x.floats(N * C, -3, 3), w = try x.floats(C), b = try x.floats(C), dOut = try x.floats(N * C)
            let out = try x.zeros(N * C), mean = try x.zeros(N), rstd = try x.zeros(N), dx = try x.zeros(N * C)
            let dw = try x.floats(C), db = try x.floats(C), dbAlone = try x.floats(C), dxFrozen = try x.zeros(N * C)
            backend.layerNormForward(out, mean: mean, rstd: rstd, input, weight: w, bias: b, rows: N, channels: C, eps: 1e-12)
            backend.layerNormBackward(dx: dx, dWeight: dw, dBias: db, dOut: dOut, input, weight: w, mean: mean, rstd: rstd, rows: N, channels: C)
            backend.layerNormBackward(dx: dx, dWeight: nil, dBias: dbAlone, dOut: dOut, input, weight: w, mean: mean, rstd: rstd,
                                      rows: N, channels: C)
            backend.layerNormBackward(dx: dxFrozen, dWeight: nil, dBias: nil, dOut: dOut, input, weight: w, mean: mean, rstd: rstd,
                                      rows: N, channels: C)
            return [("out", backend.floats(out)), ("mean", backend.floats(mean)), ("rstd", backend.floats(rstd)),
                    ("dx", backend.floats(dx)), ("dWeight", backend.floats(dw)), ("dBias", backend.floats(db)),
                    ("dBias without dWeight", backend.floats(dbAlone)), ("dx of a frozen norm", backend.floats(dxFrozen))]
        },
        // Llama's RMSNorm, then a frozen weight (no dWeight); 150 rows: three slices of the device reduction.
        OpCase(name: "rmsNorm forward/backward", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 15)
            let (N, C) = (150, 72)
            let input = try x.floats(N * C, -3, 3), w = try x.floats(C), dOut = try x.floats(N * C)
            let out = try x.zeros(N * C), rstd = try x.zeros(N), dx = try x.zeros(N * C), dw = try x.floats(C), dxFrozen = try x.zeros(N * C)
            backend.rmsNormForward(out, rstd: rstd, input, weight: w, rows: N, channels: C, eps: 1e-5)
            backend.rmsNormBackward(dx: dx, dWeight: dw, dOut: dOut, input, weight: w, rstd: rstd, rows: N, channels: C)
            backend.rmsNormBackward(dx: dxFrozen, dWeight: nil, dOut: dOut, input, weight: w, rstd: rstd, rows: N, channels: C)
            return [("out", backend.floats(out)), ("rstd", backend.floats(rstd)), ("dx", backend.floats(dx)),
                    ("dWeight", backend.floats(dw)), ("dx of a frozen norm", backend.floats(dxFrozen))]
        },
        // Decoding against a KV cache: head sizes 32, 64 and 96 (three dimensions per lane), GQA
        // groups of 1 and 3, lengths from 1 (the query alone) to the whole cache; the last caches
        // are longer than the kernels' chunks (the CPU's 128 positions, CUDA's 64: boundaries and
        // empty chunks), with a head size of 40 (the CPU's vectors of 16 leave a tail); caches
        // with room past the longest length (split by that length, read at the capacity's stride).
        OpCase(name: "decode attention (KV cache, GQA, lengths 1…Tmax)", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 21)
            var outputs: [(String, [Float])] = []
            for (NH, NKV, HS, lengths, room) in [(4, 4, 32, [1, 37, 50], 0), (6, 2, 64, [1, 37, 50], 0), (3, 1, 96, [1, 37, 50], 0),
                                                 (6, 2, 40, [260, 129, 3], 0), (6, 2, 64, [1, 37, 50], 250), (6, 2, 40, [200, 129, 3], 130)] {
                let s = DecodeShape(batch: 3, heads: NH, keyValueHeads: NKV, headSize: HS, capacity: lengths.max()! + room, longest: lengths.max()!)
                let q = try x.floats(s.queries, -2, 2), keys = try x.floats(s.cache, -2, 2), values = try x.floats(s.cache)
                let out = try x.zeros(s.queries)
                backend.decodeAttention(out, q: q, keyCache: keys, valueCache: values, lengths: try x.ints(lengths.map(Int32.init)), s)
                outputs.append(("out NH \(NH) NKV \(NKV) HS \(HS) lengths \(lengths) capacity \(s.capacity)", backend.floats(out)))
            }
            return outputs
        },
        // Llama's θ 10,000 and HS 64, positions up to 4,095; keys with fewer heads (GQA); in place too.
        OpCase(name: "rope forward/backward (in place, GQA key heads)", atol: 1e-5, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 19)
            let (BT, NH, NKV, HS) = (37, 3, 1, 64)
            let inverse: [Float] = (0..<(HS / 2)).map { i in Float(1 / pow(10000.0, Double(2 * i) / Double(HS))) }
            let frequencies = try backend.tensor(inverse, .f32)
            let positions = try x.ints(BT, below: 4096)
            let q = try x.floats(BT * NH * HS), k = try x.floats(BT * NKV * HS), dOut = try x.floats(BT * NH * HS)
            let qOut = try x.zeros(BT * NH * HS), dq = try x.zeros(BT * NH * HS)
            backend.rope(qOut, q, positions: positions, inverseFrequencies: frequencies, RoPEShape(tokens: BT, heads: NH, headSize: HS))
            backend.rope(k, k, positions: positions, inverseFrequencies: frequencies, RoPEShape(tokens: BT, heads: NKV, headSize: HS))
            backend.rope(dq, dOut, positions: positions, inverseFrequencies: frequencies, RoPEShape(tokens: BT, heads: NH, headSize: HS),
                         backward: true)
            return [("q rotated", backend.floats(qOut)), ("k rotated in place", backend.floats(k)), ("dq", backend.floats(dq))]
        },
        OpCase(name: "swiglu forward/backward", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 17)
            let n = 5003
            let gate = try x.floats(n, -12, 12), up = try x.floats(n, -3, 3), dOut = try x.floats(n)
            let out = try x.zeros(n), dGate = try x.zeros(n), dUp = try x.zeros(n)
            backend.swigluForward(out, gate: gate, up: up, count: n)
            backend.swigluBackward(dGate: dGate, dUp: dUp, dOut: dOut, gate: gate, up: up, count: n)
            return [("out", backend.floats(out)), ("dGate", backend.floats(dGate)), ("dUp", backend.floats(dUp))]
        },
        OpCase(name: "gelu (erf and tanh forms), tanh forward/backward", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 6)
            let n = 5000
            let input = try x.floats(n, -6, 6), dOut = try x.floats(n)
            let g = try x.zeros(n), dg = try x.zeros(n), t = try x.zeros(n), dt = try x.zeros(n)
            let gt = try x.zeros(n), dgt = try x.zeros(n)
            backend.geluForward(g, input, count: n)
            backend.geluBackward(dx: dg, dOut: dOut, input, count: n)
            backend.geluForward(gt, input, count: n, tanh: true)
            backend.geluBackward(dx: dgt, dOut: dOut, input, count: n, tanh: true)
            backend.tanhForward(t, input, count: n)
            backend.tanhBackward(dx: dt, dOut: dOut, out: t, count: n)
            return [("gelu", backend.floats(g)), ("dgelu", backend.floats(dg)), ("gelu tanh form", backend.floats(gt)),
                    ("dgelu tanh form", backend.floats(dgt)), ("tanh", backend.floats(t)), ("dtanh", backend.floats(dt))]
        },
        OpCase(name: "dropout (the same mask on every backend)", atol: 0, rtol: 1e-6) { backend in
            var x = Inputs(backend, seed: 7)
            let n = 10_001
            let input = try x.floats(n), out = try x.zeros(n)
            backend.dropout(out, input, count: n, p: 0.3, seed: 0x1234_5678_9abc)
            return [("out", backend.floats(out))]
        },
        OpCase(name: "LoRA forward/backward, dropout 0 and 0.1, ranks 4, 19 (fused) and 130 (composed)", atol: 1e-5, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 8)
            var outputs: [(String, [Float])] = []
            for (N, In, Out, R) in [(77, 48, 40, 4), (45, 70, 33, 19), (21, 150, 140, 130)] {
                for p: Float in [0, 0.1] {
                    let s = LoRAShape(rows: N, inFeatures: In, outFeatures: Out, rank: R, scale: 2, dropout: p, seed: 99)
                    // A and B at the magnitudes adapters have (A kaiming-uniform, ±1/√In; B of the same order,
                    // ±1/√R): with unit-range A and B the R=130 outputs are sums of ±50-sized terms that
                    // cancel to ~0.1, where fp32's own rounding (~3e-5) exceeds the tolerance whichever
                    // correct order the sums take (fused kernel or composed matmuls).
                    let input = try x.floats(N * In), a = try x.floats(R * In, -1 / Float(In).squareRoot(), 1 / Float(In).squareRoot())
                    let b = try x.floats(Out * R, -1 / Float(R).squareRoot(), 1 / Float(R).squareRoot())
                    let y = try x.floats(N * Out), xa = try x.zeros(N * R), dY = try x.floats(N * Out)
                    let dx = try x.floats(N * In), dA = try x.floats(R * In), dB = try x.floats(Out * R)
                    backend.loraForward(y, xa: xa, input, a: a, b: b, s)
                    backend.loraBackward(dx: dx, dA: dA, dB: dB, dY: dY, input, xa: xa, a: a, b: b, s)
                    let tag = "R=\(R) p=\(p)"
                    outputs += [("y \(tag)", backend.floats(y)), ("xa \(tag)", backend.floats(xa)), ("dx \(tag)", backend.floats(dx)),
                                ("dA \(tag)", backend.floats(dA)), ("dB \(tag)", backend.floats(dB))]
                }
            }
            return outputs
        },
    ]

    static let attention: [OpCase] = [(2, 37, 3, 32), (3, 64, 2, 64), (4, 130, 2, 16), (3, 20, 2, 96)].map { B, T, NH, HS in
        OpCase(name: "attention B=\(B) T=\(T) NH=\(NH) HS=\(HS) (mask, bias, scores, dScores, dropout)", atol: 2e-5, rtol: 2e-4) { backend in
            var x = Inputs(backend, seed: UInt64(T * 100 + HS))
            var outputs: [(String, [Float])] = []
            for dropout: Float in [0, 0.2] {
                let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS, dropout: dropout, seed: 42)
                let q = try x.floats(s.activations), k = try x.floats(s.activations), v = try x.floats(s.activations)
                let mask = try x.ints(keyMask(batch: B, length: T)), bias = try x.floats(NH * T * T)
                let out = try x.zeros(s.activations), lse = try x.zeros(s.rows), scores = try x.zeros(s.scores)
                let dOut = try x.floats(s.activations), dScores = try x.floats(s.scores, -0.1, 0.1)
                let dq = try x.zeros(s.activations), dk = try x.zeros(s.activations), dv = try x.zeros(s.activations)
                let dBias = try x.floats(NH * T * T)
                backend.attentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: .dense(dScores), out: out, lse: lse,
                                          q: q, k: k, v: v, mask: mask, bias: bias, s)
                let lseValues = backend.floats(lse).map { $0.isInfinite ? Float(1e30) : $0 }
                outputs += [("out p=\(dropout)", backend.floats(out)), ("lse p=\(dropout)", lseValues),
                            ("scores p=\(dropout)", backend.floats(scores)), ("dq p=\(dropout)", backend.floats(dq)),
                            ("dk p=\(dropout)", backend.floats(dk)), ("dv p=\(dropout)", backend.floats(dv)),
                            ("dBias p=\(dropout)", backend.floats(dBias))]
            }
            // Without mask, bias or scores (the BERT fast path).
            let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS)
            let q = try x.floats(s.activations), k = try x.floats(s.activations), v = try x.floats(s.activations)
            let out = try x.zeros(s.activations), lse = try x.zeros(s.rows), dOut = try x.floats(s.activations)
            let dq = try x.zeros(s.activations), dk = try x.zeros(s.activations), dv = try x.zeros(s.activations)
            backend.attentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: nil, bias: nil, s)
            backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dOut, dScores: nil, out: out, lse: lse,
                                      q: q, k: k, v: v, mask: nil, bias: nil, s)
            return outputs + [("plain out", backend.floats(out)), ("plain dq", backend.floats(dq)), ("plain dk", backend.floats(dk)),
                              ("plain dv", backend.floats(dv))]
        }
    } + [(3, 37, 2, 32, 16), (2, 70, 3, 64, 64), (1, 130, 2, 16, 16)].map { B, T, NH, HS, tHS in
        OpCase(name: "attention-score distillation, fused: B=\(B) T=\(T) NH=\(NH) HS=\(HS) target HS=\(tHS)", atol: 2e-5, rtol: 2e-4) { backend in
            var x = Inputs(backend, seed: UInt64(T * 10 + tHS))
            let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS, dropout: 0.1, seed: 7)
            let q = try x.floats(s.activations), k = try x.floats(s.activations), v = try x.floats(s.activations)
            let mask = try x.ints(keyMask(batch: B, length: T)), bias = try x.floats(NH * T * T), tBias = try x.floats(NH * T * T)
            let target = ScoreTarget(q: try x.floats(B * T * NH * tHS, -2, 2), k: try x.floats(B * T * NH * tHS), bias: tBias, headSize: tHS)
            let out = try x.zeros(s.activations), lse = try x.zeros(s.rows), dOut = try x.floats(s.activations), loss = try x.zeros(1)
            let dq = try x.zeros(s.activations), dk = try x.zeros(s.activations), dv = try x.zeros(s.activations)
            let dBias = try x.zeros(NH * T * T)
            backend.attentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: mask, bias: bias, s)
            backend.attentionScoreLoss(loss, q: q, k: k, mask: mask, bias: bias, target: target, s)
            backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: .scoreMSE(target, gradScale: 3),
                                      out: out, lse: lse, q: q, k: k, v: v, mask: mask, bias: bias, s)
            return [("loss", backend.floats(loss)), ("dq", backend.floats(dq)), ("dk", backend.floats(dk)), ("dv", backend.floats(dv)),
                    ("dBias", backend.floats(dBias))]
        }
    } + [(2, 37, 4, 2, 32), (2, 70, 6, 2, 64), (1, 130, 3, 1, 16), (1, 130, 2, 2, 16)].map { B, T, NH, NKV, HS in
        OpCase(name: "causal grouped-query attention B=\(B) T=\(T) NH=\(NH) NKV=\(NKV) HS=\(HS) (mask, scores, dScores, dropout)",
               atol: 2e-5, rtol: 2e-4) { backend in
            var x = Inputs(backend, seed: UInt64(T * 7 + NKV))
            var outputs: [(String, [Float])] = []
            for (dropout, withScores) in [(Float(0), true), (0.2, true), (0, false)] {
                let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS, keyValueHeads: NKV, causal: true, dropout: dropout, seed: 9)
                let q = try x.floats(s.activations), k = try x.floats(s.keyValueActivations), v = try x.floats(s.keyValueActivations)
                let mask = try x.ints(keyMask(batch: B, length: T))
                let out = try x.zeros(s.activations), lse = try x.zeros(s.rows), scores = withScores ? try x.zeros(s.scores) : nil
                let dOut = try x.floats(s.activations), dScores = withScores ? try x.floats(s.scores, -0.1, 0.1) : nil
                let dq = try x.zeros(s.activations), dk = try x.zeros(s.keyValueActivations), dv = try x.zeros(s.keyValueActivations)
                backend.attentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: nil, s)
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dOut, dScores: dScores.map { .dense($0) }, out: out,
                                          lse: lse, q: q, k: k, v: v, mask: mask, bias: nil, s)
                let tag = "p=\(dropout)\(withScores ? " scores" : "")"
                outputs += [("out \(tag)", backend.floats(out)), ("lse \(tag)", backend.floats(lse).map { $0.isInfinite ? Float(1e30) : $0 }),
                            ("dq \(tag)", backend.floats(dq)), ("dk \(tag)", backend.floats(dk)), ("dv \(tag)", backend.floats(dv))]
                if let scores { outputs.append(("scores \(tag)", backend.floats(scores))) }
            }
            return outputs
        }
    } + [
        OpCase(name: "masked softmax forward/backward (and causal)", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 9)
            let s = AttentionShape(batch: 3, length: 45, heads: 2, headSize: 8)
            let scores = try x.floats(s.scores, -4, 4), mask = try x.ints(keyMask(batch: 3, length: 45)), bias = try x.floats(2 * 45 * 45)
            let probs = try x.zeros(s.scores), dProbs = try x.floats(s.scores), dScores = try x.zeros(s.scores)
            backend.maskedSoftmaxForward(probs, scores: scores, mask: mask, bias: bias, s)
            backend.maskedSoftmaxBackward(dScores: dScores, dProbs: dProbs, probs: probs, s)
            var causal = s
            causal.causal = true
            let causalProbs = try x.zeros(s.scores), lse = try x.zeros(s.rows), masked = try x.floats(s.scores)
            backend.maskedSoftmaxForward(causalProbs, lse: lse, scores: scores, mask: mask, bias: bias, causal)
            backend.maskedScores(masked, mask: mask, bias: bias, causal)
            return [("probs", backend.floats(probs)), ("dScores", backend.floats(dScores)), ("causal probs", backend.floats(causalProbs)),
                    ("causal lse", backend.floats(lse).map { $0.isInfinite ? Float(1e30) : $0 }), ("causal masked scores", backend.floats(masked))]
        },
    ]

    static let lossesAndOptimizer: [OpCase] = [
        OpCase(name: "cross-entropy (ignored labels), soft cross-entropy", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 10)
            let (N, V) = (70, 5)
            let logits = try x.floats(N * V, -5, 5), labels = try x.ints(N, below: V + 2, offset: -1), teacher = try x.floats(N * V, -5, 5)
            let loss = try x.zeros(1), soft = try x.zeros(1), d = try x.zeros(N * V), ds = try x.zeros(N * V)
            backend.crossEntropy(loss, dLogits: d, logits: logits, labels: labels, rows: N, classes: V, gradScale: 2)
            backend.softCrossEntropy(soft, dLogits: ds, logits: logits, teacher: teacher, rows: N, classes: V, temperature: 2.5, gradScale: 0.5)
            return [("ce loss", backend.floats(loss)), ("ce dLogits", backend.floats(d)), ("soft loss", backend.floats(soft)),
                    ("soft dLogits", backend.floats(ds))]
        },
        OpCase(name: "mse, cosine", atol: 1e-6, rtol: 1e-4) { backend in
            var x = Inputs(backend, seed: 11)
            let n = 70_001, (N, C) = (63, 50)
            let a = try x.floats(n), b = try x.floats(n), loss = try x.zeros(1), da = try x.zeros(n)
            let p = try x.floats(N * C), q = try x.floats(N * C), closs = try x.zeros(1), dp = try x.zeros(N * C)
            backend.mse(loss, dA: da, a, b, count: n, gradScale: 3)
            backend.cosine(closs, dA: dp, p, q, rows: N, channels: C, gradScale: 1)
            return [("mse", backend.floats(loss)), ("mse dA", backend.floats(da)), ("cosine", backend.floats(closs)),
                    ("cosine dA", backend.floats(dp))]
        },
        OpCase(name: "adamw, sumOfSquares, scale, axpy, fill, copy, casts", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 12)
            let n = 100_003
            let p = try x.floats(n), g = try x.floats(n), m = try x.floats(n, 0, 0.1), v = try x.floats(n, 0, 0.1)
            backend.adamw(p, grads: g, m: m, v: v, count: n, AdamW(learningRate: 1e-3, weightDecay: 0.01), step: 3)
            let sum = try x.zeros(1)
            backend.sumOfSquares(sum, g, count: n)
            backend.scale(g, count: n, by: 0.5)
            backend.axpy(g, p, count: n, alpha: -2)
            let filled = try x.zeros(1000), copied = try x.zeros(n)
            backend.fill(filled.slice(10, 900), 2.5)
            backend.copy(copied, g)
            // The casts round the same inputs on both backends (not AdamW's outputs, whose last-bit
            // differences may fall on either side of a 16-bit rounding boundary).
            let bf16 = try backend.allocate(n, .bf16), f16 = try backend.allocate(n, .f16), original = try x.floats(n)
            let fromBF16 = try x.zeros(n), fromF16 = try x.zeros(n)
            backend.cast(bf16, original, count: n)
            backend.cast(fromBF16, bf16, count: n)
            backend.cast(f16, original, count: n)
            backend.cast(fromF16, f16, count: n)
            return [("params", backend.floats(p)), ("m", backend.floats(m)), ("v", backend.floats(v)), ("sum of squares", backend.floats(sum)),
                    ("scale+axpy", backend.floats(g)), ("fill", backend.floats(filled)), ("copy", backend.floats(copied)),
                    ("bf16 round trip", backend.floats(fromBF16)), ("f16 round trip", backend.floats(fromF16))]
        },
    ]
}
