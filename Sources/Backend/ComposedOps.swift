// Composite ops built from primitives: the default implementations a new backend starts from
// (it then overrides them with fused kernels for speed), and the path a fused kernel falls back
// to outside its limits (the CUDA LoRA kernels above rank 128).

public extension Backend {
    func runLoRAForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        composedLoRAForward(y, xa: xa, x, a: a, b: b, s)
    }

    func runLoRABackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                         _ s: LoRAShape) {
        composedLoRABackward(dx: dx, dA: dA, dB: dB, dY: dY, x, xa: xa, a: a, b: b, s)
    }

    /// xa[N,R] = drop(x)·Aᵀ ; y[N,Out] += scale·xa·Bᵀ.
    func composedLoRAForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        matmul(xa, droppedLoRAInput(x, s), a, bias: nil, Gemm(m: s.rows, n: s.rank, k: s.inFeatures, transB: true))
        matmul(y, xa, b, bias: nil, Gemm(m: s.rows, n: s.outFeatures, k: s.rank, transB: true, alpha: s.scale, beta: 1))
    }

    /// dB[Out,R] += scale·dYᵀ·xa ; dxa[N,R] = scale·dY·B ; dx += drop'(dxa·A) ; dA[R,In] += dxaᵀ·drop(x).
    func composedLoRABackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                              _ s: LoRAShape) {
        let N = s.rows, In = s.inFeatures, Out = s.outFeatures, R = s.rank
        matmul(dB, dY, xa, bias: nil, Gemm(m: Out, n: R, k: N, transA: true, alpha: s.scale, beta: 1))
        let dxa = scratch("lora.dxa", N * R)
        matmul(dxa, dY, b, bias: nil, Gemm(m: N, n: R, k: Out, alpha: s.scale))
        if s.dropout > 0 {
            let row = scratch("lora.dx", N * In)
            matmul(row, dxa, a, bias: nil, Gemm(m: N, n: In, k: R))
            dropout(row, row, count: N * In, p: s.dropout, seed: s.seed)
            axpy(dx, row, count: N * In, alpha: 1)
        } else {
            matmul(dx, dxa, a, bias: nil, Gemm(m: N, n: In, k: R, beta: 1))
        }
        matmul(dA, dxa, droppedLoRAInput(x, s), bias: nil, Gemm(m: R, n: In, k: N, transA: true, beta: 1))
    }

    /// drop(x) with the LoRA mask (element n·In + i), or x itself without dropout.
    func droppedLoRAInput(_ x: Tensor, _ s: LoRAShape) -> Tensor {
        guard s.dropout > 0 else { return x }
        let xd = scratch("lora.xd", s.rows * s.inFeatures)
        dropout(xd, x, count: s.rows * s.inFeatures, p: s.dropout, seed: s.seed)
        return xd
    }
}

// MARK: attention from matmuls, masked softmax and dropout
//
// S = scale·Q·Kᵀ per (batch, head) by head-batched matmuls over head views of [T, C]; P = masked
// (and causal) softmax of S + bias (lse beside it); dropout on P by its flat [B,NH,T,T] index —
// the same mask the fused kernels draw; out = P·V. Backward recomputes S and P (nothing T×T is
// kept between the passes), then dV = Pᵀ·dO, dP = dO·Vᵀ, dS = softmax′(dP) (+ a score gradient),
// dQ = scale·dS·K, dK = scale·dSᵀ·Q, dBias += Σ_b dS. Three or four [B,NH,T,T] scratch tensors.
// Grouped-query attention: the query heads that share a key/value head are one batched matmul
// reading that head at stride 0; dK and dV add the group's heads one after another.

public extension Backend {
    func runAttentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                             mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        composedAttentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
    }

    func runAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                              out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                              mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        composedAttentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: dScores, q: q, k: k, v: v,
                                  mask: mask, bias: bias, s)
    }

    func runAttentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                               _ s: AttentionShape) {
        composedAttentionScoreLoss(loss, q: q, k: k, mask: mask, bias: bias, target: target, s)
    }

    /// The mean over [B,NH,T,T] of (S − S_target)², both as masked scores.
    func composedAttentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                                    _ s: AttentionShape) {
        let own = scratch("attention.S", s.scores), other = scratch("attention.target", s.scores)
        maskedHeadScores(own, q: q, k: k, headSize: s.headSize, scale: s.scale, mask: mask, bias: bias, s)
        maskedHeadScores(other, q: target.q, k: target.k, headSize: target.headSize, scale: target.scale, mask: mask, bias: target.bias, s)
        mse(loss, dA: nil, own, other, count: s.scores, gradScale: 0)
    }

    func composedAttentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                                  mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        let S = scratch("attention.S", s.scores), P = scratch("attention.P", s.scores)
        headScores(S, q: q, k: k, s)
        if let scores {
            copy(scores, S)
            maskedScores(scores, mask: mask, bias: bias, s)
        }
        maskedSoftmaxForward(P, lse: lse, scores: S, mask: mask, bias: bias, s)
        if s.dropout > 0 { dropout(P, P, count: s.scores, p: s.dropout, seed: s.seed) }
        let (T, HS, TT) = (s.length, s.headSize, s.length * s.length)
        s.headGroups(shared: v) { h, count, kv, kvStride in   // out = P·V
            matmul(s.queryView(out, h), s.squareView(P, h), kv, bias: nil,
                   s.gemm(m: T, n: HS, k: T, lda: T, ldb: s.keyValueChannels, ldc: s.channels, count: count,
                          strideA: TT, strideB: kvStride, strideC: HS))
        }
    }

    func composedAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                   q: Tensor, k: Tensor, v: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        let S = scratch("attention.S", s.scores), P = scratch("attention.P", s.scores)
        let dP = scratch("attention.dP", s.scores), dS = scratch("attention.dS", s.scores)
        headScores(S, q: q, k: k, s)
        maskedSoftmaxForward(P, scores: S, mask: mask, bias: bias, s)
        var dropped = P
        if s.dropout > 0 {
            dropped = scratch("attention.Pd", s.scores)
            dropout(dropped, P, count: s.scores, p: s.dropout, seed: s.seed)
        }
        // dV = Pdᵀ·dO ; dPd = dO·Vᵀ ; dP = dropout′(dPd) ; dS = P ⊙ (dP − Σ P·dP)
        let (T, HS, C, CK, NH, TT) = (s.length, s.headSize, s.channels, s.keyValueChannels, s.heads, s.length * s.length)
        s.headGroups(shared: dv, accumulate: true) { h, count, kv, beta in
            matmul(kv, s.squareView(dropped, h), s.queryView(dOut, h), bias: nil,
                   s.gemm(m: T, n: HS, k: T, transA: true, beta: Float(beta), lda: T, ldb: C, ldc: CK, count: count,
                          strideA: TT, strideB: HS, strideC: HS))
        }
        s.headGroups(shared: v) { h, count, kv, kvStride in
            matmul(s.squareView(dP, h), s.queryView(dOut, h), kv, bias: nil,
                   s.gemm(m: T, n: T, k: HS, transB: true, lda: C, ldb: CK, ldc: T, count: count,
                          strideA: HS, strideB: kvStride, strideC: TT))
        }
        if s.dropout > 0 { dropout(dP, dP, count: s.scores, p: s.dropout, seed: s.seed) }
        maskedSoftmaxBackward(dScores: dS, dProbs: dP, probs: P, s)
        switch dScores {
        case .dense(let given):   // a loss on the stored scores: masked keys get none
            axpy(dS, given, count: s.scores, alpha: 1)
            maskedScores(dS, mask: mask, bias: nil, s)
        case .scoreMSE(let target, let gradScale):   // weight·(S − S_target) at valid keys
            let other = scratch("attention.target", s.scores)
            maskedScores(S, mask: mask, bias: bias, s)
            maskedHeadScores(other, q: target.q, k: target.k, headSize: target.headSize, scale: target.scale, mask: mask,
                             bias: target.bias, s)
            axpy(S, other, count: s.scores, alpha: -1)
            axpy(dS, S, count: s.scores, alpha: s.scoreMSEWeight(gradScale: gradScale))
        case nil: break
        }
        if let dBias { for b in 0..<s.batch { axpy(dBias, dS.slice(b * NH * TT, NH * TT), count: NH * TT, alpha: 1) } }
        // dQ = scale·dS·K ; dK = scale·dSᵀ·Q
        s.headGroups(shared: k) { h, count, kv, kvStride in
            matmul(s.queryView(dq, h), s.squareView(dS, h), kv, bias: nil,
                   s.gemm(m: T, n: HS, k: T, alpha: s.scale, lda: T, ldb: CK, ldc: C, count: count,
                          strideA: TT, strideB: kvStride, strideC: HS))
        }
        s.headGroups(shared: dk, accumulate: true) { h, count, kv, beta in
            matmul(kv, s.squareView(dS, h), s.queryView(q, h), bias: nil,
                   s.gemm(m: T, n: HS, k: T, transA: true, alpha: s.scale, beta: Float(beta), lda: T, ldb: C, ldc: CK, count: count,
                          strideA: TT, strideB: HS, strideC: HS))
        }
    }

    /// S[b,h] = scale·Q_h·K_hᵀ for q [B,T,NH·HS] and k [B,T,NKV·HS] (HS, NKV, scale: those of `s`).
    private func headScores(_ S: Tensor, q: Tensor, k: Tensor, _ s: AttentionShape) {
        let (T, C, CK, HS) = (s.length, s.channels, s.keyValueChannels, s.headSize)
        s.headGroups(shared: k) { h, count, kv, kvStride in
            matmul(s.squareView(S, h), s.queryView(q, h), kv, bias: nil,
                   s.gemm(m: T, n: T, k: HS, transB: true, alpha: s.scale, lda: C, ldb: CK, ldc: T, count: count,
                          strideA: HS, strideB: kvStride, strideC: T * T))
        }
    }

    /// Scores as a distillation loss sees them: scale·q·kᵀ + bias, 0 at masked keys.
    /// A score target's heads (headSize, scale) are its own and never grouped.
    private func maskedHeadScores(_ S: Tensor, q: Tensor, k: Tensor, headSize: Int, scale: Float, mask: Tensor?, bias: Tensor?,
                                  _ s: AttentionShape) {
        var own = s
        (own.headSize, own.keyValueHeads, own.scale) = (headSize, s.heads, scale)
        headScores(S, q: q, k: k, own)
        maskedScores(S, mask: mask, bias: bias, s)
    }
}

extension AttentionShape {
    /// The batched matmuls of one product over all (batch, head): `matmuls(h, count, kv, x)` for
    /// each batch item's run of `count` query heads from flat head index h (b·NH + head) that share
    /// a key/value view `kv` (of `shared`, [B,T,NKV·HS]). Reading it (`accumulate` false), x is the
    /// key/value stride between the run's heads: HS when every head has its own, 0 within a group.
    /// Writing it (`accumulate`: dK, dV), each head of a group is its own call and x is the beta
    /// (0 or 1) that adds it to those before.
    func headGroups(shared: Tensor, accumulate: Bool = false, matmuls: (Int, Int, Tensor, Int) -> Void) {
        let (T, CK, G) = (length, keyValueChannels, group)
        for b in 0..<batch {
            func kv(_ g: Int) -> Tensor { shared.slice(b * T * CK + g * headSize, T * CK - g * headSize) }
            if G == 1 { matmuls(b * heads, heads, kv(0), accumulate ? 0 : headSize); continue }
            for g in 0..<keyValueHeads {
                if accumulate {
                    for i in 0..<G { matmuls(b * heads + g * G + i, 1, kv(g), i == 0 ? 0 : 1) }
                } else {
                    matmuls(b * heads + g * G, G, kv(g), 0)
                }
            }
        }
    }

    /// Query head h's (flat b·NH + head) view of a [B,T,NH·HS] tensor, to the end of its batch item.
    func queryView(_ t: Tensor, _ h: Int) -> Tensor {
        let (b, head, C) = (h / heads, h % heads, channels)
        return t.slice(b * length * C + head * headSize, length * C - head * headSize)
    }
    /// Head h's (flat) [T,T] block of a [B,NH,T,T] tensor, to the end of the tensor.
    func squareView(_ t: Tensor, _ h: Int) -> Tensor { t.slice(h * length * length, t.count - h * length * length) }

    /// A Gemm over `count` heads.
    func gemm(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0,
              lda: Int, ldb: Int, ldc: Int, count: Int, strideA: Int, strideB: Int, strideC: Int) -> Gemm {
        Gemm(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta, lda: lda, ldb: ldb, ldc: ldc,
             batch: count, strideA: strideA, strideB: strideB, strideC: strideC)
    }
}
