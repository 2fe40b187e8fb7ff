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
