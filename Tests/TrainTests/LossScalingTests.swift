// Dynamic loss scaling (what fp16 training on a GPU runs with), checked on the CPU: the scale's
// schedule; power-of-two scaling changes no bit of what is trained; an overflowing step is
// skipped (the weights do not move), the scale halves and training goes on; a checkpoint keeps
// the scale.
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class LossScalingTests: XCTestCase {
    func testTheScaleHalvesOnOverflowAndDoublesAfterAnIntervalOfGoodSteps() {
        var s = LossScaler(scale: 8, growthInterval: 3, minimum: 2, maximum: 32)
        XCTAssertTrue(s.update(finiteGradients: true))
        XCTAssertTrue(s.update(finiteGradients: true))
        XCTAssertEqual(s.scale, 8)
        XCTAssertTrue(s.update(finiteGradients: true))
        XCTAssertEqual(s.scale, 16, "3 good steps double it")
        XCTAssertTrue(s.update(finiteGradients: true))
        XCTAssertFalse(s.update(finiteGradients: false))
        XCTAssertEqual(s.scale, 8, "an overflow halves it")
        XCTAssertEqual(s.skippedSteps, 1)
        XCTAssertTrue(s.update(finiteGradients: true)); XCTAssertTrue(s.update(finiteGradients: true))
        XCTAssertEqual(s.scale, 8, "the good-step count restarted at the overflow")
        for _ in 0..<4 { _ = s.update(finiteGradients: false) }
        XCTAssertEqual(s.scale, 2, "never below the minimum")
        for _ in 0..<30 { _ = s.update(finiteGradients: true) }
        XCTAssertEqual(s.scale, 32, "never above the maximum")
    }

    func trainer(_ backend: Backend, scaler: LossScaler?, objective: ((BertModel) -> TrainingObjective)? = nil) throws -> Trainer {
        let c = try TinyClassifier.make(backend)
        let (train, labels) = TinyClassifier.data(64, seed: 3)
        var options = TrainingOptions()
        options.epochs = 3; options.batchSize = 16; options.learningRate = 2e-3; options.seed = 4
        options.maxGradNorm = 0.5   // clipping is on for some steps: unscaling and clipping share one factor
        return try Trainer(classifier: c, train: train.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                           dev: [], devLabels: [], options: options, objective: objective?(c.model), lossScaler: scaler)
    }

    func testPowerOfTwoLossScalingChangesNoBitOfTheTraining() throws {
        let backend = try CPUBackend()
        let plain = try trainer(backend, scaler: nil)
        var plainLog: [StepLog] = []
        plain.onStep = { plainLog.append($0) }
        try plain.run()
        let scaled = try trainer(backend, scaler: LossScaler(scale: 1024, growthInterval: 4))
        var scaledLog: [StepLog] = []
        scaled.onStep = { scaledLog.append($0) }
        try scaled.run()

        XCTAssertEqual(scaledLog.map(\.loss), plainLog.map(\.loss))
        XCTAssertEqual(scaledLog.map(\.gradNorm), plainLog.map(\.gradNorm))
        XCTAssertTrue(plainLog.contains { $0.gradNorm > 0.5 }, "no step was clipped")
        XCTAssertEqual(scaledLog.compactMap(\.lossScale), [1024, 1024, 1024, 1024, 2048, 2048, 2048, 2048, 4096, 4096, 4096, 4096])
        XCTAssertEqual(backend.floats(scaled.classifier!.model.weights), backend.floats(plain.classifier!.model.weights),
                       "the trained weights differ")
        XCTAssertNil(plainLog[0].lossScale)
    }

    func testAnOverflowSkipsTheUpdateHalvesTheScaleAndTrainingGoesOn() throws {
        let backend = try CPUBackend()
        let overflow = OverflowAtStep(3)   // an fp16 overflow in this step's backward
        let t = try trainer(backend, scaler: LossScaler(scale: 4096, growthInterval: 100)) { overflow.model = $0; return overflow }
        let model = t.classifier!.model
        var log: [StepLog] = []
        t.onStep = { entry in
            log.append(entry)
            if entry.step == 4 { XCTAssertEqual(backend.floats(model.weights), overflow.weightsBefore, "the overflowing step moved the weights") }
        }
        try t.run()
        XCTAssertEqual(log.map(\.skipped), [false, false, false, true] + Array(repeating: false, count: 8))
        XCTAssertEqual(log.map(\.lossScale), [4096, 4096, 4096, 4096] + Array(repeating: 2048, count: 8))
        XCTAssertFalse(log[3].gradNorm.isFinite)
        XCTAssertTrue(backend.floats(model.weights).allSatisfy(\.isFinite), "inf reached the weights")
        XCTAssertNotEqual(backend.floats(model.weights), overflow.weightsBefore, "training did not go on after the overflow")
        XCTAssertEqual(t.lossScaler?.skippedSteps, 1)

        // A checkpoint keeps the scale the run reached.
        let folder = NSTemporaryDirectory() + "retort-scaler-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try t.saveCheckpoint(folder: folder)
        let resumed = try trainer(backend, scaler: LossScaler(scale: 4096, growthInterval: 100))
        try resumed.loadCheckpoint(folder: folder)
        XCTAssertEqual(resumed.lossScaler, t.lossScaler)
    }

    func testTheCPUComputesInFP32() throws {
        XCTAssertEqual(try CPUBackend().precision, .fp32)
        XCTAssertThrowsError(try Devices.makeBackend(.cpu, precision: .bf16)) { error in
            // The library words the setting; a front end names its own flag for it.
            XCTAssertTrue("\(error)".contains("precision bf16 is for GPUs"), "\(error)")
            let rendered = (error as? SettingsError)?.message.rendered { $0 == .precision ? "--precision" : $0.words }
            XCTAssertEqual(rendered?.hasPrefix("--precision bf16 is for GPUs"), true, "\(error)")
        }
        XCTAssertNil(try trainer(CPUBackend(), scaler: nil).lossScaler, "an fp32 backend needs no loss scaling")
    }
}

/// Cross-entropy, with an inf written into one gradient element in one step's backward (its
/// 0-based index among the steps), as an fp16 overflow would.
final class OverflowAtStep: TrainingObjective {
    let overflowStep: Int
    var model: BertModel!
    var calls = 0
    private(set) var weightsBefore: [Float] = []
    init(_ step: Int) { overflowStep = step }

    func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        model.forward(a, training: true, seed: seed)
        model.crossEntropyBackward(a, gradScale: gradScale)
        if calls == overflowStep {
            weightsBefore = model.backend.floats(model.weights)
            model.backend.fill(model.grads.slice(17, 1), .infinity)
        }
        calls += 1
        losses.add(nil, a.loss, weight: weight)
    }
}
