// The seam every model and trainer is written against, in two halves:
//   DeviceRuntime — allocation, copies, synchronisation, memory accounting, scratch;
//   BackendOps    — the compute ops, at layer granularity.
// A backend implements the `run…` requirements. Callers use the methods of the same name
// without `run` (Ops.swift), which validate shapes, sizes and dtypes once, above the seam, so a
// `run…` implementation receives operands it may trust. Composite ops have default
// implementations from primitives (ComposedOps.swift): a new backend starts from the primitives
// and adds fused versions for speed.
// Conventions: outputs first, then inputs, then sizes. Input gradients are overwritten unless
// noted; parameter gradients (dWeight, dBias, dWord, dA, dB, …) accumulate. Loss ops write the
// mean loss to loss[0] and, when given a gradient tensor, the gradient of gradScale·loss.
// Layouts: activations [B,T,C]; masks [B,T] int32 (0 = padding); attention bias [NH,T,T];
// scores [B,NH,T,T]; lse [B,NH,T]; labels int32. Semantics per op: Sources/Kernels/include/kernels.h.

public enum DeviceKind: String, Sendable, Codable { case cpu, cuda }

/// How a GPU computes; the CPU always computes in fp32. Weights, gradients, optimizer state and
/// activations stay fp32 in memory at every precision.
///   fp32: as the CPU.  tf32: matmuls on TF32 tensor cores (~1e-3 relative error).
///   bf16 / fp16: matmul operands and attention's Q, K, V, P, dS rounded to 16 bits on the way
///   into tensor cores, fp32 accumulation (mixed precision with fp32 master weights). bf16 needs
///   compute capability ≥ 8.0; fp16 trains with dynamic loss scaling (Train/LossScaler).
public enum Precision: String, CaseIterable, Sendable, Codable {
    case fp32, tf32, bf16, fp16
    /// The 16-bit type operands are rounded to, if any.
    public var halfType: DType? { self == .bf16 ? .bf16 : self == .fp16 ? .f16 : nil }
}

/// Memory and synchronisation of one device.
public protocol DeviceRuntime: AnyObject {
    var kind: DeviceKind { get }
    var summary: String { get }   // one line: library, kernels, threads / device name
    var precision: Precision { get }
    func allocate(_ count: Int, _ dtype: DType) throws -> Tensor
    func runUpload(_ dst: Tensor, _ src: UnsafeRawBufferPointer)            // src.count == dst.bytes
    func runDownload(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor)   // dst.count == src.bytes; waits for queued work
    func runCopy(_ dst: Tensor, _ src: Tensor)                              // same bytes
    func runFill(_ dst: Tensor, _ value: Float)                             // value 0 unless dst is f32
    func synchronize()
    var memoryUse: MemoryUse { get }
    func resetPeakMemory()   // memoryUse.peak restarts from what is in use now
    /// Grow-only buffers for ops' temporaries (composite ops, reductions).
    var scratchBuffers: ScratchBuffers { get }
    /// Device memory the backend holds beside the tensors a run allocates, for the largest of
    /// these matmuls (the GPU's matmul workspace and 16-bit operand copies; 0 on the CPU).
    func workspaceBytes(matmuls: [Gemm]) -> Int
    /// Scratch the attention of shape `s` takes beside its inputs and outputs, forward and
    /// backward (T×T buffers where the backend composes it of matmuls; 0 for fused kernels).
    func attentionScratchBytes(_ s: AttentionShape) -> Int
    /// At bf16/fp16 on a GPU: keep a 16-bit copy of `weights` (a whole buffer: a model's
    /// parameters) for the matmuls that read them, remade by one cast when the buffer was written
    /// since (an optimizer step, a load), instead of casting the weight operand of every matmul.
    /// Elsewhere nothing (the default).
    func keepHalfCopy(of weights: Tensor) throws
    /// Bytes `keepHalfCopy` takes for `elements` weights (0 where it keeps nothing).
    func halfCopyBytes(elements: Int) -> Int
    /// Runs body(0) … body(count − 1): independent lanes of ops (a bidirectional recurrent
    /// layer's directions) that neither read what another writes nor write the same elements.
    /// The CPU runs them at once, the pool's threads split between them (rt_parallel_teams); the
    /// default runs them in turn, as a GPU queue would.
    func forEachLane(_ count: Int, _ body: (Int) -> Void)
}

public extension DeviceRuntime {
    func attentionScratchBytes(_ s: AttentionShape) -> Int { 0 }
    func keepHalfCopy(of weights: Tensor) throws {}
    func halfCopyBytes(elements: Int) -> Int { 0 }
    func forEachLane(_ count: Int, _ body: (Int) -> Void) { for lane in 0..<count { body(lane) } }
}

/// The compute ops. Each requirement is called by the checked method of the same name without
/// `run` (Ops.swift), after its operands were validated.
public protocol BackendOps: AnyObject {
    // Dense: C = alpha·op(A)·op(B) + beta·C (+ bias[n] per row), strided-batched
    func runMatmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm)
    func runBiasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int)
    // Layers
    func runEmbeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                             word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape)
    func runEmbeddingBackward(dWord: Tensor?, dPosition: Tensor?, dType: Tensor?, dOut: Tensor,
                              ids: Tensor, positions: Tensor, types: Tensor?, segments: EmbeddingSegments, _ s: EmbeddingShape)
    func runLayerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                             rows: Int, channels: Int, eps: Float)
    func runLayerNormBackward(dx: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor,
                              mean: Tensor, rstd: Tensor, rows: Int, channels: Int)
    func runRMSNormForward(_ out: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, rows: Int, channels: Int, eps: Float)
    func runRMSNormBackward(dx: Tensor, dWeight: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, rstd: Tensor,
                            rows: Int, channels: Int)
    func runDecodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape)
    func runRoPE(_ out: Tensor, _ x: Tensor, positions: Tensor, inverseFrequencies: Tensor, _ s: RoPEShape, backward: Bool)
    func runSwiGLUForward(_ out: Tensor, gate: Tensor, up: Tensor, count: Int)
    func runSwiGLUBackward(dGate: Tensor, dUp: Tensor, dOut: Tensor, gate: Tensor, up: Tensor, count: Int)
    func runGeluForward(_ out: Tensor, _ x: Tensor, count: Int, tanh: Bool)   // tanh: GPT-2's approximation
    func runGeluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int, tanh: Bool)
    func runTanhForward(_ out: Tensor, _ x: Tensor, count: Int)
    func runTanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int)          // from the output
    func runDropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64)  // also its backward; p > 0
    // Attention: fused (scale, mask, bias, softmax, ·V in one pass; default: composed of the
    // primitives below, ComposedOps.swift), and the unfused pieces
    func runAttentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                             mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    func runAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                              out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                              mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    // TinyBERT's attention-score MSE against `target`, fused (its gradient: dScores .scoreMSE)
    func runAttentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                               _ s: AttentionShape)
    func runMaskedSoftmaxForward(_ probs: Tensor, lse: Tensor?, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape)
    func runMaskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape)
    func runMaskedScores(_ scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape)   // += bias, 0 at masked keys
    // LoRA branch: y += scale·(drop(x)·Aᵀ)·Bᵀ, xa saved; backward: dx accumulates. Default:
    // composed of matmuls and dropout (ComposedOps.swift).
    func runLoRAForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape)
    func runLoRABackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                         _ s: LoRAShape)
    // Recurrent layers (RecurrentOps.swift): one fused time step of a cell, pooling over time
    func runRecurrentForward(_ h: Tensor, c: Tensor?, y: Tensor, saved: Tensor?, xGates: Tensor, hGates: Tensor, hPrev: Tensor,
                             cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep)
    func runRecurrentBackward(dXGates: Tensor, dHGates: Tensor?, dhPrev: Tensor, dcPrev: Tensor?, dY: Tensor, dh: Tensor, dc: Tensor?,
                              saved: Tensor?, h: Tensor, c: Tensor?, hPrev: Tensor, cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep)
    func runSequencePoolForward(_ out: Tensor, argmax: Tensor?, _ y: Tensor, lengths: Tensor, _ s: PoolShape)
    func runSequencePoolBackward(dY: Tensor, dOut: Tensor, argmax: Tensor?, lengths: Tensor, _ s: PoolShape)
    // A weight multiplied by a few rows at many steps, packed once per pass (PackedWeight.swift;
    // default: no packing, the products multiply the weight as it is)
    func packedWeightCount(n: Int, k: Int) -> Int
    func runPackWeight(_ packed: Tensor, _ weight: Tensor, n: Int, k: Int, transB: Bool)
    func runMatmulPacked(_ c: Tensor, _ a: Tensor, _ w: PackedWeight, bias: Tensor?, rows: Int, lda: Int, beta: Float)
    // Losses
    func runCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                         gradScale: Float)
    func runSoftCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                             temperature: Float, gradScale: Float)
    func runMSE(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float)
    func runCosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float)
    // Optimizer and friends
    func runAdamW(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int)
    func runSumOfSquares(_ out: Tensor, _ x: Tensor, count: Int)   // out[0] = Σx² (grad norm²)
    func runScale(_ x: Tensor, count: Int, by factor: Float)       // x *= factor (clipping)
    func runAxpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) // y += alpha·x (residuals)
    func runCast(_ dst: Tensor, _ src: Tensor, count: Int)         // f32 ↔ bf16 / f16, or a copy between equal types
    // int8 (Int8.swift): the kernels' path, nil where the backend has none (int8 layers then
    // multiply their dequantized fp32 weights); y[rows, N] = int8 x·Wᵀ + bias, x rows inputStride apart
    var int8Kernels: String? { get }
    var int8Layout: Int8Layout { get }
    /// Rows up to which a weight-only int8 layer multiplies on the int8 kernels; past them its
    /// dequantized fp32 weight meets the backend's fp32 products.
    var weightOnlyInt8Rows: Int { get }
    func runInt8Linear(_ y: Tensor, _ x: Tensor, weight: Int8Weight, bias: Tensor?, rows: Int, inputStride: Int)
}

/// A compute device: its runtime and its ops.
public protocol Backend: DeviceRuntime, BackendOps {}

/// Bytes held for live tensors (now and at the peak), what the backend has reserved beyond that
/// (the CUDA pool's cache), and what it could still get: the device's free memory plus that cache
/// on CUDA, the kernel's MemAvailable on the CPU.
public struct MemoryUse: Sendable {
    public var inUse, peak, reserved, available: Int
    public init(inUse: Int, peak: Int, reserved: Int, available: Int) {
        self.inUse = inUse; self.peak = peak; self.reserved = reserved; self.available = available
    }
}

/// A device-level failure in the backend's own terms (a library that would not load, a driver
/// call that failed).
public struct BackendError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
