// The BERT-family encoder for sequence classification (post-LayerNorm): embeddings → N ×
// (self-attention + FFN) → pooler (tanh on [CLS]) → classifier, with a hand-written backward.
// MPNet is the same network without token types, with positions counted from padding_idx + 1
// and one relative position bias (T5 buckets) shared by all layers, added to the attention
// scores through the fused attention's bias input; its classification head (dense, tanh,
// out_proj) is the pooler and classifier here. Parameter names are BERT's (without "bert.");
// MPNetNames.swift maps them to HF's MPNet names for loading and saving.
import Backend
import Foundation

public final class BertModel {
    public let config: BertConfig
    public let labels: Int
    public let backend: Backend
    public let layout: ParameterLayout
    public let weights: Tensor
    public let grads: Tensor
    /// LoRA adapters; when attached the base weights are frozen (their gradients are not computed).
    public internal(set) var lora: LoRAAdapters?

    /// `inference`: no gradient buffer (a teacher, evaluation); backward is then impossible.
    public init(config: BertConfig, labels: Int, backend: Backend, inference: Bool = false) throws {
        self.config = config
        self.labels = labels
        self.backend = backend
        layout = Self.layout(config, labels: labels)
        weights = try backend.zeros(layout.total)
        grads = try backend.zeros(inference ? 0 : layout.total)
    }

    static func layout(_ c: BertConfig, labels: Int) -> ParameterLayout {
        var p = ParameterLayout()
        let C = c.hiddenSize, FF = c.intermediateSize
        p.add("embeddings.word_embeddings.weight", [c.vocabSize, C])
        p.add("embeddings.position_embeddings.weight", [c.maxPositions, C])
        if c.typeVocabSize > 0 { p.add("embeddings.token_type_embeddings.weight", [c.typeVocabSize, C]) }
        p.add("embeddings.LayerNorm.weight", [C])
        p.add("embeddings.LayerNorm.bias", [C])
        for l in 0..<c.layers {
            let prefix = "encoder.layer.\(l)."
            for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                p.add(prefix + name + ".weight", [C, C])
                p.add(prefix + name + ".bias", [C])
            }
            p.add(prefix + "attention.output.LayerNorm.weight", [C])
            p.add(prefix + "attention.output.LayerNorm.bias", [C])
            p.add(prefix + "intermediate.dense.weight", [FF, C])
            p.add(prefix + "intermediate.dense.bias", [FF])
            p.add(prefix + "output.dense.weight", [C, FF])
            p.add(prefix + "output.dense.bias", [C])
            p.add(prefix + "output.LayerNorm.weight", [C])
            p.add(prefix + "output.LayerNorm.bias", [C])
        }
        if c.relativeBuckets > 0 { p.add("encoder.relative_attention_bias.weight", [c.relativeBuckets, c.heads]) }
        p.add("pooler.dense.weight", [C, C])
        p.add("pooler.dense.bias", [C])
        p.add("classifier.weight", [labels, C])
        p.add("classifier.bias", [labels])
        return p
    }

    public func w(_ name: String) -> Tensor { layout.view(weights, name) }
    public func g(_ name: String) -> Tensor { layout.view(grads, name) }
    /// A parameter that only some families have (token types, the relative position bias).
    func optionalWeight(_ name: String) -> Tensor? { layout.entry(name) == nil ? nil : w(name) }
    func optionalGrad(_ name: String) -> Tensor? { layout.entry(name) == nil ? nil : g(name) }

    // MARK: forward

    /// Logits [B, labels] for the batch in `a` (see BertActivations.load). With `training`,
    /// hidden dropout (embeddings, attention output, FFN output) uses `seed`.
    @discardableResult
    public func forward(_ a: BertActivations, training: Bool = false, seed: UInt64 = 0) -> Tensor {
        let c = config, b = backend
        let (B, T, C, FF) = (a.batch, a.length, c.hiddenSize, c.intermediateSize), BT = B * T
        let p: Float = training ? Float(c.hiddenDropout) : 0
        let shape = embeddingShape(tokens: BT)
        b.embeddingForward(a.embedded.slice(0, BT * C), ids: a.ids.slice(0, BT), positions: a.positions.slice(0, BT),
                           types: a.types.slice(0, BT), word: w("embeddings.word_embeddings.weight"),
                           position: w("embeddings.position_embeddings.weight"), type: optionalWeight("embeddings.token_type_embeddings.weight"), shape)
        let positionBias = relativePositionBias(a)
        b.layerNormForward(a.hidden[0].slice(0, BT * C), mean: a.embMean.slice(0, BT), rstd: a.embRstd.slice(0, BT),
                           a.embedded.slice(0, BT * C), weight: w("embeddings.LayerNorm.weight"), bias: w("embeddings.LayerNorm.bias"),
                           rows: BT, channels: C, eps: Float(c.layerNormEps))
        if p > 0 { b.dropout(a.hidden[0].slice(0, BT * C), a.hidden[0].slice(0, BT * C), count: BT * C, p: p, seed: seed &+ 1) }
        for l in 0..<c.layers {
            let L = a.layers[l], x = a.hidden[l].slice(0, BT * C), prefix = "encoder.layer.\(l)."
            let attention = attentionShape(a, layer: l, training: training, seed: seed)
            func linear(_ out: Tensor, _ input: Tensor, _ name: String, n: Int, k: Int, beta: Float = 0) {
                b.matmul(out, input, w(prefix + name + ".weight"), bias: w(prefix + name + ".bias"),
                         Gemm(m: BT, n: n, k: k, transB: true, beta: beta))
                if let (lora, t) = adapter(name) {
                    b.loraForward(out, xa: a.loraInput(l, t, rows: BT, rank: lora.config.rank, backend: b), input,
                                  a: lora.a(l, t), b: lora.b(l, t), loraShape(lora, t, layer: l, rows: BT, training: training, seed: seed))
                }
            }
            linear(L.q.slice(0, BT * C), x, "attention.self.query", n: C, k: C)
            linear(L.k.slice(0, BT * C), x, "attention.self.key", n: C, k: C)
            linear(L.v.slice(0, BT * C), x, "attention.self.value", n: C, k: C)
            b.attentionForward(L.context.slice(0, BT * C), lse: L.lse.slice(0, attention.rows), scores: nil,
                               q: L.q.slice(0, BT * C), k: L.k.slice(0, BT * C), v: L.v.slice(0, BT * C),
                               mask: a.mask.slice(0, BT), bias: positionBias, attention)
            // residual: res1 = x + dropout(context·Woᵀ + bo)
            linear(L.residual1.slice(0, BT * C), L.context.slice(0, BT * C), "attention.output.dense", n: C, k: C)
            if p > 0 { b.dropout(L.residual1.slice(0, BT * C), L.residual1.slice(0, BT * C), count: BT * C, p: p, seed: seed &+ UInt64(10 + 2 * l)) }
            b.axpy(L.residual1.slice(0, BT * C), x, count: BT * C, alpha: 1)
            b.layerNormForward(L.attended.slice(0, BT * C), mean: L.mean1.slice(0, BT), rstd: L.rstd1.slice(0, BT),
                               L.residual1.slice(0, BT * C), weight: w(prefix + "attention.output.LayerNorm.weight"),
                               bias: w(prefix + "attention.output.LayerNorm.bias"), rows: BT, channels: C, eps: Float(c.layerNormEps))
            linear(L.preGelu.slice(0, BT * FF), L.attended.slice(0, BT * C), "intermediate.dense", n: FF, k: C)
            b.geluForward(L.gelu.slice(0, BT * FF), L.preGelu.slice(0, BT * FF), count: BT * FF)
            linear(L.residual2.slice(0, BT * C), L.gelu.slice(0, BT * FF), "output.dense", n: C, k: FF)
            if p > 0 { b.dropout(L.residual2.slice(0, BT * C), L.residual2.slice(0, BT * C), count: BT * C, p: p, seed: seed &+ UInt64(11 + 2 * l)) }
            b.axpy(L.residual2.slice(0, BT * C), L.attended.slice(0, BT * C), count: BT * C, alpha: 1)
            b.layerNormForward(a.hidden[l + 1].slice(0, BT * C), mean: L.mean2.slice(0, BT), rstd: L.rstd2.slice(0, BT),
                               L.residual2.slice(0, BT * C), weight: w(prefix + "output.LayerNorm.weight"),
                               bias: w(prefix + "output.LayerNorm.bias"), rows: BT, channels: C, eps: Float(c.layerNormEps))
        }
        // Pooler on each sequence's [CLS] row (row stride T·C), then the classifier.
        b.matmul(a.poolerPre.slice(0, B * C), a.hidden[c.layers], w("pooler.dense.weight"), bias: w("pooler.dense.bias"),
                 Gemm(m: B, n: C, k: C, transB: true, lda: T * C))
        b.tanhForward(a.pooled.slice(0, B * C), a.poolerPre.slice(0, B * C), count: B * C)
        if p > 0 { b.dropout(a.pooledDropped.slice(0, B * C), a.pooled.slice(0, B * C), count: B * C, p: p, seed: seed &+ 3) }
        else { b.copy(a.pooledDropped.slice(0, B * C), a.pooled.slice(0, B * C)) }
        b.matmul(a.logits.slice(0, B * labels), a.pooledDropped.slice(0, B * C), w("classifier.weight"), bias: w("classifier.bias"),
                 Gemm(m: B, n: labels, k: C, transB: true))
        a.trainingSeed = training ? seed : nil
        return a.logits.slice(0, B * labels)
    }

    /// The embedding lookup of `tokens` tokens; the padding token's word row never trains (HF's padding_idx).
    func embeddingShape(tokens: Int) -> EmbeddingShape {
        EmbeddingShape(tokens: tokens, channels: config.hiddenSize, vocabulary: config.vocabSize, positions: config.maxPositions,
                       tokenTypes: config.typeVocabSize, wordPadding: config.padTokenId,
                       positionPadding: config.family == .mpnet ? config.padTokenId : -1)
    }

    /// Layer l's attention: probability dropout (attention_probs_dropout_prob) in training.
    public func attentionShape(_ a: BertActivations, layer l: Int, training: Bool, seed: UInt64) -> AttentionShape {
        AttentionShape(batch: a.batch, length: a.length, heads: config.heads, headSize: config.headSize,
                       dropout: training ? Float(config.attentionDropout) : 0, seed: seed &* 0x2545_F491 &+ UInt64(500 + l))
    }

    /// The adapter on module `name` ("attention.self.query", …) of every layer, if any.
    func adapter(_ name: String) -> (LoRAAdapters, LoRATarget)? {
        guard let lora, !lora.merged, let t = lora.config.targets.first(where: { $0.module == name }) else { return nil }
        return (lora, t)
    }

    /// Sizes, scale and dropout of one adapter's branch; the dropout seed depends on the site.
    func loraShape(_ lora: LoRAAdapters, _ t: LoRATarget, layer: Int, rows: Int, training: Bool, seed: UInt64) -> LoRAShape {
        let (inFeatures, outFeatures) = LoRAAdapters.features(t, config)
        let site = UInt64(1000 + layer * 8 + LoRATarget.allCases.firstIndex(of: t)!)
        return LoRAShape(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, rank: lora.config.rank, scale: lora.config.scale,
                         dropout: training ? Float(lora.config.dropout) : 0, seed: seed &* 0x9E37_79B9 &+ site)
    }

    /// The last hidden states [B,T,C] of the most recent forward.
    public func lastHidden(_ a: BertActivations) -> Tensor { hiddenState(a, config.layers) }
    /// Hidden state i [B,T,C] of the last forward: 0 the embeddings output, l + 1 layer l's output.
    public func hiddenState(_ a: BertActivations, _ i: Int) -> Tensor { a.hidden[i].slice(0, a.batch * a.length * config.hiddenSize) }
    /// Layer l's pre-softmax attention scores of the last forward as a distillation target: its
    /// queries, keys and position bias, from which the fused loss recomputes them tile by tile (an
    /// inference arena must keep that layer's q and k: keepQueryKey).
    public func scoreTarget(_ a: BertActivations, layer l: Int) -> ScoreTarget {
        let n = a.batch * a.length * config.hiddenSize
        precondition(!a.inference || a.keptQueryKey.contains(l), "layer \(l)'s queries and keys were not kept (BertActivations keepQueryKey)")
        return ScoreTarget(q: a.layers[l].q.slice(0, n), k: a.layers[l].k.slice(0, n),
                           bias: a.positionBias?.slice(0, config.heads * a.length * a.length), headSize: config.headSize)
    }
    /// Logits [B, labels] of the last forward, and the loaded labels [B].
    public func logits(_ a: BertActivations) -> Tensor { a.logits.slice(0, a.batch * labels) }
    public func labels(_ a: BertActivations) -> Tensor { a.labels.slice(0, a.batch) }
}

