// LoRA on decoders against peft (Tests/Golden/make_decoder_golden.py): GPT-2's c_attn and c_proj
// (the fused q/k/v projection and both output projections, fan_in_fan_out) and Llama's q_proj,
// v_proj, gate_proj and down_proj, read from the adapter folders peft saved — logits, loss, every
// adapter gradient, 5 AdamW steps — and our adapter folders read back the same.
import Backend
import Foundation
@testable import Models
import Train
import XCTest

final class DecoderLoRATests: XCTestCase {
    func tinyWithAdapter(_ name: String) throws -> (DecoderModel, DecoderActivations, SafeTensorsFile) {
        let model = try DecoderModel.load(golden.appendingPathComponent("tiny-\(name)").path, backend: try CPUBackend())
        try model.loadAdapter(folder: golden.appendingPathComponent("tiny-\(name)-lora").path)
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-\(name)-expected.safetensors").path)
        let shape = try expected.entry("input_ids").shape
        let a = try DecoderActivations(config: model.config, maxBatch: shape[0], maxLength: shape[1], backend: model.backend, headRows: 16)
        func ints(_ name: String) throws -> [Int32] { try expected.integers(name).map { Int32($0) } }
        a.load(ids: try ints("input_ids"), mask: try ints("attention_mask"), batch: shape[0], length: shape[1], backend: model.backend)
        return (model, a, expected)
    }

    func testLossAndAdapterGradientsMatchPEFT() throws {
        for name in ["gpt2", "llama"] {
            let (model, a, expected) = try tinyWithAdapter(name)
            let lora = try XCTUnwrap(model.lora)
            XCTAssertEqual(model.gradientLayout.total, 0, "\(name): the base is frozen")
            XCTAssertEqual(lora.modules.count, name == "gpt2" ? 6 : 8, "\(name): c_proj adapts both output projections")
            model.forward(a, training: true, seed: 1)
            model.lossBackward(a)
            assertClose(model.backend.floats(a.loss.slice(0, 1)), try expected.floats("lora.loss"), atol: 1e-6, rtol: 1e-5, "\(name) LoRA loss")
            for e in lora.layout.entries {
                assertClose(model.backend.floats(lora.layout.view(lora.grads, e.name)), try expected.floats("lora.grad." + e.name),
                            atol: 2e-6, rtol: 2e-3, "\(name) \(e.name) gradient")
            }
            // 5 AdamW steps on the adapters.
            let (fresh, b, _) = try tinyWithAdapter(name)
            let optimizer = try Optimizer(decoder: fresh)
            var losses: [Float] = []
            for step in 1...5 {
                fresh.zeroGradients()
                fresh.forward(b, training: true, seed: UInt64(step))
                fresh.lossBackward(b)
                losses.append(fresh.backend.floats(b.loss.slice(0, 1))[0])
                optimizer.step(learningRate: 1e-3, weightDecay: 0.01, step: step)
            }
            assertClose(losses, try expected.floats("lora.adamw.losses"), atol: 1e-5, rtol: 2e-4, "\(name) losses of 5 AdamW steps")
        }
    }

    func testAdapterFoldersRoundTripAndMergeKeepsTheFunction() throws {
        for name in ["gpt2", "llama"] {
            let (model, a, _) = try tinyWithAdapter(name)
            model.forward(a)
            let before = model.backend.floats(model.lastTokenLogits(a))
            let folder = NSTemporaryDirectory() + "retort-decoder-lora-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try model.saveAdapter(folder: folder + "/adapter", baseModel: "tiny-\(name)")
            let config = try configObject(folder + "/adapter/adapter_config.json")
            XCTAssertEqual(config["task_type"] as? String, "CAUSAL_LM")
            XCTAssertEqual(config["fan_in_fan_out"] as? Bool, name == "gpt2")
            let again = try DecoderModel.load(golden.appendingPathComponent("tiny-\(name)").path, backend: model.backend)
            try again.loadAdapter(folder: folder + "/adapter")
            again.forward(a)
            XCTAssertEqual(again.backend.floats(again.lastTokenLogits(a)), before, "\(name): the saved adapter reads back the same")
            // The merged full model (what save writes with adapters attached) computes the same.
            try model.save(folder: folder + "/merged")
            let merged = try DecoderModel.load(folder + "/merged", backend: model.backend)
            merged.forward(a)
            assertClose(merged.backend.floats(merged.lastTokenLogits(a)), before, atol: 1e-4, rtol: 1e-4, "\(name): merged weights")
        }
    }

    func testTargetsOfAnotherFamilyAreRefused() throws {
        let model = try DecoderModel.load(golden.appendingPathComponent("tiny-llama").path, backend: try CPUBackend())
        XCTAssertThrowsError(try model.attachLoRA(LoRAConfig(rank: 4, alpha: 8, targets: [.cAttn]))) { error in
            XCTAssertEqual("\(error)", "LoRA target c_attn is not a module of llama; it has q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
        }
    }

    /// Clipping covers the adapters (their gradients are a buffer of their own): the norm is the
    /// adapters', and clipping to a tiny norm brings it there.
    func testClippingCoversTheAdapters() throws {
        let (model, a, _) = try tinyWithAdapter("llama")
        let optimizer = try Optimizer(decoder: model)
        model.zeroGradients()
        model.forward(a, training: true, seed: 1)
        model.lossBackward(a)
        let lora = try XCTUnwrap(model.lora)
        let expected = model.backend.floats(lora.grads).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertGreaterThan(expected, 0)
        XCTAssertEqual(optimizer.clip(maxNorm: 1e-3), expected, accuracy: 1e-4 * expected, "the norm is the adapters'")
        let after = model.backend.floats(lora.grads).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(after, 1e-3, accuracy: 1e-5, "clipped")
    }
}
