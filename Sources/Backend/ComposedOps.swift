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
