// The memory plan against what training really allocates (the CPU backend counts its live bytes
// and their peak), GELU recomputation (same gradients, the planned saving), and the refusal that
// names the knobs.
import Backend
import Foundation
import Models
@testable import Train
import XCTest

final class MemoryPlanTests: XCTestCase {
    func testThePlanMatchesWhatATrainingStepAllocates() throws {
        for (lora, recompute) in [(false, false), (false, true), (true, false)] {
            let backend = try CPUBackend()
            let c = try TinyClassifier.make(backend)
            if lora { try c.model.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targets: [.query, .value, .intermediate])) }
            let shape = MemoryPlan.Shape(batch: 16, length: 16, recomputeGelu: recompute)
            let plan = MemoryPlan(model: c.model, shape: shape)
            let (train, labels) = TinyClassifier.data(32, seed: 1)
            var options = TrainingOptions()
            options.epochs = 1; options.batchSize = 16; options.maxSteps = 2
            let trainer = try Trainer(classifier: c, train: train.map { c.tokenizer.encode($0, maxLength: 16) }, trainLabels: labels,
                                      dev: [], devLabels: [], options: options, recomputeGelu: recompute)
            _ = try trainer.run()
            let peak = backend.memoryUse.peak
            // The CPU rounds each allocation up to 64 bytes; the plan leaves out a few scalars.
            XCTAssertEqual(Double(plan.total), Double(peak), accuracy: 0.03 * Double(peak),
                           "lora \(lora) recompute \(recompute): planned \(plan.total) bytes, the step peaked at \(peak)")
        }
    }

    func testRecomputingGeluGivesTheSameGradientsWithLessMemory() throws {
        let backend = try CPUBackend()
        let c = try TinyClassifier.make(backend), config = c.model.config
        let (texts, labels) = TinyClassifier.data(8, seed: 3)
        let batch = texts.map { c.tokenizer.encode($0, maxLength: 16) }
        var gradients: [[Float]] = []
        for recompute in [false, true] {
            let a = try BertActivations(config: config, labels: 2, maxBatch: 8, maxLength: 16, backend: backend, recomputeGelu: recompute)
            c.load(batch, labels: labels, into: a)
            c.model.zeroGradients()
            c.model.forward(a, training: true, seed: 11)
            c.model.backward(a)
            gradients.append(backend.floats(c.model.grads))
        }
        XCTAssertEqual(gradients[0], gradients[1], "recomputing GELU changed the gradients")
        let keep = BertActivations.bytes(config: config, labels: 2, maxBatch: 8, maxLength: 16)
        let recompute = BertActivations.bytes(config: config, labels: 2, maxBatch: 8, maxLength: 16, recomputeGelu: true)
        XCTAssertEqual(keep - recompute, (config.layers - 1) * 8 * 16 * config.intermediateSize * 4)
    }

    func testARunThatDoesNotFitIsRefusedNamingTheKnobs() throws {
        let backend = try CPUBackend()
        let c = try TinyClassifier.make(backend)
        let shape = MemoryPlan.Shape(batch: 64, length: 16, recomputeGelu: false)
        let plan = MemoryPlan(model: c.model, shape: shape), quarter = plan.replanned(MemoryPlan.Shape(batch: 16, length: 16, recomputeGelu: false))
        let tight = MemoryUse(inUse: 0, peak: 0, reserved: 0, available: quarter.total + 1)
        XCTAssertThrowsError(try plan.check(use: tight, device: "cpu")) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("this run needs \(MemoryPlan.format(plan.total)) on cpu"), message)
            XCTAssertTrue(message.contains("batch size 16 (fits)"), message)
            XCTAssertFalse(message.contains("\n"), "one line: \(message)")
            // Each knob is a setting, which a front end names by its own flag.
            let flags: [Setting: String] = [.batchSize: "--batch-size", .recompute: "--recompute", .loraRank: "--lora-rank", .maxLength: "--max-length"]
            let flagged = (error as? SettingsError)?.message.rendered { flags[$0] ?? $0.words } ?? ""
            XCTAssertTrue(flagged.contains("--batch-size 16 (fits)"), flagged)
            for knob in ["--recompute gelu", "--lora-rank 8", "a shorter --max-length"] { XCTAssertTrue(flagged.contains(knob), flagged) }
        }
        let roomy = MemoryUse(inUse: 0, peak: 0, reserved: 0, available: plan.total)
        XCTAssertNoThrow(try plan.check(use: roomy, device: "cpu"))
    }
}
