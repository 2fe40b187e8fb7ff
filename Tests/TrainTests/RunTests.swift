// The recipes as a Swift program drives them (README "Using Retort from Swift"), and what a run
// does around its trainer: a loss that stops being a number ends the run before its update, with
// the last good checkpoint and the best model intact; a run stopped at the end of an epoch
// evaluates that epoch when resumed; the learning-rate rule.
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class RunTests: XCTestCase {
    var work: String!

    override func setUpWithError() throws {
        work = NSTemporaryDirectory() + "retort-run-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: work) }

    /// TinyClassifier's sentences as a TSV (label, text), like SST-2.
    func writeData(_ count: Int, seed: UInt64) throws -> String {
        let (texts, labels) = TinyClassifier.data(count, seed: seed)
        let path = work + "/data-\(seed).tsv"
        try zip(labels, texts).map { "\($0)\t\($1)" }.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testAFineTuningRunDrivenFromSwift() throws {
        // As in the README: configure, observe, run.
        var config = FineTuningRun.Configuration(
            model: TinyClassifier.folder,
            data: DataFiles(train: try writeData(160, seed: 1), columns: ColumnSpec(text: .index(1), label: .index(0))),
            output: work + "/run")
        config.training.options.epochs = 3
        config.training.options.batchSize = 16
        config.training.learningRate = 2e-3
        config.training.maxLength = 16
        let run = FineTuningRun(config, backend: try CPUBackend())
        var steps: [StepLog] = [], evaluations: [EvalLog] = []
        run.progress = { event in
            switch event {
            case .step(let p): steps.append(p.log)
            case .evaluated(let e, _): evaluations.append(e)
            default: break
            }
        }
        let metrics = try run.run()
        XCTAssertEqual(steps.count, 27)   // 144 training examples (16 held out), batches of 16, 3 epochs
        XCTAssertEqual(evaluations.map(\.epoch), [1, 2, 3])
        XCTAssertEqual(metrics.steps, 27)
        XCTAssertEqual(metrics.method, "finetune")
        XCTAssertGreaterThan(metrics.bestDev?.accuracy ?? 0, 0.7, "\(metrics)")
        XCTAssertLessThan(steps.suffix(3).map(\.loss).reduce(0, +), steps.prefix(3).map(\.loss).reduce(0, +), "the loss did not go down")
        for file in ["config.json", "model.safetensors", "vocab.txt", "log.jsonl", "metrics.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: work + "/run/" + file), file)
        }
        // The folder it wrote is a model the library loads, and its metrics are what run() returned.
        let saved = try Classifier.load(folder: work + "/run", maxLength: 16, backend: try CPUBackend(), inference: true)
        XCTAssertEqual(saved.labelNames, ["0", "1"])
        XCTAssertEqual(RunFolder(work + "/run").readMetrics()?.bestDev?.accuracy, metrics.bestDev?.accuracy)
        XCTAssertEqual(RunFolder(work + "/run").trainingLosses(), steps.map(\.loss))
        let checkpoint = try XCTUnwrap(CheckpointStore(folder: work + "/run/checkpoints").newest())
        XCTAssertEqual(checkpoint.state.step, 27)
    }

    func testALossThatIsNotANumberStopsTheRunBeforeItsUpdate() throws {
        let backend = try CPUBackend()
        let c = try TinyClassifier.make(backend)
        let (texts, labels) = TinyClassifier.data(64, seed: 3)
        var options = TrainingOptions()
        options.epochs = 2; options.batchSize = 16; options.learningRate = 2e-3
        let poison = NaNAtStep(6, model: c.model)
        let trainer = try Trainer(classifier: c, train: texts.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                                  dev: texts.prefix(16).map { c.tokenizer.encode($0, maxLength: 16) }, devLabels: Array(labels.prefix(16)),
                                  options: options, objective: poison)
        let folder = RunFolder(work + "/diverged")
        try folder.create()
        let runner = StageRunner(folder: folder, policy: CheckpointPolicy(everySteps: 2, everySeconds: 0), log: try LogFile(folder.log, fresh: true),
                                 earlierSeconds: 0, progress: { _ in }, shouldStop: { false })
        var weightsBeforeTheBadStep: [Float] = []
        trainer.onStep = { _ in }   // replaced by the runner; the objective records the weights below
        poison.before = { weightsBeforeTheBadStep = backend.floats(c.model.weights) }
        XCTAssertThrowsError(try runner.run(trainer, stage: nil, stageIndex: 0, epochs: 2, from: nil) {
            try c.save(folder: folder.path, tokenizerSource: TinyClassifier.folder)
        }) { error in
            guard let diverged = error as? TrainingDiverged else { return XCTFail("\(error)") }
            XCTAssertEqual(diverged.step, 6)
            XCTAssertTrue(diverged.loss.isNaN)
            XCTAssertEqual(diverged.bestModel, folder.path, "the epoch-1 model was saved and is named")
            let checkpoint = diverged.checkpoint.flatMap { try? TrainerState(file: $0 + "/trainer.json") }
            XCTAssertEqual(checkpoint?.step, 4, "the last good checkpoint is named (every 2 steps; epoch 1 ended at step 4)")
            XCTAssertTrue(diverged.description.contains("step 6: the loss is nan"), diverged.description)
            XCTAssertTrue(diverged.description.contains("learning rate"), diverged.description)
        }
        XCTAssertEqual(trainer.step, 5, "the bad step is not counted")
        XCTAssertEqual(backend.floats(c.model.weights), weightsBeforeTheBadStep, "the bad step's update was applied")
        XCTAssertTrue(backend.floats(c.model.weights).allSatisfy(\.isFinite))
        XCTAssertNoThrow(try Classifier.load(folder: folder.path, maxLength: 16, backend: backend, inference: true), "the best model loads")
    }

    func testACheckpointTakenBeforeAnEpochsEvaluationEvaluatesFirstWhenResumed() throws {
        let backend = try CPUBackend()
        let (texts, labels) = TinyClassifier.data(64, seed: 5)
        func trainer() throws -> Trainer {
            let c = try TinyClassifier.make(backend)
            var options = TrainingOptions()
            options.epochs = 2; options.batchSize = 16
            let encodings = texts.map { c.tokenizer.encode($0, maxLength: 16) }
            return try Trainer(classifier: c, train: encodings, trainLabels: labels, dev: Array(encodings.prefix(16)),
                               devLabels: Array(labels.prefix(16)), options: options)
        }
        // Uninterrupted: evaluations at steps 4 and 8 (the ends of the epochs).
        let full = try trainer()
        var evaluated: [Int] = []
        full.onEval = { entry, _ in evaluated.append(entry.step) }
        try full.run()
        XCTAssertEqual(evaluated, [4, 8])
        // A checkpoint taken right after step 4, before its evaluation; then the run dies there.
        struct Crash: Error {}
        let first = try trainer()
        var seen: [Int] = []
        first.onStep = { [unowned first] entry in if entry.step == 4 { try? first.saveCheckpoint(folder: self.work + "/early") } }
        first.onImproved = { [unowned first] in if first.step == 4 { throw Crash() } }
        first.onEval = { entry, _ in seen.append(entry.step) }
        XCTAssertThrowsError(try first.run())
        let second = try trainer()
        second.onEval = { entry, _ in seen.append(entry.step) }
        try second.loadCheckpoint(folder: work + "/early")
        try second.run()
        XCTAssertEqual(seen, [4, 8], "every epoch is evaluated once, resumed or not")
    }

    func testAStopRightAfterAnEpochsEvaluationKeepsOneCheckpointOfThatStep() throws {
        let backend = try CPUBackend()
        let c = try TinyClassifier.make(backend)
        let (texts, labels) = TinyClassifier.data(64, seed: 7)
        var options = TrainingOptions()
        options.epochs = 2; options.batchSize = 16
        let encodings = texts.map { c.tokenizer.encode($0, maxLength: 16) }
        let trainer = try Trainer(classifier: c, train: encodings, trainLabels: labels, dev: Array(encodings.prefix(16)),
                                  devLabels: Array(labels.prefix(16)), options: options)
        let folder = RunFolder(work + "/stopped")
        try folder.create()
        var checks = 0   // shouldStop is asked once per step, after the step's evaluation and saves
        let runner = StageRunner(folder: folder, policy: CheckpointPolicy(everySteps: nil, everySeconds: 0), log: try LogFile(folder.log, fresh: true),
                                 earlierSeconds: 0, progress: { _ in }, shouldStop: { checks += 1; return checks == 4 })
        XCTAssertThrowsError(try runner.run(trainer, stage: nil, stageIndex: 0, epochs: 2, from: nil) {}) { error in
            XCTAssertEqual((error as? RunInterrupted)?.step, 4, "\(error)")
        }
        let saved = try FileManager.default.contentsOfDirectory(atPath: folder.checkpoints).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(saved, ["000001-step-4"], "the evaluation's checkpoint is the stop's; no second copy of step 4")
    }

    func testTheLearningRateRuleFollowsWhatTrains() {
        var settings = TrainingSettings()
        XCTAssertEqual(settings.resolvedOptions.learningRate, 5e-5, "the whole model trains")
        settings.lora = LoRAConfig(rank: 8, alpha: 16)
        XCTAssertEqual(settings.resolvedOptions.learningRate, 1e-3, "only adapters (and the head) train")
        settings.learningRate = 3e-4
        XCTAssertEqual(settings.resolvedOptions.learningRate, 3e-4, "a given rate wins")
    }

    /// A model's size on disk counts what its weight files hold, through links (a Hugging Face
    /// cache's snapshot folder links each file to a blob).
    func testTheSizeOnDiskFollowsLinks() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-size-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(count: 1_500_000).write(to: folder.appendingPathComponent("blob"))
        try FileManager.default.createSymbolicLink(atPath: folder.appendingPathComponent("model.safetensors").path, withDestinationPath: "blob")
        XCTAssertEqual(ComparisonReport.weightMegabytes(folder.path), 1.5)
    }
}

/// Cross-entropy whose loss (and gradient) turn to NaN at one step (1-based), as a diverging run's would.
final class NaNAtStep: TrainingObjective {
    let badStep: Int
    let model: BertModel
    var calls = 0
    var before: () -> Void = {}
    init(_ step: Int, model: BertModel) { badStep = step; self.model = model }

    func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        calls += 1
        model.forward(a, training: true, seed: seed)
        model.crossEntropyBackward(a, gradScale: gradScale)
        if calls == badStep {
            before()
            model.backend.fill(model.grads.slice(3, 1), .nan)
            model.backend.fill(a.loss, .nan)
        }
        losses.add(nil, a.loss, weight: weight)
    }
}
