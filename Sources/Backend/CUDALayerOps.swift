// The CUDA backend's layer and attention ops (CUDABackend.swift has the class, memory, matmuls,
// int8, LoRA, losses and the optimizer): each queues its kernels from Sources/Kernels/cuda through
// launch (CUDALaunch.swift); the CPU backend is their reference.
import CBackend
import Foundation
import Kernels

extension CUDABackend {
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

    /// Positions a warp of decode_attention.cu covers when the sequences are longer: a step at B=1
    /// then runs B·NH·⌈longest/64⌉ warps (and a merge) rather than B·NH. Split by the longest
    /// length, not the capacity: a 4,096-position cache at 100 tokens runs 2 chunks, not 64.
    static let decodeChunk = 64

    public func runDecodeAttention(_ out: Tensor, q: Tensor, keyCache: Tensor, valueCache: Tensor, lengths: Tensor, _ s: DecodeShape) {
        let chunk = Self.decodeChunk, chunks = (s.longest + chunk - 1) / chunk
        // Room for the capacity's chunks, once: sized by the longest length, the buffer would grow
        // (a new allocation) every 64 tokens of a generation.
        let room = s.batch * s.heads * ((s.capacity + chunk - 1) / chunk) * (2 + s.headSize)
        let partials = chunks > 1 ? scratch("decode.partials", room) : nil
        launch(K.decodeAttention, warps: s.batch * s.heads * chunks, .tensor(out), .tensor(partials), .tensor(q), .tensor(keyCache),
               .tensor(valueCache), .tensor(lengths), .int32(s.batch), .int32(s.heads), .int32(s.keyValueHeads), .int32(s.headSize),
               .int32(s.capacity), .float(s.scale), .int32(chunks > 1 ? chunk : s.longest), .int32(chunks))
        if let partials {
            launch(K.decodeAttentionMerge, warps: s.batch * s.heads, .tensor(out), .tensor(partials), .int32(s.batch), .int32(s.heads),
                   .int32(s.headSize), .int32(chunks))
        }
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
}
