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
        crossEntropyBackward(a, gradScale: gradScale)
        return backend.floats(a.loss)[0]
    }

    /// `backward` without reading the loss back: it stays in `a.loss` (queued on the device).
    public func crossEntropyBackward(_ a: BertActivations, gradScale: Float = 1) {
        let B = a.batch, dLogits = a.dLogits.slice(0, B * labels)
        backend.crossEntropy(a.loss, dLogits: dLogits, logits: a.logits.slice(0, B * labels), labels: a.labels.slice(0, B),
                             rows: B, classes: labels, gradScale: gradScale)
        backward(a, dLogits: dLogits)
    }

    /// Backpropagates given output gradients: `dLogits` [B, labels] (nil: the head is not used),
    /// `dHidden[i]` [B,T,C] into hidden state i (0 = embeddings output, l + 1 = layer l output) and
    /// `dScores[l]` into layer l's pre-softmax attention scores (a [B,NH,T,T] tensor, or the fused
    /// attention-score MSE against another model's layer). Gradients accumulate into the
    /// parameters that train (and the adapters'); frozen ones get none.
    public func backward(_ a: BertActivations, dLogits: Tensor?, dHidden injected: [Int: Tensor] = [:],
                         dScores: [Int: ScoreGradient] = [:]) {
        precondition(!a.inference, "backward needs a training arena (BertActivations inference: false)")
        precondition(trains, "backward needs a model with gradients (BertModel inference: false)")
        let c = config, b = backend, P = parameters!
        let (B, T, C) = (a.batch, a.length, c.hiddenSize), BT = B * T
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
            P.classifier.backward(b, dX: a.dPooled.slice(0, B * C), dY: dLogits, x: a.pooledDropped.slice(0, B * C), rows: B)
            let dPooled = dropped(a.dPooled.slice(0, B * C), 3)
            b.tanhBackward(dx: a.dPoolerPre.slice(0, B * C), dOut: dPooled, out: a.pooled.slice(0, B * C), count: B * C)
            P.pooler.backward(b, dX: dHidden, dY: a.dPoolerPre.slice(0, B * C), x: a.hidden[c.layers], rows: B,
                              inputStride: T * C, dXStride: T * C)
        }

        // MPNet: the relative position bias's gradient, summed over the layers (when it trains).
        let positionBias = a.positionBias?.slice(0, c.heads * T * T)
        let dPositionBias = P.relativeAttentionBias?.trains == true ? a.dPositionBias?.slice(0, c.heads * T * T) : nil
        if let dPositionBias { b.fill(dPositionBias, 0) }
        for layer in P.layers.reversed() {
            let l = layer.index
            inject(l + 1, into: dHidden)
            layer.backward(b, a, x: a.hidden[l].slice(0, BT * C), dHidden: dHidden, dScores: dScores[l],
                           attention: attentionShape(a, layer: l, training: seed != nil, seed: seed ?? 0), positionBias: positionBias,
                           dPositionBias: dPositionBias, p: p, seed: seed)
            layerGradientsReady?(layer.trainedGradients)
        }
        // Embeddings: dropout, LayerNorm, then the scatter into the tables (when they train).
        inject(0, into: dHidden)
        if let dPositionBias { relativePositionBiasBackward(a, dBias: dPositionBias) }
        guard P.embeddingsTrain else { return }
        let dResidual = a.dResidual.slice(0, BT * C), dEmbeddingsOut = dropped(dHidden, 1)
        P.embeddingNorm.backward(b, dx: dResidual, dy: dEmbeddingsOut, a.embedded.slice(0, BT * C), mean: a.embMean.slice(0, BT),
                                 rstd: a.embRstd.slice(0, BT), rows: BT, channels: C)
        guard let segments = a.embeddingSegments else { preconditionFailure("backward needs a batch loaded for training (BertActivations.load forBackward)") }
        b.embeddingBackward(dWord: P.wordEmbeddings.grad, dPosition: P.positionEmbeddings.grad, dType: P.tokenTypeEmbeddings?.grad, dOut: dResidual, ids: a.ids.slice(0, BT),
                            positions: a.positions.slice(0, BT), types: a.types.slice(0, BT), segments: segments,
                            c.embeddingShape(tokens: BT))
    }
}
