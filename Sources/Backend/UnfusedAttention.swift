// Attention composed of separate backend ops — strided-batched matmuls over the heads of each
// batch item, then masked softmax, then ·V — writing full [B,NH,T,T] score and probability
// tensors. It is the reference the fused kernel is tested against and the baseline the perf
// suite measures it against.

public final class UnfusedAttention {
    public let backend: Backend
    public let shape: AttentionShape
    public let scores, probs, dProbs, dScores: Tensor   // [B,NH,T,T]
    public let out, dq, dk, dv: Tensor                  // [B,T,C]

    public init(_ backend: Backend, _ shape: AttentionShape) throws {
        self.backend = backend
        self.shape = shape
        scores = try backend.allocate(shape.scores, .f32)
        probs = try backend.allocate(shape.scores, .f32)
        dProbs = try backend.allocate(shape.scores, .f32)
        dScores = try backend.allocate(shape.scores, .f32)
        out = try backend.allocate(shape.activations, .f32)
        dq = try backend.allocate(shape.activations, .f32)
        dk = try backend.allocate(shape.activations, .f32)
        dv = try backend.allocate(shape.activations, .f32)
    }

    private var T: Int { shape.length }
    private var C: Int { shape.channels }

    /// Heads of batch item b in a [B,T,C] tensor, and its [NH,T,T] block of a score tensor.
    private func rows(_ t: Tensor, _ b: Int) -> Tensor { t.slice(b * T * C, T * C) }
    private func square(_ t: Tensor, _ b: Int) -> Tensor { t.slice(b * shape.heads * T * T, shape.heads * T * T) }

    /// Gemm over the NH heads: X_h [T,HS] views of a [T,C] block (stride HS, leading dim C).
    private func heads(m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, alpha: Float = 1,
                       lda: Int, ldb: Int, ldc: Int, strideA: Int, strideB: Int, strideC: Int) -> Gemm {
        Gemm(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, lda: lda, ldb: ldb, ldc: ldc,
             batch: shape.heads, strideA: strideA, strideB: strideB, strideC: strideC)
    }

    public func forward(q: Tensor, k: Tensor, v: Tensor, mask: Tensor?, bias: Tensor?) {
        let HS = shape.headSize, TT = T * T
        for b in 0..<shape.batch {   // S_h = scale·Q_h·K_hᵀ
            backend.matmul(square(scores, b), rows(q, b), rows(k, b), bias: nil,
                           heads(m: T, n: T, k: HS, transB: true, alpha: shape.scale, lda: C, ldb: C, ldc: T,
                                 strideA: HS, strideB: HS, strideC: TT))
        }
        backend.maskedSoftmaxForward(probs, scores: scores, mask: mask, bias: bias, shape)
        for b in 0..<shape.batch {   // O_h = P_h·V_h
            backend.matmul(rows(out, b), square(probs, b), rows(v, b), bias: nil,
                           heads(m: T, n: HS, k: T, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS))
        }
    }

    public func backward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor) {
        let HS = shape.headSize, TT = T * T
        for b in 0..<shape.batch {
            // dP_h = dO_h·V_hᵀ ; dV_h = P_hᵀ·dO_h
            backend.matmul(square(dProbs, b), rows(dOut, b), rows(v, b), bias: nil,
                           heads(m: T, n: T, k: HS, transB: true, lda: C, ldb: C, ldc: T, strideA: HS, strideB: HS, strideC: TT))
            backend.matmul(rows(dv, b), square(probs, b), rows(dOut, b), bias: nil,
                           heads(m: T, n: HS, k: T, transA: true, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS))
        }
        backend.maskedSoftmaxBackward(dScores: dScores, dProbs: dProbs, probs: probs, shape)
        for b in 0..<shape.batch {
            // dQ_h = scale·dS_h·K_h ; dK_h = scale·dS_hᵀ·Q_h
            backend.matmul(rows(dq, b), square(dScores, b), rows(k, b), bias: nil,
                           heads(m: T, n: HS, k: T, alpha: shape.scale, lda: T, ldb: C, ldc: C, strideA: TT, strideB: HS, strideC: HS))
            backend.matmul(rows(dk, b), square(dScores, b), rows(q, b), bias: nil,
                           heads(m: T, n: HS, k: T, transA: true, alpha: shape.scale, lda: T, ldb: C, ldc: C,
                                 strideA: TT, strideB: HS, strideC: HS))
        }
    }
}
