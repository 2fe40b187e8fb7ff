// The CPU backend: OpenBLAS sgemm for matmuls (loaded at run time with the kernels Retort
// chose from CPUID), our C kernels (Sources/Kernels/cpu) for everything else.
import CBackend
import Foundation
import Kernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public final class CPUBackend: Backend {
    public let kind = DeviceKind.cpu
    public let precision = Precision.fp32
    public let summary: String
    public let blas: BLASInfo
    let threads: Int
    let blasThreads: Int32
    /// Matmuls with at most this many rows are split over Retort's pool (see matmul).
    static let smallRows = 256
    /// Bytes of live allocations, and their peak.
    private let counter = ByteCounter()

    public init(threads: Int? = nil) throws {
        if let threads { rt_set_num_threads(Int32(threads)) }
        blas = BLASInfo.load()
        guard blas.loaded else { throw BackendError("cpu backend unavailable: \(blas.error)") }
        if let threads { rt_blas_set_threads(Int32(threads)) }
        self.threads = Int(rt_num_threads())
        blasThreads = Int32(threads ?? blas.threads)
        summary = Devices.cpuSummary(blas, threads: Int(rt_num_threads()))
    }

    // MARK: memory

    public func allocate(_ count: Int, _ dtype: DType) throws -> Tensor {
        precondition(count >= 0)
        var raw: UnsafeMutableRawPointer?
        let bytes = max(64, (count * dtype.size + 63) / 64 * 64)
        guard posix_memalign(&raw, 64, bytes) == 0, let raw else {
            throw BackendError("out of memory: could not allocate \(bytes) bytes on the cpu")
        }
        counter.add(bytes)
        let buffer = DeviceBuffer(address: UInt(bitPattern: raw), count: count, dtype: dtype) { [counter] address in
            free(UnsafeMutableRawPointer(bitPattern: address))
            counter.add(-bytes)
        }
        return Tensor(buffer)
    }

    public var memoryUse: MemoryUse {
        let (inUse, peak) = counter.values
        return MemoryUse(inUse: inUse, peak: peak, reserved: 0, available: Self.availableMemory())
    }

    public func resetPeakMemory() { counter.resetPeak() }

    /// MemAvailable from /proc/meminfo (Linux), else the physical memory.
    static func availableMemory() -> Int {
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kB = Int(line.split(separator: " ").dropFirst().first ?? "") {
            return kB * 1024
        }
        return Int(ProcessInfo.processInfo.physicalMemory)
    }

    public func upload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) {
        precondition(src.count == dst.bytes, "upload size mismatch")
        if let base = src.baseAddress { raw(dst).copyMemory(from: base, byteCount: src.count) }
    }

    public func download(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) {
        precondition(dst.count == src.bytes, "download size mismatch")
        if let base = dst.baseAddress { base.copyMemory(from: raw(src), byteCount: dst.count) }
    }

    public func copy(_ dst: Tensor, _ src: Tensor) {
        precondition(dst.bytes == src.bytes, "copy size mismatch")
        raw(dst).copyMemory(from: raw(src), byteCount: src.bytes)
    }

    public func fill(_ dst: Tensor, _ value: Float) {
        if dst.dtype == .f32 { rt_fill(f(dst), Int64(dst.count), value); return }
        precondition(value == 0, "fill with a non-zero value needs an f32 tensor")
        memset(raw(dst), 0, dst.bytes)
    }

    public func synchronize() {}

    // MARK: dense

    public func matmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) {
        precondition(a.count >= g.spanA && b.count >= g.spanB && c.count >= g.spanC, "matmul operands too small")
        // Few rows (inference at small batch): split the columns over Retort's pool with OpenBLAS
        // single-threaded; otherwise OpenBLAS threads the call itself.
        let split = g.m <= Self.smallRows && !g.transA && g.batch == 1 && g.n >= 64 && threads > 1
        if split { rt_blas_set_threads(1) }
        defer { if split { rt_blas_set_threads(blasThreads) } }
        for i in 0..<g.batch {
            let cp = f(c) + i * g.strideC
            if split {
                rt_split_gemm(rt_sgemm_single, g.transB ? 1 : 0, Int32(g.m), Int32(g.n), Int32(g.k), g.alpha,
                              f(a), Int32(g.lda), f(b), Int32(g.ldb), g.beta, cp, Int32(g.ldc))
            } else {
                rt_sgemm(g.transA ? 1 : 0, g.transB ? 1 : 0, Int32(g.m), Int32(g.n), Int32(g.k), g.alpha,
                         f(a) + i * g.strideA, Int32(g.lda), f(b) + i * g.strideB, Int32(g.ldb), g.beta, cp, Int32(g.ldc))
            }
            if let bias {
                precondition(bias.count == g.n && g.ldc == g.n, "bias needs n elements and packed C")
                rt_bias_add(cp, f(bias), Int64(g.m), Int32(g.n))
            }
        }
    }

    public func biasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        precondition(dBias.count == channels && dOut.count == rows * channels)
        rt_bias_backward(f(dBias), f(dOut), Int64(rows), Int32(channels))
    }

    // MARK: layers

    public func embeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                                 word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape) {
        precondition(out.count == s.tokens * s.channels && ids.count == s.tokens && positions.count == s.tokens)
        precondition(word.count == s.vocabulary * s.channels && position.count == s.positions * s.channels)
        rt_embedding_forward(f(out), i(ids), i(positions), i(types), f(word), f(position), f(type),
                             Int64(s.tokens), Int32(s.channels), Int32(s.vocabulary), Int32(s.positions), Int32(s.tokenTypes))
    }

    public func embeddingBackward(dWord: Tensor, dPosition: Tensor, dType: Tensor?, dOut: Tensor,
                                  ids: Tensor, positions: Tensor, types: Tensor?, _ s: EmbeddingShape) {
        precondition(dOut.count == s.tokens * s.channels && dWord.count == s.vocabulary * s.channels)
        rt_embedding_backward(f(dWord), f(dPosition), f(dType), f(dOut), i(ids), i(positions), i(types),
                              Int64(s.tokens), Int32(s.channels), Int32(s.vocabulary), Int32(s.positions), Int32(s.tokenTypes),
                              Int32(s.wordPadding), Int32(s.positionPadding))
    }

    public func layerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                                 rows: Int, channels: Int, eps: Float) {
        precondition(out.count == rows * channels && x.count == rows * channels && mean.count == rows && weight.count == channels)
        rt_layernorm_forward(f(out), f(mean), f(rstd), f(x), f(weight), f(bias), Int64(rows), Int32(channels), eps)
    }

    public func layerNormBackward(dx: Tensor, dWeight: Tensor, dBias: Tensor, dOut: Tensor, _ x: Tensor, weight: Tensor,
                                  mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        precondition(dx.count == rows * channels && dOut.count == rows * channels && dWeight.count == channels)
        rt_layernorm_backward(f(dx), f(dWeight), f(dBias), f(dOut), f(x), f(weight), f(mean), f(rstd),
                              Int64(rows), Int32(channels))
    }

    public func geluForward(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(out.count >= count && x.count >= count)
        rt_gelu_forward(f(out), f(x), Int64(count))
    }

    public func geluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int) {
        precondition(dx.count >= count && dOut.count >= count && x.count >= count)
        rt_gelu_backward(f(dx), f(dOut), f(x), Int64(count))
    }

    public func tanhForward(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(out.count >= count && x.count >= count)
        rt_tanh_forward(f(out), f(x), Int64(count))
    }

    public func tanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) {
        precondition(dx.count >= count && dOut.count >= count && out.count >= count)
        rt_tanh_backward(f(dx), f(dOut), f(out), Int64(count))
    }

    public func dropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) {
        precondition(out.count >= count && x.count >= count && p >= 0 && p < 1, "dropout needs p in [0, 1)")
        if p == 0 {
            if out.buffer !== x.buffer || out.offset != x.offset { copy(out.slice(0, count), x.slice(0, count)) }
            return
        }
        rt_dropout(f(out), f(x), Int64(count), p, seed, 0)
    }

    // MARK: attention

    public func attentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                                 mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([out, q, k, v], lse: lse, scores: scores, mask: mask, bias: bias)
        rt_attention_forward(f(out), f(lse), f(scores), f(q), f(k), f(v), i(mask), f(bias),
                             Int32(s.batch), Int32(s.length), Int32(s.heads), Int32(s.headSize), s.scale, s.dropout, s.seed)
    }

    public func attentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                  out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                                  mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        s.check([dq, dk, dv, dOut, out, q, k, v], lse: lse, scores: nil, mask: mask, bias: bias ?? dBias)
        s.check(dScores)
        var dense: Tensor?, target = rt_score_target(), fused = false
        switch dScores {
        case .dense(let t): dense = t
        case .scoreMSE(let t, let gradScale):
            (target, fused) = (scoreTarget(t, weight: s.scoreMSEWeight(gradScale: gradScale)), true)
        case nil: break
        }
        withUnsafePointer(to: &target) { pointer in
            rt_attention_backward(f(dq), f(dk), f(dv), f(dBias), f(dOut), f(dense), fused ? pointer : nil,
                                  f(out), f(lse), f(q), f(k), f(v), i(mask), f(bias), Int32(s.batch), Int32(s.length),
                                  Int32(s.heads), Int32(s.headSize), s.scale, s.dropout, s.seed)
        }
    }

    public func attentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                                   _ s: AttentionShape) {
        s.check([q, k], lse: nil, scores: nil, mask: mask, bias: bias)
        s.check(target)
        var t = scoreTarget(target, weight: 0)
        rt_attention_score_loss(f(loss), f(q), f(k), i(mask), f(bias), &t, Int32(s.batch), Int32(s.length), Int32(s.heads),
                                Int32(s.headSize), s.scale)
    }

    private func scoreTarget(_ t: ScoreTarget, weight: Float) -> rt_score_target {
        rt_score_target(q: f(t.q), k: f(t.k), bias: f(t.bias), HS: Int32(t.headSize), scale: t.scale, weight: weight)
    }

    public func maskedSoftmaxForward(_ probs: Tensor, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        precondition(probs.count == s.scores && scores.count == s.scores)
        rt_masked_softmax_forward(f(probs), f(scores), i(mask), f(bias), Int32(s.batch), Int32(s.heads), Int32(s.length))
    }

    public func maskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        precondition(dScores.count == s.scores && dProbs.count == s.scores && probs.count == s.scores)
        rt_masked_softmax_backward(f(dScores), f(dProbs), f(probs), Int64(s.rows), Int32(s.length))
    }


    // MARK: LoRA

    public func loraForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        s.check(x: x, y: y, xa: xa, a: a, b: b)
        rt_lora_forward(f(y), f(xa), f(x), f(a), f(b), Int64(s.rows), Int32(s.inFeatures), Int32(s.outFeatures),
                        Int32(s.rank), s.scale, s.dropout, s.seed)
    }

    public func loraBackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                             _ s: LoRAShape) {
        s.check(x: dx, y: dY, xa: xa, a: dA, b: dB)
        rt_lora_backward(f(dx), f(dA), f(dB), f(dY), f(x), f(xa), f(a), f(b), Int64(s.rows), Int32(s.inFeatures),
                         Int32(s.outFeatures), Int32(s.rank), s.scale, s.dropout, s.seed)
    }


    // MARK: losses

    public func crossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                             gradScale: Float) {
        precondition(logits.count == rows * classes && labels.count == rows && labels.dtype == .i32)
        rt_cross_entropy(f(loss), f(dLogits), f(logits), i(labels), Int64(rows), Int32(classes), gradScale)
    }

    public func softCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                                 temperature: Float, gradScale: Float) {
        precondition(logits.count == rows * classes && teacher.count == rows * classes && temperature > 0)
        rt_soft_cross_entropy(f(loss), f(dLogits), f(logits), f(teacher), Int64(rows), Int32(classes), temperature, gradScale)
    }

    public func mse(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        precondition(a.count == count && b.count == count)
        rt_mse(f(loss), f(dA), f(a), f(b), Int64(count), gradScale)
    }

    public func cosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        precondition(a.count == rows * channels && b.count == rows * channels)
        rt_cosine(f(loss), f(dA), f(a), f(b), Int64(rows), Int32(channels), gradScale)
    }

    // MARK: optimizer

    public func adamw(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        precondition(params.count >= count && grads.count >= count && m.count >= count && v.count >= count && step >= 1)
        rt_adamw(f(params), f(grads), f(m), f(v), Int64(count), h.learningRate, h.beta1, h.beta2, h.eps,
                 h.weightDecay, Int64(step))
    }

    public func sumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) {
        precondition(x.count >= count && out.count >= 1)
        rt_sum_squares(f(out), f(x), Int64(count))
    }

    public func scale(_ x: Tensor, count: Int, by factor: Float) {
        precondition(x.count >= count)
        rt_scale(f(x), Int64(count), factor)
    }

    public func axpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) {
        precondition(y.count >= count && x.count >= count)
        rt_axpy(f(y), f(x), Int64(count), alpha)
    }

    public func cast(_ dst: Tensor, _ src: Tensor, count: Int) {
        precondition(dst.count >= count && src.count >= count)
        let d = raw(dst), s = raw(src), n = Int64(count)
        switch (src.dtype, dst.dtype) {
        case (.f32, .bf16): rt_cast_f32_to_bf16(d.assumingMemoryBound(to: UInt16.self), f(src), n)
        case (.bf16, .f32): rt_cast_bf16_to_f32(f(dst), s.assumingMemoryBound(to: UInt16.self), n)
        case (.f32, .f16): rt_cast_f32_to_f16(d.assumingMemoryBound(to: UInt16.self), f(src), n)
        case (.f16, .f32): rt_cast_f16_to_f32(f(dst), s.assumingMemoryBound(to: UInt16.self), n)
        case let (a, b) where a == b: d.copyMemory(from: s, byteCount: count * a.size)
        default: preconditionFailure("cast from \(src.dtype) to \(dst.dtype) is not supported")
        }
    }

    // MARK: pointers

    private func raw(_ t: Tensor) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: t.buffer.address)! + t.offset * t.dtype.size
    }

    private func f(_ t: Tensor) -> UnsafeMutablePointer<Float> {
        precondition(t.dtype == .f32, "expected an f32 tensor, got \(t.dtype)")
        return raw(t).assumingMemoryBound(to: Float.self)
    }

    private func f(_ t: Tensor?) -> UnsafeMutablePointer<Float>? { t.map { f($0) } }

    private func i(_ t: Tensor?) -> UnsafeMutablePointer<Int32>? {
        guard let t else { return nil }
        precondition(t.dtype == .i32, "expected an i32 tensor, got \(t.dtype)")
        return raw(t).assumingMemoryBound(to: Int32.self)
    }
}

/// A thread-safe count of bytes in use and its peak.
final class ByteCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var inUse = 0, peak = 0
    func add(_ bytes: Int) {
        lock.lock()
        inUse += bytes
        peak = max(peak, inUse)
        lock.unlock()
    }
    func resetPeak() {
        lock.lock()
        peak = inUse
        lock.unlock()
    }
    var values: (inUse: Int, peak: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (inUse, peak)
    }
}
