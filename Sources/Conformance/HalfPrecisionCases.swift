// The cases a GPU backend at bf16 or fp16 precision is checked with (backend-check --precision
// bf16|fp16; the fp32 cases are for an fp32 run). Inputs are rounded to the 16-bit type first,
// on both backends, so a matmul's only difference from the CPU's fp32 is the order of its fp32
// accumulation, and tensor-core attention's is the rounding of P and dS to 16 bits inside the
// kernel: bf16 keeps 8 significant bits, fp16 11, hence the tolerances.
import Backend

public enum HalfPrecisionCases {
    /// The cases for a candidate at `precision`; none at fp32 or tf32.
    public static func cases(_ precision: Precision) -> [OpCase] {
        guard let half = precision.halfType else { return [] }
        let tolerance = half == .bf16 ? 2e-2 : 3e-3
        return [matmul(half), keptWeights(half, tolerance: tolerance)] + [(2, 17, 2, 32), (3, 80, 2, 64), (1, 130, 3, 32), (2, 64, 2, 64), (2, 100, 4, 64)].map { B, T, NH, HS in
            attention(half, B: B, T: T, NH: NH, HS: HS, tolerance: tolerance)
        }
    }

    /// Rounds an input to `half` and back, in place, on the backend running the case.
    public static func round(_ t: Tensor, _ half: DType, _ backend: Backend) throws -> Tensor {
        let h = try backend.allocate(t.count, half)
        backend.cast(h, t, count: t.count)
        backend.cast(t, h, count: t.count)
        return t
    }

    static func matmul(_ half: DType) -> OpCase {
        OpCase(name: "16-bit matmul (\(half)): every transpose, batched, bias epilogue", atol: 1e-4, rtol: 1e-3) { backend in
            var x = Inputs(backend, seed: 71)
            var outputs: [(String, [Float])] = []
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let (m, n, k, batch) = (40, 48, 72, 2)
                let a = try round(x.floats(batch * m * k), half, backend), b = try round(x.floats(batch * k * n), half, backend)
                let c = try x.floats(batch * m * n)
                backend.matmul(c, a, b, bias: nil, Gemm(m: m, n: n, k: k, transA: ta, transB: tb, alpha: 0.5, beta: 0.25, batch: batch))
                outputs.append(("C transA \(ta) transB \(tb)", backend.floats(c)))
            }
            let (m, n, k) = (96, 64, 128)   // a linear layer: y = x·Wᵀ + bias
            let a = try round(x.floats(m * k), half, backend), w = try round(x.floats(n * k), half, backend)
            let bias = try x.floats(n), y = try x.zeros(m * n)
            backend.matmul(y, a, w, bias: bias, Gemm(m: m, n: n, k: k, transB: true))
            return outputs + [("linear with bias", backend.floats(y))]
        }
    }

    /// A weight buffer with a kept 16-bit copy (keepHalfCopy) read by a linear layer's matmul
    /// after each kind of write — an upload and a copy into part of it, a scale, an AdamW step
    /// (lr 0.1) on part of it, a matmul into part of it (as a LoRA merge) — the copy follows every
    /// one (a stale copy is off by about 10 %).
    static func keptWeights(_ half: DType, tolerance: Double) -> OpCase {
        OpCase(name: "16-bit copy of a weight buffer (\(half)) follows its writes", atol: tolerance, rtol: tolerance) { backend in
            var x = Inputs(backend, seed: 73)
            let (m, n, k) = (24, 40, 72), part = 16 * k   // W [n, k]; the copy and the upload write 16 rows each
            let weights = try round(x.floats(n * k), half, backend)
            try backend.keepHalfCopy(of: weights)
            let input = try round(x.floats(m * k), half, backend), y = try x.zeros(m * n)
            var outputs: [(String, [Float])] = []
            func linear(_ after: String) {
                backend.matmul(y, input, weights, bias: nil, Gemm(m: m, n: n, k: k, transB: true))
                outputs.append(("y after \(after)", backend.floats(y)))
            }
            linear("the first cast")
            backend.copy(weights.slice(0, part), try round(x.floats(part), half, backend))
            linear("a copy into it")
            let values = backend.floats(try round(x.floats(part), half, backend))
            values.withUnsafeBytes { backend.upload(weights.slice(part, part), $0) }
            linear("an upload into it")
            backend.scale(weights, count: n * k, by: 2)
            linear("a scale")
            let grads = try x.floats(part), m1 = try x.zeros(part), v1 = try x.zeros(part)
            backend.adamw(weights.slice(0, part), grads: grads, m: m1, v: v1, count: part, AdamW(learningRate: 0.1, weightDecay: 0), step: 1)
            linear("an AdamW step")
            let bRows = try round(x.floats(8 * 4), half, backend), aCols = try round(x.floats(4 * k), half, backend)
            backend.matmul(weights.slice(part, 8 * k), bRows, aCols, bias: nil, Gemm(m: 8, n: k, k: 4, alpha: 1, beta: 1))
            linear("a matmul into it")
            return outputs
        }
    }

    static func attention(_ half: DType, B: Int, T: Int, NH: Int, HS: Int, tolerance: Double) -> OpCase {
        OpCase(name: "tensor-core attention (\(half)) B=\(B) T=\(T) NH=\(NH) HS=\(HS) (mask, bias, dropout; causal, grouped heads)",
               atol: tolerance, rtol: tolerance) { backend in
            var x = Inputs(backend, seed: UInt64(T * 10 + HS))
            var outputs: [(String, [Float])] = []
            // A decoder's attention: causal, and grouped heads where NH is even.
            for (dropout, masked, causal) in [(Float(0), true, false), (0.1, false, false), (0.1, true, true)] {
                let NKV = causal && NH % 2 == 0 ? NH / 2 : NH
                let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS, keyValueHeads: NKV, causal: causal, dropout: dropout,
                                       seed: 17)
                let KV = s.keyValueActivations
                let q = try round(x.floats(s.activations, -2, 2), half, backend), k = try round(x.floats(KV, -2, 2), half, backend)
                let v = try round(x.floats(KV), half, backend), dOut = try round(x.floats(s.activations), half, backend)
                let mask = masked ? try x.ints(keyMask(batch: B, length: T)) : nil
                let bias = masked ? try x.floats(NH * T * T) : nil, dBias = masked ? try x.zeros(NH * T * T) : nil
                let out = try x.zeros(s.activations), lse = try x.zeros(s.rows)
                let dq = try x.zeros(s.activations), dk = try x.zeros(KV), dv = try x.zeros(KV)
                backend.attentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: mask, bias: bias, s)
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: nil, out: out, lse: lse,
                                          q: q, k: k, v: v, mask: mask, bias: bias, s)
                let tag = "p=\(dropout)" + (masked ? " masked" : "") + (causal ? " causal NKV=\(NKV)" : "")
                outputs += [("out \(tag)", backend.floats(out)), ("lse \(tag)", backend.floats(lse).map { $0.isInfinite ? 1e30 : $0 }),
                            ("dq \(tag)", backend.floats(dq)), ("dk \(tag)", backend.floats(dk)), ("dv \(tag)", backend.floats(dv))]
                if let dBias { outputs.append(("dBias \(tag)", backend.floats(dBias))) }
            }
            return outputs
        }
    }
}
