// All parameters of a model in one contiguous buffer (and their gradients in another), laid out
// by name in a fixed order; views are slices, so the optimiser and gradient clipping run over
// one buffer.
import Backend

public struct ParameterLayout: Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
        /// Biases and norm weights (LayerNorm, RMSNorm; GPT-2's ln_*) get no weight decay (HF's convention).
        public var decays: Bool { !(name.hasSuffix(".bias") || name.lowercased().contains("norm") || name.contains("ln_")) }
    }

    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]
    public private(set) var total = 0

    public init() {}

    public mutating func add(_ name: String, _ shape: [Int]) {
        precondition(index[name] == nil, "duplicate parameter \(name)")
        index[name] = entries.count
        entries.append(Entry(name: name, shape: shape, offset: total))
        total += shape.reduce(1, *)
    }

    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// This layout without `names`: the gradients of a model whose `names` are frozen.
    public func excluding(_ names: Set<String>) -> ParameterLayout {
        var kept = ParameterLayout()
        for e in entries where !names.contains(e.name) { kept.add(e.name, e.shape) }
        return kept
    }

    /// Parameter `name` of a model: its slice of `weights`, and of `grads` when the gradient
    /// layout has it (`gradients` nil, or no entry: frozen or inference-only, no gradient).
    func parameter(_ name: String, weights: Tensor, grads: Tensor, gradients: ParameterLayout?) -> Parameter {
        guard let e = entry(name) else { preconditionFailure("no parameter \(name)") }
        let gradient = gradients?.entry(name)
        return Parameter(name: name, weight: weights.slice(e.offset, e.count), grad: gradient.map { grads.slice($0.offset, $0.count) },
                         decays: e.decays)
    }

    /// A model's weight buffer (with the 16-bit copy a half-precision backend keeps) and gradient
    /// buffer (empty for a model kept for inference), zeroed.
    func allocate(on backend: Backend, inference: Bool) throws -> (weights: Tensor, grads: Tensor) {
        let weights = try backend.zeros(total)
        try backend.keepHalfCopy(of: weights)
        return (weights, try backend.zeros(inference ? 0 : total))
    }

    /// The slice of `buffer` that holds parameter `name`.
    public func view(_ buffer: Tensor, _ name: String) -> Tensor {
        guard let e = entry(name) else { preconditionFailure("no parameter \(name)") }
        return buffer.slice(e.offset, e.count)
    }
}

/// One parameter tensor of a model and its gradient: nil when it does not train (frozen, or a
/// model kept for inference) — frozen parameters have no gradient storage. Frozen-ness is data,
/// set once (LoRA freezes the base) and read by every backward.
public struct Parameter {
    /// The name in the model's layout (BERT's HF name without "bert."), for checkpoints and the optimiser.
    public let name: String
    public let weight: Tensor
    public let grad: Tensor?
    /// Weight decay applies (not to biases and LayerNorm weights, HF's convention).
    public let decays: Bool

    public init(name: String, weight: Tensor, grad: Tensor?, decays: Bool) {
        self.name = name; self.weight = weight; self.grad = grad; self.decays = decays
    }

    public var trains: Bool { grad != nil }

    /// The gradient a backward writes; one that does not train has none.
    var gradient: Tensor {
        guard let grad else { preconditionFailure("\(name) has no gradient: it is frozen, or the model was made for inference") }
        return grad
    }

    /// What the optimiser updates for this parameter.
    var trainable: TrainableTensor { TrainableTensor(name: name, weight: weight, grad: gradient, decays: decays) }
}

/// One tensor the optimiser updates.
public struct TrainableTensor {
    public let name: String
    public let weight: Tensor
    public let grad: Tensor
    public let decays: Bool
    public init(name: String, weight: Tensor, grad: Tensor, decays: Bool) {
        self.name = name; self.weight = weight; self.grad = grad; self.decays = decays
    }
}
