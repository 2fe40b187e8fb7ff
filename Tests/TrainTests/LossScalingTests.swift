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

    func trainer(_ backend: Backend, scaler: LossScaler?) throws -> Trainer {
        let c = try TinyClassifier.make(backend)
        let (train, labels) = TinyClassifier.data(64, seed: 3)
        var options = TrainingOptions()
        options.epochs = 3; options.batchSize = 16; options.learningRate = 2e-3; options.seed = 4
        options.maxGradNorm = 0.5   // clipping is on for some steps: unscaling and clipping share one factor
        return try Trainer(classifier: c, train: train.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                           dev: [], devLabels: [], options: options, lossScaler: scaler)
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
        XCTAssertEqual(backend.floats(scaled.classifier.model.weights), backend.floats(plain.classifier.model.weights),
                       "the trained weights differ")
        XCTAssertNil(plainLog[0].lossScale)
    }

    func testAnOverflowSkipsTheUpdateHalvesTheScaleAndTrainingGoesOn() throws {
        let backend = try CPUBackend()
        let t = try trainer(backend, scaler: LossScaler(scale: 4096, growthInterval: 100))
        let model = t.classifier.model
        var weightsBefore: [Float] = [], log: [StepLog] = []
        t.objective = { [unowned t] a, _, seed, gradScale in
            model.forward(a, training: true, seed: seed)
            let loss = model.backward(a, gradScale: gradScale)
            if t.step == 3 {   // an fp16 overflow in this step's backward
                weightsBefore = backend.floats(model.weights)
                backend.fill(model.grads.slice(17, 1), .infinity)
            }
            return Double(loss)
        }
        t.onStep = { entry in
            log.append(entry)
            if entry.step == 4 { XCTAssertEqual(backend.floats(model.weights), weightsBefore, "the overflowing step moved the weights") }
        }
        try t.run()
        XCTAssertEqual(log.map(\.skipped), [false, false, false, true] + Array(repeating: false, count: 8))
        XCTAssertEqual(log.map(\.lossScale), [4096, 4096, 4096, 4096] + Array(repeating: 2048, count: 8))
        XCTAssertFalse(log[3].gradNorm.isFinite)
        XCTAssertTrue(backend.floats(model.weights).allSatisfy(\.isFinite), "inf reached the weights")
        XCTAssertNotEqual(backend.floats(model.weights), weightsBefore, "training did not go on after the overflow")
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
            XCTAssertTrue("\(error)".contains("--precision bf16 is for GPUs"), "\(error)")
        }
        XCTAssertNil(try trainer(CPUBackend(), scaler: nil).lossScaler, "an fp32 backend needs no loss scaling")
    }
}
