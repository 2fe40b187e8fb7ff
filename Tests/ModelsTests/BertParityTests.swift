// BERT against PyTorch/transformers (golden files from Tests/Golden/make_golden.py): a tiny
// random model's logits, loss and every parameter gradient, five AdamW steps, the real
// all-MiniLM-L6-v2's last hidden states; checkpoint round trip and error paths.
import Backend
import Foundation
@testable import Models
import Train
import XCTest

let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Golden")

func assertClose(_ got: [Float], _ expected: [Float], atol: Float, rtol: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.count, "\(what): length", file: file, line: line)
    var worst = -1, excess: Float = 0
    for i in 0..<min(got.count, expected.count) {
        let e = abs(got[i] - expected[i]) - (atol + rtol * abs(expected[i]))
        if e > excess || got[i].isNaN { worst = i; excess = e }
    }
    if worst >= 0 {
        XCTFail("\(what): worst element [\(worst)] got \(got[worst]), expected \(expected[worst]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// The batch of a golden file (input_ids, token_type_ids, attention_mask, labels) loaded for `model`.
func goldenBatch(_ file: String, _ model: BertModel) throws -> (BertModel, BertActivations, SafeTensorsFile) {
    let expected = try SafeTensorsFile(path: golden.appendingPathComponent(file).path)
    let shape = try expected.entry("input_ids").shape
    let a = try BertActivations(config: model.config, labels: model.labels, maxBatch: shape[0], maxLength: shape[1], backend: model.backend)
    func ints(_ name: String) throws -> [Int32] { try expected.integers(name).map { Int32($0) } }
    a.load(ids: try ints("input_ids"), types: try ints("token_type_ids"), mask: try ints("attention_mask"),
           labels: expected.entries["labels"] == nil ? [] : try ints("labels"), batch: shape[0], length: shape[1], backend: model.backend)
    return (model, a, expected)
}

/// Losses of five full-batch AdamW steps (lr 1e-3, weight decay 0.01, no dropout), as make_golden.py takes them.
func fiveAdamWLosses(_ model: BertModel, _ a: BertActivations) throws -> [Float] {
    let optimizer = try Optimizer(model: model)
    var losses: [Float] = []
    for step in 1...5 {
        model.zeroGradients()
        model.forward(a)
        losses.append(model.backward(a))
        optimizer.step(learningRate: 1e-3, weightDecay: 0.01, step: step)
    }
    return losses
}

final class BertParityTests: XCTestCase {
    func tinyBert() throws -> (BertModel, BertActivations, SafeTensorsFile) {
        let model = try BertModel.load(folder: golden.appendingPathComponent("tiny-bert").path, backend: try CPUBackend())
        return try goldenBatch("tiny-bert-expected.safetensors", model)
    }

    func testTinyBertLogitsLossAndEveryGradientMatchPyTorch() throws {
        let (model, a, expected) = try tinyBert()
        XCTAssertEqual(model.labels, 3)
        let logits = model.backend.floats(model.forward(a))
        assertClose(logits, try expected.floats("logits"), atol: 1e-5, rtol: 1e-4, "logits")
        let loss = model.backward(a)
        assertClose([loss], try expected.floats("loss"), atol: 1e-6, rtol: 1e-4, "loss")
        let grads = model.backend.floats(model.grads)
        // Relative 1e-4 on every element that matters; the absolute floor is float noise at the
        // scale of the model's largest gradient (not of each tensor: the key biases' gradients
        // are identically zero — a bias on every key shifts a whole score row, which softmax
        // ignores — so both sides hold only rounding noise there).
        let references = try model.layout.entries.map { try expected.floats("grad." + BertModel.fileName($0.name, prefix: "bert.")) }
        let largest = references.flatMap { $0 }.map(abs).max() ?? 1
        for (e, reference) in zip(model.layout.entries, references) {
            let got = Array(grads[e.offset..<(e.offset + e.count)])
            assertClose(got, reference, atol: 1e-6 * largest, rtol: 1e-4, "gradient of \(e.name)")
            if e.name.hasSuffix("attention.self.key.bias") {
                XCTAssertLessThan(got.map(abs).max() ?? 0, 1e-6 * largest, "the key bias gradient must vanish")
            }
        }
    }

    func testFiveAdamWStepsMatchPyTorch() throws {
        let (model, a, expected) = try tinyBert()
        assertClose(try fiveAdamWLosses(model, a), try expected.floats("adamw.losses"), atol: 1e-5, rtol: 2e-4,
                    "losses of 5 AdamW steps")
    }

    func testMiniLMLastHiddenStatesMatchTransformers() throws {
        let folder = try assetFolder("all-MiniLM-L6-v2")
        let backend = try CPUBackend()
        let (model, a, expected) = try goldenBatch("minilm-hidden.safetensors", try BertModel.load(folder: folder, labels: 2, backend: backend))
        model.forward(a)
        assertClose(backend.floats(model.lastHidden(a)), try expected.floats("last_hidden_state"), atol: 1e-4, rtol: 1e-4,
                    "all-MiniLM-L6-v2 last hidden states")
    }

    func testSaveAndLoadRoundTripWithHFNames() throws {
        let (model, a, _) = try tinyBert()
        let logits = model.backend.floats(model.forward(a))
        let folder = NSTemporaryDirectory() + "retort-bert-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try model.save(folder: folder, id2label: [0: "a", 1: "b", 2: "c"])
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        XCTAssertNotNil(file.entries["bert.encoder.layer.1.output.LayerNorm.weight"])
        XCTAssertNotNil(file.entries["classifier.weight"])
        let again = try BertModel.load(folder: folder, backend: model.backend)
        XCTAssertEqual(again.config.id2label, [0: "a", 1: "b", 2: "c"])
        XCTAssertEqual(again.backend.floats(again.forward(a)), logits)
    }

    func testCheckpointErrorsNameTheTensor() throws {
        let folder = golden.appendingPathComponent("tiny-bert").path
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any])
        let backend = try CPUBackend()
        object["intermediate_size"] = 100
        let wide = try BertModel(config: try BertConfig(object), labels: 3, backend: backend)
        XCTAssertThrowsError(try wide.loadWeights(folder + "/model.safetensors")) {
            XCTAssertTrue("\($0)".contains("'bert.encoder.layer.0.intermediate.dense.weight' is [128, 64] but config.json implies [100, 64]"), "\($0)")
        }
        object["intermediate_size"] = 128
        object["num_hidden_layers"] = 3
        let deep = try BertModel(config: try BertConfig(object), labels: 3, backend: backend)
        XCTAssertThrowsError(try deep.loadWeights(folder + "/model.safetensors")) {
            XCTAssertTrue("\($0)".contains("missing tensor 'bert.encoder.layer.2.attention.self.query.weight'"), "\($0)")
        }
    }

    func testAMissingClassifierIsInitialisedAsHFDoes() throws {
        let backend = try CPUBackend()
        let model = try BertModel.load(folder: try assetFolder("all-MiniLM-L6-v2"), labels: 4, backend: backend, seed: 7)
        let w = backend.floats(model.w("classifier.weight")), bias = backend.floats(model.w("classifier.bias"))
        XCTAssertEqual(w.count, 4 * 384)
        XCTAssertEqual(bias, [0, 0, 0, 0])
        let mean = w.reduce(0, +) / Float(w.count), std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, 0.02, accuracy: 0.002)
        XCTAssertEqual(mean, 0, accuracy: 0.002)
    }
}
