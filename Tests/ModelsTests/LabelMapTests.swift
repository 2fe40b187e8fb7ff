// id2label as each model family's config reads it (LabelMap): the same checks and the same
// one-line errors for an encoder's, a decoder's and a recurrent student's config.json.
import Foundation
@testable import Models
import XCTest

final class LabelMapTests: XCTestCase {
    /// Each family's config read from `object` (a recurrent one through a file, as it is only read so).
    func readers() throws -> [(String, ([String: Any]?) throws -> [Int: String])] {
        let bert: [String: Any] = ["model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu"]
        let decoder = try configObject(golden.appendingPathComponent("tiny-llama/config.json").path)
        let recurrent = try XCTUnwrap(JSONSerialization.jsonObject(with: RecurrentConfig(
            cell: .lstm, vocabSize: 10, embeddingSize: 4, hiddenSize: 4, layers: 1, bidirectional: true, pooling: .max,
            headHiddenSize: 4, padTokenId: 0).json()) as? [String: Any])
        func with(_ base: [String: Any], _ labels: [String: Any]?) -> [String: Any] {
            var object = base
            object["id2label"] = labels
            object["label2id"] = nil
            return object
        }
        return [("bert", { try BertConfig(with(bert, $0)).id2label }),
                ("decoder", { try DecoderConfig(with(decoder, $0)).id2label }),
                ("recurrent", { labels in
                    let file = FileManager.default.temporaryDirectory.appendingPathComponent("labelmap-\(UUID().uuidString).json")
                    defer { try? FileManager.default.removeItem(at: file) }
                    try JSONSerialization.data(withJSONObject: with(recurrent, labels)).write(to: file)
                    return try RecurrentConfig(path: file.path).id2label
                })]
    }

    func testEveryFamilyReadsAndRefusesId2labelAlike() throws {
        for (family, read) in try readers() {
            XCTAssertEqual(try read(["1": "positive", "0": "negative"]), [0: "negative", 1: "positive"], family)
            XCTAssertEqual(try read(nil), [:], family)
            for (labels, expected) in [
                (["zero": "a"], "id2label entry \"zero\" is not an index mapped to a name"),
                (["0": "a", "1": 7], "id2label entry \"1\" is not an index mapped to a name"),
                (["0": "a", "00": "b"], "id2label gives class 0 twice"),
                (["0": "a", "5": "b"], "id2label ids are 0, 5, not 0…1"),
                (["0": "toxic", "1": "toxic"], "id2label names a label twice (toxic, toxic); give each class its own name"),
            ] as [([String: Any], String)] {
                XCTAssertThrowsError(try read(labels), "\(family) \(labels)") {
                    XCTAssertTrue("\($0)".contains(expected), "\(family): \($0)")
                }
            }
        }
    }

    func testWrittenMapsReadBack() throws {
        let (id2label, label2id) = LabelMap.json([1: "b", 0: "a", 2: "c"])
        XCTAssertEqual(id2label, ["0": "a", "1": "b", "2": "c"])
        XCTAssertEqual(label2id, ["a": 0, "b": 1, "c": 2])
        XCTAssertEqual(try LabelMap.parse(id2label, source: "x"), [0: "a", 1: "b", 2: "c"])
        XCTAssertEqual(LabelMap.names([1: "b", 0: "a"]), ["a", "b"])
    }
}
