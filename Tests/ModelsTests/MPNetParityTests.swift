// MPNet against transformers (golden files from Tests/Golden/make_golden.py mpnet): a tiny random
// MPNetForSequenceClassification's logits, loss and every gradient — the relative position bias
// table included, on a batch long enough to reach the log-spaced buckets — and the real
// all-mpnet-base-v2: tokenizer ids (single and pair) and last hidden states.
import Backend
import Foundation
@testable import Models
import XCTest

final class MPNetParityTests: XCTestCase {
    func testTinyMPNetLogitsLossAndEveryGradientMatchPyTorch() throws {
        let model = try BertModel.load(folder: golden.appendingPathComponent("tiny-mpnet").path, backend: try CPUBackend())
        XCTAssertEqual(model.config.family, .mpnet)
        XCTAssertNil(model.layout.entry("embeddings.token_type_embeddings.weight"))
        let (_, a, expected) = try goldenBatch("tiny-mpnet-expected.safetensors", model)
        assertClose(model.backend.floats(model.forward(a)), try expected.floats("logits"), atol: 1e-5, rtol: 1e-4, "logits")
        assertClose([model.backward(a)], try expected.floats("loss"), atol: 1e-6, rtol: 1e-4, "loss")
        let grads = model.backend.floats(model.grads)
        let references = try model.layout.entries.map { try expected.floats("grad." + BertModel.fileName($0.name, prefix: "mpnet.", family: .mpnet)) }
        let largest = references.flatMap { $0 }.map(abs).max() ?? 1
        for (e, reference) in zip(model.layout.entries, references) {
            assertClose(Array(grads[e.offset..<(e.offset + e.count)]), reference, atol: 1e-6 * largest, rtol: 1e-4, "gradient of \(e.name)")
        }
        // The bias table's gradient must be non-trivial for the check to mean something.
        let table = model.layout.entry(BertModel.relativeBiasName)!
        XCTAssertGreaterThan(grads[table.offset..<(table.offset + table.count)].map(abs).max() ?? 0, 1e-3)
    }

    func testSaveWritesMPNetNamesThatLoadBack() throws {
        let model = try BertModel.load(folder: golden.appendingPathComponent("tiny-mpnet").path, backend: try CPUBackend())
        let (_, a, _) = try goldenBatch("tiny-mpnet-expected.safetensors", model)
        let logits = model.backend.floats(model.forward(a))
        let folder = NSTemporaryDirectory() + "retort-mpnet-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try model.save(folder: folder)
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        for name in ["mpnet.encoder.layer.1.attention.attn.q.weight", "mpnet.encoder.layer.0.attention.LayerNorm.bias",
                     "mpnet.encoder.relative_attention_bias.weight", "classifier.dense.weight", "classifier.out_proj.bias"] {
            XCTAssertNotNil(file.entries[name], name)
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["model_type"] as? String, "mpnet")
        XCTAssertEqual(config?["architectures"] as? [String], ["MPNetForSequenceClassification"])
        let again = try BertModel.load(folder: folder, backend: model.backend)
        XCTAssertEqual(again.backend.floats(again.forward(a)), logits)
    }

    func testRealMPNetTokenizerAndLastHiddenStatesMatchTransformers() throws {
        let folder = try assetFolder("all-mpnet-base-v2")
        let backend = try CPUBackend()
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("mpnet-hidden.safetensors").path)
        let tokenizer = try WordPieceTokenizer(folder: folder)
        let ids = try expected.integers("input_ids").map(Int32.init), mask = try expected.integers("attention_mask").map(Int32.init)
        let T = try expected.entry("input_ids").shape[1]
        let sentences = ["a gorgeous , witty , seductive movie .", "Retort distils MPNet too."]
        let padded = tokenizer.pad(sentences.map { tokenizer.encode($0) }, to: T)
        XCTAssertEqual(padded.flatMap(\.ids), ids, "<s> … </s> <pad>…")
        XCTAssertEqual(padded.flatMap(\.attentionMask), mask)
        XCTAssertEqual(tokenizer.encode("the first text", "and the second one").ids,
                       try expected.integers("pair_input_ids").map(Int32.init), "<s> a </s></s> b </s>")
        let (model, a, _) = try goldenBatch("mpnet-hidden.safetensors", try BertModel.load(folder: folder, labels: 2, backend: backend))
        model.forward(a)
        assertClose(backend.floats(model.lastHidden(a)), try expected.floats("last_hidden_state"), atol: 1e-4, rtol: 1e-4,
                    "all-mpnet-base-v2 last hidden states")
    }

    func testRelativeBucketsFollowT5() {
        // Exact for |distance| < 8, log-spaced up to 128; keys after the query in the upper half.
        XCTAssertEqual((0..<8).map { RelativePosition.bucket(-$0, buckets: 32) }, Array(0..<8))
        XCTAssertEqual(RelativePosition.bucket(1, buckets: 32), 17)
        XCTAssertEqual(RelativePosition.bucket(-16, buckets: 32), 10)   // 8 + ⌊log(16/8)/log(128/8)·8⌋
        XCTAssertEqual(RelativePosition.bucket(16, buckets: 32), 26)
        XCTAssertEqual(RelativePosition.bucket(-1000, buckets: 32), 15)
        XCTAssertEqual(RelativePosition.bucket(1000, buckets: 32), 31)
    }
}
