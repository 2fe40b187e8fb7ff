// Typed views of a BERT-family model's parameters (as llm.c's ParameterTensors): slices of the
// one weight buffer and the one gradient buffer, grouped by layer and block, each with its
// frozen-ness, and the LoRA branches on the Linears they adapt. Made once when the model is
// built, and again when adapters are attached, merged or unmerged.
import Backend

public struct BertParameters {
    public var wordEmbeddings, positionEmbeddings: Parameter
    public var tokenTypeEmbeddings: Parameter?            // BERT; MPNet has none
    public var embeddingNorm: LayerNorm
    public var layers: [EncoderLayer]
    public var relativeAttentionBias: Parameter?          // MPNet: [buckets, NH], shared by every layer
    public var pooler: Linear                             // dense + tanh on [CLS] (MPNet: classifier.dense)
    public var classifier: Linear                         // [labels, C] (MPNet: classifier.out_proj)

    /// Whether backward goes on into the embeddings (they are frozen under LoRA).
    public var embeddingsTrain: Bool {
        [wordEmbeddings, positionEmbeddings, embeddingNorm.weight, embeddingNorm.bias].contains { $0.trains }
            || tokenTypeEmbeddings?.trains == true
    }

    /// Every base parameter in layout order (the adapters are in LoRAAdapters).
    public var all: [Parameter] {
        var list = [wordEmbeddings, positionEmbeddings] + (tokenTypeEmbeddings.map { [$0] } ?? [])
            + [embeddingNorm.weight, embeddingNorm.bias]
        for layer in layers { list += layer.parameters }
        list += relativeAttentionBias.map { [$0] } ?? []
        return list + [pooler.weight, pooler.bias!, classifier.weight, classifier.bias!]
    }
}

extension BertModel {
    /// The typed views for the current adapters and frozen set.
    func makeParameters() -> BertParameters {
        let c = config, C = c.hiddenSize, FF = c.intermediateSize, eps = Float(c.layerNormEps)
        func parameter(_ name: String) -> Parameter {
            layout.parameter(name, weights: weights, grads: grads, gradients: trains ? gradientLayout : nil)
        }
        func linear(_ name: String, in inFeatures: Int, out outFeatures: Int) -> Linear {
            var layer = Linear(weight: parameter(name + ".weight"), bias: parameter(name + ".bias"), inFeatures: inFeatures, outFeatures: outFeatures)
            layer.int8 = int8Weights[name + ".weight"]
            return layer
        }
        func norm(_ name: String) -> LayerNorm { LayerNorm(weight: parameter(name + ".weight"), bias: parameter(name + ".bias"), eps: eps) }
        let layers = (0..<c.layers).map { l -> EncoderLayer in
            let prefix = "encoder.layer.\(l)."
            var layer = EncoderLayer(query: linear(prefix + "attention.self.query", in: C, out: C),
                                     key: linear(prefix + "attention.self.key", in: C, out: C),
                                     value: linear(prefix + "attention.self.value", in: C, out: C),
                                     attentionOutput: linear(prefix + "attention.output.dense", in: C, out: C),
                                     attentionNorm: norm(prefix + "attention.output.LayerNorm"),
                                     intermediate: linear(prefix + "intermediate.dense", in: C, out: FF),
                                     output: linear(prefix + "output.dense", in: FF, out: C),
                                     outputNorm: norm(prefix + "output.LayerNorm"), index: l)
            if let lora, !lora.merged {
                for t in lora.config.targets { layer[t].lora = lora.branch("encoder.layer.\(l).\(t.module)") }
            }
            return layer
        }
        let type = c.typeVocabSize > 0 ? parameter("embeddings.token_type_embeddings.weight") : nil
        let relative = c.relativeBuckets > 0 ? parameter(Self.relativeBiasName) : nil
        return BertParameters(wordEmbeddings: parameter("embeddings.word_embeddings.weight"),
                              positionEmbeddings: parameter("embeddings.position_embeddings.weight"), tokenTypeEmbeddings: type,
                              embeddingNorm: norm("embeddings.LayerNorm"), layers: layers, relativeAttentionBias: relative,
                              pooler: linear("pooler.dense", in: C, out: C), classifier: linear("classifier", in: C, out: labels))
    }
}
