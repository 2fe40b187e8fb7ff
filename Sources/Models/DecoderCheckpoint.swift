// Loading and saving decoders: an HF folder (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json; F32, F16 or BF16) or a single GGUF file (its tensors dequantised
// to fp32; llama.cpp's names mapped to transformers', and its row permutation of q and k for RoPE
// undone). GPT-2's Conv1D weights are [in, out] on disk and [out, in] here. Saving writes
// transformers' names, so AutoModelForCausalLM / *ForSequenceClassification load the folder.
import Backend
import Foundation

extension DecoderModel {
    /// A model from `path`: an HF folder or a .gguf file. `labels` > 0 makes a classifier whose
    /// score head is read when the checkpoint has one (and sized `labels`), else initialised as
    /// HF does (normal, std 0.02).
    public static func load(_ path: String, labels: Int = 0, backend: Backend, inference: Bool = false,
                            seed: UInt64 = 42) throws -> DecoderModel {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw CheckpointError("\(path): no such model folder or .gguf file")
        }
        if !isFolder.boolValue {
            guard path.hasSuffix(".gguf") else { throw CheckpointError("\(path): a model is a folder (config.json …) or a .gguf file") }
            let gguf = try GGUFFile(path: path)
            let model = try DecoderModel(config: try DecoderConfig(gguf: gguf), labels: labels, backend: backend, inference: inference)
            try model.loadWeights(gguf: gguf, seed: seed)
            return model
        }
        let configPath = (path as NSString).appendingPathComponent("config.json")
        if !FileManager.default.fileExists(atPath: configPath),   // a folder the .gguf was unpacked into
           let gguf = (try? FileManager.default.contentsOfDirectory(atPath: path))?.filter({ $0.lowercased().hasSuffix(".gguf") }).sorted().first {
            throw CheckpointError("\(path): no config.json, but it holds \(gguf): give that file (\((path as NSString).appendingPathComponent(gguf)))")
        }
        let config = try DecoderConfig(path: configPath)
        if let method = config.quantization {
            guard method == int8Method else { throw CheckpointError("\(path): retort_quantization \"\(method)\" is not one Retort reads (\(int8Method))") }
            guard inference else {
                throw CheckpointError("\(path) holds int8 weights (retort quantize), for inference only: train from the float model it was made from")
            }
        }
        let model = try DecoderModel(config: config, labels: labels, backend: backend, inference: inference)
        let stored = try model.loadWeights(folder: path, seed: seed)
        if config.quantization != nil { try model.quantizeInt8(stored: stored) }
        return model
    }

    /// GPT-2's Conv1D weights, stored [in, out] by transformers.
    func isConv1D(_ name: String) -> Bool {
        config.family == .gpt2 && name.hasSuffix(".weight") && [".c_attn.", ".c_proj.", ".c_fc."].contains { name.contains($0) }
    }

    /// The safetensors files of an HF folder: model.safetensors, or the shards its index names.
    static func safetensorsFiles(folder: String) throws -> [SafeTensorsFile] {
        let single = (folder as NSString).appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: single) { return [try SafeTensorsFile(path: single)] }
        let indexPath = (folder as NSString).appendingPathComponent("model.safetensors.index.json")
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw CheckpointError("\(folder): no model.safetensors or model.safetensors.index.json")
        }
        guard let index = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              let map = index["weight_map"] as? [String: String] else {
            throw CheckpointError("\(indexPath): no weight_map")
        }
        return try Set(map.values).sorted().map { try SafeTensorsFile(path: (folder as NSString).appendingPathComponent($0)) }
    }

    /// Reads every parameter; returns the int8 weights of a quantized file (their dequantized
    /// values are uploaded), by parameter name.
    @discardableResult
    func loadWeights(folder: String, seed: UInt64) throws -> [String: StoredInt8] {
        let files = try Self.safetensorsFiles(folder: folder)
        var rng = NormalRandom(seed: seed), quantized: [String: StoredInt8] = [:]
        for entry in layout.entries {
            // GPT-2 checkpoints come with or without the "transformer." prefix.
            let candidates = [entry.name] + (entry.name.hasPrefix("transformer.") ? [String(entry.name.dropFirst("transformer.".count))] : [])
            guard let (file, key) = candidates.lazy.compactMap({ k in files.first { $0.entries[k] != nil }.map { ($0, k) } }).first else {
                guard entry.name == "score.weight" else {
                    throw CheckpointError("\(folder): missing tensor '\(entry.name)' (config.json implies \(config.layers) layers of width \(config.hiddenSize))")
                }
                upload(entry.name, (0..<entry.count).map { _ in 0.02 * rng.next() })
                continue
            }
            let stored = file.entries[key]!.shape, conv = isConv1D(entry.name)
            guard stored == (conv ? entry.shape.reversed() : entry.shape) else {
                throw CheckpointError("\(folder): tensor '\(key)' is \(stored) but config.json implies \(conv ? entry.shape.reversed() : entry.shape)")
            }
            if file.entries[key]!.dtype == .i8 {   // retort quantize's int8
                let int8 = try loadInt8(file, key: key, entry: entry, conv: conv)
                upload(entry.name, dequantizeRowsInt8(int8.values, scales: int8.scales, columns: entry.count / entry.shape[0]))
                quantized[entry.name] = int8
                continue
            }
            let values = try file.floats(key)
            upload(entry.name, conv ? transposed(values, rows: stored[0], columns: stored[1]) : values)
        }
        return quantized
    }

    /// llama.cpp's tensor names for this model's parameters (nil: none, e.g. a score head).
    func ggufName(_ name: String) -> String? {
        let parts = name.split(separator: ".").map(String.init)
        switch name {
        case "model.embed_tokens.weight", "transformer.wte.weight": return "token_embd.weight"
        case "transformer.wpe.weight": return "position_embd.weight"
        case "model.norm.weight", "transformer.ln_f.weight": return "output_norm.weight"
        case "transformer.ln_f.bias": return "output_norm.bias"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        guard parts.count >= 4, let l = Int(parts[2]) else { return nil }
        let module = parts[3..<(parts.count - 1)].joined(separator: "."), kind = parts.last!
        let table = ["input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                     "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
                     "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
                     "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                     "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"]
        return table[module].map { "blk.\(l).\($0).\(kind)" }
    }

    func loadWeights(gguf: GGUFFile, seed: UInt64) throws {
        var rng = NormalRandom(seed: seed)
        let name = (gguf.path as NSString).lastPathComponent
        for entry in layout.entries {
            guard let key = ggufName(entry.name), gguf.tensors.contains(where: { $0.name == key }) else {
                guard entry.name == "score.weight" else { throw CheckpointError("\(name): no tensor for \(entry.name) (\(ggufName(entry.name) ?? "unmapped"))") }
                upload(entry.name, (0..<entry.count).map { _ in 0.02 * rng.next() })
                continue
            }
            let tensor = try gguf.tensor(key)
            // GGUFFile gives shapes outermost first, transformers' order ([out, in]); GPT-2's Conv1D
            // tensors were transposed by the converter, so they read as [out, in] too.
            guard tensor.shape == entry.shape else {
                throw CheckpointError("\(name): tensor \(key) is \(tensor.shape) but the metadata implies \(entry.shape)")
            }
            var values = try gguf.floats(key)
            // Only llama.cpp's Llama converter permutes q and k (Qwen2's keeps HF's layout).
            let permuted = config.modelType == "llama"
            if permuted, key.hasSuffix("attn_q.weight") || key.hasSuffix("attn_k.weight") {
                values = unpermuteRoPE(values, heads: key.hasSuffix("attn_q.weight") ? config.heads : config.keyValueHeads,
                                       headSize: config.headSize, columns: entry.shape[1])
            } else if permuted, key.hasSuffix("attn_q.bias") || key.hasSuffix("attn_k.bias") {
                values = unpermuteRoPE(values, heads: key.hasSuffix("attn_q.bias") ? config.heads : config.keyValueHeads,
                                       headSize: config.headSize, columns: 1)
            }
            upload(entry.name, values)
        }
    }

    /// llama.cpp's converter reorders each head's rows from HF's halves (i, i + HS/2) to
    /// interleaved pairs (2i, 2i + 1); this puts them back: HF row h·HS + half·HS/2 + i is GGUF
    /// row h·HS + 2i + half.
    func unpermuteRoPE(_ values: [Float], heads: Int, headSize: Int, columns: Int) -> [Float] {
        var out = values
        let half = headSize / 2
        for h in 0..<heads {
            for side in 0..<2 {
                for i in 0..<half {
                    let to = (h * headSize + side * half + i) * columns, from = (h * headSize + 2 * i + side) * columns
                    out.replaceSubrange(to..<(to + columns), with: values[from..<(from + columns)])
                }
            }
        }
        return out
    }

    func upload(_ name: String, _ values: [Float]) {
        values.withUnsafeBytes { backend.upload(layout.view(weights, name), $0) }
    }

    func transposed<Element: Numeric>(_ values: [Element], rows: Int, columns: Int) -> [Element] {
        var out = [Element](repeating: 0, count: values.count)
        for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = values[r * columns + c] } }
        return out
    }

    /// config.json and model.safetensors (transformers' names and layouts) into `folder`; the
    /// parameters named in `int8` as I8 with per-row "<name>_scale" (DecoderQuantization.swift).
    public func save(folder: String, int8: Set<String> = []) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let host = backend.floats(try mergedWeights())
        var floats: [SafeTensorsWriter.Tensor] = [], integers: [SafeTensorsWriter.Tensor] = []
        for e in layout.entries {
            let values = Array(host[e.offset..<(e.offset + e.count)]), conv = isConv1D(e.name)
            let shape = conv ? Array(e.shape.reversed()) : e.shape
            if int8.contains(e.name) {
                let (q, scales) = quantizeRowsInt8(values, rows: e.shape[0], columns: e.count / e.shape[0])
                floats.append(SafeTensorsWriter.Tensor(name: e.name + "_scale", shape: [e.shape[0]], values: scales))
                integers.append(SafeTensorsWriter.Tensor(name: e.name, shape: shape, int8: conv ? transposed(q, rows: e.shape[0], columns: e.shape[1]) : q))
            } else {
                floats.append(SafeTensorsWriter.Tensor(name: e.name, shape: shape, values: conv ? transposed(values, rows: e.shape[0], columns: e.shape[1]) : values))
            }
        }
        // F32 tensors first, so each stays 4-byte aligned in the file.
        try SafeTensorsWriter.write(floats + integers, to: (folder as NSString).appendingPathComponent("model.safetensors"))
        let architecture = (config.family == .gpt2 ? "GPT2" : config.modelType == "qwen2" ? "Qwen2" : "Llama")
            + (labels > 0 ? "ForSequenceClassification" : config.family == .gpt2 ? "LMHeadModel" : "ForCausalLM")
        var c = config
        c.quantization = int8.isEmpty ? nil : Self.int8Method
        if labels > 0, c.id2label.count != labels { c.id2label = Dictionary(uniqueKeysWithValues: (0..<labels).map { ($0, "LABEL_\($0)") }) }
        try writeAtomically(try c.json(architecture: architecture), to: (folder as NSString).appendingPathComponent("config.json"))
    }
}
