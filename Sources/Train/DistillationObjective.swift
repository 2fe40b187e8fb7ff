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
// mapped layers' queries and keys.
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

public final class DistillationObjective {
    public let teacher: Classifier, student: Classifier
    public var loss: DistillationLoss
    let backend: Backend
    let teacherActivations: BertActivations
    /// fit_dense: student width → teacher width, when they differ (weight [Ct, Cs], bias [Ct]).
    public let projection: [TrainableTensor]
    // Scratch, allocated for the largest batch.
    let projected, dProjected, dLogits, dLogitsHard, scalar: Tensor
    let dHidden: [Int: Tensor]
    /// The loss terms of the last micro-batch, weighted as they enter the loss, which is their sum
    /// ("attention.0", "embeddings", "hidden.1", "soft", "hard", "kl", "cosine").
    public private(set) var terms: [(name: String, value: Double)] = []

    public init(teacher: Classifier, student: Classifier, loss: DistillationLoss, maxBatch: Int, seed: UInt64) throws {
        self.teacher = teacher; self.student = student; self.loss = loss
        let backend = student.model.backend
        self.backend = backend
        let (t, s) = (teacher.model.config, student.model.config)
        guard student.model.labels == teacher.model.labels else {
            throw DataError("the student has \(student.model.labels) labels and the teacher \(teacher.model.labels); they must agree")
        }
        if loss.method == .tinybert, loss.stage == .intermediate, s.heads != t.heads {
            throw DataError("attention-score distillation needs as many heads in the student (\(s.heads)) as in the teacher (\(t.heads))")
        }
        let BT = maxBatch * student.maxLength
        teacherActivations = try BertActivations(config: t, labels: teacher.model.labels, maxBatch: maxBatch, maxLength: student.maxLength,
                                                 backend: backend, inference: true, keepQueryKey: Set(loss.layerMap.pairs.map(\.teacher)))
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
        var hiddenIndices = [0] + loss.layerMap.pairs.map { $0.student + 1 }
        if loss.method == .distilbert { hiddenIndices = [s.layers] }
        dHidden = Dictionary(uniqueKeysWithValues: try hiddenIndices.map { ($0, try backend.zeros(BT * s.hiddenSize)) })
    }

    /// Floats of the projection (fit_dense: weight [Ct, Cs] and bias [Ct]) a student of width Cs
    /// trains beside itself for a teacher of width Ct; 0 when the widths agree.
    public static func projectionSize(student Cs: Int, teacher Ct: Int) -> Int { Cs == Ct ? 0 : Ct * Cs + Ct }

    /// Parameters that receive no gradient in this stage (the optimiser leaves them alone).
    public var idleParameters: Set<String> {
        loss.method == .tinybert && loss.stage == .intermediate
            ? ["classifier.weight", "classifier.bias", "pooler.dense.weight", "pooler.dense.bias"] : []
    }

    /// Runs the teacher and the student (loaded in `a`, in training mode with `seed`) on `batch`,
    /// accumulates the gradient of gradScale·loss and returns the loss.
    public func step(_ a: BertActivations, batch: [Encoding], seed: UInt64, gradScale: Float) -> Double {
        let t = teacherActivations
        teacher.load(batch, labels: [], into: t)
        teacher.model.forward(t)
        student.model.forward(a, training: true, seed: seed)
        terms = []
        switch (loss.method, loss.stage) {
        case (.tinybert, .intermediate): return intermediate(a, gradScale: gradScale)
        case (.tinybert, .prediction): return prediction(a, gradScale: gradScale)
        case (.distilbert, _): return distilbert(a, batch: batch, gradScale: gradScale)
        }
    }

    /// The mean loss just written to `scalar` times `weight`, recorded as a term.
    private func record(_ name: String, weight: Double = 1) -> Double {
        let value = Double(backend.floats(scalar)[0]) * weight
        terms.append((name, value))
        return value
    }

    private func intermediate(_ a: BertActivations, gradScale: Float) -> Double {
        let (s, t, b) = (student.model, teacher.model, backend)
        var total = 0.0, dScores: [Int: ScoreGradient] = [:]
        for pair in loss.layerMap.pairs {
            let shape = s.attentionShape(a, layer: pair.student, training: false, seed: 0), own = s.scoreTarget(a, layer: pair.student)
            let target = t.scoreTarget(teacherActivations, layer: pair.teacher)
            b.attentionScoreLoss(scalar, q: own.q, k: own.k, mask: a.mask.slice(0, a.batch * a.length), bias: own.bias, target: target, shape)
            dScores[pair.student] = .scoreMSE(target, gradScale: gradScale)
            total += record("attention.\(pair.student)")
        }
        for (si, ti) in [(0, 0)] + loss.layerMap.pairs.map({ ($0.student + 1, $0.teacher + 1) }) {
            let view = studentView(a, hidden: si)
            b.mse(scalar, dA: view.gradient, view.value, t.hiddenState(teacherActivations, ti), count: view.value.count, gradScale: gradScale)
            total += record(si == 0 ? "embeddings" : "hidden.\(si - 1)")
            view.backward()
        }
        s.backward(a, dLogits: nil, dHidden: dHidden, dScores: dScores)
        return total
    }

    private func prediction(_ a: BertActivations, gradScale: Float) -> Double {
        let (s, b) = (student.model, backend), (B, V) = (a.batch, s.labels)
        let dl = dLogits.slice(0, B * V)
        b.softCrossEntropy(scalar, dLogits: dl, logits: s.logits(a), teacher: teacher.model.logits(teacherActivations), rows: B, classes: V,
                           temperature: Float(loss.temperature), gradScale: gradScale / Float(V))
        var total = record("soft", weight: 1 / Double(V))
        if loss.hardLabelWeight > 0 { total += hardCrossEntropy(a, weight: loss.hardLabelWeight, gradScale: gradScale) }
        s.backward(a, dLogits: dl)
        return total
    }

    /// weight·CE against the labels, its gradient added to dLogits.
    private func hardCrossEntropy(_ a: BertActivations, weight: Double, gradScale: Float) -> Double {
        let (s, b) = (student.model, backend), (B, V) = (a.batch, s.labels)
        b.crossEntropy(scalar, dLogits: dLogitsHard.slice(0, B * V), logits: s.logits(a), labels: s.labels(a), rows: B, classes: V,
                       gradScale: gradScale * Float(weight))
        b.axpy(dLogits.slice(0, B * V), dLogitsHard.slice(0, B * V), count: B * V, alpha: 1)
        return record("hard", weight: weight)
    }

    private func distilbert(_ a: BertActivations, batch: [Encoding], gradScale: Float) -> Double {
        let (s, t, b) = (student.model, teacher.model, backend), (B, V) = (a.batch, s.labels)
        let T2 = loss.temperature * loss.temperature, dl = dLogits.slice(0, B * V), teacherLogits = t.logits(teacherActivations)
        // KL(p_t ‖ p_s) = soft CE − H(p_t); the entropy is the teacher's soft CE against itself.
        b.softCrossEntropy(scalar, dLogits: nil, logits: teacherLogits, teacher: teacherLogits, rows: B, classes: V,
                           temperature: Float(loss.temperature), gradScale: 0)
        let entropy = Double(b.floats(scalar)[0])
        b.softCrossEntropy(scalar, dLogits: dl, logits: s.logits(a), teacher: teacherLogits, rows: B, classes: V,
                           temperature: Float(loss.temperature), gradScale: gradScale * Float(loss.alpha * T2))
        let kl = loss.alpha * T2 * (Double(b.floats(scalar)[0]) - entropy)
        terms.append(("kl", kl))
        var total = kl
        if loss.beta > 0 { total += hardCrossEntropy(a, weight: loss.beta, gradScale: gradScale) }
        if loss.gamma > 0 {
            // 1 − cos over the real tokens: sequence by sequence on its unpadded rows, weighted by length.
            let view = studentView(a, hidden: s.config.layers)
            let T = a.length, C = view.value.count / (B * T), lengths = batch.map { $0.ids.count }, tokens = lengths.reduce(0, +)
            let teacherLast = t.hiddenState(teacherActivations, t.config.layers)
            b.fill(view.gradient, 0)
            var cosine = 0.0
            for (i, n) in lengths.enumerated() {
                let weight = Float(n) / Float(tokens)
                b.cosine(scalar, dA: view.gradient.slice(i * T * C, n * C), view.value.slice(i * T * C, n * C),
                         teacherLast.slice(i * T * C, n * C), rows: n, channels: C, gradScale: gradScale * Float(loss.gamma) * weight)
                cosine += Double(b.floats(scalar)[0]) * Double(weight)
            }
            terms.append(("cosine", loss.gamma * cosine))
            total += loss.gamma * cosine
            view.backward()
        }
        s.backward(a, dLogits: dl, dHidden: dHidden)
        return total
    }

    /// Student hidden state `i` as the losses see it (projected to the teacher's width when the
    /// widths differ), the tensor its loss gradient goes to, and the step that carries that
    /// gradient into dHidden[i] (and the projection's gradients).
    private func studentView(_ a: BertActivations, hidden i: Int) -> (value: Tensor, gradient: Tensor, backward: () -> Void) {
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
