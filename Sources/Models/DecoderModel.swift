// A decoder-only transformer, GPT-2 or Llama family, for causal language modelling or (with
// `labels`) sequence classification on the last real token, as HF's GPT2LMHeadModel /
// LlamaForCausalLM and *ForSequenceClassification:
//   x = wte[ids] (+ wpe[positions], GPT-2)
//   x = layer(x) for each DecoderLayer (pre-norm attention and MLP, DecoderLayer.swift)
//   h = final norm(x)                                   ln_f / model.norm
//   logits = h·Eᵀ (tied) or h·lm_headᵀ — never for the whole batch at once in training
//            (DecoderBackward.swift: chunks of rows)
//   classification: score(h[last real token of each sequence]), no bias
// Parameter names are transformers' (GPT-2's Conv1D weights are stored here as [out, in] like
// every Linear and transposed at load and save: DecoderCheckpoint.swift).
import Backend
import Foundation

public final class DecoderModel {
    public private(set) var config: DecoderConfig
    /// Label names a classifier saves (config.json id2label).
    public var id2label: [Int: String] {
        get { config.id2label }
        set { config.id2label = newValue }
    }
    /// The pad token written to config.json (HF's classifiers find each sequence's last token by it).
    public var padTokenId: Int? {
        get { config.padTokenId }
        set { config.padTokenId = newValue }
    }
    /// Classes of the score head; 0: a language model.
    public let labels: Int
    public let backend: Backend
    public let layout: ParameterLayout
    public let weights: Tensor
    public private(set) var grads: Tensor
    public private(set) var gradientLayout: ParameterLayout
    public let trains: Bool
    /// Called by backward after each layer with that layer's gradients, then final for the pass
    /// (a data-parallel run starts summing them over the ranks while backward goes on).
    public var layerGradientsReady: (([Tensor]) -> Void)?
    public private(set) var frozen: Set<String> = []
    /// LoRA adapters (DecoderLoRA.swift); when attached the base weights are frozen.
    public internal(set) var lora: LoRAAdapters? { didSet { parameters = makeParameters() } }
    /// RoPE's inverse frequencies [HS/2] on the device (Llama family).
    let inverseFrequencies: Tensor?
    public private(set) var parameters: DecoderParameters!
    /// int8 weights by DecoderModel.linearKey after quantizeInt8 (DecoderQuantization.swift).
    public internal(set) var int8Weights: [String: Int8Weight] = [:] { didSet { parameters = makeParameters() } }
    /// Weights packed for inference by DecoderModel.linearKey (packForInference, DecoderPacking.swift).
    public internal(set) var packedWeights: [String: PackedWeight] = [:] { didSet { parameters = makeParameters() } }

    public init(config: DecoderConfig, labels: Int = 0, backend: Backend, inference: Bool = false) throws {
        self.config = config
        self.labels = labels
        self.backend = backend
        layout = Self.layout(config, labels: labels)
        (weights, grads) = try layout.allocate(on: backend, inference: inference)
        trains = !inference
        gradientLayout = layout
        inverseFrequencies = config.family == .llama ? try backend.tensor(config.inverseFrequencies, .f32) : nil
        parameters = makeParameters()
    }

    /// From now on exactly `names` do not train (their gradients are not computed or stored).
    public func freeze(_ names: Set<String>) throws {
        let gradients = layout.excluding(names)
        if trains { grads = try backend.zeros(gradients.total) }
        gradientLayout = gradients
        frozen = names
        parameters = makeParameters()
    }

    /// The names of the parameters, by family (transformers' names).
    struct Names {
        let c: DecoderConfig
        var embedTokens: String { c.family == .gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight" }
        var positionEmbeddings: String { "transformer.wpe.weight" }
        var finalNorm: String { c.family == .gpt2 ? "transformer.ln_f" : "model.norm" }
        func layer(_ l: Int) -> String { c.family == .gpt2 ? "transformer.h.\(l)." : "model.layers.\(l)." }
        func inputNorm(_ l: Int) -> String { layer(l) + (c.family == .gpt2 ? "ln_1" : "input_layernorm") }
        func postAttentionNorm(_ l: Int) -> String { layer(l) + (c.family == .gpt2 ? "ln_2" : "post_attention_layernorm") }
        /// GPT-2: the fused c_attn ([3C, C] here); Llama: q_proj (k_proj, v_proj beside it).
        func attention(_ l: Int, _ part: String) -> String { layer(l) + "self_attn.\(part)_proj" }
        func gpt2(_ l: Int, _ module: String) -> String { layer(l) + module }
        func mlp(_ l: Int, _ part: String) -> String { layer(l) + "mlp.\(part)_proj" }
    }
    var names: Names { Names(c: config) }

    static func layout(_ c: DecoderConfig, labels: Int) -> ParameterLayout {
        var p = ParameterLayout()
        let n = Names(c: c), (C, FF, QC, KC) = (c.hiddenSize, c.intermediateSize, c.queryChannels, c.keyValueChannels)
        p.add(n.embedTokens, [c.vocabSize, C])
        if c.family == .gpt2 { p.add(n.positionEmbeddings, [c.maxPositions, C]) }
        func norm(_ name: String) {
            p.add(name + ".weight", [C])
            if c.family == .gpt2 { p.add(name + ".bias", [C]) }
        }
        func linear(_ name: String, out: Int, in inFeatures: Int, bias: Bool) {
            p.add(name + ".weight", [out, inFeatures])
            if bias { p.add(name + ".bias", [out]) }
        }
        for l in 0..<c.layers {
            norm(n.inputNorm(l))
            switch c.family {
            case .gpt2:
                linear(n.gpt2(l, "attn.c_attn"), out: 3 * C, in: C, bias: true)
                linear(n.gpt2(l, "attn.c_proj"), out: C, in: C, bias: true)
                norm(n.postAttentionNorm(l))
                linear(n.gpt2(l, "mlp.c_fc"), out: FF, in: C, bias: true)
                linear(n.gpt2(l, "mlp.c_proj"), out: C, in: FF, bias: true)
            case .llama:
                linear(n.attention(l, "q"), out: QC, in: C, bias: c.queryKeyValueBias)
                linear(n.attention(l, "k"), out: KC, in: C, bias: c.queryKeyValueBias)
                linear(n.attention(l, "v"), out: KC, in: C, bias: c.queryKeyValueBias)
                linear(n.attention(l, "o"), out: C, in: QC, bias: c.outputBias)
                norm(n.postAttentionNorm(l))
                linear(n.mlp(l, "gate"), out: FF, in: C, bias: c.mlpBias)
                linear(n.mlp(l, "up"), out: FF, in: C, bias: c.mlpBias)
                linear(n.mlp(l, "down"), out: C, in: FF, bias: c.mlpBias)
            }
        }
        norm(n.finalNorm)
        if labels > 0 { p.add("score.weight", [labels, C]) } else if !c.tieWordEmbeddings { p.add("lm_head.weight", [c.vocabSize, C]) }
        return p
    }

    public func w(_ name: String) -> Tensor { layout.view(weights, name) }
    public func g(_ name: String) -> Tensor { gradientLayout.view(grads, name) }
    /// The head's weight name: lm_head, or the token embeddings when tied.
    public var lmHeadName: String { layout.entry("lm_head.weight") != nil ? "lm_head.weight" : names.embedTokens }

    /// What the optimiser updates: the adapters (when attached), then every parameter that trains, in layout order.
    public var trainable: [TrainableTensor] {
        (lora?.trainable ?? []) + layout.entries.compactMap { e in
            gradientLayout.entry(e.name).map {
                TrainableTensor(name: e.name, weight: weights.slice(e.offset, e.count), grad: grads.slice($0.offset, $0.count), decays: e.decays)
            }
        }
    }

    /// Zeroes the gradients of everything that trains.
    public func zeroGradients() {
        backend.fill(grads, 0)
        if let lora { backend.fill(lora.grads, 0) }
    }

    // MARK: forward

    /// The final hidden states [B·T, C] (after the last norm) of the batch in `a`. With
    /// `training`, the dropout masks (the config's embedding, residual and attention dropout, and
    /// LoRA's) come from `seed`.
    /// `cache`: each layer's keys and values are copied into it (a prompt's prefill).
    @discardableResult
    public func forward(_ a: DecoderActivations, training: Bool = false, seed: UInt64 = 0, cache: KVCache? = nil) -> Tensor {
        let c = config, b = backend, P = parameters!
        let (BT, C) = (a.batch * a.length, c.hiddenSize)
        b.embeddingForward(a.hidden[0].slice(0, BT * C), ids: a.ids.slice(0, BT), positions: a.positions.slice(0, BT), types: nil,
                           word: P.embedTokens.weight, position: P.positionEmbeddings?.weight ?? P.embedTokens.weight.slice(0, 0),
                           type: nil, a.embedding.tokens(BT))
        if training && c.embeddingDropout > 0 {
            b.dropout(a.hidden[0].slice(0, BT * C), a.hidden[0].slice(0, BT * C), count: BT * C, p: c.embeddingDropout,
                      seed: Self.embeddingDropoutSeed(seed))
        }
        let pass = self.pass(a, training: training, seed: seed)
        for layer in P.layers {
            layer.forward(b, a, x: a.hidden[layer.index].slice(0, BT * C), out: a.hidden[layer.index + 1].slice(0, BT * C), pass,
                          training: training, seed: seed, cache: cache)
        }
        P.finalNorm.forward(b, a.final.slice(0, BT * C), mean: a.finalMean.slice(0, BT), rstd: a.finalRstd.slice(0, BT),
                            a.hidden[c.layers].slice(0, BT * C), rows: BT, channels: C)
        a.trainingSeed = training ? seed : nil
        return a.final.slice(0, BT * C)
    }

    func pass(_ a: DecoderActivations, training: Bool, seed: UInt64) -> DecoderLayer.Pass {
        let c = config
        return DecoderLayer.Pass(batch: a.batch, length: a.length,
                                 attention: AttentionShape(batch: a.batch, length: a.length, heads: c.heads, headSize: c.headSize,
                                                           keyValueHeads: c.keyValueHeads, causal: true,
                                                           dropout: training ? c.attentionDropout : 0),
                                 positions: a.positions.slice(0, a.batch * a.length), inverseFrequencies: inverseFrequencies,
                                 mask: a.mask.slice(0, a.batch * a.length), residualDropout: training ? c.residualDropout : 0, seed: seed)
    }

    static func embeddingDropoutSeed(_ seed: UInt64) -> UInt64 { seed &* 0x9E37_79B9 }

    /// The language-model head's weight [V, C]: lm_head, or the token embeddings when tied.
    var headWeight: Parameter { parameters.head.weight }

    /// Logits [B, V] (language model) or [B, labels] (classifier) at each sequence's last real
    /// token, from the last forward.
    @discardableResult
    public func lastTokenLogits(_ a: DecoderActivations) -> Tensor {
        let (B, T, C) = (a.batch, a.length, config.hiddenSize), b = backend
        let pooled = a.pooled.slice(0, B * C)
        for (i, t) in a.lastTokens.enumerated() { b.copy(pooled.slice(i * C, C), a.final.slice((i * T + t) * C, C)) }
        if labels > 0 {
            let logits = a.logits.slice(0, B * labels)
            parameters.score!.forward(b, logits, pooled, rows: B)
            return logits
        }
        let V = config.vocabSize, logits = a.headLogits.slice(0, B * V)
        precondition(B <= a.headRows, "lastTokenLogits: more sequences than the head's rows")
        parameters.head.forward(b, logits, pooled, rows: B)
        return logits
    }
}

/// Typed views of a decoder's parameters (remade when adapters or frozen-ness change).
public struct DecoderParameters {
    public var embedTokens: Parameter
    public var positionEmbeddings: Parameter?   // GPT-2
    public var layers: [DecoderLayer]
    public var finalNorm: Norm
    public var lmHead: Parameter?               // untied heads
    /// The LM head as a Linear [V, C]: lm_head, or the tied token embeddings (with its int8 weight, if any).
    public var head: Linear
    public var score: Linear?                   // classification

    /// Whether backward goes on into the embeddings.
    public var embeddingsTrain: Bool { embedTokens.trains || positionEmbeddings?.trains == true }
}

extension DecoderModel {
    func makeParameters() -> DecoderParameters {
        let c = config, n = names, (C, FF, QC, KC) = (c.hiddenSize, c.intermediateSize, c.queryChannels, c.keyValueChannels)
        let eps = Float(c.normEps)
        func parameter(_ name: String) -> Parameter {
            layout.parameter(name, weights: weights, grads: grads, gradients: trains ? gradientLayout : nil)
        }
        func optional(_ name: String) -> Parameter? { layout.entry(name) == nil ? nil : parameter(name) }
        func linear(_ name: String, in inFeatures: Int, out: Int) -> Linear {
            Linear(weight: parameter(name + ".weight"), bias: optional(name + ".bias"), inFeatures: inFeatures, outFeatures: out,
                   lora: lora?.merged == false ? lora?.branch(name) : nil)
        }
        func norm(_ name: String) -> Norm {
            c.family == .gpt2 ? .layer(LayerNorm(weight: parameter(name + ".weight"), bias: parameter(name + ".bias"), eps: eps))
                : .rms(RMSNorm(weight: parameter(name + ".weight"), eps: eps))
        }
        func prepared(_ linear: Linear) -> Linear {   // its int8 or packed weight, if any
            var l = linear
            l.int8 = int8Weights[Self.linearKey(linear)]
            l.packed = packedWeights[Self.linearKey(linear)]
            return l
        }
        let layers = (0..<c.layers).map { l -> DecoderLayer in
            switch c.family {
            case .gpt2:
                let fused = linear(n.gpt2(l, "attn.c_attn"), in: C, out: 3 * C)
                return DecoderLayer(inputNorm: norm(n.inputNorm(l)), query: fused.rows(0, C), key: fused.rows(C, C),
                                    value: fused.rows(2 * C, C), output: linear(n.gpt2(l, "attn.c_proj"), in: C, out: C),
                                    postAttentionNorm: norm(n.postAttentionNorm(l)), gate: nil,
                                    up: linear(n.gpt2(l, "mlp.c_fc"), in: C, out: FF), down: linear(n.gpt2(l, "mlp.c_proj"), in: FF, out: C),
                                    index: l)
            case .llama:
                return DecoderLayer(inputNorm: norm(n.inputNorm(l)), query: linear(n.attention(l, "q"), in: C, out: QC),
                                    key: linear(n.attention(l, "k"), in: C, out: KC), value: linear(n.attention(l, "v"), in: C, out: KC),
                                    output: linear(n.attention(l, "o"), in: QC, out: C), postAttentionNorm: norm(n.postAttentionNorm(l)),
                                    gate: linear(n.mlp(l, "gate"), in: C, out: FF), up: linear(n.mlp(l, "up"), in: C, out: FF),
                                    down: linear(n.mlp(l, "down"), in: FF, out: C), index: l)
            }
        }.map { layer -> DecoderLayer in
            guard !int8Weights.isEmpty || !packedWeights.isEmpty else { return layer }
            var l = layer
            (l.query, l.key, l.value, l.output, l.up, l.down) = (prepared(l.query), prepared(l.key), prepared(l.value), prepared(l.output),
                                                                 prepared(l.up), prepared(l.down))
            l.gate = l.gate.map(prepared)
            return l
        }
        let lmHead = optional("lm_head.weight"), embedTokens = parameter(n.embedTokens)
        return DecoderParameters(embedTokens: embedTokens, positionEmbeddings: optional(n.positionEmbeddings),
                                 layers: layers, finalNorm: norm(n.finalNorm), lmHead: lmHead,
                                 head: prepared(Linear(weight: lmHead ?? embedTokens, bias: nil, inFeatures: C, outFeatures: c.vocabSize)),
                                 score: labels > 0 ? prepared(Linear(weight: parameter("score.weight"), bias: nil, inFeatures: C, outFeatures: labels)) : nil)
    }
}

extension Parameter {
    /// Elements [offset, offset + count) of the weight and of the gradient (a row block).
    func slice(_ offset: Int, _ count: Int) -> Parameter {
        Parameter(name: name, weight: weight.slice(offset, count), grad: grad?.slice(offset, count), decays: decays)
    }
}

extension Linear {
    /// Output rows [first, first + count) as a Linear of their own: the same input, a row block of
    /// the weight, bias and adapter B (GPT-2's c_attn as its q, k and v).
    func rows(_ first: Int, _ count: Int) -> Linear {
        var part = Linear(weight: weight.slice(first * inFeatures, count * inFeatures), bias: bias?.slice(first, count),
                          inFeatures: inFeatures, outFeatures: count)
        if let lora {
            part.lora = LoRABranch(a: lora.a, b: lora.b.slice(first * lora.rank, count * lora.rank), rank: lora.rank, scale: lora.scale,
                                   dropout: lora.dropout, site: lora.site, slot: lora.slot)
        }
        return part
    }
}
