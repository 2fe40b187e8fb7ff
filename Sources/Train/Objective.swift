// What a Trainer minimises, one micro-batch at a time. Fine-tuning's cross-entropy, TinyBERT's
// intermediate and prediction stages and DistilBERT's loss are each one type behind this
// protocol (DistillationObjective.swift); a new objective (a language-model loss, a recurrent
// student's KD) is one more type, and the trainer does not change.
import Backend

/// One named part of a loss, weighted as it enters the total (logged per step).
public struct LossTerm: Sendable {
    public let name: String
    public let value: Double
    public init(_ name: String, _ value: Double) { self.name = name; self.value = value }
}

public protocol TrainingObjective: AnyObject {
    /// Runs the model(s) on the micro-batch loaded in `a` (training mode, dropout masks from
    /// `seed`), accumulates the gradient of gradScale·loss into what trains, returns the loss.
    func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float) -> Double
    /// The terms of the last step's loss (empty: the loss is one term).
    var terms: [LossTerm] { get }
    /// Tensors trained beside the model's own (a distillation projection).
    var extraParameters: [TrainableTensor] { get }
    /// Model parameters this objective gives no gradient: the optimiser leaves them alone.
    var idleParameters: Set<String> { get }
}

public extension TrainingObjective {
    var terms: [LossTerm] { [] }
    var extraParameters: [TrainableTensor] { [] }
    var idleParameters: Set<String> { [] }
}

/// Fine-tuning: cross-entropy of the classifier's logits against the labels.
public final class CrossEntropyObjective: TrainingObjective {
    public let model: BertModel
    public init(model: BertModel) { self.model = model }

    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float) -> Double {
        model.forward(a, training: true, seed: seed)
        return Double(model.backward(a, gradScale: gradScale))
    }
}
