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
    /// The gradients of the parameters that train, in layout order (`gradientLayout`): frozen
    /// parameters have no storage, so under LoRA this is the classifier's alone.
    public private(set) var grads: Tensor
    public private(set) var gradientLayout: ParameterLayout
    /// Made for training (a gradient buffer and backward), not for inference only.
    public let trains: Bool
    /// Called by backward after each layer with that layer's gradients, then final for the pass
    /// (a data-parallel run starts summing them over the ranks while backward goes on).
    public var layerGradientsReady: (([Tensor]) -> Void)?
    /// LoRA adapters; when attached the base weights are frozen (their gradients are not computed).
    public internal(set) var lora: LoRAAdapters? { didSet { parameters = makeParameters() } }
    /// Base parameters that do not train (with LoRA: all but the classifier); set by `freeze`.
    public private(set) var frozen: Set<String> = []
    /// Typed views of every parameter, its gradient, its frozen-ness and the adapters: what
    /// forward and backward read (no name lookups there). Rebuilt when adapters or frozen-ness change.
    public internal(set) var parameters: BertParameters!
    /// A quantized model's int8 linear weights by weight name, where the backend has int8
    /// kernels (BertQuantization.swift); the Linears of `parameters` carry them.
    public internal(set) var int8Weights: [String: Int8Weight] = [:] { didSet { parameters = makeParameters() } }

    /// `inference`: no gradient buffer (a teacher, evaluation); backward is then impossible.
    public init(config: BertConfig, labels: Int, backend: Backend, inference: Bool = false) throws {
        self.config = config
        self.labels = labels
        self.backend = backend
        layout = Self.layout(config, labels: labels)
        (weights, grads) = try layout.allocate(on: backend, inference: inference)
        trains = !inference
        gradientLayout = layout
        parameters = makeParameters()
    }

    /// From now on exactly `names` do not train: the gradient buffer is remade (zeroed) for the
    /// others, and the typed views with it.
    func freeze(_ names: Set<String>) throws {
        let gradients = layout.excluding(names)
        if trains { grads = try backend.zeros(gradients.total) }
        gradientLayout = gradients
        frozen = names
        parameters = makeParameters()
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

    /// The weights of parameter `name` (checkpoint IO, tests; the passes use `parameters`).
    public func w(_ name: String) -> Tensor { layout.view(weights, name) }
    /// The gradient of parameter `name` (one that trains).
    public func g(_ name: String) -> Tensor { gradientLayout.view(grads, name) }

    // MARK: forward

    /// Logits [B, labels] for the batch in `a` (see BertActivations.load). With `training`,
    /// hidden dropout (embeddings, attention output, FFN output, pooler) uses `seed`.
    @discardableResult
    public func forward(_ a: BertActivations, training: Bool = false, seed: UInt64 = 0) -> Tensor {
        let c = config, b = backend, P = parameters!
        let (B, T, C) = (a.batch, a.length, c.hiddenSize), BT = B * T
        let p: Float = training ? Float(c.hiddenDropout) : 0
        b.embeddingForward(a.embedded.slice(0, BT * C), ids: a.ids.slice(0, BT), positions: a.positions.slice(0, BT),
                           types: a.types.slice(0, BT), word: P.wordEmbeddings.weight, position: P.positionEmbeddings.weight,
                           type: P.tokenTypeEmbeddings?.weight, c.embeddingShape(tokens: BT))
        let positionBias = relativePositionBias(a)
        P.embeddingNorm.forward(b, a.hidden[0].slice(0, BT * C), mean: a.embMean.slice(0, BT), rstd: a.embRstd.slice(0, BT),
                                a.embedded.slice(0, BT * C), rows: BT, channels: C)
        if p > 0 { b.dropout(a.hidden[0].slice(0, BT * C), a.hidden[0].slice(0, BT * C), count: BT * C, p: p, seed: seed &+ 1) }
        for (l, layer) in P.layers.enumerated() {
            layer.forward(b, a, x: a.hidden[l].slice(0, BT * C), out: a.hidden[l + 1].slice(0, BT * C),
                          attention: attentionShape(a, layer: l, training: training, seed: seed), positionBias: positionBias,
                          p: p, training: training, seed: seed)
        }
        // Pooler on each sequence's [CLS] row (row stride T·C), then the classifier.
        P.pooler.forward(b, a.poolerPre.slice(0, B * C), a.hidden[c.layers], rows: B, inputStride: T * C)
        b.tanhForward(a.pooled.slice(0, B * C), a.poolerPre.slice(0, B * C), count: B * C)
        if p > 0 { b.dropout(a.pooledDropped.slice(0, B * C), a.pooled.slice(0, B * C), count: B * C, p: p, seed: seed &+ 3) }
        else { b.copy(a.pooledDropped.slice(0, B * C), a.pooled.slice(0, B * C)) }
        P.classifier.forward(b, a.logits.slice(0, B * labels), a.pooledDropped.slice(0, B * C), rows: B)
        a.trainingSeed = training ? seed : nil
        return a.logits.slice(0, B * labels)
    }

    /// Layer l's attention: probability dropout (attention_probs_dropout_prob) in training.
    public func attentionShape(_ a: BertActivations, layer l: Int, training: Bool, seed: UInt64) -> AttentionShape {
        AttentionShape(batch: a.batch, length: a.length, heads: config.heads, headSize: config.headSize,
                       dropout: training ? Float(config.attentionDropout) : 0, seed: seed &* 0x2545_F491 &+ UInt64(500 + l))
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

