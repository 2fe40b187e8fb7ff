// Every activation a decoder's forward saves for its backward, and the backward's scratch,
// allocated once for a maximum (batch, length): a step allocates nothing. An inference arena
// (evaluation, a prompt's prefill) shares one set of per-layer buffers between the layers and
// has no backward scratch. The language-model head works on chunks of `headRows` rows, so its
// logits never exist for the whole batch: [headRows, V] twice (logits and their gradient)
// instead of [B·T, V].
import Backend

public final class DecoderActivations {
    public struct Layer {
        public internal(set) var norm1, mean1, rstd1, q, k, v, context, lse, residual, norm2, mean2, rstd2, up, gate: Tensor
    }

    public let maxBatch, maxLength: Int
    public let inference: Bool
    /// Rows of the language-model head per chunk.
    public let headRows: Int
    public private(set) var batch = 0, length = 0
    var trainingSeed: UInt64?
    // Inputs: ids, positions, key mask [B·T]; targets [B·T] (language modelling: the next token, −100
    // where none) or labels [B] (classification); each sequence's last real token (host).
    public let ids, positions, mask, targets, labels: Tensor
    public private(set) var lastTokens: [Int] = []
    /// Host copies of the loaded batch: the LM loss's per-chunk target counts, the embedding plan.
    var hostTargets: [Int32] = []
    public private(set) var embeddingSegments: EmbeddingSegments?
    let segmentPlan: Tensor
    let embedding: EmbeddingShape
    // Forward
    let hidden: [Tensor]          // hidden[0] = embeddings, hidden[l + 1] = layer l's output
    let layers: [Layer]
    let activated: Tensor         // the MLP's activation, one buffer (recomputed in backward)
    let final, finalMean, finalRstd: Tensor
    let headLogits, headGradient: Tensor   // [headRows, V]
    let pooled, logits: Tensor    // classification: [B, C] last-token rows, [B, labels]
    // Backward scratch
    let dHidden, dResidual, dNorm, dContext, dq, dk, dv, dActivated, dUp, dGate, dPooled, dLogits: Tensor
    /// loss[0]: the last loss; loss[1]: a chunk's mean (scratch).
    public let loss: Tensor

    public convenience init(config c: DecoderConfig, labels classes: Int = 0, maxBatch B: Int, maxLength T: Int, backend: Backend,
                            inference: Bool = false, headRows: Int = 256) throws {
        try self.init(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference, headRows: headRows) { n, dtype in
            try backend.zeros(n, dtype)
        }
    }

    /// Bytes an arena of these sizes allocates (LoRA inputs not included).
    public static func bytes(config c: DecoderConfig, labels classes: Int = 0, maxBatch B: Int, maxLength T: Int,
                             inference: Bool = false, headRows: Int = 256) -> Int {
        var total = 0
        _ = try? DecoderActivations(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference, headRows: headRows) { n, dtype in
            total += max(n, 1) * dtype.size
            return Tensor(DeviceBuffer(address: 0, count: n, dtype: dtype) { _ in })
        }
        return total
    }

    init(config c: DecoderConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, inference: Bool, headRows: Int,
         allocate: (Int, DType) throws -> Tensor) throws {
        precondition(B > 0 && T > 0 && headRows > 0)
        maxBatch = B
        maxLength = T
        self.inference = inference
        self.headRows = min(headRows, B * T)
        let (C, FF, QC, KC, BT) = (c.hiddenSize, c.intermediateSize, c.queryChannels, c.keyValueChannels, B * T)
        let dBT = inference ? 0 : BT
        func f(_ n: Int) throws -> Tensor { try allocate(n, .f32) }
        func i(_ n: Int) throws -> Tensor { try allocate(n, .i32) }
        ids = try i(BT); positions = try i(BT); mask = try i(BT); targets = try i(BT); labels = try i(B)
        segmentPlan = try i(inference ? 0 : EmbeddingSegments.capacity(tokens: BT))
        embedding = EmbeddingShape(tokens: 0, channels: C, vocabulary: c.vocabSize, positions: c.family == .gpt2 ? c.maxPositions : 0)
        hidden = try (0...c.layers).map { _ in try f(BT * C) }
        func layer() throws -> Layer {
            Layer(norm1: try f(BT * C), mean1: try f(BT), rstd1: try f(BT), q: try f(BT * QC), k: try f(BT * KC), v: try f(BT * KC),
                  context: try f(BT * QC), lse: try f(B * c.heads * T), residual: try f(BT * C), norm2: try f(BT * C),
                  mean2: try f(BT), rstd2: try f(BT), up: try f(BT * FF), gate: try f(c.family == .llama ? BT * FF : 0))
        }
        let first = try layer()
        layers = try (0..<c.layers).map { l in inference || l == 0 ? first : try layer() }
        activated = try f(BT * FF)
        final = try f(BT * C); finalMean = try f(BT); finalRstd = try f(BT)
        let vocabularyRows = classes > 0 ? 0 : self.headRows
        headLogits = try f(vocabularyRows * c.vocabSize)
        headGradient = try f(inference ? 0 : vocabularyRows * c.vocabSize)
        pooled = try f(B * C); logits = try f(B * max(classes, 0))
        dHidden = try f(dBT * C); dResidual = try f(dBT * C); dNorm = try f(dBT * C); dContext = try f(dBT * QC)
        dq = try f(dBT * QC); dk = try f(dBT * KC); dv = try f(dBT * KC)
        dActivated = try f(dBT * FF); dUp = try f(dBT * FF); dGate = try f(c.family == .llama ? dBT * FF : 0)
        dPooled = try f(inference || classes == 0 ? 0 : B * C); dLogits = try f(inference ? 0 : B * max(classes, 0))
        loss = try f(2)
    }

    private let loraInputs = LoRAInputs()
    func loraInput(_ branch: LoRABranch?, rows: Int, backend: Backend) -> Tensor? {
        loraInputs.input(branch, rows: rows, maxRows: maxBatch * maxLength, backend: backend)
    }

    /// Puts a right-padded batch in place: ids and mask [B·T] row-major (mask 0 = padding),
    /// and either `labels` [B] (classification) or nothing — then the language-modelling targets
    /// are the next real token of each position (−100 at the last real token and at padding).
    /// `targets` overrides them (−100: no loss at that position). Positions count from 0.
    public func load(ids idValues: [Int32], mask maskValues: [Int32], labels labelValues: [Int32] = [], targets targetValues: [Int32]? = nil,
                     batch B: Int, length T: Int, backend: Backend, forBackward: Bool? = nil) {
        precondition(B <= maxBatch && T <= maxLength && idValues.count == B * T && maskValues.count == B * T)
        batch = B
        length = T
        let positionValues = (0..<(B * T)).map { Int32($0 % T) }
        lastTokens = (0..<B).map { b in max(0, (0..<T).last { maskValues[b * T + $0] != 0 } ?? 0) }
        hostTargets = targetValues ?? (0..<(B * T)).map { i in
            let (b, t) = (i / T, i % T)
            return t + 1 < T && maskValues[i] != 0 && maskValues[b * T + t + 1] != 0 ? idValues[i + 1] : -100
        }
        precondition(hostTargets.count == B * T)
        idValues.withUnsafeBytes { backend.upload(ids.slice(0, B * T), $0) }
        maskValues.withUnsafeBytes { backend.upload(mask.slice(0, B * T), $0) }
        positionValues.withUnsafeBytes { backend.upload(positions.slice(0, B * T), $0) }
        hostTargets.withUnsafeBytes { backend.upload(targets.slice(0, B * T), $0) }
        if !labelValues.isEmpty {
            precondition(labelValues.count == B)
            labelValues.withUnsafeBytes { backend.upload(labels.slice(0, B), $0) }
        }
        embeddingSegments = nil
        if forBackward ?? !inference {
            precondition(!inference, "an inference arena has no room for backward")
            embeddingSegments = EmbeddingSegments(ids: idValues, positions: positionValues, types: nil, embedding.tokens(B * T),
                                                  into: segmentPlan, backend: backend)
        }
    }
}
