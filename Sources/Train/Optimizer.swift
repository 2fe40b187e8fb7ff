// AdamW over the tensors a model trains (everything, or LoRA adapters and the classifier), with
// global-norm gradient clipping: the one optimiser step shared by the trainer, the perf suite
// and the parity tests.
import Backend
import Models

public final class Optimizer {
    public let parameters: [TrainableTensor]
    public let m: Tensor, v: Tensor   // AdamW moments, one slice per parameter, in order
    let offsets: [Int]
    let backend: Backend
    /// With full fine-tuning the trained gradients are one buffer: one reduction covers them.
    let wholeGradient: Tensor?
    let scratch: Tensor

    /// The model's trainable tensors and `extra` ones (a distillation projection); `idle` names
    /// tensors that get no gradient in this run and must not move (not even by weight decay).
    public init(model: BertModel, extra: [TrainableTensor] = [], idle: Set<String> = []) throws {
        parameters = (model.trainable + extra).filter { !idle.contains($0.name) }
        backend = model.backend
        offsets = parameters.reduce(into: [0]) { $0.append($0.last! + $1.weight.count) }
        m = try backend.zeros(offsets.last!)
        v = try backend.zeros(offsets.last!)
        wholeGradient = model.lora == nil && extra.isEmpty && idle.isEmpty ? model.grads : nil
        scratch = try backend.zeros(1)
    }

    /// Global L2 norm of the gradients of the loss, the gradients being those of the loss times
    /// `lossScale` (fp16 loss scaling; a power of two); they are divided by it again and scaled
    /// down to `maxNorm` when above it (0: no clipping), in one pass. A norm that is not finite
    /// (an overflow) is returned with the gradients left as they are.
    @discardableResult
    public func clip(maxNorm: Double, lossScale: Double = 1) -> Double {
        let groups = wholeGradient.map { [$0] } ?? parameters.map(\.grad)
        var total = 0.0
        for g in groups {
            backend.sumOfSquares(scratch, g, count: g.count)
            total += Double(backend.floats(scratch)[0])
        }
        let norm = total.squareRoot() / lossScale
        guard norm.isFinite else { return norm }
        var factor = 1 / lossScale
        if maxNorm > 0, norm > maxNorm { factor *= maxNorm / (norm + 1e-6) }
        if factor != 1 {
            for g in groups { backend.scale(g, count: g.count, by: Float(factor)) }
        }
        return norm
    }

    /// One AdamW step (`step` counts from 1); tensors that do not decay (biases, LayerNorm) get none.
    public func step(learningRate: Double, weightDecay: Double, step: Int) {
        for (p, offset) in zip(parameters, offsets) {
            backend.adamw(p.weight, grads: p.grad, m: m.slice(offset, p.weight.count), v: v.slice(offset, p.weight.count),
                          count: p.weight.count, AdamW(learningRate: learningRate, weightDecay: p.decays ? weightDecay : 0), step: step)
        }
    }
}
