// A decoder fine-tuned as a classifier (a folder retort finetune wrote, or any HF
// *ForSequenceClassification folder of a decoder family): its tokenizer, label names and the
// batched logits of each text's last token — what eval and predict use.
import Backend
import Foundation
import Models

public final class DecoderClassifier: TextClassifier {
    public let model: DecoderModel
    public let tokenizer: DecoderTokenizer
    public let labelNames: [String]
    public let maxLength: Int

    /// `folder`: config.json with id2label (two or more labels) and a score head; `packWeights`:
    /// its weights also packed for the backend's matmuls (packForInference).
    public static func load(folder: String, maxLength: Int?, backend: Backend, packWeights: Bool = true) throws -> DecoderClassifier {
        let config = try DecoderConfig(path: (folder as NSString).appendingPathComponent("config.json"))
        guard config.id2label.count >= 2 else {
            throw DataError("\(folder): not a classifier (config.json has no id2label); generate text with it instead: retort generate --model \(folder)")
        }
        let length = maxLength ?? min(128, config.maxPositions)
        guard length <= config.maxPositions else {
            throw InvalidSetting("\(Setting.maxLength) \(length) exceeds the model's context of \(config.maxPositions) positions")
        }
        let model = try DecoderModel.load(folder, labels: config.id2label.count, backend: backend, inference: true)
        if packWeights { try model.packForInference() }
        return DecoderClassifier(model: model, tokenizer: try DecoderTokenizer(model: folder, config: config),
                                 labelNames: LabelMap.names(config.id2label), maxLength: length)
    }

    init(model: DecoderModel, tokenizer: DecoderTokenizer, labelNames: [String], maxLength: Int) {
        self.model = model; self.tokenizer = tokenizer; self.labelNames = labelNames; self.maxLength = maxLength
    }

    public func encode(_ examples: [Example]) -> [Encoding] {
        examples.map { Self.encoding($0, tokenizer: tokenizer, maxLength: maxLength) }
    }

    /// An example as a decoder classifier reads it, as HF's tokenizer(text, pair, truncation,
    /// max_length): the tokenizer's prefix (a BOS) before each text, a pair's second text after
    /// the first, cut longest-first; an empty text is its end token.
    static func encoding(_ example: Example, tokenizer: DecoderTokenizer, maxLength: Int) -> Encoding {
        let encoding = tokenizer.bpe.encoding(example.text, example.pair, maxLength: maxLength)
        return encoding.ids.isEmpty ? Encoding(ids: [tokenizer.endTokens.min() ?? 0]) : encoding
    }

    public func forwardSession(batchSize: Int) throws -> ([Encoding]) throws -> [[Float]] {
        let task = try DecoderTask(model: model, maxBatch: batchSize, maxLength: maxLength, inference: true)
        return { try task.logits($0, batchSize: batchSize) }
    }

    public func classify(_ encodings: [Encoding], batchSize: Int) throws -> [[Float]] {
        try forwardSession(batchSize: batchSize)(encodings)
    }

    public var parameterCount: Int { model.weights.count + (model.lora?.layout.total ?? 0) }

    public func speed(length requested: Int = 64, repeats: Int = 20) throws -> InferenceSpeed {
        let T = min(requested, maxLength)
        let task = try DecoderTask(model: model, maxBatch: 32, maxLength: T, inference: true)
        let (a, b) = (task.activations, model.backend)
        return InferenceSpeed.measure(length: T, vocabulary: model.config.vocabSize, repeats: repeats) { ids, B in
            a.load(ids: ids, mask: [Int32](repeating: 1, count: B * T), batch: B, length: T, backend: b)
            return { self.model.forward(a); _ = b.floats(self.model.lastTokenLogits(a)) }
        }
    }
}
