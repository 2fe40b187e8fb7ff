// LoRA adapters on a model's linear layers, PEFT semantics: y = x·Wᵀ + b + (alpha/r)·(drop(x)·Aᵀ)·Bᵀ,
// A [r, in] kaiming-uniform(a = √5), B [out, r] zero; only A, B and the head train. The branch
// runs through the backend's fused LoRA kernels. Saved in PEFT's adapter format. The adapters are
// a list of modules (a linear layer's name in the model, its sizes), so every model family uses
// this one store: BERT's below, the decoders' in DecoderLoRA.swift.
import Backend
import Foundation

public enum LoRATarget: String, CaseIterable, Sendable {
    // BERT and MPNet
    case query, key, value
    case attentionOutput = "attention_output", intermediate, output
    // GPT-2 (PEFT's names: c_proj is both the attention's and the MLP's output projection)
    case cAttn = "c_attn", cProj = "c_proj", cFc = "c_fc"
    // Llama family
    case qProj = "q_proj", kProj = "k_proj", vProj = "v_proj", oProj = "o_proj", gateProj = "gate_proj", upProj = "up_proj",
         downProj = "down_proj"

    public static let encoderTargets: [LoRATarget] = [.query, .key, .value, .attentionOutput, .intermediate, .output]
    public static let gpt2Targets: [LoRATarget] = [.cAttn, .cProj, .cFc]
    public static let llamaTargets: [LoRATarget] = [.qProj, .kProj, .vProj, .oProj, .gateProj, .upProj, .downProj]

    /// The module inside a layer, as HF names it (decoders: PEFT's target name).
    public var module: String {
        switch self {
        case .query: return "attention.self.query"
        case .key: return "attention.self.key"
        case .value: return "attention.self.value"
        case .attentionOutput: return "attention.output.dense"
        case .intermediate: return "intermediate.dense"
        case .output: return "output.dense"
        default: return rawValue
        }
    }
}

public struct LoRAConfig: Sendable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var targets: [LoRATarget]
    public var rsLoRA = false
    public var scale: Float { Float(rsLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }
    public init(rank: Int, alpha: Double, dropout: Double = 0.1, targets: [LoRATarget] = [.query, .value], rsLoRA: Bool = false) {
        // A module named twice is one adapter (its parameters could not be made twice).
        self.rank = rank; self.alpha = alpha; self.dropout = dropout; self.rsLoRA = rsLoRA
        self.targets = targets.reduce(into: []) { kept, t in if !kept.contains(t) { kept.append(t) } }
    }
}

/// The adapters of one model: A and B of every adapted module in one buffer, gradients in another.
public final class LoRAAdapters {
    /// One adapted linear layer: its name in the model's layout (without ".weight"), its sizes,
    /// and where it sits (its dropout stream and the arena slot that saves its x·Aᵀ).
    public struct Module: Sendable {
        public let name: String
        public let inFeatures, outFeatures: Int
        let site: UInt64
        let slot: Int
    }

    public let config: LoRAConfig
    public let modules: [Module]
    public let layout: ParameterLayout
    public let weights: Tensor
    public let grads: Tensor
    /// Merged into the base weights (mergeLoRA): the forward then skips the branch.
    public internal(set) var merged = false

    convenience init(config: LoRAConfig, model: BertConfig, backend: Backend, seed: UInt64) throws {
        var modules: [Module] = []
        for l in 0..<model.layers {
            for t in config.targets {
                let (inFeatures, outFeatures) = Self.features(t, model), target = LoRATarget.encoderTargets.firstIndex(of: t)!
                modules.append(Module(name: "encoder.layer.\(l).\(t.module)", inFeatures: inFeatures, outFeatures: outFeatures,
                                      site: UInt64(1000 + l * 8 + target), slot: l * LoRATarget.encoderTargets.count + target))
            }
        }
        try self.init(config: config, modules: modules, backend: backend, seed: seed)
    }

    init(config: LoRAConfig, modules: [Module], backend: Backend, seed: UInt64) throws {
        // B·A has rank at most min(in, out): a larger rank only costs memory and time.
        if let narrowest = modules.min(by: { min($0.inFeatures, $0.outFeatures) < min($1.inFeatures, $1.outFeatures) }) {
            let width = min(narrowest.inFeatures, narrowest.outFeatures)
            guard config.rank <= width else {
                throw InvalidSetting("\(Setting.loraRank) \(config.rank) is above \(narrowest.name)'s \(narrowest.inFeatures)×\(narrowest.outFeatures) (an adapter's update has rank at most \(width)); use at most \(width) (8 to 64 is usual)")
            }
        }
        self.config = config
        self.modules = modules
        var layout = ParameterLayout()
        for m in modules {
            layout.add(m.name + ".lora_A.weight", [config.rank, m.inFeatures])
            layout.add(m.name + ".lora_B.weight", [m.outFeatures, config.rank])
        }
        self.layout = layout
        weights = try backend.zeros(layout.total)
        grads = try backend.zeros(layout.total)
        // A ~ U(−1/√in, 1/√in): kaiming_uniform with a = √5, as PEFT; B stays zero.
        var rng = NormalRandom(seed: seed)
        for e in layout.entries where e.name.hasSuffix("lora_A.weight") {
            let bound = 1 / Double(e.shape[1]).squareRoot()
            let values = (0..<e.count).map { _ in Float((2 * rng.uniform() - 1) * bound) }
            values.withUnsafeBytes { backend.upload(layout.view(weights, e.name), $0) }
        }
    }

    static func features(_ t: LoRATarget, _ c: BertConfig) -> (Int, Int) {
        switch t {
        case .intermediate: return (c.hiddenSize, c.intermediateSize)
        case .output: return (c.intermediateSize, c.hiddenSize)
        default: return (c.hiddenSize, c.hiddenSize)
        }
    }

    /// The adapter on module `name`, as its Linear carries it (nil: that module has none).
    func branch(_ name: String) -> LoRABranch? {
        guard let m = modules.first(where: { $0.name == name }) else { return nil }
        func parameter(_ name: String) -> Parameter {
            layout.parameter(name, weights: weights, grads: grads, gradients: layout)
        }
        return LoRABranch(a: parameter(name + ".lora_A.weight"), b: parameter(name + ".lora_B.weight"), rank: config.rank,
                          scale: config.scale, dropout: Float(config.dropout), site: m.site, slot: m.slot)
    }

    /// A copy of `weights` (laid out by `model`) with every adapter merged in (unless it already is).
    func mergedCopy(of weights: Tensor, model: ParameterLayout, backend: Backend) throws -> Tensor {
        let copy = try backend.allocate(weights.count, .f32)
        backend.copy(copy, weights)
        if !merged { add(into: copy, model: model, sign: 1, backend: backend) }
        return copy
    }

    /// Every A and B as PEFT's adapter file names them: `peftName` of our name.
    func tensors(backend: Backend, peftName: (String) -> String) -> [SafeTensorsWriter.Tensor] {
        let values = backend.floats(weights)
        return layout.entries.map { e in
            SafeTensorsWriter.Tensor(name: peftName(e.name), shape: e.shape, values: Array(values[e.offset..<(e.offset + e.count)]))
        }
    }

    /// Every A and B from a PEFT adapter file, named `peftName` of our name.
    func read(_ file: SafeTensorsFile, backend: Backend, peftName: (String) -> String) throws {
        let name = (file.path as NSString).lastPathComponent
        for e in layout.entries {
            let key = peftName(e.name)
            guard let stored = file.entries[key] else { throw CheckpointError("\(name): missing '\(key)'") }
            guard stored.shape == e.shape else { throw CheckpointError("\(name): '\(key)' is \(stored.shape), the model needs \(e.shape)") }
            try file.floats(key).withUnsafeBytes { backend.upload(layout.view(weights, e.name), $0) }
        }
    }

    /// W += sign·scale·B·A for every module, W in `buffer` laid out by `model` (merge, unmerge).
    func add(into buffer: Tensor, model: ParameterLayout, sign: Float, backend: Backend) {
        for m in modules {
            backend.matmul(model.view(buffer, m.name + ".weight"), layout.view(weights, m.name + ".lora_B.weight"),
                           layout.view(weights, m.name + ".lora_A.weight"), bias: nil,
                           Gemm(m: m.outFeatures, n: m.inFeatures, k: config.rank, alpha: sign * config.scale, beta: 1))
        }
    }

    /// A and B of every adapter, in layout order, as the optimiser updates them.
    var trainable: [TrainableTensor] {
        layout.entries.map { TrainableTensor(name: $0.name, weight: layout.view(weights, $0.name), grad: layout.view(grads, $0.name), decays: $0.decays) }
    }

    /// PEFT's target_modules: dotted suffixes when they pick exactly our modules, else a regex.
    var peftTargets: Any {
        let names = config.targets.map(\.module)
        let ffnOutputAlone = config.targets.contains(.output) && !config.targets.contains(.attentionOutput)
        if !ffnOutputAlone {
            var list = config.targets.filter { $0 != .attentionOutput || !config.targets.contains(.output) }.map {
                $0 == .output ? "output.dense" : $0 == .attentionOutput ? "attention.output.dense" : $0 == .intermediate ? "intermediate.dense" : $0.rawValue
            }
            list.sort()
            return list
        }
        return ".*\\.layer\\.\\d+\\.(" + names.map { $0.replacingOccurrences(of: ".", with: "\\.") }.joined(separator: "|") + ")"
    }
}

public extension Setting {
    static let loraRank = Setting("LoRA rank")
}

extension BertModel {
    /// Attaches fresh adapters: from now on only they and the classification head train (PEFT's
    /// modules_to_save: BERT's classifier; MPNet's, which is our pooler and classifier).
    public func attachLoRA(_ config: LoRAConfig, seed: UInt64 = 42) throws {
        if let other = config.targets.first(where: { !LoRATarget.encoderTargets.contains($0) }) {
            throw CheckpointError("LoRA target \(other.rawValue) is a decoder's; an encoder takes \(LoRATarget.encoderTargets.map(\.rawValue).joined(separator: ", "))")
        }
        lora = try LoRAAdapters(config: config, model: self.config, backend: backend, seed: seed)
        try freeze(Set(layout.entries.map(\.name)).subtracting(headParameters))
    }

    /// Our names of the parameters in HF's `classifier` module of this family: classifier.* (and
    /// MPNet's pooler.dense.*, HF's classifier.dense).
    var headParameters: [String] {
        layout.entries.map(\.name).filter { Self.fileName($0, prefix: "", family: self.config.family).hasPrefix("classifier.") }
    }

    /// An adapter tensor's or head parameter's name in PEFT's files: "base_model.model." and HF's name.
    func peftName(_ name: String) -> String { "base_model.model." + checkpointName(name) }

    /// A target's module inside a layer as this family's HF files name it (MPNet: attention.attn.q, …).
    func fileModule(_ target: LoRATarget) -> String {
        let inLayer = "encoder.layer.0."
        return String(Self.fileName(inLayer + target.module + ".weight", prefix: "", family: config.family).dropFirst(inLayer.count).dropLast(".weight".count))
    }

    /// What the optimiser updates: the adapters (when attached), then every base parameter that
    /// trains, in layout order.
    public var trainable: [TrainableTensor] {
        (lora?.trainable ?? []) + parameters.all.filter(\.trains).map(\.trainable)
    }

    /// Zeroes the gradients of everything that trains.
    public func zeroGradients() {
        backend.fill(grads, 0)
        if let lora { backend.fill(lora.grads, 0) }
    }

    /// The weights with every adapter merged in: W + scale·B·A (a copy; the model is unchanged), or the weights themselves without adapters.
    public func mergedWeights() throws -> Tensor {
        try lora?.mergedCopy(of: weights, model: layout, backend: backend) ?? weights
    }

    /// PEFT's merge: W += scale·B·A in place, after which the branch is skipped (inference
    /// without the extra matmuls). `unmergeLoRA` undoes it.
    public func mergeLoRA() {
        guard let lora, !lora.merged else { return }
        addAdapters(lora, into: weights, sign: 1)
        lora.merged = true
        parameters = makeParameters()
    }

    public func unmergeLoRA() {
        guard let lora, lora.merged else { return }
        addAdapters(lora, into: weights, sign: -1)
        lora.merged = false
        parameters = makeParameters()
    }

    private func addAdapters(_ lora: LoRAAdapters, into buffer: Tensor, sign: Float) {
        lora.add(into: buffer, model: layout, sign: sign, backend: backend)
    }

    // MARK: PEFT files

    /// adapter_config.json + adapter_model.safetensors (the adapters and the classifier).
    public func saveAdapter(folder: String, baseModel: String) throws {
        guard let lora else { throw CheckpointError("no LoRA adapters to save") }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var tensors = lora.tensors(backend: backend, peftName: peftName)
        for name in headParameters {
            tensors.append(.init(name: peftName(name), shape: layout.entry(name)!.shape, values: backend.floats(w(name))))
        }
        try SafeTensorsWriter.write(tensors, to: folder + "/adapter_model.safetensors")
        var config = lora.config.peftJSON(baseModel: baseModel)
        config["task_type"] = "SEQ_CLS"
        // MPNet's module paths (attention.attn.q, …, output.dense) each match only their own modules.
        config["target_modules"] = self.config.family == .bert ? lora.peftTargets : lora.config.targets.map(fileModule).sorted()
        config["modules_to_save"] = ["classifier"]
        config["fan_in_fan_out"] = false
        try writeAtomically(try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                            to: folder + "/adapter_config.json")
    }

    /// Attaches the adapters of a PEFT folder (and its classifier, when it has one).
    public func loadAdapter(folder: String) throws {
        var (_, settings) = try LoRAConfig.peft(folder: folder)
        let file = try SafeTensorsFile(path: folder + "/adapter_model.safetensors")
        // The targets are whatever modules the file holds adapters for.
        // "base_model.model.bert.encoder.layer.<l>.<module>.lora_A.weight" → <module>, matched exactly
        // (a suffix test would take attention.output.dense for output.dense); MPNet's "mpnet.…".
        let prefix = "base_model.model." + filePrefix + "encoder.layer."
        let modules = Set(file.entries.keys.compactMap { key -> String? in
            guard key.hasPrefix(prefix), key.hasSuffix(".lora_A.weight") else { return nil }
            let rest = key.dropFirst(prefix.count).dropLast(".lora_A.weight".count)
            guard let dot = rest.firstIndex(of: "."), Int(rest[..<dot]) != nil else { return nil }
            return String(rest[rest.index(after: dot)...])
        })
        let targets = LoRATarget.encoderTargets.filter { modules.contains(fileModule($0)) }
        guard !targets.isEmpty else { throw CheckpointError("\(folder)/adapter_model.safetensors: no lora_A tensors") }
        settings.targets = targets
        try attachLoRA(settings)
        try lora!.read(file, backend: backend, peftName: peftName)
        for name in headParameters {
            let key = peftName(name)   // "base_model.model.classifier.…", or older peft's "….classifier.modules_to_save.…"
            for key in [key, key.replacingOccurrences(of: ".classifier.", with: ".classifier.modules_to_save.")] {
                guard let stored = file.entries[key] else { continue }
                guard stored.shape == layout.entry(name)!.shape else {
                    throw CheckpointError("\(folder)/adapter_model.safetensors: '\(key)' is \(stored.shape) but the model's is \(layout.entry(name)!.shape)"
                                          + (name.hasPrefix("classifier.") ? " (\(labels) labels)" : ""))
                }
                try file.floats(key).withUnsafeBytes { backend.upload(w(name), $0) }
            }
        }
    }
}
