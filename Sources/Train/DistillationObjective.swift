// The distillation losses of one micro-batch and their gradients into the student (and the
// projection), as TinyBERT's and DistilBERT's reference code compute them:
// - TinyBERT intermediate: Σ MSE(student scores, teacher scores) over mapped layers (pre-softmax,
//   masked keys 0 on both sides) + MSE(embeddings) + Σ MSE(hidden states), the student's hidden
//   states going through one learned projection (fit_dense) when the widths differ. The score
//   terms are fused into the attention kernels: the loss and its gradient are computed tile by
//   tile from both models' queries and keys, so no [B,NH,T,T] tensor is stored on either side.
// - TinyBERT prediction: soft cross-entropy at temperature T, averaged over batch and classes
//   (its `(−p_teacher·log p_student).mean()`), plus w·CE(labels) when a hard-label weight is given.
// - DistilBERT: α·T²·KL(p_teacher ‖ p_student) (batch mean) + β·CE(labels) + γ·(1 − cos) between
//   last hidden states over the non-padding tokens.
// The teacher runs forward only, in an inference arena that keeps just hidden states and the
// mapped layers' queries and keys. Each stage is one TrainingObjective type; what they share
// (the teacher and its arena, the projection, scratch) is a DistillationContext, made once a run.
import Backend
import Foundation
import Models

public struct DistillationLoss: Sendable {
    public var method: DistillationMethod = .tinybert
    public var stage: DistillationStage = .intermediate      // tinybert only
    public var temperature = 1.0
    public var hardLabelWeight = 0.0                          // tinybert prediction stage
    public var alpha = 0.5, beta = 0.5, gamma = 1.0           // distilbert: KL, CE, cosine
    public var layerMap: LayerMap
    public init(layerMap: LayerMap) { self.layerMap = layerMap }
}

/// A distillation stage's objective: a TrainingObjective with the context it shares with the
/// run's other stages.
public protocol DistillationObjective: TrainingObjective {
    var context: DistillationContext { get }
}

public extension DistillationObjective {
    /// fit_dense (weight [Ct, Cs], bias [Ct]) when the widths differ, else empty.
    var projection: [TrainableTensor] { context.projection }
    /// The projection trains beside the student in every stage of the run (one optimizer state).
    var extraParameters: [TrainableTensor] { context.projection }
}

extension Distillation {
    /// The objective of `loss.method` and `loss.stage`, with a fresh context.
    public static func objective(teacher: Classifier, student: Classifier, loss: DistillationLoss, maxBatch: Int,
                                 seed: UInt64) throws -> DistillationObjective {
        let context = try DistillationContext(teacher: teacher, student: student, layerMap: loss.layerMap, method: loss.method,
                                              maxBatch: maxBatch, seed: seed)
        return try context.objective(loss)
    }
}

/// What a run's distillation objectives share: the teacher and its forward-only arena (hidden
/// states, and the queries and keys of the mapped layers), the student, the projection and
/// scratch for the loss gradients.
public final class DistillationContext {
    public let teacher: Classifier, student: Classifier
    public let layerMap: LayerMap
    let backend: Backend
    let teacherActivations: BertActivations
    /// fit_dense: student width → teacher width, when they differ (weight [Ct, Cs], bias [Ct]).
    public let projection: [TrainableTensor]
    // Scratch, allocated for the largest batch.
    let projected, dProjected, dLogits, dLogitsHard, scalar: Tensor
    let dHidden: [Int: Tensor]

    public init(teacher: Classifier, student: Classifier, layerMap: LayerMap, method: DistillationMethod, maxBatch: Int,
                seed: UInt64) throws {
        self.teacher = teacher; self.student = student; self.layerMap = layerMap
        let backend = student.model.backend
        self.backend = backend
        let (t, s) = (teacher.model.config, student.model.config)
        guard student.model.labels == teacher.model.labels else {
            throw DataError("the student has \(student.model.labels) labels and the teacher \(teacher.model.labels); they must agree")
        }
        let BT = maxBatch * student.maxLength
        teacherActivations = try BertActivations(config: t, labels: teacher.model.labels, maxBatch: maxBatch, maxLength: student.maxLength,
                                                 backend: backend, inference: true, keepQueryKey: Set(layerMap.pairs.map(\.teacher)))
        if s.hiddenSize != t.hiddenSize {
            let weight = try backend.allocate(t.hiddenSize * s.hiddenSize, .f32), bias = try backend.zeros(t.hiddenSize)
            var normal = NormalRandom(seed: seed ^ 0xF17D)   // nn.Linear under BERT's init: normal(0, initializer_range), bias 0
            let values = (0..<weight.count).map { _ in Float(s.initializerRange) * normal.next() }
            values.withUnsafeBytes { backend.upload(weight, $0) }
            projection = [TrainableTensor(name: "fit_dense.weight", weight: weight, grad: try backend.zeros(weight.count), decays: true),
                          TrainableTensor(name: "fit_dense.bias", weight: bias, grad: try backend.zeros(bias.count), decays: false)]
        } else {
            projection = []
        }
        projected = try backend.zeros(projection.isEmpty ? 0 : BT * t.hiddenSize)
        dProjected = try backend.zeros(projection.isEmpty ? 0 : BT * t.hiddenSize)
        dLogits = try backend.zeros(maxBatch * student.model.labels)
        dLogitsHard = try backend.zeros(maxBatch * student.model.labels)
        scalar = try backend.zeros(1)
        var hiddenIndices = [0] + layerMap.pairs.map { $0.student + 1 }
        if method == .distilbert { hiddenIndices = [s.layers] }
        dHidden = Dictionary(uniqueKeysWithValues: try hiddenIndices.map { ($0, try backend.zeros(BT * s.hiddenSize)) })
    }

    /// Floats of the projection (fit_dense: weight [Ct, Cs] and bias [Ct]) a student of width Cs
    /// trains beside itself for a teacher of width Ct; 0 when the widths agree.
    public static func projectionSize(student Cs: Int, teacher Ct: Int) -> Int { Cs == Ct ? 0 : Ct * Cs + Ct }

    /// The objective for one stage of `loss`.
    public func objective(_ loss: DistillationLoss) throws -> DistillationObjective {
        switch (loss.method, loss.stage) {
        case (.tinybert, .intermediate): return try TinyBERTIntermediateObjective(self)
        case (.tinybert, .prediction):
            return TinyBERTPredictionObjective(self, temperature: loss.temperature, hardLabelWeight: loss.hardLabelWeight)
        case (.distilbert, _):
            return DistilBERTObjective(self, temperature: loss.temperature, alpha: loss.alpha, beta: loss.beta, gamma: loss.gamma)
        }
    }

    /// Runs the teacher (forward only) and the student (training, dropout from `seed`) on `batch`.
    func forward(_ a: BertActivations, batch: [Encoding], seed: UInt64) {
        teacher.load(batch, labels: [], into: teacherActivations, length: a.length)   // the student's padding
        teacher.model.forward(teacherActivations)
        student.model.forward(a, training: true, seed: seed)
    }

    /// weight·CE against the labels, its gradient added to dLogits, the loss to term "hard".
    func hardCrossEntropy(_ a: BertActivations, weight: Double, gradScale: Float, losses: StepLosses, share: Double) {
        let (s, b) = (student.model, backend), (B, V) = (a.batch, s.labels)
        b.crossEntropy(scalar, dLogits: dLogitsHard.slice(0, B * V), logits: s.logits(a), labels: s.labels(a), rows: B, classes: V,
                       gradScale: gradScale * Float(weight))
        b.axpy(dLogits.slice(0, B * V), dLogitsHard.slice(0, B * V), count: B * V, alpha: 1)
        losses.add("hard", scalar, weight: weight * share)
    }

    /// Student hidden state `i` as the losses see it (projected to the teacher's width when the
    /// widths differ), the tensor its loss gradient goes to, and the step that carries that
    /// gradient into dHidden[i] (and the projection's gradients).
    func studentView(_ a: BertActivations, hidden i: Int) -> (value: Tensor, gradient: Tensor, backward: () -> Void) {
        let s = student.model, h = s.hiddenState(a, i), BT = a.batch * a.length
        guard projection.count == 2 else { return (h, dHidden[i]!.slice(0, h.count), {}) }
        let (Cs, Ct) = (s.config.hiddenSize, teacher.model.config.hiddenSize), b = backend
        let (p, dp) = (projected.slice(0, BT * Ct), dProjected.slice(0, BT * Ct))
        b.matmul(p, h, projection[0].weight, bias: projection[1].weight, Gemm(m: BT, n: Ct, k: Cs, transB: true))
        return (p, dp, { [self] in
            b.matmul(projection[0].grad, dp, h, bias: nil, Gemm(m: Ct, n: Cs, k: BT, transA: true, beta: 1))
            b.biasBackward(projection[1].grad, dOut: dp, rows: BT, channels: Ct)
            b.matmul(dHidden[i]!.slice(0, BT * Cs), dp, projection[0].weight, bias: nil, Gemm(m: BT, n: Cs, k: Ct))
        })
    }
}

/// TinyBERT's intermediate stage: Σ MSE(attention scores) + MSE(embeddings) + Σ MSE(hidden states).
public final class TinyBERTIntermediateObjective: DistillationObjective {
    public let context: DistillationContext

    init(_ context: DistillationContext) throws {
        let (s, t) = (context.student.model.config, context.teacher.model.config)
        if s.heads != t.heads {
            throw DataError("attention-score distillation needs as many heads in the student (\(s.heads)) as in the teacher (\(t.heads))")
        }
        self.context = context
    }

    /// The head (pooler, classifier) gets no gradient in this stage.
    public var idleParameters: Set<String> { ["classifier.weight", "classifier.bias", "pooler.dense.weight", "pooler.dense.bias"] }

    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        let c = context, (s, t, b) = (c.student.model, c.teacher.model, c.backend)
        c.forward(a, batch: batch, seed: seed)
        var dScores: [Int: ScoreGradient] = [:]
        for pair in c.layerMap.pairs {
            let shape = s.attentionShape(a, layer: pair.student, training: false, seed: 0), own = s.scoreTarget(a, layer: pair.student)
            let target = t.scoreTarget(c.teacherActivations, layer: pair.teacher)
            b.attentionScoreLoss(c.scalar, q: own.q, k: own.k, mask: a.mask.slice(0, a.batch * a.length), bias: own.bias, target: target, shape)
            dScores[pair.student] = .scoreMSE(target, gradScale: gradScale)
            losses.add("attention.\(pair.student)", c.scalar, weight: weight)
        }
        for (si, ti) in [(0, 0)] + c.layerMap.pairs.map({ ($0.student + 1, $0.teacher + 1) }) {
            let view = c.studentView(a, hidden: si)
            b.mse(c.scalar, dA: view.gradient, view.value, t.hiddenState(c.teacherActivations, ti), count: view.value.count, gradScale: gradScale)
            losses.add(si == 0 ? "embeddings" : "hidden.\(si - 1)", c.scalar, weight: weight)
            view.backward()
        }
        s.backward(a, dLogits: nil, dHidden: c.dHidden, dScores: dScores)
    }
}

/// TinyBERT's prediction stage: soft cross-entropy at temperature T, averaged over batch and
/// classes (its `(−p_teacher·log p_student).mean()`), plus w·CE(labels) with a hard-label weight.
public final class TinyBERTPredictionObjective: DistillationObjective {
    public let context: DistillationContext
    public let temperature, hardLabelWeight: Double

    init(_ context: DistillationContext, temperature: Double, hardLabelWeight: Double) {
        self.context = context; self.temperature = temperature; self.hardLabelWeight = hardLabelWeight
    }

    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        let c = context, (s, b) = (c.student.model, c.backend), (B, V) = (a.batch, s.labels)
        c.forward(a, batch: batch, seed: seed)
        let dl = c.dLogits.slice(0, B * V)
        b.softCrossEntropy(c.scalar, dLogits: dl, logits: s.logits(a), teacher: c.teacher.model.logits(c.teacherActivations), rows: B,
                           classes: V, temperature: Float(temperature), gradScale: gradScale / Float(V))
        losses.add("soft", c.scalar, weight: weight / Double(V))
        if hardLabelWeight > 0 { c.hardCrossEntropy(a, weight: hardLabelWeight, gradScale: gradScale, losses: losses, share: weight) }
        s.backward(a, dLogits: dl)
    }
}

/// DistilBERT: α·T²·KL(p_teacher ‖ p_student) (batch mean) + β·CE(labels) + γ·(1 − cos) between
/// last hidden states over the non-padding tokens.
public final class DistilBERTObjective: DistillationObjective {
    public let context: DistillationContext
    public let temperature, alpha, beta, gamma: Double

    init(_ context: DistillationContext, temperature: Double, alpha: Double, beta: Double, gamma: Double) {
        self.context = context; self.temperature = temperature; self.alpha = alpha; self.beta = beta; self.gamma = gamma
    }

    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float, losses: StepLosses, weight: Double) {
        let c = context, (s, t, b) = (c.student.model, c.teacher.model, c.backend), (B, V) = (a.batch, s.labels)
        c.forward(a, batch: batch, seed: seed)
        let T2 = temperature * temperature, dl = c.dLogits.slice(0, B * V), teacherLogits = t.logits(c.teacherActivations)
        // KL(p_t ‖ p_s) = soft CE − H(p_t); the entropy is the teacher's soft CE against itself.
        b.softCrossEntropy(c.scalar, dLogits: nil, logits: teacherLogits, teacher: teacherLogits, rows: B, classes: V,
                           temperature: Float(temperature), gradScale: 0)
        losses.add("kl", c.scalar, weight: -weight * alpha * T2)
        b.softCrossEntropy(c.scalar, dLogits: dl, logits: s.logits(a), teacher: teacherLogits, rows: B, classes: V,
                           temperature: Float(temperature), gradScale: gradScale * Float(alpha * T2))
        losses.add("kl", c.scalar, weight: weight * alpha * T2)
        if beta > 0 { c.hardCrossEntropy(a, weight: beta, gradScale: gradScale, losses: losses, share: weight) }
        if gamma > 0 {
            // 1 − cos over the real tokens: sequence by sequence on its unpadded rows, weighted by length.
            let view = c.studentView(a, hidden: s.config.layers)
            let T = a.length, C = view.value.count / (B * T), lengths = batch.map { $0.ids.count }, tokens = lengths.reduce(0, +)
            let teacherLast = t.hiddenState(c.teacherActivations, t.config.layers)
            b.fill(view.gradient, 0)
            for (i, n) in lengths.enumerated() {
                let share = Float(n) / Float(tokens) * a.tokenLossScale   // (data parallel: weighed by the share's tokens)
                b.cosine(c.scalar, dA: view.gradient.slice(i * T * C, n * C), view.value.slice(i * T * C, n * C),
                         teacherLast.slice(i * T * C, n * C), rows: n, channels: C, gradScale: gradScale * Float(gamma) * share)
                losses.add("cosine", c.scalar, weight: weight * gamma * Double(share))
            }
            view.backward()
        }
        s.backward(a, dLogits: dl, dHidden: c.dHidden)
    }
}
