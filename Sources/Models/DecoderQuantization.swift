// Weight-only int8 for a decoder at load (`retort generate --int8`): each Linear's weight (q, k,
// v, o, gate, up, down; GPT-2's c_attn blocks, c_proj, c_fc) and the language-model head quantized
// per output channel as `retort quantize` does for encoders (BertQuantization.swift), but the
// activations stay fp32: a decoder's hidden states carry outlier channels, and per-row int8 of
// them wrecked SmolLM2's greedy text where weight-only int8 keeps it. Decoding (a few rows) reads
// the int8 weights — 4× fewer bytes a token; a long prompt multiplies the dequantized fp32
// weights, which replace the originals, so a backend without int8 kernels runs the same weights
// in fp32. Inference only, without adapters.
import Backend
import Foundation

extension DecoderModel {
    /// The key of a Linear's int8 weight: its name and where its rows start (GPT-2's c_attn is three Linears).
    static func int8Key(_ linear: Linear) -> String { "\(linear.weight.name)@\(linear.weight.weight.offset)" }

    /// Every Linear of the model and the LM head, as the passes see them.
    var quantizableLinears: [Linear] {
        let P = parameters!
        var list: [Linear] = []
        for layer in P.layers { list += [layer.query, layer.key, layer.value, layer.output, layer.up, layer.down] + (layer.gate.map { [$0] } ?? []) }
        return list + (labels > 0 ? [P.score!] : [P.head])
    }

    /// Quantizes every Linear and the head to int8 (per output channel, symmetric) for inference.
    /// With tied embeddings the token embeddings are the head, so they take the dequantized values too.
    /// Returns the int8 path, or nil where the backend has none (then only the weights' values change).
    @discardableResult
    public func quantizeInt8() throws -> String? {
        precondition(!trains && lora == nil, "quantizeInt8: inference models without adapters only")
        var made: [String: Int8Weight] = [:]
        for linear in quantizableLinears {
            let (N, K) = (linear.outFeatures, linear.inFeatures)
            let (q, scales) = quantizeRowsInt8(backend.floats(linear.weight.weight), rows: N, columns: K)
            dequantizeRowsInt8(q, scales: scales, columns: K).withUnsafeBytes { backend.upload(linear.weight.weight, $0) }
            made[Self.int8Key(linear)] = try backend.int8Weight(values: q, scales: scales, outFeatures: N, inFeatures: K, kind: .weightOnly)
        }
        int8Weights = made.compactMapValues { $0 }
        return backend.int8Kernels
    }
}
