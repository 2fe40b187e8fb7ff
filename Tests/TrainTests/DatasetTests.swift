// Loading labelled data (CSV, TSV, JSONL; columns by name or index), its one-line errors,
// label ids, the seeded split, and the metrics against hand-computed values.
import Foundation
import Models
import Train
import XCTest

final class DatasetTests: XCTestCase {
    var directory: String!
    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "retort-data-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func file(_ name: String, _ text: String) throws -> String {
        let path = directory + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testTSVByIndexCSVByNameAndJSONL() throws {
        let tsv = try Dataset.load(try file("a.tsv", "1\tgood film\n0\tbad film\n"), columns: ColumnSpec(text: .index(1), label: .index(0)))
        XCTAssertEqual(tsv.map(\.text), ["good film", "bad film"])
        XCTAssertEqual(tsv.map(\.label), ["1", "0"])
        let csv = try Dataset.load(try file("b.csv", "id,tweet,class\n1,\"hi, you\",2\n2,\"multi\nline\",0\n"),
                                   columns: ColumnSpec(text: .name("tweet"), label: .name("class")))
        XCTAssertEqual(csv.map(\.text), ["hi, you", "multi\nline"])
        XCTAssertEqual(csv.map(\.line), [2, 3])
        let jsonl = try Dataset.load(try file("c.jsonl", "{\"text\": \"a\", \"label\": 1, \"other\": \"b\"}\n\n{\"text\": \"c\", \"label\": \"x\", \"other\": \"d\"}\n"),
                                     columns: ColumnSpec(text: .name("text"), pair: .name("other"), label: .name("label")))
        XCTAssertEqual(jsonl.map(\.pair), ["b", "d"])
        XCTAssertEqual(jsonl.map(\.label), ["1", "x"])
        // JSON booleans are label names as written; the numbers 1 and 0 stay numbers.
        let booleans = try Dataset.load(try file("d.jsonl", "{\"text\": \"a\", \"label\": true}\n{\"text\": \"b\", \"label\": false}\n"
                                                 + "{\"text\": true, \"label\": 0}\n{\"text\": \"d\", \"label\": 1.5}\n"),
                                        columns: ColumnSpec(text: .name("text"), label: .name("label")))
        XCTAssertEqual(booleans.map(\.label), ["true", "false", "0", "1.5"])
        XCTAssertEqual(booleans.map(\.text), ["a", "b", "true", "d"])
    }

    /// Columns given the wrong way round (a file of `label,text` read with --text-column 0): every
    /// "label" a sentence of its own. Refused, saying so, before the header check or the split could
    /// list the sentences as labels; 20 labels over 200 records is a many-class set, and trains.
    func testLabelsThatAreTextsAskWhetherTheColumnsAreSwapped() throws {
        let swapped = try file("swapped.csv", (0..<40).map { "\($0 % 2 == 0 ? "-1" : "1"),\"review number \($0), quite long\"" }.joined(separator: "\n") + "\n")
        XCTAssertThrowsError(try LabelledData.load(DataFiles(train: swapped, columns: ColumnSpec(text: .index(0), label: .index(1))), seed: 1)) {
            XCTAssertEqual("\($0)", "\(swapped): 40 different labels in 40 records (such as 'review number 0, quite long'); a label is a class "
                           + "that many records share: check --label-column; the text column holds only 2 different values ('-1', '1'): "
                           + "are --text-column and --label-column swapped?")
        }
        // One example each of 30 intents (with a dev file): labels without spaces are classes, not texts.
        let oneShot = try file("one-shot.csv", (0..<30).map { "intent_\($0),\"please do thing \($0)\"" }.joined(separator: "\n") + "\n")
        XCTAssertEqual(try LabelledData.load(DataFiles(train: oneShot, dev: oneShot, columns: ColumnSpec(text: .index(1), label: .index(0))),
                                             seed: 1).names.count, 30)
        let manyClasses = try file("intents.csv", (0..<200).map { "intent\($0 % 20),\"please do thing \($0)\"" }.joined(separator: "\n") + "\n")
        XCTAssertEqual(try LabelledData.load(DataFiles(train: manyClasses, columns: ColumnSpec(text: .index(1), label: .index(0))),
                                             seed: 1).names.count, 20)
    }

    /// Only the text wanted: a .md or .log is one text per line (its first line too), but a file
    /// of another extension whose first line holds tabs is a table read by its header.
    func testOtherExtensionsAreLinesUnlessTabbed() throws {
        let plain = ColumnSpec(text: .name("text"))
        XCTAssertEqual(try Dataset.load(try file("notes.md", "text\n\nsecond line\n"), columns: plain).map(\.text), ["text", "second line"])
        let table = try Dataset.load(try file("data.dat", "label\ttext\n1\tgood film\n"), columns: plain)
        XCTAssertEqual(table.map(\.text), ["good film"])
        XCTAssertEqual(table.map(\.line), [2])
        XCTAssertEqual(try Dataset.load(try file("tabbed.txt", "a\tb\n"), columns: plain).map(\.text), ["a\tb"], ".txt stays lines")
    }

    func testOneLineErrors() throws {
        let spec = ColumnSpec(text: .name("text"), label: .name("label"))
        let cases: [(String, String, ColumnSpec, String)] = [
            ("missing.csv", "a,b\n1,2\n", spec, "no column named 'text' (the header has: a, b)"),
            ("short.tsv", "1\tok\n0\n", ColumnSpec(text: .index(1), label: .index(0)), "line 2: no column 1 (it has 1 fields"),
            ("empty.csv", "text,label\n", spec, "no examples"),
            ("quote.csv", "text,label\n\"open,1\n", spec, "line 2: a quoted field is never closed"),
            ("bad.jsonl", "{\"text\": \"a\", \"label\": 1}\nnot json\n", spec, "line 2: not a JSON object"),
            ("key.jsonl", "{\"text\": \"a\"}\n", spec, "line 1: no key 'label'"),
            ("null.jsonl", "{\"text\": \"a\", \"label\": null}\n", spec, "line 1: 'label' is null: give it a value, or remove the record"),
            // A text cut at an unquoted comma: more fields than the header, or than most records.
            ("comma.csv", "label,text\n0,not good, in fact bad\n", ColumnSpec(text: .name("text"), label: .name("label")),
             "line 2 has 3 fields, the header 2 (put a text that holds commas in double quotes)"),
            ("ragged.tsv", "1\tok\n0\tbad\n1\tgood\tthing\n", ColumnSpec(text: .index(1), label: .index(0)),
             "line 3 has 3 fields, most records 2 (a text may not hold a tab)"),
        ]
        for (name, text, columns, expected) in cases {
            let path = try file(name, text)
            XCTAssertThrowsError(try Dataset.load(path, columns: columns), name) { error in
                XCTAssertTrue("\(error)".contains(expected) && "\(error)".contains(name), "\(name): \(error)")
            }
        }
        let utf16 = directory + "/utf16.txt"
        try XCTUnwrap("good film\n".data(using: .utf16)).write(to: URL(fileURLWithPath: utf16))   // with a byte-order mark
        XCTAssertThrowsError(try Dataset.load(utf16, columns: ColumnSpec(text: .name("text")))) {
            XCTAssertTrue("\($0)".contains("utf16.txt: not UTF-8 text (UTF-16, or NUL bytes)"), "\($0)")
        }
        // Empty trailing fields, and a first record short of an optional last column, are fine.
        let trailing = try Dataset.load(try file("trailing.csv", "text,label\nhi,1,\nyo,0, \n"), columns: spec)
        XCTAssertEqual(trailing.map(\.label), ["1", "0"])
        let optional = try Dataset.load(try file("optional.tsv", "1\tok\n0\tbad\tnote\n1\tgood\tnote\n"),
                                        columns: ColumnSpec(text: .index(1), label: .index(0)))
        XCTAssertEqual(optional.map(\.text), ["ok", "bad", "good"])
        let examples = [Example(text: "t", label: "maybe", line: 7)]
        XCTAssertThrowsError(try Dataset.labelIds(examples, names: ["no", "yes"], path: "dev.tsv")) {
            XCTAssertEqual("\($0)", "dev.tsv: line 7: label 'maybe' is not one of the model's labels (no, yes)")
        }
        XCTAssertThrowsError(try Dataset.labelIds([Example(text: "sentence", label: "label", line: 1)], names: ["0", "1"], path: "test.tsv")) {
            XCTAssertTrue("\($0)".hasSuffix("(0, 1); a header? then name the columns (--text-column NAME --label-column NAME) instead of their indexes"),
                          "\($0)")
        }
        // A number on line 1 is a label the model lacks, not a header's column name.
        XCTAssertThrowsError(try Dataset.labelIds([Example(text: "fine", label: "2", line: 1)], names: ["0", "1"], path: "dev.tsv")) {
            XCTAssertEqual("\($0)", "dev.tsv: line 1: label '2' is not one of the model's labels (0, 1)")
        }
        XCTAssertThrowsError(try Dataset.labelIds([Example(text: "t", label: "1", line: 2)], names: ["0.0", "1.0"], path: "dev.tsv")) {
            XCTAssertEqual("\($0)", "dev.tsv: line 2: label '1' is not one of the model's labels (0.0, 1.0): it is written '1.0' there; "
                           + "write the labels the same way in every file")
        }
    }

    func testLabelOrderAndSeededSplit() {
        func ex(_ labels: [String]) -> [Example] { labels.enumerated().map { Example(text: "\($0.offset)", label: $0.element, line: $0.offset) } }
        XCTAssertEqual(Dataset.labelNames(ex(["1", "-1", "1", "10", "2"])), ["-1", "1", "2", "10"])
        XCTAssertEqual(Dataset.labelNames(ex(["pos", "neg", "neutral"])), ["neg", "neutral", "pos"])
        let all = ex((0..<100).map { "\($0 % 2)" })
        let (train, dev) = Dataset.split(all, fraction: 0.1, seed: 3)
        XCTAssertEqual(dev.count, 10)
        XCTAssertEqual(train.count, 90)
        XCTAssertEqual(Set(train.map(\.text) + dev.map(\.text)).count, 100)
        XCTAssertEqual(Dataset.split(all, fraction: 0.1, seed: 3).1.map(\.text), dev.map(\.text))
        XCTAssertNotEqual(Dataset.split(all, fraction: 0.1, seed: 4).1.map(\.text), dev.map(\.text))
    }

    func testMetricsAgainstHandComputedValues() {
        // labels 0 0 1 1 2 2, predictions 0 1 1 1 2 0:
        // accuracy 4/6; F1 per class 2·1/(2+2), 2·2/(3+2), 2·1/(1+2) → macro 0.65556;
        // MCC (Gorodkin): (c·s − Σ t_k p_k) / √((s² − Σ p_k²)(s² − Σ t_k²)) = (24 − 12)/√(22·24) = 0.52223
        let m = ClassificationMetrics(predictions: [0, 1, 1, 1, 2, 0], labels: [0, 0, 1, 1, 2, 2], classes: 3, loss: 0.5)
        XCTAssertEqual(m.accuracy, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(m.macroF1, (0.5 + 0.8 + 2.0 / 3) / 3, accuracy: 1e-12)
        XCTAssertEqual(m.mcc, 12 / (22.0 * 24).squareRoot(), accuracy: 1e-12)
        let perfect = ClassificationMetrics(predictions: [1, 0, 1], labels: [1, 0, 1], classes: 2, loss: 0)
        XCTAssertEqual([perfect.accuracy, perfect.macroF1, perfect.mcc], [1, 1, 1])
        let constant = ClassificationMetrics(predictions: [1, 1, 1], labels: [1, 0, 1], classes: 2, loss: 0)
        XCTAssertEqual(constant.mcc, 0)   // undefined → 0, as scikit-learn
        // Macro-F1 over the classes among labels and predictions, as f1_score(average="macro"): a
        // test set of one class, all right, is 1 (not 1/2); a class predicted but never true counts 0.
        let oneClass = ClassificationMetrics(predictions: [1, 1], labels: [1, 1], classes: 3, loss: 0)
        XCTAssertEqual(oneClass.macroF1, 1)
        let stray = ClassificationMetrics(predictions: [1, 2], labels: [1, 1], classes: 3, loss: 0)
        XCTAssertEqual(stray.macroF1, (2.0 / 3 + 0) / 2, accuracy: 1e-12)   // sklearn: f1_score([1,1],[1,2],average="macro")
    }

    func testTheSharedDatasetsLoadWithTheirFlags() throws {
        let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data").path
        guard FileManager.default.fileExists(atPath: data) else { throw XCTSkip("../shared/data not found") }
        let sst2 = try Dataset.load(data + "/sst2/train.tsv", columns: ColumnSpec(text: .index(1), label: .index(0)))
        XCTAssertEqual(sst2.count, 6_920)
        XCTAssertEqual(Dataset.labelNames(sst2), ["0", "1"])
        let cola = try Dataset.load(data + "/cola/dev.tsv", columns: ColumnSpec(text: .index(0), label: .index(1)))
        XCTAssertEqual(cola.count, 516)
        XCTAssertEqual(Dataset.labelNames(cola), ["0", "1"])
        let hate = try Dataset.load(data + "/hate_speech/labeled_data.csv", columns: ColumnSpec(text: .name("tweet"), label: .name("class")))
        XCTAssertEqual(hate.count, 24_783)
        XCTAssertEqual(Dataset.labelNames(hate), ["0", "1", "2"])
    }

    /// Classifying in order of length: the model sees the texts sorted by token count (ties in
    /// their order), the caller gets each text's logits in its own place.
    func testLengthOrderRunsSortedAndAnswersInTheInputsOrder() {
        let lengths = [5, 2, 9, 2, 7, 1, 5]
        let encodings = lengths.enumerated().map { i, n in
            Encoding(ids: [Int32(i)] + Array(repeating: 0, count: n - 1), typeIds: Array(repeating: 0, count: n), attentionMask: Array(repeating: 1, count: n))
        }
        var seen: [Int32] = []
        let logits = inLengthOrder(encodings) { batch in
            seen = batch.map { $0.ids[0] }
            return batch.map { [Float($0.ids[0]), Float($0.ids.count)] }
        }
        XCTAssertEqual(seen, [5, 1, 3, 0, 6, 4, 2])
        XCTAssertEqual(logits, lengths.enumerated().map { [Float($0), Float($1)] })
    }
}
