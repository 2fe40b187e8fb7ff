// A recurrent student as a training task: it learns its teacher's logits, stored per training
// example (computed once by the teacher before training, or read from a transfer set), by MSE
// (the BiLSTM distillation literature's loss) or by soft cross-entropy at a temperature, plus
// an optional weight of cross-entropy against the true labels.
import Backend
import Foundation
import Models

/// What a recurrent student minimises.
public struct RecurrentLoss: Sendable {
    public enum Soft: String, Sendable, CaseIterable {
        case mse
        case softCrossEntropy = "soft-ce"
    }
    public var soft: Soft = .mse
    /// soft-ce only.
    public var temperature = 1.0
    /// Weight of cross-entropy against the labels (0: off).
    public var hardLabelWeight = 0.0
    public init() {}
}

public final class RecurrentStudentTask: TrainingTask {
    public let model: RecurrentModel
    let activations: RecurrentActivations
    /// The teacher's logits of every training example, by index.
    let teacherLogits: [[Float]]
    let loss: RecurrentLoss

    public init(model: RecurrentModel, teacherLogits: [[Float]], loss: RecurrentLoss, maxBatch: Int, maxLength: Int) throws {
        precondition(teacherLogits.allSatisfy { $0.count == model.labels }, "a teacher logit row per example, one value per label")
        self.model = model; self.teacherLogits = teacherLogits; self.loss = loss
        activations = try RecurrentActivations(config: model.config, labels: model.labels, maxBatch: maxBatch, maxLength: maxLength,
                                               backend: model.backend)
    }

    public var backend: Backend { model.backend }
    public func makeOptimizer() throws -> Optimizer { try Optimizer(model.trainable, backend: backend, wholeGradient: model.grads) }
    public func zeroGradients() { model.zeroGradients() }
    var pad: Int32 { Int32(model.config.padTokenId) }

    public func load(_ batch: [Encoding], labels: [Int32]) -> Int {
        preconditionFailure("a recurrent student's training batches are loaded with their example indices (their teacher logits)")
    }

    public func load(_ batch: [Encoding], labels: [Int32], examples: [Int]) -> Int {
        activations.load(batch.map(\.ids), pad: pad, labels: labels, teacher: examples.flatMap { teacherLogits[$0] }, backend: backend)
        return batch.reduce(0) { $0 + $1.ids.count }
    }

    public func step(_ batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        let a = activations, b = backend, (B, L) = (a.batch, model.labels)
        let logits = model.forward(a), teacher = a.teacher.slice(0, B * L), dLogits = model.dLogits(a)
        switch loss.soft {
        case .mse:
            b.mse(a.loss.slice(1, 1), dA: dLogits, logits, teacher, count: B * L, gradScale: gradScale)
        case .softCrossEntropy:
            b.softCrossEntropy(a.loss.slice(1, 1), dLogits: dLogits, logits: logits, teacher: teacher, rows: B, classes: L,
                               temperature: Float(loss.temperature), gradScale: gradScale)
        }
        losses.add(loss.soft == .mse ? "mse" : "soft_ce", a.loss.slice(1, 1), weight: weight)
        if loss.hardLabelWeight > 0 {
            let extra = a.dLogitsExtra.slice(0, B * L)
            b.crossEntropy(a.loss.slice(2, 1), dLogits: extra, logits: logits, labels: a.labels.slice(0, B), rows: B, classes: L,
                           gradScale: gradScale * Float(loss.hardLabelWeight))
            b.axpy(dLogits, extra, count: B * L, alpha: 1)
            losses.add("ce", a.loss.slice(2, 1), weight: weight * loss.hardLabelWeight)
        }
        model.backward(a)
    }

    public func evaluate(_ dev: [Encoding], labels: [Int32], batchSize: Int, progress: (Int) -> Void) throws -> ClassificationMetrics {
        ClassificationMetrics(logits: inLengthOrder(dev) { model.logits($0.map(\.ids), in: activations, progress: progress) }, labels: labels,
                              classes: model.labels)
    }

    public var checkpointTensors: [(String, Tensor)] { [("weights", model.weights)] }
}
