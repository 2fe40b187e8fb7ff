// A decoder as a training task: a causal language model (next-token cross-entropy on every real
// token, the head run in chunks) or a sequence classifier on each sequence's last real token (HF's
// *ForSequenceClassification). Micro-batches are right-padded; the padding is masked out of the
// attention and the loss. A language model's dev metrics are its mean next-token loss (the
// accuracy fields are the next-token accuracy; macro-F1 and MCC are not computed: 0).
import Backend
import Foundation
import Models

public final class DecoderTask: TrainingTask {
    public let model: DecoderModel
    let activations: DecoderActivations
    let maxLength: Int

    /// A language model's examples are blocks of --max-length tokens, not texts.
    public var examplesNoun: String { model.labels == 0 ? "blocks" : "texts" }

    /// `inference`: an arena for evaluation only (no backward).
    public init(model: DecoderModel, maxBatch: Int, maxLength: Int, inference: Bool = false) throws {
        self.model = model
        self.maxLength = maxLength
        activations = try DecoderActivations(config: model.config, labels: model.labels, maxBatch: maxBatch, maxLength: maxLength,
                                             backend: model.backend, inference: inference)
    }

    public var backend: Backend { model.backend }
    public func makeOptimizer() throws -> Optimizer { try Optimizer(decoder: model) }
    public func zeroGradients() { model.zeroGradients() }

    /// Right-pads the micro-batch into `a` (ids 0 under the mask: never read).
    func load(_ batch: [Encoding], labels: [Int32], into a: DecoderActivations, forBackward: Bool, length: Int = 1) -> Int {
        let T = max(length, batch.map(\.ids.count).max() ?? 1), B = batch.count
        var ids = [Int32](repeating: 0, count: B * T), mask = [Int32](repeating: 0, count: B * T)
        for (b, e) in batch.enumerated() {
            for (t, id) in e.ids.enumerated() { ids[b * T + t] = id; mask[b * T + t] = 1 }
        }
        a.load(ids: ids, mask: mask, labels: model.labels > 0 ? labels : [], batch: B, length: T, backend: backend, forBackward: forBackward)
        return B * T
    }

    public func load(_ batch: [Encoding], labels: [Int32]) -> Int { load(batch, labels: labels, into: activations, forBackward: true) }

    public func load(_ batch: [Encoding], labels: [Int32], examples: [Int], whole: [Encoding]) -> Int {
        // A language model's loss is a mean over the predicted tokens (every real one but each text's last).
        tokenLossScale = model.labels > 0 ? 1 : Self.tokenShare(batch, of: whole) { max(0, $0.ids.count - 1) }
        return load(batch, labels: labels, into: activations, forBackward: true, length: whole.map(\.ids.count).max() ?? 1)
    }

    /// Data parallel: a language model's loss (a token mean) times this share's part of the
    /// batch's predicted tokens over its part of the examples (see TrainingTask.tokenShare).
    private var tokenLossScale = 1.0

    public func step(_ batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        model.forward(activations, training: true, seed: seed)
        model.lossBackward(activations, gradScale: gradScale * Float(tokenLossScale))
        losses.add(nil, activations.loss.slice(0, 1), weight: weight * tokenLossScale)
    }

    public func evaluate(_ dev: [Encoding], labels: [Int32], batchSize: Int, progress: (Int) -> Void) throws -> ClassificationMetrics {
        let a = activations
        if model.labels > 0 {
            return ClassificationMetrics(logits: try inLengthOrder(dev) { try logits($0, batchSize: batchSize, progress: progress) }, labels: labels,
                                         classes: model.labels)
        }
        // Language model: the token-weighted mean next-token loss and accuracy.
        var lossSum = 0.0, correct = 0, tokens = 0
        for start in stride(from: 0, to: dev.count, by: batchSize) {
            let batch = Array(dev[start..<min(start + batchSize, dev.count)])
            _ = load(batch, labels: [], into: a, forBackward: false)
            model.forward(a)
            let (loss, right, count) = model.nextTokenStatistics(a)
            lossSum += loss * Double(count); correct += right; tokens += count
            progress(start + batch.count)
        }
        var metrics = ClassificationMetrics(predictions: [], labels: [], classes: 0, loss: tokens > 0 ? lossSum / Double(tokens) : 0)
        metrics.accuracy = tokens > 0 ? Double(correct) / Double(tokens) : 0
        metrics.examples = dev.count
        metrics.nextToken = true
        return metrics
    }

    /// A classifier's logits [N][labels] at each text's last token, in batches (`progress` hears
    /// the texts done after each).
    func logits(_ encodings: [Encoding], batchSize: Int, progress: (Int) -> Void = { _ in }) throws -> [[Float]] {
        precondition(model.labels > 0, "logits: the model is a language model")
        var out: [[Float]] = []
        for start in stride(from: 0, to: encodings.count, by: batchSize) {
            let chunk = Array(encodings[start..<min(start + batchSize, encodings.count)])
            _ = load(chunk, labels: Array(repeating: 0, count: chunk.count), into: activations, forBackward: false)
            model.forward(activations)
            let flat = backend.floats(model.lastTokenLogits(activations)), L = model.labels
            for i in 0..<chunk.count { out.append(Array(flat[(i * L)..<((i + 1) * L)])) }
            progress(out.count)
        }
        return out
    }

    public func setLayerGradientsHook(_ hook: (([Tensor]) -> Void)?) { model.layerGradientsReady = hook }

    public var checkpointTensors: [(String, Tensor)] {
        [("weights", model.weights)] + (model.lora.map { [("lora", $0.weights)] } ?? [])
    }
}
