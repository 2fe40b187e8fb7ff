// A recurrent student (RecurrentConfig.swift): embedding → stacked (bi)directional LSTM / GRU /
// RNN layers → pooling over each text's tokens → Linear, tanh, Linear. Parameters in one buffer
// under PyTorch's names (embedding.weight, rnn.weight_ih_l0, rnn.weight_hh_l0_reverse, …,
// head.0.weight, head.2.bias), gradients in another; typed views made once. Forward and backward
// are hand-written like the transformers'; the loss (a distillation objective) is the caller's:
// it writes dLogits, then calls backward.
import Backend
import Foundation

public final class RecurrentModel {
    public let config: RecurrentConfig
    public let labels: Int
    public let backend: Backend
    public let layout: ParameterLayout
    public let weights, grads: Tensor
    public let embedding: Parameter
    public let layers: [RecurrentLayer]
    public let head: Linear, classifier: Linear
    /// The embedding op's position table: one zero row (a recurrent model has no positions).
    let noPositions: Tensor

    /// A model of random weights (PyTorch's initialisation: embedding N(0,1), recurrent and linear
    /// weights and biases U(−1/√fan, 1/√fan)); `inference`: no gradient buffer.
    public init(config c: RecurrentConfig, labels: Int, backend: Backend, seed: UInt64 = 42, inference: Bool = false) throws {
        config = c; self.labels = labels; self.backend = backend
        let layout = Self.layout(c, labels: labels)
        self.layout = layout
        let (weights, grads) = try layout.allocate(on: backend, inference: inference)
        (self.weights, self.grads) = (weights, grads)
        noPositions = try backend.zeros(c.embeddingSize)
        func p(_ name: String) -> Parameter { layout.parameter(name, weights: weights, grads: grads, gradients: inference ? nil : layout) }
        func linear(_ name: String, bias: String, _ inFeatures: Int, _ outFeatures: Int) -> Linear {
            Linear(weight: p(name), bias: p(bias), inFeatures: inFeatures, outFeatures: outFeatures)
        }
        embedding = p("embedding.weight")
        layers = (0..<c.layers).map { l in
            let input = l == 0 ? c.embeddingSize : c.outputSize, G = c.cell.gates * c.hiddenSize
            return RecurrentLayer(cell: c.cell, hiddenSize: c.hiddenSize, inputSize: input, directions: Self.directionSuffixes(c).map { s in
                RecurrentDirection(input: linear("rnn.weight_ih_l\(l)\(s)", bias: "rnn.bias_ih_l\(l)\(s)", input, G),
                                   hidden: linear("rnn.weight_hh_l\(l)\(s)", bias: "rnn.bias_hh_l\(l)\(s)", c.hiddenSize, G),
                                   reverse: !s.isEmpty)
            })
        }
        head = linear("head.0.weight", bias: "head.0.bias", c.outputSize, c.headHiddenSize)
        classifier = linear("head.2.weight", bias: "head.2.bias", c.headHiddenSize, labels)
        initialise(seed: seed)
    }

    /// The parameters of a model of `c` (PyTorch's names, in its order), known before any is
    /// allocated (MemoryPlan).
    public static func layout(_ c: RecurrentConfig, labels: Int) -> ParameterLayout {
        var layout = ParameterLayout()
        layout.add("embedding.weight", [c.vocabSize, c.embeddingSize])
        for l in 0..<c.layers {
            let input = l == 0 ? c.embeddingSize : c.outputSize, G = c.cell.gates * c.hiddenSize
            for suffix in directionSuffixes(c) {
                layout.add("rnn.weight_ih_l\(l)\(suffix)", [G, input])
                layout.add("rnn.weight_hh_l\(l)\(suffix)", [G, c.hiddenSize])
                layout.add("rnn.bias_ih_l\(l)\(suffix)", [G])
                layout.add("rnn.bias_hh_l\(l)\(suffix)", [G])
            }
        }
        layout.add("head.0.weight", [c.headHiddenSize, c.outputSize]); layout.add("head.0.bias", [c.headHiddenSize])
        layout.add("head.2.weight", [labels, c.headHiddenSize]); layout.add("head.2.bias", [labels])
        return layout
    }

    static func directionSuffixes(_ c: RecurrentConfig) -> [String] { c.bidirectional ? ["", "_reverse"] : [""] }

    /// PyTorch's default initialisation, from `seed`; one tensor at a time on the host.
    func initialise(seed: UInt64) {
        var normal = NormalRandom(seed: seed)
        var uniform = SplitMix(seed: seed ^ 0x5EED)
        for e in layout.entries {
            let values: [Float]
            if e.name == "embedding.weight" {
                values = (0..<e.count).map { _ in normal.next() }
            } else {
                // nn.LSTM/GRU/RNN: U(±1/√H) for everything; nn.Linear: U(±1/√in) for weight and bias.
                let fan = e.name.hasPrefix("rnn.") ? config.hiddenSize
                    : e.name.hasPrefix("head.0") ? config.outputSize : config.headHiddenSize
                let bound = 1 / Float(fan).squareRoot()
                values = (0..<e.count).map { _ in Float.random(in: -bound...bound, using: &uniform) }
            }
            values.withUnsafeBytes { backend.upload(w(e.name), $0) }
        }
    }

    public func w(_ name: String) -> Tensor { layout.view(weights, name) }
    public func g(_ name: String) -> Tensor { layout.view(grads, name) }
    public var trainable: [TrainableTensor] { layout.entries.map { layout.parameter($0.name, weights: weights, grads: grads, gradients: layout).trainable } }
    public func zeroGradients() { backend.fill(grads, 0) }

    var embeddingShape: EmbeddingShape {
        EmbeddingShape(tokens: 0, channels: config.embeddingSize, vocabulary: config.vocabSize, positions: 1,
                       wordPadding: config.padTokenId, positionPadding: 0)
    }

    /// The logits [B, labels] of the batch loaded in `a`.
    @discardableResult
    public func forward(_ a: RecurrentActivations) -> Tensor {
        let b = backend, (B, T) = (a.batch, a.length), E = config.embeddingSize, DH = config.outputSize, M = config.headHiddenSize
        b.embeddingForward(a.embedded.slice(0, T * B * E), ids: a.ids.slice(0, T * B), positions: a.positions.slice(0, T * B), types: nil,
                           word: embedding.weight, position: noPositions, type: nil, embeddingShape.tokens(T * B))
        var input = a.embedded.slice(0, T * B * E)
        for (layer, s) in zip(layers, a.layers) {
            layer.forward(b, s, x: input, lengths: a.lengths, batch: B, length: T)
            input = s.output.slice(0, T * B * DH)
        }
        b.sequencePoolForward(a.pooled.slice(0, B * DH), argmax: config.pooling == .max ? a.argmax.slice(0, B * DH) : nil, input,
                              lengths: a.lengths, pooling(B, T))
        head.forward(b, a.headHidden.slice(0, B * M), a.pooled.slice(0, B * DH), rows: B)
        b.tanhForward(a.headActivated.slice(0, B * M), a.headHidden.slice(0, B * M), count: B * M)
        classifier.forward(b, a.logits.slice(0, B * labels), a.headActivated.slice(0, B * M), rows: B)
        return a.logits.slice(0, B * labels)
    }

    /// Logits [N][labels] of token id sequences, up to a.maxBatch at a time, in `a` (forward only);
    /// `progress` hears the sequences done after each batch.
    public func logits(_ sequences: [[Int32]], in a: RecurrentActivations, progress: (Int) -> Void = { _ in }) -> [[Float]] {
        var out: [[Float]] = []
        for start in stride(from: 0, to: sequences.count, by: a.maxBatch) {
            let chunk = Array(sequences[start..<min(start + a.maxBatch, sequences.count)])
            a.load(chunk, pad: Int32(config.padTokenId), backend: backend, forBackward: false)
            let flat = backend.floats(forward(a))
            for i in 0..<chunk.count { out.append(Array(flat[(i * labels)..<((i + 1) * labels)])) }
            progress(out.count)
        }
        return out
    }

    func pooling(_ B: Int, _ T: Int) -> PoolShape {
        PoolShape(length: T, batch: B, channels: config.outputSize, mode: config.pooling, split: config.hiddenSize)
    }

    /// The gradient buffer a loss writes for `backward` ([B, labels]).
    public func dLogits(_ a: RecurrentActivations) -> Tensor { a.dLogits.slice(0, a.batch * labels) }

    /// Every parameter gradient (accumulated) from dLogits(a), after a forward of the same batch.
    public func backward(_ a: RecurrentActivations) {
        guard let segments = a.embeddingSegments else { preconditionFailure("backward: the batch was loaded for a forward pass only") }
        let b = backend, (B, T) = (a.batch, a.length), E = config.embeddingSize, DH = config.outputSize, M = config.headHiddenSize
        classifier.backward(b, dX: a.dHeadActivated.slice(0, B * M), dY: dLogits(a), x: a.headActivated.slice(0, B * M), rows: B)
        b.tanhBackward(dx: a.dHeadHidden.slice(0, B * M), dOut: a.dHeadActivated.slice(0, B * M), out: a.headActivated.slice(0, B * M),
                       count: B * M)
        head.backward(b, dX: a.dPooled.slice(0, B * DH), dY: a.dHeadHidden.slice(0, B * M), x: a.pooled.slice(0, B * DH), rows: B)
        var dOutput = a.dOutputs[0].slice(0, T * B * DH)
        b.sequencePoolBackward(dY: dOutput, dOut: a.dPooled.slice(0, B * DH), argmax: config.pooling == .max ? a.argmax.slice(0, B * DH) : nil,
                               lengths: a.lengths, pooling(B, T))
        for l in stride(from: layers.count - 1, through: 0, by: -1) {
            let first = l == 0
            let x = first ? a.embedded.slice(0, T * B * E) : a.layers[l - 1].output.slice(0, T * B * DH)
            let dX = first ? a.dEmbedded.slice(0, T * B * E) : a.dOutputs[(layers.count - l) % 2].slice(0, T * B * DH)
            layers[l].backward(b, a.layers[l], dOutput: dOutput, dX: dX, x: x, lengths: a.lengths, batch: B, length: T)
            dOutput = dX
        }
        b.embeddingBackward(dWord: embedding.grad, dPosition: nil, dType: nil, dOut: a.dEmbedded.slice(0, T * B * E),
                            ids: a.ids.slice(0, T * B), positions: a.positions.slice(0, T * B), types: nil, segments: segments,
                            embeddingShape.tokens(T * B))
    }
}

// MARK: checkpoints

extension RecurrentModel {
    /// A saved student: config.json (RecurrentConfig) and model.safetensors in PyTorch's names.
    public static func load(folder: String, backend: Backend, inference: Bool = false) throws -> RecurrentModel {
        let config = try RecurrentConfig(path: (folder as NSString).appendingPathComponent("config.json"))
        guard config.id2label.count >= 2 else {   // (LabelMap read them as classes 0…n−1)
            throw CheckpointError("\(folder)/config.json: id2label must name classes 0…n−1 (two or more)")
        }
        let model = try RecurrentModel(config: config, labels: config.id2label.count, backend: backend, inference: inference)
        try model.loadWeights((folder as NSString).appendingPathComponent("model.safetensors"))
        return model
    }

    /// Every parameter from a safetensors file of PyTorch's names and shapes.
    public func loadWeights(_ path: String) throws {
        let file = try SafeTensorsFile(path: path), name = path   // errors name the folder too
        for e in layout.entries {
            guard let stored = file.entries[e.name] else {
                throw CheckpointError("\(name): missing tensor '\(e.name)' (config.json implies \(config.layers) \(config.cell.rawValue) layers of \(config.hiddenSize))")
            }
            guard stored.shape == e.shape else { throw CheckpointError("\(name): tensor '\(e.name)' is \(stored.shape) but config.json implies \(e.shape)") }
            try file.floats(e.name).withUnsafeBytes { backend.upload(w(e.name), $0) }
        }
    }

    /// Writes config.json (with id2label and the tokenizer's kind and length) and model.safetensors,
    /// each atomically.
    public func save(folder: String, id2label: [Int: String], tokenizer: String, maxLength: Int) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var c = config
        c.id2label = id2label; c.tokenizer = tokenizer; c.maxLength = maxLength
        // From the device to the file a chunk at a time.
        let tensors = layout.entries.map { e in
            SafeTensorsWriter.Tensor(name: e.name, shape: e.shape, count: e.count) { self.backend.floats(self.w(e.name).slice($0, $1)) }
        }
        try SafeTensorsWriter.write(tensors, to: (folder as NSString).appendingPathComponent("model.safetensors"))
        try writeAtomically(try c.json(), to: (folder as NSString).appendingPathComponent("config.json"))
    }
}
