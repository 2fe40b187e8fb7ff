// One post-LayerNorm encoder layer (BERT's BertLayer, MPNet's MPNetLayer):
//   q, k, v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ (+ LoRA)            [BT, C]
//   context = attention(q, k, v, mask, bias)           fused: softmax never stored
//   attended = LN1(x + dropout(context·Woᵀ + bo))
//   out = LN2(attended + dropout(gelu(attended·W1ᵀ + b1)·W2ᵀ + b2))
// and its backward, in reverse. Dropout masks come from (seed, site), so backward replays them.
import Backend

public struct EncoderLayer {
    public var query, key, value, attentionOutput: Linear
    public var attentionNorm: LayerNorm
    public var intermediate, output: Linear
    public var outputNorm: LayerNorm
    /// Where this layer sits (its dropout sites).
    public let index: Int

    /// Its parameters in layout order (not the adapters').
    public var parameters: [Parameter] {
        [query, key, value, attentionOutput].flatMap(\.parameters) + [attentionNorm.weight, attentionNorm.bias]
            + [intermediate, output].flatMap(\.parameters) + [outputNorm.weight, outputNorm.bias]
    }

    /// The gradients its backward writes: its trained parameters' and its adapters'.
    public var trainedGradients: [Tensor] {
        (parameters + [query, key, value, attentionOutput, intermediate, output].flatMap(\.adapterParameters)).compactMap(\.grad)
    }

    /// The layer's Linear for a LoRA target.
    public subscript(target: LoRATarget) -> Linear {
        get {
            switch target {
            case .query: return query
            case .key: return key
            case .value: return value
            case .attentionOutput: return attentionOutput
            case .intermediate: return intermediate
            case .output: return output
            default: preconditionFailure("\(target.rawValue) is a decoder's LoRA target")
            }
        }
        set {
            switch target {
            case .query: query = newValue
            case .key: key = newValue
            case .value: value = newValue
            case .attentionOutput: attentionOutput = newValue
            case .intermediate: intermediate = newValue
            case .output: output = newValue
            default: preconditionFailure("\(target.rawValue) is a decoder's LoRA target")
            }
        }
    }

    /// Dropout sites of the two residual branches.
    private var attentionSite: UInt64 { UInt64(10 + 2 * index) }
    private var ffnSite: UInt64 { UInt64(11 + 2 * index) }

    /// hidden[l + 1] = layer(hidden[l]) for the batch in `a`. `p`: hidden dropout (0 outside training).
    func forward(_ b: Backend, _ a: BertActivations, x: Tensor, out: Tensor, attention: AttentionShape, positionBias: Tensor?,
                 p: Float, training: Bool, seed: UInt64) {
        let (BT, C, FF) = (a.batch * a.length, query.outFeatures, intermediate.outFeatures)
        let L = a.layers[index]
        func linear(_ layer: Linear, _ y: Tensor, _ input: Tensor) {
            layer.forward(b, y, input, rows: BT, saved: a.loraInput(layer.lora, rows: BT, backend: b), training: training, seed: seed)
        }
        linear(query, L.q.slice(0, BT * C), x)
        linear(key, L.k.slice(0, BT * C), x)
        linear(value, L.v.slice(0, BT * C), x)
        b.attentionForward(L.context.slice(0, BT * C), lse: L.lse.slice(0, attention.rows), scores: nil,
                           q: L.q.slice(0, BT * C), k: L.k.slice(0, BT * C), v: L.v.slice(0, BT * C),
                           mask: a.mask.slice(0, BT), bias: positionBias, attention)
        // residual: res1 = x + dropout(context·Woᵀ + bo)
        let residual1 = L.residual1.slice(0, BT * C)
        linear(attentionOutput, residual1, L.context.slice(0, BT * C))
        if p > 0 { b.dropout(residual1, residual1, count: BT * C, p: p, seed: seed &+ attentionSite) }
        b.axpy(residual1, x, count: BT * C, alpha: 1)
        attentionNorm.forward(b, L.attended.slice(0, BT * C), mean: L.mean1.slice(0, BT), rstd: L.rstd1.slice(0, BT), residual1,
                              rows: BT, channels: C)
        linear(intermediate, L.preGelu.slice(0, BT * FF), L.attended.slice(0, BT * C))
        b.geluForward(L.gelu.slice(0, BT * FF), L.preGelu.slice(0, BT * FF), count: BT * FF)
        let residual2 = L.residual2.slice(0, BT * C)
        linear(output, residual2, L.gelu.slice(0, BT * FF))
        if p > 0 { b.dropout(residual2, residual2, count: BT * C, p: p, seed: seed &+ ffnSite) }
        b.axpy(residual2, L.attended.slice(0, BT * C), count: BT * C, alpha: 1)
        outputNorm.forward(b, out, mean: L.mean2.slice(0, BT), rstd: L.rstd2.slice(0, BT), residual2, rows: BT, channels: C)
    }

    /// On entry dHidden holds the gradient of this layer's output; on return, that of its input x.
    /// `seed`: the training forward's (nil: it ran without dropout). dPositionBias accumulates.
    func backward(_ b: Backend, _ a: BertActivations, x: Tensor, dHidden: Tensor, dScores: ScoreGradient?, attention: AttentionShape,
                  positionBias: Tensor?, dPositionBias: Tensor?, p: Float, seed: UInt64?) {
        let (BT, C, FF) = (a.batch * a.length, query.outFeatures, intermediate.outFeatures)
        let L = a.layers[index], training = seed != nil
        let dResidual = a.dResidual.slice(0, BT * C), dAttended = a.dAttended.slice(0, BT * C)
        let dContext = a.dContext.slice(0, BT * C), dFF = a.dFF.slice(0, BT * FF)
        let dq = a.dq.slice(0, BT * C), dk = a.dk.slice(0, BT * C), dv = a.dv.slice(0, BT * C)
        func dropped(_ grad: Tensor, _ site: UInt64) -> Tensor {   // the dropout's backward, or grad itself
            guard let seed, p > 0 else { return grad }
            b.dropout(a.dDropped.slice(0, grad.count), grad, count: grad.count, p: p, seed: seed &+ site)
            return a.dDropped.slice(0, grad.count)
        }
        func linearBackward(_ layer: Linear, dY: Tensor, x: Tensor, dX: Tensor, beta: Float = 0) {
            layer.backward(b, dX: dX, dY: dY, x: x, rows: BT, beta: beta, saved: a.loraInput(layer.lora, rows: BT, backend: b),
                           training: training, seed: seed ?? 0)
        }
        // out = LN2(residual2), residual2 = attended + dropout(gelu·W2ᵀ + b2)
        outputNorm.backward(b, dx: dResidual, dy: dHidden, L.residual2.slice(0, BT * C), mean: L.mean2.slice(0, BT),
                            rstd: L.rstd2.slice(0, BT), rows: BT, channels: C)
        if a.recomputeGelu { b.geluForward(L.gelu.slice(0, BT * FF), L.preGelu.slice(0, BT * FF), count: BT * FF) }
        linearBackward(output, dY: dropped(dResidual, ffnSite), x: L.gelu.slice(0, BT * FF), dX: dFF)
        b.geluBackward(dx: dFF, dOut: dFF, L.preGelu.slice(0, BT * FF), count: BT * FF)
        b.copy(dAttended, dResidual)
        linearBackward(intermediate, dY: dFF, x: L.attended.slice(0, BT * C), dX: dAttended, beta: 1)
        // attended = LN1(residual1), residual1 = x + dropout(context·Woᵀ + bo)
        attentionNorm.backward(b, dx: dResidual, dy: dAttended, L.residual1.slice(0, BT * C), mean: L.mean1.slice(0, BT),
                               rstd: L.rstd1.slice(0, BT), rows: BT, channels: C)
        linearBackward(attentionOutput, dY: dropped(dResidual, attentionSite), x: L.context.slice(0, BT * C), dX: dContext)
        b.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dPositionBias, dOut: dContext, dScores: dScores, out: L.context.slice(0, BT * C),
                            lse: L.lse.slice(0, attention.rows), q: L.q.slice(0, BT * C), k: L.k.slice(0, BT * C),
                            v: L.v.slice(0, BT * C), mask: a.mask.slice(0, BT), bias: positionBias, attention)
        // dx = dResidual (the residual path) + dq·Wq + dk·Wk + dv·Wv
        b.copy(dHidden, dResidual)
        linearBackward(query, dY: dq, x: x, dX: dHidden, beta: 1)
        linearBackward(key, dY: dk, x: x, dX: dHidden, beta: 1)
        linearBackward(value, dY: dv, x: x, dX: dHidden, beta: 1)
    }
}
