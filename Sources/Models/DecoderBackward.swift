// A decoder's losses and backward pass, by hand, in reverse order of DecoderModel.forward.
// Parameter gradients accumulate into `grads` (zero them between optimiser steps).
//
// The language-model loss never materialises [B·T, V] logits: the rows go through the head in
// chunks of `headRows` — logits = h·Wᵀ, cross-entropy and its gradient, dh = dlogits·W,
// dW += dlogitsᵀ·h — so the head's memory is two [headRows, V] buffers whatever the batch. Each
// chunk's mean is weighted by its share of the batch's targets, which the host knows from the
// loaded batch, so the result is the batch mean with no host sync.
import Backend

extension DecoderModel {
    /// Mean next-token cross-entropy over the loaded targets (left in a.loss[0] on the device);
    /// with `backward`, the gradient of gradScale·loss into the final hidden states (a.dHidden)
    /// and into the head weight when it trains.
    func languageModelLoss(_ a: DecoderActivations, backward: Bool, gradScale: Float = 1) {
        precondition(labels == 0, "languageModelLoss: this model is a classifier")
        let b = backend, (N, C, V, R) = (a.batch * a.length, config.hiddenSize, config.vocabSize, a.headRows)
        let W = headWeight, total = a.hostTargets.prefix(N).filter { $0 >= 0 && Int($0) < V }.count
        b.fill(a.loss.slice(0, 1), 0)
        for r0 in stride(from: 0, to: N, by: R) {
            let rows = min(R, N - r0)
            let valid = a.hostTargets[r0..<(r0 + rows)].filter { $0 >= 0 && Int($0) < V }.count
            let h = a.final.slice(r0 * C, rows * C), dh = backward ? a.dHidden.slice(r0 * C, rows * C) : nil
            guard valid > 0 else {
                if let dh { b.fill(dh, 0) }
                continue
            }
            let logits = a.headLogits.slice(0, rows * V), dLogits = backward ? a.headGradient.slice(0, rows * V) : nil
            b.matmul(logits, h, W.weight, bias: nil, Gemm(m: rows, n: V, k: C, transB: true))
            let share = Float(valid) / Float(total)
            b.crossEntropy(a.loss.slice(1, 1), dLogits: dLogits, logits: logits, labels: a.targets.slice(r0, rows), rows: rows, classes: V,
                           gradScale: gradScale * share)
            b.axpy(a.loss.slice(0, 1), a.loss.slice(1, 1), count: 1, alpha: share)
            guard let dh, let dLogits else { continue }
            b.matmul(dh, dLogits, W.weight, bias: nil, Gemm(m: rows, n: C, k: V))
            if let dW = W.grad { b.matmul(dW, dLogits, h, bias: nil, Gemm(m: V, n: C, k: rows, transA: true, beta: 1)) }
        }
    }

    /// A language model's mean next-token loss over the last forward's targets, and how many of
    /// them the most likely token is (the head run again per chunk, its argmax on the host).
    public func nextTokenStatistics(_ a: DecoderActivations) -> (loss: Double, correct: Int, count: Int) {
        languageModelLoss(a, backward: false)
        let loss = Double(backend.floats(a.loss.slice(0, 1))[0])
        let (N, C, V, R) = (a.batch * a.length, config.hiddenSize, config.vocabSize, a.headRows)
        var correct = 0, count = 0
        for r0 in stride(from: 0, to: N, by: R) {
            let rows = min(R, N - r0), targets = a.hostTargets[r0..<(r0 + rows)]
            guard targets.contains(where: { $0 >= 0 && Int($0) < V }) else { continue }
            backend.matmul(a.headLogits.slice(0, rows * V), a.final.slice(r0 * C, rows * C), headWeight.weight, bias: nil,
                           Gemm(m: rows, n: V, k: C, transB: true))
            let logits = backend.floats(a.headLogits.slice(0, rows * V))
            for (i, target) in targets.enumerated() where target >= 0 && Int(target) < V {
                let row = logits[(i * V)..<((i + 1) * V)]
                if row.indices.max(by: { row[$0] < row[$1] })! - row.startIndex == Int(target) { correct += 1 }
                count += 1
            }
        }
        return (loss, correct, count)
    }

    /// The mean loss of the last forward: next-token cross-entropy (language model) or
    /// cross-entropy of the last-token logits against the loaded labels (classifier). One download.
    public func loss(_ a: DecoderActivations) -> Float {
        if labels > 0 {
            let logits = lastTokenLogits(a)
            backend.crossEntropy(a.loss.slice(0, 1), dLogits: nil, logits: logits, labels: a.labels.slice(0, a.batch), rows: a.batch,
                                 classes: labels, gradScale: 1)
        } else {
            languageModelLoss(a, backward: false)
        }
        return backend.floats(a.loss.slice(0, 1))[0]
    }

    /// The loss of the last forward (as `loss`) and the gradient of gradScale·loss accumulated into
    /// `grads`; the loss stays in a.loss[0] on the device (no download).
    public func lossBackward(_ a: DecoderActivations, gradScale: Float = 1) {
        precondition(!a.inference && trains, "backward needs a training arena and a model with gradients")
        let b = backend, (B, T, C) = (a.batch, a.length, config.hiddenSize)
        let dFinal = a.dHidden.slice(0, B * T * C)
        if labels > 0 {
            let logits = lastTokenLogits(a), dLogits = a.dLogits.slice(0, B * labels), dPooled = a.dPooled.slice(0, B * C)
            b.crossEntropy(a.loss.slice(0, 1), dLogits: dLogits, logits: logits, labels: a.labels.slice(0, B), rows: B, classes: labels,
                           gradScale: gradScale)
            parameters.score!.backward(b, dX: dPooled, dY: dLogits, x: a.pooled.slice(0, B * C), rows: B)
            b.fill(dFinal, 0)
            for (i, t) in a.lastTokens.enumerated() { b.copy(dFinal.slice((i * T + t) * C, C), dPooled.slice(i * C, C)) }
        } else {
            languageModelLoss(a, backward: true, gradScale: gradScale)
        }
        backward(a)
    }

    /// Backpropagates the gradient in a.dHidden (of the final hidden states) through the final
    /// norm, the layers and the embeddings.
    func backward(_ a: DecoderActivations) {
        let c = config, b = backend, P = parameters!
        let (BT, C) = (a.batch * a.length, c.hiddenSize)
        let dHidden = a.dHidden.slice(0, BT * C), dResidual = a.dResidual.slice(0, BT * C)
        // final = norm(hidden[L]): dHidden ← norm′(dFinal) (through dResidual as scratch)
        P.finalNorm.backward(b, dx: dResidual, dy: dHidden, a.hidden[c.layers].slice(0, BT * C), mean: a.finalMean.slice(0, BT),
                             rstd: a.finalRstd.slice(0, BT), rows: BT, channels: C)
        b.copy(dHidden, dResidual)
        let pass = self.pass(a, training: a.trainingSeed != nil, seed: a.trainingSeed ?? 0)
        for layer in P.layers.reversed() {
            layer.backward(b, a, x: a.hidden[layer.index].slice(0, BT * C), dHidden: dHidden, pass, seed: a.trainingSeed)
            layerGradientsReady?(layer.trainedGradients)
        }
        guard P.embeddingsTrain else { return }
        guard let segments = a.embeddingSegments else { preconditionFailure("backward needs a batch loaded for training") }
        if let seed = a.trainingSeed, c.embeddingDropout > 0 {   // through the embeddings' dropout: its mask
            b.dropout(dHidden, dHidden, count: BT * C, p: c.embeddingDropout, seed: Self.embeddingDropoutSeed(seed))
        }
        b.embeddingBackward(dWord: P.embedTokens.grad, dPosition: P.positionEmbeddings?.grad, dType: nil, dOut: dHidden,
                            ids: a.ids.slice(0, BT), positions: a.positions.slice(0, BT), types: nil, segments: segments,
                            a.embedding.tokens(BT))
    }
}
