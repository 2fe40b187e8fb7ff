// A recurrent student as eval, predict, compare and serve use it: its model (RecurrentModel), the
// tokenizer it reads with — its teacher's, copied into its folder (WordPiece for BERT-family
// teachers, byte-level BPE for decoders) — and its label names.
import Backend
import Foundation
import Models

/// The teacher's tokenizer, as a student keeps it.
public enum StudentTokenizer {
    case wordPiece(WordPieceTokenizer)
    case bytePairs(ByteLevelBPE, empty: Int32)

    /// "wordpiece" or "bpe" (config.json's `tokenizer`).
    public var kind: String { if case .wordPiece = self { return "wordpiece" } else { return "bpe" } }

    /// The tokenizer files in `folder` of the kind config.json names.
    /// `empty`: the token an empty text becomes (byte-level BPE).
    public static func load(folder: String, kind: String, empty: Int32) throws -> StudentTokenizer {
        switch kind {
        case "wordpiece": return .wordPiece(try WordPieceTokenizer(folder: folder))
        case "bpe":
            let json = (folder as NSString).appendingPathComponent("tokenizer.json")
            return .bytePairs(FileManager.default.fileExists(atPath: json) ? try ByteLevelBPE(tokenizerJSON: json) : try ByteLevelBPE(folder: folder),
                              empty: empty)
        default: throw CheckpointError("\(folder)/config.json: tokenizer '\(kind)' is not wordpiece or bpe")
        }
    }

    /// An example's ids as the teacher's classifier encodes it (its specials, cut to maxLength);
    /// never empty.
    public func encode(_ e: Example, maxLength: Int) -> Encoding {
        switch self {
        case .wordPiece(let w): return w.encode(e.text, e.pair, maxLength: maxLength)
        case .bytePairs(let bpe, let empty):
            let encoding = bpe.encoding(e.text, e.pair, maxLength: maxLength)
            return encoding.ids.isEmpty ? Encoding(ids: [empty]) : encoding
        }
    }
}

public final class RecurrentClassifier: TextClassifier {
    public let model: RecurrentModel
    public let tokenizer: StudentTokenizer
    public let labelNames: [String]
    public let maxLength: Int

    public init(model: RecurrentModel, tokenizer: StudentTokenizer, labelNames: [String], maxLength: Int) {
        self.model = model; self.tokenizer = tokenizer; self.labelNames = labelNames; self.maxLength = maxLength
    }

    /// A student folder (config.json with model_type retort-recurrent). `maxLength` nil: the length it was trained at.
    public static func load(folder: String, maxLength: Int?, backend: Backend) throws -> RecurrentClassifier {
        let model = try RecurrentModel.load(folder: folder, backend: backend, inference: true)
        let c = model.config
        return RecurrentClassifier(model: model, tokenizer: try StudentTokenizer.load(folder: folder, kind: c.tokenizer, empty: Int32(c.emptyTokenId)),
                                   labelNames: LabelMap.names(c.id2label), maxLength: maxLength ?? c.maxLength)
    }

    public func encode(_ examples: [Example]) -> [Encoding] { examples.map { tokenizer.encode($0, maxLength: maxLength) } }

    public var parameterCount: Int { model.layout.total }

    func arena(batch: Int, length: Int) throws -> RecurrentActivations {
        try RecurrentActivations(config: model.config, labels: model.labels, maxBatch: batch, maxLength: length, backend: model.backend,
                                 inference: true)
    }

    public func classify(_ encodings: [Encoding], batchSize: Int) throws -> [[Float]] {
        model.logits(encodings.map(\.ids), in: try arena(batch: batchSize, length: maxLength))
    }

    public func forwardSession(batchSize: Int) throws -> ([Encoding]) throws -> [[Float]] {
        let a = try arena(batch: batchSize, length: maxLength)
        return { self.model.logits($0.map(\.ids), in: a) }
    }

    public func speed(length requested: Int = 64, repeats: Int = 20) throws -> InferenceSpeed {
        let T = min(requested, maxLength), a = try arena(batch: 32, length: T), b = model.backend
        return InferenceSpeed.measure(length: T, vocabulary: model.config.vocabSize, repeats: repeats) { ids, B in
            a.load((0..<B).map { Array(ids[($0 * T)..<(($0 + 1) * T)]) }, pad: Int32(self.model.config.padTokenId), backend: b, forBackward: false)
            return { _ = b.floats(self.model.forward(a)) }
        }
    }
}
