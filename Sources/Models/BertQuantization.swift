// Dynamic int8 quantization of a BERT-family classifier (`retort quantize`): each Linear's weight
// (queries, keys, values, attention output, FFN in and out, pooler, classifier) as int8 with one
// fp32 scale per output channel, and the word embeddings as int8 with one scale per row — most of
// a small model's bytes. The rest (position and type embeddings, norms, biases, MPNet's relative
// bias) stays fp32. model.safetensors keeps HF's names: the int8 values under the weight's own
// name (I8) and their scales as "<name>_scale" (F32, one per row); config.json says
// "retort_quantization": "int8-dynamic". On load the values are dequantized into the fp32
// weights (what a backend without int8 kernels multiplies), and where the backend has int8
// kernels each Linear also gets its int8 weight: its input is then quantized per row at run time.
import Backend
import Foundation

extension BertModel {
    public static let int8Method = "int8-dynamic"

    /// Parameters stored as int8: the word embeddings and every Linear's weight.
    var int8ParameterNames: Set<String> {
        let P = parameters!
        var linears = [P.pooler, P.classifier]
        for layer in P.layers { linears += [layer.query, layer.key, layer.value, layer.attentionOutput, layer.intermediate, layer.output] }
        return Set(linears.map(\.weight.name) + [P.wordEmbeddings.name])
    }

    /// Writes the int8 form of this model (adapters merged) to `folder`: config.json and model.safetensors.
    public func saveQuantized(folder: String, id2label: [Int: String]? = nil) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var config = self.config
        config.quantization = Self.int8Method
        if let id2label { config.id2label = id2label }
        if config.id2label.isEmpty { config.id2label = Dictionary(uniqueKeysWithValues: (0..<labels).map { ($0, "LABEL_\($0)") }) }
        let all = backend.floats(try mergedWeights()), quantized = int8ParameterNames
        var floats: [SafeTensorsWriter.Tensor] = [], int8: [SafeTensorsWriter.Tensor] = []
        for e in layout.entries {
            let name = Self.fileName(e.name, prefix: filePrefix, family: config.family), values = Array(all[e.offset..<(e.offset + e.count)])
            guard quantized.contains(e.name) else {
                floats.append(SafeTensorsWriter.Tensor(name: name, shape: e.shape, values: values))
                continue
            }
            let (q, scales) = quantizeRowsInt8(values, rows: e.shape[0], columns: e.count / e.shape[0])
            floats.append(SafeTensorsWriter.Tensor(name: name + "_scale", shape: [e.shape[0]], values: scales))
            int8.append(SafeTensorsWriter.Tensor(name: name, shape: e.shape, int8: q))
        }
        // F32 tensors first, so each stays 4-byte aligned in the file.
        try SafeTensorsWriter.write(floats + int8, to: (folder as NSString).appendingPathComponent("model.safetensors"))
        try writeAtomically(try config.json(), to: (folder as NSString).appendingPathComponent("config.json"))
    }

    /// An I8 tensor `key` of `file` (with its "<key>_scale") for parameter `entry`: its values
    /// dequantized, and its int8 weight where the backend has int8 kernels and it is a Linear's.
    func loadInt8(_ file: SafeTensorsFile, key: String, entry: ParameterLayout.Entry, linear: Bool) throws -> (values: [Float], weight: Int8Weight?) {
        let name = (file.path as NSString).lastPathComponent, rows = entry.shape[0], columns = entry.count / max(rows, 1)
        guard let scaleEntry = file.entries[key + "_scale"], scaleEntry.shape == [rows] else {
            throw CheckpointError("\(name): int8 tensor '\(key)' needs an F32 '\(key)_scale' of shape [\(rows)]")
        }
        let q = try file.int8s(key), scales = try file.floats(key + "_scale")
        let values = dequantizeRowsInt8(q, scales: scales, columns: columns)
        let weight = linear ? try backend.int8Weight(values: q, scales: scales, outFeatures: rows, inFeatures: columns) : nil
        return (values, weight)
    }
}
