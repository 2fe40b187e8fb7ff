// The trainer on the tiny golden BERT and synthetic data: it learns, and a run interrupted,
// checkpointed and resumed into a fresh model reproduces the uninterrupted run's losses exactly
// (dropout on).
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class TrainerTests: XCTestCase {
    func trainer(_ backend: Backend, epochs: Int = 8) throws -> Trainer {
        let c = try TinyClassifier.make(backend)
        let (train, trainLabels) = TinyClassifier.data(96, seed: 1), (dev, devLabels) = TinyClassifier.data(32, seed: 2)
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

    /// A dev evaluation tells the texts done after each batch (the trainer's progress line), and
    /// classifying in slices of whole batches gives the logits of one call over all the texts.
    func testEvaluationsReportTheirProgressAndSlicesChangeNoLogit() throws {
        let backend = try CPUBackend()
        let t = try trainer(backend, epochs: 1)
        var done: [Int] = []
        let metrics = try t.task.evaluate(t.dev, labels: t.devLabels, batchSize: 8) { done.append($0) }
        XCTAssertEqual(done, [8, 16, 24, 32])
        XCTAssertEqual(metrics.examples, 32)
        let c = try TinyClassifier.make(backend), (texts, _) = TinyClassifier.data(37, seed: 3)
        let encodings = texts.map { c.tokenizer.encode($0, maxLength: 16) }
        var reports: [Int] = []
        let sliced = try classifyInSlices(encodings, slice: 8, progress: { done, total, _ in
            XCTAssertEqual(total, 37)
            reports.append(done)
        }) { try c.classify($0, batchSize: 4) }
        XCTAssertEqual(reports, [8, 16, 24, 32, 37])
        XCTAssertEqual(sliced, try c.classifyByLength(encodings, batchSize: 4))
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
            let c = try TinyClassifier.make(backend)
            var options = TrainingOptions()
            options.batchSize = batch; options.accumulation = accumulation; options.maxSteps = 1; options.learningRate = 1e-3
            var config = c.model.config
            config.hiddenDropout = 0; config.attentionDropout = 0
            let model = try BertModel(config: config, labels: 2, backend: backend)
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
        let c = try TinyClassifier.make(backend)
        let (texts, labels) = TinyClassifier.data(700, seed: 4)
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

    func testAResumeWithOtherAdaptersIsRefusedNamingBoth() throws {
        var state = TrainerState(step: 3, options: TrainingOptions(), best: nil, lossScaler: nil, evaluatedStep: nil, lastLoss: nil)
        state.adapters = TrainerState.adapters(LoRAConfig(rank: 8, alpha: 16, targets: [.query, .value]))
        func conflict(_ lora: LoRAConfig?) -> String? {
            Trainer.resumeConflict(state, folder: "ckpt", options: TrainingOptions(), examples: 100, adapters: TrainerState.adapters(lora))
                .map { "\($0)" }
        }
        XCTAssertNil(conflict(LoRAConfig(rank: 8, alpha: 16, targets: [.query, .value])))
        XCTAssertEqual(conflict(LoRAConfig(rank: 16, alpha: 16, targets: [.query, .value])).map { $0.contains(
            "ckpt was trained with LoRA rank 8, alpha 16, dropout 0.1, targets query,value (this run: LoRA rank 16, alpha 16, dropout 0.1, "
            + "targets query,value)") }, true)
        XCTAssertNotNil(conflict(LoRAConfig(rank: 8, alpha: 16, dropout: 0, targets: [.query, .value])))
        XCTAssertNotNil(conflict(LoRAConfig(rank: 8, alpha: 16, targets: [.query, .key, .value])))
        XCTAssertNotNil(conflict(nil))
        state.adapters = nil   // a checkpoint from before adapters were recorded: not checked here (its tensors still are)
        XCTAssertNil(conflict(nil))
    }

    /// Data parallel: the ranks' shares of a batch are disjoint, cover it, differ by at most one
    /// example, and weighed by their shares they average to the batch's mean.
    func testRanksShareEveryBatchAndTheirWeighedMeansAreTheBatchMean() {
        XCTAssertEqual(Trainer.shard([7, 3, 9, 1], rank: 0, size: 2), [7, 9])
        XCTAssertEqual(Trainer.shard([7, 3, 9, 1], rank: 1, size: 2), [3, 1])
        XCTAssertEqual(Trainer.shard([7, 3, 9, 1, 5], rank: 1, size: 2), [3, 1])
        XCTAssertEqual(Trainer.shard([4], rank: 2, size: 3), [])
        XCTAssertEqual(Trainer.shard([4, 8], rank: 0, size: 1), [4, 8])
        for size in 1...5 {
            for count in 1...13 {
                let batch = Array(100..<(100 + count)), values = batch.map { Double($0 % 7) + 0.25 }
                let shares = (0..<size).map { Trainer.shard(batch, rank: $0, size: size) }
                XCTAssertLessThanOrEqual(shares.map(\.count).max()! - shares.map(\.count).min()!, 1)
                XCTAssertEqual(shares.joined().sorted(), batch, "\(count) over \(size)")
                // Σ_r scale_r · mean_r / size == the batch's mean
                let weighed = shares.filter { !$0.isEmpty }.map { share -> Double in
                    let mean = share.map { values[$0 - 100] }.reduce(0, +) / Double(share.count)
                    return Double(Trainer.shareScale(examples: share.count, of: count, ranks: size)) * mean
                }.reduce(0, +) / Double(size)
                XCTAssertEqual(weighed, values.reduce(0, +) / Double(count), accuracy: 1e-6)
            }
        }
    }
}
