// retort finetune on a decoder, as a user runs it, on the real SmolLM2-135M GGUF (a few steps):
// LoRA classification writes a folder transformers reads as LlamaForSequenceClassification (with
// the PEFT adapter beside it) and eval / predict / compare read; causal-LM LoRA on a text file writes a folder `retort generate`
// runs (its tokenizer written from the GGUF's). Bad combinations get one line.
import Foundation
import XCTest

final class DecoderFinetuneCLITests: XCTestCase {
    func testLoRAClassificationAndCausalLMRuns() throws {
        let model = try smolLM2()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("retort-decoder-ft-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let rows = (0..<40).map { i in "\(i % 2 == 0 ? "the cat sat on the mat" : "mat the on sat cat the") number \(i),\(i % 2)" }
        try (["text,label"] + rows).joined(separator: "\n").write(to: work.appendingPathComponent("data.csv"), atomically: true, encoding: .utf8)
        let out = work.appendingPathComponent("cls").path
        let (status, output) = try retort(["finetune", "--model", model, "--train", work.appendingPathComponent("data.csv").path,
                                           "--lora-rank", "4", "--batch-size", "4", "--max-length", "24", "--max-steps", "2", "--out", out,
                                           "--device", "cpu"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("LoRA r=4 on q_proj,v_proj"), output)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForSequenceClassification"])
        XCTAssertEqual(config["pad_token_id"] as? Int, 2, "the end token pads (HF finds the last token by it)")
        for file in ["model.safetensors", "vocab.json", "merges.txt", "adapter/adapter_config.json", "adapter/adapter_model.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + file), file)
        }

        // eval and predict read the folder (a decoder classifier).
        let (evalStatus, evaluated) = try retort(["eval", "--model", out, "--data", work.appendingPathComponent("data.csv").path,
                                                  "--max-length", "24", "--json", "--device", "cpu"])
        XCTAssertEqual(evalStatus, 0, evaluated)
        let metrics = try XCTUnwrap(evaluated.split(separator: "\n").last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) }
                                    as? [String: Any], evaluated)
        XCTAssertEqual(metrics["examples"] as? Int, 40)
        let (predictStatus, predicted) = try retort(["predict", "--model", out, "the cat sat on the mat", "--device", "cpu"])
        XCTAssertEqual(predictStatus, 0, predicted)
        XCTAssertTrue(predicted.contains("\tthe cat sat on the mat"), predicted)
        // compare: its row (test metrics = eval's, parameters, size, speed) in the report.
        let report = work.appendingPathComponent("report").path
        let (compareStatus, compared) = try retort(["compare", out, "--test", work.appendingPathComponent("data.csv").path,
                                                    "--max-length", "24", "--out", report, "--device", "cpu"])
        XCTAssertEqual(compareStatus, 0, compared)
        let row = try XCTUnwrap(compared.split(separator: "\n").first { $0.hasPrefix("| cls ") }, compared)
        XCTAssertTrue(row.contains(String(format: "%.4f", metrics["accuracy"] as! Double)), "eval's accuracy: \(row)")
        XCTAssertTrue(row.contains("| test |") && row.contains("134.5"), "test metrics, 134.5 M parameters (135 M and the adapter): \(row)")
        for file in ["report.md", "report.csv", "report.html"] { XCTAssertTrue(FileManager.default.fileExists(atPath: report + "/" + file), file) }

        // A GRU student distilled from the decoder classifier: its byte-level BPE, its token
        // embeddings (576 wide), and its encoding of an empty text (the end token, as the teacher's).
        let gru = work.appendingPathComponent("gru").path
        let (gruStatus, gruOutput) = try retort(["distill", "--teacher", out, "--train", work.appendingPathComponent("data.csv").path,
                                                 "--student", "bigru", "--hidden", "8", "--head-hidden", "4", "--epochs", "1", "--max-length", "24",
                                                 "--no-report", "--out", gru, "--device", "cpu"])
        XCTAssertEqual(gruStatus, 0, gruOutput)
        XCTAssertTrue(gruOutput.contains("embeddings 576 wide (the teacher's)"), gruOutput)
        let gruConfig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: gru + "/config.json"))) as! [String: Any]
        XCTAssertEqual(gruConfig["tokenizer"] as? String, "bpe")
        XCTAssertEqual(gruConfig["empty_token_id"] as? Int, 2, "an empty text is the end token, as for the teacher")
        let (gruPredict, gruPredicted) = try retort(["predict", "--model", gru, "--json", "the cat sat on the mat", "a dog", "--device", "cpu"])
        XCTAssertEqual(gruPredict, 0, gruPredicted)
        XCTAssertEqual(gruPredicted.split(separator: "\n").filter { $0.hasPrefix("{\"") }.count, 2, gruPredicted)

        let text = work.appendingPathComponent("stories.txt")
        try (0..<30).map { "Once upon a time there was a little robot number \($0) who liked to count: 1, 2, 3." }.joined(separator: "\n")
            .write(to: text, atomically: true, encoding: .utf8)
        let lm = work.appendingPathComponent("lm").path
        let (lmStatus, lmOutput) = try retort(["finetune", "--model", model, "--task", "causal-lm", "--train", text.path, "--lora-rank", "4",
                                               "--batch-size", "2", "--max-length", "64", "--max-steps", "2", "--out", lm, "--device", "cpu"])
        XCTAssertEqual(lmStatus, 0, lmOutput)
        XCTAssertTrue(lmOutput.contains("perplexity"), lmOutput)
        // The tokenizer written from the GGUF's gives its ids (SmolLM2's digits apart, specials).
        let probe = work.appendingPathComponent("probe.txt")
        try "Count 12345 times, <|im_start|>user ok\n".write(to: probe, atomically: true, encoding: .utf8)
        let (_, fromGGUF) = try retort(["tokenize", "--model", model, "--input", probe.path])
        let (_, fromFolder) = try retort(["tokenize", "--model", lm, "--input", probe.path])
        XCTAssertEqual(fromFolder, fromGGUF)
        let (genStatus, generated) = try retort(["generate", "--model", lm, "--prompt", "Once upon a time", "--max-new-tokens", "5",
                                                 "--device", "cpu"])
        XCTAssertEqual(genStatus, 0, generated)
        XCTAssertTrue(generated.contains("tokens/s"), generated)
        let (notClassifier, message) = try retort(["predict", "--model", lm, "some text", "--device", "cpu"])
        XCTAssertNotEqual(notClassifier, 0)
        XCTAssertTrue(message.contains("not a classifier"), message)
    }

    func testCausalLMOnAnEncoderIsRefused() throws {
        let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")
        let (status, output) = try retort(["finetune", "--model", golden.appendingPathComponent("tiny-bert").path, "--task", "causal-lm",
                                           "--train", "/nonexistent.txt", "--out", "/tmp/never", "--device", "cpu"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("--task causal-lm needs a decoder"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never"))
    }
}
