// config.json's id2label and label2id, as every model family (encoder, decoder, recurrent) reads
// and writes them: class numbers 0…n−1, each mapped to its own name. A user's checkpoint that
// breaks that is a one-line error here, not a wrong name or a trap later.
import Foundation

public enum LabelMap {
    /// id2label from a config's value (absent: no labels, [:]). `source` names the file in errors.
    public static func parse(_ value: Any?, source: String) throws -> [Int: String] {
        guard let value, !(value is NSNull) else { return [:] }
        guard let map = value as? [String: Any] else {
            throw CheckpointError("\(source): id2label must be an object of class numbers to names, as {\"0\": \"negative\", \"1\": \"positive\"}")
        }
        var labels: [Int: String] = [:]
        for (key, value) in map {
            guard let id = Int(key), id >= 0, let name = value as? String else {
                throw CheckpointError("\(source): id2label entry \"\(key)\" is not an index mapped to a name")
            }
            guard labels[id] == nil else { throw CheckpointError("\(source): id2label gives class \(id) twice (entry \"\(key)\")") }
            labels[id] = name
        }
        guard Set(labels.keys) == Set(0..<labels.count) else {
            throw CheckpointError("\(source): id2label ids are \(labels.keys.sorted().map(String.init).joined(separator: ", ")), not 0…\(labels.count - 1)")
        }
        guard Set(labels.values).count == labels.count else {
            throw CheckpointError("\(source): id2label names a label twice (\(names(labels).joined(separator: ", "))); give each class its own name")
        }
        return labels
    }

    /// The names in class order.
    public static func names(_ id2label: [Int: String]) -> [String] { id2label.sorted { $0.key < $1.key }.map(\.value) }

    /// The two JSON objects a config saves: id2label with string keys, and label2id.
    public static func json(_ id2label: [Int: String]) -> (id2label: [String: String], label2id: [String: Int]) {
        (Dictionary(uniqueKeysWithValues: id2label.map { (String($0.key), $0.value) }),
         Dictionary(id2label.map { ($0.value, $0.key) }, uniquingKeysWith: min))
    }
}
