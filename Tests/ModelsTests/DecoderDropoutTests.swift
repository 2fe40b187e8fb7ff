// GPT-2's dropout in training (embd_pdrop on the embeddings, resid_pdrop after each block's
// attention and MLP projections, attn_pdrop on the attention probabilities): read from
// config.json (transformers' 0.1 when a field is absent), the same masks for the same seed, none
// outside training, and gradients that are the training forward's — finite differences of the
// loss with the masks fixed by the seed, at the largest gradient of tensors on every dropout path.
import Backend
import Foundation
@testable import Models
import XCTest

final class DecoderDropoutTests: XCTestCase {
    /// The tiny golden GPT-2 with `config` edited, and its golden batch loaded for training.
    func gpt2(_ edit: (inout [String: Any]) -> Void) throws -> (DecoderModel, DecoderActivations) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-dropout-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: golden.appendingPathComponent("tiny-gpt2"), to: folder)
        defer { try? FileManager.default.removeItem(at: folder) }
        let configURL = folder.appendingPathComponent("config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let model = try DecoderModel.load(folder.path, backend: try CPUBackend())
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-gpt2-expected.safetensors").path)
        let shape = try expected.entry("input_ids").shape
        let a = try DecoderActivations(config: model.config, maxBatch: shape[0], maxLength: shape[1], backend: model.backend)
        a.load(ids: try expected.integers("input_ids").map { Int32($0) }, mask: try expected.integers("attention_mask").map { Int32($0) },
               batch: shape[0], length: shape[1], backend: model.backend)
        return (model, a)
    }

    func dropout(_ p: Double) -> (inout [String: Any]) -> Void {
        { for key in ["embd_pdrop", "resid_pdrop", "attn_pdrop"] { $0[key] = p } }
    }

    func loss(_ model: DecoderModel, _ a: DecoderActivations, training: Bool, seed: UInt64 = 0) -> Float {
        model.forward(a, training: training, seed: seed)
        return model.loss(a)
    }

    func testTheConfigSaysHowMuchAndTransformersDefaultsFillIn() throws {
        let (set, _) = try gpt2(dropout(0.2))
        XCTAssertEqual([set.config.embeddingDropout, set.config.residualDropout, set.config.attentionDropout], [0.2, 0.2, 0.2])
        let (absent, _) = try gpt2 { for key in ["embd_pdrop", "resid_pdrop", "attn_pdrop"] { $0.removeValue(forKey: key) } }
        XCTAssertEqual([absent.config.embeddingDropout, absent.config.residualDropout, absent.config.attentionDropout], [0.1, 0.1, 0.1])
        XCTAssertThrowsError(try gpt2 { $0["resid_pdrop"] = 1.5 }) { error in
            XCTAssertTrue("\(error)".hasSuffix("config.json: resid_pdrop must be a probability in [0, 1), found 1.5"), "\(error)")
        }
        let llama = try DecoderConfig(path: golden.appendingPathComponent("tiny-llama/config.json").path)
        XCTAssertEqual(llama.attentionDropout, 0)
        XCTAssertEqual(llama.residualDropout, 0)
    }

    func testMasksFollowTheSeedAndOnlyTraining() throws {
        let (plain, pa) = try gpt2(dropout(0))
        let (model, a) = try gpt2(dropout(0.1))
        let reference = loss(plain, pa, training: true, seed: 3)
        XCTAssertEqual(loss(model, a, training: false), reference, "no dropout outside training")
        let first = loss(model, a, training: true, seed: 3)
        XCTAssertEqual(loss(model, a, training: true, seed: 3), first, "the same seed, the same masks")
        XCTAssertNotEqual(first, reference)
        XCTAssertNotEqual(loss(model, a, training: true, seed: 4), first, "another seed, other masks")
    }

    func testGradientsAreTheTrainingForwardsFiniteDifferences() throws {
        let (model, a) = try gpt2(dropout(0.2))
        let seed: UInt64 = 5, b = model.backend
        model.zeroGradients()
        model.forward(a, training: true, seed: seed)
        model.lossBackward(a)
        // wte: the embedding dropout; c_attn: the attention's; attn.c_proj and mlp.c_proj: the two residual sites.
        for name in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.attn.c_attn.weight",
                     "transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_proj.weight", "transformer.h.0.ln_2.weight"] {
            let gradient = b.floats(model.g(name)), weights = model.w(name)
            let i = gradient.indices.max { abs(gradient[$0]) < abs(gradient[$1]) }!
            var values = b.floats(weights)
            let original = values[i], h: Float = 1e-3
            func lossAt(_ w: Float) -> Double {
                values[i] = w
                values.withUnsafeBytes { b.upload(weights, $0) }
                return Double(loss(model, a, training: true, seed: seed))
            }
            let numeric = (lossAt(original + h) - lossAt(original - h)) / Double(2 * h)
            _ = lossAt(original)
            XCTAssertEqual(Double(gradient[i]), numeric, accuracy: 0.03 * abs(numeric) + 2e-4, "\(name)[\(i)]")
        }
    }
}
