// `retort distill` and `retort compare` end to end on the tiny golden models: a run writes a HF
// student folder, metrics and the report; bad input (a student with another vocabulary, a layer
// map out of range, a checkpoint wider than its config declares, a student wider than its
// teacher) stops with one line naming the file or value.
import Backend
import Foundation
import XCTest

final class DistillCLITests: TinyRunTestCase {
    func distill(_ extra: [String]) throws -> (Int32, String) {
        try retort(["distill", "--teacher", teacher, "--train", data, "--max-length", "12", "--batch-size", "8", "--threads", "1"] + extra)
    }

    /// A copy of the tiny student folder with `old` replaced by `new` in one of its text files.
    func studentCopy(file: String, replacing old: String, with new: String) throws -> String {
        try studentCopy { folder in
            let url = folder.appendingPathComponent(file)
            try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: old, with: new).write(to: url, atomically: true, encoding: .utf8)
        }
    }

    /// A copy of the tiny student folder, changed by `edit`.
    func studentCopy(_ edit: (URL) throws -> Void) throws -> String {
        let folder = work.appendingPathComponent("student-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: golden.appendingPathComponent("tiny-bert-student"), to: folder)
        try edit(folder)
        return folder.path
    }

    func testTinyBERTRunWritesAStudentMetricsAndAReport() throws {
        let out = work.appendingPathComponent("odd").path
        // A batch past the data: training and the test are planned and run for the data's 86 texts.
        let (status, output) = try distill(["--student-init", "odd", "--student-layers", "1", "--epochs", "1", "--test", data,
                                            "--batch-size", "1000000", "--out", out])
        XCTAssertEqual(status, 0, output)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["num_hidden_layers"] as? Int, 1)
        XCTAssertEqual(config?["architectures"] as? [String], ["BertForSequenceClassification"])
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as? [String: Any]
        XCTAssertEqual(metrics?["method"] as? String, "tinybert")
        XCTAssertEqual(metrics?["layer_map"] as? String, "0:0", "an odd student learns from the layers it was copied from")
        XCTAssertNotNil((metrics?["test"] as? [String: Any])?["accuracy"] as? Double)
        let log = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8)
        XCTAssertTrue(log.contains("\"stage\":\"intermediate\"") && log.contains("\"stage\":\"prediction\"") && log.contains("attention.0"), log)
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        XCTAssertEqual(html.components(separatedBy: "<polyline").count - 1, 1, "a loss curve for the student (the golden teacher has no log)")
        XCTAssertEqual(html.components(separatedBy: "<circle").count - 1, 2, "one point per model")
        let csv = try String(contentsOfFile: out + "/report.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 3, "header, teacher, student")
        XCTAssertTrue(output.contains("| odd | tinybert |"), output)
        XCTAssertTrue(output.contains("memory plan on cpu: parameters "), output)
        // Resumed when finished: nothing trains, no stage starts, and the time is the run's in all.
        let (resumed, resumedOutput) = try distill(["--student-init", "odd", "--student-layers", "1", "--epochs", "1", "--test", data,
                                                "--batch-size", "1000000", "--out", out, "--resume", "--no-report"])
        XCTAssertEqual(resumed, 0, resumedOutput)
        XCTAssertTrue(resumedOutput.contains("prediction stage: resuming at step 1 of 1: that checkpoint is the end of the training"), resumedOutput)
        XCTAssertTrue(output.contains("retort: prediction stage, 1 epoch, 1 step, lr "), output)
        XCTAssertFalse(resumedOutput.contains(" stage, 1 epoch, "), resumedOutput)
        XCTAssertTrue(resumedOutput.contains(" (in all, with the run it resumed); best dev accuracy "), resumedOutput)

        // compare: the same two folders, without test data (dev metrics from metrics.json).
        let report = work.appendingPathComponent("report").path
        let (status2, output2) = try retort(["compare", teacher, out, "--out", report, "--threads", "1"])
        XCTAssertEqual(status2, 0, output2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: report + "/report.md"), output2)
        XCTAssertTrue(output2.contains("| odd | tinybert |") && output2.contains("| own dev set |"), output2)
        XCTAssertFalse(output2.contains("replacing"), output2)
        // Again into the same folder, the student given as "." from its own folder (named by its name), a '|' in a
        // name escaped in Markdown: the report is replaced, and that is said.
        let piped = work.appendingPathComponent("a|b").path
        try FileManager.default.copyItem(atPath: teacher, toPath: piped)
        let again = try RetortProcess(["compare", piped, ".", "--out", report, "--threads", "1"], directory: out).finish()
        XCTAssertEqual(again.0, 0, again.1)
        XCTAssertTrue(again.1.contains("(replacing the earlier report there)"), again.1)
        let markdown = try String(contentsOfFile: report + "/report.md", encoding: .utf8)
        XCTAssertTrue(markdown.contains("| a\\|b |") && markdown.contains("| odd | tinybert |"), markdown)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: report).sorted(), ["report.csv", "report.html", "report.md"],
                       "no temporary file left")
    }

    func testDistilBERTWithLoRATrainsOnlyAdaptersClassifierAndProjection() throws {
        let out = work.appendingPathComponent("lora").path
        let student = golden.appendingPathComponent("tiny-bert-student").path
        let (status, output) = try distill(["--student-init", student, "--method", "distilbert", "--epochs", "1", "--lora-rank", "2",
                                            "--no-report", "--recompute", "gelu", "--out", out])
        XCTAssertEqual(status, 0, output)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as? [String: Any]
        // 2 layers × (query, value) × (A [2,32] + B [32,2]) + classifier [3,32] + 3 + fit_dense [64,32] + 64
        XCTAssertEqual(metrics?["trainable_parameters"] as? Int, 2 * 2 * 128 + 99 + 2112, output)
        XCTAssertTrue(output.contains("with a learned projection"), output)
        // Its one stage by its name, and no map of layers (it aligns the last hidden states only).
        XCTAssertEqual(metrics?["stages"] as? [String], ["distilbert"], output)
        XCTAssertNil(metrics?["layer_map"], output)
    }

    func testAStudentWithAnotherVocabularyIsRefused() throws {
        let student = try studentCopy(file: "vocab.txt", replacing: "\nw7\n", with: "\nzebra\n")
        let (status, output) = try distill(["--student-init", student, "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("\(student)/vocab.txt differs from the teacher's \(teacher)/vocab.txt (120 vs 120 tokens, first at id 38)"), output)
    }

    /// A batch is planned for at most the data's examples, so the data is large here: 40,000 texts
    /// (36,000 to train on) in one batch of 40 tokens (about 15 GB), run with 8 GiB of address
    /// space (`ulimit -v`), whatever the machine has.
    func testARunThatCannotFitIsRefusedBeforeItStarts() throws {
        let out = work.appendingPathComponent("huge").path, large = work.appendingPathComponent("large.csv").path
        let rows = try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n").dropFirst()
        try (["text,label"] + (0..<40_000).map { String(rows[rows.startIndex + $0 % rows.count]) }).joined(separator: "\n")
            .write(toFile: large, atomically: true, encoding: .utf8)
        let (status, output) = try RetortProcess(["distill", "--teacher", teacher, "--train", large, "--max-length", "40",
                                                  "--batch-size", "1000000", "--threads", "1", "--out", out],
                                                 addressSpaceLimit: 8 << 30).finish()
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("this run needs ") && output.contains(" on cpu but ") && output.contains("--batch-size ")
                      && output.contains("--recompute gelu"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is written for a run that does not start")
    }

    func testAHalfPrecisionOnTheCPUIsRefusedAndAutoSaysItRunsInFP32() throws {
        let out = work.appendingPathComponent("bf16").path
        let (status, output) = try distill(["--device", "cpu", "--precision", "bf16", "--out", out])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("--precision bf16 is for GPUs: the CPU computes in fp32"), output)
        XCTAssertEqual(output.split(separator: "\n").filter { $0.contains("Error") || $0.contains("error") }.count, 1, output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        guard Devices.cudaUnavailableReason != nil else { return }   // below: a machine without a GPU
        let (autoStatus, autoOutput) = try distill(["--precision", "fp16", "--epochs", "1",
                                                    "--out", work.appendingPathComponent("auto").path])
        XCTAssertEqual(autoStatus, 0, autoOutput)
        XCTAssertTrue(autoOutput.contains("using cpu (in fp32: --precision fp16 is for GPUs)"), autoOutput)
    }

    func testALayerMapOutOfRangeIsRefused() throws {
        let (status, output) = try distill(["--student-layers", "1", "--layer-map", "0:2", "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("--layer-map: teacher layer 2 is out of range (the teacher has layers 0…1)"), output)
    }

    func testACheckpointWiderThanItsConfigIsRefused() throws {
        let student = try studentCopy(file: "config.json", replacing: "\"hidden_size\": 32", with: "\"hidden_size\": 16")
        let (status, output) = try distill(["--student-init", student, "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("model.safetensors: tensor 'bert.embeddings.word_embeddings.weight' is [120, 32] but config.json implies [120, 16]"), output)
    }

    func testAStudentWiderThanItsTeacherIsRefused() throws {
        let student = try studentCopy { folder in
            let config = folder.appendingPathComponent("config.json")
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
            object["hidden_size"] = 128
            try JSONSerialization.data(withJSONObject: object).write(to: config)
        }
        let (status, output) = try distill(["--student-init", student, "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("\(student)/config.json: hidden_size 128 is wider than the teacher's 64"), output)
    }
}
