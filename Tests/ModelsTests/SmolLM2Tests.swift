// The real SmolLM2-135M-Instruct from its Q4_1 GGUF against transformers loading the same file
// (Tests/Golden/make_smollm2_golden.py; both dequantise to fp32): the tokenizer's ids, the logits
// at each prompt's last token (within 1e-3) and the first 32 greedy tokens, for three prompts —
// each alone, and all three in one right-padded batch (prefill, then KV-cache steps); with the
// weights as loaded and packed for inference (packForInference, as retort generate runs).
import Backend
import Foundation
@testable import Models
import XCTest

final class SmolLM2Tests: XCTestCase {
    static let prompts = ["The capital of France is", "def fibonacci(n):\n",
                          "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n"]

    func load(packed: Bool = false) throws -> (DecoderModel, ByteLevelBPE, SafeTensorsFile) {
        let path = try assetFolder("SmolLM2-135M-Instruct") + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        let model = try DecoderModel.load(path, backend: try CPUBackend(), inference: true)
        if packed { XCTAssertGreaterThan(try model.packForInference(), 0, "the CPU packs a decoder's weights") }
        let tokenizer = try ByteLevelBPE(gguf: try GGUFFile(path: path))
        return (model, tokenizer, try SafeTensorsFile(path: golden.appendingPathComponent("smollm2-expected.safetensors").path))
    }

    func testLogitsAndGreedyTokensMatchTransformers() throws {
        try checkLogitsAndGreedyTokens(packed: false)
    }

    func testPackedWeightsGiveTheSameLogitsAndGreedyTokens() throws {
        try checkLogitsAndGreedyTokens(packed: true)
    }

    func checkLogitsAndGreedyTokens(packed: Bool) throws {
        let (model, tokenizer, expected) = try load(packed: packed)
        XCTAssertEqual(model.config.family, .llama)
        XCTAssertEqual([model.config.layers, model.config.heads, model.config.keyValueHeads, model.config.headSize], [30, 9, 3, 64])
        let eos = Set(model.config.eosTokenIds.map { Int32($0) })
        var requests: [GenerationRequest] = [], greedy: [[Int32]] = []
        for (i, prompt) in Self.prompts.enumerated() {
            let ids = tokenizer.encode(prompt)
            XCTAssertEqual(ids, try expected.integers("prompt\(i).ids").map { Int32($0) }, "prompt \(i): the tokenizer's ids")
            // Logits at the prompt's last token.
            let a = try DecoderActivations(config: model.config, maxBatch: 1, maxLength: ids.count, backend: model.backend, inference: true,
                                           headRows: 1)
            a.load(ids: ids, mask: Array(repeating: 1, count: ids.count), batch: 1, length: ids.count, backend: model.backend)
            model.forward(a)
            assertClose(model.backend.floats(model.lastTokenLogits(a)), try expected.floats("prompt\(i).logits"), atol: 1e-3, rtol: 0,
                        "prompt \(i): logits at the last token")
            // 32 greedy tokens (transformers' include the end token when it stops early).
            let result = try model.generate([GenerationRequest(prompt: ids, maxNewTokens: 32)], sampling: SamplingOptions(), endTokens: eos)[0]
            let want = try expected.integers("prompt\(i).greedy").map { Int32($0) }
            XCTAssertEqual(result.tokens + (result.finish == "eos" ? [want.last!] : []), want, "prompt \(i): greedy tokens")
            requests.append(GenerationRequest(prompt: ids, maxNewTokens: 32))
            greedy.append(result.tokens)
        }
        // The three at once: prefilled in groups of similar lengths (each right-padded), batched steps.
        let batched = try model.generate(requests, sampling: SamplingOptions(), endTokens: eos)
        XCTAssertEqual(batched.map(\.tokens), greedy, "a batch decodes as the prompts alone")
        // Budgets that end sequences at different steps: ended ones leave the batch (a running
        // sequence moves into a hole, or the batch shrinks without a move); with two slots,
        // waiting prompts are prefilled into the slots that free up (one needs no token at all).
        // Every sequence gets the tokens it got alone and is reported finished once.
        let budgets = [5, 32, 12, 20, 0, 7]
        let uneven = budgets.enumerated().map { GenerationRequest(prompt: requests[$0 % 3].prompt, maxNewTokens: $1) }
        for batchSize in [nil, 2] {
            var finished: [Int] = []
            let results = try model.generate(uneven, batchSize: batchSize, sampling: SamplingOptions(), endTokens: eos,
                                             finished: { s, _ in finished.append(s) })
            for (s, budget) in budgets.enumerated() {
                XCTAssertEqual(results[s].tokens, Array(greedy[s % 3].prefix(budget)), "sequence \(s) (budget \(budget)), batch \(batchSize ?? 6)")
            }
            XCTAssertEqual(finished.sorted(), Array(budgets.indices), "batch \(batchSize ?? 6)")
        }
    }

    func testSamplingIsReproducibleBySeedAndTopKOneIsGreedy() throws {
        let (model, tokenizer, _) = try load()
        let ids = tokenizer.encode(Self.prompts[0])
        func run(_ o: SamplingOptions) throws -> [Int32] {
            try model.generate([GenerationRequest(prompt: ids, maxNewTokens: 8)], sampling: o, endTokens: [])[0].tokens
        }
        let a = try run(SamplingOptions(temperature: 1.2, topP: 0.95, seed: 7)), b = try run(SamplingOptions(temperature: 1.2, topP: 0.95, seed: 7))
        XCTAssertEqual(a, b, "the same seed, the same tokens")
        let seeds = try (8...11).map { try run(SamplingOptions(temperature: 1.2, topP: 0.95, seed: UInt64($0))) }
        XCTAssertTrue(seeds.contains { $0 != a }, "other seeds draw other tokens")
        XCTAssertEqual(try run(SamplingOptions(temperature: 0.7, topK: 1, seed: 3)), try run(SamplingOptions()), "top-k 1 is greedy")
    }
}
