// The WordPiece tokenizer against transformers' AutoTokenizer (golden files made by
// Tests/Golden/make_tokenizer_ids.py): every sentence of ../shared/data — SST-2, CoLA and the raw
// hate-speech tweets — must give exactly the same ids; pairs, truncation and special tokens too.
import Foundation
@testable import Models
import Train
import XCTest

let goldenFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Golden/tokenizer")
let sharedData = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data")

func fnv64(_ ids: [Int32]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for id in ids {
        withUnsafeBytes(of: id.littleEndian) { for byte in $0 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 } }
    }
    return h
}

/// The sentences of a dataset of ../shared/data, read as the golden scripts read them.
func sharedSentences(_ dataset: String) throws -> [String] {
    func tsv(_ file: String, _ column: Int) throws -> [String] {
        DelimitedText.tsv(try DelimitedText.read(sharedData.appendingPathComponent(file).path)).map { $0[column] }
    }
    switch dataset {
    case "sst2": return try tsv("sst2/train.tsv", 1) + tsv("sst2/test.tsv", 1)
    case "cola": return try tsv("cola/train.tsv", 0) + tsv("cola/dev.tsv", 0)
    default:
        let path = sharedData.appendingPathComponent("hate_speech/labeled_data.csv").path
        let rows = try DelimitedText.csv(try DelimitedText.read(path), path: path)
        let column = try XCTUnwrap(rows.first?.firstIndex(of: "tweet"))
        return rows.dropFirst().map { $0[column] }
    }
}

/// Every sentence of ../shared/data through `encode` against the golden hashes
/// `<prefix><dataset>.fnv64` (what `reference` gave); the first mismatches are named.
func assertSharedDataMatchesGolden(prefix: String, name: String, reference: String = "transformers", encode: (String) -> [Int32],
                                   token: (Int32) -> String) throws {
    guard FileManager.default.fileExists(atPath: sharedData.path) else { throw XCTSkip("../shared/data not found") }
    for dataset in ["sst2", "cola", "hate_speech"] {
        let golden = try Data(contentsOf: goldenFolder.appendingPathComponent("\(prefix)\(dataset).fnv64"))
        let count = Int(golden.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        let expected = (0..<count).map { i in golden.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4 + 8 * i, as: UInt64.self) } }
        let texts = try sharedSentences(dataset)
        XCTAssertEqual(texts.count, count, "\(dataset): sentence count differs from the golden file")
        var mismatches: [String] = []
        for (i, text) in texts.enumerated() where i < count {
            let ids = encode(text)
            if fnv64(ids) != expected[i] { mismatches.append("#\(i) \(text.debugDescription): got \(ids.map(token))") }
        }
        XCTAssertTrue(mismatches.isEmpty, "\(dataset): \(mismatches.count) of \(count) sentences differ from \(reference), e.g.\n"
                      + mismatches.prefix(5).joined(separator: "\n"))
        print("\(name): \(dataset): \(count) sentences identical to \(reference)")
    }
}

final class TokenizerTests: XCTestCase {
    func tokenizer() throws -> WordPieceTokenizer { try WordPieceTokenizer(folder: try assetFolder("all-MiniLM-L6-v2")) }

    func testEverySentenceOfTheSharedDataMatchesTransformers() throws {
        let tok = try tokenizer()
        try assertSharedDataMatchesGolden(prefix: "", name: "tokenizer", encode: { tok.encode($0).ids }, token: { tok.tokens[Int($0)] })
    }

    func testPairsTruncationAndSpecialTokensMatchTransformers() throws {
        let tok = try tokenizer()
        let data = try Data(contentsOf: goldenFolder.appendingPathComponent("cases.json"))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cases = try XCTUnwrap(object["cases"] as? [[String: Any]])
        XCTAssertGreaterThan(cases.count, 30)
        for c in cases {
            let a = c["a"] as! String, b = c["b"] as? String, maxLength = c["max_length"] as? Int
            let encoding = tok.encode(a, b, maxLength: maxLength)
            XCTAssertEqual(encoding.ids, (c["ids"] as! [Int]).map(Int32.init), "ids of \(a.debugDescription) / \(b?.debugDescription ?? "-") max \(maxLength ?? 0)")
            XCTAssertEqual(encoding.typeIds, (c["type_ids"] as! [Int]).map(Int32.init), "type ids of \(a.debugDescription)")
            XCTAssertEqual(encoding.truncated, tok.encode(a, b).ids.count > encoding.ids.count, "cut or not: \(a.debugDescription)")
        }
    }

    func testNormalisationSteps() throws {
        let tok = try WordPieceTokenizer(tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "a"])
        XCTAssertEqual(tok.normalize("Ünaffable\u{00AD}\tX\u{3000}中"), "unaffable x  中 ")
        XCTAssertEqual(tok.preTokenize("a,b  c!").map { String(String.UnicodeScalarView($0)) }, ["a", ",", "b", "c", "!"])
        XCTAssertEqual(tok.tokenize("unaffable"), [4, 5, 6])
        XCTAssertEqual(tok.tokenize("unaffablex a"), [1, 7])                           // no match → [UNK]
        XCTAssertEqual(tok.tokenize(String(repeating: "a", count: 101)), [1])          // the 100-character limit
        let padded = tok.pad([tok.encode("a"), tok.encode("a a a")])
        XCTAssertEqual(padded[0].ids, [2, 7, 3, 0, 0])
        XCTAssertEqual(padded[0].attentionMask, [1, 1, 1, 0, 0])
        XCTAssertEqual(padded[1].attentionMask, [1, 1, 1, 1, 1])
    }

    func testAMissingVocabularyIsAOneLineError() {
        XCTAssertThrowsError(try WordPieceTokenizer(folder: "/nonexistent/model")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/model/vocab.txt: cannot read"), "\(error)")
        }
    }
}
