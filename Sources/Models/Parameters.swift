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
        /// Biases and LayerNorm weights get no weight decay (HF's convention).
        public var decays: Bool { !(name.hasSuffix(".bias") || name.contains("LayerNorm")) }
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
