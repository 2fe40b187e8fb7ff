// What a recurrent student's forward saves for its backward, and the backward's scratch,
// allocated once for a maximum (batch, length): a step allocates nothing; smaller batches use
// prefixes. Time-major throughout: token (t, b) is row t·B + b.
import Backend

/// One direction's saved tensors: every step's input pre-activations [T,B,G·H], what the step
/// kernel saves [T,B,4H] (LSTM, GRU), and the states in T+1 slots of B·H (RecurrentLayer).
/// The backward writes the gates' gradients over `xGates`, dead by then (no backward step reads
/// it: RecurrentLayer.gateGradients). An LSTM keeps one [T,B,4H] buffer for all three: each step
/// writes its activated gates over the pre-activations it has read (`saved` is `xGates`), and each
/// backward step the gates' gradients over the gates it has read. A GRU saves r, z, n and
/// W_hn·h + b_hn apart ([T,B,4H] beside its [T,B,3H]); its second gradient set, through W_hh, is scratch.
public struct RecurrentDirectionActivations {
    let xGates: Tensor
    let saved: Tensor?
    let states: Tensor
    let cells: Tensor?     // LSTM
}

/// One direction's scratch, shared by every layer (each direction has its own, so the two can
/// run at once: Backend.forEachLane): one step's W_hh part [B,G·H] (forward), a GRU's gates'
/// gradients through W_hh for all steps [T,B,G·H] and ping-pong state gradients (backward), W_hh
/// as the backend packs it (forward and backward; empty where it packs nothing), and the gates'
/// column sums [G·H] that are both biases' gradient where one set of gate gradients feeds both
/// (LSTM, RNN).
final class RecurrentScratch {
    let hGates: Tensor
    let dHGates: Tensor?
    let dh: [Tensor], dc: [Tensor]?
    let packedWeight: Tensor
    let biasSum: Tensor
    init(hGates: Tensor, dHGates: Tensor?, dh: [Tensor], dc: [Tensor]?, packedWeight: Tensor, biasSum: Tensor) {
        self.hGates = hGates; self.dHGates = dHGates; self.dh = dh; self.dc = dc
        self.packedWeight = packedWeight; self.biasSum = biasSum
    }
}

public final class RecurrentLayerActivations {
    /// [T,B,D·H]: the layer's outputs, 0 at padded steps.
    public let output: Tensor
    let directions: [RecurrentDirectionActivations]
    let scratch: [RecurrentScratch]   // per direction
    init(output: Tensor, directions: [RecurrentDirectionActivations], scratch: [RecurrentScratch]) {
        self.output = output; self.directions = directions; self.scratch = scratch
    }

    /// The final state of direction `d` after the last forward ([B,H], torch's h_n row): the
    /// forward direction's last slot, the reverse direction's first.
    public func finalState(_ d: Int, batch B: Int, length T: Int, hidden H: Int, cell: Bool = false) -> Tensor {
        let s = directions[d], buffer = cell ? s.cells! : s.states
        return RecurrentLayer.slot(buffer, d == 0 ? T : 0, B * H)
    }
}

public final class RecurrentActivations {
    public let maxBatch, maxLength: Int
    public let inference: Bool
    public private(set) var batch = 0, length = 0
    // Inputs (time-major ids; positions: zeros, the embedding op's unused table)
    public let ids, positions, lengths, labels, teacher: Tensor
    public private(set) var hostLengths: [Int32] = []
    // Forward
    public let embedded: Tensor
    public let layers: [RecurrentLayerActivations]
    public let pooled, argmax, headHidden, headActivated, logits: Tensor
    // Backward
    let dEmbedded, dPooled, dHeadActivated, dHeadHidden, dLogits: Tensor
    /// A second logits gradient, for a loss's other term (summed into dLogits).
    public let dLogitsExtra: Tensor
    let dOutputs: [Tensor]
    let segmentPlan: Tensor
    public private(set) var embeddingSegments: EmbeddingSegments?
    let embedding: EmbeddingShape
    /// Scalars: the loss terms of the last backward (0 total, 1… terms).
    public let loss: Tensor

    public convenience init(config c: RecurrentConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, backend: Backend,
                            inference: Bool = false) throws {
        try self.init(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference,
                      packedWeight: Self.packedWeightCount(c, backend: backend)) { n, dtype in try backend.zeros(n, dtype) }
    }

    /// Floats W_hh takes as `backend` packs it, forward ([G·H, H]) or backward ([H, G·H]).
    public static func packedWeightCount(_ c: RecurrentConfig, backend: BackendOps) -> Int {
        let H = c.hiddenSize, GH = c.cell.gates * H
        return max(backend.packedWeightCount(n: GH, k: H), backend.packedWeightCount(n: H, k: GH))
    }

    /// Bytes an arena of these sizes allocates on `backend`: the initialiser with an allocator
    /// that only counts.
    public static func bytes(config c: RecurrentConfig, labels classes: Int, maxBatch B: Int, maxLength T: Int, inference: Bool = false,
                             backend: BackendOps) -> Int {
        var total = 0
        _ = try? RecurrentActivations(config: c, labels: classes, maxBatch: B, maxLength: T, inference: inference,
                                      packedWeight: packedWeightCount(c, backend: backend)) { n, dtype in
            total += max(n, 1) * dtype.size
            return Tensor(DeviceBuffer(address: 0, count: n, dtype: dtype) { _ in })
        }
        return total
    }

    init(config c: RecurrentConfig, labels L: Int, maxBatch B: Int, maxLength T: Int, inference: Bool, packedWeight: Int,
         allocate: (Int, DType) throws -> Tensor) throws {
        maxBatch = B; maxLength = T; self.inference = inference
        let H = c.hiddenSize, G = c.cell.gates, DH = c.outputSize, E = c.embeddingSize, M = c.headHiddenSize, BT = B * T
        ids = try allocate(BT, .i32); positions = try allocate(BT, .i32); lengths = try allocate(B, .i32)
        labels = try allocate(B, .i32); teacher = try allocate(B * L, .f32)
        embedded = try allocate(BT * E, .f32)
        let training = !inference
        let scratch = try (0..<c.directions).map { _ in
            RecurrentScratch(hGates: try allocate(B * G * H, .f32),
                             dHGates: c.cell == .gru && training ? try allocate(BT * G * H, .f32) : nil,
                             dh: try (0..<2).map { _ in try allocate(training ? B * H : 0, .f32) },
                             dc: c.cell == .lstm ? try (0..<2).map { _ in try allocate(training ? B * H : 0, .f32) } : nil,
                             packedWeight: try allocate(packedWeight, .f32),
                             biasSum: try allocate(training && c.cell != .gru ? G * H : 0, .f32))
        }
        layers = try (0..<c.layers).map { _ in
            RecurrentLayerActivations(output: try allocate(BT * DH, .f32), directions: try (0..<c.directions).map { _ in
                let xGates = try allocate(BT * G * H, .f32), saved: Tensor?
                switch c.cell {
                case .lstm: saved = xGates   // its steps write their gates over what they have read
                case .gru: saved = try allocate(BT * c.cell.savedWidth * H, .f32)
                case .rnn: saved = nil
                }
                return RecurrentDirectionActivations(xGates: xGates, saved: saved, states: try allocate((T + 1) * B * H, .f32),
                                                     cells: c.cell == .lstm ? try allocate((T + 1) * B * H, .f32) : nil)
            }, scratch: scratch)
        }
        pooled = try allocate(B * DH, .f32); argmax = try allocate(c.pooling == .max ? B * DH : 0, .i32)
        headHidden = try allocate(B * M, .f32); headActivated = try allocate(B * M, .f32); logits = try allocate(B * L, .f32)
        let backward = training ? 1 : 0
        dEmbedded = try allocate(backward * BT * E, .f32); dPooled = try allocate(backward * B * DH, .f32)
        dHeadActivated = try allocate(backward * B * M, .f32); dHeadHidden = try allocate(backward * B * M, .f32)
        dLogits = try allocate(backward * B * L, .f32); dLogitsExtra = try allocate(backward * B * L, .f32)
        dOutputs = try (0..<2).map { _ in try allocate(backward * BT * DH, .f32) }
        embedding = EmbeddingShape(tokens: 0, channels: E, vocabulary: c.vocabSize, positions: 1, wordPadding: c.padTokenId, positionPadding: 0)
        segmentPlan = try allocate(backward * EmbeddingSegments.capacity(tokens: BT), .i32)
        loss = try allocate(8, .f32)
    }

    /// Loads a batch of token id sequences (each at most maxLength, at least one token), right-padded
    /// with `pad` and laid out time-major; labels and teacher logits (B·L) when given.
    public func load(_ sequences: [[Int32]], pad: Int32, labels labelValues: [Int32] = [], teacher teacherValues: [Float] = [],
                     backend: Backend, forBackward: Bool? = nil) {
        let B = sequences.count, T = max(1, sequences.map(\.count).max() ?? 1)
        precondition(B <= maxBatch && T <= maxLength, "a batch of \(B)×\(T) does not fit an arena of \(maxBatch)×\(maxLength)")
        batch = B; length = T
        var idValues = [Int32](repeating: pad, count: B * T)
        for (b, sequence) in sequences.enumerated() { for (t, id) in sequence.enumerated() { idValues[t * B + b] = id } }
        hostLengths = sequences.map { Int32($0.count) }
        let zeros = [Int32](repeating: 0, count: B * T)
        idValues.withUnsafeBytes { backend.upload(ids.slice(0, B * T), $0) }
        hostLengths.withUnsafeBytes { backend.upload(lengths.slice(0, B), $0) }
        if !labelValues.isEmpty { precondition(labelValues.count == B); labelValues.withUnsafeBytes { backend.upload(labels.slice(0, B), $0) } }
        if !teacherValues.isEmpty {
            precondition(teacherValues.count % B == 0)
            teacherValues.withUnsafeBytes { backend.upload(teacher.slice(0, teacherValues.count), $0) }
        }
        embeddingSegments = nil
        if forBackward ?? !inference {
            precondition(!inference, "an inference arena has no room for backward")
            embeddingSegments = EmbeddingSegments(ids: idValues, positions: zeros, types: nil, embedding.tokens(B * T), into: segmentPlan,
                                                  backend: backend)
        }
    }
}
