// Decoders against transformers (Tests/Golden/make_decoder_golden.py): tiny random GPT-2, Llama
// (grouped-query attention, llama3 RoPE scaling, untied head) and Qwen2 (q/k/v biases, tied head)
// on a right-padded batch — logits, the causal-LM loss and every parameter's gradient, 5 AdamW
// steps; classification on the last real token: logits, loss and every gradient; and a save /
// load round trip in transformers' names.
import Backend
import Foundation
@testable import Models
import Train
import XCTest

final class DecoderParityTests: XCTestCase {
    let families = ["gpt2", "llama", "qwen2"]

    func tiny(_ name: String, labels: Int = 0) throws -> (DecoderModel, DecoderActivations, SafeTensorsFile) {
        let model = try DecoderModel.load(golden.appendingPathComponent("tiny-\(name)").path, labels: labels, backend: try CPUBackend())
        let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-\(name)-expected.safetensors").path)
        let shape = try expected.entry("input_ids").shape
        let a = try DecoderActivations(config: model.config, labels: labels, maxBatch: shape[0], maxLength: shape[1], backend: model.backend,
                                       headRows: 8)   // several head chunks over the 33 rows
        func ints(_ name: String) throws -> [Int32] { try expected.integers(name).map { Int32($0) } }
        a.load(ids: try ints("input_ids"), mask: try ints("attention_mask"), labels: labels > 0 ? try ints("cls.labels") : [],
               batch: shape[0], length: shape[1], backend: model.backend)
        if labels > 0 {
            try expected.floats("cls.score.weight").withUnsafeBytes { model.backend.upload(model.w("score.weight"), $0) }
        }
        return (model, a, expected)
    }

    /// A gradient as transformers stores it (GPT-2's Conv1D weights transposed back to [in, out]).
    func hfGradient(_ model: DecoderModel, _ name: String) -> [Float] {
        let values = model.backend.floats(model.g(name)), shape = model.layout.entry(name)!.shape
        guard model.isConv1D(name) else { return values }
        return model.transposed(values, rows: shape[0], columns: shape[1])
    }

    /// The logits of every real position (padding rows are not compared: nothing reads them).
    func realRows(_ values: [Float], mask: [Int64], width: Int) -> [Float] {
        mask.enumerated().flatMap { i, m in m != 0 ? Array(values[(i * width)..<((i + 1) * width)]) : [] }
    }

    func testLogitsLossAndEveryGradientMatchTransformers() throws {
        for name in families {
            let (model, a, expected) = try tiny(name)
            model.forward(a)
            let V = model.config.vocabSize, (B, T) = (a.batch, a.length)
            // Logits of every position, a chunk of the head at a time.
            var logits: [Float] = []
            for r0 in stride(from: 0, to: B * T, by: a.headRows) {
                let rows = min(a.headRows, B * T - r0), C = model.config.hiddenSize
                let out = try model.backend.zeros(rows * V)
                model.backend.matmul(out, a.final.slice(r0 * C, rows * C), model.w(model.lmHeadName), bias: nil,
                                     Gemm(m: rows, n: V, k: C, transB: true))
                logits += model.backend.floats(out)
            }
            let mask = try expected.integers("attention_mask")
            assertClose(realRows(logits, mask: mask, width: V), realRows(try expected.floats("logits"), mask: mask, width: V),
                        atol: 2e-5, rtol: 1e-4, "\(name) logits")
            model.lossBackward(a)
            assertClose(model.backend.floats(a.loss.slice(0, 1)), try expected.floats("loss"), atol: 1e-6, rtol: 1e-5, "\(name) loss")
            for e in model.gradientLayout.entries {
                let key = "grad." + e.name
                assertClose(hfGradient(model, e.name), try expected.floats(key), atol: 2e-6, rtol: 2e-3, "\(name) \(key)")
            }
        }
    }

    func testFiveAdamWStepsMatchPyTorch() throws {
        for name in families {
            let (model, a, expected) = try tiny(name)
            let optimizer = try Optimizer(decoder: model)
            var losses: [Float] = []
            for step in 1...5 {
                model.zeroGradients()
                model.forward(a)
                model.lossBackward(a)
                losses.append(model.backend.floats(a.loss.slice(0, 1))[0])
                optimizer.step(learningRate: 1e-3, weightDecay: 0.01, step: step)
            }
            assertClose(losses, try expected.floats("adamw.losses"), atol: 1e-5, rtol: 2e-4, "\(name) losses of 5 AdamW steps")
        }
    }

    func testSequenceClassificationOnTheLastRealTokenMatchesTransformers() throws {
        for name in families {
            let (model, a, expected) = try tiny(name, labels: 3)
            model.forward(a)
            assertClose(model.backend.floats(model.lastTokenLogits(a)), try expected.floats("cls.logits"), atol: 2e-5, rtol: 1e-4,
                        "\(name) classification logits")
            model.lossBackward(a)
            assertClose(model.backend.floats(a.loss.slice(0, 1)), try expected.floats("cls.loss"), atol: 1e-6, rtol: 1e-5,
                        "\(name) classification loss")
            for e in model.gradientLayout.entries {
                assertClose(hfGradient(model, e.name), try expected.floats("cls.grad." + e.name), atol: 2e-6, rtol: 2e-3,
                            "\(name) classification grad \(e.name)")
            }
        }
    }

    /// Inference with every Linear and the head packed (packForInference, as generate, eval and
    /// predict run): GPT-2's c_attn row blocks, Qwen2's q/k/v biases, a tied and an untied head, a
    /// 3-class score head (one partial panel) — each sequence's last-token logits as transformers'
    /// — and greedy decoding (prefill, then few-row steps) gives the unpacked model's tokens.
    func testPackedInferenceWeightsGiveTransformersLogitsAndTheSameTokens() throws {
        for name in families {
            let path = golden.appendingPathComponent("tiny-\(name)").path
            let expected = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-\(name)-expected.safetensors").path)
            let shape = try expected.entry("input_ids").shape, (B, T) = (shape[0], shape[1])
            let ids = try expected.integers("input_ids").map { Int32($0) }, mask = try expected.integers("attention_mask").map { Int32($0) }
            for labels in [0, 3] {
                let model = try DecoderModel.load(path, labels: labels, backend: try CPUBackend(), inference: true)
                if labels > 0 {
                    try expected.floats("cls.score.weight").withUnsafeBytes { model.backend.upload(model.w("score.weight"), $0) }
                }
                XCTAssertGreaterThan(try model.packForInference(), 0, "\(name): the CPU packs the weights")
                let a = try DecoderActivations(config: model.config, labels: labels, maxBatch: B, maxLength: T, backend: model.backend,
                                               inference: true, headRows: B)
                a.load(ids: ids, mask: mask, batch: B, length: T, backend: model.backend)
                model.forward(a)
                let got = model.backend.floats(model.lastTokenLogits(a))
                if labels > 0 {
                    assertClose(got, try expected.floats("cls.logits"), atol: 2e-5, rtol: 1e-4, "\(name) packed classification logits")
                } else {
                    let V = model.config.vocabSize, all = try expected.floats("logits")
                    let want = (0..<B).flatMap { b -> [Float] in
                        let last = (0..<T).last { mask[b * T + $0] != 0 }!
                        return Array(all[((b * T + last) * V)..<((b * T + last + 1) * V)])
                    }
                    assertClose(got, want, atol: 2e-5, rtol: 1e-4, "\(name) packed last-token logits")
                }
            }
            let requests = (0..<B).map { b in
                GenerationRequest(prompt: (0..<T).filter { mask[b * T + $0] != 0 }.map { ids[b * T + $0] }, maxNewTokens: 12)
            }
            let plain = try DecoderModel.load(path, backend: try CPUBackend(), inference: true)
            let packed = try DecoderModel.load(path, backend: try CPUBackend(), inference: true)
            try packed.packForInference()
            XCTAssertEqual(try packed.generate(requests, sampling: SamplingOptions(), endTokens: []).map(\.tokens),
                           try plain.generate(requests, sampling: SamplingOptions(), endTokens: []).map(\.tokens), "\(name): greedy tokens")
        }
    }

    /// Sampling in a batch that refills its slots: each request draws from its own stream (seeded
    /// by its index), so the same requests give the same tokens one, two or all at a time.
    func testBatchedSamplingDrawsEachRequestsOwnStream() throws {
        let model = try DecoderModel.load(golden.appendingPathComponent("tiny-llama").path, backend: try CPUBackend(), inference: true)
        let requests = [([3, 1, 4], 6), ([1, 5], 2), ([9, 2, 6, 5, 3], 5), ([5], 0), ([8, 9, 7], 4)].map {
            GenerationRequest(prompt: $0.0.map(Int32.init), maxNewTokens: $0.1)
        }
        let sampling = SamplingOptions(temperature: 1.5, seed: 11)
        let all = try model.generate(requests, sampling: sampling, endTokens: []).map(\.tokens)
        XCTAssertEqual(all.map(\.count), [6, 2, 5, 0, 4])
        for batchSize in [1, 2] {
            XCTAssertEqual(try model.generate(requests, batchSize: batchSize, sampling: sampling, endTokens: []).map(\.tokens), all,
                           "\(batchSize) at a time")
        }
        var shifted = sampling
        shifted.seed = 12
        XCTAssertNotEqual(try model.generate(requests, sampling: shifted, endTokens: []).map(\.tokens), all, "another seed, other draws")
        // A request with no budget does not run: its prompt may be longer than the context.
        let long = GenerationRequest(prompt: Array(repeating: 5, count: model.config.maxPositions + 6), maxNewTokens: 0)
        var finished: [Int] = []
        XCTAssertEqual(try model.generate(requests + [long], batchSize: 2, sampling: sampling, endTokens: [],
                                          finished: { s, _ in finished.append(s) }).map(\.tokens), all + [[]])
        XCTAssertEqual(finished.sorted(), Array(0...requests.count))
        // The last request has no budget: the refill that reaches it starts nothing.
        XCTAssertEqual(try model.generate([requests[0], GenerationRequest(prompt: [4, 2], maxNewTokens: 0)], batchSize: 1, sampling: sampling,
                                          endTokens: []).map(\.tokens), [all[0], []])
        finished = []
        XCTAssertEqual(try model.generate([long, long], sampling: sampling, endTokens: [], finished: { s, _ in finished.append(s) }).map(\.finish),
                       ["length", "length"])
        XCTAssertEqual(finished, [0, 1])
    }

    func testSaveAndLoadRoundTripInTransformersNames() throws {
        for name in families {
            let (model, a, _) = try tiny(name)
            model.forward(a)
            let before = model.backend.floats(model.lastTokenLogits(a))
            let folder = NSTemporaryDirectory() + "retort-decoder-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try model.save(folder: folder)
            let original = try SafeTensorsFile(path: golden.appendingPathComponent("tiny-\(name)/model.safetensors").path)
            let saved = try SafeTensorsFile(path: folder + "/model.safetensors")
            for (key, entry) in original.entries {
                XCTAssertEqual(saved.entries[key]?.shape, entry.shape, "\(name): \(key) saved with its name and shape")
                XCTAssertEqual(try saved.floats(key), try original.floats(key), "\(name): \(key) saved unchanged")
            }
            let again = try DecoderModel.load(folder, backend: model.backend)
            XCTAssertEqual(again.config.inverseFrequencies, model.config.inverseFrequencies, "\(name): RoPE settings survive")
            again.forward(a)
            XCTAssertEqual(again.backend.floats(again.lastTokenLogits(a)), before, "\(name): the reloaded model computes the same")
        }
    }

    func testBadInputIsRefusedInOneLine() throws {
        let (model, _, _) = try tiny("llama")
        let long = GenerationRequest(prompt: Array(repeating: 5, count: model.config.maxPositions + 6), maxNewTokens: 4)
        XCTAssertThrowsError(try model.generate([long], sampling: SamplingOptions(), endTokens: [])) { error in
            XCTAssertEqual("\(error)", "the prompt has 70 tokens; the model's context is 64")
        }
        let noArchitecture = golden.appendingPathComponent("gguf/types.gguf").path
        XCTAssertThrowsError(try DecoderModel.load(noArchitecture, backend: model.backend)) { error in
            XCTAssertTrue("\(error)".hasSuffix("types.gguf: llama.embedding_length is missing or not a positive integer"), "\(error)")
        }
        var config = try configObject(golden.appendingPathComponent("tiny-llama/config.json").path)
        config["model_type"] = "falcon"
        XCTAssertThrowsError(try DecoderConfig(config)) { error in
            XCTAssertTrue("\(error)".contains("model_type \"falcon\" is not a decoder Retort implements"), "\(error)")
        }
        config["model_type"] = "llama"
        config["rope_parameters"] = ["rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0]
        XCTAssertThrowsError(try DecoderConfig(config)) { error in
            XCTAssertTrue("\(error)".contains("rope_scaling type \"yarn\" is not supported"), "\(error)")
        }
    }
}
