// Decoders through the trainer (DecoderTask): a tiny Llama as a classifier and as a causal
// language model — the loss falls, the dev metrics are the right kind, and a run resumed from a
// checkpoint continues exactly as the uninterrupted one.
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class DecoderTrainingTests: XCTestCase {
    let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")

    func encodings(_ n: Int, seed: UInt64) -> [Encoding] {
        var state = seed
        return (0..<n).map { i in
            let ids = (0..<(5 + i % 7)).map { _ -> Int32 in state = state &* 6_364_136_223_846_793_005 &+ 1; return Int32(3 + (state >> 33) % 90) }
            return Encoding(ids: ids)
        }
    }

    func trainer(labels: Int, steps: Int) throws -> (Trainer, DecoderModel) {
        let model = try DecoderModel.load(golden.appendingPathComponent("tiny-llama").path, labels: labels, backend: try CPUBackend())
        var options = TrainingOptions()
        (options.batchSize, options.learningRate, options.maxSteps, options.epochs, options.metric) = (8, 3e-3, steps, 20, labels > 0 ? "accuracy" : "loss")
        let train = encodings(48, seed: 1), dev = encodings(16, seed: 2)
        // Classes by the first token's parity: learnable.
        let label = { (e: Encoding) -> Int32 in Int32(e.ids[0] % 2) }
        let task = try DecoderTask(model: model, maxBatch: 8, maxLength: 16)
        return (try Trainer(task: task, train: train, trainLabels: train.map(label), dev: dev, devLabels: dev.map(label), options: options), model)
    }

    func testClassifierAndLanguageModelTrain() throws {
        for labels in [2, 0] {
            let (t, _) = try trainer(labels: labels, steps: 30)
            var losses: [Double] = []
            t.onStep = { losses.append($0.loss) }
            let best = try XCTUnwrap(try t.run())
            XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses.prefix(5).reduce(0, +) / 5, "labels \(labels): the loss falls")
            XCTAssertEqual(best.nextToken, labels == 0 ? true : nil, "the right kind of dev metrics")
            XCTAssertTrue(best.loss.isFinite && best.loss > 0)
            // metrics.json and log.jsonl: a language model's has its perplexity, not a macro-F1 and MCC it never computed.
            let json = try JSONEncoder().encode(best), object = try JSONSerialization.jsonObject(with: json) as? [String: Any] ?? [:]
            XCTAssertEqual(object.keys.contains("mcc") && object.keys.contains("macro_f1"), labels > 0, "\(object)")
            XCTAssertEqual((object["perplexity"] as? Double).map { abs($0 - exp(best.loss)) <= 1e-12 * $0 }, labels == 0 ? true : nil, "\(object)")
            let decoded = try JSONDecoder().decode(ClassificationMetrics.self, from: json)
            XCTAssertEqual([decoded.accuracy, decoded.loss, decoded.macroF1, decoded.mcc], [best.accuracy, best.loss, best.macroF1, best.mcc])
            XCTAssertEqual(decoded.nextToken, best.nextToken)
        }
    }

    /// --task causal-lm learns a table's text column alone (its labels are no text to learn) and a .txt line by line.
    func testCausalLMReadsATablesTextColumnAndATxtsLines() throws {
        let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
        let path = root + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) not found: run scripts/fetch-assets smollm2") }
        let tokenizer = try DecoderTokenizer(model: path, config: try DecoderConfig(gguf: try GGUFFile(path: path)))
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-blocks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let (tsv, txt) = (folder.appendingPathComponent("texts.tsv").path, folder.appendingPathComponent("texts.txt").path)
        try "0\tThe cat sat on the mat.\n1\tA dog ran in the park.\n".write(toFile: tsv, atomically: true, encoding: .utf8)
        try "The cat sat on the mat.\n\nA dog ran in the park.\n".write(toFile: txt, atomically: true, encoding: .utf8)
        let fromTable = try FineTuningRun.textBlocks(tsv, text: .index(1), tokenizer: tokenizer.bpe, end: 2, length: 8)
        let fromLines = try FineTuningRun.textBlocks(txt, text: .name("text"), tokenizer: tokenizer.bpe, end: 2, length: 8)
        XCTAssertEqual(fromTable, fromLines)
        let raw = folder.appendingPathComponent("texts.raw").path   // any other file (wikitext's .raw, a .md): lines too
        try FileManager.default.copyItem(atPath: txt, toPath: raw)
        XCTAssertEqual(try FineTuningRun.textBlocks(raw, text: .name("text"), tokenizer: tokenizer.bpe, end: 2, length: 8), fromLines)
        XCTAssertEqual(fromLines.flatMap(\.ids), tokenizer.bpe.encodeAsInput("The cat sat on the mat.") + [2] + tokenizer.bpe.encodeAsInput("A dog ran in the park.") + [2])
    }

    /// A decoder classifier reads a pair as HF's tokenizer(a, b): a's ids then b's, cut longest-first.
    func testAPairIsBothTextsCutLongestFirst() throws {
        let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
        let path = root + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) not found: run scripts/fetch-assets smollm2") }
        let tokenizer = try DecoderTokenizer(model: path, config: try DecoderConfig(gguf: try GGUFFile(path: path)))
        let (a, b) = (tokenizer.bpe.encode("The cat sat on the mat."), tokenizer.bpe.encode("A dog ran in the park today."))
        let whole = DecoderClassifier.encoding(Example(text: "The cat sat on the mat.", pair: "A dog ran in the park today.", line: 1),
                                               tokenizer: tokenizer, maxLength: 64)
        XCTAssertEqual(whole.ids, a + b)
        let cut = DecoderClassifier.encoding(Example(text: "The cat sat on the mat.", pair: "A dog ran in the park today.", line: 1),
                                             tokenizer: tokenizer, maxLength: a.count + 2)
        XCTAssertEqual(cut.ids.count, a.count + 2)
        XCTAssertEqual(cut.ids, tokenizer.bpe.encode("The cat sat on the mat.", "A dog ran in the park today.", maxLength: a.count + 2))
        XCTAssertEqual(DecoderClassifier.encoding(Example(text: "", line: 1), tokenizer: tokenizer, maxLength: 8).ids,
                       [tokenizer.endTokens.min()!], "an empty text is its end token")
    }

    func testAResumedRunContinuesExactly() throws {
        let (whole, wholeModel) = try trainer(labels: 0, steps: 6)
        try whole.run()
        let (first, _) = try trainer(labels: 0, steps: 6)   // the same schedule, stopped after 3 steps
        first.shouldStop = { first.step >= 3 }
        try first.run()
        XCTAssertEqual(first.step, 3)
        let folder = NSTemporaryDirectory() + "retort-decoder-ckpt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try first.saveCheckpoint(folder: folder)
        let (second, secondModel) = try trainer(labels: 0, steps: 6)
        try second.loadCheckpoint(folder: folder)
        try second.run()
        XCTAssertEqual(secondModel.backend.floats(secondModel.weights), wholeModel.backend.floats(wholeModel.weights),
                       "3 + 3 steps through a checkpoint = 6 steps")
    }

    /// The memory plan of a decoder run is what its steps allocate (within the CPU's rounding and
    /// a few scalars), with and without LoRA; a language model's plan names the head's chunks.
    func testThePlanMatchesWhatADecoderStepAllocates() throws {
        for (labels, lora) in [(0, false), (2, false), (0, true)] {
            let backend = try CPUBackend()
            let model = try DecoderModel.load(golden.appendingPathComponent("tiny-llama").path, labels: labels, backend: backend)
            if lora { try model.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targets: [.qProj, .vProj, .downProj])) }
            let plan = MemoryPlan(decoder: model, shape: MemoryPlan.Shape(batch: 8, length: 16, recomputeGelu: true))
            var options = TrainingOptions()
            (options.batchSize, options.maxSteps, options.epochs) = (8, 2, 1)
            let train = encodings(16, seed: 1).map { e -> Encoding in   // full-length rows: the arena's size
                var e = e
                while e.ids.count < 16 { e.ids.append(5); e.typeIds.append(0); e.attentionMask.append(1) }
                return e
            }
            let task = try DecoderTask(model: model, maxBatch: 8, maxLength: 16)
            _ = try Trainer(task: task, train: train, trainLabels: train.map { _ in 1 }, dev: [], devLabels: [], options: options).run()
            let peak = backend.memoryUse.peak
            XCTAssertEqual(Double(plan.total), Double(peak), accuracy: 0.01 * Double(peak),
                           "labels \(labels) lora \(lora): planned \(plan.total) bytes, the steps peaked at \(peak)")
            XCTAssertEqual(plan.headNote != nil, labels == 0)
        }
    }
}
