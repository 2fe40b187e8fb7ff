// Decoders on a candidate backend against the CPU: the tiny golden GPT-2, Llama and Qwen2
// (Tests/Golden) — the causal-LM loss and every parameter gradient, a classifier's logits and
// gradients, LoRA adapter gradients — and, when its GGUF is in the asset folder,
// SmolLM2-135M-Instruct: the logits at a prompt's last token and 16 greedy tokens (prefill and
// KV-cache decoding), which must be the same tokens.
import Backend
import Foundation
import Models

public enum DecoderCases {
    /// `smolLM2` false: the tiny models only (a slow candidate such as the emulated device).
    public static func run(candidate: Backend, reference: Backend, golden: String, assets: String, smolLM2: Bool = true) -> [CheckResult] {
        var results: [CheckResult] = []
        for name in ["tiny-gpt2", "tiny-llama", "tiny-qwen2"] {
            let folder = golden + "/" + name, batch = golden + "/" + name + "-expected.safetensors"
            guard FileManager.default.fileExists(atPath: folder), FileManager.default.fileExists(atPath: batch) else {
                results.append(CheckResult(name: name, passed: true, detail: "skipped: \(folder) not found", skipped: true))
                continue
            }
            let adapter = FileManager.default.fileExists(atPath: folder + "-lora") ? folder + "-lora" : nil
            let cases: [(labels: Int, lora: String?)] = [(0, nil), (3, nil)] + (adapter.map { [(0, $0)] } ?? [])
            for (labels, lora) in cases {
                let what = name + (labels > 0 ? " classifier" : lora != nil ? " LoRA" : " LM")
                results += ModelCases.guarded(what) {
                    func outputs(_ backend: Backend) throws -> (loss: Float, grads: [Float], names: [(String, Range<Int>)]) {
                        let model = try DecoderModel.load(folder, labels: labels, backend: backend, seed: 5)
                        if let lora { try model.loadAdapter(folder: lora) }
                        let file = try SafeTensorsFile(path: batch), shape = try file.entry("input_ids").shape
                        func ints(_ key: String) throws -> [Int32] { try file.integers(key).map { Int32($0) } }
                        let a = try DecoderActivations(config: model.config, labels: labels, maxBatch: shape[0], maxLength: shape[1],
                                                       backend: backend, headRows: 16)
                        a.load(ids: try ints("input_ids"), mask: try ints("attention_mask"), labels: labels > 0 ? try ints("cls.labels") : [],
                               batch: shape[0], length: shape[1], backend: backend)
                        model.zeroGradients()
                        model.forward(a, training: true, seed: 3)
                        model.lossBackward(a)
                        let gradients = model.lora?.grads ?? model.grads
                        let layout = model.lora?.layout ?? model.gradientLayout
                        return (backend.floats(a.loss.slice(0, 1))[0], backend.floats(gradients),
                                layout.entries.map { ($0.name, $0.offset..<($0.offset + $0.count)) })
                    }
                    let e = try outputs(reference), g = try outputs(candidate)
                    var checks = [Conformance.compare("\(what): loss", got: [g.loss], expected: [e.loss], atol: 1e-5, rtol: 1e-4,
                                                      precision: candidate.precision)]
                    let largest = Double(e.grads.map(abs).max() ?? 1)
                    let failures = e.names.compactMap { name, range -> CheckResult? in
                        let r = Conformance.compare("\(what): gradient of \(name)", got: Array(g.grads[range]), expected: Array(e.grads[range]),
                                                    atol: 1e-5 * largest, rtol: 1e-3, precision: candidate.precision, scale: largest)
                        return r.passed ? nil : r
                    }
                    checks.append(failures.first ?? CheckResult(name: "\(what): every gradient (\(e.names.count) tensors)", passed: true,
                                                                detail: "all within atol \(Conformance.short(1e-5 * largest)), rtol 1e-3",
                                                                skipped: false))
                    return checks + failures.dropFirst()
                }
            }
        }
        let smol = assets + "/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard smolLM2 else { return results }
        guard FileManager.default.fileExists(atPath: smol) else {
            return results + [CheckResult(name: "SmolLM2-135M-Instruct", passed: true, detail: "skipped: \(smol) not found (scripts/fetch-assets smollm2)",
                                          skipped: true)]
        }
        return results + ModelCases.guarded("SmolLM2-135M-Instruct") {
            func outputs(_ backend: Backend) throws -> (logits: [Float], tokens: [Int32]) {
                let model = try DecoderModel.load(smol, backend: backend, inference: true)
                let ids = try ByteLevelBPE(gguf: try GGUFFile(path: smol)).encode("The capital of France is")
                let a = try DecoderActivations(config: model.config, maxBatch: 1, maxLength: ids.count, backend: backend, inference: true,
                                               headRows: 1)
                a.load(ids: ids, mask: Array(repeating: 1, count: ids.count), batch: 1, length: ids.count, backend: backend)
                model.forward(a)
                let logits = backend.floats(model.lastTokenLogits(a))
                let tokens = try model.generate([GenerationRequest(prompt: ids, maxNewTokens: 16)], sampling: SamplingOptions(), endTokens: [])[0].tokens
                return (logits, tokens)
            }
            let e = try outputs(reference), g = try outputs(candidate)
            return [Conformance.compare("SmolLM2-135M-Instruct: logits at the prompt's last token", got: g.logits, expected: e.logits,
                                        atol: 1e-3, rtol: 1e-3, precision: candidate.precision),
                    CheckResult(name: "SmolLM2-135M-Instruct: 16 greedy tokens", passed: g.tokens == e.tokens,
                                detail: g.tokens == e.tokens ? "\(g.tokens)" : "got \(g.tokens), expected \(e.tokens)", skipped: false)]
        }
    }
}
