// BERT's backward pass, by hand, in reverse order of BertModel.forward. Parameter gradients
// accumulate into `grads` (zero them between optimiser steps); dropout is replayed from the
// forward's seed, so no mask is stored.
import Backend

extension BertModel {
    /// Mean cross-entropy of the last forward's logits against the loaded labels.
    public func loss(_ a: BertActivations) -> Float {
        backend.crossEntropy(a.loss, dLogits: nil, logits: a.logits.slice(0, a.batch * labels), labels: a.labels.slice(0, a.batch),
                             rows: a.batch, classes: labels, gradScale: 1)
        return backend.floats(a.loss)[0]
    }

    /// Cross-entropy loss of the last forward against the loaded labels, and the gradient of
    /// gradScale·loss accumulated into `grads`.
    @discardableResult
    public func backward(_ a: BertActivations, gradScale: Float = 1) -> Float {
        let B = a.batch, dLogits = a.dLogits.slice(0, B * labels)
        backend.crossEntropy(a.loss, dLogits: dLogits, logits: a.logits.slice(0, B * labels), labels: a.labels.slice(0, B),
                             rows: B, classes: labels, gradScale: gradScale)
        backward(a, dLogits: dLogits)
        return backend.floats(a.loss)[0]
    }

    /// Backpropagates given output gradients: `dLogits` [B, labels] (nil: the head is not used),
    /// `dHidden[i]` [B,T,C] into hidden state i (0 = embeddings output, l + 1 = layer l output) and
    /// `dScores[l]` into layer l's pre-softmax attention scores (a [B,NH,T,T] tensor, or the fused
    /// attention-score MSE against another model's layer). Parameter gradients accumulate into
    /// `grads` (and the adapters' with LoRA).
    public func backward(_ a: BertActivations, dLogits: Tensor?, dHidden injected: [Int: Tensor] = [:],
                         dScores: [Int: ScoreGradient] = [:]) {
        precondition(!a.inference, "backward needs a training arena (BertActivations inference: false)")
        precondition(grads.count == layout.total, "backward needs a model with gradients (BertModel inference: false)")
        let c = config, b = backend
        let (B, T, C, FF) = (a.batch, a.length, c.hiddenSize, c.intermediateSize), BT = B * T
        let seed = a.trainingSeed, p: Float = seed == nil ? 0 : Float(c.hiddenDropout)   // seed: a training forward
        func dropped(_ grad: Tensor, _ site: UInt64) -> Tensor {   // the dropout's backward, or grad itself
            guard let seed, p > 0 else { return grad }
            b.dropout(a.dDropped.slice(0, grad.count), grad, count: grad.count, p: p, seed: seed &+ site)
            return a.dDropped.slice(0, grad.count)
        }
        func inject(_ i: Int, into d: Tensor) {
            if let g = injected[i] { b.axpy(d, g.slice(0, BT * C), count: BT * C, alpha: 1) }
        }
        let dHidden = a.dHidden.slice(0, BT * C)
        b.fill(dHidden, 0)
        if let dLogits {
            // Classifier, then the pooler: tanh and the dense layer on the [CLS] rows (row stride T·C).
            b.matmul(g("classifier.weight"), dLogits, a.pooledDropped, bias: nil, Gemm(m: labels, n: C, k: B, transA: true, beta: 1))
            b.biasBackward(g("classifier.bias"), dOut: dLogits, rows: B, channels: labels)
            b.matmul(a.dPooled.slice(0, B * C), dLogits, w("classifier.weight"), bias: nil, Gemm(m: B, n: C, k: labels))
            let dPooled = dropped(a.dPooled.slice(0, B * C), 3)
            b.tanhBackward(dx: a.dPoolerPre.slice(0, B * C), dOut: dPooled, out: a.pooled.slice(0, B * C), count: B * C)
            let last = a.hidden[c.layers]
            if lora == nil {
                b.matmul(g("pooler.dense.weight"), a.dPoolerPre.slice(0, B * C), last, bias: nil,
                         Gemm(m: C, n: C, k: B, transA: true, beta: 1, ldb: T * C))
                b.biasBackward(g("pooler.dense.bias"), dOut: a.dPoolerPre.slice(0, B * C), rows: B, channels: C)
            }
            b.matmul(dHidden, a.dPoolerPre.slice(0, B * C), w("pooler.dense.weight"), bias: nil, Gemm(m: B, n: C, k: C, ldc: T * C))
        }

        let dResidual = a.dResidual.slice(0, BT * C), dAttended = a.dAttended.slice(0, BT * C)
        let dContext = a.dContext.slice(0, BT * C), dFF = a.dFF.slice(0, BT * FF)
        let dq = a.dq.slice(0, BT * C), dk = a.dk.slice(0, BT * C), dv = a.dv.slice(0, BT * C)
        // MPNet: the relative position bias's gradient, summed over the layers (frozen with LoRA).
        let positionBias = a.positionBias?.slice(0, c.heads * T * T)
        let dPositionBias = lora == nil ? a.dPositionBias?.slice(0, c.heads * T * T) : nil
        if let dPositionBias { b.fill(dPositionBias, 0) }
        for l in (0..<c.layers).reversed() {
            inject(l + 1, into: dHidden)
            let L = a.layers[l], x = a.hidden[l].slice(0, BT * C), prefix = "encoder.layer.\(l)."
            let attention = attentionShape(a, layer: l, training: seed != nil, seed: seed ?? 0)
            /// dW += dYᵀ·X, db += Σ dY, and (when dX is given) dX = beta·dX + dY·W for the linear `name`.
            func linearBackward(_ name: String, dY: Tensor, X: Tensor, n: Int, k: Int, dX: Tensor, beta: Float = 0) {
                if lora == nil {   // with adapters the base weights are frozen
                    b.matmul(g(prefix + name + ".weight"), dY, X, bias: nil, Gemm(m: n, n: k, k: BT, transA: true, beta: 1))
                    b.biasBackward(g(prefix + name + ".bias"), dOut: dY, rows: BT, channels: n)
                }
                b.matmul(dX, dY, w(prefix + name + ".weight"), bias: nil, Gemm(m: BT, n: k, k: n, beta: beta))
                if let (adapters, t) = adapter(name) {
                    b.loraBackward(dx: dX, dA: adapters.dA(l, t), dB: adapters.dB(l, t), dY: dY, X,
                                   xa: a.loraInput(l, t, rows: BT, rank: adapters.config.rank, backend: b), a: adapters.a(l, t), b: adapters.b(l, t),
                                   loraShape(adapters, t, layer: l, rows: BT, training: seed != nil, seed: seed ?? 0))
                }
            }
            // out = LN2(residual2), residual2 = attended + dropout(gelu·W2ᵀ + b2)
            b.layerNormBackward(dx: dResidual, dWeight: g(prefix + "output.LayerNorm.weight"), dBias: g(prefix + "output.LayerNorm.bias"),
                                dOut: dHidden, L.residual2.slice(0, BT * C), weight: w(prefix + "output.LayerNorm.weight"),
                                mean: L.mean2.slice(0, BT), rstd: L.rstd2.slice(0, BT), rows: BT, channels: C)
            if a.recomputeGelu { b.geluForward(L.gelu.slice(0, BT * FF), L.preGelu.slice(0, BT * FF), count: BT * FF) }
            linearBackward("output.dense", dY: dropped(dResidual, UInt64(11 + 2 * l)), X: L.gelu.slice(0, BT * FF), n: C, k: FF, dX: dFF)
            b.geluBackward(dx: dFF, dOut: dFF, L.preGelu.slice(0, BT * FF), count: BT * FF)
            b.copy(dAttended, dResidual)
            linearBackward("intermediate.dense", dY: dFF, X: L.attended.slice(0, BT * C), n: FF, k: C, dX: dAttended, beta: 1)
            // attended = LN1(residual1), residual1 = x + dropout(context·Woᵀ + bo)
            b.layerNormBackward(dx: dResidual, dWeight: g(prefix + "attention.output.LayerNorm.weight"),
                                dBias: g(prefix + "attention.output.LayerNorm.bias"), dOut: dAttended, L.residual1.slice(0, BT * C),
                                weight: w(prefix + "attention.output.LayerNorm.weight"), mean: L.mean1.slice(0, BT),
                                rstd: L.rstd1.slice(0, BT), rows: BT, channels: C)
            linearBackward("attention.output.dense", dY: dropped(dResidual, UInt64(10 + 2 * l)), X: L.context.slice(0, BT * C),
                           n: C, k: C, dX: dContext)
            b.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dPositionBias, dOut: dContext, dScores: dScores[l], out: L.context.slice(0, BT * C),
                                lse: L.lse.slice(0, attention.rows), q: L.q.slice(0, BT * C), k: L.k.slice(0, BT * C),
                                v: L.v.slice(0, BT * C), mask: a.mask.slice(0, BT), bias: positionBias, attention)
            // dx = dResidual (the residual path) + dq·Wq + dk·Wk + dv·Wv
            b.copy(dHidden, dResidual)
            linearBackward("attention.self.query", dY: dq, X: x, n: C, k: C, dX: dHidden, beta: 1)
            linearBackward("attention.self.key", dY: dk, X: x, n: C, k: C, dX: dHidden, beta: 1)
            linearBackward("attention.self.value", dY: dv, X: x, n: C, k: C, dX: dHidden, beta: 1)
        }
        // Embeddings: dropout, LayerNorm, then the scatter into the tables (frozen with LoRA).
        inject(0, into: dHidden)
        guard lora == nil else { return }
        if let dPositionBias { relativePositionBiasBackward(a, dBias: dPositionBias) }
        let dEmbeddingsOut = dropped(dHidden, 1)
        b.layerNormBackward(dx: dResidual, dWeight: g("embeddings.LayerNorm.weight"), dBias: g("embeddings.LayerNorm.bias"),
                            dOut: dEmbeddingsOut, a.embedded.slice(0, BT * C), weight: w("embeddings.LayerNorm.weight"),
                            mean: a.embMean.slice(0, BT), rstd: a.embRstd.slice(0, BT), rows: BT, channels: C)
        let shape = embeddingShape(tokens: BT)
        b.embeddingBackward(dWord: g("embeddings.word_embeddings.weight"), dPosition: g("embeddings.position_embeddings.weight"),
                            dType: optionalGrad("embeddings.token_type_embeddings.weight"), dOut: dResidual, ids: a.ids.slice(0, BT),
                            positions: a.positions.slice(0, BT), types: a.types.slice(0, BT), shape)
    }
}
