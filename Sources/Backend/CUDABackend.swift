// The CUDA backend: cuBLASLt for every matmul, Retort's CUDA C kernels (Sources/Kernels/cuda,
// compiled by NVRTC) for everything else, one stream on the primary context, a caching
// allocator. Each op checks its sizes as the CPU backend does, then queues its work; results
// are read back by download (which waits for the stream). The CPU backend is the reference
// every op here is tested against (Tests/BackendTests run on both).
import CBackend
import Foundation
import Kernels

public final class CUDABackend: Backend {
    public let kind = DeviceKind.cuda
    public let summary: String
    public let precision: Precision
    public let gpu: GPUInfo
    let device: CUDADevice
    let pool: CUDAMemoryPool
    let kernels: CUDAKernels
    private let gemm: CUDAMatmul
    private var scratch: [String: Tensor] = [:]
    private let scratchLock = NSLock()
    /// Blocks of the fixed-order reductions (memory.cu, losses.cu).
    static let sumBlocks = 256

    public init(ordinal: Int = 0, precision: Precision = .fp32) throws {
        device = try CUDADevice(ordinal: ordinal)
        gpu = device.info
        if let reason = Self.unsupported(precision, arch: gpu.arch) { throw PrecisionError(description: reason) }
        self.precision = precision
        pool = CUDAMemoryPool(device: device)
        kernels = try CUDAKernels(device: device)
        try kernels.loadAll()
        let workspace = try Self.allocate(pool, CUDAMatmul.workspaceBytes / 4, .f32)
        gemm = try CUDAMatmul(device: device, precision: precision, workspace: workspace)
        let lt = gemm.version
        summary = "\(gpu.name), sm_\(gpu.arch), \(gpu.multiprocessors) SMs, \(format1(Double(gpu.memoryBytes) / Double(1 << 30))) GiB; "
            + "driver \(device.driverVersion / 1000).\(device.driverVersion % 1000 / 10), NVRTC \(NVRTC.status.version), "
            + "cuBLASLt \(lt / 10000).\(lt / 100 % 100).\(lt % 100); " + Self.describe(precision)
    }

    /// The GPU cannot compute at the asked precision (`--device auto` does not fall back to the CPU for this).
    public struct PrecisionError: Error, CustomStringConvertible, Sendable { public let description: String }

    /// Why a GPU of compute capability `arch` (e.g. 86) cannot compute at `precision`, or nil.
    public static func unsupported(_ precision: Precision, arch: Int) -> String? {
        switch precision {
        case .tf32 where arch < 80, .bf16 where arch < 80:
            return "--precision \(precision.rawValue) needs compute capability 8.0 or newer (this GPU is sm_\(arch)); "
                + "use --precision fp16" + (arch < 70 ? " on a GPU with tensor cores, or fp32" : "")
        case .fp16 where arch < 70:
            return "--precision fp16 needs tensor cores (compute capability 7.0 or newer; this GPU is sm_\(arch)); use --precision fp32"
        default:
            return nil
        }
    }

    static func describe(_ precision: Precision) -> String {
        switch precision {
        case .fp32, .tf32: return "\(precision.rawValue) matmuls"
        case .bf16, .fp16: return "\(precision.rawValue) mixed precision (16-bit tensor-core operands, fp32 accumulation and weights)"
        }
    }

    /// The cuBLASLt workspace every matmul may use (allocated at start-up).
    public static var matmulWorkspaceBytes: Int { CUDAMatmul.workspaceBytes }

    /// Bytes held by live tensors now and at most so far, obtained from the driver, and obtainable.
    public var memoryUse: MemoryUse {
        MemoryUse(inUse: pool.inUseBytes, peak: pool.peakInUseBytes, reserved: pool.reservedBytes,
                  available: device.freeMemory.free + pool.reservedBytes - pool.inUseBytes)
    }

    public func resetPeakMemory() { pool.resetPeak() }

    // MARK: memory

    private static func allocate(_ pool: CUDAMemoryPool, _ count: Int, _ dtype: DType) throws -> Tensor {
        let (address, size) = try pool.allocate(count * dtype.size)
        let buffer = DeviceBuffer(address: UInt(address), count: count, dtype: dtype) { [pool] address in
            pool.release(rt_CUdeviceptr(address), size: size)
        }
        return Tensor(buffer)
    }

    public func allocate(_ count: Int, _ dtype: DType) throws -> Tensor {
        precondition(count >= 0)
        return try Self.allocate(pool, count, dtype)
    }

    /// A grow-only buffer for an op's temporaries (allocates only when a larger size than ever is asked).
    func scratch(_ name: String, _ count: Int, _ dtype: DType = .f32) -> Tensor {
        scratchLock.lock()
        defer { scratchLock.unlock() }
        if let t = scratch[name], t.count >= count, t.dtype == dtype { return t.slice(0, count) }
        do {
            let t = try allocate(max(count, 1), dtype)
            scratch[name] = t
            return t.slice(0, count)
        } catch {
            fatalError("retort: \(error)")
        }
    }

    public func upload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) {
        precondition(src.count == dst.bytes, "upload size mismatch")
        guard let base = src.baseAddress, src.count > 0 else { return }
        device.makeCurrent()
        device.must(device.driver.cuMemcpyHtoDAsync(ptr(dst), base, src.count, device.stream), "upload")
    }

    public func download(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) {
        precondition(dst.count == src.bytes, "download size mismatch")
        guard let base = dst.baseAddress, dst.count > 0 else { return }
        device.makeCurrent()
        device.must(device.driver.cuMemcpyDtoHAsync(base, ptr(src), dst.count, device.stream), "download")
        device.must(device.driver.cuStreamSynchronize(device.stream), "download (waiting for the stream)")
    }

    public func copy(_ dst: Tensor, _ src: Tensor) {
        precondition(dst.bytes == src.bytes, "copy size mismatch")
        guard dst.bytes > 0 else { return }
        device.makeCurrent()
        device.must(device.driver.cuMemcpyDtoDAsync(ptr(dst), ptr(src), src.bytes, device.stream), "copy")
    }

    public func fill(_ dst: Tensor, _ value: Float) {
        guard dst.count > 0 else { return }
        device.makeCurrent()
        if dst.dtype == .f32 || dst.dtype == .i32 {
            precondition(dst.dtype == .f32 || value == 0, "fill with a non-zero value needs an f32 tensor")
            device.must(device.driver.cuMemsetD32Async(ptr(dst), value.bitPattern, dst.count, device.stream), "fill")
        } else {
            precondition(value == 0, "fill with a non-zero value needs an f32 tensor")
            device.must(device.driver.cuMemsetD8Async(ptr(dst), 0, dst.bytes, device.stream), "fill")
        }
    }

    public func synchronize() {
        device.makeCurrent()
        device.must(device.driver.cuStreamSynchronize(device.stream), "synchronize")
    }

    // MARK: dense

    public func matmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) {
        precondition(a.count >= g.spanA && b.count >= g.spanB && c.count >= g.spanC, "matmul operands too small")
        precondition(a.dtype == .f32 && b.dtype == .f32 && c.dtype == .f32, "matmul needs f32 tensors")
        device.makeCurrent()
        if let bias { precondition(bias.count == g.n && g.ldc == g.n, "bias needs n elements and packed C") }
        guard g.m > 0 && g.n > 0 && g.batch > 0 else { return }
        if g.k == 0 {   // an empty product: C = beta·C (+ bias), as sgemm does
            precondition(g.ldc == g.n, "an empty matmul needs packed C")
            for i in 0..<g.batch { scale(c.slice(i * g.strideC, g.m * g.n), count: g.m * g.n, by: g.beta) }
        } else {
            let (a, b) = halfOperands(a, b, g)
            if let bias, g.batch == 1, ptr(bias) % 16 == 0 {   // the epilogue wants a 16-byte-aligned bias
                gemm.run(c: ptr(c), a: ptr(a), b: ptr(b), bias: ptr(bias), g)
                return
            }
            gemm.run(c: ptr(c), a: ptr(a), b: ptr(b), bias: nil, g)
        }
        if let bias {   // batched, misaligned or empty: every matrix of the batch gets the bias
            for i in 0..<g.batch {
                let rows = c.slice(i * g.strideC, g.m * g.n)
                launch("bias.cu", "bias_add", elements: g.m * g.n, .tensor(rows), .tensor(bias), .int64(g.m), .int32(g.n))
            }
        }
    }

    /// bf16/fp16: A and B rounded to 16 bits (the elements the Gemm spans, same layout) in
    /// grow-only scratch; otherwise A and B themselves.
    private func halfOperands(_ a: Tensor, _ b: Tensor, _ g: Gemm) -> (Tensor, Tensor) {
        guard let half = precision.halfType else { return (a, b) }
        let a16 = scratch("gemm.a16", g.spanA, half), b16 = scratch("gemm.b16", g.spanB, half)
        cast(a16, a.slice(0, g.spanA), count: g.spanA)
        cast(b16, b.slice(0, g.spanB), count: g.spanB)
        return (a16, b16)
    }

    /// Bytes of the 16-bit operand scratch the largest of these matmuls needs (0 at fp32/tf32).
    public static func halfOperandBytes(_ precision: Precision, matmuls: [Gemm]) -> Int {
        guard let half = precision.halfType else { return 0 }
        return half.size * ((matmuls.map(\.spanA).max() ?? 0) + (matmuls.map(\.spanB).max() ?? 0))
    }

    public func biasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        precondition(dBias.count == channels && dOut.count == rows * channels)
        launch("bias.cu", "bias_backward", grid: (channels + 31) / 32, block: 32, blockY: 8,
               .tensor(dBias), .tensor(dOut), .int64(rows), .int32(channels))
    }

    // MARK: layers

    public func embeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                                 word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape) {
        precondition(out.count == s.tokens * s.channels && ids.count == s.tokens && positions.count == s.tokens)
        precondition(word.count == s.vocabulary * s.channels && position.count == s.positions * s.channels)
        launch("embedding.cu", "embedding_forward", elements: s.tokens * s.channels,
               .tensor(out), .tensor(ids), .tensor(positions), .tensor(types), .tensor(word), .tensor(position), .tensor(type),
               .int64(s.tokens), .int32(s.channels), .int32(s.vocabulary), .int32(s.positions), .int32(s.tokenTypes))
    }

    public func embeddingBackward(dWord: Tensor, dPosition: Tensor, dType: Tensor?, dOut: Tensor,
                                  ids: Tensor, positions: Tensor, types: Tensor?, _ s: EmbeddingShape) {
        precondition(dOut.count == s.tokens * s.channels && dWord.count == s.vocabulary * s.channels)
        launch("embedding.cu", "embedding_backward", grid: (s.channels + 127) / 128, block: 128,
               .tensor(dWord), .tensor(dPosition), .tensor(dType), .tensor(dOut), .tensor(ids), .tensor(positions),
               .tensor(types), .int64(s.tokens), .int32(s.channels), .int32(s.vocabulary), .int32(s.positions),
               .int32(s.tokenTypes), .int32(s.wordPadding), .int32(s.positionPadding))
    }

    public func layerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                                 rows: Int, channels: Int, eps: Float) {
        precondition(out.count == rows * channels && x.count == rows * channels && mean.count == rows && weight.count == channels)
        launch("layernorm.cu", "layernorm_forward", warps: rows, .tensor(out), .tensor(mean), .tensor(rstd), .tensor(x),
               .tensor(weight), .tensor(bias), .int32(rows), .int32(channels), .float(eps))
    }

    public func layerNormBackward(dx: Tensor, dWeight: Tensor, dBias: Tensor, dOut: Tensor, _ x: Tensor, weight: Tensor,
                                  mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        precondition(dx.count == rows * channels && dOut.count == rows * channels && dWeight.count == channels)
        launch("layernorm.cu", "layernorm_backward_params", grid: (channels + 255) / 256, block: 256,
               .tensor(dWeight), .tensor(dBias), .tensor(dOut), .tensor(x), .tensor(mean), .tensor(rstd),
               .int32(rows), .int32(channels))
        launch("layernorm.cu", "layernorm_backward_input", warps: rows, .tensor(dx), .tensor(dOut), .tensor(x),
               .tensor(weight), .tensor(mean), .tensor(rstd), .int32(rows), .int32(channels))
    }

    public func geluForward(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(out.count >= count && x.count >= count)
        launch("gelu.cu", "gelu_forward", elements: count, .tensor(out), .tensor(x), .int64(count))
    }

    public func geluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int) {
        precondition(dx.count >= count && dOut.count >= count && x.count >= count)
        launch("gelu.cu", "gelu_backward", elements: count, .tensor(dx), .tensor(dOut), .tensor(x), .int64(count))
    }

    public func tanhForward(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(out.count >= count && x.count >= count)
        launch("tanh.cu", "tanh_forward", elements: count, .tensor(out), .tensor(x), .int64(count))
    }

    public func tanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) {
        precondition(dx.count >= count && dOut.count >= count && out.count >= count)
        launch("tanh.cu", "tanh_backward", elements: count, .tensor(dx), .tensor(dOut), .tensor(out), .int64(count))
    }

    public func dropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) {
        precondition(out.count >= count && x.count >= count && p >= 0 && p < 1, "dropout needs p in [0, 1)")
        if p == 0 {
            if out.buffer !== x.buffer || out.offset != x.offset { copy(out.slice(0, count), x.slice(0, count)) }
            return
        }
        dropout(out, x, count: count, p: p, seed: seed, offset: 0)
    }

    func dropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64, offset: UInt64) {
        launch("dropout.cu", "dropout_f32", elements: count, .tensor(out), .tensor(x), .int64(count), .float(p),
               .uint64(seed), .uint64(offset))
    }

    // MARK: attention

    public func attentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                                 mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([out, q, k, v], lse: lse, scores: scores, mask: mask, bias: bias)
        checkHeadSize(s.headSize)
        if scores == nil, let suffix = tensorCoreAttention(s) {
            launch("attention_tc.cu", "attention_tc_forward_" + suffix, grid: tensorCoreBlocks(s), block: 128,
                   .tensor(out), .tensor(lse), .tensor(q), .tensor(k), .tensor(v), .tensor(mask), .tensor(bias), .int32(s.batch),
                   .int32(s.length), .int32(s.heads), .float(s.scale), .float(s.dropout), .uint64(s.seed))
            return
        }
        launch("attention.cu", "attention_forward", grid: (s.rows + 3) / 4, block: 128,
               .tensor(out), .tensor(lse), .tensor(scores), .tensor(q), .tensor(k), .tensor(v), .tensor(mask), .tensor(bias),
               .int32(s.batch), .int32(s.length), .int32(s.heads), .int32(s.headSize), .float(s.scale), .float(s.dropout),
               .uint64(s.seed))
    }

    public func attentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                  out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                                  mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([dq, dk, dv, dOut, out, q, k, v], lse: lse, scores: nil, mask: mask, bias: bias ?? dBias)
        s.check(dScores)
        checkHeadSize(s.headSize)
        var dense: Tensor?, target = scoreTargetArgs(nil, weight: 0)
        switch dScores {
        case .dense(let t): dense = t
        case .scoreMSE(let t, let gradScale): target = scoreTargetArgs(t, weight: s.scoreMSEWeight(gradScale: gradScale))
        case nil: break
        }
        let D = scratch("attention.D", s.rows)
        if dScores == nil, let suffix = tensorCoreAttention(s) {
            let shape: [KernelArg] = [.tensor(mask), .tensor(bias), .int32(s.batch), .int32(s.length), .int32(s.heads),
                                      .float(s.scale), .float(s.dropout), .uint64(s.seed)]
            launch("attention_tc.cu", "attention_tc_backward_query_" + suffix, grid: tensorCoreBlocks(s), block: 128,
                   [.tensor(dq), .tensor(dBias), .tensor(D), .tensor(dOut), .tensor(out), .tensor(lse), .tensor(q), .tensor(k),
                    .tensor(v)] + shape)
            launch("attention_tc.cu", "attention_tc_backward_key_" + suffix, grid: tensorCoreBlocks(s), block: 128,
                   [.tensor(dk), .tensor(dv), .tensor(dOut), .tensor(lse), .tensor(D), .tensor(q), .tensor(k), .tensor(v)] + shape)
            return
        }
        let shape: [KernelArg] = [.tensor(mask), .tensor(bias), .int32(s.batch), .int32(s.length), .int32(s.heads),
                                  .int32(s.headSize), .float(s.scale), .float(s.dropout), .uint64(s.seed)]
        launch("attention.cu", "attention_backward_query", grid: (s.rows + 3) / 4, block: 128,
               [.tensor(dq), .tensor(dBias), .tensor(D), .tensor(dOut), .tensor(dense), .tensor(out), .tensor(lse),
                .tensor(q), .tensor(k), .tensor(v)] + shape + target)
        launch("attention.cu", "attention_backward_key", grid: (s.rows + 3) / 4, block: 128,
               [.tensor(dk), .tensor(dv), .tensor(dOut), .tensor(dense), .tensor(lse), .tensor(D), .tensor(q), .tensor(k),
                .tensor(v)] + shape + target)
    }

    public func attentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                                   _ s: AttentionShape) {
        s.check([q, k], lse: nil, scores: nil, mask: mask, bias: bias)
        s.check(target)
        checkHeadSize(s.headSize)
        let partial = scratch("attention.scoreLoss", 2 * s.rows)   // doubles
        launch("attention.cu", "attention_score_loss_rows", grid: (s.rows + 3) / 4, block: 128,
               [.tensor(partial), .tensor(q), .tensor(k), .tensor(mask), .tensor(bias), .tensor(target.q), .tensor(target.k),
                .tensor(target.bias), .int32(s.batch), .int32(s.length), .int32(s.heads), .int32(s.headSize), .float(s.scale),
                .int32(target.headSize), .float(target.scale)])
        launch("losses.cu", "mean_finish_double", grid: 1, block: 256, .tensor(loss), .tensor(partial), .int32(s.rows),
               .float(Float(s.scores)))
    }

    /// tq, tk, tbias, tHS, tscale, tweight: the attention kernels' score-target arguments (all
    /// zero without a target).
    private func scoreTargetArgs(_ t: ScoreTarget?, weight: Float) -> [KernelArg] {
        guard let t else { return [.tensor(nil), .tensor(nil), .tensor(nil), .int32(0), .float(0), .float(0)] }
        checkHeadSize(t.headSize)
        return [.tensor(t.q), .tensor(t.k), .tensor(t.bias), .int32(t.headSize), .float(t.scale), .float(weight)]
    }

    /// The attention_tc.cu kernel suffix ("bf16_hs64", …) when this precision and shape take the
    /// tensor-core kernels: bf16/fp16 on sm_80+, head size 32 or 64. Otherwise nil: attention.cu.
    private func tensorCoreAttention(_ s: AttentionShape) -> String? {
        guard let half = precision.halfType, gpu.arch >= 80, s.headSize == 32 || s.headSize == 64 else { return nil }
        return (half == .bf16 ? "bf16" : "f16") + "_hs\(s.headSize)"
    }

    /// attention_tc.cu's grid: a block per 64 rows of each (batch, head).
    private func tensorCoreBlocks(_ s: AttentionShape) -> Int { s.batch * s.heads * ((s.length + 63) / 64) }

    /// attention.cu keeps a head's rows in shared memory: MAX_HS = 128.
    private func checkHeadSize(_ headSize: Int) {
        precondition(headSize <= 128, "the CUDA attention kernels support head sizes up to 128")
    }

    public func maskedSoftmaxForward(_ probs: Tensor, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        precondition(probs.count == s.scores && scores.count == s.scores)
        launch("softmax.cu", "masked_softmax_forward", warps: s.rows, .tensor(probs), .tensor(scores), .tensor(mask), .tensor(bias),
               .int32(s.batch), .int32(s.heads), .int32(s.length))
    }

    public func maskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        precondition(dScores.count == s.scores && dProbs.count == s.scores && probs.count == s.scores)
        launch("softmax.cu", "masked_softmax_backward", warps: s.rows, .tensor(dScores), .tensor(dProbs), .tensor(probs),
               .int64(s.rows), .int32(s.length))
    }


    // MARK: LoRA — fused kernels (lora.cu) for ranks ≤ 128; the row reductions (dA, dB) are matmuls

    /// Ranks the fused LoRA kernels take (lora.cu's MAX_R); larger ones are composed of matmuls.
    static let fusedLoRARank = 128

    public func loraForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        s.check(x: x, y: y, xa: xa, a: a, b: b)
        if s.rank <= Self.fusedLoRARank {   // one pass: xa = drop(x)·Aᵀ, y += scale·xa·Bᵀ
            launch("lora.cu", "lora_forward", warps: s.rows, .tensor(y), .tensor(xa), .tensor(x), .tensor(a), .tensor(b),
                   .int64(s.rows), .int32(s.inFeatures), .int32(s.outFeatures), .int32(s.rank), .float(s.scale), .float(s.dropout),
                   .uint64(s.seed))
            return
        }
        matmul(xa, droppedInput(x, s), a, bias: nil, Gemm(m: s.rows, n: s.rank, k: s.inFeatures, transB: true))
        matmul(y, xa, b, bias: nil, Gemm(m: s.rows, n: s.outFeatures, k: s.rank, transB: true, alpha: s.scale, beta: 1))
    }

    public func loraBackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                             _ s: LoRAShape) {
        s.check(x: dx, y: dY, xa: xa, a: dA, b: dB)
        let N = s.rows, In = s.inFeatures, Out = s.outFeatures, R = s.rank
        // dB[Out,R] += scale·dYᵀ·xa ; dxa[N,R] = scale·dY·B ; dx += drop'(dxa·A) ; dA[R,In] += dxaᵀ·drop(x)
        matmul(dB, dY, xa, bias: nil, Gemm(m: Out, n: R, k: N, transA: true, alpha: s.scale, beta: 1))
        let dxa = scratch("lora.dxa", N * R)
        if R <= Self.fusedLoRARank {   // dxa and dx row by row, no [N,In] scratch
            launch("lora.cu", "lora_backward_rows", warps: N, .tensor(dx), .tensor(dxa), .tensor(dY), .tensor(a), .tensor(b),
                   .int64(N), .int32(In), .int32(Out), .int32(R), .float(s.scale), .float(s.dropout), .uint64(s.seed))
        } else {
            matmul(dxa, dY, b, bias: nil, Gemm(m: N, n: R, k: Out, alpha: s.scale))
            if s.dropout > 0 {
                let row = scratch("lora.dx", N * In)
                matmul(row, dxa, a, bias: nil, Gemm(m: N, n: In, k: R))
                dropout(row, row, count: N * In, p: s.dropout, seed: s.seed, offset: 0)
                axpy(dx, row, count: N * In, alpha: 1)
            } else {
                matmul(dx, dxa, a, bias: nil, Gemm(m: N, n: In, k: R, beta: 1))
            }
        }
        matmul(dA, dxa, droppedInput(x, s), bias: nil, Gemm(m: R, n: In, k: N, transA: true, beta: 1))
    }

    /// drop(x) with the LoRA mask (element n·In + i), or x itself without dropout.
    private func droppedInput(_ x: Tensor, _ s: LoRAShape) -> Tensor {
        guard s.dropout > 0 else { return x }
        let xd = scratch("lora.xd", s.rows * s.inFeatures)
        dropout(xd, x, count: s.rows * s.inFeatures, p: s.dropout, seed: s.seed, offset: 0)
        return xd
    }


    // MARK: losses

    public func crossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                             gradScale: Float) {
        precondition(logits.count == rows * classes && labels.count == rows && labels.dtype == .i32)
        let partial = scratch("loss.partial", rows), count = scratch("loss.count", 1, .i32)
        launch("losses.cu", "count_valid_labels", grid: 1, block: 256, .tensor(count), .tensor(labels), .int64(rows), .int32(classes))
        launch("losses.cu", "cross_entropy_rows", warps: rows, .tensor(partial), .tensor(dLogits), .tensor(logits), .tensor(labels),
               .tensor(count), .int64(rows), .int32(classes), .float(gradScale))
        launch("losses.cu", "mean_finish", grid: 1, block: 256, .tensor(loss), .tensor(partial), .int64(rows), .tensor(count),
               .float(0))
    }

    public func softCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                                 temperature: Float, gradScale: Float) {
        precondition(logits.count == rows * classes && teacher.count == rows * classes && temperature > 0)
        let partial = scratch("loss.partial", rows)
        launch("losses.cu", "soft_cross_entropy_rows", warps: rows, .tensor(partial), .tensor(dLogits), .tensor(logits),
               .tensor(teacher), .int64(rows), .int32(classes), .float(temperature), .float(gradScale))
        finishMean(loss, partial, rows, denominator: Float(rows))
    }

    public func mse(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        precondition(a.count == count && b.count == count)
        let partials = scratch("loss.blocks", Self.sumBlocks * 2)   // doubles
        let norm: Float = count > 0 ? 2 * gradScale / Float(count) : 0
        launch("losses.cu", "mse_partial", grid: Self.sumBlocks, block: 256, .tensor(partials), .tensor(dA), .tensor(a), .tensor(b),
               .int64(count), .float(norm))
        launch("losses.cu", "mean_finish_double", grid: 1, block: 256, .tensor(loss), .tensor(partials), .int32(Self.sumBlocks),
               .float(Float(count)))
    }

    public func cosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        precondition(a.count == rows * channels && b.count == rows * channels)
        let partial = scratch("loss.partial", rows)
        let norm: Float = rows > 0 ? gradScale / Float(rows) : 0
        launch("losses.cu", "cosine_rows", warps: rows, .tensor(partial), .tensor(dA), .tensor(a), .tensor(b), .int64(rows),
               .int32(channels), .float(norm))
        finishMean(loss, partial, rows, denominator: Float(rows))
    }

    private func finishMean(_ loss: Tensor, _ partial: Tensor, _ count: Int, denominator: Float) {
        launch("losses.cu", "mean_finish", grid: 1, block: 256, .tensor(loss), .tensor(partial), .int64(count), .tensor(nil),
               .float(denominator))
    }

    // MARK: optimizer

    public func adamw(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        precondition(params.count >= count && grads.count >= count && m.count >= count && v.count >= count && step >= 1)
        // Coefficients in double, rounded once (as the CPU kernel and torch).
        let c1 = 1 / (1 - pow(h.beta1, Double(step))), c2 = 1 / (1 - pow(h.beta2, Double(step)))
        launch("adamw.cu", "adamw_step", elements: count, .tensor(params), .tensor(grads), .tensor(m), .tensor(v), .int64(count),
               .float(Float(h.learningRate)), .float(Float(h.beta1)), .float(Float(1 - h.beta1)), .float(Float(h.beta2)),
               .float(Float(1 - h.beta2)), .float(Float(h.eps)), .float(Float(1 - h.learningRate * h.weightDecay)),
               .float(Float(c1)), .float(Float(c2)))
    }

    public func sumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(x.count >= count && out.count >= 1)
        let partials = scratch("sum.blocks", Self.sumBlocks * 2)   // doubles
        launch("memory.cu", "sum_squares_partial", grid: Self.sumBlocks, block: 256, .tensor(partials), .tensor(x), .int64(count))
        launch("memory.cu", "sum_finish", grid: 1, block: 256, .tensor(out), .tensor(partials), .int32(Self.sumBlocks))
    }

    public func scale(_ x: Tensor, count: Int, by factor: Float) {
        precondition(x.count >= count)
        launch("memory.cu", "scale_f32", elements: count, .tensor(x), .int64(count), .float(factor))
    }

    public func axpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) {
        precondition(y.count >= count && x.count >= count)
        launch("memory.cu", "axpy_f32", elements: count, .tensor(y), .tensor(x), .int64(count), .float(alpha))
    }

    public func cast(_ dst: Tensor, _ src: Tensor, count: Int) {
        precondition(dst.count >= count && src.count >= count)
        let name: String
        switch (src.dtype, dst.dtype) {
        case (.f32, .bf16): name = "cast_f32_to_bf16"
        case (.bf16, .f32): name = "cast_bf16_to_f32"
        case (.f32, .f16): name = "cast_f32_to_f16"
        case (.f16, .f32): name = "cast_f16_to_f32"
        case let (a, b) where a == b:
            copy(dst.slice(0, count), src.slice(0, count))
            return
        default: preconditionFailure("cast from \(src.dtype) to \(dst.dtype) is not supported")
        }
        launch("memory.cu", name, elements: count, .tensor(dst), .tensor(src), .int64(count))
    }

    // MARK: launching

    enum KernelArg {
        case tensor(Tensor?), int32(Int), int64(Int), float(Float), uint64(UInt64)
    }

    private func ptr(_ t: Tensor) -> rt_CUdeviceptr { rt_CUdeviceptr(t.buffer.address) + rt_CUdeviceptr(t.offset * t.dtype.size) }

    private func slot(_ arg: KernelArg) -> UInt64 {
        switch arg {
        case .tensor(let t): return t.map(ptr) ?? 0
        case .int32(let v): return UInt64(UInt32(bitPattern: Int32(v)))
        case .int64(let v): return UInt64(bitPattern: Int64(v))
        case .float(let v): return UInt64(v.bitPattern)
        case .uint64(let v): return v
        }
    }

    /// Grid-stride kernels over `elements` items: 256 threads per block, at most 8192 blocks.
    private func launch(_ file: String, _ name: String, elements: Int, _ args: KernelArg...) {
        launch(file, name, grid: max(1, min((elements + 255) / 256, 8192)), block: 256, args)
    }

    /// One warp per row: 8 warps per block.
    private func launch(_ file: String, _ name: String, warps rows: Int, _ args: KernelArg...) {
        launch(file, name, grid: max(1, (rows + 7) / 8), block: 256, args)
    }

    private func launch(_ file: String, _ name: String, grid: Int, block: Int, blockY: Int = 1, _ args: KernelArg...) {
        launch(file, name, grid: grid, block: block, blockY: blockY, args)
    }

    private func launch(_ file: String, _ name: String, grid: Int, block: Int, blockY: Int = 1, _ args: [KernelArg]) {
        guard grid > 0 else { return }   // nothing to do (an empty tensor)
        let fn: rt_CUfunction
        do { fn = try kernels.function(file, name) } catch { fatalError("retort: \(error)") }
        device.makeCurrent()
        var slots = args.map(slot)
        let result = slots.withUnsafeMutableBufferPointer { buffer in
            rt_cuda_launch(fn, UInt32(grid), 1, 1, UInt32(block), UInt32(blockY), 1, 0, device.stream,
                           buffer.baseAddress, Int32(buffer.count))
        }
        device.must(result, "launching \(name) (\(file))")
    }
}
