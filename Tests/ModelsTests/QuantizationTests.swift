// retort quantize's model side on the tiny golden BERT: the int8 file holds I8 linear weights and
// word embeddings with per-row scales; loading it dequantizes them exactly (values · scale) and
// gives every Linear its int8 weight on the CPU; the int8 forward then differs from the same
// dequantized weights multiplied in fp32 only by the activations' rounding to int8.
import Backend
import Foundation
@testable import Models
import XCTest

final class QuantizationTests: XCTestCase {
    func testSavedInt8ModelLoadsWithExactDequantizedWeightsAndRunsTheInt8Kernels() throws {
        let backend = try CPUBackend()
        let source = try BertModel.load(folder: golden.appendingPathComponent("tiny-bert").path, backend: backend)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-int8-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try source.saveQuantized(folder: folder)
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        let quantized = source.int8ParameterNames
        XCTAssertEqual(quantized.count, 6 * source.config.layers + 3, "six Linears a layer, pooler, classifier, word embeddings")
        for e in source.layout.entries {
            let key = BertModel.fileName(e.name, prefix: "bert.")
            XCTAssertEqual(try file.entry(key).dtype, quantized.contains(e.name) ? .i8 : .f32, key)
        }
        let model = try BertModel.load(folder: folder, labels: source.labels, backend: backend, inference: true)
        XCTAssertEqual(model.config.quantization, BertModel.int8Method)
        // A model that trains reads the same file as its dequantized values only (int8 layers have no backward).
        let training = try BertModel.load(folder: folder, labels: source.labels, backend: backend)
        XCTAssertTrue(training.int8Weights.isEmpty)
        XCTAssertEqual(backend.floats(training.weights), backend.floats(model.weights))
        XCTAssertEqual(Set(model.int8Weights.keys), quantized.subtracting(["embeddings.word_embeddings.weight"]))
        // Dequantized exactly: the int8 values times their row's scale.
        let name = "encoder.layer.1.intermediate.dense.weight", e = try XCTUnwrap(source.layout.entry(name))
        let (q, scales) = quantizeRowsInt8(backend.floats(source.w(name)), rows: e.shape[0], columns: e.shape[1])
        XCTAssertEqual(backend.floats(model.w(name)), q.indices.map { Float(q[$0]) * scales[$0 / e.shape[1]] })

        let (_, a, _) = try goldenBatch("tiny-bert-expected.safetensors", model)
        let int8 = backend.floats(model.forward(a))
        model.int8Weights = [:]   // the same dequantized weights, multiplied in fp32
        let dequantized = backend.floats(model.forward(a)), float = backend.floats(source.forward(a))
        XCTAssertNotEqual(int8, dequantized, "the int8 kernels ran")
        let range = float.map(abs).max() ?? 1
        assertClose(int8, dequantized, atol: 0.02 * range, rtol: 0, "int8 vs its dequantized weights in fp32")
        assertClose(int8, float, atol: 0.05 * range, rtol: 0, "int8 vs the float model")
    }

    /// Decoders (generate --int8): weight-only int8 on every Linear and the head; the prefill of a
    /// short prompt and a decoding step give the logits of the dequantized weights in fp32, up to
    /// float rounding — and not bit for bit, so the int8 kernels ran.
    func testWeightOnlyInt8DecodesAsItsDequantizedWeights() throws {
        for (name, perLayer) in [("llama", 7), ("gpt2", 6)] {
            let backend = try CPUBackend()
            let model = try DecoderModel.load(golden.appendingPathComponent("tiny-\(name)").path, backend: backend, inference: true)
            XCTAssertEqual(try model.quantizeInt8(), backend.int8Kernels)
            XCTAssertEqual(model.int8Weights.count, perLayer * model.config.layers + 1, "\(name): every Linear and the head")
            let int8 = try prefillAndStep(model)
            model.int8Weights = [:]
            let float = try prefillAndStep(model)
            XCTAssertNotEqual(int8, float, "\(name): the int8 kernels ran")
            let range = float.map(abs).max() ?? 1
            assertClose(int8, float, atol: 1e-5 * range, rtol: 1e-5, "\(name): int8 weights vs their dequantized values in fp32")
        }
    }

    /// `retort quantize` on a decoder: the file holds I8 weights (GPT-2's Conv1D ones [in, out],
    /// as transformers stores them) with per-row scales, and loading it gives the model `--int8`
    /// makes at load — the same dequantized weights and the same int8 weights, so the same logits
    /// bit for bit — while a model that trains refuses the folder.
    func testSavedInt8DecoderLoadsAsTheModelQuantizedAtLoad() throws {
        for name in ["llama", "gpt2"] {
            let backend = try CPUBackend()
            let path = golden.appendingPathComponent("tiny-\(name)").path
            let source = try DecoderModel.load(path, backend: backend, inference: true)
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-int8-\(name)-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try source.saveQuantized(folder: folder)
            let file = try SafeTensorsFile(path: folder + "/model.safetensors")
            let quantized = source.int8ParameterNames
            for e in source.layout.entries {
                let entry = try file.entry(e.name)
                XCTAssertEqual(entry.dtype, quantized.contains(e.name) ? .i8 : .f32, "\(name): \(e.name)")
                XCTAssertEqual(entry.shape, source.isConv1D(e.name) ? e.shape.reversed() : e.shape, "\(name): \(e.name) in transformers' layout")
                if quantized.contains(e.name) { XCTAssertEqual(try file.entry(e.name + "_scale").shape, [e.shape[0]]) }
            }
            XCTAssertTrue(quantized.contains(source.parameters!.head.weight.name), "\(name): the head")
            XCTAssertTrue(quantized.contains(source.parameters!.embedTokens.name), "\(name): the token embeddings (llama's are untied)")

            let loaded = try DecoderModel.load(folder, backend: backend, inference: true)
            XCTAssertEqual(loaded.config.quantization, DecoderModel.int8Method)
            try source.quantizeInt8()
            XCTAssertEqual(Set(loaded.int8Weights.keys), Set(source.int8Weights.keys))
            XCTAssertFalse(loaded.int8Weights.isEmpty, "\(name): the CPU has int8 kernels")
            XCTAssertEqual(backend.floats(loaded.weights), backend.floats(source.weights), "\(name): the same dequantized weights")
            XCTAssertEqual(try prefillAndStep(loaded), try prefillAndStep(source), "\(name): the stored int8 model is the one quantized at load")
            XCTAssertThrowsError(try DecoderModel.load(folder, backend: backend)) { error in
                XCTAssertTrue("\(error)".contains("for inference only"), "\(error)")
            }
        }
        // The stored values are transformers' [in, out] Conv1D tensor: each I8 value times its
        // output channel's (column's) scale is the float checkpoint's value, within half a step.
        let original = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-gpt2/model.safetensors").path)
        let backend = try CPUBackend()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-int8-gpt2-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try DecoderModel.load(golden.appendingPathComponent("tiny-gpt2").path, backend: backend, inference: true).saveQuantized(folder: folder)
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        for key in ["transformer.h.0.mlp.c_fc.weight", "transformer.h.1.attn.c_proj.weight"] {
            let (q, scales, float) = (try file.int8s(key), try file.floats(key + "_scale"), try original.floats(key))
            let columns = try original.entry(key).shape[1]
            XCTAssertEqual(scales.count, columns, key)
            for i in float.indices {
                XCTAssertEqual(Float(q[i]) * scales[i % columns], float[i], accuracy: scales[i % columns] / 2 * 1.0001, "\(key)[\(i)]")
            }
        }
    }

    /// A decoder classifier (Llama, 3 labels): its bias-free score head is stored as I8 too, and
    /// the loaded folder's logits are those of the model quantized in memory.
    func testSavedInt8DecoderClassifierKeepsItsScoreHead() throws {
        let backend = try CPUBackend()
        let source = try DecoderModel.load(golden.appendingPathComponent("tiny-llama").path, labels: 3, backend: backend, inference: true)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("retort-int8-cls-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try source.saveQuantized(folder: folder)
        let file = try SafeTensorsFile(path: folder + "/model.safetensors")
        XCTAssertEqual(try file.entry("score.weight").dtype, .i8)
        XCTAssertEqual(try file.entry("model.embed_tokens.weight").dtype, .i8, "the token embeddings (not the head here) too")
        let loaded = try DecoderModel.load(folder, labels: 3, backend: backend, inference: true)
        XCTAssertEqual(loaded.config.id2label.count, 3)
        try source.quantizeInt8()
        func logits(_ model: DecoderModel) throws -> [Float] {
            let a = try DecoderActivations(config: model.config, labels: 3, maxBatch: 2, maxLength: 5, backend: backend, inference: true, headRows: 2)
            a.load(ids: [3, 1, 4, 1, 5, 9, 2, 6, 0, 0], mask: [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], batch: 2, length: 5, backend: backend)
            model.forward(a)
            return backend.floats(model.lastTokenLogits(a))
        }
        let stored = try logits(loaded)
        XCTAssertEqual(stored.count, 6)
        XCTAssertEqual(stored, try logits(source), "the stored int8 classifier is the one quantized in memory")
    }
}

/// A decoder's logits at a 6-token prompt's last token (prefill into a KV cache), then at one decoding step.
private func prefillAndStep(_ model: DecoderModel) throws -> [Float] {
    let backend = model.backend
    let a = try DecoderActivations(config: model.config, maxBatch: 1, maxLength: 6, backend: backend, inference: true, headRows: 1)
    a.load(ids: [3, 1, 4, 1, 5, 9], mask: [1, 1, 1, 1, 1, 1], batch: 1, length: 6, backend: backend)
    let cache = try KVCache(config: model.config, batch: 1, capacity: 8, backend: backend)
    let first = model.prefill(a, cache: cache)
    let buffers = try DecodeBuffers(config: model.config, batch: 1, backend: backend), logits = try backend.zeros(model.config.vocabSize)
    return first + model.step([2], cache: cache, buffers: buffers, logits: logits)
}
