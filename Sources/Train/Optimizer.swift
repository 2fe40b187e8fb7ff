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
    /// Consecutive parameters whose weights and gradients are adjacent in memory and that decay
    /// alike (LoRA's adapters, a layer's matrices): one AdamW launch each, and one norm
    /// reduction — a few launches per step instead of one per tensor.
    struct Run { let weight, grad: Tensor; let offset: Int; let decays: Bool }
    let runs: [Run]
    /// With full fine-tuning the trained gradients are one buffer: one reduction covers them.
    let wholeGradient: Tensor?
    /// Σg² per gradient group, for `clip(maxNorm:)`.
    let sums: Tensor

    /// The model's trainable tensors and `extra` ones (a distillation projection); `idle` names
    /// tensors that get no gradient in this run and must not move (not even by weight decay).
    public convenience init(model: BertModel, extra: [TrainableTensor] = [], idle: Set<String> = []) throws {
        try self.init((model.trainable + extra).filter { !idle.contains($0.name) }, backend: model.backend,
                      wholeGradient: model.lora == nil && extra.isEmpty && idle.isEmpty ? model.grads : nil)
    }

    /// A decoder's trainable tensors (with LoRA: the adapters, whose gradients are their own
    /// buffer, and a classifier's score head).
    public convenience init(decoder: DecoderModel) throws {
        try self.init(decoder.trainable, backend: decoder.backend, wholeGradient: decoder.lora == nil ? decoder.grads : nil)
    }

    /// `parameters` in order; `wholeGradient`: one buffer that is exactly their gradients (one
    /// norm reduction), when there is one.
    public init(_ parameters: [TrainableTensor], backend: Backend, wholeGradient: Tensor?) throws {
        self.parameters = parameters
        self.backend = backend
        offsets = parameters.reduce(into: [0]) { $0.append($0.last! + $1.weight.count) }
        m = try backend.zeros(offsets.last!)
        v = try backend.zeros(offsets.last!)
        self.wholeGradient = wholeGradient
        runs = Self.runs(parameters, offsets: offsets)
        sums = try backend.zeros(wholeGradient == nil ? runs.count : 1)
    }

    static func runs(_ parameters: [TrainableTensor], offsets: [Int]) -> [Run] {
        func follows(_ a: Tensor, _ b: Tensor) -> Bool { a.buffer === b.buffer && a.offset + a.count == b.offset }
        var runs: [Run] = []
        for (p, offset) in zip(parameters, offsets) {
            if let last = runs.last, last.decays == p.decays, follows(last.weight, p.weight), follows(last.grad, p.grad) {
                runs[runs.count - 1] = Run(weight: Tensor(last.weight.buffer, offset: last.weight.offset, count: last.weight.count + p.weight.count),
                                           grad: Tensor(last.grad.buffer, offset: last.grad.offset, count: last.grad.count + p.grad.count),
                                           offset: last.offset, decays: p.decays)
            } else {
                runs.append(Run(weight: p.weight, grad: p.grad, offset: offset, decays: p.decays))
            }
        }
        return runs
    }

    /// The gradient tensors the norm is taken over: one buffer with full fine-tuning, else one
    /// per run of adjacent trained tensors.
    public var gradientGroups: [Tensor] { wholeGradient.map { [$0] } ?? runs.map(\.grad) }

    /// Queues Σg² of each gradient group into `sums` (one element per group); nothing waits.
    public func squaredNorms(into sums: Tensor) {
        for (i, g) in gradientGroups.enumerated() { backend.sumOfSquares(sums.slice(i, 1), g, count: g.count) }
    }

    /// The gradients are those of the loss times `lossScale` (fp16 loss scaling; a power of two)
    /// and have global norm `norm` (of the unscaled loss): they are divided by the scale again
    /// and scaled down to `maxNorm` when above it (0: no clipping), in one pass. A norm that is
    /// not finite (an overflow) leaves them as they are.
    public func clip(norm: Double, maxNorm: Double, lossScale: Double = 1) {
        guard norm.isFinite else { return }
        var factor = 1 / lossScale
        if maxNorm > 0, norm > maxNorm { factor *= maxNorm / (norm + 1e-6) }
        if factor != 1 {
            for g in gradientGroups { backend.scale(g, count: g.count, by: Float(factor)) }
        }
    }

    /// The global L2 norm of the gradients of the unscaled loss, from the per-group Σg² that
    /// `squaredNorms` wrote (as read back).
    public func norm(sumsOfSquares: some Collection<Float>, lossScale: Double = 1) -> Double {
        sumsOfSquares.prefix(gradientGroups.count).reduce(0.0) { $0 + Double($1) }.squareRoot() / lossScale
    }

    /// The global L2 norm of the gradients (of the unscaled loss), read back now, and the clip.
    @discardableResult
    public func clip(maxNorm: Double, lossScale: Double = 1) -> Double {
        squaredNorms(into: sums)
        let norm = norm(sumsOfSquares: backend.floats(sums), lossScale: lossScale)
        clip(norm: norm, maxNorm: maxNorm, lossScale: lossScale)
        return norm
    }

    /// One AdamW step (`step` counts from 1); tensors that do not decay (biases, LayerNorm) get none.
    public func step(learningRate: Double, weightDecay: Double, step: Int) {
        for r in runs {
            backend.adamw(r.weight, grads: r.grad, m: m.slice(r.offset, r.weight.count), v: v.slice(r.offset, r.weight.count),
                          count: r.weight.count, AdamW(learningRate: learningRate, weightDecay: r.decays ? weightDecay : 0), step: step)
        }
    }
}
