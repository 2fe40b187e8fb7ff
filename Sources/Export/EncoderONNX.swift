// A BERT-family classifier (BertModel: BERT or MPNet) as an ONNX graph, opset 17, computing what
// BertModel.forward computes:
//   inputs      input_ids, attention_mask, token_type_ids (BERT only)  int64 [batch, sequence]
//   output      logits                                                 float [batch, labels]
//   embeddings  LN(word[ids] + position[p] (+ type[types]))   p = 0…T−1 (BERT); MPNet:
//               cumsum(mask)·mask + padding_idx, as HF numbers them
//   bias        (1 − mask)·lowest as [B,1,1,T], plus MPNet's relative bias [1,NH,T,T]: the
//               table [buckets, NH] looked up by the bucket of (key − query position)
//   layer × N   q, k, v = x·W + b as [B,NH,T,HS]; ctx = softmax(q·kᵀ/√HS + bias)·v as [B,T,C]
//               a = LN(x + ctx·Wo + bo);  out = LN(a + gelu(a·W1 + b1)·W2 + b2)  (gelu: erf form)
//   head        logits = tanh(out[:, 0]·Wp + bp)·Wc + bc
// Linear weights are stored transposed, [in, out], for MatMul, under their HF names. With int8,
// every Linear's weight and the word embeddings are int8 with one fp32 scale per output channel
// (per row), as `retort quantize` stores them ("<name>_scale"; a Linear's as q + 128 in uint8 with
// zero point 128), and each Linear quantizes its
// input per row as Retort's int8 kernels do (symmetric, q = round-half-even(x·127/max|x|)) before
// MatMulInteger; the int32 product is scaled back by row scale × channel scale, then the bias added.
import Backend
import Foundation
import Models

public enum EncoderONNX {
    public static let opset = 17

    /// The ONNX model of `model` (adapters merged), serialized; `int8`: quantized as above.
    /// `labelNames` go into the model's metadata ("id2label", a JSON object as in config.json).
    public static func serialized(_ model: BertModel, labelNames: [String], int8: Bool, producerVersion: String) throws -> Data {
        var builder = try EncoderGraph(model, int8: int8)
        builder.build()
        let labels = Dictionary(uniqueKeysWithValues: labelNames.enumerated().map { (String($0), $1) })
        let id2label = String(decoding: try JSONSerialization.data(withJSONObject: labels, options: [.sortedKeys]), as: UTF8.self)
        let proto = builder.graph.model(opset: opset, producer: "retort", version: producerVersion,
                                        metadata: [("id2label", id2label), ("model_type", model.config.family.rawValue),
                                                   ("precision", int8 ? BertModel.int8Method : "fp32")])
        return try proto.serializedData()
    }
}

struct EncoderGraph {
    var graph = ONNXGraph(name: "retort_classifier")
    let model: BertModel
    let int8: Bool
    private let merged: Tensor
    /// The uint8 zero point (128) of every quantized activation and Linear weight, once made.
    private var zeroPoint: String?

    init(_ model: BertModel, int8: Bool) throws {
        self.model = model
        self.int8 = int8
        merged = try model.mergedWeights()
    }

    /// The values of a parameter, adapters merged.
    private func values(_ p: Parameter) -> [Float] { model.backend.floats(model.layout.view(merged, p.name)) }
    private func name(_ p: Parameter) -> String { model.checkpointName(p.name) }

    mutating func build() {
        let P = model.parameters!, B = ONNXDimension.named("batch"), T = ONNXDimension.named("sequence")
        graph.input("input_ids", .int64, [B, T])
        graph.input("attention_mask", .int64, [B, T])
        if P.tokenTypeEmbeddings != nil { graph.input("token_type_ids", .int64, [B, T]) }

        var x = embeddings(P)
        let bias = attentionBias(P)
        for layer in P.layers { x = encoderLayer(layer, x: x, bias: bias) }

        let cls = graph.op("Gather", x, graph.int64s([0], shape: []), name: "cls", attributes: [("axis", .int(1))])     // [B, C]
        let pooled = graph.op("Tanh", linear(cls, P.pooler), name: "pooled")
        let logits = linear(pooled, P.classifier, output: "logits")
        graph.output(logits, .float, [B, .fixed(model.labels)])
    }

    /// LN(word[ids] + position[p] (+ type[types])) as [B, T, C].
    private mutating func embeddings(_ P: BertParameters) -> String {
        let c = model.config
        var word: String
        if int8 {
            let (q, scales) = quantizeRowsInt8(values(P.wordEmbeddings), rows: c.vocabSize, columns: c.hiddenSize)
            let table = graph.int8s(name(P.wordEmbeddings), q, shape: [c.vocabSize, c.hiddenSize])
            let scale = graph.floats(name(P.wordEmbeddings) + "_scale", scales, shape: [c.vocabSize])
            let rows = graph.op("Cast", graph.op("Gather", table, "input_ids"), attributes: [("to", .int(Int(ONNXElement.float.rawValue)))])
            word = graph.op("Mul", rows, graph.op("Unsqueeze", graph.op("Gather", scale, "input_ids"), graph.int64s([-1])), name: "word")
        } else {
            word = graph.op("Gather", graph.floats(name(P.wordEmbeddings), values(P.wordEmbeddings), shape: [c.vocabSize, c.hiddenSize]),
                            "input_ids", name: "word")
        }
        let positionTable = graph.floats(name(P.positionEmbeddings), values(P.positionEmbeddings), shape: [c.maxPositions, c.hiddenSize])
        let positions: String
        if c.family == .mpnet {
            let counted = graph.op("CumSum", "attention_mask", graph.int64s([1], shape: []))
            positions = graph.op("Add", graph.op("Mul", counted, "attention_mask"), graph.int64s([Int64(c.padTokenId)], shape: []),
                                 name: "position_ids")
        } else {
            positions = graph.op("Range", graph.int64s([0], shape: []), sequenceLength(), graph.int64s([1], shape: []), name: "position_ids")
        }
        word = graph.op("Add", word, graph.op("Gather", positionTable, positions))
        if let types = P.tokenTypeEmbeddings {
            let table = graph.floats(name(types), values(types), shape: [c.typeVocabSize, c.hiddenSize])
            word = graph.op("Add", word, graph.op("Gather", table, "token_type_ids"))
        }
        return layerNorm(word, P.embeddingNorm, name: "embeddings")
    }

    /// T, a scalar.
    private mutating func sequenceLength() -> String {
        graph.op("Gather", graph.op("Shape", "input_ids"), graph.int64s([1], shape: []), name: "sequence_length", attributes: [("axis", .int(0))])
    }

    /// What every layer adds to its scores: (1 − mask)·lowest [B,1,1,T], plus MPNet's relative bias.
    private mutating func attentionBias(_ P: BertParameters) -> String {
        let mask = graph.op("Cast", "attention_mask", attributes: [("to", .int(Int(ONNXElement.float.rawValue)))])
        let masked = graph.op("Mul", graph.op("Sub", graph.scalar(1), mask), graph.scalar(-Float.greatestFiniteMagnitude))
        let maskBias = graph.op("Unsqueeze", masked, graph.int64s([1, 2]), name: "mask_bias")
        guard let table = P.relativeAttentionBias else { return maskBias }
        // bucket[j − i + maxT − 1] for every query i and key j, then the table's row: [T, T, NH] → [1, NH, T, T].
        let c = model.config, maxT = c.maxPositions
        let buckets = (-(maxT - 1)...(maxT - 1)).map { Int64(RelativePosition.bucket($0, buckets: c.relativeBuckets)) }
        let bucketOfDistance = graph.initializer("relative_position_bucket", buckets, shape: [buckets.count], .int64)
        let t = graph.op("Range", graph.int64s([0], shape: []), sequenceLength(), graph.int64s([1], shape: []))
        let distance = graph.op("Sub", graph.op("Unsqueeze", t, graph.int64s([0])), graph.op("Unsqueeze", t, graph.int64s([1])))
        let bucket = graph.op("Gather", bucketOfDistance, graph.op("Add", distance, graph.int64s([Int64(maxT - 1)], shape: [])))
        let relative = graph.op("Gather", graph.floats(name(table), values(table), shape: [c.relativeBuckets, c.heads]), bucket)
        let perHead = graph.op("Unsqueeze", graph.op("Transpose", relative, attributes: [("perm", .ints([2, 0, 1]))]), graph.int64s([0]),
                               name: "relative_bias")
        return graph.op("Add", maskBias, perHead, name: "attention_bias")
    }

    private mutating func encoderLayer(_ layer: EncoderLayer, x: String, bias: String) -> String {
        let c = model.config, l = layer.index
        let heads = graph.int64s([0, 0, Int64(c.heads), Int64(c.headSize)])
        func split(_ g: inout EncoderGraph, _ linear: Linear, _ perm: [Int], _ hint: String) -> String {
            let y = g.linear(x, linear)
            return g.graph.op("Transpose", g.graph.op("Reshape", y, heads), name: "layer\(l)_\(hint)", attributes: [("perm", .ints(perm))])
        }
        let q = split(&self, layer.query, [0, 2, 1, 3], "q")      // [B, NH, T, HS]
        let k = split(&self, layer.key, [0, 2, 3, 1], "k")        // [B, NH, HS, T]
        let v = split(&self, layer.value, [0, 2, 1, 3], "v")      // [B, NH, T, HS]
        let scores = graph.op("Mul", graph.op("MatMul", q, k), graph.scalar(1 / Float(c.headSize).squareRoot()))
        let probabilities = graph.op("Softmax", graph.op("Add", scores, bias), name: "layer\(l)_attention", attributes: [("axis", .int(-1))])
        let context = graph.op("Reshape", graph.op("Transpose", graph.op("MatMul", probabilities, v), attributes: [("perm", .ints([0, 2, 1, 3]))]),
                               graph.int64s([0, 0, Int64(c.hiddenSize)]), name: "layer\(l)_context")
        let attended = layerNorm(graph.op("Add", linear(context, layer.attentionOutput), x), layer.attentionNorm, name: "layer\(l)_attended")
        let preGelu = linear(attended, layer.intermediate)
        let cdf = graph.op("Add", graph.op("Erf", graph.op("Mul", preGelu, graph.scalar(Float(0.5).squareRoot()))), graph.scalar(1))
        let gelu = graph.op("Mul", graph.op("Mul", preGelu, cdf), graph.scalar(0.5), name: "layer\(l)_gelu")
        return layerNorm(graph.op("Add", linear(gelu, layer.output), attended), layer.outputNorm, name: "layer\(l)_output")
    }

    private mutating func layerNorm(_ x: String, _ norm: LayerNorm, name hint: String) -> String {
        let C = model.config.hiddenSize
        return graph.op("LayerNormalization", x, graph.floats(name(norm.weight), values(norm.weight), shape: [C]),
                        graph.floats(name(norm.bias), values(norm.bias), shape: [C]), name: hint,
                        attributes: [("axis", .int(-1)), ("epsilon", .float(norm.eps))])
    }

    /// x·W + b over the last axis; with int8, x quantized per row and MatMulInteger.
    private mutating func linear(_ x: String, _ layer: Linear, output: String? = nil) -> String {
        let (N, K) = (layer.outFeatures, layer.inFeatures), weight = values(layer.weight), weightName = name(layer.weight)
        let product: String
        if int8 {
            let (q, scales) = quantizeRowsInt8(weight, rows: N, columns: K)
            // Weights held as q + 128 (uint8, zero point 128) too: ONNX Runtime's u8·s8 kernels on
            // AVX2 without VNNI add pairs of products in int16 and saturate (255·127·2 > 32767),
            // its u8·u8 path does not — the same integers either way.
            let w = graph.initializer(weightName, transposed(q, rows: N, columns: K).map { UInt8(Int($0) + 128) }, shape: [K, N], .uint8)
            let channelScale = graph.floats(weightName + "_scale", scales, shape: [N])
            let amax = graph.op("ReduceMax", graph.op("Abs", x), attributes: [("axes", .ints([-1])), ("keepdims", .int(1))])
            let rowScale = graph.op("Div", amax, graph.scalar(127))
            let inverse = graph.op("Where", graph.op("Greater", amax, graph.scalar(0)), graph.op("Div", graph.scalar(127), amax),
                                   graph.scalar(0))   // 0 for a zero row, as the CPU's inv
            let rounded = graph.op("Clip", graph.op("Round", graph.op("Mul", x, inverse)), graph.scalar(-127), graph.scalar(127))
            // Held as q + 128 (uint8) with zero point 128: the same integers.
            let shifted = graph.op("Cast", graph.op("Add", rounded, graph.scalar(128)), attributes: [("to", .int(Int(ONNXElement.uint8.rawValue)))])
            if zeroPoint == nil { zeroPoint = graph.initializer("activation_zero_point", [UInt8(128)], shape: [], .uint8) }
            let sums = graph.op("Cast", graph.node("MatMulInteger", [shifted, w, zeroPoint!, zeroPoint!])[0],
                                attributes: [("to", .int(Int(ONNXElement.float.rawValue)))])
            product = graph.op("Mul", graph.op("Mul", sums, rowScale), channelScale)
        } else {
            product = graph.op("MatMul", x, graph.floats(weightName, transposed(weight, rows: N, columns: K), shape: [K, N]))
        }
        guard let bias = layer.bias else { return product }
        return graph.op("Add", product, graph.floats(name(bias), values(bias), shape: [N]), name: output)
    }
}

/// The [columns, rows] transpose of a row-major [rows, columns] matrix.
func transposed<T>(_ m: [T], rows: Int, columns: Int) -> [T] {
    precondition(m.count == rows * columns && !m.isEmpty)
    var out = m
    for r in 0..<rows { for c in 0..<columns { out[c * rows + r] = m[r * columns + c] } }
    return out
}
