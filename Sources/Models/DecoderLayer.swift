// One pre-norm decoder layer, GPT-2's GPT2Block and Llama's LlamaDecoderLayer:
//   h = norm1(x)                                        LayerNorm (GPT-2) / RMSNorm (Llama)
//   q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ (+ biases, + LoRA)    [BT, NH·HS], [BT, NKV·HS] ×2
//   q, k = rope(q), rope(k)                              Llama only, at each token's position
//   residual = x + drop(attention(q, k, v, causal)·Woᵀ)  grouped-query heads, nothing copied
//   h2 = norm2(residual)
//   out = residual + drop(mlp(h2))  GPT-2: gelu_tanh(h2·W1ᵀ + b1)·W2ᵀ + b2   Llama: (silu(h2·Wgᵀ) ⊙ h2·Wuᵀ)·Wdᵀ
// and its backward, in reverse. In training, drop is GPT-2's resid_pdrop dropout and the
// attention drops probabilities (attn_pdrop / attention_dropout), each site its own mask. GPT-2's fused c_attn is three Linears over row blocks of one
// weight (and of its adapter's B), so both families share this code.
import Backend

public struct DecoderLayer {
    public var inputNorm: Norm                 // ln_1 / input_layernorm
    public var query, key, value, output: Linear
    public var postAttentionNorm: Norm         // ln_2 / post_attention_layernorm
    /// Llama's gate_proj (nil for GPT-2), up_proj / c_fc, down_proj / mlp.c_proj.
    public var gate: Linear?
    public var up, down: Linear
    public let index: Int

    /// Its parameters (not the adapters').
    public var parameters: [Parameter] {
        inputNorm.parameters + [query, key, value, output].flatMap(\.parameters) + postAttentionNorm.parameters
            + ([gate].compactMap { $0 } + [up, down]).flatMap(\.parameters)
    }

    /// The gradients its backward writes: its trained parameters' and its adapters'.
    public var trainedGradients: [Tensor] {
        (parameters + ([query, key, value, output, up, down] + [gate].compactMap { $0 }).flatMap(\.adapterParameters)).compactMap(\.grad)
    }

    /// The pass's sizes and inputs that every layer shares.
    struct Pass {
        let batch, length: Int
        let attention: AttentionShape
        let positions: Tensor          // [BT] int32 (RoPE)
        let inverseFrequencies: Tensor? // [HS/2]: RoPE (Llama); nil: none (GPT-2)
        let mask: Tensor?              // [B,T] int32 key mask
        let residualDropout: Float     // 0 outside training
        let seed: UInt64               // the training forward's
        var rows: Int { batch * length }

        /// Layer l's attention shape (its dropout mask's seed) and the seed of its residual site
        /// 0 (attention output) or 1 (MLP output).
        func attention(layer l: Int) -> AttentionShape {
            var s = attention
            s.seed = seed &* 0x2545_F491 &+ UInt64(500 + l)
            return s
        }
        func residualSeed(layer l: Int, site: Int) -> UInt64 { seed &* 0x9E37_79B9 &+ UInt64(2 * l + site + 1) }
    }

    func forward(_ b: Backend, _ a: DecoderActivations, x: Tensor, out: Tensor, _ p: Pass, training: Bool, seed: UInt64,
                 cache: KVCache? = nil) {
        let (BT, C, FF) = (p.rows, up.inFeatures, up.outFeatures), (QC, KC) = (query.outFeatures, key.outFeatures)
        let L = a.layers[index]
        func linear(_ layer: Linear, _ y: Tensor, _ input: Tensor) {
            layer.forward(b, y, input, rows: BT, saved: a.loraInput(layer.lora, rows: BT, backend: b), training: training, seed: seed)
        }
        let h1 = L.norm1.slice(0, BT * C), q = L.q.slice(0, BT * QC), k = L.k.slice(0, BT * KC), v = L.v.slice(0, BT * KC)
        inputNorm.forward(b, h1, mean: L.mean1.slice(0, BT), rstd: L.rstd1.slice(0, BT), x, rows: BT, channels: C)
        linear(query, q, h1)
        linear(key, k, h1)
        linear(value, v, h1)
        if let inv = p.inverseFrequencies {
            let HS = p.attention.headSize
            b.rope(q, q, positions: p.positions, inverseFrequencies: inv, RoPEShape(tokens: BT, heads: p.attention.heads, headSize: HS))
            b.rope(k, k, positions: p.positions, inverseFrequencies: inv,
                   RoPEShape(tokens: BT, heads: p.attention.keyValueHeads, headSize: HS))
        }
        if let cache {   // a prefill: each sequence's rows, positions 0…T−1, into its slot
            let T = p.length
            for s in 0..<p.batch {
                let slot = (cache.prefillSlot + s) * cache.capacity * KC
                b.copy(cache.keys[index].slice(slot, T * KC), k.slice(s * T * KC, T * KC))
                b.copy(cache.values[index].slice(slot, T * KC), v.slice(s * T * KC, T * KC))
            }
        }
        let context = L.context.slice(0, BT * QC)
        b.attentionForward(context, lse: L.lse.slice(0, p.attention.rows), scores: nil, q: q, k: k, v: v, mask: p.mask, bias: nil,
                           p.attention(layer: index))
        let residual = L.residual.slice(0, BT * C), drop = p.residualDropout
        linear(output, residual, context)
        if drop > 0 { b.dropout(residual, residual, count: BT * C, p: drop, seed: p.residualSeed(layer: index, site: 0)) }
        b.axpy(residual, x, count: BT * C, alpha: 1)
        let h2 = L.norm2.slice(0, BT * C)
        postAttentionNorm.forward(b, h2, mean: L.mean2.slice(0, BT), rstd: L.rstd2.slice(0, BT), residual, rows: BT, channels: C)
        let hidden = L.up.slice(0, BT * FF), activated = a.activated.slice(0, BT * FF)
        linear(up, hidden, h2)
        if let gate {
            linear(gate, L.gate.slice(0, BT * FF), h2)
            b.swigluForward(activated, gate: L.gate.slice(0, BT * FF), up: hidden, count: BT * FF)
        } else {
            b.geluForward(activated, hidden, count: BT * FF, tanh: true)
        }
        linear(down, out, activated)
        if drop > 0 { b.dropout(out, out, count: BT * C, p: drop, seed: p.residualSeed(layer: index, site: 1)) }
        b.axpy(out, residual, count: BT * C, alpha: 1)
    }

    /// On entry dHidden holds the gradient of this layer's output; on return, that of its input x.
    /// `seed`: the training forward's (its LoRA dropout masks), nil after an evaluation forward.
    func backward(_ b: Backend, _ a: DecoderActivations, x: Tensor, dHidden: Tensor, _ p: Pass, seed: UInt64?) {
        let (BT, C, FF) = (p.rows, up.inFeatures, up.outFeatures), (QC, KC) = (query.outFeatures, key.outFeatures)
        let L = a.layers[index]
        let dResidual = a.dResidual.slice(0, BT * C), dNorm = a.dNorm.slice(0, BT * C), dContext = a.dContext.slice(0, BT * QC)
        let dq = a.dq.slice(0, BT * QC), dk = a.dk.slice(0, BT * KC), dv = a.dv.slice(0, BT * KC)
        let dActivated = a.dActivated.slice(0, BT * FF), dUp = a.dUp.slice(0, BT * FF)
        let activated = a.activated.slice(0, BT * FF), hidden = L.up.slice(0, BT * FF)
        let h1 = L.norm1.slice(0, BT * C), h2 = L.norm2.slice(0, BT * C), residual = L.residual.slice(0, BT * C)
        func linearBackward(_ layer: Linear, dY: Tensor, x: Tensor, dX: Tensor, beta: Float = 0) {
            layer.backward(b, dX: dX, dY: dY, x: x, rows: BT, beta: beta, saved: a.loraInput(layer.lora, rows: BT, backend: b),
                           training: seed != nil, seed: seed ?? 0)
        }
        // Through a residual site's dropout: its mask on the gradient, into dNorm (free until a norm's backward writes it).
        let drop = p.residualDropout
        func dropped(_ grad: Tensor, site: Int) -> Tensor {
            guard drop > 0 else { return grad }
            b.dropout(dNorm, grad, count: BT * C, p: drop, seed: p.residualSeed(layer: index, site: site))
            return dNorm
        }
        // out = residual + drop(down(act)): the MLP, recomputing its activation (one buffer for all layers)
        if gate != nil {
            b.swigluForward(activated, gate: L.gate.slice(0, BT * FF), up: hidden, count: BT * FF)
        } else {
            b.geluForward(activated, hidden, count: BT * FF, tanh: true)
        }
        linearBackward(down, dY: dropped(dHidden, site: 1), x: activated, dX: dActivated)
        if let gate {
            let dGate = a.dGate.slice(0, BT * FF)
            b.swigluBackward(dGate: dGate, dUp: dUp, dOut: dActivated, gate: L.gate.slice(0, BT * FF), up: hidden, count: BT * FF)
            linearBackward(up, dY: dUp, x: h2, dX: dNorm)
            linearBackward(gate, dY: dGate, x: h2, dX: dNorm, beta: 1)
        } else {
            b.geluBackward(dx: dUp, dOut: dActivated, hidden, count: BT * FF, tanh: true)
            linearBackward(up, dY: dUp, x: h2, dX: dNorm)
        }
        // residual = x + attention·Woᵀ: dResidual = dHidden + norm2′(dNorm)
        postAttentionNorm.backward(b, dx: dResidual, dy: dNorm, residual, mean: L.mean2.slice(0, BT), rstd: L.rstd2.slice(0, BT),
                                   rows: BT, channels: C)
        b.axpy(dResidual, dHidden, count: BT * C, alpha: 1)
        linearBackward(output, dY: dropped(dResidual, site: 0), x: L.context.slice(0, BT * QC), dX: dContext)
        b.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: dContext, dScores: nil, out: L.context.slice(0, BT * QC),
                            lse: L.lse.slice(0, p.attention.rows), q: L.q.slice(0, BT * QC), k: L.k.slice(0, BT * KC),
                            v: L.v.slice(0, BT * KC), mask: p.mask, bias: nil, p.attention(layer: index))
        if let inv = p.inverseFrequencies {   // the rotation's transpose takes the gradients back to before it
            let HS = p.attention.headSize
            b.rope(dq, dq, positions: p.positions, inverseFrequencies: inv, RoPEShape(tokens: BT, heads: p.attention.heads, headSize: HS),
                   backward: true)
            b.rope(dk, dk, positions: p.positions, inverseFrequencies: inv,
                   RoPEShape(tokens: BT, heads: p.attention.keyValueHeads, headSize: HS), backward: true)
        }
        linearBackward(query, dY: dq, x: h1, dX: dNorm)
        linearBackward(key, dY: dk, x: h1, dX: dNorm, beta: 1)
        linearBackward(value, dY: dv, x: h1, dX: dNorm, beta: 1)
        // x feeds norm1 and the residual: dx = norm1′(dNorm) + dResidual
        inputNorm.backward(b, dx: dHidden, dy: dNorm, x, mean: L.mean1.slice(0, BT), rstd: L.rstd1.slice(0, BT), rows: BT, channels: C)
        b.axpy(dHidden, dResidual, count: BT * C, alpha: 1)
    }
}
