// The ops as callers use them: each validates its operands (counts, spans, dtypes, settings)
// once, here above the seam, then hands them to the backend's `run…` implementation. A size
// mismatch is a caller's bug, never bad user data (user data is checked where it is read), so
// it stops with a precondition naming the operand.

public extension DeviceRuntime {
    func upload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) {
        precondition(src.count == dst.bytes, "upload size mismatch")
        runUpload(dst, src)
        dst.buffer.noteWrite(dst)
    }

    func download(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) {
        precondition(dst.count == src.bytes, "download size mismatch")
        runDownload(dst, src)
    }

    func copy(_ dst: Tensor, _ src: Tensor) {
        precondition(dst.bytes == src.bytes, "copy size mismatch")
        guard dst.bytes > 0 else { return }
        runCopy(dst, src)
        dst.buffer.noteWrite(dst)
    }

    func fill(_ dst: Tensor, _ value: Float) {
        precondition(dst.dtype == .f32 || value == 0, "fill with a non-zero value needs an f32 tensor")
        guard dst.count > 0 else { return }
        runFill(dst, value)
        dst.buffer.noteWrite(dst)
    }

    /// Allocates and uploads an array.
    func tensor<T>(_ values: [T], _ dtype: DType) throws -> Tensor {
        precondition(MemoryLayout<T>.stride == dtype.size, "element size does not match \(dtype)")
        let t = try allocate(values.count, dtype)
        values.withUnsafeBytes { upload(t, $0) }
        return t
    }

    func zeros(_ count: Int, _ dtype: DType = .f32) throws -> Tensor {
        let t = try allocate(count, dtype)
        fill(t, 0)
        return t
    }

    /// Downloads a float tensor.
    func floats(_ t: Tensor) -> [Float] {
        precondition(t.dtype == .f32)
        var out = [Float](repeating: 0, count: t.count)
        out.withUnsafeMutableBytes { download($0, t) }
        return out
    }

    /// `count` elements of the grow-only scratch buffer `name` (allocated on first use, and again
    /// only when a larger size than ever is asked for). An allocation failure here is fatal: the
    /// memory plan accounts for scratch before a run starts.
    func scratch(_ name: String, _ count: Int, _ dtype: DType = .f32) -> Tensor {
        scratchBuffers.tensor(name, count, dtype) { try allocate($0, $1) }
    }
}

func f32(_ tensors: Tensor?..., op: String) {
    for t in tensors { precondition(t == nil || t!.dtype == .f32, "\(op) needs f32 tensors") }
}

func i32(_ t: Tensor?, _ what: String) {
    precondition(t == nil || t!.dtype == .i32, "\(what) must be an int32 tensor")
}

public extension Backend {
    // MARK: dense

    func matmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) {
        precondition(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, "matmul sizes must not be negative")
        f32(c, a, b, bias, op: "matmul")
        if let bias { precondition(bias.count == g.n && g.ldc == g.n, "bias needs n elements and packed C") }
        guard g.m > 0 && g.n > 0 && g.batch > 0 else { return }
        precondition(a.count >= g.spanA && b.count >= g.spanB && c.count >= g.spanC, "matmul operands too small")
        runMatmul(c, a, b, bias: bias, g)
        c.buffer.noteWrite(c, count: g.spanC)   // after: the operands were read as they were
    }

    func biasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        precondition(dBias.count == channels && dOut.count == rows * channels, "biasBackward: dBias is not C or dOut not N·C")
        f32(dBias, dOut, op: "biasBackward")
        runBiasBackward(dBias, dOut: dOut, rows: rows, channels: channels)
    }

    // MARK: layers

    func embeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                          word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape) {
        s.check(out: out, ids: ids, positions: positions, types: types, word: word, position: position, type: type)
        runEmbeddingForward(out, ids: ids, positions: positions, types: types, word: word, position: position, type: type, s)
    }

    /// `segments`: the same batch's plan (made from the host's ids when it was loaded); a nil
    /// table gets no gradient (frozen).
    func embeddingBackward(dWord: Tensor?, dPosition: Tensor?, dType: Tensor?, dOut: Tensor,
                           ids: Tensor, positions: Tensor, types: Tensor?, segments: EmbeddingSegments, _ s: EmbeddingShape) {
        s.check(out: dOut, ids: ids, positions: positions, types: types, word: dWord, position: dPosition, type: dType)
        i32(segments.tensor, "embeddingBackward: the segments")
        precondition(segments.shape == s && segments.hasTypes == (types != nil && s.tokenTypes > 0),
                     "embeddingBackward: the segments were made for another batch")
        runEmbeddingBackward(dWord: dWord, dPosition: dPosition, dType: dType, dOut: dOut, ids: ids, positions: positions, types: types,
                             segments: segments, s)
    }

    func layerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                          rows: Int, channels: Int, eps: Float) {
        precondition(out.count == rows * channels && x.count == rows * channels && mean.count == rows && rstd.count == rows
                     && weight.count == channels && bias.count == channels, "layerNormForward: operands are not N·C, N or C")
        f32(out, mean, rstd, x, weight, bias, op: "layerNormForward")
        runLayerNormForward(out, mean: mean, rstd: rstd, x, weight: weight, bias: bias, rows: rows, channels: channels, eps: eps)
    }

    /// dx, and dWeight/dBias accumulated when given (nil: that parameter is frozen).
    func layerNormBackward(dx: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor,
                           mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        precondition(dx.count == rows * channels && dOut.count == rows * channels && x.count == rows * channels
                     && (dWeight?.count ?? channels) == channels && (dBias?.count ?? channels) == channels && weight.count == channels
                     && mean.count == rows && rstd.count == rows, "layerNormBackward: operands are not N·C, N or C")
        f32(dx, dWeight, dBias, dOut, x, weight, mean, rstd, op: "layerNormBackward")
        runLayerNormBackward(dx: dx, dWeight: dWeight, dBias: dBias, dOut: dOut, x, weight: weight, mean: mean, rstd: rstd,
                             rows: rows, channels: channels)
    }

    /// Llama's RMSNorm: out = x·rstd·weight, rstd [N] saved.
    func rmsNormForward(_ out: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, rows: Int, channels: Int, eps: Float) {
        precondition(out.count == rows * channels && x.count == rows * channels && rstd.count == rows && weight.count == channels,
                     "rmsNormForward: operands are not N·C, N or C")
        f32(out, rstd, x, weight, op: "rmsNormForward")
        runRMSNormForward(out, rstd: rstd, x, weight: weight, rows: rows, channels: channels, eps: eps)
    }

    /// dx (overwritten), and dWeight accumulated when given (nil: frozen).
    func rmsNormBackward(dx: Tensor, dWeight: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        precondition(dx.count == rows * channels && dOut.count == rows * channels && x.count == rows * channels
                     && (dWeight?.count ?? channels) == channels && weight.count == channels && rstd.count == rows,
                     "rmsNormBackward: operands are not N·C, N or C")
        f32(dx, dWeight, dOut, x, weight, rstd, op: "rmsNormBackward")
        runRMSNormBackward(dx: dx, dWeight: dWeight, dOut: dOut, x, weight: weight, rstd: rstd, rows: rows, channels: channels)
    }

    /// One query per sequence against its KV cache (decoding): out = softmax(scale·q·kᵀ)·V over
    /// the first lengths[b] cached positions, query head h reading cache head h / (NH / NKV); no
    /// length may pass s.longest (the lengths live on the device: the caller knows them).
    func decodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape) {
        precondition(s.keyValueHeads > 0 && s.heads % s.keyValueHeads == 0 && s.headSize <= 256 && s.capacity > 0,
                     "decodeAttention: heads must be a multiple of the key/value heads, head size at most 256")
        precondition((1...s.capacity).contains(s.longest), "decodeAttention: the longest length \(s.longest) is not in 1…\(s.capacity)")
        precondition(out.count == s.queries && q.count == s.queries && keyCache.count == s.cache && valueCache.count == s.cache
                     && lengths.count == s.batch, "decodeAttention: q/out are not B·NH·HS, a cache not B·NKV·Tmax·HS or lengths not B")
        f32(out, q, keyCache, valueCache, op: "decodeAttention")
        i32(lengths, "decodeAttention: lengths")
        runDecodeAttention(out, q: q, keyCache: keyCache, valueCache: valueCache, lengths: lengths, s)
    }

    /// RoPE as HF Llama applies it (rotate_half): out = x·cos + rotate_half(x)·sin at angle
    /// positions[r]·inverseFrequencies[i]; out may be x. `backward`: dX from dOut (the opposite rotation).
    func rope(_ out: Tensor, _ x: Tensor, positions: Tensor, inverseFrequencies: Tensor, _ s: RoPEShape, backward: Bool = false) {
        precondition(s.headSize % 2 == 0 && out.count == s.count && x.count == s.count && positions.count == s.tokens
                     && inverseFrequencies.count == s.headSize / 2, "rope: x/out are not BT·NH·HS, positions not BT or frequencies not HS/2")
        f32(out, x, inverseFrequencies, op: "rope")
        i32(positions, "rope: positions")
        runRoPE(out, x, positions: positions, inverseFrequencies: inverseFrequencies, s, backward: backward)
    }

    /// Llama's MLP gate: out = silu(gate)·up.
    func swigluForward(_ out: Tensor, gate: Tensor, up: Tensor, count: Int) {
        elementwise(count, out, gate, up, op: "swigluForward")
        runSwiGLUForward(out, gate: gate, up: up, count: count)
    }

    /// dGate and dUp (overwritten) from dOut.
    func swigluBackward(dGate: Tensor, dUp: Tensor, dOut: Tensor, gate: Tensor, up: Tensor, count: Int) {
        elementwise(count, dGate, dUp, dOut, gate, up, op: "swigluBackward")
        runSwiGLUBackward(dGate: dGate, dUp: dUp, dOut: dOut, gate: gate, up: up, count: count)
    }

    /// GELU, erf form (BERT) or `tanh`: GPT-2's approximation (HF "gelu_new").
    func geluForward(_ out: Tensor, _ x: Tensor, count: Int, tanh: Bool = false) {
        elementwise(count, out, x, op: "geluForward")
        runGeluForward(out, x, count: count, tanh: tanh)
    }

    func geluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int, tanh: Bool = false) {
        elementwise(count, dx, dOut, x, op: "geluBackward")
        runGeluBackward(dx: dx, dOut: dOut, x, count: count, tanh: tanh)
    }

    func tanhForward(_ out: Tensor, _ x: Tensor, count: Int) {
        elementwise(count, out, x, op: "tanhForward")
        runTanhForward(out, x, count: count)
    }

    func tanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) {
        elementwise(count, dx, dOut, out, op: "tanhBackward")
        runTanhBackward(dx: dx, dOut: dOut, out: out, count: count)
    }

    /// out = x·keep/(1 − p); also the backward (same seed). p = 0 copies (nothing when out is x).
    func dropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) {
        elementwise(count, out, x, op: "dropout")
        precondition(p >= 0 && p < 1, "dropout needs p in [0, 1)")
        if p == 0 {
            if out.buffer !== x.buffer || out.offset != x.offset { runCopy(out.slice(0, count), x.slice(0, count)) }
            return
        }
        runDropout(out, x, count: count, p: p, seed: seed)
    }

    // MARK: attention

    func attentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                          mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([out, q], keyValues: [k, v], lse: lse, scores: scores, mask: mask, bias: bias)
        runAttentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
    }

    func attentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                           out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                           mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([dq, dOut, out, q], keyValues: [dk, dv, k, v], lse: lse, scores: nil, mask: mask, bias: bias)
        s.check([], lse: nil, scores: nil, mask: nil, bias: dBias)
        s.check(dScores)
        runAttentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: dScores, out: out, lse: lse, q: q, k: k, v: v,
                             mask: mask, bias: bias, s)
    }

    func attentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                            _ s: AttentionShape) {
        precondition(!s.causal && s.keyValueHeads == s.heads, "attentionScoreLoss: for encoders (no causal mask, no grouped keys)")
        s.check([q, k], lse: nil, scores: nil, mask: mask, bias: bias)
        s.check(target)
        precondition(loss.count >= 1 && loss.dtype == .f32, "attentionScoreLoss: loss needs one f32 element")
        runAttentionScoreLoss(loss, q: q, k: k, mask: mask, bias: bias, target: target, s)
    }

    /// probs = softmax over valid keys of scores + bias; lse (optional) its log-sum-exp per row.
    func maskedSoftmaxForward(_ probs: Tensor, lse: Tensor? = nil, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        precondition(probs.count == s.scores && scores.count == s.scores, "maskedSoftmaxForward: probs, scores are not B·NH·T·T")
        s.check([], lse: lse, scores: nil, mask: mask, bias: bias)
        f32(probs, scores, op: "maskedSoftmaxForward")
        runMaskedSoftmaxForward(probs, lse: lse, scores: scores, mask: mask, bias: bias, s)
    }

    /// scores[B,NH,T,T] += bias (broadcast over the batch), then 0 at masked keys, in place.
    func maskedScores(_ scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([], lse: nil, scores: scores, mask: mask, bias: bias)
        runMaskedScores(scores, mask: mask, bias: bias, s)
    }

    func maskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        precondition(dScores.count == s.scores && dProbs.count == s.scores && probs.count == s.scores,
                     "maskedSoftmaxBackward: operands are not B·NH·T·T")
        f32(dScores, dProbs, probs, op: "maskedSoftmaxBackward")
        runMaskedSoftmaxBackward(dScores: dScores, dProbs: dProbs, probs: probs, s)
    }

    // MARK: LoRA

    func loraForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        s.check(x: x, y: y, xa: xa, a: a, b: b)
        runLoRAForward(y, xa: xa, x, a: a, b: b, s)
    }

    func loraBackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                      _ s: LoRAShape) {
        s.check(x: x, y: dY, xa: xa, a: a, b: b)
        s.check(x: dx, y: dY, xa: xa, a: dA, b: dB)
        runLoRABackward(dx: dx, dA: dA, dB: dB, dY: dY, x, xa: xa, a: a, b: b, s)
    }

    // MARK: losses

    func crossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                      gradScale: Float) {
        precondition(logits.count == rows * classes && labels.count == rows && (dLogits == nil || dLogits!.count == rows * classes),
                     "crossEntropy: logits are not N·V or labels not N")
        i32(labels, "crossEntropy labels")
        f32(loss, dLogits, logits, op: "crossEntropy")
        runCrossEntropy(loss, dLogits: dLogits, logits: logits, labels: labels, rows: rows, classes: classes, gradScale: gradScale)
    }

    func softCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                          temperature: Float, gradScale: Float) {
        precondition(logits.count == rows * classes && teacher.count == rows * classes && (dLogits == nil || dLogits!.count == rows * classes),
                     "softCrossEntropy: logits are not N·V")
        precondition(temperature > 0, "softCrossEntropy: the temperature must be positive")
        f32(loss, dLogits, logits, teacher, op: "softCrossEntropy")
        runSoftCrossEntropy(loss, dLogits: dLogits, logits: logits, teacher: teacher, rows: rows, classes: classes,
                            temperature: temperature, gradScale: gradScale)
    }

    func mse(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        precondition(a.count == count && b.count == count && (dA == nil || dA!.count == count), "mse: operands are not count long")
        f32(loss, dA, a, b, op: "mse")
        runMSE(loss, dA: dA, a, b, count: count, gradScale: gradScale)
    }

    func cosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        precondition(a.count == rows * channels && b.count == rows * channels && (dA == nil || dA!.count == rows * channels),
                     "cosine: operands are not N·C")
        f32(loss, dA, a, b, op: "cosine")
        runCosine(loss, dA: dA, a, b, rows: rows, channels: channels, gradScale: gradScale)
    }

    // MARK: optimizer

    func adamw(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        elementwise(count, params, grads, m, v, op: "adamw")
        precondition(step >= 1, "adamw: steps count from 1")
        runAdamW(params, grads: grads, m: m, v: v, count: count, h, step: step)
        params.buffer.noteWrite(params, count: count)
    }

    func sumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(x.count >= count && out.count >= 1, "sumOfSquares: x is shorter than count")
        f32(out, x, op: "sumOfSquares")
        runSumOfSquares(out, x, count: count)
    }

    func scale(_ x: Tensor, count: Int, by factor: Float) {
        elementwise(count, x, op: "scale")
        runScale(x, count: count, by: factor)
        x.buffer.noteWrite(x, count: count)
    }

    func axpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) {
        elementwise(count, y, x, op: "axpy")
        runAxpy(y, x, count: count, alpha: alpha)
        y.buffer.noteWrite(y, count: count)
    }

    func cast(_ dst: Tensor, _ src: Tensor, count: Int) {
        precondition(dst.count >= count && src.count >= count, "cast: operands shorter than count")
        let supported: Set<String> = ["f32>bf16", "bf16>f32", "f32>f16", "f16>f32"]
        precondition(src.dtype == dst.dtype || supported.contains("\(src.dtype)>\(dst.dtype)"),
                     "cast from \(src.dtype) to \(dst.dtype) is not supported")
        runCast(dst, src, count: count)
        dst.buffer.noteWrite(dst, count: count)
    }

    /// Element-wise operands: f32, each at least `count` long.
    private func elementwise(_ count: Int, _ tensors: Tensor..., op: String) {
        precondition(count >= 0 && tensors.allSatisfy { $0.count >= count }, "\(op): an operand is shorter than count")
        for t in tensors { precondition(t.dtype == .f32, "\(op) needs f32 tensors") }
    }
}
