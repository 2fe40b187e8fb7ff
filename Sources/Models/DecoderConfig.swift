// The configuration of a decoder-only language model: GPT-2 (HF model_type "gpt2") and the
// Llama family ("llama", "qwen2", "mistral": RMSNorm, RoPE, SwiGLU, grouped-query attention),
// read from an HF config.json or from a GGUF file's metadata. Known fields become typed fields;
// the rest of config.json is kept and written back unchanged, so transformers loads what Retort
// saves.
import Foundation

public enum DecoderFamily: String, Sendable {
    /// Learned positions, pre-LayerNorm, GELU (tanh form) MLP, fused c_attn, tied head.
    case gpt2
    /// RMSNorm, RoPE, SwiGLU MLP, grouped-query attention, optional q/k/v biases (Qwen2).
    case llama
}

public struct DecoderConfig: Sendable {
    public var family: DecoderFamily
    /// HF model_type as read ("gpt2", "llama", "qwen2", "mistral"), written back on save.
    public var modelType: String
    public var vocabSize, hiddenSize, layers, heads, keyValueHeads, headSize, intermediateSize, maxPositions: Int
    public var normEps: Double
    public var ropeTheta: Double = 10_000
    public var ropeScaling: RoPEScaling = .none
    public var tieWordEmbeddings: Bool
    /// Biases on q, k, v (GPT-2, Qwen2, Llama with attention_bias) and on the attention output
    /// (GPT-2, Llama with attention_bias) and the MLP (GPT-2, Llama with mlp_bias).
    public var queryKeyValueBias, outputBias, mlpBias: Bool
    public var bosTokenId, eosTokenIds: [Int]
    public var padTokenId: Int?
    public var id2label: [Int: String] = [:]
    /// Training dropout: GPT-2's embd_pdrop (on the embeddings), resid_pdrop (on each block's
    /// attention and MLP output projections) and attn_pdrop (on the attention probabilities),
    /// transformers' default 0.1 each; the Llama family's attention_dropout (default 0).
    public var embeddingDropout: Float = 0, residualDropout: Float = 0, attentionDropout: Float = 0
    /// How `retort quantize` stored the weights (config.json's "retort_quantization", which
    /// transformers ignores): nil for float weights, DecoderModel.int8Method for int8.
    public var quantization: String?
    /// config.json as read (nil when the model came from a GGUF), for the keys Retort does not model.
    private var extra: Box?

    private final class Box: @unchecked Sendable { let value: [String: Any]; init(_ v: [String: Any]) { value = v } }

    public enum RoPEScaling: Sendable, Equatable {
        case none
        case linear(factor: Double)
        /// Llama 3's frequency-dependent scaling (HF rope_type "llama3").
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Int)
    }

    public var channels: Int { hiddenSize }
    public var queryChannels: Int { heads * headSize }
    public var keyValueChannels: Int { keyValueHeads * headSize }
    public var numLabels: Int { max(id2label.count, 2) }

    /// RoPE's inverse frequencies θ^(−2i/HS), i < HS/2, after the configured scaling (HF's
    /// _compute_default/linear/llama3_rope_parameters), in double then rounded once.
    public var inverseFrequencies: [Float] {
        let half = headSize / 2
        return (0..<half).map { i -> Float in
            let inv = 1 / pow(ropeTheta, Double(2 * i) / Double(headSize))
            switch ropeScaling {
            case .none: return Float(inv)
            case .linear(let factor): return Float(inv / factor)
            case .llama3(let factor, let low, let high, let original):
                let wavelength = 2 * Double.pi / inv
                let lowWavelength = Double(original) / low, highWavelength = Double(original) / high
                if wavelength < highWavelength { return Float(inv) }
                if wavelength > lowWavelength { return Float(inv / factor) }
                let smooth = (Double(original) / wavelength - low) / (high - low)
                return Float((1 - smooth) * inv / factor + smooth * inv)
            }
        }
    }

    // MARK: config.json

    public init(path: String) throws {
        try self.init(try configObject(path), source: path)
    }

    public init(_ object: [String: Any], source: String = "config.json") throws {
        func value(_ keys: [String]) -> Any? { keys.lazy.compactMap { k in object[k].flatMap { $0 is NSNull ? nil : $0 } }.first }
        func int(_ keys: String..., fallback: Int? = nil) throws -> Int {
            if let n = value(keys) as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue > 0 { return n.intValue }
            if value(keys) == nil, let fallback { return fallback }
            throw CheckpointError("\(source): \(keys[0]) must be a positive integer, found \(describeConfigValue(value(keys)))")
        }
        func number(_ keys: String..., fallback: Double) throws -> Double {
            guard let v = value(keys) else { return fallback }
            guard let n = v as? NSNumber, n.doubleValue > 0 else { throw CheckpointError("\(source): \(keys[0]) must be a positive number") }
            return n.doubleValue
        }
        func probability(_ key: String, fallback: Float) throws -> Float {
            guard let v = value([key]) else { return fallback }
            guard let n = v as? NSNumber, n.doubleValue >= 0, n.doubleValue < 1 else {
                throw CheckpointError("\(source): \(key) must be a probability in [0, 1), found \(v)")
            }
            return n.floatValue
        }
        func ids(_ key: String) -> [Int] {
            if let n = object[key] as? NSNumber { return [n.intValue] }
            return (object[key] as? [NSNumber])?.map(\.intValue) ?? []
        }
        guard let type = object["model_type"] as? String else { throw CheckpointError("\(source): no model_type") }
        modelType = type
        switch type {
        case "gpt2":
            family = .gpt2
            hiddenSize = try int("n_embd", "hidden_size")
            layers = try int("n_layer", "num_hidden_layers")
            heads = try int("n_head", "num_attention_heads")
            keyValueHeads = heads
            maxPositions = try int("n_positions", "max_position_embeddings")
            intermediateSize = try int("n_inner", fallback: 4 * hiddenSize)
            normEps = try number("layer_norm_epsilon", fallback: 1e-5)
            if let act = object["activation_function"] as? String, act != "gelu_new" {
                throw CheckpointError("\(source): activation_function \"\(act)\" is not supported (GPT-2's is \"gelu_new\")")
            }
            tieWordEmbeddings = (object["tie_word_embeddings"] as? Bool) ?? true
            (queryKeyValueBias, outputBias, mlpBias) = (true, true, true)
            embeddingDropout = try probability("embd_pdrop", fallback: 0.1)
            residualDropout = try probability("resid_pdrop", fallback: 0.1)
            attentionDropout = try probability("attn_pdrop", fallback: 0.1)
        case "llama", "qwen2", "mistral":
            family = .llama
            hiddenSize = try int("hidden_size")
            layers = try int("num_hidden_layers")
            heads = try int("num_attention_heads")
            keyValueHeads = try int("num_key_value_heads", fallback: heads)
            maxPositions = try int("max_position_embeddings", fallback: 2048)
            intermediateSize = try int("intermediate_size")
            normEps = try number("rms_norm_eps", fallback: 1e-6)
            if let act = object["hidden_act"] as? String, act != "silu" {
                throw CheckpointError("\(source): hidden_act \"\(act)\" is not supported (Llama-family models use \"silu\")")
            }
            tieWordEmbeddings = (object["tie_word_embeddings"] as? Bool) ?? false
            let attentionBias = (object["attention_bias"] as? Bool) ?? false
            queryKeyValueBias = type == "qwen2" || attentionBias
            outputBias = type != "qwen2" && attentionBias
            mlpBias = (object["mlp_bias"] as? Bool) ?? false
            attentionDropout = try probability("attention_dropout", fallback: 0)
            // transformers ≥ 5 writes rope_parameters (θ and scaling together); older ones rope_theta and rope_scaling.
            let parameters = object["rope_parameters"] as? [String: Any]
            if let theta = parameters?["rope_theta"] as? NSNumber { ropeTheta = theta.doubleValue } else {
                ropeTheta = try number("rope_theta", fallback: 10_000)
            }
            ropeScaling = try Self.scaling(object["rope_scaling"] as? [String: Any] ?? parameters, source: source)
        default:
            throw CheckpointError("\(source): model_type \"\(type)\" is not a decoder Retort implements (gpt2, llama, qwen2, mistral)")
        }
        vocabSize = try int("vocab_size")
        headSize = family == .llama ? try int("head_dim", fallback: hiddenSize / heads) : hiddenSize / heads
        guard heads % keyValueHeads == 0 else {
            throw CheckpointError("\(source): num_attention_heads \(heads) is not a multiple of num_key_value_heads \(keyValueHeads)")
        }
        guard family == .llama || hiddenSize % heads == 0, headSize % 2 == 0, headSize <= 256 else {
            throw CheckpointError("\(source): head size \(headSize): Retort's decoders take even head sizes up to 256 that divide the hidden size")
        }
        bosTokenId = ids("bos_token_id")
        eosTokenIds = ids("eos_token_id")
        padTokenId = (object["pad_token_id"] as? NSNumber)?.intValue
        id2label = try LabelMap.parse(object["id2label"], source: source)
        quantization = object["retort_quantization"] as? String
        extra = Box(object)
    }

    private static func scaling(_ object: [String: Any]?, source: String) throws -> RoPEScaling {
        guard let object else { return .none }
        let type = (object["rope_type"] ?? object["type"]) as? String ?? "default"
        func number(_ key: String) throws -> Double {
            guard let n = object[key] as? NSNumber, n.doubleValue > 0 else {
                throw CheckpointError("\(source): rope_scaling.\(key) must be a positive number")
            }
            return n.doubleValue
        }
        switch type {
        case "default": return .none
        case "linear": return .linear(factor: try number("factor"))
        case "llama3":
            return .llama3(factor: try number("factor"), lowFrequencyFactor: try number("low_freq_factor"),
                           highFrequencyFactor: try number("high_freq_factor"),
                           originalContext: Int(try number("original_max_position_embeddings")))
        default:
            throw CheckpointError("\(source): rope_scaling type \"\(type)\" is not supported (default, linear, llama3)")
        }
    }

    // MARK: GGUF

    /// From a GGUF file's metadata (general.architecture "llama" or "gpt2"; SmolLM2 and most
    /// Llama-family GGUFs say "llama").
    public init(gguf: GGUFFile) throws {
        let source = gguf.path
        guard let arch = try gguf.string("general.architecture") else { throw CheckpointError("\(source): no general.architecture") }
        func int(_ key: String, fallback: Int? = nil) throws -> Int {
            if let n = try gguf.integer("\(arch).\(key)"), n > 0 { return n }
            if let fallback { return fallback }
            throw CheckpointError("\(source): \(arch).\(key) is missing or not a positive integer")
        }
        modelType = arch
        switch arch {
        case "llama", "qwen2":
            family = .llama
            ropeTheta = try gguf.number("\(arch).rope.freq_base") ?? 10_000
            normEps = try gguf.number("\(arch).attention.layer_norm_rms_epsilon") ?? 1e-6
            if let type = try gguf.string("\(arch).rope.scaling.type"), type != "none" {
                guard type == "linear", let factor = try gguf.number("\(arch).rope.scaling.factor") else {
                    throw CheckpointError("\(source): rope scaling \"\(type)\" is not supported (linear)")
                }
                ropeScaling = .linear(factor: factor)
            }
        case "gpt2":
            family = .gpt2
            normEps = try gguf.number("gpt2.attention.layer_norm_epsilon") ?? 1e-5
            (embeddingDropout, residualDropout, attentionDropout) = (0.1, 0.1, 0.1)   // GPT2Config's (a GGUF does not say)
        default:
            throw CheckpointError("\(source): architecture \"\(arch)\" is not a decoder Retort implements (llama, qwen2, gpt2)")
        }
        hiddenSize = try int("embedding_length")
        layers = try int("block_count")
        heads = try int("attention.head_count")
        keyValueHeads = try int("attention.head_count_kv", fallback: heads)
        intermediateSize = try int("feed_forward_length")
        maxPositions = try int("context_length", fallback: 2048)
        headSize = try int("attention.key_length", fallback: hiddenSize / heads)
        guard let tokens = try gguf.strings("tokenizer.ggml.tokens") else { throw CheckpointError("\(source): no tokenizer.ggml.tokens") }
        vocabSize = tokens.count
        guard heads % keyValueHeads == 0, headSize % 2 == 0 else {
            throw CheckpointError("\(source): \(heads) heads, \(keyValueHeads) key/value heads, head size \(headSize): not a valid attention")
        }
        tieWordEmbeddings = !gguf.tensors.contains { $0.name == "output.weight" }
        let hasBias = gguf.tensors.contains { $0.name == "blk.0.attn_q.bias" }
        (queryKeyValueBias, outputBias, mlpBias) = family == .gpt2 ? (true, true, true)
            : (hasBias, gguf.tensors.contains { $0.name == "blk.0.attn_output.bias" }, false)
        bosTokenId = try gguf.integer("tokenizer.ggml.bos_token_id").map { [$0] } ?? []
        eosTokenIds = try gguf.integer("tokenizer.ggml.eos_token_id").map { [$0] } ?? []
        padTokenId = try gguf.integer("tokenizer.ggml.padding_token_id")
    }

    // MARK: save

    /// config.json for transformers: what was read, with the fields Retort owns updated.
    public func json(architecture: String) throws -> Data {
        var object = extra?.value ?? [:]
        object["model_type"] = modelType == "gpt2" || family == .gpt2 ? "gpt2" : (modelType == "qwen2" ? "qwen2" : "llama")
        object["architectures"] = [architecture]
        object["vocab_size"] = vocabSize
        object["tie_word_embeddings"] = tieWordEmbeddings
        switch family {
        case .gpt2:
            object["n_embd"] = hiddenSize; object["n_layer"] = layers; object["n_head"] = heads
            object["n_positions"] = maxPositions; object["n_inner"] = intermediateSize; object["layer_norm_epsilon"] = normEps
            object["activation_function"] = "gelu_new"
        case .llama:
            object["hidden_size"] = hiddenSize; object["num_hidden_layers"] = layers; object["num_attention_heads"] = heads
            object["num_key_value_heads"] = keyValueHeads; object["head_dim"] = headSize
            object["intermediate_size"] = intermediateSize; object["max_position_embeddings"] = maxPositions
            object["rms_norm_eps"] = normEps; object["hidden_act"] = "silu"
            if object["model_type"] as? String == "llama" {
                object["attention_bias"] = queryKeyValueBias
                object["mlp_bias"] = mlpBias
            }
            var rope: [String: Any]
            switch ropeScaling {
            case .none: rope = ["rope_type": "default"]
            case .linear(let factor): rope = ["rope_type": "linear", "factor": factor]
            case .llama3(let factor, let low, let high, let original):
                rope = ["rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
                        "original_max_position_embeddings": original]
            }
            if object["rope_parameters"] != nil {   // the newer form, as read
                rope["rope_theta"] = ropeTheta
                object["rope_parameters"] = rope
            } else {
                object["rope_theta"] = ropeTheta
                object["rope_scaling"] = ropeScaling == .none ? NSNull() : rope
            }
        }
        if let first = bosTokenId.first { object["bos_token_id"] = first }
        if !eosTokenIds.isEmpty { object["eos_token_id"] = eosTokenIds.count == 1 ? eosTokenIds[0] as Any : eosTokenIds as Any }
        if let padTokenId { object["pad_token_id"] = padTokenId }
        if let quantization { object["retort_quantization"] = quantization } else { object.removeValue(forKey: "retort_quantization") }
        if !id2label.isEmpty {
            (object["id2label"], object["label2id"]) = LabelMap.json(id2label)
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
