// HF config.json for the BERT family. Known fields are read and validated into typed fields —
// the one source of truth: change `layers` and the saved num_hidden_layers follows. Every other
// key is kept as it was read and written back unchanged, so transformers loads what Retort saves.
import Backend
import Foundation

/// The encoder families Retort implements (HF model_type).
public enum ModelFamily: String, Sendable, Codable {
    case bert, mpnet
}

public struct BertConfig: Sendable {
    public var family: ModelFamily = .bert
    public var vocabSize, hiddenSize, layers, heads, intermediateSize, maxPositions, typeVocabSize: Int
    public var layerNormEps: Double
    public var hiddenDropout, attentionDropout, initializerRange: Double
    public var padTokenId: Int
    /// MPNet: buckets of the relative position bias shared by every layer (0 for BERT).
    public var relativeBuckets = 0
    public var id2label: [Int: String]
    /// The keys Retort does not model (transformers_version, hidden_act, …), written back as read.
    private var extra: Box

    /// How `retort quantize` stored the weights ("int8-dynamic"), nil for a float model. Kept in
    /// config.json as "retort_quantization" (transformers ignores the key).
    public var quantization: String? {
        get { extra.value[Self.quantizationKey] as? String }
        set {
            var values = extra.value
            values[Self.quantizationKey] = newValue
            extra = Box(values)
        }
    }
    static let quantizationKey = "retort_quantization"

    public var headSize: Int { hiddenSize / heads }
    /// The longest input, specials included: max_position_embeddings, less MPNet's padding_idx + 1
    /// (its positions start there).
    public var maxTokens: Int { family == .mpnet ? maxPositions - padTokenId - 1 : maxPositions }
    public var numLabels: Int { max(id2label.count, 2) }

    private final class Box: @unchecked Sendable { let value: [String: Any]; init(_ v: [String: Any]) { value = v } }

    public init(path: String) throws {
        try self.init(try configObject(path), source: path)
    }

    public init(_ object: [String: Any], source: String = "config.json") throws {
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let n = object[key] as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.intValue > 0 || (key == "pad_token_id" && n.intValue >= 0) {
                return n.intValue
            }
            if object[key] == nil || object[key] is NSNull, let fallback { return fallback }
            throw CheckpointError("\(source): \(key) must be a positive integer, found \(describeConfigValue(object[key]))")
        }
        func number(_ key: String, _ fallback: Double) throws -> Double {
            guard let value = object[key] else { return fallback }
            guard let n = value as? NSNumber, n.doubleValue >= 0 else { throw CheckpointError("\(source): \(key) must be a non-negative number") }
            return n.doubleValue
        }
        if let type = object["model_type"] as? String {
            guard let family = ModelFamily(rawValue: type) else {
                throw CheckpointError("\(source): model_type \"\(type)\" is not supported (Retort implements \"bert\" and \"mpnet\")")
            }
            self.family = family
        }
        if let act = object["hidden_act"] as? String, act != "gelu" {
            throw CheckpointError("\(source): hidden_act \"\(act)\" is not supported (Retort implements \"gelu\", the erf form)")
        }
        if let position = object["position_embedding_type"] as? String, position != "absolute" {
            throw CheckpointError("\(source): position_embedding_type \"\(position)\" is not supported (expected \"absolute\")")
        }
        vocabSize = try int("vocab_size")
        hiddenSize = try int("hidden_size")
        layers = try int("num_hidden_layers")
        heads = try int("num_attention_heads")
        intermediateSize = try int("intermediate_size")
        maxPositions = try int("max_position_embeddings", 512)
        // MPNet: no token types, positions from padding_idx + 1, a relative position bias.
        typeVocabSize = family == .mpnet ? 0 : try int("type_vocab_size", 2)
        padTokenId = try int("pad_token_id", family == .mpnet ? 1 : 0)
        if family == .mpnet { relativeBuckets = try int("relative_attention_num_buckets", 32) }
        layerNormEps = try number("layer_norm_eps", family == .mpnet ? 1e-5 : 1e-12)
        hiddenDropout = try number("hidden_dropout_prob", 0.1)
        attentionDropout = try number("attention_probs_dropout_prob", 0.1)
        initializerRange = try number("initializer_range", 0.02)
        guard hiddenSize % heads == 0 else {
            throw CheckpointError("\(source): hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(heads)")
        }
        guard padTokenId < vocabSize else { throw CheckpointError("\(source): pad_token_id \(padTokenId) is outside the vocabulary of \(vocabSize)") }
        id2label = try LabelMap.parse(object["id2label"], source: source)
        extra = Box(object.filter { !Self.modelledKeys.contains($0.key) })
        guard maxTokens >= 3 else {   // MPNet's positions start past padding_idx
            throw CheckpointError("\(source): max_position_embeddings \(maxPositions) leaves \(maxTokens) positions past pad_token_id \(padTokenId); "
                                  + "a text needs at least 3 (its specials and a token)")
        }
    }

    /// Keys held in typed fields (written from them, never from what was read).
    static let modelledKeys: Set<String> = [
        "model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "type_vocab_size", "pad_token_id", "relative_attention_num_buckets", "layer_norm_eps",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "id2label", "label2id"]

    /// The config as JSON: the typed fields, the keys kept as read, the labels and the
    /// architecture of a classifier.
    public var jsonObject: [String: Any] {
        var object = extra.value
        object["model_type"] = family.rawValue
        object["architectures"] = [family == .mpnet ? "MPNetForSequenceClassification" : "BertForSequenceClassification"]
        object["vocab_size"] = vocabSize
        object["hidden_size"] = hiddenSize
        object["num_hidden_layers"] = layers
        object["num_attention_heads"] = heads
        object["intermediate_size"] = intermediateSize
        object["max_position_embeddings"] = maxPositions
        if family == .mpnet { object["relative_attention_num_buckets"] = relativeBuckets } else { object["type_vocab_size"] = typeVocabSize }
        object["pad_token_id"] = padTokenId
        object["layer_norm_eps"] = layerNormEps
        object["hidden_dropout_prob"] = hiddenDropout
        object["attention_probs_dropout_prob"] = attentionDropout
        object["initializer_range"] = initializerRange
        if !id2label.isEmpty {
            (object["id2label"], object["label2id"]) = LabelMap.json(id2label)
        }
        return object
    }

    /// The JSON to save (config.json).
    public func json() throws -> Data {
        try JSONSerialization.data(withJSONObject: jsonObject, options: [.prettyPrinted, .sortedKeys])
    }
}

extension BertConfig {
    /// The embedding lookup of `tokens` tokens; the padding token's word row never trains (HF's padding_idx).
    public func embeddingShape(tokens: Int) -> EmbeddingShape {
        EmbeddingShape(tokens: tokens, channels: hiddenSize, vocabulary: vocabSize, positions: maxPositions, tokenTypes: typeVocabSize,
                       wordPadding: padTokenId, positionPadding: family == .mpnet ? padTokenId : -1)
    }
}

/// A model's config.json as a JSON object.
func configObject(_ path: String) throws -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError("\(path): cannot read the model config") }
    guard let parsed = try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed) else {
        throw CheckpointError("\(path): not valid JSON (cut short, or a stray character?)")
    }
    guard let object = parsed as? [String: Any] else { throw CheckpointError("\(path): not a JSON object") }
    return object
}

/// A config value as an error quotes it: a string in quotes (a number written as one), nothing.
func describeConfigValue(_ value: Any?) -> String {
    switch value {
    case nil, is NSNull: return "nothing"
    case let text as String: return "the string \"\(text)\""
    case let v?: return "\(v)"
    }
}
