// What the trainer trains, behind one interface: a model, the arena its micro-batches load into,
// and what a step minimises. A BERT-family classifier with any TrainingObjective (fine-tuning,
// the distillation stages) is one task; a decoder (a causal language model, or a classifier on
// its last token) is another (DecoderTask.swift). The trainer's loop, schedule, clipping,
// evaluation and checkpoints do not know which.
import Backend
import Models

public protocol TrainingTask: AnyObject {
    var backend: Backend { get }
    /// The optimiser over what trains.
    func makeOptimizer() throws -> Optimizer
    /// Zeroes the gradients of everything that trains.
    func zeroGradients()
    /// Loads a micro-batch (training mode); returns its tokens (B·T).
    func load(_ batch: [Encoding], labels: [Int32]) -> Int
    /// The same, told which training examples they are (a task with per-example targets, such as
    /// a teacher's stored logits, reads them by index). Default: `load(batch, labels:)`.
    func load(_ batch: [Encoding], labels: [Int32], examples: [Int]) -> Int
    /// Data parallel: loads this rank's share `batch` (not empty) of the global micro-batch
    /// `whole` so that the ranks' mean loss is the batch's as one process computes it. The
    /// trainer weighs the share's losses by its share of the examples; the task pads it to
    /// `whole`'s longest (losses over every position) and weighs losses that are means over
    /// tokens by (its share of the tokens) / (its share of the examples). Default:
    /// `load(batch, labels:, examples:)`, for a task whose losses are means over examples and
    /// do not see padding.
    func load(_ batch: [Encoding], labels: [Int32], examples: [Int], whole: [Encoding]) -> Int
    /// Runs the loaded micro-batch (masks from `seed`), accumulates the gradient of gradScale·loss
    /// and adds weight·loss to `losses`, all queued on the device.
    func step(_ batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double)
    /// What one example is, in progress lines (default "texts").
    var examplesNoun: String { get }
    /// Dev metrics; `progress` hears the texts done after each batch.
    func evaluate(_ dev: [Encoding], labels: [Int32], batchSize: Int, progress: (Int) -> Void) throws -> ClassificationMetrics
    /// What a checkpoint saves besides the optimizer: the weights first.
    var checkpointTensors: [(String, Tensor)] { get }
    /// Installs (nil: removes) the hook the trained model's backward calls after each layer with
    /// that layer's gradients (GradientExchange). Default: none (the gradients are summed after
    /// the backward).
    func setLayerGradientsHook(_ hook: (([Tensor]) -> Void)?)
}

public extension TrainingTask {
    /// What one example is, in progress lines: "texts"; a language model's are "blocks" of text.
    var examplesNoun: String { "texts" }
    func load(_ batch: [Encoding], labels: [Int32], examples: [Int]) -> Int { load(batch, labels: labels) }
    func load(_ batch: [Encoding], labels: [Int32], examples: [Int], whole: [Encoding]) -> Int {
        load(batch, labels: labels, examples: examples)
    }

    /// (This share's part of the units a loss averages over) / (its part of the examples): what a
    /// token-mean loss of a data-parallel share is multiplied by (`units` counts them per text).
    static func tokenShare(_ batch: [Encoding], of whole: [Encoding], units: (Encoding) -> Int) -> Double {
        let part = Double(batch.reduce(0) { $0 + units($1) }), all = Double(max(1, whole.reduce(0) { $0 + units($1) }))
        return (part / all) / (Double(batch.count) / Double(max(1, whole.count)))
    }
    func setLayerGradientsHook(_ hook: (([Tensor]) -> Void)?) {}
}

/// A BERT-family classifier and the objective of its stage.
public final class ClassifierTask: TrainingTask {
    public let classifier: Classifier
    public let objective: TrainingObjective
    let activations: BertActivations

    public init(classifier: Classifier, objective: TrainingObjective, maxBatch: Int, recomputeGelu: Bool = false) throws {
        self.classifier = classifier
        self.objective = objective
        let model = classifier.model
        activations = try BertActivations(config: model.config, labels: model.labels, maxBatch: maxBatch, maxLength: classifier.maxLength,
                                          backend: model.backend, recomputeGelu: recomputeGelu)
    }

    public var backend: Backend { classifier.model.backend }

    public func makeOptimizer() throws -> Optimizer {
        try Optimizer(model: classifier.model, extra: objective.extraParameters, idle: objective.idleParameters)
    }

    public func zeroGradients() {
        classifier.model.zeroGradients()
        for p in objective.extraParameters { backend.fill(p.grad, 0) }
    }

    public func load(_ batch: [Encoding], labels: [Int32]) -> Int {
        classifier.load(batch, labels: labels, into: activations)
        return activations.batch * activations.length
    }

    public func load(_ batch: [Encoding], labels: [Int32], examples: [Int], whole: [Encoding]) -> Int {
        classifier.load(batch, labels: labels, into: activations, length: whole.map(\.ids.count).max())
        activations.tokenLossScale = Float(Self.tokenShare(batch, of: whole) { $0.ids.count })
        return activations.batch * activations.length
    }

    public func step(_ batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        objective.step(activations, batch: batch, seed: seed, gradScale: gradScale, losses: losses, weight: weight)
    }

    public func evaluate(_ dev: [Encoding], labels: [Int32], batchSize: Int, progress: (Int) -> Void) throws -> ClassificationMetrics {
        try classifier.evaluate(dev, labels: labels, batchSize: batchSize, activations: activations, progress: progress)
    }

    public func setLayerGradientsHook(_ hook: (([Tensor]) -> Void)?) { classifier.model.layerGradientsReady = hook }

    public var checkpointTensors: [(String, Tensor)] {
        let model = classifier.model
        return [("weights", model.weights)] + (model.lora.map { [("lora", $0.weights)] } ?? []) + objective.extraParameters.map { ($0.name, $0.weight) }
    }
}
