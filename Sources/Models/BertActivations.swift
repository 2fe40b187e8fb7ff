// Every activation BERT's forward saves for its backward, and the backward's scratch, allocated
// once for a maximum (batch, length): a step allocates nothing. Smaller batches use prefixes.
import Backend

public final class BertActivations {
    public struct Layer {
        public let q, k, v, context, lse, residual1, attended, mean1, rstd1, preGelu, gelu, residual2, mean2, rstd2: Tensor
    }

    public let maxBatch, maxLength: Int
    public private(set) var batch = 0, length = 0
    var trainingSeed: UInt64?   // set by a training forward: backward replays its dropout
    // Inputs
    public let ids, positions, types, mask, labels: Tensor
    // Forward
    let embedded, embMean, embRstd: Tensor
    let hidden: [Tensor]          // hidden[0] = embeddings output, hidden[l + 1] = layer l output
    let layers: [Layer]
    let poolerPre, pooled, pooledDropped, logits: Tensor
    // Backward scratch
    let dHidden, dResidual, dAttended, dDropped, dContext, dq, dk, dv, dFF, dPooled, dPoolerPre, dLogits: Tensor
    /// One float: the loss of the last backward, and scratch for scalar reductions.
    public let loss: Tensor

    public init(config c: BertConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, backend: Backend) throws {
        maxBatch = B
        maxLength = T
        let (C, FF, BT) = (c.hiddenSize, c.intermediateSize, B * T)
        func f(_ n: Int) throws -> Tensor { try backend.zeros(n) }
        func i(_ n: Int) throws -> Tensor { try backend.zeros(n, .i32) }
        ids = try i(BT); positions = try i(BT); types = try i(BT); mask = try i(BT); labels = try i(B)
        embedded = try f(BT * C); embMean = try f(BT); embRstd = try f(BT)
        hidden = try (0...c.layers).map { _ in try f(BT * C) }
        layers = try (0..<c.layers).map { _ in
            Layer(q: try f(BT * C), k: try f(BT * C), v: try f(BT * C), context: try f(BT * C), lse: try f(B * c.heads * T),
                  residual1: try f(BT * C), attended: try f(BT * C), mean1: try f(BT), rstd1: try f(BT),
                  preGelu: try f(BT * FF), gelu: try f(BT * FF), residual2: try f(BT * C), mean2: try f(BT), rstd2: try f(BT))
        }
        poolerPre = try f(B * C); pooled = try f(B * C); pooledDropped = try f(B * C); logits = try f(B * classes)
        dHidden = try f(BT * C); dResidual = try f(BT * C); dAttended = try f(BT * C); dDropped = try f(BT * C); dContext = try f(BT * C)
        dq = try f(BT * C); dk = try f(BT * C); dv = try f(BT * C); dFF = try f(BT * FF)
        dPooled = try f(B * C); dPoolerPre = try f(B * C); dLogits = try f(B * classes); loss = try f(1)
    }

    /// The saved x·Aᵀ [rows, rank] of an adapter, allocated at its first use.
    private var loraInputs: [String: Tensor] = [:]
    func loraInput(_ layer: Int, _ t: LoRATarget, rows: Int, rank: Int, backend: Backend) -> Tensor {
        let key = "\(layer).\(t.rawValue)"
        if loraInputs[key] == nil || loraInputs[key]!.count < maxBatch * maxLength * rank {
            loraInputs[key] = try! backend.zeros(maxBatch * maxLength * rank)
        }
        return loraInputs[key]!.slice(0, rows * rank)
    }

    /// Puts a padded batch (row-major [B,T] ids, token types and mask; labels [B] or empty) in place.
    public func load(ids idValues: [Int32], types typeValues: [Int32], mask maskValues: [Int32], labels labelValues: [Int32],
                     batch B: Int, length T: Int, backend: Backend) {
        precondition(B <= maxBatch && T <= maxLength && idValues.count == B * T && typeValues.count == B * T && maskValues.count == B * T)
        batch = B
        length = T
        let positions = (0..<(B * T)).map { Int32($0 % T) }
        idValues.withUnsafeBytes { backend.upload(ids.slice(0, B * T), $0) }
        typeValues.withUnsafeBytes { backend.upload(types.slice(0, B * T), $0) }
        maskValues.withUnsafeBytes { backend.upload(mask.slice(0, B * T), $0) }
        positions.withUnsafeBytes { backend.upload(self.positions.slice(0, B * T), $0) }
        if !labelValues.isEmpty {
            precondition(labelValues.count == B)
            labelValues.withUnsafeBytes { backend.upload(labels.slice(0, B), $0) }
        }
    }
}
