// The CUDA backend: cuBLASLt for every matmul, Retort's CUDA C kernels (Sources/Kernels/cuda,
// compiled by NVRTC) for everything else, one stream on the primary context, a caching
// allocator. Ops arrive with their operands validated (Ops.swift); each queues its work through
// the typed kernel table (CUDAKernelTable.swift); results are read back by download (which waits
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
    private let gemm: CUDAMatmul
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
    private func columnSlices(rows: Int) -> (slices: Int, sliceRows: Int) {
        let sliceRows = max(64, (rows + 65534) / 65535)
        return (max(1, (rows + sliceRows - 1) / sliceRows), sliceRows)
    }

    // MARK: layers

    public func runEmbeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                                    word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape) {
        launch(K.embeddingForward, elements: s.tokens * s.channels,
               .tensor(out), .tensor(ids), .tensor(positions), .tensor(types), .tensor(word), .tensor(position), .tensor(type),
               .int64(s.tokens), .int32(s.channels), .int32(s.vocabulary), .int32(s.positions), .int32(s.tokenTypes))
    }

    public func runEmbeddingBackward(dWord: Tensor?, dPosition: Tensor?, dType: Tensor?, dOut: Tensor,
                                     ids: Tensor, positions: Tensor, types: Tensor?, segments: EmbeddingSegments, _ s: EmbeddingShape) {
        // Two stages over the host's plan (EmbeddingSegments); ids, positions and types are in it.
        let g = segments, plan = g.tensor.slice(0, g.count), partials = scratch("embedding.partials", max(1, g.slots * s.channels))
        let columns = (s.channels + 127) / 128
        launch(K.embeddingBackwardPieces, grid: columns, gridY: min(g.pieces, 65535), block: 128,
               .tensor(dWord), .tensor(dPosition), .tensor(dType), .tensor(partials), .tensor(dOut), .tensor(plan),
               .int32(g.rows), .int32(g.pieces), .int32(g.segments), .int32(g.multiPieceSegments), .int32(s.channels))
        launch(K.embeddingBackwardSegments, grid: columns, gridY: min(g.multiPieceSegments, 65535), block: 128,
               .tensor(dWord), .tensor(dPosition), .tensor(dType), .tensor(partials), .tensor(plan),
               .int32(g.rows), .int32(g.pieces), .int32(g.segments), .int32(g.multiPieceSegments), .int32(s.channels))
    }

    public func runLayerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                                    rows: Int, channels: Int, eps: Float) {
        launch(K.layernormForward, warps: rows, .tensor(out), .tensor(mean), .tensor(rstd), .tensor(x),
               .tensor(weight), .tensor(bias), .int32(rows), .int32(channels), .float(eps))
    }

    public func runLayerNormBackward(dx: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor,
                                     mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        if dWeight != nil || dBias != nil {   // frozen: neither
            let (slices, sliceRows) = columnSlices(rows: rows), partials = scratch("columns.partials", slices * 2 * channels)
            launch(K.layernormBackwardPartials, grid: (channels + 31) / 32, gridY: slices, block: 32, blockY: 8,
                   .tensor(partials), .tensor(dOut), .tensor(x), .tensor(mean), .tensor(rstd), .int32(rows), .int32(channels),
                   .int32(sliceRows))
            launch(K.columnSumFinish, grid: (2 * channels + 255) / 256, block: 256, .tensor(dWeight), .tensor(dBias),
                   .tensor(partials), .int32(slices), .int32(channels), .int32(2 * channels))
        }
        launch(K.layernormBackwardInput, warps: rows, .tensor(dx), .tensor(dOut), .tensor(x),
               .tensor(weight), .tensor(mean), .tensor(rstd), .int32(rows), .int32(channels))
    }

    public func runRMSNormForward(_ out: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, rows: Int, channels: Int, eps: Float) {
        launch(K.rmsnormForward, warps: rows, .tensor(out), .tensor(rstd), .tensor(x), .tensor(weight), .int32(rows), .int32(channels),
               .float(eps))
    }

    public func runRMSNormBackward(dx: Tensor, dWeight: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, rstd: Tensor,
                                   rows: Int, channels: Int) {
        if let dWeight {
            let (slices, sliceRows) = columnSlices(rows: rows), partials = scratch("columns.partials", slices * channels)
            launch(K.rmsnormBackwardPartials, grid: (channels + 31) / 32, gridY: slices, block: 32, blockY: 8,
                   .tensor(partials), .tensor(dOut), .tensor(x), .tensor(rstd), .int32(rows), .int32(channels), .int32(sliceRows))
            launch(K.columnSumFinish, grid: (channels + 255) / 256, block: 256, .tensor(dWeight), .tensor(nil),
                   .tensor(partials), .int32(slices), .int32(channels), .int32(channels))
        }
        launch(K.rmsnormBackwardInput, warps: rows, .tensor(dx), .tensor(dOut), .tensor(x), .tensor(weight), .tensor(rstd),
               .int32(rows), .int32(channels))
    }

    public func runDecodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape) {
        launch(K.decodeAttention, warps: s.batch * s.heads, .tensor(out), .tensor(q), .tensor(keyCache), .tensor(valueCache),
               .tensor(lengths), .int32(s.batch), .int32(s.heads), .int32(s.keyValueHeads), .int32(s.headSize), .int32(s.capacity),
               .float(s.scale))
    }

    public func runRoPE(_ out: Tensor, _ x: Tensor, positions: Tensor, inverseFrequencies: Tensor, _ s: RoPEShape, backward: Bool) {
        launch(K.rope, elements: s.count / 2, .tensor(out), .tensor(x), .tensor(positions), .tensor(inverseFrequencies),
               .int64(s.tokens), .int32(s.heads), .int32(s.headSize), .float(backward ? -1 : 1))
    }

    public func runSwiGLUForward(_ out: Tensor, gate: Tensor, up: Tensor, count: Int) {
        launch(K.swigluForward, elements: count, .tensor(out), .tensor(gate), .tensor(up), .int64(count))
    }

    public func runSwiGLUBackward(dGate: Tensor, dUp: Tensor, dOut: Tensor, gate: Tensor, up: Tensor, count: Int) {
        launch(K.swigluBackward, elements: count, .tensor(dGate), .tensor(dUp), .tensor(dOut), .tensor(gate), .tensor(up), .int64(count))
    }

    public func runGeluForward(_ out: Tensor, _ x: Tensor, count: Int, tanh: Bool) {
        launch(K.geluForward, elements: count, .tensor(out), .tensor(x), .int64(count), .int32(tanh ? 1 : 0))
    }

    public func runGeluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int, tanh: Bool) {
        launch(K.geluBackward, elements: count, .tensor(dx), .tensor(dOut), .tensor(x), .int64(count), .int32(tanh ? 1 : 0))
    }

    public func runTanhForward(_ out: Tensor, _ x: Tensor, count: Int) {
        launch(K.tanhForward, elements: count, .tensor(out), .tensor(x), .int64(count))
    }

    public func runTanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) {
        launch(K.tanhBackward, elements: count, .tensor(dx), .tensor(dOut), .tensor(out), .int64(count))
    }

    public func runRecurrentForward(_ h: Tensor, c: Tensor?, y: Tensor, saved: Tensor?, xGates: Tensor, hGates: Tensor, hPrev: Tensor,
                                    cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let step: [KernelArg] = [.tensor(lengths), .int64(s.step), .int32(s.batch), .int32(s.hidden), .int64(s.outputStride)]
        switch s.cell {
        case .lstm: launch(K.lstmCellForward, elements: s.state, [.tensor(h), .tensor(c), .tensor(y), .tensor(saved), .tensor(xGates),
                                                                   .tensor(hGates), .tensor(hPrev), .tensor(cPrev)] + step)
        case .gru: launch(K.gruCellForward, elements: s.state, [.tensor(h), .tensor(y), .tensor(saved), .tensor(xGates), .tensor(hGates),
                                                                 .tensor(hPrev)] + step)
        case .rnn: launch(K.rnnCellForward, elements: s.state, [.tensor(h), .tensor(y), .tensor(xGates), .tensor(hGates), .tensor(hPrev)] + step)
        }
    }

    public func runRecurrentBackward(dXGates: Tensor, dHGates: Tensor?, dhPrev: Tensor, dcPrev: Tensor?, dY: Tensor, dh: Tensor, dc: Tensor?,
                                     saved: Tensor?, h: Tensor, c: Tensor?, hPrev: Tensor, cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let step: [KernelArg] = [.tensor(lengths), .int64(s.step), .int32(s.batch), .int32(s.hidden), .int64(s.outputStride)]
        switch s.cell {
        case .lstm: launch(K.lstmCellBackward, elements: s.state, [.tensor(dXGates), .tensor(dhPrev), .tensor(dcPrev), .tensor(dY), .tensor(dh),
                                                                    .tensor(dc), .tensor(saved), .tensor(c), .tensor(cPrev)] + step)
        case .gru: launch(K.gruCellBackward, elements: s.state, [.tensor(dXGates), .tensor(dHGates), .tensor(dhPrev), .tensor(dY), .tensor(dh),
                                                                  .tensor(saved), .tensor(hPrev)] + step)
        case .rnn: launch(K.rnnCellBackward, elements: s.state, [.tensor(dXGates), .tensor(dhPrev), .tensor(dY), .tensor(dh), .tensor(h)] + step)
        }
    }

    public func runSequencePoolForward(_ out: Tensor, argmax: Tensor?, _ y: Tensor, lengths: Tensor, _ s: PoolShape) {
        launch(K.sequencePoolForward, elements: s.batch * s.channels, .tensor(out), .tensor(argmax), .tensor(y), .tensor(lengths),
               .int32(s.length), .int32(s.batch), .int32(s.channels), .int32(Int(s.mode.code)), .int32(s.split))
    }

    public func runSequencePoolBackward(dY: Tensor, dOut: Tensor, argmax: Tensor?, lengths: Tensor, _ s: PoolShape) {
        launch(K.sequencePoolBackward, elements: s.length * s.batch * s.channels, .tensor(dY), .tensor(dOut), .tensor(argmax),
               .tensor(lengths), .int32(s.length), .int32(s.batch), .int32(s.channels), .int32(Int(s.mode.code)), .int32(s.split))
    }

    public func runDropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) {
        launch(K.dropoutF32, elements: count, .tensor(out), .tensor(x), .int64(count), .float(p), .uint64(seed), .uint64(0))
    }

    // MARK: attention

    public func runAttentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                                    mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        checkHeadSize(s.headSize)
        if composesAttention(s) {
            return composedAttentionForward(out, lse: lse, scores: scores, q: q, k: k, v: v, mask: mask, bias: bias, s)
        }
        if scores == nil, let half = tensorCoreAttention(s) {
            launch(K.tensorCoreAttention(.forward, half: half, headSize: s.headSize), grid: tensorCoreBlocks(s), block: 128,
                   .tensor(out), .tensor(lse), .tensor(q), .tensor(k), .tensor(v), .tensor(mask), .tensor(bias), .int32(s.batch),
                   .int32(s.length), .int32(s.heads), .int32(s.keyValueHeads), .int32(s.causal ? 1 : 0), .float(s.scale),
                   .float(s.dropout), .uint64(s.seed))
            return
        }
        launch(K.attentionForward, grid: (s.rows + 3) / 4, block: 128,
               .tensor(out), .tensor(lse), .tensor(scores), .tensor(q), .tensor(k), .tensor(v), .tensor(mask), .tensor(bias),
               .int32(s.batch), .int32(s.length), .int32(s.heads), .int32(s.keyValueHeads), .int32(s.headSize),
               .int32(s.causal ? 1 : 0), .float(s.scale), .float(s.dropout), .uint64(s.seed))
    }

    public func runAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                     out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                                     mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        checkHeadSize(s.headSize)
        if composesAttention(s) {
            return composedAttentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: dOut, dScores: dScores, q: q, k: k, v: v,
                                             mask: mask, bias: bias, s)
        }
        var dense: Tensor?, target = scoreTargetArgs(nil, weight: 0)
        switch dScores {
        case .dense(let t): dense = t
        case .scoreMSE(let t, let gradScale): target = scoreTargetArgs(t, weight: s.scoreMSEWeight(gradScale: gradScale))
        case nil: break
        }
        let D = scratch("attention.D", s.rows)
        if dScores == nil, let half = tensorCoreAttention(s) {
            let shape: [KernelArg] = [.tensor(mask), .tensor(bias), .int32(s.batch), .int32(s.length), .int32(s.heads),
                                      .int32(s.keyValueHeads), .int32(s.causal ? 1 : 0), .float(s.scale), .float(s.dropout),
                                      .uint64(s.seed)]
            launch(K.tensorCoreAttention(.backwardQuery, half: half, headSize: s.headSize), grid: tensorCoreBlocks(s), block: 128,
                   [.tensor(dq), .tensor(dBias), .tensor(D), .tensor(dOut), .tensor(out), .tensor(lse), .tensor(q), .tensor(k),
                    .tensor(v)] + shape)
            launch(K.tensorCoreAttention(.backwardKey, half: half, headSize: s.headSize), grid: tensorCoreBlocks(s, keyValue: true),
                   block: 128,
                   [.tensor(dk), .tensor(dv), .tensor(dOut), .tensor(lse), .tensor(D), .tensor(q), .tensor(k), .tensor(v)] + shape)
            return
        }
        let shape: [KernelArg] = [.tensor(mask), .tensor(bias), .int32(s.batch), .int32(s.length), .int32(s.heads),
                                  .int32(s.keyValueHeads), .int32(s.headSize), .int32(s.causal ? 1 : 0), .float(s.scale),
                                  .float(s.dropout), .uint64(s.seed)]
        launch(K.attentionBackwardQuery, grid: (s.rows + 3) / 4, block: 128,
               [.tensor(dq), .tensor(dBias), .tensor(D), .tensor(dOut), .tensor(dense), .tensor(out), .tensor(lse),
                .tensor(q), .tensor(k), .tensor(v)] + shape + target)
        launch(K.attentionBackwardKey, grid: (s.batch * s.keyValueHeads * s.length + 3) / 4, block: 128,
               [.tensor(dk), .tensor(dv), .tensor(dOut), .tensor(dense), .tensor(lse), .tensor(D), .tensor(q), .tensor(k),
                .tensor(v)] + shape + target)
    }

    public func runAttentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                                      _ s: AttentionShape) {
        checkHeadSize(s.headSize)
        checkHeadSize(target.headSize)
        let partial = scratch("attention.scoreLoss", 2 * s.rows)   // doubles
        launch(K.attentionScoreLossRows, grid: (s.rows + 3) / 4, block: 128,
               [.tensor(partial), .tensor(q), .tensor(k), .tensor(mask), .tensor(bias), .tensor(target.q), .tensor(target.k),
                .tensor(target.bias), .int32(s.batch), .int32(s.length), .int32(s.heads), .int32(s.headSize), .float(s.scale),
                .int32(target.headSize), .float(target.scale)])
        launch(K.meanFinishDouble, grid: 1, block: 256, .tensor(loss), .tensor(partial), .int32(s.rows),
               .float(Float(s.scores)))
    }

    /// tq, tk, tbias, tHS, tscale, tweight: the attention kernels' score-target arguments (all
    /// zero without a target).
    private func scoreTargetArgs(_ t: ScoreTarget?, weight: Float) -> [KernelArg] {
        guard let t else { return [.tensor(nil), .tensor(nil), .tensor(nil), .int32(0), .float(0), .float(0)] }
        checkHeadSize(t.headSize)
        return [.tensor(t.q), .tensor(t.k), .tensor(t.bias), .int32(t.headSize), .float(t.scale), .float(weight)]
    }

    /// attention.cu (a warp per query row, fp32) loses to the composed path — cuBLASLt batched
    /// matmuls around the masked softmax, with T×T scratch — from 128 keys on. Measured on an
    /// H200, fwd+bwd, NH=12: 485 vs 220 GFLOP/s at B=32 T=64 HS=32 (fused wins); 547 vs 1722 at
    /// B=32 T=128 HS=64; 553 vs 12166 at B=8 T=512 (Perf, 2026-11-30). So from T=128 on the composed path
    /// runs, while its scratch (`composedAttentionBytes`) stays within `composedAttentionLimit`;
    /// fp32 and tf32 only: at bf16/fp16 the tensor-core kernels (or attention.cu in fp32, for the
    /// head sizes and GPUs they do not take) stay. Not with grouped-query heads: there the
    /// composition is B·NH small matmuls per product (a LoRA step of SmolLM2-135M, 9 query heads
    /// on 3 key/value heads, B=8 T=128, ran at 7,788 tok/s composed against 16,004 fused).
    func composesAttention(_ s: AttentionShape) -> Bool {
        composedLongAttention && precision.halfType == nil && s.length >= 128 && s.group == 1
            && composedAttentionBytes(s) <= composedAttentionLimit
    }

    /// The composed path's T×T scratch: scores, probabilities, their gradients, the dropped
    /// probabilities (with dropout) and a score-distillation target (TinyBERT's score loss).
    func composedAttentionBytes(_ s: AttentionShape) -> Int { (s.dropout > 0 ? 6 : 5) * s.scores * MemoryLayout<Float>.size }

    /// At most an eighth of the GPU's memory, and 2 GiB, for the composed attention's scratch.
    var composedAttentionLimit: Int { min(2 << 30, gpu.memoryBytes / 8) }

    public func attentionScratchBytes(_ s: AttentionShape) -> Int { composesAttention(s) ? composedAttentionBytes(s) : 0 }

    /// The 16-bit type of the tensor-core kernels (attention_tc.cu) when this precision and shape
    /// take them: bf16/fp16 on sm_80+, head size 32 or 64. Otherwise nil: attention.cu.
    private func tensorCoreAttention(_ s: AttentionShape) -> DType? {
        guard let half = precision.halfType, gpu.arch >= 80, s.headSize == 32 || s.headSize == 64 else { return nil }
        return half
    }

    /// attention_tc.cu's grid: a block per 64 rows of each (batch, head), or (batch, key/value head).
    private func tensorCoreBlocks(_ s: AttentionShape, keyValue: Bool = false) -> Int {
        s.batch * (keyValue ? s.keyValueHeads : s.heads) * ((s.length + 63) / 64)
    }

    /// attention.cu keeps a head's rows in shared memory: MAX_HS = 128.
    private func checkHeadSize(_ headSize: Int) {
        precondition(headSize <= 128, "the CUDA attention kernels support head sizes up to 128")
    }

    public func runMaskedSoftmaxForward(_ probs: Tensor, lse: Tensor?, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        launch(K.maskedSoftmaxForward, warps: s.rows, .tensor(probs), .tensor(lse), .tensor(scores), .tensor(mask), .tensor(bias),
               .int32(s.batch), .int32(s.heads), .int32(s.length), .int32(s.causal ? 1 : 0))
    }

    public func runMaskedScores(_ scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        launch(K.maskedScores, warps: s.rows, .tensor(scores), .tensor(mask), .tensor(bias), .int32(s.batch), .int32(s.heads),
               .int32(s.length), .int32(s.causal ? 1 : 0))
    }

    public func runMaskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        launch(K.maskedSoftmaxBackward, warps: s.rows, .tensor(dScores), .tensor(dProbs), .tensor(probs),
               .int64(s.rows), .int32(s.length))
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

    private func finishMean(_ loss: Tensor, _ partial: Tensor, _ count: Int, denominator: Float) {
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

    // MARK: launching

    typealias K = CUDAKernelTable

    enum KernelArg {
        case tensor(Tensor?), int32(Int), int64(Int), float(Float), uint64(UInt64)

        /// Whether this argument can be passed for `parameter` (a nil tensor: any pointer).
        func fits(_ parameter: CUDAKernel.Parameter) -> Bool {
            switch (self, parameter) {
            case (.tensor(nil), let p): return p.isPointer
            case (.tensor(let t?), .floats), (.tensor(let t?), .doubles): return t.dtype == .f32
            case (.tensor(let t?), .ints): return t.dtype == .i32
            case (.tensor(let t?), .halves): return t.dtype == .bf16 || t.dtype == .f16
            case (.int32, .int32), (.int64, .int64), (.float, .float), (.uint64, .uint64): return true
            default: return false
            }
        }
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
    private func launch(_ kernel: CUDAKernel, elements: Int, _ args: KernelArg...) { launch(kernel, elements: elements, args) }

    private func launch(_ kernel: CUDAKernel, elements: Int, _ args: [KernelArg]) {
        launch(kernel, grid: max(1, min((elements + 255) / 256, 8192)), block: 256, args)
    }

    /// One warp per row: 8 warps per block.
    private func launch(_ kernel: CUDAKernel, warps rows: Int, _ args: KernelArg...) {
        launch(kernel, grid: max(1, (rows + 7) / 8), block: 256, args)
    }

    private func launch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: KernelArg...) {
        launch(kernel, grid: grid, gridY: gridY, block: block, blockY: blockY, args)
    }

    /// Queues `kernel` after checking `args` against its signature: a wrong count, order, width
    /// or tensor dtype is a bug in this file, stopped here with the kernel's name.
    private func launch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: [KernelArg]) {
        do { try tryLaunch(kernel, grid: grid, gridY: gridY, block: block, blockY: blockY, args) } catch { fatalError("retort: \(error)") }
    }

    /// `launch`, throwing what would stop the program (for the start-up check).
    private func tryLaunch(_ kernel: CUDAKernel, grid: Int, gridY: Int = 1, block: Int, blockY: Int = 1, _ args: [KernelArg]) throws {
        precondition(args.count == kernel.parameters.count,
                     "\(kernel): \(args.count) arguments for \(kernel.parameters.count) parameters")
        for (index, (arg, parameter)) in zip(args, kernel.parameters).enumerated() {
            precondition(arg.fits(parameter), "\(kernel): argument \(index) (\(arg)) does not fit parameter \(index) (\(parameter.rawValue))")
        }
        guard grid > 0, gridY > 0 else { return }   // nothing to do (an empty tensor)
        device.makeCurrent()   // before the lookup: loading a module needs the context too
        let fn = try kernels.function(kernel.file, kernel.name)
        var slots = args.map(slot)
        let result = slots.withUnsafeMutableBufferPointer { buffer in
            rt_cuda_launch(fn, UInt32(grid), UInt32(gridY), 1, UInt32(block), UInt32(blockY), 1, 0, device.stream,
                           buffer.baseAddress, Int32(buffer.count))
        }
        func shape() -> String {   // only for a message
            "grid \(grid)" + (gridY > 1 ? "×\(gridY)" : "") + ", block \(block)" + (blockY > 1 ? "×\(blockY)" : "")
        }
        try CUDADevice.check(result, "launching \(kernel) (\(shape()))")
        device.checkpoint("\(kernel) (\(shape()))")
    }

    /// A matmul through the bias epilogue and a kernel, run and read back when the backend is
    /// made: a GPU, driver or library that cannot do Retort's work fails here — where
    /// `--device auto` still falls back to the CPU with the reason — not in the middle of a run.
    private func startupCheck() throws {
        let (m, n, k) = (2, 3, 4)
        let a = (0..<(m * k)).map { Float($0 % 5) - 2 }, b = (0..<(n * k)).map { Float($0 % 3) - 1 }, bias: [Float] = [0.5, -1, 2]
        var expected = [Float](repeating: 0, count: m * n)   // (A·Bᵀ + bias) · 2
        for i in 0..<m { for j in 0..<n { expected[i * n + j] = 2 * ((0..<k).reduce(bias[j]) { $0 + a[i * k + $1] * b[j * k + $1] }) } }
        let da = try allocate(a.count, .f32), db = try allocate(b.count, .f32), dBias = try allocate(n, .f32)
        let dc = try allocate(m * n, .f32)
        for (tensor, values) in [(da, a), (db, b), (dBias, bias)] {
            try values.withUnsafeBytes { try CUDADevice.check(device.driver.cuMemcpyHtoD(ptr(tensor), $0.baseAddress, $0.count), "an upload") }
        }
        let g = Gemm(m: m, n: n, k: k, transB: true)
        var (ha, hb) = (da, db)   // at bf16/fp16 rounded to 16 bits (exact: small integers), as runMatmul does
        if let half = precision.halfType {
            let cast = half == .bf16 ? K.castF32ToBf16 : K.castF32ToF16
            (ha, hb) = (try allocate(a.count, half), try allocate(b.count, half))
            for (dst, src) in [(ha, da), (hb, db)] {
                try tryLaunch(cast, grid: 1, block: 256, [.tensor(dst), .tensor(src), .int64(dst.count)])
            }
        }
        if try !gemm.tryRun(c: ptr(dc), a: ptr(ha), b: ptr(hb), bias: ptr(dBias), g) {
            _ = try gemm.tryRun(c: ptr(dc), a: ptr(ha), b: ptr(hb), bias: nil, g)
            try tryLaunch(K.biasAdd, grid: 1, block: 256, [.tensor(dc), .tensor(dBias), .int64(m), .int32(n)])
        }
        try tryLaunch(K.scaleF32, grid: 1, block: 256, [.tensor(dc), .int64(m * n), .float(2)])
        try CUDADevice.check(device.driver.cuStreamSynchronize(device.stream), "running a test matmul and kernel")
        var got = [Float](repeating: .nan, count: m * n)
        try got.withUnsafeMutableBytes { try CUDADevice.check(device.driver.cuMemcpyDtoH($0.baseAddress, ptr(dc), $0.count), "a download") }
        guard got == expected else {
            throw BackendError("a test matmul and kernel computed \(got), expected \(expected): this GPU, driver or library "
                               + "does not compute what Retort needs")
        }
    }
}
