// The seam every model and trainer is written against. Ops at layer granularity; outputs
// first, then inputs, then sizes. Input gradients are overwritten unless noted; parameter
// gradients (dWeight, dBias, dWord, dA, dB, …) accumulate. Loss ops write the mean loss to
// loss[0] and, when given a gradient tensor, the gradient of gradScale·loss.
// Layouts: activations [B,T,C]; masks [B,T] int32 (0 = padding); attention bias [NH,T,T];
// scores [B,NH,T,T]; lse [B,NH,T]; labels int32. Semantics per op: Sources/Kernels/include/kernels.h.

public enum DeviceKind: String, Sendable { case cpu, cuda }

/// How a GPU computes; the CPU always computes in fp32. Weights, gradients, optimizer state and
/// activations stay fp32 in memory at every precision.
///   fp32: as the CPU.  tf32: matmuls on TF32 tensor cores (~1e-3 relative error).
///   bf16 / fp16: matmul operands and attention's Q, K, V, P, dS rounded to 16 bits on the way
///   into tensor cores, fp32 accumulation (mixed precision with fp32 master weights). bf16 needs
///   compute capability ≥ 8.0; fp16 trains with dynamic loss scaling (Train/LossScaler).
public enum Precision: String, CaseIterable, Sendable {
    case fp32, tf32, bf16, fp16
    /// The 16-bit type operands are rounded to, if any.
    public var halfType: DType? { self == .bf16 ? .bf16 : self == .fp16 ? .f16 : nil }
}

public protocol Backend: AnyObject {
    var kind: DeviceKind { get }
    var summary: String { get }   // one line: library, kernels, threads / device name
    var precision: Precision { get }
    // Memory
    func allocate(_ count: Int, _ dtype: DType) throws -> Tensor
    func upload(_ dst: Tensor, _ src: UnsafeRawBufferPointer)
    func download(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor)
    func copy(_ dst: Tensor, _ src: Tensor)
    func fill(_ dst: Tensor, _ value: Float)
    func synchronize()
    var memoryUse: MemoryUse { get }
    func resetPeakMemory()   // memoryUse.peak restarts from what is in use now
    // Dense: C = alpha·op(A)·op(B) + beta·C (+ bias[n] per row), strided-batched
    func matmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm)
    func biasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int)
    // Layers
    func embeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                          word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape)
    func embeddingBackward(dWord: Tensor, dPosition: Tensor, dType: Tensor?, dOut: Tensor,
                           ids: Tensor, positions: Tensor, types: Tensor?, _ s: EmbeddingShape)
    func layerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                          rows: Int, channels: Int, eps: Float)
    func layerNormBackward(dx: Tensor, dWeight: Tensor, dBias: Tensor, dOut: Tensor, _ x: Tensor, weight: Tensor,
                           mean: Tensor, rstd: Tensor, rows: Int, channels: Int)
    func geluForward(_ out: Tensor, _ x: Tensor, count: Int)
    func geluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int)
    func tanhForward(_ out: Tensor, _ x: Tensor, count: Int)
    func tanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int)          // from the output
    func dropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64)  // also its backward
    // Attention: fused (scale, mask, bias, softmax, ·V in one pass), and the unfused softmax piece
    func attentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                          mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    func attentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                           out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                           mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    // TinyBERT's attention-score MSE against `target`, fused (its gradient: dScores .scoreMSE)
    func attentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                            _ s: AttentionShape)
    func maskedSoftmaxForward(_ probs: Tensor, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    func maskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape)
    // LoRA branch: y += scale·(drop(x)·Aᵀ)·Bᵀ, xa saved; backward: dx accumulates
    func loraForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape)
    func loraBackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                      _ s: LoRAShape)
    // Losses
    func crossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                      gradScale: Float)
    func softCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                          temperature: Float, gradScale: Float)
    func mse(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float)
    func cosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float)
    // Optimizer and friends
    func adamw(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int)
    func sumOfSquares(_ out: Tensor, _ x: Tensor, count: Int)   // out[0] = Σx² (grad norm²)
    func scale(_ x: Tensor, count: Int, by factor: Float)       // x *= factor (clipping)
    func axpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) // y += alpha·x (residuals)
    func cast(_ dst: Tensor, _ src: Tensor, count: Int)         // f32 ↔ bf16 / f16
}

public extension Backend {
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
}

/// Bytes held for live tensors (now and at the peak), what the backend has reserved beyond that
/// (the CUDA pool's cache), and what it could still get: the device's free memory plus that cache
/// on CUDA, the kernel's MemAvailable on the CPU.
public struct MemoryUse: Sendable {
    public var inUse, peak, reserved, available: Int
    public init(inUse: Int, peak: Int, reserved: Int, available: Int) {
        self.inUse = inUse; self.peak = peak; self.reserved = reserved; self.available = available
    }
}

public struct BackendError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
