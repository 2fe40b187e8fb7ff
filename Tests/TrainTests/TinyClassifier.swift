// The tiny golden BERT as a 2-label classifier over synthetic sentences, shared by the trainer
// and memory-plan tests.
import Backend
import Foundation
import Models
import Train
import XCTest

enum TinyClassifier {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Golden/tiny-bert").path

    /// The tiny BERT (vocabulary "w0"…) with hidden and attention dropout 0.1 and a fresh 2-label head.
    static func make(_ backend: Backend) throws -> Classifier {
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any])
        object["hidden_dropout_prob"] = 0.1
        object["attention_probs_dropout_prob"] = 0.1
        object.removeValue(forKey: "id2label"); object.removeValue(forKey: "label2id")
        let model = try BertModel(config: try BertConfig(object), labels: 2, backend: backend)
        try model.loadWeights(folder + "/model.safetensors", seed: 5, freshHead: true)
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (5..<120).map { "w\($0)" }
        return Classifier(model: model, tokenizer: try WordPieceTokenizer(tokens: tokens), labelNames: ["no", "yes"], maxLength: 16)
    }

    /// Sentences of random words: positives draw from w5…w61, negatives from w62…w119.
    static func data(_ count: Int, seed: UInt64) -> ([String], [Int32]) {
        var rng = SplitMix(seed: seed)
        var texts: [String] = [], labels: [Int32] = []
        for _ in 0..<count {
            let positive = Bool.random(using: &rng)
            let range = positive ? 5..<62 : 62..<120
            texts.append((0..<Int.random(in: 3...10, using: &rng)).map { _ in "w\(Int.random(in: range, using: &rng))" }.joined(separator: " "))
            labels.append(positive ? 1 : 0)
        }
        return (texts, labels)
    }
}
