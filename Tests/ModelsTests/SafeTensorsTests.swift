// safetensors: round trip, the other dtypes, the real checkpoint's header, and every kind of
// bad file rejected with a one-line error that names the file and what is wrong.
import Foundation
@testable import Models
import XCTest

/// Builds a safetensors file from a header object and a data section.
func safetensorsBytes(header: Any, data: [UInt8], headerLength: UInt64? = nil) throws -> Data {
    let json = try JSONSerialization.data(withJSONObject: header)
    var file = Data()
    withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { file.append(contentsOf: $0) }
    file.append(json)
    file.append(contentsOf: data)
    return file
}

final class SafeTensorsTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "retort-safetensors-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    func testRoundTripF32() throws {
        let tensors = [SafeTensorsWriter.Tensor(name: "a.weight", shape: [2, 3], values: [1, -2, 3.5, 0, .infinity, -0.25]),
                       SafeTensorsWriter.Tensor(name: "b", shape: [1], values: [42]),
                       SafeTensorsWriter.Tensor(name: "empty", shape: [0, 4], values: [])]
        try SafeTensorsWriter.write(tensors, to: path("m.safetensors"))
        let file = try SafeTensorsFile(path: path("m.safetensors"))
        XCTAssertEqual(Set(file.entries.keys), ["a.weight", "b", "empty"])
        XCTAssertEqual(try file.entry("a.weight").shape, [2, 3])
        XCTAssertEqual(try file.floats("a.weight"), [1, -2, 3.5, 0, .infinity, -0.25])
        XCTAssertEqual(try file.floats("b"), [42])
        XCTAssertEqual(try file.floats("empty"), [])
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path(".m.safetensors.\(getpid()).tmp")))
    }

    /// A fetched tensor is read a chunk at a time (never all of it in memory at once) and written
    /// whole, in order.
    func testAFetchedTensorIsWrittenInChunks() throws {
        let count = (1 << 22) * 2 + 5   // two full chunks and a part
        var asked: [Range<Int>] = []
        let tensor = SafeTensorsWriter.Tensor(name: "big", shape: [count], count: count) { offset, n in
            asked.append(offset..<(offset + n))
            return (offset..<(offset + n)).map { Float($0 % 1000) - 500 }
        }
        try SafeTensorsWriter.write([tensor, SafeTensorsWriter.Tensor(name: "after", shape: [2], values: [7, 8])], to: path("chunked.safetensors"))
        XCTAssertEqual(asked, [0..<(1 << 22), (1 << 22)..<(1 << 23), (1 << 23)..<count])
        let file = try SafeTensorsFile(path: path("chunked.safetensors"))
        let values = try file.floats("big")
        XCTAssertEqual(values.count, count)
        XCTAssertTrue(values.indices.allSatisfy { values[$0] == Float($0 % 1000) - 500 })
        XCTAssertEqual(try file.floats("after"), [7, 8])
    }
    /// A set of files written together is all new or all old: here the third cannot be renamed
    /// into place (a folder holds its name), so the first two are put back as they were.
    func testFilesWrittenTogetherAreAllNewOrAllOld() throws {
        let (a, b, c) = (directory + "/a.md", directory + "/b.csv", directory + "/c.html")
        try Data("old a".utf8).write(to: URL(fileURLWithPath: a))
        try FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: false)
        try Data().write(to: URL(fileURLWithPath: c + "/inside"))   // a non-empty folder: rename over it fails
        XCTAssertThrowsError(try writeAtomically([(a, Data("new a".utf8)), (b, Data("new b".utf8)), (c, Data("new c".utf8))])) {
            XCTAssertTrue("\($0)".contains("c.html: cannot rename the temporary file into place") && "\($0)".contains("(the 2 files renamed before it put back)"),
                          "\($0)")
        }
        XCTAssertEqual(try String(contentsOfFile: a, encoding: .utf8), "old a")
        XCTAssertFalse(FileManager.default.fileExists(atPath: b), "b was not there before")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["a.md", "c.html"], "no temporary or kept file left")
        try FileManager.default.removeItem(atPath: c)
        try writeAtomically([(a, Data("new a".utf8)), (b, Data("new b".utf8)), (c, Data("new c".utf8))])
        XCTAssertEqual(try [a, b, c].map { try String(contentsOfFile: $0, encoding: .utf8) }, ["new a", "new b", "new c"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(), ["a.md", "b.csv", "c.html"])
    }

    func testReadsF16BF16AndI64() throws {
        var data: [UInt8] = []
        for h: UInt16 in [0x3C00, 0xC000] { data += [UInt8(h & 0xFF), UInt8(h >> 8)] }           // F16 1, -2
        for h: UInt16 in [0x3F80, 0x4049] { data += [UInt8(h & 0xFF), UInt8(h >> 8)] }           // BF16 1, 3.140625
        for v: Int64 in [7, -3] { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
        let header: [String: Any] = [
            "h": ["dtype": "F16", "shape": [2], "data_offsets": [0, 4]],
            "b": ["dtype": "BF16", "shape": [2], "data_offsets": [4, 8]],
            "i": ["dtype": "I64", "shape": [2], "data_offsets": [8, 24]],
        ]
        try safetensorsBytes(header: header, data: data).write(to: URL(fileURLWithPath: path("x.safetensors")))
        let file = try SafeTensorsFile(path: path("x.safetensors"))
        XCTAssertEqual(try file.floats("h"), [1, -2])
        XCTAssertEqual(try file.floats("b"), [1, 3.140625])
        XCTAssertEqual(try file.integers("i"), [7, -3])
        XCTAssertThrowsError(try file.floats("i")) { XCTAssertTrue("\($0)".contains("expected a float type"), "\($0)") }
        XCTAssertThrowsError(try file.floats("missing")) { XCTAssertTrue("\($0)".contains("no tensor named 'missing'"), "\($0)") }
    }

    func testRejectsBadFilesWithOneLineErrors() throws {
        let good: [String: Any] = ["w": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]]]
        let eight = [UInt8](repeating: 0, count: 8)
        let cases: [(String, Data, String)] = [
            ("short", Data([1, 2, 3]), "too short"),
            ("huge header", try safetensorsBytes(header: good, data: eight, headerLength: 1 << 40), "not sane"),
            ("header length past Int", try safetensorsBytes(header: good, data: eight, headerLength: 1 << 63), "header length 9223372036854775808 is not sane"),
            ("header past end", try safetensorsBytes(header: good, data: eight, headerLength: 5000), "runs past the end"),
            ("not json", { var d = Data(); withUnsafeBytes(of: UInt64(4).littleEndian) { d.append(contentsOf: $0) }; d.append(contentsOf: Array("nope".utf8)); return d }(), "not a JSON object"),
            ("truncated data", try safetensorsBytes(header: good, data: [0, 0, 0, 0]), "truncated"),
            ("unknown dtype", try safetensorsBytes(header: ["w": ["dtype": "F13", "shape": [2], "data_offsets": [0, 8]]], data: eight), "unknown dtype F13"),
            ("negative shape", try safetensorsBytes(header: ["w": ["dtype": "F32", "shape": [-2], "data_offsets": [0, 8]]], data: eight), "invalid shape"),
            ("lying shape", try safetensorsBytes(header: ["w": ["dtype": "F32", "shape": [3], "data_offsets": [0, 8]]], data: eight), "spans 8 bytes"),
            ("reversed offsets", try safetensorsBytes(header: ["w": ["dtype": "F32", "shape": [0], "data_offsets": [8, 0]]], data: eight), "invalid data_offsets"),
            ("overlap", try safetensorsBytes(header: ["a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
                                                      "b": ["dtype": "F32", "shape": [1], "data_offsets": [4, 8]]], data: eight), "overlaps"),
            ("gap", try safetensorsBytes(header: ["a": ["dtype": "F32", "shape": [1], "data_offsets": [4, 8]]], data: eight), "gap of 4 bytes"),
            ("trailing bytes", try safetensorsBytes(header: good, data: eight + [0, 0, 0, 0]), "no tensor accounts for"),
        ]
        for (name, bytes, expected) in cases {
            let file = path("\(name).safetensors")
            try bytes.write(to: URL(fileURLWithPath: file))
            XCTAssertThrowsError(try SafeTensorsFile(path: file), name) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(expected), "\(name): \(text)")
                XCTAssertTrue(text.hasPrefix(file + ": "), "\(name): the error does not start with the file's path: \(text)")
                XCTAssertFalse(text.contains("\n"), "\(name): not one line: \(text)")
            }
        }
        XCTAssertThrowsError(try SafeTensorsFile(path: path("does-not-exist.safetensors"))) {
            XCTAssertTrue("\($0)".contains("cannot open"), "\($0)")
        }
    }

    func testReadsTheRealMiniLMHeader() throws {
        let folder = try assetFolder("all-MiniLM-L6-v2")
        let file = try SafeTensorsFile(path: (folder as NSString).appendingPathComponent("model.safetensors"))
        XCTAssertEqual(try file.entry("embeddings.word_embeddings.weight").shape, [30522, 384])
        XCTAssertEqual(try file.integers("embeddings.position_ids").prefix(4), [0, 1, 2, 3])
        XCTAssertEqual(file.entries.count, 104)
    }
}

/// A folder of scripts/fetch-assets ($RETORT_ASSETS or ~/.cache/retort/assets); skips visibly when absent.
func assetFolder(_ name: String) throws -> String {
    let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
    let folder = (root as NSString).appendingPathComponent(name)
    guard FileManager.default.fileExists(atPath: folder) else {
        throw XCTSkip("\(name) not found in \(root): run scripts/fetch-assets")
    }
    return folder
}

final class BertConfigTests: XCTestCase {
    let base: [String: Any] = ["model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                               "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
                               "layer_norm_eps": 1e-12, "custom_field": "kept"]

    func testReadsValidatesAndWritesBack() throws {
        var object = base
        object["id2label"] = ["0": "negative", "1": "positive"]
        let config = try BertConfig(object)
        XCTAssertEqual(config.headSize, 32)
        XCTAssertEqual(config.maxPositions, 512)
        XCTAssertEqual(config.id2label, [0: "negative", 1: "positive"])
        let written = try XCTUnwrap(try JSONSerialization.jsonObject(with: config.json()) as? [String: Any])
        XCTAssertEqual(written["custom_field"] as? String, "kept")
        XCTAssertEqual(written["architectures"] as? [String], ["BertForSequenceClassification"])
        XCTAssertEqual((written["label2id"] as? [String: Int])?["positive"], 1)
    }

    func testRejectsWhatItCannotRun() {
        let bad: [(String, Any, String)] = [
            ("hidden_size", 100, "not a multiple of num_attention_heads"),
            ("hidden_act", "relu", "hidden_act \"relu\" is not supported"),
            ("num_hidden_layers", -1, "num_hidden_layers must be a positive integer"),
            ("vocab_size", "big", "vocab_size must be a positive integer"),
            ("hidden_size", "384", "hidden_size must be a positive integer, found the string \"384\""),
            ("model_type", "gpt2", "model_type \"gpt2\" is not supported"),
            ("id2label", ["zero": "a"], "id2label entry \"zero\""),
            ("id2label", ["0": "toxic", "1": "toxic"], "id2label names a label twice (toxic, toxic)"),
            ("max_position_embeddings", 2, "max_position_embeddings 2 leaves 2 positions past pad_token_id 0; a text needs at least 3"),
            ("pad_token_id", 30522, "pad_token_id 30522 is outside the vocabulary of 30522"),
        ]
        for (key, value, expected) in bad {
            var object = base
            object[key] = value
            XCTAssertThrowsError(try BertConfig(object), key) { XCTAssertTrue("\($0)".contains(expected), "\(key): \($0)") }
        }
    }

    func testTheRealMiniLMConfig() throws {
        let config = try BertConfig(path: (try assetFolder("all-MiniLM-L6-v2") as NSString).appendingPathComponent("config.json"))
        XCTAssertEqual([config.layers, config.hiddenSize, config.heads, config.intermediateSize], [6, 384, 12, 1536])
    }
}
