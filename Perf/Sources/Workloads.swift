// The workloads: BERT shapes (all-MiniLM-L6-v2: C=384, FF=1536, B=32, T=64; all-mpnet-base-v2:
// C=768, FF=3072, B=32, T=128). Each carries its work count (FLOPs, or the fewest bytes the op
// must move) and, when a reference exists, the spec Perf/reference/reference.py runs.
import Backend

struct Workload {
    let name: String
    let unit: String        // "GFLOP/s" or "GB/s"
    let work: Double        // FLOPs or bytes per run
    var warmup = 3
    var reps = 10
    var run: () -> Void = {}
    var spec: [String: Any]? = nil
    var compareTo: String? = nil   // reference is another Retort workload (by name)
    var hidden = false             // measured for a comparison, not printed
    /// Builds the workload's tensors just before it is measured and returns its run; they are
    /// freed after, so its peak memory (setup included) is its own. Replaces `run`.
    var setup: (() throws -> () -> Void)? = nil
    var flops: Double? = nil       // model FLOPs per run, for MFU
}

func random(_ backend: Backend, _ count: Int, seed: UInt64 = 1) throws -> Tensor {
    var state = seed &* 0x9E37_79B9_7F4A_7C15
    let values = (0..<count).map { _ -> Float in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int64(bitPattern: state >> 11) % 2_000_001 - 1_000_000) / 1_000_000
    }
    return try backend.tensor(values, .f32)
}

/// `wants`: whether a workload of that name is asked for (--filter); groups nobody asks for are
/// not built, so a filtered run on a GPU spends its time on what it measures.
func makeWorkloads(_ backend: Backend, quick: Bool, wants: (String) -> Bool = { _ in true }) throws -> [Workload] {
    var list: [Workload] = []
    func any(_ names: String...) -> Bool { names.map(wants).contains(true) }   // asks about every name
    let reps = quick ? 3 : 10, fewReps = quick ? 2 : 5

    // sgemm at BERT linear-layer shapes, vs numpy's matmul.
    for (m, n, k) in [(2048, 1536, 384), (2048, 384, 1536), (2048, 384, 384), (4096, 3072, 768), (4096, 768, 3072), (4096, 768, 768)]
    where wants("sgemm M=\(m) N=\(n) K=\(k)") {
        let a = try random(backend, m * k), b = try random(backend, k * n), c = try backend.zeros(m * n)
        list.append(Workload(name: "sgemm M=\(m) N=\(n) K=\(k)", unit: "GFLOP/s", work: 2.0 * Double(m * n * k), reps: reps,
                             run: { backend.matmul(c, a, b, bias: nil, Gemm(m: m, n: n, k: k)) },
                             spec: ["op": "sgemm", "m": m, "n": n, "k": k]))
    }

    // Few rows against a weight stored [N, K] (transformers' layout): decoding's LM head at batch 1,
    // a batch-32 decode step's MLP, an LSTM step's h·W_hhᵀ — the CPU's weight-row kernel.
    for (m, n, k) in [(1, 49152, 576), (32, 1536, 576), (32, 1200, 300)] where wants("sgemm M=\(m) N=\(n) K=\(k) weight [N,K]") {
        let a = try random(backend, m * k), b = try random(backend, n * k), c = try backend.zeros(m * n)
        list.append(Workload(name: "sgemm M=\(m) N=\(n) K=\(k) weight [N,K]", unit: "GFLOP/s", work: 2.0 * Double(m * n * k), reps: reps,
                             run: { backend.matmul(c, a, b, bias: nil, Gemm(m: m, n: n, k: k, transB: true)) },
                             spec: ["op": "sgemm", "m": m, "n": n, "k": k, "trans_b": true]))
    }

    // Attention forward+backward (the backend's op: fused kernels, or on CUDA at fp32 from T=128
    // the composed path, CUDABackend.composesAttention) vs PyTorch SDPA and vs Retort's unfused
    // composition; at bf16/fp16 on a GPU also T=512, against SDPA's flash backend in that type.
    let halfAttention = backend.kind == .cuda && backend.precision.halfType != nil
    // Decoders' lengths: causal at T=128, and T=512 (B=8 on the CPU) causal and not.
    let shapes: [(Int, Int, Int, Int, Bool)] = [(32, 12, 64, 32, false), (32, 12, 128, 64, false), (32, 12, 128, 64, true)]
        + (halfAttention ? [(32, 12, 512, 64, false), (32, 12, 512, 64, true)] : [(8, 12, 512, 64, false), (8, 12, 512, 64, true)])
    for (B, NH, T, HS, causal) in shapes
    where any("attention fwd+bwd B=\(B) NH=\(NH) T=\(T) HS=\(HS)" + (causal ? " causal" : ""),
              "attention fwd+bwd B=\(B) NH=\(NH) T=\(T) HS=\(HS)" + (causal ? " causal" : "") + " unfused ops",
              "attention fwd+bwd B=\(B) NH=\(NH) T=\(T) HS=\(HS)" + (causal ? " causal" : "") + " vs unfused ops") {
        let s = AttentionShape(batch: B, length: T, heads: NH, headSize: HS, causal: causal)
        let q = try random(backend, s.activations, seed: 1), k = try random(backend, s.activations, seed: 2)
        let v = try random(backend, s.activations, seed: 3), dOut = try random(backend, s.activations, seed: 4)
        let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows)
        let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.activations), dv = try backend.zeros(s.activations)
        // QKᵀ, PV; dV, dP, dQ, dK (recomputation not counted); causal: the half at or below the diagonal
        let flops = 12.0 * Double(B * NH * T * T * HS) * (causal ? 0.5 : 1)
        let tag = "B=\(B) NH=\(NH) T=\(T) HS=\(HS)" + (causal ? " causal" : "")
        let spec: [String: Any] = ["op": "attention_forward_backward", "batch": B, "heads": NH, "length": T, "head_size": HS,
                                   "causal": causal]
        let op = {
            backend.attentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: nil, bias: nil, s)
            backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dOut, dScores: nil, out: out, lse: lse,
                                      q: q, k: k, v: v, mask: nil, bias: nil, s)
        }
        // The composition of primitives a backend without fused attention gets (ComposedOps.swift).
        let unfused = {
            backend.composedAttentionForward(out, lse: lse, scores: nil, q: q, k: k, v: v, mask: nil, bias: nil, s)
            backend.composedAttentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dOut, dScores: nil, q: q, k: k, v: v,
                                              mask: nil, bias: nil, s)
        }
        let r = T > 64 ? fewReps : reps
        list.append(Workload(name: "attention fwd+bwd \(tag)", unit: "GFLOP/s", work: flops, reps: r, run: op, spec: spec))
        list.append(Workload(name: "attention fwd+bwd \(tag) unfused ops", unit: "GFLOP/s", work: flops, reps: r, run: unfused,
                             spec: spec))
        list.append(Workload(name: "attention fwd+bwd \(tag) vs unfused ops", unit: "GFLOP/s", work: flops, reps: r, run: op,
                             compareTo: "attention fwd+bwd \(tag) unfused ops"))
    }

    // Row-wise and element-wise ops at MiniLM shapes (B·T = 2048 rows).
    let (N, C, FF) = (2048, 384, 1536)
    if any("layernorm fwd N=\(N) C=\(C)", "layernorm fwd+bwd N=\(N) C=\(C)") {
        let x = try random(backend, N * C), w = try random(backend, C), b = try random(backend, C), dOut = try random(backend, N * C)
        let out = try backend.zeros(N * C), dx = try backend.zeros(N * C), mean = try backend.zeros(N), rstd = try backend.zeros(N)
        let dw = try backend.zeros(C), db = try backend.zeros(C)
        let forward = { backend.layerNormForward(out, mean: mean, rstd: rstd, x, weight: w, bias: b, rows: N, channels: C, eps: 1e-12) }
        list.append(Workload(name: "layernorm fwd N=\(N) C=\(C)", unit: "GB/s", work: 2.0 * Double(N * C * 4), reps: reps,
                             run: forward, spec: ["op": "layernorm_forward", "n": N, "c": C]))
        list.append(Workload(name: "layernorm fwd+bwd N=\(N) C=\(C)", unit: "GB/s", work: 5.0 * Double(N * C * 4), reps: reps,
                             run: { forward(); backend.layerNormBackward(dx: dx, dWeight: dw, dBias: db, dOut: dOut, x, weight: w, mean: mean, rstd: rstd, rows: N, channels: C) },
                             spec: ["op": "layernorm_forward_backward", "n": N, "c": C]))
    }
    if any("gelu fwd n=\(N * FF)", "gelu fwd+bwd n=\(N * FF)") {
        let n = N * FF
        let x = try random(backend, n), dOut = try random(backend, n), out = try backend.zeros(n), dx = try backend.zeros(n)
        list.append(Workload(name: "gelu fwd n=\(n)", unit: "GB/s", work: 2.0 * Double(n * 4), reps: reps,
                             run: { backend.geluForward(out, x, count: n) }, spec: ["op": "gelu_forward", "n": n]))
        list.append(Workload(name: "gelu fwd+bwd n=\(n)", unit: "GB/s", work: 5.0 * Double(n * 4), reps: reps,
                             run: { backend.geluForward(out, x, count: n); backend.geluBackward(dx: dx, dOut: dOut, x, count: n) },
                             spec: ["op": "gelu_forward_backward", "n": n]))
    }
    // GPT-2's tanh form (gelu_new), against PyTorch's own tanh approximation.
    if any("gelu tanh fwd n=\(N * FF)", "gelu tanh fwd+bwd n=\(N * FF)") {
        let n = N * FF
        let x = try random(backend, n), dOut = try random(backend, n), out = try backend.zeros(n), dx = try backend.zeros(n)
        list.append(Workload(name: "gelu tanh fwd n=\(n)", unit: "GB/s", work: 2.0 * Double(n * 4), reps: reps,
                             run: { backend.geluForward(out, x, count: n, tanh: true) }, spec: ["op": "gelu_tanh_forward", "n": n]))
        list.append(Workload(name: "gelu tanh fwd+bwd n=\(n)", unit: "GB/s", work: 5.0 * Double(n * 4), reps: reps,
                             run: { backend.geluForward(out, x, count: n, tanh: true); backend.geluBackward(dx: dx, dOut: dOut, x, count: n, tanh: true) },
                             spec: ["op": "gelu_tanh_forward_backward", "n": n]))
    }
    if any("embedding fwd+bwd BT=\(N) C=\(C)", "embedding segment plan (host, per training batch) BT=\(N)") {
        let s = EmbeddingShape(tokens: N, channels: C, vocabulary: 30522, positions: 512, tokenTypes: 2)
        let idValues = (0..<N).map { Int32($0 * 7919 % 30522) }, positionValues = (0..<N).map { Int32($0 % 64) }
        let ids = try backend.tensor(idValues, .i32), positions = try backend.tensor(positionValues, .i32), types = try backend.zeros(N, .i32)
        let segments = try EmbeddingSegments(ids: idValues, positions: positionValues, types: [Int32](repeating: 0, count: N), s, backend: backend)
        let word = try random(backend, 30522 * C), position = try random(backend, 512 * C), type = try random(backend, 2 * C)
        let dWord = try backend.zeros(30522 * C), dPosition = try backend.zeros(512 * C), dType = try backend.zeros(2 * C)
        let out = try backend.zeros(N * C), dOut = try random(backend, N * C)
        list.append(Workload(name: "embedding fwd+bwd BT=\(N) C=\(C)", unit: "GB/s", work: 11.0 * Double(N * C * 4), reps: reps,
                             run: {
                                 backend.embeddingForward(out, ids: ids, positions: positions, types: types, word: word, position: position, type: type, s)
                                 backend.embeddingBackward(dWord: dWord, dPosition: dPosition, dType: dType, dOut: dOut, ids: ids, positions: positions, types: types,
                                                           segments: segments, s)
                             },
                             spec: ["op": "embedding_forward_backward", "tokens": N, "c": C, "vocab": 30522, "positions": 512]))
        // What loading a training batch adds on the host: the embedding gradients' segment plan.
        let planTensor = try backend.allocate(EmbeddingSegments.capacity(tokens: N), .i32), typeValues = [Int32](repeating: 0, count: N)
        list.append(Workload(name: "embedding segment plan (host, per training batch) BT=\(N)", unit: "ktok/s", work: Double(N) * 1e6,
                             reps: reps, run: {
                                 _ = EmbeddingSegments(ids: idValues, positions: positionValues, types: typeValues, s, into: planTensor, backend: backend)
                             }))
    }
    if any("cross-entropy fwd+bwd N=4096 V=1000") {
        let (rows, V) = (4096, 1000)
        let logits = try random(backend, rows * V), labels = try backend.tensor((0..<rows).map { Int32($0 % V) }, .i32)
        let loss = try backend.zeros(1), grad = try backend.zeros(rows * V)
        list.append(Workload(name: "cross-entropy fwd+bwd N=\(rows) V=\(V)", unit: "GB/s", work: 2.0 * Double(rows * V * 4), reps: reps,
                             run: { backend.crossEntropy(loss, dLogits: grad, logits: logits, labels: labels, rows: rows, classes: V, gradScale: 1) },
                             spec: ["op": "cross_entropy", "n": rows, "classes": V]))
    }
    if any("mse fwd+bwd n=\(32 * 12 * 64 * 64)", "cosine fwd+bwd N=\(N) C=\(C)") {
        let n = 32 * 12 * 64 * 64   // TinyBERT attention-score MSE at MiniLM shapes
        let a = try random(backend, n), b = try random(backend, n, seed: 9), loss = try backend.zeros(1), da = try backend.zeros(n)
        list.append(Workload(name: "mse fwd+bwd n=\(n)", unit: "GB/s", work: 3.0 * Double(n * 4), reps: reps,
                             run: { backend.mse(loss, dA: da, a, b, count: n, gradScale: 1) }, spec: ["op": "mse", "n": n]))
        let x = try random(backend, N * C), y = try random(backend, N * C, seed: 5), dx = try backend.zeros(N * C)
        list.append(Workload(name: "cosine fwd+bwd N=\(N) C=\(C)", unit: "GB/s", work: 3.0 * Double(N * C * 4), reps: reps,
                             run: { backend.cosine(loss, dA: dx, x, y, rows: N, channels: C, gradScale: 1) },
                             spec: ["op": "cosine", "n": N, "c": C]))
    }
    if any("adamw n=22713216") {
        let n = 22_713_216   // all-MiniLM-L6-v2's parameters
        let p = try random(backend, n), g = try random(backend, n, seed: 2), m = try backend.zeros(n), v = try backend.zeros(n)
        let h = AdamW(learningRate: 1e-4)
        var step = 0
        list.append(Workload(name: "adamw n=\(n)", unit: "GB/s", work: 7.0 * Double(n * 4), reps: fewReps,
                             run: { step += 1; backend.adamw(p, grads: g, m: m, v: v, count: n, h, step: step) },
                             spec: ["op": "adamw", "n": n]))
    }
    if any("lora fwd+bwd N=\(N) \(C)->\(C) r=8 dropout=0.1") {
        let (In, Out, R) = (C, C, 8)
        let s = LoRAShape(rows: N, inFeatures: In, outFeatures: Out, rank: R, scale: 2, dropout: 0.1, seed: 7)
        let x = try random(backend, N * In), a = try random(backend, R * In), b = try random(backend, Out * R)
        let y = try backend.zeros(N * Out), xa = try backend.zeros(N * R), dY = try random(backend, N * Out)
        let dx = try backend.zeros(N * In), dA = try backend.zeros(R * In), dB = try backend.zeros(Out * R)
        list.append(Workload(name: "lora fwd+bwd N=\(N) \(In)->\(Out) r=\(R) dropout=0.1", unit: "GFLOP/s",
                             work: 6.0 * Double(N * R * (In + Out)), reps: reps,
                             run: { backend.loraForward(y, xa: xa, x, a: a, b: b, s); backend.loraBackward(dx: dx, dA: dA, dB: dB, dY: dY, x, xa: xa, a: a, b: b, s) },
                             spec: ["op": "lora_forward_backward", "n": N, "in": In, "out": Out, "rank": R, "scale": 2.0, "dropout": 0.1]))
    }
    return list
}
