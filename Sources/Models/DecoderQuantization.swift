// Weight-only int8 for a decoder at load (`retort generate --int8`): each Linear's weight (q, k,
// v, o, gate, up, down; GPT-2's c_attn blocks, c_proj, c_fc), the language-model head or the
// classifier's score head quantized per output channel, and the token embeddings per row (tied:
// they are the LM head; untied or in a classifier they are looked up, not multiplied, so they
// only take their dequantized values), as `retort quantize` does for encoders (BertQuantization.swift), but the
// activations stay fp32: a decoder's hidden states carry outlier channels, and per-row int8 of
// them wrecked SmolLM2's greedy text where weight-only int8 keeps it. Up to the backend's
// weightOnlyInt8Rows (CPU 256: decoding and prompts, CUDA 16: decoding) the int8 kernels read the
// int8 weights — 4× fewer bytes a token; more rows multiply the dequantized fp32 weights, which
// replace the originals, so a backend without int8 kernels runs the same weights in fp32.
// Inference only, without adapters.
// `retort quantize` stores the same int8 form (saveQuantized): model.safetensors keeps
// transformers' names and layouts, each quantized weight as I8 (GPT-2's Conv1D ones [in, out] as
// transformers stores them) beside "<name>_scale" (F32, one per output channel); config.json says
// "retort_quantization": "int8-weight-only". Loading it uploads the dequantized weights and hands
// the stored int8 values and scales to quantizeInt8(stored:): the model `--int8` makes at load.
import Backend
import Foundation

extension DecoderModel {
    public static let int8Method = "int8-weight-only"

    /// Parameters stored as int8: every quantized Linear's weight and the token embeddings (with
    /// tied embeddings those are the LM head's weight).
    public var int8ParameterNames: Set<String> { Set(quantizableLinears.map(\.weight.name) + [parameters!.embedTokens.name]) }
    /// The key of a Linear's int8 or packed weight: its name and where its rows start (GPT-2's c_attn is three Linears).
    static func linearKey(_ linear: Linear) -> String { "\(linear.weight.name)@\(linear.weight.weight.offset)" }

    /// Every Linear of the model and the LM head, as the passes see them.
    var quantizableLinears: [Linear] {
        let P = parameters!
        var list: [Linear] = []
        for layer in P.layers { list += [layer.query, layer.key, layer.value, layer.output, layer.up, layer.down] + (layer.gate.map { [$0] } ?? []) }
        return list + (labels > 0 ? [P.score!] : [P.head])
    }

    /// Quantizes every Linear and the head to int8 (per output channel, symmetric) for inference,
    /// and gives the token embeddings their per-row int8 values (dequantized: a lookup needs no kernel).
    /// `stored`: int8 values [out, in] and scales read from a quantized file, by parameter name (the
    /// weights already hold their dequantized values). Returns the int8 path, or nil where the
    /// backend has none (then only the weights' values change).
    @discardableResult
    public func quantizeInt8(stored: [String: StoredInt8] = [:]) throws -> String? {
        precondition(!trains && lora == nil, "quantizeInt8: inference models without adapters only")
        packedWeights = [:]   // they hold the float weights, which a prompt's rows would otherwise still read
        var made: [String: Int8Weight] = [:]
        for linear in quantizableLinears {
            let (N, K) = (linear.outFeatures, linear.inFeatures)
            let q: [Int8], scales: [Float]
            if let file = stored[linear.weight.name] {   // GPT-2's c_attn: this Linear's rows of the stored block
                let first = (linear.weight.weight.offset - layout.view(weights, linear.weight.name).offset) / K
                (q, scales) = (Array(file.values[(first * K)..<((first + N) * K)]), Array(file.scales[first..<(first + N)]))
            } else {
                (q, scales) = roundToInt8(linear.weight.weight, rows: N, columns: K)
            }
            made[Self.linearKey(linear)] = try backend.int8Weight(values: q, scales: scales, outFeatures: N, inFeatures: K, kind: .weightOnly)
        }
        // Token embeddings that are not the head: their dequantized values, for the lookup.
        let embeddings = parameters!.embedTokens
        if !quantizableLinears.contains(where: { $0.weight.name == embeddings.name }) && stored[embeddings.name] == nil {
            _ = roundToInt8(embeddings.weight, rows: config.vocabSize, columns: config.hiddenSize)
        }
        int8Weights = made.compactMapValues { $0 }
        return backend.int8Kernels
    }

    /// `weight` [rows, columns] quantized per row; its values replaced by the dequantized ones.
    private func roundToInt8(_ weight: Tensor, rows: Int, columns: Int) -> StoredInt8 {
        let (q, scales) = quantizeRowsInt8(backend.floats(weight), rows: rows, columns: columns)
        dequantizeRowsInt8(q, scales: scales, columns: columns).withUnsafeBytes { backend.upload(weight, $0) }
        return (q, scales)
    }

    /// Writes the int8 form of this model (adapters merged) to `folder`: config.json and model.safetensors.
    public func saveQuantized(folder: String) throws {
        try save(folder: folder, int8: int8ParameterNames)
    }

    /// A weight as a quantized file stores it: int8 values [out, in] and one scale per row.
    public typealias StoredInt8 = (values: [Int8], scales: [Float])

    /// A stored I8 weight `key` (and its "<key>_scale") for parameter `entry`, as [out, in];
    /// `conv`: stored [in, out] (GPT-2's Conv1D).
    func loadInt8(_ file: SafeTensorsFile, key: String, entry: ParameterLayout.Entry, conv: Bool) throws -> StoredInt8 {
        let (rows, columns) = (entry.shape[0], entry.count / max(entry.shape[0], 1))
        guard let scaleEntry = file.entries[key + "_scale"], scaleEntry.shape == [rows] else {
            throw CheckpointError("\(file.path): int8 tensor '\(key)' needs an F32 '\(key)_scale' of shape [\(rows)]")
        }
        let q = try file.int8s(key)
        return (conv ? transposed(q, rows: columns, columns: rows) : q, try file.floats(key + "_scale"))
    }
}
