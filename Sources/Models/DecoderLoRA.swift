// LoRA on a decoder, with PEFT's target names: GPT-2's c_attn, c_proj (the attention's and the
// MLP's output projections both, as PEFT matches the suffix) and c_fc; the Llama family's
// q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj and down_proj. The base is frozen; a
// classifier's score head trains fully (PEFT's modules_to_save). Saved and read as PEFT adapters
// (adapter_config.json + adapter_model.safetensors, names base_model.model.<module>.lora_A.weight;
// GPT-2's with fan_in_fan_out, its Conv1D layers being [in, out] in transformers).
import Backend
import Foundation

extension DecoderModel {
    /// The modules `targets` adapt, in layout order.
    func loraModules(_ targets: [LoRATarget]) throws -> [LoRAAdapters.Module] {
        let allowed = config.family == .gpt2 ? LoRATarget.gpt2Targets : LoRATarget.llamaTargets
        if let other = targets.first(where: { !allowed.contains($0) }) {
            throw CheckpointError("LoRA target \(other.rawValue) is not a module of \(config.modelType); it has \(allowed.map(\.rawValue).joined(separator: ", "))")
        }
        let suffixes = Set(targets.map { "." + $0.rawValue })
        let names = layout.entries.map(\.name).filter { $0.hasSuffix(".weight") && ($0.contains(".h.") || $0.contains(".layers.")) }
            .map { String($0.dropLast(".weight".count)) }.filter { name in suffixes.contains { name.hasSuffix($0) } }
        return names.enumerated().map { i, name in
            let shape = layout.entry(name + ".weight")!.shape
            return LoRAAdapters.Module(name: name, inFeatures: shape[1], outFeatures: shape[0], site: UInt64(1000 + i), slot: i)
        }
    }

    /// Attaches fresh adapters: from now on only they (and a classifier's score head) train.
    public func attachLoRA(_ config: LoRAConfig, seed: UInt64 = 42) throws {
        let modules = try loraModules(config.targets)
        lora = try LoRAAdapters(config: config, modules: modules, backend: backend, seed: seed)
        try freeze(Set(layout.entries.map(\.name).filter { $0 != "score.weight" }))
    }

    /// The weights with every adapter merged in (a copy; the model is unchanged), or the weights themselves without adapters.
    public func mergedWeights() throws -> Tensor {
        try lora?.mergedCopy(of: weights, model: layout, backend: backend) ?? weights
    }

    /// adapter_config.json + adapter_model.safetensors (the adapters, and a classifier's score head).
    public func saveAdapter(folder: String, baseModel: String) throws {
        guard let lora else { throw CheckpointError("no LoRA adapters to save") }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var tensors = lora.tensors(backend: backend) { "base_model.model." + $0 }
        if labels > 0 {
            tensors.append(.init(name: "base_model.model.score.weight", shape: [labels, config.hiddenSize], values: backend.floats(w("score.weight"))))
        }
        try SafeTensorsWriter.write(tensors, to: folder + "/adapter_model.safetensors")
        var object = lora.config.peftJSON(baseModel: baseModel)
        object["task_type"] = labels > 0 ? "SEQ_CLS" : "CAUSAL_LM"
        object["target_modules"] = lora.config.targets.map(\.rawValue).sorted()
        object["modules_to_save"] = labels > 0 ? ["score"] as Any : NSNull()
        object["fan_in_fan_out"] = config.family == .gpt2
        try writeAtomically(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
                            to: folder + "/adapter_config.json")
    }

    /// Attaches the adapters of a PEFT folder (and its score head, when it has one).
    public func loadAdapter(folder: String) throws {
        let (object, settings) = try LoRAConfig.peft(folder: folder)
        let names: [String]
        if let list = object["target_modules"] as? [String] { names = list } else if let one = object["target_modules"] as? String { names = [one] } else { names = [] }
        let targets = try names.map { name -> LoRATarget in
            guard let t = LoRATarget(rawValue: name) else {
                throw CheckpointError("\(folder)/adapter_config.json: target module \(name) is not one Retort adapts (\(LoRATarget.gpt2Targets.map(\.rawValue) + LoRATarget.llamaTargets.map(\.rawValue)))")
            }
            return t
        }
        guard !targets.isEmpty else { throw CheckpointError("\(folder)/adapter_config.json: no target_modules") }
        var config = settings
        config.targets = targets
        try attachLoRA(config)
        let file = try SafeTensorsFile(path: folder + "/adapter_model.safetensors")
        try lora!.read(file, backend: backend) { "base_model.model." + $0 }
        guard labels > 0 else { return }
        for key in ["base_model.model.score.weight", "base_model.model.score.modules_to_save.default.weight", "base_model.model.score.modules_to_save.weight"] {
            guard let stored = file.entries[key] else { continue }
            guard stored.shape == [labels, self.config.hiddenSize] else {
                throw CheckpointError("\(folder)/adapter_model.safetensors: '\(key)' is \(stored.shape) but the model has \(labels) labels")
            }
            try file.floats(key).withUnsafeBytes { backend.upload(w("score.weight"), $0) }
        }
    }
}

extension LoRAConfig {
    /// The adapter_config.json fields every family writes the same way.
    func peftJSON(baseModel: String) -> [String: Any] {
        ["peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "bias": "none", "inference_mode": true,
         "init_lora_weights": true, "use_rslora": rsLoRA, "use_dora": false, "base_model_name_or_path": baseModel]
    }

    /// A PEFT folder's adapter_config.json and the rank, alpha, dropout and rsLoRA it sets (no targets).
    static func peft(folder: String) throws -> ([String: Any], LoRAConfig) {
        let configPath = folder + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError("\(configPath): missing or not JSON")
        }
        guard (object["peft_type"] as? String) == "LORA", let r = object["r"] as? Int, let alpha = (object["lora_alpha"] as? NSNumber)?.doubleValue else {
            throw CheckpointError("\(configPath): not a LoRA adapter (peft_type, r and lora_alpha are required)")
        }
        return (object, LoRAConfig(rank: r, alpha: alpha, dropout: (object["lora_dropout"] as? NSNumber)?.doubleValue ?? 0, targets: [],
                                   rsLoRA: object["use_rslora"] as? Bool ?? false))
    }
}
