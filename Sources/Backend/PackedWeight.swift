// A weight multiplied by a few rows many times over — a recurrent layer's W_hh, read at every
// step of the forward and again of the backward — packed once per pass into the backend's own
// layout where it has one (the CPU: panels of 16 output channels, cpu/packed_gemm.c), so the
// steps do not each repack or re-stride it. Backends without one multiply the weight as it is.

/// W as `matmul(_:_:_:bias:rows:beta:inputStride:)` reads it: [n, k] with transB (a Linear's
/// C = A·Wᵀ) or [k, n] without (C = A·W); `packed` is nil where the backend packs nothing. The
/// backend may still multiply `weight` itself where that is faster (many rows).
public struct PackedWeight {
    public let weight: Tensor
    public let packed: Tensor?
    public let n, k: Int
    public let transB: Bool
}

public extension BackendOps {
    /// Floats a packed n×k weight takes (0: this backend packs nothing, the default).
    func packedWeightCount(n: Int, k: Int) -> Int { 0 }
    func runPackWeight(_ packed: Tensor, _ weight: Tensor, n: Int, k: Int, transB: Bool) {
        preconditionFailure("\(type(of: self)) packs no weights (its packedWeightCount is 0)")
    }
    /// The weight as it is (what a backend without a layout of its own has).
    func runMatmulPacked(_ c: Tensor, _ a: Tensor, _ w: PackedWeight, bias: Tensor?, rows: Int, lda: Int, beta: Float) {
        runMatmul(c, a, w.weight, bias: bias, Gemm(m: rows, n: w.n, k: w.k, transB: w.transB, beta: beta, lda: lda))
    }
}

public extension Backend {
    /// `weight` ([n, k] with transB, else [k, n]) packed into the front of `buffer`, which holds at
    /// least packedWeightCount(n:k:) floats; as it is where the backend packs nothing. Pack again
    /// after the weight changes.
    func packWeight(_ weight: Tensor, n: Int, k: Int, transB: Bool, into buffer: Tensor) -> PackedWeight {
        precondition(n >= 0 && k >= 0 && weight.count >= n * k, "packWeight: the weight holds \(weight.count) of \(n)×\(k) floats")
        f32(weight, buffer, op: "packWeight")
        let count = packedWeightCount(n: n, k: k)
        guard count > 0 else { return PackedWeight(weight: weight, packed: nil, n: n, k: k, transB: transB) }
        precondition(buffer.count >= count, "packWeight: the buffer holds \(buffer.count) of the \(count) floats a packed \(n)×\(k) weight takes")
        let packed = buffer.slice(0, count)
        runPackWeight(packed, weight, n: n, k: k, transB: transB)
        packed.buffer.noteWrite(packed)
        return PackedWeight(weight: weight, packed: packed, n: n, k: k, transB: transB)
    }

    /// c[rows, n] = a[rows, k]·op(W) + beta·c (+ bias[n] per row), row-major, a's rows
    /// `inputStride` apart (default k).
    func matmul(_ c: Tensor, _ a: Tensor, _ w: PackedWeight, bias: Tensor?, rows: Int, beta: Float = 0, inputStride: Int? = nil) {
        let lda = inputStride ?? w.k
        precondition(rows >= 0 && lda >= w.k && c.count >= rows * w.n && a.count >= (rows > 0 ? (rows - 1) * lda + w.k : 0)
                     && (bias?.count ?? w.n) == w.n, "matmul (packed weight): c is not rows·n, a short of rows·k or the bias not n")
        f32(c, a, bias, op: "matmul")
        guard rows > 0 && w.n > 0 else { return }
        runMatmulPacked(c, a, w, bias: bias, rows: rows, lda: lda, beta: beta)
        c.buffer.noteWrite(c, count: rows * w.n)
    }
}
