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
// S = scale·Q·Kᵀ per (batch, head) by NH-batched matmuls over head views of [T, C]; P = masked
// softmax of S + bias (lse beside it); dropout on P by its flat [B,NH,T,T] index — the same
// mask the fused kernels draw; out = P·V. Backward recomputes S and P (nothing T×T is kept
// between the passes), then dV = Pᵀ·dO, dP = dO·Vᵀ, dS = softmax′(dP) (+ a score gradient),
// dQ = scale·dS·K, dK = scale·dSᵀ·Q, dBias += Σ_b dS. Three or four [B,NH,T,T] scratch tensors.

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
        headScores(S, q: q, k: k, headSize: s.headSize, scale: s.scale, s)
        if let scores {
            copy(scores, S)
            maskedScores(scores, mask: mask, bias: bias, s)
        }
        maskedSoftmaxForward(P, lse: lse, scores: S, mask: mask, bias: bias, s)
        if s.dropout > 0 { dropout(P, P, count: s.scores, p: s.dropout, seed: s.seed) }
        headProducts(out, P, v, s)
    }

    func composedAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                   q: Tensor, k: Tensor, v: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        let S = scratch("attention.S", s.scores), P = scratch("attention.P", s.scores)
        let dP = scratch("attention.dP", s.scores), dS = scratch("attention.dS", s.scores)
        headScores(S, q: q, k: k, headSize: s.headSize, scale: s.scale, s)
        maskedSoftmaxForward(P, scores: S, mask: mask, bias: bias, s)
        var dropped = P
        if s.dropout > 0 {
            dropped = scratch("attention.Pd", s.scores)
            dropout(dropped, P, count: s.scores, p: s.dropout, seed: s.seed)
        }
        // dV = Pdᵀ·dO ; dPd = dO·Vᵀ ; dP = dropout′(dPd) ; dS = P ⊙ (dP − Σ P·dP)
        let (T, HS, C, NH, TT) = (s.length, s.headSize, s.channels, s.heads, s.length * s.length)
        for b in 0..<s.batch {
            matmul(rows(dv, b, s), square(dropped, b, s), rows(dOut, b, s), bias: nil,
                   heads(m: T, n: HS, k: T, transA: true, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS, s))
            matmul(square(dP, b, s), rows(dOut, b, s), rows(v, b, s), bias: nil,
                   heads(m: T, n: T, k: HS, transB: true, lda: C, ldb: C, ldc: T, strideA: HS, strideB: HS, strideC: TT, s))
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
        if let dBias { for b in 0..<s.batch { axpy(dBias, square(dS, b, s), count: NH * TT, alpha: 1) } }
        // dQ = scale·dS·K ; dK = scale·dSᵀ·Q
        for b in 0..<s.batch {
            matmul(rows(dq, b, s), square(dS, b, s), rows(k, b, s), bias: nil,
                   heads(m: T, n: HS, k: T, alpha: s.scale, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS, s))
            matmul(rows(dk, b, s), square(dS, b, s), rows(q, b, s), bias: nil,
                   heads(m: T, n: HS, k: T, transA: true, alpha: s.scale, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS, s))
        }
    }

    /// S[b,h] = scale·Q_h·K_hᵀ for q, k [B,T,NH·headSize] (another model's head size for a score target).
    private func headScores(_ S: Tensor, q: Tensor, k: Tensor, headSize HS: Int, scale: Float, _ s: AttentionShape) {
        let (T, C) = (s.length, s.heads * HS)
        for b in 0..<s.batch {
            matmul(square(S, b, s), q.slice(b * T * C, T * C), k.slice(b * T * C, T * C), bias: nil,
                   heads(m: T, n: T, k: HS, transB: true, alpha: scale, lda: C, ldb: C, ldc: T, strideA: HS, strideB: HS,
                         strideC: T * T, s))
        }
    }

    /// Scores as a distillation loss sees them: scale·q·kᵀ + bias, 0 at masked keys.
    private func maskedHeadScores(_ S: Tensor, q: Tensor, k: Tensor, headSize: Int, scale: Float, mask: Tensor?, bias: Tensor?,
                                  _ s: AttentionShape) {
        headScores(S, q: q, k: k, headSize: headSize, scale: scale, s)
        maskedScores(S, mask: mask, bias: bias, s)
    }

    /// out[b] = P[b]·V[b] per head.
    private func headProducts(_ out: Tensor, _ P: Tensor, _ v: Tensor, _ s: AttentionShape) {
        let (T, HS, C) = (s.length, s.headSize, s.channels)
        for b in 0..<s.batch {
            matmul(rows(out, b, s), square(P, b, s), rows(v, b, s), bias: nil,
                   heads(m: T, n: HS, k: T, lda: T, ldb: C, ldc: C, strideA: T * T, strideB: HS, strideC: HS, s))
        }
    }

    /// Batch item b's [T,C] rows of a [B,T,C] tensor, and its [NH,T,T] block of a score tensor.
    private func rows(_ t: Tensor, _ b: Int, _ s: AttentionShape) -> Tensor { t.slice(b * s.length * s.channels, s.length * s.channels) }
    private func square(_ t: Tensor, _ b: Int, _ s: AttentionShape) -> Tensor {
        t.slice(b * s.heads * s.length * s.length, s.heads * s.length * s.length)
    }

    /// A Gemm over the NH heads: X_h views of a [T,C] block (stride HS, leading dimension C).
    private func heads(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1,
                       lda: Int, ldb: Int, ldc: Int, strideA: Int, strideB: Int, strideC: Int, _ s: AttentionShape) -> Gemm {
        Gemm(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, lda: lda, ldb: ldb, ldc: ldc,
             batch: s.heads, strideA: strideA, strideB: strideB, strideC: strideC)
    }
}
