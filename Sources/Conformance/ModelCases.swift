// Whole models on a candidate backend against the CPU: the tiny golden BERT and MPNet
// (Tests/Golden) — logits, loss and every parameter gradient — and, when the weights are in
// the asset folder, all-MiniLM-L6-v2: logits and gradients on a padded batch, then the first
// five training losses (dropout on, AdamW, clipping), which must follow the same trajectory.
// On a slow candidate (the emulated CUDA device) `.logits` keeps MiniLM to one forward pass.
import Backend
import Foundation
import Models
import Train

public enum ModelCases {
    /// How much of all-MiniLM-L6-v2 runs: logits, loss and every gradient, then five training
    /// steps (`.full`), or the logits of one forward pass (`.logits`).
    public enum MiniLMDepth: String, Sendable { case full, logits }

    /// Every model case that can run here; a missing fixture or asset gives a skipped result.
    public static func run(candidate: Backend, reference: Backend, golden: String, assets: String,
                           minilm depth: MiniLMDepth = .full) -> [CheckResult] {
        var results: [CheckResult] = []
        for name in ["tiny-bert", "tiny-mpnet"] {
            let folder = golden + "/" + name, batch = golden + "/" + name + "-expected.safetensors"
            guard FileManager.default.fileExists(atPath: folder), FileManager.default.fileExists(atPath: batch) else {
                results.append(CheckResult(name: name, passed: true, detail: "skipped: \(folder) not found", skipped: true))
                continue
            }
            results += guarded(name) {
                let file = try SafeTensorsFile(path: batch)
                let shape = try file.entry("input_ids").shape
                func ints(_ key: String) throws -> [Int32] { try file.integers(key).map { Int32($0) } }
                let input = Batch(ids: try ints("input_ids"), types: try ints("token_type_ids"), mask: try ints("attention_mask"),
                                  labels: try ints("labels"), batch: shape[0], length: shape[1])
                return try gradients(name, folder: folder, labels: nil, input, candidate: candidate, reference: reference,
                                     gradientTolerance: 1e-4)
            }
        }
        let minilm = assets + "/all-MiniLM-L6-v2"
        guard FileManager.default.fileExists(atPath: minilm + "/model.safetensors") else {
            return results + [CheckResult(name: "all-MiniLM-L6-v2", passed: true, detail: "skipped: \(minilm) not found (scripts/fetch-assets minilm)",
                                          skipped: true)]
        }
        let (B, T) = (8, 48)
        var rng = SplitMix(mixing: 3)
        let lengths = (0..<B).map { T - 5 * $0 }
        let input = Batch(ids: (0..<B).flatMap { b in (0..<T).map { j in j < lengths[b] ? Int32(1000 + rng.next() % 20000) : 0 } },
                          types: [Int32](repeating: 0, count: B * T),
                          mask: (0..<B).flatMap { b in (0..<T).map { j in j < lengths[b] ? 1 : 0 } },
                          labels: (0..<B).map { Int32($0 % 2) }, batch: B, length: T)
        guard depth == .full else {
            return results + guarded("all-MiniLM-L6-v2") {
                func logits(_ backend: Backend) throws -> [Float] {
                    let (model, a) = try prepare(folder: minilm, labels: 2, input, backend: backend)
                    return backend.floats(model.forward(a))
                }
                return [Conformance.compare("all-MiniLM-L6-v2: logits", got: try logits(candidate), expected: try logits(reference),
                                            atol: 1e-4, rtol: 1e-4, precision: candidate.precision)]
            }
        }
        results += guarded("all-MiniLM-L6-v2") {
            try gradients("all-MiniLM-L6-v2", folder: minilm, labels: 2, input, candidate: candidate, reference: reference,
                          gradientTolerance: 1e-3)
        }
        results += guarded("all-MiniLM-L6-v2 training") {
            let expected = try trainingLosses(folder: minilm, input, backend: reference)
            let got = try trainingLosses(folder: minilm, input, backend: candidate)
            return [Conformance.compare("all-MiniLM-L6-v2: first 5 training losses \(got.map { String(format: "%.5f", $0) })",
                                        got: got, expected: expected, atol: 1e-5, rtol: 1e-4, precision: candidate.precision)]
        }
        return results
    }

    struct Batch {
        let ids, types, mask, labels: [Int32]
        let batch, length: Int
    }

    static func guarded(_ name: String, _ body: () throws -> [CheckResult]) -> [CheckResult] {
        do { return try body() } catch { return [CheckResult(name: name, passed: false, detail: "\(error)", skipped: false)] }
    }

    static func prepare(folder: String, labels: Int?, _ input: Batch, backend: Backend) throws -> (BertModel, BertActivations) {
        let model = try BertModel.load(folder: folder, labels: labels, backend: backend, seed: 7)
        let a = try BertActivations(config: model.config, labels: model.labels, maxBatch: input.batch, maxLength: input.length, backend: backend)
        a.load(ids: input.ids, types: input.types, mask: input.mask, labels: input.labels, batch: input.batch, length: input.length,
               backend: backend)
        return (model, a)
    }

    /// Logits, loss and every parameter gradient (one backward, no dropout).
    static func gradients(_ name: String, folder: String, labels: Int?, _ input: Batch, candidate: Backend, reference: Backend,
                          gradientTolerance: Double) throws -> [CheckResult] {
        func outputs(_ backend: Backend) throws -> (logits: [Float], loss: Float, grads: [Float], model: BertModel) {
            let (model, a) = try prepare(folder: folder, labels: labels, input, backend: backend)
            model.zeroGradients()
            let logits = backend.floats(model.forward(a))
            let loss = model.backward(a)
            return (logits, loss, backend.floats(model.grads), model)
        }
        let e = try outputs(reference), g = try outputs(candidate)
        var results = [Conformance.compare("\(name): logits", got: g.logits, expected: e.logits, atol: 1e-4, rtol: 1e-4,
                                           precision: candidate.precision),
                       Conformance.compare("\(name): loss", got: [g.loss], expected: [e.loss], atol: 1e-5, rtol: 1e-4,
                                           precision: candidate.precision)]
        // Per parameter tensor; the absolute floor is relative to the model's largest gradient
        // (some gradients, such as the key biases', are pure rounding noise on both sides).
        let largest = Double(e.grads.map(abs).max() ?? 1)
        var failures: [CheckResult] = []
        for entry in e.model.gradientLayout.entries {
            let range = entry.offset..<(entry.offset + entry.count)
            let r = Conformance.compare("\(name): gradient of \(entry.name)", got: Array(g.grads[range]), expected: Array(e.grads[range]),
                                        atol: 1e-5 * largest, rtol: gradientTolerance, precision: candidate.precision, scale: largest)
            if !r.passed { failures.append(r) }
        }
        results.append(failures.first ?? CheckResult(name: "\(name): every parameter gradient (\(e.model.layout.entries.count) tensors)",
                                                     passed: true, detail: "all within atol \(Conformance.short(1e-5 * largest)), rtol \(gradientTolerance)",
                                                     skipped: false))
        return results + failures.dropFirst()
    }

    /// Five training steps as the trainer takes them: dropout on, backward, clip to 1, AdamW.
    static func trainingLosses(folder: String, _ input: Batch, backend: Backend) throws -> [Float] {
        let (model, a) = try prepare(folder: folder, labels: 2, input, backend: backend)
        let optimizer = try Optimizer(model: model)
        var losses: [Float] = []
        for step in 1...5 {
            model.zeroGradients()
            model.forward(a, training: true, seed: UInt64(step))
            losses.append(model.backward(a))
            _ = optimizer.clip(maxNorm: 1)
            optimizer.step(learningRate: 5e-5, weightDecay: 0.01, step: step)
        }
        return losses
    }
}
