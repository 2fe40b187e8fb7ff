// Every activation BERT's forward saves for its backward, and the backward's scratch, allocated
// once for a maximum (batch, length): a step allocates nothing. Smaller batches use prefixes.
// An inference arena (a teacher, evaluation) shares one set of per-layer buffers between the
// layers and has no backward scratch: it keeps only the hidden states (and the queries and keys
// of the layers asked for, from which the fused attention-score loss recomputes the scores),
// which is all distillation losses read.
import Backend

public final class BertActivations {
    public struct Layer {
        public internal(set) var q, k, v, context, lse, residual1, attended, mean1, rstd1, preGelu, gelu, residual2, mean2, rstd2: Tensor
    }

    public let maxBatch, maxLength: Int
    /// Forward only: no backward is possible.
    public let inference: Bool
    /// Inference arenas: the layers whose queries and keys survive the forward.
    let keptQueryKey: Set<Int>
    /// Training arenas: one GELU output buffer shared by the layers, recomputed in backward from
    /// the pre-activation (saves B·T·intermediate floats per layer but one).
    public let recomputeGelu: Bool
    public private(set) var batch = 0, length = 0
    var trainingSeed: UInt64?   // set by a training forward: backward replays its dropout
    /// Multiplies losses that are means over the batch's real tokens (DistilBERT's cosine): for a
    /// data-parallel rank, its part of the whole batch's tokens over its part of the examples
    /// (1 otherwise).
    public var tokenLossScale: Float = 1
    // Inputs
    public let ids, positions, types, mask, labels: Tensor
    // Forward
    let embedded, embMean, embRstd: Tensor
    let hidden: [Tensor]          // hidden[0] = embeddings output, hidden[l + 1] = layer l output
    let layers: [Layer]
    let poolerPre, pooled, pooledDropped, logits: Tensor
    /// MPNet: the relative position bias [NH,T,T], its gradient, and the bucket one-hot matrix
    /// [buckets, T·T] (rebuilt when the length changes).
    let positionBias, dPositionBias, bucketOneHot: Tensor?
    var oneHotLength = 0
    /// MPNet numbers positions from padding_idx + 1 and gives padding padding_idx; BERT from 0.
    let paddingPosition: Int32?
    /// Training: the loaded batch's plan of the embedding gradients (made on the host at load),
    /// in `segmentPlan`, and the embedding lookup it is for (tokens 0 here).
    public private(set) var embeddingSegments: EmbeddingSegments?
    let segmentPlan: Tensor
    let embedding: EmbeddingShape
    // Backward scratch
    let dHidden, dResidual, dAttended, dDropped, dContext, dq, dk, dv, dFF, dPooled, dPoolerPre, dLogits: Tensor
    /// One float: the loss of the last backward, and scratch for scalar reductions.
    public let loss: Tensor

    public convenience init(config c: BertConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, backend: Backend,
                            inference: Bool = false, keepQueryKey: Set<Int> = [], recomputeGelu: Bool = false) throws {
        try self.init(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference, keepQueryKey: keepQueryKey,
                      recomputeGelu: recomputeGelu) { n, dtype in try backend.zeros(n, dtype) }
    }

    /// Bytes an arena of these sizes allocates (LoRA inputs, allocated at first use, not included):
    /// the initialiser run with an allocator that only counts.
    public static func bytes(config c: BertConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int,
                             inference: Bool = false, keepQueryKey: Set<Int> = [], recomputeGelu: Bool = false) -> Int {
        var total = 0
        _ = try? BertActivations(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference, keepQueryKey: keepQueryKey,
                                 recomputeGelu: recomputeGelu) { n, dtype in
            total += max(n, 1) * dtype.size
            return Tensor(DeviceBuffer(address: 0, count: n, dtype: dtype) { _ in })
        }
        return total
    }

    init(config c: BertConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, inference: Bool, keepQueryKey: Set<Int>,
         recomputeGelu: Bool, allocate: (Int, DType) throws -> Tensor) throws {
        maxBatch = B
        maxLength = T
        self.inference = inference
        keptQueryKey = keepQueryKey
        self.recomputeGelu = recomputeGelu && !inference
        let (C, FF, BT) = (c.hiddenSize, c.intermediateSize, inference ? 0 : B * T)
        let (Bt, BTt) = (B, B * T)   // sizes of what every arena holds (BT: backward scratch)
        func f(_ n: Int) throws -> Tensor { try allocate(n, .f32) }
        func i(_ n: Int) throws -> Tensor { try allocate(n, .i32) }
        ids = try i(BTt); positions = try i(BTt); types = try i(BTt); mask = try i(BTt); labels = try i(Bt)
        embedded = try f(BTt * C); embMean = try f(BTt); embRstd = try f(BTt)
        hidden = try (0...c.layers).map { _ in try f(BTt * C) }
        func layer(gelu: Tensor? = nil) throws -> Layer {
            Layer(q: try f(BTt * C), k: try f(BTt * C), v: try f(BTt * C), context: try f(BTt * C), lse: try f(Bt * c.heads * T),
                  residual1: try f(BTt * C), attended: try f(BTt * C), mean1: try f(BTt), rstd1: try f(BTt),
                  preGelu: try f(BTt * FF), gelu: try gelu ?? f(BTt * FF), residual2: try f(BTt * C), mean2: try f(BTt), rstd2: try f(BTt))
        }
        precondition(keepQueryKey.allSatisfy { (0..<c.layers).contains($0) }, "keepQueryKey: no such layer")
        let first = try layer(), recompute = self.recomputeGelu
        layers = try (0..<c.layers).map { l in
            if inference {   // one set of buffers; the layers asked for get their own q and k
                guard keepQueryKey.contains(l) else { return first }
                var own = first
                (own.q, own.k) = (try f(BTt * C), try f(BTt * C))
                return own
            }
            return l == 0 ? first : try layer(gelu: recompute ? first.gelu : nil)
        }
        if c.relativeBuckets > 0 {
            positionBias = try f(c.heads * T * T)
            dPositionBias = inference ? nil : try f(c.heads * T * T)
            bucketOneHot = try f(c.relativeBuckets * T * T)
        } else {
            (positionBias, dPositionBias, bucketOneHot) = (nil, nil, nil)
        }
        paddingPosition = c.family == .mpnet ? Int32(c.padTokenId) : nil
        segmentPlan = try i(inference ? 0 : EmbeddingSegments.capacity(tokens: BTt))
        embedding = c.embeddingShape(tokens: 0)
        poolerPre = try f(Bt * C); pooled = try f(Bt * C); pooledDropped = try f(Bt * C); logits = try f(Bt * classes)
        dHidden = try f(BT * C); dResidual = try f(BT * C); dAttended = try f(BT * C); dDropped = try f(BT * C); dContext = try f(BT * C)
        dq = try f(BT * C); dk = try f(BT * C); dv = try f(BT * C); dFF = try f(BT * FF)
        dPooled = try f(BT > 0 ? B * C : 0); dPoolerPre = try f(BT > 0 ? B * C : 0); dLogits = try f(Bt * classes); loss = try f(1)
    }

    private let loraInputs = LoRAInputs()
    func loraInput(_ branch: LoRABranch?, rows: Int, backend: Backend) -> Tensor? {
        loraInputs.input(branch, rows: rows, maxRows: maxBatch * maxLength, backend: backend)
    }

    /// Puts a padded batch (row-major [B,T] ids, token types and mask; labels [B] or empty) in place.
    /// `forBackward` (default: in a training arena) also makes the embedding gradients' plan.
    public func load(ids idValues: [Int32], types typeValues: [Int32], mask maskValues: [Int32], labels labelValues: [Int32],
                     batch B: Int, length T: Int, backend: Backend, forBackward: Bool? = nil) {
        precondition(B <= maxBatch && T <= maxLength && idValues.count == B * T && typeValues.count == B * T && maskValues.count == B * T)
        batch = B
        length = T
        let positions = (0..<(B * T)).map { i -> Int32 in
            guard let pad = paddingPosition else { return Int32(i % T) }
            return maskValues[i] != 0 ? Int32(i % T) + pad + 1 : pad   // right padding: cumsum(mask) = t + 1
        }
        idValues.withUnsafeBytes { backend.upload(ids.slice(0, B * T), $0) }
        typeValues.withUnsafeBytes { backend.upload(types.slice(0, B * T), $0) }
        maskValues.withUnsafeBytes { backend.upload(mask.slice(0, B * T), $0) }
        positions.withUnsafeBytes { backend.upload(self.positions.slice(0, B * T), $0) }
        embeddingSegments = nil
        if forBackward ?? !inference {
            precondition(!inference, "an inference arena has no room for backward")
            embeddingSegments = EmbeddingSegments(ids: idValues, positions: positions, types: typeValues, embedding.tokens(B * T),
                                                  into: segmentPlan, backend: backend)
        }
        if !labelValues.isEmpty {
            precondition(labelValues.count == B)
            labelValues.withUnsafeBytes { backend.upload(labels.slice(0, B), $0) }
        }
    }
}
