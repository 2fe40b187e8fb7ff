// The trainer on the tiny golden BERT and synthetic data: it learns, and a run interrupted,
// checkpointed and resumed into a fresh model reproduces the uninterrupted run's losses exactly
// (dropout on).
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class TrainerTests: XCTestCase {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Golden/tiny-bert").path

    /// The tiny BERT (vocabulary "w0"…) with hidden and attention dropout 0.1 and a fresh 2-label head.
    func classifier(_ backend: Backend) throws -> Classifier {
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any])
        object["hidden_dropout_prob"] = 0.1
        object["attention_probs_dropout_prob"] = 0.1
        object.removeValue(forKey: "id2label"); object.removeValue(forKey: "label2id")
        let model = try BertModel(config: try BertConfig(object), labels: 2, backend: backend)
        try model.loadWeights(folder + "/model.safetensors", seed: 5, freshHead: true)
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (5..<120).map { "w\($0)" }
        return Classifier(model: model, tokenizer: try WordPieceTokenizer(tokens: tokens), labelNames: ["no", "yes"], maxLength: 16)
    }

    /// Sentences of random words: positives draw from w5…w61, negatives from w62…w119.
    func data(_ count: Int, seed: UInt64) -> ([String], [Int32]) {
        var rng = SplitMix(seed: seed)
        var texts: [String] = [], labels: [Int32] = []
        for _ in 0..<count {
            let positive = Bool.random(using: &rng)
            let range = positive ? 5..<62 : 62..<120
            texts.append((0..<Int.random(in: 3...10, using: &rng)).map { _ in "w\(Int.random(in: range, using: &rng))" }.joined(separator: " "))
            labels.append(positive ? 1 : 0)
        }
        return (texts, labels)
    }

    func trainer(_ backend: Backend, epochs: Int = 8) throws -> Trainer {
        let c = try classifier(backend)
        let (train, trainLabels) = data(96, seed: 1), (dev, devLabels) = data(32, seed: 2)
        var options = TrainingOptions()
        options.epochs = epochs; options.batchSize = 16; options.learningRate = 2e-3; options.seed = 9
        return try Trainer(classifier: c, train: train.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: trainLabels,
                           dev: dev.map { c.tokenizer.encode($0, maxLength: 16) }, devLabels: devLabels, options: options)
    }

    func testItLearnsAndResumesExactly() throws {
        let backend = try CPUBackend()
        // Uninterrupted.
        let full = try trainer(backend)
        var losses: [Double] = []
        full.onStep = { losses.append($0.loss) }
        let best = try XCTUnwrap(try full.run())
        XCTAssertEqual(losses.count, 48)
        XCTAssertLessThan(losses.suffix(3).reduce(0, +) / 3, losses.prefix(3).reduce(0, +) / 3 - 0.1, "the loss did not go down: \(losses)")
        XCTAssertGreaterThan(best.accuracy, 0.7, "dev accuracy \(best.accuracy)")

        // Interrupted after 7 steps (mid-epoch), checkpointed, resumed in a fresh model.
        let checkpoint = NSTemporaryDirectory() + "retort-ckpt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: checkpoint) }
        let first = try trainer(backend)
        var resumed: [Double] = []
        first.onStep = { resumed.append($0.loss) }
        first.shouldStop = { first.step == 7 }
        try first.run()
        XCTAssertTrue(first.stopped)
        try first.saveCheckpoint(folder: checkpoint)
        let second = try trainer(backend)
        second.onStep = { resumed.append($0.loss) }
        try second.loadCheckpoint(folder: checkpoint)
        XCTAssertEqual(second.step, 7)
        try second.run()
        XCTAssertEqual(resumed, losses, "a resumed run must reproduce the uninterrupted losses")
    }

    func testTwoMicroBatchesOfEightStepLikeOneBatchOfSixteen() throws {
        let backend = try CPUBackend()
        var rng = SplitMix(seed: 12)
        // Equal lengths (no padding differences) and no dropout: the gradients must agree.
        let texts = (0..<32).map { _ in (0..<6).map { _ in "w\(Int.random(in: 5..<120, using: &rng))" }.joined(separator: " ") }
        let labels = (0..<32).map { Int32($0 % 2) }
        /// The (clipped) gradient of the first step: Adam's first update, g/(|g| + eps), would turn
        /// rounding noise in gradients that are analytically zero (the key biases) into visible
        /// weight differences, so the gradients are what must agree.
        func gradientOfOneStep(batch: Int, accumulation: Int) throws -> [Float] {
            let c = try classifier(backend)
            var options = TrainingOptions()
            options.batchSize = batch; options.accumulation = accumulation; options.maxSteps = 1; options.learningRate = 1e-3
            var object = c.model.config.raw
            object["hidden_dropout_prob"] = 0.0; object["attention_probs_dropout_prob"] = 0.0
            let model = try BertModel(config: try BertConfig(object), labels: 2, backend: backend)
            backend.copy(model.weights, c.model.weights)
            let quiet = Classifier(model: model, tokenizer: c.tokenizer, labelNames: c.labelNames, maxLength: 16)
            let t = try Trainer(classifier: quiet, train: texts.map { quiet.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                                dev: [], devLabels: [], options: options)
            try t.run()
            return backend.floats(model.grads)
        }
        let accumulated = try gradientOfOneStep(batch: 8, accumulation: 2)
        let single = try gradientOfOneStep(batch: 16, accumulation: 1)
        let largest = single.map(abs).max() ?? 0
        XCTAssertGreaterThan(largest, 0, "no gradient")
        let worst = zip(accumulated, single).map { abs($0 - $1) - 1e-4 * abs($1) }.max() ?? 0
        XCTAssertLessThan(worst, 1e-6 * largest, "accumulated and single-batch gradients differ")
    }

    func testBucketedBatchesCoverEveryExampleOnceWithSimilarLengths() throws {
        let backend = try CPUBackend()
        let c = try classifier(backend)
        let (texts, labels) = data(700, seed: 4)
        var options = TrainingOptions()
        options.batchSize = 16; options.bucket = true
        let t = try Trainer(classifier: c, train: texts.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                            dev: [], devLabels: [], options: options)
        let batches = t.batches(epoch: 0)
        XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(0..<700))
        let lengths = texts.map { c.tokenizer.encode($0, maxLength: 16).ids.count }
        let spread = batches.map { b in b.map { lengths[$0] }.max()! - b.map { lengths[$0] }.min()! }
        XCTAssertLessThanOrEqual(spread.reduce(0, +) / spread.count, 1, "bucketed batches should hold similar lengths")
        XCTAssertNotEqual(batches, t.batches(epoch: 1), "each epoch has its own order")
    }

    func testACheckpointOfAnotherModelIsRefused() throws {
        let backend = try CPUBackend()
        let checkpoint = NSTemporaryDirectory() + "retort-ckpt-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: checkpoint) }
        let t = try trainer(backend)
        try t.saveCheckpoint(folder: checkpoint)
        let values = [Float](repeating: 0, count: 10)
        try SafeTensorsWriter.write([.init(name: "weights", shape: [10], values: values), .init(name: "adam.m", shape: [10], values: values),
                                     .init(name: "adam.v", shape: [10], values: values)], to: checkpoint + "/state.safetensors")
        XCTAssertThrowsError(try t.loadCheckpoint(folder: checkpoint)) { XCTAssertTrue("\($0)".contains("not this model's checkpoint"), "\($0)") }
    }
}
