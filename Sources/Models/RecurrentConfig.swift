// A recurrent student's shape, as its config.json holds it: everything needed to rebuild the
// model in Retort or in PyTorch (README: "Recurrent students"):
//   embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_token_id)
//   rnn       = nn.LSTM | nn.GRU | nn.RNN(embedding_size, hidden_size, num_layers, bidirectional=…)
//               (time-major; weights weight_ih_l{k}[_reverse] …, torch's gate orders)
//   pooled    = mean | max | last over each text's tokens (last: the forward direction's final
//               state beside the reverse direction's)
//   head      = nn.Sequential(nn.Linear(D·hidden_size, head_hidden_size), nn.Tanh(), nn.Linear(…, labels))
import Backend
import Foundation

public struct RecurrentConfig: Equatable, Sendable {
    public static let modelType = "retort-recurrent"
    public var cell: RecurrentCell
    public var vocabSize: Int
    public var embeddingSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var bidirectional: Bool
    public var pooling: PoolingMode
    public var headHiddenSize: Int
    public var padTokenId: Int
    /// Label names by class index (config.json's id2label).
    public var id2label: [Int: String] = [:]
    /// The tokenizer the student reads with: "wordpiece" (vocab.txt) or "bpe" (tokenizer.json).
    public var tokenizer: String = "wordpiece"
    /// Tokens per text the student was trained on.
    public var maxLength: Int = 128
    /// The one token an empty text becomes (a byte-level BPE teacher's rule: its end token).
    public var emptyTokenId: Int = 0

    public init(cell: RecurrentCell, vocabSize: Int, embeddingSize: Int, hiddenSize: Int, layers: Int, bidirectional: Bool,
                pooling: PoolingMode, headHiddenSize: Int, padTokenId: Int) {
        self.cell = cell; self.vocabSize = vocabSize; self.embeddingSize = embeddingSize; self.hiddenSize = hiddenSize
        self.layers = layers; self.bidirectional = bidirectional; self.pooling = pooling; self.headHiddenSize = headHiddenSize
        self.padTokenId = padTokenId
    }

    public var directions: Int { bidirectional ? 2 : 1 }
    /// The width of a layer's output and of the pooled features: D·H.
    public var outputSize: Int { directions * hiddenSize }

    /// Whether the config.json at `path` is a recurrent student's.
    public static func describes(_ path: String) -> Bool {
        guard let data = FileManager.default.contents(atPath: path),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return object["model_type"] as? String == modelType
    }

    public init(path: String) throws {
        let name = path   // errors name the folder too, as the other families' configs do
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError("\(path): cannot read the file") }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CheckpointError("\(path): not a JSON object")
        }
        func int(_ key: String) throws -> Int {
            guard let v = o[key] as? Int, v > 0 || key == "pad_token_id" else {
                throw CheckpointError("\(name): '\(key)' is missing or not a positive whole number")
            }
            return v
        }
        guard let cellName = o["cell"] as? String, let cell = RecurrentCell(rawValue: cellName) else {
            throw CheckpointError("\(name): 'cell' must be one of \(RecurrentCell.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let poolName = o["pooling"] as? String, let pooling = PoolingMode(rawValue: poolName) else {
            throw CheckpointError("\(name): 'pooling' must be one of \(PoolingMode.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.init(cell: cell, vocabSize: try int("vocab_size"), embeddingSize: try int("embedding_size"), hiddenSize: try int("hidden_size"),
                  layers: try int("num_layers"), bidirectional: o["bidirectional"] as? Bool ?? true, pooling: pooling,
                  headHiddenSize: try int("head_hidden_size"), padTokenId: try int("pad_token_id"))
        guard (0..<vocabSize).contains(padTokenId) else { throw CheckpointError("\(name): pad_token_id \(padTokenId) is outside the vocabulary of \(vocabSize)") }
        id2label = try LabelMap.parse(o["id2label"], source: name)
        tokenizer = o["tokenizer"] as? String ?? "wordpiece"
        maxLength = o["max_length"] as? Int ?? 128
        emptyTokenId = o["empty_token_id"] as? Int ?? padTokenId
        guard (3...(1 << 20)).contains(maxLength), (0..<vocabSize).contains(emptyTokenId) else {
            throw CheckpointError("\(name): max_length must be 3…1,048,576 (a text's specials and a token) and empty_token_id inside the vocabulary")
        }
    }

    public func json() throws -> Data {
        let labels = LabelMap.json(id2label)
        let object: [String: Any] = [
            "model_type": Self.modelType, "architectures": ["Recurrent\(cell.torchName)Classifier"], "cell": cell.rawValue,
            "vocab_size": vocabSize, "embedding_size": embeddingSize, "hidden_size": hiddenSize, "num_layers": layers,
            "bidirectional": bidirectional, "pooling": pooling.rawValue, "head_hidden_size": headHiddenSize, "head_activation": "tanh",
            "pad_token_id": padTokenId, "tokenizer": tokenizer, "max_length": maxLength, "empty_token_id": emptyTokenId,
            "id2label": labels.id2label, "label2id": labels.label2id,
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
