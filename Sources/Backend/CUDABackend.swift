// The CUDA backend: cuBLASLt for every matmul, Retort's CUDA C kernels (Sources/Kernels/cuda,
// compiled by NVRTC) for everything else, one stream on the primary context, a caching
// allocator. Ops arrive with their operands validated (Ops.swift); each queues its work through
// the typed kernel table (CUDAKernelTable.swift) and launch (CUDALaunch.swift); the layer and
// attention ops are in CUDALayerOps.swift; results are read back by download (which waits
// for the stream). The CPU backend is the reference every op here is tested against
// (Tests/BackendTests and Conformance run on both).
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
    let gemm: CUDAMatmul
    public let scratchBuffers = ScratchBuffers()
    /// false: attention.cu at every length (RETORT_CUDA_ATTENTION=fused; the conformance checks
    /// run it so, as the path lengths past `composedAttentionLimit` take); true: composed from
    /// T=128 where it fits (`composesAttention`).
    public var composedLongAttention = ProcessInfo.processInfo.environment["RETORT_CUDA_ATTENTION"] != "fused"
    /// Blocks of the fixed-order reductions (memory.cu, losses.cu).
    static let sumBlocks = 256

    public init(ordinal: Int = 0, precision: Precision = .fp32) throws {
        device = try CUDADevice(ordinal: ordinal)
        gpu = device.info
        if let reason = Self.unsupported(precision, arch: gpu.arch) { throw PrecisionError(message: reason) }
        self.precision = precision
        pool = CUDAMemoryPool(device: device)
        kernels = try CUDAKernels(device: device)
        try kernels.loadAll()
        let workspace = try Self.allocate(pool, CUDAMatmul.workspaceBytes / 4, .f32)
        gemm = try CUDAMatmul(device: device, precision: precision, workspace: workspace)
        let lt = gemm.version
        summary = "\(gpu.name), sm_\(gpu.arch), \(gpu.multiprocessors) SMs, \(format1(Double(gpu.memoryBytes) / Double(1 << 30))) GiB; "
            + "driver \(device.driverVersion / 1000).\(device.driverVersion % 1000 / 10), NVRTC \(NVRTC.status.version)"
            + (kernels.target.ptx ? " (\(kernels.target), compiled by the driver)" : "")
            + ", cuBLASLt \(lt / 10000).\(lt / 100 % 100).\(lt % 100); " + Self.describe(precision)
        try startupCheck()
    }

    /// The GPU cannot compute at the asked precision (`--device auto` does not fall back to the CPU for this).
    public struct PrecisionError: SettingsError, Sendable { public let message: SettingText }

    /// Why a GPU of compute capability `arch` (e.g. 86) cannot compute at `precision`, or nil.
    public static func unsupported(_ precision: Precision, arch: Int) -> SettingText? {
        switch precision {
        case .tf32 where arch < 80, .bf16 where arch < 80:
            return "\(Setting.precision) \(precision.rawValue) needs compute capability 8.0 or newer (this GPU is sm_\(arch)); "
                + "use \(Setting.precision) fp16" + (arch < 70 ? " on a GPU with tensor cores, or fp32" : "")
        case .fp16 where arch < 70:
            return "\(Setting.precision) fp16 needs tensor cores (compute capability 7.0 or newer; this GPU is sm_\(arch)); use \(Setting.precision) fp32"
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

    /// The cuBLASLt workspace every matmul may use (allocated at start-up), and at bf16/fp16 the
    /// 16-bit copies of the largest operands of these matmuls.
    public func workspaceBytes(matmuls: [Gemm]) -> Int {
        CUDAMatmul.workspaceBytes + Self.halfOperandBytes(precision, matmuls: matmuls)
    }

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

    public func runUpload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) {
        guard let base = src.baseAddress, src.count > 0 else { return }
        device.makeCurrent()
        device.must(device.driver.cuMemcpyHtoDAsync(ptr(dst), base, src.count, device.stream), "upload")
    }

    public func runDownload(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) {
        guard let base = dst.baseAddress, dst.count > 0 else { return }
        device.makeCurrent()
        device.must(device.driver.cuMemcpyDtoHAsync(base, ptr(src), dst.count, device.stream), "download")
        device.must(device.driver.cuStreamSynchronize(device.stream), "download (waiting for the stream)")
    }

    public func runCopy(_ dst: Tensor, _ src: Tensor) {
        device.makeCurrent()
        device.must(device.driver.cuMemcpyDtoDAsync(ptr(dst), ptr(src), src.bytes, device.stream), "copy")
    }

    public func runFill(_ dst: Tensor, _ value: Float) {
        device.makeCurrent()
        if dst.dtype == .f32 || dst.dtype == .i32 {
            device.must(device.driver.cuMemsetD32Async(ptr(dst), value.bitPattern, dst.count, device.stream), "fill")
        } else {
            device.must(device.driver.cuMemsetD8Async(ptr(dst), 0, dst.bytes, device.stream), "fill")
        }
    }

    public func synchronize() {
        device.makeCurrent()
        device.must(device.driver.cuStreamSynchronize(device.stream), "synchronize")
    }

    // MARK: dense

    public func runMatmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) {
        device.makeCurrent()
        if g.k == 0 {   // an empty product: C = beta·C (+ bias), as sgemm does
            for i in 0..<g.batch { scale(c.slice(i * g.strideC, g.m * g.n), count: g.m * g.n, by: g.beta) }
        } else {
            let (a, b) = halfOperands(a, b, g)
            // The epilogue takes a bias cuBLASLt accepts (it may refuse one: then a kernel adds it).
            if let bias, g.batch == 1, ptr(bias) % 16 == 0, gemm.run(c: ptr(c), a: ptr(a), b: ptr(b), bias: ptr(bias), g) {
                device.checkpoint("the cuBLASLt matmul m \(g.m) n \(g.n) k \(g.k) with the bias epilogue")
                return
            }
            gemm.run(c: ptr(c), a: ptr(a), b: ptr(b), bias: nil, g)
            device.checkpoint("the cuBLASLt matmul m \(g.m) n \(g.n) k \(g.k) batch \(g.batch)")
        }
        if let bias {   // batched, misaligned or empty: every matrix of the batch gets the bias
            for i in 0..<g.batch {
                let rows = c.slice(i * g.strideC, g.m * g.n)
                launch(K.biasAdd, elements: g.m * g.n, .tensor(rows), .tensor(bias), .int64(g.m), .int32(g.n))
            }
        }
    }

    /// bf16/fp16: A and B rounded to 16 bits (the elements the Gemm spans, same layout): from
    /// the kept copy of a weight buffer, or cast into grow-only scratch; otherwise A and B themselves.
    private func halfOperands(_ a: Tensor, _ b: Tensor, _ g: Gemm) -> (Tensor, Tensor) {
        guard let half = precision.halfType else { return (a, b) }
        func rounded(_ t: Tensor, _ span: Int, _ name: String) -> Tensor {
            if let kept = halfCopy(t, span: span) { return kept }
            let t16 = scratch(name, span, half)
            cast(t16, t.slice(0, span), count: span)
            return t16
        }
        return (rounded(a, g.spanA, "gemm.a16"), rounded(b, g.spanB, "gemm.b16"))
    }

    /// A weight buffer's 16-bit copy, kept as the buffer's companion (freed with it).
    private final class HalfCopy {
        let copy: Tensor
        init(_ copy: Tensor) { self.copy = copy }
    }

    public func keepHalfCopy(of weights: Tensor) throws {
        guard let half = precision.halfType else { return }
        precondition(weights.offset == 0 && weights.count == weights.buffer.count && weights.dtype == .f32,
                     "keepHalfCopy: a whole f32 buffer")
        weights.buffer.companion = HalfCopy(try allocate(weights.count, half))
        weights.buffer.noteWrite(weights)   // nothing cast yet
    }

    public func halfCopyBytes(elements: Int) -> Int { (precision.halfType?.size ?? 0) * elements }

    /// `span` elements from `t` of its buffer's 16-bit copy, brought up to date first (one cast
    /// of the range written since: after an optimizer step, what it updated); nil when the buffer
    /// keeps none.
    private func halfCopy(_ t: Tensor, span: Int) -> Tensor? {
        guard let kept = t.buffer.companion as? HalfCopy else { return nil }
        if let dirty = t.buffer.written {
            cast(kept.copy.slice(dirty.lowerBound, dirty.count), Tensor(t.buffer, offset: dirty.lowerBound, count: dirty.count),
                 count: dirty.count)
            t.buffer.written = nil
        }
        return kept.copy.slice(t.offset, span)
    }

    /// Bytes of the 16-bit operand scratch the largest of these matmuls needs (0 at fp32/tf32).
    public static func halfOperandBytes(_ precision: Precision, matmuls: [Gemm]) -> Int {
        guard let half = precision.halfType else { return 0 }
        return half.size * ((matmuls.map(\.spanA).max() ?? 0) + (matmuls.map(\.spanB).max() ?? 0))
    }

    // MARK: int8 (int8_linear.cu)

    public var int8Kernels: String? { "dp4a" }
    public var int8Layout: Int8Layout { .wordRows }

    public func runInt8Linear(_ y: Tensor, _ x: Tensor, weight: Int8Weight, bias: Tensor?, rows: Int, inputStride: Int) {
        let (outFeatures, inFeatures) = (weight.outFeatures, weight.inFeatures)
        let (tilesN, tilesM) = ((outFeatures + 15) / 16, (rows + 15) / 16)
        if weight.kind == .weightOnly {
            launch(K.int8WeightLinear, grid: tilesN, gridY: tilesM, block: 16, blockY: 16, .tensor(y), .tensor(x), .int32(inputStride),
                   .tensor(weight.packed), .tensor(weight.scales), .tensor(bias), .int32(rows), .int32(outFeatures), .int32(inFeatures))
            return
        }
        let q = scratch("int8.rows", rows * ((inFeatures + 3) / 4), .i32), rowScales = scratch("int8.rowScales", rows)
        launch(K.int8QuantizeRows, grid: rows, block: 128, .tensor(q), .tensor(rowScales), .tensor(x), .int32(rows), .int32(inFeatures),
               .int32(inputStride))
        launch(K.int8Linear, grid: tilesN, gridY: tilesM, block: 16, blockY: 16, .tensor(y), .tensor(q), .tensor(rowScales),
               .tensor(weight.packed), .tensor(weight.scales), .tensor(bias), .int32(rows), .int32(outFeatures), .int32(inFeatures))
    }

    public func runBiasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        let (slices, sliceRows) = columnSlices(rows: rows), partials = scratch("columns.partials", slices * channels)
        launch(K.biasBackwardPartials, grid: (channels + 31) / 32, gridY: slices, block: 32, blockY: 8,
               .tensor(partials), .tensor(dOut), .int64(rows), .int32(channels), .int32(sliceRows))
        launch(K.columnSumFinish, grid: (channels + 255) / 256, block: 256,
               .tensor(dBias), .tensor(nil), .tensor(partials), .int32(slices), .int32(channels), .int32(channels))
    }

    /// Column reductions over N rows (parameter gradients) run in slices of 64 rows (more beyond
    /// 4 M rows: a grid holds 65,535 slices), one block per 32 columns of a slice, then a pass
    /// adding the slices in order: the whole GPU works on them, and the result depends on N only.
    func columnSlices(rows: Int) -> (slices: Int, sliceRows: Int) {
        let sliceRows = max(64, (rows + 65534) / 65535)
        return (max(1, (rows + sliceRows - 1) / sliceRows), sliceRows)
    }

    // MARK: LoRA — fused kernels (lora.cu) for ranks ≤ 128; the row reductions (dA, dB) are matmuls

    /// Ranks the fused LoRA kernels take (lora.cu's MAX_R); larger ones are composed of matmuls.
    static let fusedLoRARank = 128

    public func runLoRAForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        guard s.rank <= Self.fusedLoRARank else { return composedLoRAForward(y, xa: xa, x, a: a, b: b, s) }
        // One pass: xa = drop(x)·Aᵀ, y += scale·xa·Bᵀ.
        launch(K.loraForward, warps: s.rows, .tensor(y), .tensor(xa), .tensor(x), .tensor(a), .tensor(b),
               .int64(s.rows), .int32(s.inFeatures), .int32(s.outFeatures), .int32(s.rank), .float(s.scale), .float(s.dropout),
               .uint64(s.seed))
    }

    public func runLoRABackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                                _ s: LoRAShape) {
        guard s.rank <= Self.fusedLoRARank else { return composedLoRABackward(dx: dx, dA: dA, dB: dB, dY: dY, x, xa: xa, a: a, b: b, s) }
        let N = s.rows, In = s.inFeatures, Out = s.outFeatures, R = s.rank
        // dB[Out,R] += scale·dYᵀ·xa ; dxa[N,R] = scale·dY·B and dx += drop'(dxa·A) row by row (no [N,In]
        // scratch) ; dA[R,In] += dxaᵀ·drop(x)
        matmul(dB, dY, xa, bias: nil, Gemm(m: Out, n: R, k: N, transA: true, alpha: s.scale, beta: 1))
        let dxa = scratch("lora.dxa", N * R)
        launch(K.loraBackwardRows, warps: N, .tensor(dx), .tensor(dxa), .tensor(dY), .tensor(a), .tensor(b),
               .int64(N), .int32(In), .int32(Out), .int32(R), .float(s.scale), .float(s.dropout), .uint64(s.seed))
        matmul(dA, dxa, droppedLoRAInput(x, s), bias: nil, Gemm(m: R, n: In, k: N, transA: true, beta: 1))
    }

    // MARK: losses

    public func runCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                                gradScale: Float) {
        let partial = scratch("loss.partial", rows), count = scratch("loss.count", 1, .i32)
        launch(K.countValidLabels, grid: 1, block: 256, .tensor(count), .tensor(labels), .int64(rows), .int32(classes))
        launch(K.crossEntropyRows, warps: rows, .tensor(partial), .tensor(dLogits), .tensor(logits), .tensor(labels),
               .tensor(count), .int64(rows), .int32(classes), .float(gradScale))
        launch(K.meanFinish, grid: 1, block: 256, .tensor(loss), .tensor(partial), .int64(rows), .tensor(count),
               .float(0))
    }

    public func runSoftCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                                    temperature: Float, gradScale: Float) {
        let partial = scratch("loss.partial", rows)
        launch(K.softCrossEntropyRows, warps: rows, .tensor(partial), .tensor(dLogits), .tensor(logits),
               .tensor(teacher), .int64(rows), .int32(classes), .float(temperature), .float(gradScale))
        finishMean(loss, partial, rows, denominator: Float(rows))
    }

    public func runMSE(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        let partials = scratch("loss.blocks", Self.sumBlocks * 2)   // doubles
        let norm: Float = count > 0 ? 2 * gradScale / Float(count) : 0
        launch(K.msePartial, grid: Self.sumBlocks, block: 256, .tensor(partials), .tensor(dA), .tensor(a), .tensor(b),
               .int64(count), .float(norm))
        launch(K.meanFinishDouble, grid: 1, block: 256, .tensor(loss), .tensor(partials), .int32(Self.sumBlocks),
               .float(Float(count)))
    }

    public func runCosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        let partial = scratch("loss.partial", rows)
        let norm: Float = rows > 0 ? gradScale / Float(rows) : 0
        launch(K.cosineRows, warps: rows, .tensor(partial), .tensor(dA), .tensor(a), .tensor(b), .int64(rows),
               .int32(channels), .float(norm))
        finishMean(loss, partial, rows, denominator: Float(rows))
    }

    func finishMean(_ loss: Tensor, _ partial: Tensor, _ count: Int, denominator: Float) {
        launch(K.meanFinish, grid: 1, block: 256, .tensor(loss), .tensor(partial), .int64(count), .tensor(nil),
               .float(denominator))
    }

    // MARK: optimizer

    public func runAdamW(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        // Coefficients in double, rounded once (as the CPU kernel and torch).
        let c1 = 1 / (1 - pow(h.beta1, Double(step))), c2 = 1 / (1 - pow(h.beta2, Double(step)))
        launch(K.adamwStep, elements: count, .tensor(params), .tensor(grads), .tensor(m), .tensor(v), .int64(count),
               .float(Float(h.learningRate)), .float(Float(h.beta1)), .float(Float(1 - h.beta1)), .float(Float(h.beta2)),
               .float(Float(1 - h.beta2)), .float(Float(h.eps)), .float(Float(1 - h.learningRate * h.weightDecay)),
               .float(Float(c1)), .float(Float(c2)))
    }

    public func runSumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) {
        let partials = scratch("sum.blocks", Self.sumBlocks * 2)   // doubles
        launch(K.sumSquaresPartial, grid: Self.sumBlocks, block: 256, .tensor(partials), .tensor(x), .int64(count))
        launch(K.sumFinish, grid: 1, block: 256, .tensor(out), .tensor(partials), .int32(Self.sumBlocks))
    }

    public func runScale(_ x: Tensor, count: Int, by factor: Float) {
        launch(K.scaleF32, elements: count, .tensor(x), .int64(count), .float(factor))
    }

    public func runAxpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) {
        launch(K.axpyF32, elements: count, .tensor(y), .tensor(x), .int64(count), .float(alpha))
    }

    public func runCast(_ dst: Tensor, _ src: Tensor, count: Int) {
        let kernel: CUDAKernel
        switch (src.dtype, dst.dtype) {
        case (.f32, .bf16): kernel = K.castF32ToBf16
        case (.bf16, .f32): kernel = K.castBf16ToF32
        case (.f32, .f16): kernel = K.castF32ToF16
        case (.f16, .f32): kernel = K.castF16ToF32
        default:   // equal types (Ops.cast allows nothing else)
            runCopy(dst.slice(0, count), src.slice(0, count))
            return
        }
        launch(kernel, elements: count, .tensor(dst), .tensor(src), .int64(count))
    }
}
