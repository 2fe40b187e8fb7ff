// Checkpoints that survive anything: a real `retort` run is killed with SIGKILL at random
// moments — and once in the middle of a checkpoint save (RETORT_TEST_KILL_AT, the library's
// fault-injection point between writing a checkpoint folder and renaming it into place) — then
// continued with --resume until it finishes. The result must be bit-identical to an
// uninterrupted run: the saved model, every step's loss in log.jsonl, the final checkpoint's
// weights and AdamW moments, the best dev metrics. For fine-tuning, LoRA, and both TinyBERT
// stages. The kill times come from a seed printed with any failure (RETORT_CRASH_SEED replays it).
import Foundation
import Models
import XCTest

final class CrashResumeTests: TinyRunTestCase {
    func testFineTuningKilledAnywhereResumesBitIdentically() throws {
        try check { out in ["finetune", "--model", teacher, "--train", data, "--epochs", "3"] + common(out) }
    }

    func testLoRAFineTuningKilledAnywhereResumesBitIdentically() throws {
        try check { out in ["finetune", "--model", teacher, "--train", data, "--epochs", "3", "--lora-rank", "4",
                            "--lora-targets", "query,value,intermediate"] + common(out) }
    }

    func testTinyBERTDistillationKilledAnywhereResumesBitIdentically() throws {
        try check { out in ["distill", "--teacher", teacher, "--train", data, "--student-layers", "1", "--epochs", "2,2",
                            "--no-report"] + common(out) }
    }

    /// Small and quick: a checkpoint after every step, so kills land in saves as often as in steps.
    func common(_ out: String) -> [String] {
        ["--max-length", "16", "--batch-size", "8", "--save-every", "1", "--keep-checkpoints", "2", "--threads", "1", "--out", out]
    }

    func check(_ arguments: (String) -> [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let seed = ProcessInfo.processInfo.environment["RETORT_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64(Date().timeIntervalSince1970 * 1000)
        var random = SplitMix(seed: seed)
        func uniform() -> Double { Double(random.next() >> 11) / Double(1 << 53) }
        let context = "RETORT_CRASH_SEED=\(seed)"

        // The uninterrupted run.
        let reference = work.appendingPathComponent("reference").path
        let started = Date()
        let (referenceStatus, referenceOutput) = try retort(arguments(reference))
        XCTAssertEqual(referenceStatus, 0, referenceOutput, file: file, line: line)
        let duration = Date().timeIntervalSince(started)

        // The same run, killed and continued. First a kill inside the k-th checkpoint save, then
        // kills at random moments, then (at the latest) a run left to finish.
        let out = work.appendingPathComponent("killed").path
        var kills = 0, history: [String] = []
        for attempt in 0..<14 {
            let resume = FileManager.default.fileExists(atPath: out + "/checkpoints") && attempt > 0
            let saveToDieIn = 2 + Int(random.next() % 3)
            let environment = attempt == 0 ? ["RETORT_TEST_KILL_AT": "checkpoint:\(saveToDieIn)"] : [:]
            let process = try RetortProcess(arguments(out) + (resume ? ["--resume"] : []), environment: environment)
            if attempt > 0 && attempt < 10 {
                let delay = (0.05 + 0.55 * uniform()) * duration   // a resumed run has less left to do
                usleep(useconds_t(delay * 1e6))
                kill(process.process.processIdentifier, SIGKILL)
            }
            let (status, output) = process.finish()
            history.append("attempt \(attempt)\(resume ? " --resume" : ""): status \(status)")
            if status == 0 { break }
            guard status == 128 + SIGKILL else {
                return XCTFail("\(context): a run after \(kills) kills failed (\(history)):\n\(output)", file: file, line: line)
            }
            kills += 1
        }
        XCTAssertEqual(history.last?.hasSuffix("status 0"), true, "\(context): never finished: \(history)", file: file, line: line)
        // The first run always dies inside a save; later kills land wherever the clock puts them
        // (a resumed run may finish first, which is fine).
        XCTAssertEqual(history.first?.hasSuffix("status \(128 + SIGKILL)"), true, "\(context): \(history)", file: file, line: line)

        // Bit-identical to the uninterrupted run.
        let bytes = { (path: String) in FileManager.default.contents(atPath: path) }
        XCTAssertNotNil(bytes(out + "/model.safetensors"), context, file: file, line: line)
        XCTAssertEqual(bytes(out + "/model.safetensors"), bytes(reference + "/model.safetensors"),
                       "\(context): the saved model differs (\(history))", file: file, line: line)
        XCTAssertEqual(try stepLosses(out), try stepLosses(reference), "\(context): the step losses differ (\(history))", file: file, line: line)
        let (newest, referenceNewest) = (try newestCheckpoint(out), try newestCheckpoint(reference))
        XCTAssertEqual(bytes(newest + "/state.safetensors"), bytes(referenceNewest + "/state.safetensors"),
                       "\(context): the final weights or AdamW moments differ (\(history))", file: file, line: line)
        let metrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/metrics.json"))) as? [String: Any]
        let referenceMetrics = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reference + "/metrics.json"))) as? [String: Any]
        XCTAssertEqual(metrics?["best_dev"] as? NSDictionary, referenceMetrics?["best_dev"] as? NSDictionary, context, file: file, line: line)
        XCTAssertEqual(metrics?["steps"] as? Int, referenceMetrics?["steps"] as? Int, context, file: file, line: line)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "\(context): temporary checkpoint folders left behind", file: file, line: line)
    }

    /// (stage, step, loss, gradient norm) of every step line in OUT/log.jsonl.
    func stepLosses(_ out: String) throws -> [String] {
        try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            guard let object, object["dev"] == nil else { return nil }
            return "\(object["stage"] ?? "-") \(object["step"]!) \(object["loss"]!) \(object["grad_norm"]!)"
        }
    }

    /// The checkpoint folder with the highest sequence number.
    func newestCheckpoint(_ out: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").filter { !$0.hasPrefix(".") }.sorted()
        return out + "/checkpoints/" + (names.last ?? "none")
    }
}
