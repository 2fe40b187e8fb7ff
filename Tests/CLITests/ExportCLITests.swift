// retort export --format onnx, checked by the onnx package and ONNX Runtime (scripts/onnx-check,
// with the packages `make test` installs into .deps/python): the fp32 graph gives `retort predict`'s
// logits within 1e-4 on 64 texts of mixed length, one at a time and as one padded batch, for
// BERT and MPNet; the int8 graph, the same integer arithmetic as the `retort quantize` folder,
// gives that folder's label on every text. Its logits are not equal to float precision: where
// the two runtimes' float parts (softmax, GELU, LayerNorm) differ in the last bit at a rounding
// boundary, one int8 activation differs by 1 and a logit by about a quantization step (seen:
// up to 0.017), so they are held to 0.1. Bad requests end in one line with nothing written.
import Foundation
import XCTest

final class ExportCLITests: TinyRunTestCase {
    let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// 64 texts of 1 to 40 words in the tiny vocabulary (3 to 40 tokens with [CLS] and [SEP]).
    func writeTexts() throws -> String {
        let words = (0..<89).map { "w\($0)" } + (97...122).map { String(UnicodeScalar($0)!) }
        var state: UInt64 = 11
        func next(_ n: Int) -> Int { state = state &* 6364136223846793005 &+ 1442695040888963407; return Int(state >> 33) % n }
        let lengths = [1, 2, 3, 5, 8, 13, 21, 30, 38]
        let lines = (0..<64).map { i in (0..<lengths[i % lengths.count]).map { _ in words[next(words.count)] }.joined(separator: " ") }
        let path = work.appendingPathComponent("texts.txt").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// scripts/onnx-check's report, or a skip when Python lacks onnx and onnxruntime.
    func onnxCheck(export: String, model: String, texts: String, tolerance: Double, agreement: Double = 1) throws -> [String: Any] {
        let python = Process()
        python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        python.arguments = ["python3", repository.appendingPathComponent("scripts/onnx-check").path, "--export", export, "--model", model,
                            "--texts", texts, "--retort", try builtExecutable().path, "--tolerance", "\(tolerance)",
                            "--min-agreement", "\(agreement)"]
        let output = Pipe()
        python.standardOutput = output
        python.standardError = output
        try python.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        python.waitUntilExit()
        if text.contains("No module named") {
            throw XCTSkip("python3 has no onnx/onnxruntime (make test installs them into .deps/python): \(text)")
        }
        XCTAssertEqual(python.terminationStatus, 0, text)
        let line = try XCTUnwrap(text.split(separator: "\n").last { $0.hasPrefix("{") }, text)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    func testBERTExportsGiveRetortsLogitsInONNXRuntime() throws {
        let texts = try writeTexts()
        let (fp32, int8, quantized) = (work.appendingPathComponent("onnx").path, work.appendingPathComponent("onnx-int8").path,
                                       work.appendingPathComponent("int8").path)
        let (status, output) = try retort(["export", "--model", teacher, "--out", fp32])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("opset 17; inputs input_ids, attention_mask, token_type_ids"), output)
        for name in ["model.onnx", "config.json", "vocab.txt"] { XCTAssertTrue(FileManager.default.fileExists(atPath: fp32 + "/" + name), name) }
        let float = try onnxCheck(export: fp32, model: teacher, texts: texts, tolerance: 1e-4)
        XCTAssertEqual(float["precision"] as? String, "fp32")
        XCTAssertEqual(float["texts"] as? Int, 64)

        // int8: a quantized folder exports the very graph that --int8 makes from the float model,
        // and ONNX Runtime's integer arithmetic gives that folder's logits.
        XCTAssertEqual(try retort(["quantize", "--model", teacher, "--out", quantized]).0, 0)
        XCTAssertEqual(try retort(["export", "--model", quantized, "--out", int8]).0, 0)
        XCTAssertEqual(try retort(["export", "--model", teacher, "--out", int8 + "-b", "--int8", "--threads", "1"]).0, 0)
        XCTAssertEqual(FileManager.default.contents(atPath: int8 + "/model.onnx"), FileManager.default.contents(atPath: int8 + "-b/model.onnx"))
        let integer = try onnxCheck(export: int8, model: quantized, texts: texts, tolerance: 0.1)
        XCTAssertEqual(integer["precision"] as? String, "int8-dynamic")
        let (small, large) = (try XCTUnwrap(integer["onnx_mb"] as? Double), try XCTUnwrap(float["onnx_mb"] as? Double))
        XCTAssertLessThan(small, 0.5 * large, "int8 \(small) MB, fp32 \(large) MB")
    }

    /// MPNet: no token types, positions from padding_idx + 1, the relative position bias.
    func testMPNetExportsGiveRetortsLogitsInONNXRuntime() throws {
        let texts = try writeTexts()
        let model = work.appendingPathComponent("mpnet").path
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        for (folder, name) in [("tiny-mpnet", "config.json"), ("tiny-mpnet", "model.safetensors"), ("tiny-bert", "vocab.txt")] {
            try FileManager.default.copyItem(atPath: golden.appendingPathComponent(folder).appendingPathComponent(name).path, toPath: model + "/" + name)
        }
        let (fp32, int8, quantized) = (work.appendingPathComponent("onnx").path, work.appendingPathComponent("onnx-int8").path,
                                       work.appendingPathComponent("int8").path)
        let (status, output) = try retort(["export", "--model", model, "--out", fp32])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("inputs input_ids, attention_mask (int64"), output)
        _ = try onnxCheck(export: fp32, model: model, texts: texts, tolerance: 1e-4)
        XCTAssertEqual(try retort(["quantize", "--model", model, "--out", quantized]).0, 0)
        XCTAssertEqual(try retort(["export", "--model", quantized, "--out", int8]).0, 0)
        _ = try onnxCheck(export: int8, model: quantized, texts: texts, tolerance: 0.1)
    }

    func testBadRequestsAreOneLineAndWriteNothing() throws {
        let out = work.appendingPathComponent("onnx").path
        XCTAssertEqual(try retort(["export", "--model", teacher, "--out", out]).0, 0)
        for (arguments, message) in [
            (["export", "--model", teacher, "--out", out], "exists; choose a new folder"),
            (["export", "--model", golden.appendingPathComponent("tiny-gpt2").path, "--out", out + "2"], "is a decoder"),
            (["export", "--model", work.path, "--out", out + "3"], "not a model folder (no config.json)"),
            (["export", "--model", teacher, "--out", out + "4", "--format", "tflite"], "--format tflite is not supported; use onnx"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertNotEqual(status, 0, output)
            let lines = output.split(separator: "\n").filter { !$0.hasPrefix("retort: cpu") && !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") && !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, output)
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
        }
        for suffix in ["2", "3", "4"] { XCTAssertFalse(FileManager.default.fileExists(atPath: out + suffix), suffix) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path).filter { $0.contains("partial") }, [])
    }
}
