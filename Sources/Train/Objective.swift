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

/// The loss of one optimizer step, kept on the device: an objective adds each term (a
/// one-element tensor holding a batch mean) with its weight as the micro-batches run, and the
/// trainer reads every term, with the gradient norms, in the step's one download. Slot 0 holds
/// an unnamed loss; named terms take slots 1… in the order they are first added.
public final class StepLosses {
    public static let capacity = 128
    let backend: Backend
    let values: Tensor
    public private(set) var names: [String] = []

    /// Over `values` (`capacity` floats), which the caller reads back.
    public init(_ values: Tensor, backend: Backend) {
        precondition(values.count >= Self.capacity)
        self.values = values; self.backend = backend
    }

    /// Clears every slot (queued): a new step.
    public func reset() {
        names = []
        backend.fill(values.slice(0, Self.capacity), 0)
    }

    /// Queues slot(name) += weight·scalar[0] (nil: the unnamed loss).
    public func add(_ name: String?, _ scalar: Tensor, weight: Double) {
        var slot = 0
        if let name {
            if let i = names.firstIndex(of: name) { slot = i + 1 } else {
                precondition(names.count + 1 < Self.capacity, "more than \(Self.capacity - 1) loss terms")
                names.append(name)
                slot = names.count
            }
        }
        backend.axpy(values.slice(slot, 1), scalar, count: 1, alpha: Float(weight))
    }

    /// The total and the named terms, from the slots as read back (`host` starts with them).
    public func read(_ host: [Float]) -> (total: Double, terms: [LossTerm]) {
        let terms = names.enumerated().map { LossTerm($0.element, Double(host[$0.offset + 1])) }
        return (terms.isEmpty ? Double(host[0]) : terms.reduce(0) { $0 + $1.value }, terms)
    }

    /// Reads the slots now (one download): for callers outside a trainer's step.
    public func read() -> (total: Double, terms: [LossTerm]) { read(backend.floats(values.slice(0, Self.capacity))) }
}

public protocol TrainingObjective: AnyObject {
    /// Runs the model(s) on the micro-batch loaded in `a` (training mode, dropout masks from
    /// `seed`), accumulates the gradient of gradScale·loss into what trains, and adds
    /// weight·loss (by term) to `losses` — on the device: nothing here waits for it.
    func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double)
    /// Tensors trained beside the model's own (a distillation projection).
    var extraParameters: [TrainableTensor] { get }
    /// Model parameters this objective gives no gradient: the optimiser leaves them alone.
    var idleParameters: Set<String> { get }
}

public extension TrainingObjective {
    var extraParameters: [TrainableTensor] { [] }
    var idleParameters: Set<String> { [] }
}

/// Fine-tuning: cross-entropy of the classifier's logits against the labels.
public final class CrossEntropyObjective: TrainingObjective {
    public let model: BertModel
    public init(model: BertModel) { self.model = model }

    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        model.forward(a, training: true, seed: seed)
        model.crossEntropyBackward(a, gradScale: gradScale)
        losses.add(nil, a.loss, weight: weight)
    }
}
