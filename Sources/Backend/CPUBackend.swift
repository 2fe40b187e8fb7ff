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
    /// Rows up to which a matmul against a weight [N, K] goes to rt_sgemm_rows (docs/BACKEND.md):
    /// 32 on AVX2 (2-core Zen 3: 1.7–2.8× the split path at one row, 1.1–1.3× at 16–32, even at
    /// 48); elsewhere only the memory-bound few rows, where OpenBLAS's AVX-512 kernels were not raced.
    static var weightRowsLimit: Int { rt_cpu_level() == 3 ? 32 : 8 }
    /// Rows up to which a product against a packed weight runs the packed kernel (runMatmulPacked).
    static let packedRowsLimit = 512
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
            throw OutOfMemory(message: "out of memory: could not allocate \(megabytes(bytes)) on the cpu (\(megabytes(counter.values.inUse)) held by Retort, "
                              + "\(megabytes(Self.availableMemory())) available); use a smaller \(Setting.batchSize) or \(Setting.maxLength)")
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

    /// What this process can still allocate: MemAvailable from /proc/meminfo (Linux), else the
    /// physical memory — less where a memory cgroup's limit (a container's, systemd's MemoryMax,
    /// Slurm's; v2 memory.max or v1 memory.limit_in_bytes, on this process's group and the groups
    /// above it) leaves less: the limit less what the group uses that the kernel cannot reclaim
    /// (its usage less its inactive file cache, as `docker stats` counts; past the limit the kernel
    /// kills a process with no message), or where `ulimit -v` does (its limit less the process's
    /// VmSize: an allocation past it fails).
    static func availableMemory() -> Int {
        func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }
        func number(_ path: String, line prefix: String? = nil) -> Int? {
            guard let text = text(path) else { return nil }
            guard let prefix else { return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) }
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) else { return nil }
            return Int(line.dropFirst(prefix.count).split(whereSeparator: \.isWhitespace).first ?? "")   // "VmSize:\t 3892 kB"
        }
        var available = number("/proc/meminfo", line: "MemAvailable:").map { $0 * 1024 } ?? Int(ProcessInfo.processInfo.physicalMemory)
        // The groups: this process's (from /proc/self/cgroup: "0::/path" for v2, "N:memory:/path" for v1)
        // and each above it, under the mount; in a container's own namespace that is the mount's root.
        let lines = text("/proc/self/cgroup")?.split(separator: "\n").map { $0.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init) } ?? []
        for (mount, version) in [("/sys/fs/cgroup", 2), ("/sys/fs/cgroup/memory", 1)] {
            let own = lines.first { $0.count == 3 && (version == 2 ? $0[0] == "0" && $0[1].isEmpty : $0[1].split(separator: ",").contains("memory")) }?[2] ?? "/"
            var path = own, folders: [String] = []
            while true {
                folders.append(mount + (path == "/" ? "" : path))
                if path == "/" || path.isEmpty { break }
                path = (path as NSString).deletingLastPathComponent
            }
            let (limitFile, usageFile, cacheKey) = version == 2 ? ("memory.max", "memory.current", "inactive_file ")
                                                                 : ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file ")
            for folder in Set(folders) {
                // "max" (v2) or a page-rounded 2⁶³ (v1): no limit.
                guard let limit = number(folder + "/" + limitFile), limit < 1 << 60, let usage = number(folder + "/" + usageFile) else { continue }
                let cache = number(folder + "/memory.stat", line: cacheKey) ?? 0
                available = min(available, max(0, limit - max(0, usage - cache)))
            }
        }
        var rlimit = rlimit()   // RLIM_INFINITY is all ones: past 2⁶², no limit
        #if canImport(Glibc)
        let addressSpace = __rlimit_resource_t(RLIMIT_AS.rawValue)
        #else
        let addressSpace = RLIMIT_AS
        #endif
        if getrlimit(addressSpace, &rlimit) == 0, rlimit.rlim_cur < rlim_t(1) << 62, let kB = number("/proc/self/status", line: "VmSize:") {
            available = min(available, max(0, Int(clamping: rlimit.rlim_cur) - kB * 1024))
        }
        return available
    }

    public func runUpload(_ dst: Tensor, _ src: UnsafeRawBufferPointer) {
        if let base = src.baseAddress { raw(dst).copyMemory(from: base, byteCount: src.count) }
    }

    public func runDownload(_ dst: UnsafeMutableRawBufferPointer, _ src: Tensor) {
        if let base = dst.baseAddress { base.copyMemory(from: raw(src), byteCount: dst.count) }
    }

    public func runCopy(_ dst: Tensor, _ src: Tensor) {
        raw(dst).copyMemory(from: raw(src), byteCount: src.bytes)
    }

    public func runFill(_ dst: Tensor, _ value: Float) {
        if dst.dtype == .f32 { rt_fill(f(dst), Int64(dst.count), value); return }
        memset(raw(dst), 0, dst.bytes)
    }

    public func synchronize() {}

    /// The lanes at once, each on its share of the pool's threads, OpenBLAS single-threaded
    /// (its threads cannot be split; runMatmul splits a team's products itself). On 2 cores a
    /// bidirectional LSTM's directions then run a step each without waiting for each other.
    public func forEachLane(_ count: Int, _ body: (Int) -> Void) {
        guard count > 1, threads > 1, rt_lane_threads() == 0 else {
            for lane in 0..<count { body(lane) }
            return
        }
        rt_blas_set_threads(1)
        defer { rt_blas_set_threads(blasThreads) }
        withoutActuallyEscaping(body) { body in
            var lanes = body
            withUnsafeMutablePointer(to: &lanes) { pointer in
                rt_parallel_teams(Int32(count), { ctx, lane, _, _ in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(lane))
                }, pointer)
            }
        }
    }

    public let scratchBuffers = ScratchBuffers()

    /// Nothing beside the run's tensors: OpenBLAS packs into its own small buffers.
    public func workspaceBytes(matmuls: [Gemm]) -> Int { 0 }

    // MARK: dense

    public func runMatmul(_ c: Tensor, _ a: Tensor, _ b: Tensor, bias: Tensor?, _ g: Gemm) {
        // A handful of rows against a weight stored [N, K] (decoding, a recurrent step): Retort's
        // kernel reads the weight in place, where a BLAS would repack all of it for those rows. It
        // splits the work by four output channels, so narrow outputs stay with the BLAS.
        if !g.transA && g.transB && g.batch == 1 && g.m <= Self.weightRowsLimit && g.n >= 16 {
            rt_sgemm_rows(f(c), Int32(g.ldc), f(a), Int32(g.lda), f(b), Int32(g.ldb), Int32(g.m), Int32(g.n), Int32(g.k),
                          g.alpha, g.beta)
            if let bias { rt_bias_add(f(c), f(bias), Int64(g.m), Int32(g.n)) }
            return
        }
        // Few rows (inference at small batch): split the columns over Retort's pool with OpenBLAS
        // single-threaded; otherwise OpenBLAS threads the call itself. In a lane (forEachLane)
        // OpenBLAS is single-threaded throughout, and a team of more than one thread splits.
        let lane = Int(rt_lane_threads())
        let split = lane > 0 ? lane > 1 : g.m <= Self.smallRows && !g.transA && g.batch == 1 && g.n >= 64 && threads > 1
        let toggle = split && lane == 0
        if toggle { rt_blas_set_threads(1) }
        defer { if toggle { rt_blas_set_threads(blasThreads) } }
        for i in 0..<g.batch {
            let cp = f(c) + i * g.strideC
            if split {
                rt_split_gemm(rt_sgemm_single, g.transA ? 1 : 0, g.transB ? 1 : 0, Int32(g.m), Int32(g.n), Int32(g.k), g.alpha,
                              f(a) + i * g.strideA, Int32(g.lda), f(b) + i * g.strideB, Int32(g.ldb), g.beta, cp, Int32(g.ldc))
            } else {
                rt_sgemm(g.transA ? 1 : 0, g.transB ? 1 : 0, Int32(g.m), Int32(g.n), Int32(g.k), g.alpha,
                         f(a) + i * g.strideA, Int32(g.lda), f(b) + i * g.strideB, Int32(g.ldb), g.beta, cp, Int32(g.ldc))
            }
            if let bias {
                rt_bias_add(cp, f(bias), Int64(g.m), Int32(g.n))
            }
        }
    }

    public func runBiasBackward(_ dBias: Tensor, dOut: Tensor, rows: Int, channels: Int) {
        rt_bias_backward(f(dBias), f(dOut), Int64(rows), Int32(channels))
    }

    // MARK: layers

    public func runEmbeddingForward(_ out: Tensor, ids: Tensor, positions: Tensor, types: Tensor?,
                                    word: Tensor, position: Tensor, type: Tensor?, _ s: EmbeddingShape) {
        rt_embedding_forward(f(out), i(ids), i(positions), i(types), f(word), f(position), f(type),
                             Int64(s.tokens), Int32(s.channels), Int32(s.vocabulary), Int32(s.positions), Int32(s.tokenTypes))
    }

    public func runEmbeddingBackward(dWord: Tensor?, dPosition: Tensor?, dType: Tensor?, dOut: Tensor,
                                     ids: Tensor, positions: Tensor, types: Tensor?, segments: EmbeddingSegments, _ s: EmbeddingShape) {
        // The CPU kernel walks the rows for its own column blocks; the segments are for devices.
        rt_embedding_backward(f(dWord), f(dPosition), f(dType), f(dOut), i(ids), i(positions), i(types),
                              Int64(s.tokens), Int32(s.channels), Int32(s.vocabulary), Int32(s.positions), Int32(s.tokenTypes),
                              Int32(s.wordPadding), Int32(s.positionPadding))
    }

    public func runLayerNormForward(_ out: Tensor, mean: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, bias: Tensor,
                                    rows: Int, channels: Int, eps: Float) {
        rt_layernorm_forward(f(out), f(mean), f(rstd), f(x), f(weight), f(bias), Int64(rows), Int32(channels), eps)
    }

    public func runLayerNormBackward(dx: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor,
                                     mean: Tensor, rstd: Tensor, rows: Int, channels: Int) {
        rt_layernorm_backward(f(dx), f(dWeight), f(dBias), f(dOut), f(x), f(weight), f(mean), f(rstd),
                              Int64(rows), Int32(channels))
    }

    public func runRMSNormForward(_ out: Tensor, rstd: Tensor, _ x: Tensor, weight: Tensor, rows: Int, channels: Int, eps: Float) {
        rt_rmsnorm_forward(f(out), f(rstd), f(x), f(weight), Int64(rows), Int32(channels), eps)
    }

    public func runRMSNormBackward(dx: Tensor, dWeight: Tensor?, dOut: Tensor, _ x: Tensor, weight: Tensor, rstd: Tensor,
                                   rows: Int, channels: Int) {
        rt_rmsnorm_backward(f(dx), f(dWeight), f(dOut), f(x), f(weight), f(rstd), Int64(rows), Int32(channels))
    }

    public func runDecodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape) {
        rt_decode_attention(f(out), f(q), f(keyCache), f(valueCache), i(lengths), Int32(s.batch), Int32(s.heads), Int32(s.keyValueHeads),
                            Int32(s.headSize), Int32(s.capacity), s.scale)
    }

    public func runRoPE(_ out: Tensor, _ x: Tensor, positions: Tensor, inverseFrequencies: Tensor, _ s: RoPEShape, backward: Bool) {
        rt_rope(f(out), f(x), i(positions), f(inverseFrequencies), Int64(s.tokens), Int32(s.heads), Int32(s.headSize), backward ? -1 : 1)
    }

    public func runSwiGLUForward(_ out: Tensor, gate: Tensor, up: Tensor, count: Int) {
        rt_swiglu_forward(f(out), f(gate), f(up), Int64(count))
    }

    public func runSwiGLUBackward(dGate: Tensor, dUp: Tensor, dOut: Tensor, gate: Tensor, up: Tensor, count: Int) {
        rt_swiglu_backward(f(dGate), f(dUp), f(dOut), f(gate), f(up), Int64(count))
    }

    public func runGeluForward(_ out: Tensor, _ x: Tensor, count: Int, tanh: Bool) {
        rt_gelu_forward(f(out), f(x), Int64(count), tanh ? 1 : 0)
    }

    public func runGeluBackward(dx: Tensor, dOut: Tensor, _ x: Tensor, count: Int, tanh: Bool) {
        rt_gelu_backward(f(dx), f(dOut), f(x), Int64(count), tanh ? 1 : 0)
    }

    public func runTanhForward(_ out: Tensor, _ x: Tensor, count: Int) {
        rt_tanh_forward(f(out), f(x), Int64(count))
    }

    public func runTanhBackward(dx: Tensor, dOut: Tensor, out: Tensor, count: Int) {
        rt_tanh_backward(f(dx), f(dOut), f(out), Int64(count))
    }

    public func runRecurrentForward(_ h: Tensor, c: Tensor?, y: Tensor, saved: Tensor?, xGates: Tensor, hGates: Tensor, hPrev: Tensor,
                                    cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let (t, B, H, ldy) = (Int64(s.step), Int32(s.batch), Int32(s.hidden), Int64(s.outputStride))
        switch s.cell {
        case .lstm: rt_lstm_cell_forward(f(h), f(c), f(y), f(saved), f(xGates), f(hGates), f(hPrev), f(cPrev), i(lengths), t, B, H, ldy)
        case .gru: rt_gru_cell_forward(f(h), f(y), f(saved), f(xGates), f(hGates), f(hPrev), i(lengths), t, B, H, ldy)
        case .rnn: rt_rnn_cell_forward(f(h), f(y), f(xGates), f(hGates), f(hPrev), i(lengths), t, B, H, ldy)
        }
    }

    public func runRecurrentBackward(dXGates: Tensor, dHGates: Tensor?, dhPrev: Tensor, dcPrev: Tensor?, dY: Tensor, dh: Tensor, dc: Tensor?,
                                     saved: Tensor?, h: Tensor, c: Tensor?, hPrev: Tensor, cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let (t, B, H, ldy) = (Int64(s.step), Int32(s.batch), Int32(s.hidden), Int64(s.outputStride))
        switch s.cell {
        case .lstm:
            rt_lstm_cell_backward(f(dXGates), f(dhPrev), f(dcPrev), f(dY), f(dh), f(dc), f(saved), f(c), f(cPrev), i(lengths), t, B, H, ldy)
        case .gru: rt_gru_cell_backward(f(dXGates), f(dHGates), f(dhPrev), f(dY), f(dh), f(saved), f(hPrev), i(lengths), t, B, H, ldy)
        case .rnn: rt_rnn_cell_backward(f(dXGates), f(dhPrev), f(dY), f(dh), f(h), i(lengths), t, B, H, ldy)
        }
    }

    // Packed weights: panels of 16 output channels (cpu/packed_gemm.c). On the 2-core Zen 3 VM, a
    // bidirectional LSTM's steps at B=32, H=300: h·W_hhᵀ 121 GFLOP/s against rt_sgemm_rows' 71,
    // dG·W_hh 129 against OpenBLAS's 73–92 (packing costs about two steps' time).
    public func packedWeightCount(n: Int, k: Int) -> Int { Int(rt_packed_weight_count(Int32(n), Int32(k))) }

    public func runPackWeight(_ packed: Tensor, _ weight: Tensor, n: Int, k: Int, transB: Bool) {
        rt_pack_weight(f(packed), f(weight), Int32(transB ? k : n), Int32(n), Int32(k), transB ? 0 : 1)
    }

    public func runMatmulPacked(_ c: Tensor, _ a: Tensor, _ w: PackedWeight, bias: Tensor?, rows: Int, lda: Int, beta: Float) {
        // Past 512 rows OpenBLAS takes them, repacking W as it goes: with its rows in L2-sized
        // blocks the packed kernel kept up on SmolLM2's layers up to 2,048 rows (1.04–1.20×), but
        // not on wide weights such as an LM head's 49,152 channels (0.7–1.06× at 256 rows).
        guard rows <= Self.packedRowsLimit, let packed = w.packed else {
            runMatmul(c, a, w.weight, bias: bias, Gemm(m: rows, n: w.n, k: w.k, transB: w.transB, beta: beta, lda: lda))
            return
        }
        rt_sgemm_packed(f(c), Int32(w.n), f(a), Int32(lda), f(packed), f(bias), Int32(rows), Int32(w.n), Int32(w.k), beta)
    }

    public func runSequencePoolForward(_ out: Tensor, argmax: Tensor?, _ y: Tensor, lengths: Tensor, _ s: PoolShape) {
        rt_sequence_pool_forward(f(out), i(argmax), f(y), i(lengths), Int32(s.length), Int32(s.batch), Int32(s.channels), s.mode.code,
                                 Int32(s.split))
    }

    public func runSequencePoolBackward(dY: Tensor, dOut: Tensor, argmax: Tensor?, lengths: Tensor, _ s: PoolShape) {
        rt_sequence_pool_backward(f(dY), f(dOut), i(argmax), i(lengths), Int32(s.length), Int32(s.batch), Int32(s.channels), s.mode.code,
                                  Int32(s.split))
    }

    public func runDropout(_ out: Tensor, _ x: Tensor, count: Int, p: Float, seed: UInt64) {
        rt_dropout(f(out), f(x), Int64(count), p, seed, 0)
    }

    // MARK: attention

    public func runAttentionForward(_ out: Tensor, lse: Tensor, scores: Tensor?, q: Tensor, k: Tensor, v: Tensor,
                                    mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        rt_attention_forward(f(out), f(lse), f(scores), f(q), f(k), f(v), i(mask), f(bias),
                             Int32(s.batch), Int32(s.length), Int32(s.heads), Int32(s.keyValueHeads), Int32(s.headSize),
                             s.causal ? 1 : 0, s.scale, s.dropout, s.seed)
    }

    public func runAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dBias: Tensor?, dOut: Tensor, dScores: ScoreGradient?,
                                     out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor,
                                     mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
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
                                  Int32(s.heads), Int32(s.keyValueHeads), Int32(s.headSize), s.causal ? 1 : 0, s.scale,
                                  s.dropout, s.seed)
        }
    }

    public func runAttentionScoreLoss(_ loss: Tensor, q: Tensor, k: Tensor, mask: Tensor?, bias: Tensor?, target: ScoreTarget,
                                      _ s: AttentionShape) {
        var t = scoreTarget(target, weight: 0)
        rt_attention_score_loss(f(loss), f(q), f(k), i(mask), f(bias), &t, Int32(s.batch), Int32(s.length), Int32(s.heads),
                                Int32(s.headSize), s.scale)
    }

    private func scoreTarget(_ t: ScoreTarget, weight: Float) -> rt_score_target {
        rt_score_target(q: f(t.q), k: f(t.k), bias: f(t.bias), HS: Int32(t.headSize), scale: t.scale, weight: weight)
    }

    public func runMaskedSoftmaxForward(_ probs: Tensor, lse: Tensor?, scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        rt_masked_softmax_forward(f(probs), f(lse), f(scores), i(mask), f(bias), Int32(s.batch), Int32(s.heads), Int32(s.length),
                                  s.causal ? 1 : 0)
    }

    public func runMaskedScores(_ scores: Tensor, mask: Tensor?, bias: Tensor?, _ s: AttentionShape) {
        rt_masked_scores(f(scores), i(mask), f(bias), Int32(s.batch), Int32(s.heads), Int32(s.length), s.causal ? 1 : 0)
    }

    public func runMaskedSoftmaxBackward(dScores: Tensor, dProbs: Tensor, probs: Tensor, _ s: AttentionShape) {
        rt_masked_softmax_backward(f(dScores), f(dProbs), f(probs), Int64(s.rows), Int32(s.length))
    }


    // MARK: LoRA

    public func runLoRAForward(_ y: Tensor, xa: Tensor, _ x: Tensor, a: Tensor, b: Tensor, _ s: LoRAShape) {
        rt_lora_forward(f(y), f(xa), f(x), f(a), f(b), Int64(s.rows), Int32(s.inFeatures), Int32(s.outFeatures),
                        Int32(s.rank), s.scale, s.dropout, s.seed)
    }

    public func runLoRABackward(dx: Tensor, dA: Tensor, dB: Tensor, dY: Tensor, _ x: Tensor, xa: Tensor, a: Tensor, b: Tensor,
                                _ s: LoRAShape) {
        rt_lora_backward(f(dx), f(dA), f(dB), f(dY), f(x), f(xa), f(a), f(b), Int64(s.rows), Int32(s.inFeatures),
                         Int32(s.outFeatures), Int32(s.rank), s.scale, s.dropout, s.seed)
    }


    // MARK: losses

    public func runCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, labels: Tensor, rows: Int, classes: Int,
                                gradScale: Float) {
        rt_cross_entropy(f(loss), f(dLogits), f(logits), i(labels), Int64(rows), Int32(classes), gradScale)
    }

    public func runSoftCrossEntropy(_ loss: Tensor, dLogits: Tensor?, logits: Tensor, teacher: Tensor, rows: Int, classes: Int,
                                    temperature: Float, gradScale: Float) {
        rt_soft_cross_entropy(f(loss), f(dLogits), f(logits), f(teacher), Int64(rows), Int32(classes), temperature, gradScale)
    }

    public func runMSE(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, count: Int, gradScale: Float) {
        rt_mse(f(loss), f(dA), f(a), f(b), Int64(count), gradScale)
    }

    public func runCosine(_ loss: Tensor, dA: Tensor?, _ a: Tensor, _ b: Tensor, rows: Int, channels: Int, gradScale: Float) {
        rt_cosine(f(loss), f(dA), f(a), f(b), Int64(rows), Int32(channels), gradScale)
    }

    // MARK: optimizer

    public func runAdamW(_ params: Tensor, grads: Tensor, m: Tensor, v: Tensor, count: Int, _ h: AdamW, step: Int) {
        rt_adamw(f(params), f(grads), f(m), f(v), Int64(count), h.learningRate, h.beta1, h.beta2, h.eps,
                 h.weightDecay, Int64(step))
    }

    public func runSumOfSquares(_ out: Tensor, _ x: Tensor, count: Int) {
        rt_sum_squares(f(out), f(x), Int64(count))
    }

    public func runScale(_ x: Tensor, count: Int, by factor: Float) {
        rt_scale(f(x), Int64(count), factor)
    }

    public func runAxpy(_ y: Tensor, _ x: Tensor, count: Int, alpha: Float) {
        rt_axpy(f(y), f(x), Int64(count), alpha)
    }

    public func runCast(_ dst: Tensor, _ src: Tensor, count: Int) {
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

    // MARK: int8

    public var int8Kernels: String? { String(cString: rt_int8_path()) }

    /// rt_int8_weight_linear makes the dequantized weight's panels from the int8 rows as it goes,
    /// where OpenBLAS would repack the fp32 weight on every call; without the packed products' row
    /// blocks it kept up with OpenBLAS up to 256 rows (one thread, SmolLM2's layers: 1.01× and 0.96×
    /// at 256, 0.83× and 0.91× at 512; docs/BACKEND.md, "Weight-only int8 past a few rows").
    public var weightOnlyInt8Rows: Int { 256 }

    public func runInt8Linear(_ y: Tensor, _ x: Tensor, weight: Int8Weight, bias: Tensor?, rows: Int, inputStride: Int) {
        if weight.kind == .weightOnly {
            rt_int8_weight_linear(f(y), Int32(weight.outFeatures), f(x), Int32(inputStride), Int32(rows), Int32(weight.inFeatures),
                                  raw(weight.packed).assumingMemoryBound(to: Int8.self), f(weight.scales), f(bias), Int32(weight.outFeatures))
            return
        }
        rt_int8_linear(f(y), Int32(weight.outFeatures), f(x), Int32(inputStride), Int32(rows), Int32(weight.inFeatures),
                       raw(weight.packed).assumingMemoryBound(to: Int8.self), f(weight.scales), i(weight.sums), f(bias),
                       Int32(weight.outFeatures))
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
