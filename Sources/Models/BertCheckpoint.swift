// Loading and saving BERT checkpoints in HF's layout: config.json + model.safetensors, tensor
// names with or without the "bert." prefix, classifier "classifier.*". A missing classifier
// (and pooler) is initialised as HF does: normal(0, initializer_range) weights, zero biases.
import Backend
import Foundation

extension BertModel {
    /// Reads folder/config.json and folder/model.safetensors into a new model (`inference`: without
    /// gradients; a quantized model's int8 layers need it).
    public static func load(folder: String, labels: Int? = nil, backend: Backend, seed: UInt64 = 42, inference: Bool = false) throws -> BertModel {
        let config = try BertConfig(path: (folder as NSString).appendingPathComponent("config.json"))
        let model = try BertModel(config: config, labels: labels ?? config.numLabels, backend: backend, inference: inference)
        try model.loadWeights((folder as NSString).appendingPathComponent("model.safetensors"), seed: seed)
        return model
    }

    /// The names this model's parameters have in files written by transformers: BERT's with the
    /// "bert." prefix; MPNet's with "mpnet.", attention.attn.{q,k,v,o}, and the classification
    /// head (pooler → classifier.dense, classifier → classifier.out_proj).
    static func fileName(_ name: String, prefix: String, family: ModelFamily = .bert) -> String {
        guard family == .mpnet else { return name.hasPrefix("classifier.") ? name : prefix + name }
        if name.hasPrefix("classifier.") { return "classifier.out_proj." + name.dropFirst("classifier.".count) }
        if name.hasPrefix("pooler.dense.") { return "classifier.dense." + name.dropFirst("pooler.dense.".count) }
        var mapped = name
        for (bert, mpnet) in [(".attention.self.query.", ".attention.attn.q."), (".attention.self.key.", ".attention.attn.k."),
                              (".attention.self.value.", ".attention.attn.v."), (".attention.output.dense.", ".attention.attn.o."),
                              (".attention.output.LayerNorm.", ".attention.LayerNorm.")] {
            mapped = mapped.replacingOccurrences(of: bert, with: mpnet)
        }
        return prefix + mapped
    }

    /// The classifier's weight in HF's files of `family` ("classifier.weight", MPNet's
    /// "classifier.out_proj.weight"): a pretrained encoder's file has none.
    public static func classifierTensor(_ family: ModelFamily) -> String { fileName("classifier.weight", prefix: "", family: family) }

    /// The name parameter `name` has in HF's files (model.safetensors), e.g. "bert.embeddings.word_embeddings.weight".
    public func checkpointName(_ name: String) -> String { Self.fileName(name, prefix: filePrefix, family: config.family) }

    /// "bert." or "mpnet.": the prefix HF's *ForSequenceClassification files use.
    var filePrefix: String { config.family.rawValue + "." }

    public func loadWeights(_ path: String, seed: UInt64 = 42, freshHead: Bool = false) throws {
        let file = try SafeTensorsFile(path: path)
        let fileName = path   // errors name the folder too
        let prefix = file.entries[filePrefix + "embeddings.word_embeddings.weight"] != nil ? filePrefix : ""
        var rng = NormalRandom(seed: seed)
        var int8: [String: Int8Weight] = [:]
        let int8Names = int8ParameterNames, wordEmbeddings = parameters.wordEmbeddings.name
        for entry in layout.entries {
            let key = Self.fileName(entry.name, prefix: prefix, family: config.family)
            guard let stored = file.entries[key], !(freshHead && entry.name.hasPrefix("classifier.")) else {
                guard entry.name.hasPrefix("classifier.") || entry.name.hasPrefix("pooler.") else {
                    throw CheckpointError("\(fileName): missing tensor '\(key)' (the config expects \(config.layers) layers of width \(config.hiddenSize))")
                }
                let values = entry.name.hasSuffix(".bias") ? [Float](repeating: 0, count: entry.count)
                    : (0..<entry.count).map { _ in Float(config.initializerRange) * rng.next() }
                values.withUnsafeBytes { backend.upload(layout.view(weights, entry.name), $0) }
                continue
            }
            guard stored.shape == entry.shape else {
                throw CheckpointError("\(fileName): tensor '\(key)' is \(stored.shape) but config.json implies \(entry.shape)")
            }
            if stored.dtype == .i8 {
                guard int8Names.contains(entry.name) else { throw CheckpointError("\(fileName): tensor '\(key)' is I8, which Retort stores only for linear weights and word embeddings") }
                // A model that trains keeps the dequantized values only: int8 layers have no backward.
                let (values, weight) = try loadInt8(file, key: key, entry: entry, linear: !trains && entry.name != wordEmbeddings)
                values.withUnsafeBytes { backend.upload(layout.view(weights, entry.name), $0) }
                int8[entry.name] = weight
                continue
            }
            try file.floats(key).withUnsafeBytes { backend.upload(layout.view(weights, entry.name), $0) }
        }
        int8Weights = int8
    }

    /// Writes config.json and model.safetensors (HF's *ForSequenceClassification names) into `folder`.
    /// With LoRA attached the adapters are merged into the saved weights (a full model HF loads).
    public func save(folder: String, id2label: [Int: String]? = nil) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var config = self.config
        config.quantization = nil   // float weights (a quantized model writes saveQuantized)
        if let id2label { config.id2label = id2label }
        if config.id2label.isEmpty { config.id2label = Dictionary(uniqueKeysWithValues: (0..<labels).map { ($0, "LABEL_\($0)") }) }
        // From the device to the file a chunk at a time.
        let merged = try mergedWeights(), backend = backend
        let tensors = layout.entries.map { e in
            SafeTensorsWriter.Tensor(name: Self.fileName(e.name, prefix: filePrefix, family: config.family), shape: e.shape, count: e.count) {
                backend.floats(merged.slice(e.offset + $0, $1))
            }
        }
        try SafeTensorsWriter.write(tensors, to: (folder as NSString).appendingPathComponent("model.safetensors"))
        try writeAtomically(try config.json(), to: (folder as NSString).appendingPathComponent("config.json"))
    }
}

/// splitmix64 as a RandomNumberGenerator: seeded, identical on every platform.
public struct SplitMix: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Normal(0, 1) samples from a seeded splitmix64 stream (Box–Muller).
public struct NormalRandom {
    private var bits: SplitMix
    private var spare: Float?
    public init(seed: UInt64) { bits = SplitMix(seed: seed) }
    /// Uniform in (0, 1).
    public mutating func uniform() -> Double { (Double(bits.next() >> 11) + 0.5) / Double(1 << 53) }
    public mutating func next() -> Float {
        if let s = spare { spare = nil; return s }
        let r = (-2 * Foundation.log(uniform())).squareRoot(), t = 2 * Double.pi * uniform()
        spare = Float(r * Foundation.sin(t))
        return Float(r * Foundation.cos(t))
    }
}
