// LoRA against peft (Tests/Golden/make_golden.py lora): the adapter folder peft saved, loaded by
// Retort, gives peft's logits, loss, adapter and classifier gradients and 5 AdamW steps; Retort's
// own adapter files round-trip; merging the adapters into the weights gives the same logits.
import Backend
import Foundation
@testable import Models
import Train
import XCTest

final class LoRAParityTests: XCTestCase {
    func model() throws -> (BertModel, BertActivations, SafeTensorsFile) {
        let model = try BertModel.load(folder: golden.appendingPathComponent("tiny-bert").path, backend: try CPUBackend())
        try model.loadAdapter(folder: golden.appendingPathComponent("tiny-bert-lora").path)
        return try goldenBatch("tiny-bert-lora-expected.safetensors", model)
    }

    func peftName(_ name: String) -> String { name.hasPrefix("classifier.") ? "base_model.model." + name : "base_model.model.bert." + name }

    func testLogitsLossAndGradientsMatchPeft() throws {
        let (model, a, expected) = try model()
        XCTAssertEqual(model.lora?.config.targets.map(\.rawValue).sorted(), ["attention_output", "intermediate", "query", "value"])
        XCTAssertEqual(model.lora?.config.scale, 2)
        assertClose(model.backend.floats(model.forward(a)), try expected.floats("logits"), atol: 1e-5, rtol: 1e-4, "logits")
        model.zeroGradients()
        assertClose([model.backward(a)], try expected.floats("loss"), atol: 1e-6, rtol: 1e-4, "loss")
        let trainable = model.trainable
        XCTAssertEqual(trainable.count, 18)   // 2 layers × 4 targets × (A, B) + classifier weight and bias
        let references = try trainable.map { try expected.floats("grad." + peftName($0.name)) }
        let largest = references.flatMap { $0 }.map(abs).max() ?? 1
        for (t, reference) in zip(trainable, references) {
            assertClose(model.backend.floats(t.grad), reference, atol: 1e-6 * largest, rtol: 1e-4, "gradient of \(t.name)")
        }
        // The frozen base has no gradient storage: the model's gradient buffer is the classifier's.
        XCTAssertEqual(model.grads.count, model.labels * model.config.hiddenSize + model.labels)
        XCTAssertEqual(model.gradientLayout.entries.map(\.name), ["classifier.weight", "classifier.bias"])
        XCTAssertNil(model.parameters.layers[0].query.weight.grad)
        XCTAssertNil(model.parameters.layers[1].outputNorm.bias.grad)
    }

    func testFiveAdamWStepsMatchPeft() throws {
        let (model, a, expected) = try model()
        assertClose(try fiveAdamWLosses(model, a), try expected.floats("adamw.losses"), atol: 1e-5, rtol: 2e-4,
                    "losses of 5 AdamW steps")
    }

    func testAdapterRoundTripAndMerge() throws {
        let (model, a, _) = try model()
        let logits = model.backend.floats(model.forward(a))
        let folder = NSTemporaryDirectory() + "retort-lora-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try model.saveAdapter(folder: folder, baseModel: "tiny-bert")
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(config["target_modules"] as? [String], ["attention.output.dense", "intermediate.dense", "query", "value"])
        XCTAssertEqual(config["peft_type"] as? String, "LORA")
        let again = try BertModel.load(folder: golden.appendingPathComponent("tiny-bert").path, backend: model.backend)
        try again.loadAdapter(folder: folder)
        XCTAssertEqual(again.backend.floats(again.forward(a)), logits)
        // Merged: W + scale·B·A in a model without adapters.
        let merged = try BertModel(config: model.config, labels: model.labels, backend: model.backend)
        merged.backend.copy(merged.weights, try model.mergedWeights())
        assertClose(merged.backend.floats(merged.forward(a)), logits, atol: 1e-5, rtol: 1e-4, "merged logits")
    }

    /// peft's adapter on tiny-mpnet (make_golden.py lora: q, v, o and intermediate.dense; the head,
    /// classifier.dense and classifier.out_proj, saved whole): Retort reads it and gives peft's
    /// logits and loss; only the adapters and the head (our pooler and classifier) train; the
    /// adapter Retort writes has peft's tensor names and reads back to the same logits.
    func testMPNetAdapterMatchesPeftAndRoundTrips() throws {
        let backend = try CPUBackend(), base = golden.appendingPathComponent("tiny-mpnet").path
        let (model, a, _) = try goldenBatch("tiny-mpnet-expected.safetensors", try BertModel.load(folder: base, backend: backend))
        let peftFolder = golden.appendingPathComponent("tiny-mpnet-lora").path
        try model.loadAdapter(folder: peftFolder)
        XCTAssertEqual(model.lora?.config.targets.map(\.rawValue).sorted(), ["attention_output", "intermediate", "query", "value"])
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-mpnet-lora-expected.safetensors").path)
        let logits = model.backend.floats(model.forward(a))
        assertClose(logits, try expected.floats("logits"), atol: 1e-5, rtol: 1e-4, "logits")
        model.zeroGradients()
        assertClose([model.backward(a)], try expected.floats("loss"), atol: 1e-6, rtol: 1e-4, "loss")
        XCTAssertEqual(model.trainable.count, 2 * 4 * 2 + 4)   // 2 layers × 4 targets × (A, B) + the head's dense and out_proj
        XCTAssertEqual(model.gradientLayout.entries.map(\.name).sorted(), ["classifier.bias", "classifier.weight", "pooler.dense.bias", "pooler.dense.weight"])
        let folder = NSTemporaryDirectory() + "retort-mpnet-lora-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try model.saveAdapter(folder: folder, baseModel: base)
        let written = try SafeTensorsFile(path: folder + "/adapter_model.safetensors")
        let peft = try SafeTensorsFile(path: peftFolder + "/adapter_model.safetensors")
        XCTAssertEqual(Set(written.entries.keys), Set(peft.entries.keys))
        for key in peft.entries.keys { XCTAssertEqual(try written.floats(key), try peft.floats(key), key) }
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(config["target_modules"] as? [String], ["attention.attn.o", "attention.attn.q", "attention.attn.v", "intermediate.dense"])
        let again = try BertModel.load(folder: base, backend: backend)
        try again.loadAdapter(folder: folder)
        XCTAssertEqual(again.backend.floats(again.forward(a)), logits)
    }

    func testMergeAndUnmergeInPlace() throws {
        let (model, a, _) = try model()
        let logits = model.backend.floats(model.forward(a)), base = model.backend.floats(model.weights)
        model.mergeLoRA()
        XCTAssertTrue(model.lora!.merged)
        assertClose(model.backend.floats(model.forward(a)), logits, atol: 1e-5, rtol: 1e-4, "logits with the adapters merged")
        model.unmergeLoRA()
        assertClose(model.backend.floats(model.weights), base, atol: 1e-6, rtol: 1e-5, "weights after unmerge")
        // W + s·B·A − s·B·A rounds: equal within float noise, not bit for bit.
        assertClose(model.backend.floats(model.forward(a)), logits, atol: 1e-5, rtol: 1e-5, "logits after unmerge")
    }

    func testFFNOutputAloneIsWrittenAsARegex() throws {
        let backend = try CPUBackend()
        let model = try BertModel.load(folder: golden.appendingPathComponent("tiny-bert").path, backend: backend)
        try model.attachLoRA(LoRAConfig(rank: 2, alpha: 4, targets: [.query, .output]))
        XCTAssertEqual(model.lora?.peftTargets as? String, ".*\\.layer\\.\\d+\\.(attention\\.self\\.query|output\\.dense)")
        let lora = model.lora!, query = "encoder.layer.0.attention.self.query"
        XCTAssertEqual(backend.floats(lora.layout.view(lora.weights, query + ".lora_B.weight")).map(abs).max(), 0)   // B starts at zero
        let aValues = backend.floats(lora.layout.view(lora.weights, query + ".lora_A.weight"))
        XCTAssertLessThanOrEqual(aValues.map(abs).max()!, 1 / Float(64).squareRoot())   // kaiming-uniform bound 1/√in
    }
}
