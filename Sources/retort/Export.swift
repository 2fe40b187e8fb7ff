// retort export: a classifier folder as a file other runtimes load (ONNX for now).
import ArgumentParser
import Backend
import Export
import Foundation
import Models
import Train

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a fine-tuned, distilled or quantized classifier as an ONNX model (for ONNX Runtime, on a server or in an app).",
        discussion: """
            Examples:
              retort export --model runs/sst2 --out runs/sst2-onnx
              retort quantize --model runs/sst2 --out runs/sst2-int8
              retort export --model runs/sst2-int8 --out runs/sst2-onnx-int8

            The folder holds model.onnx (opset 17), config.json (the labels, id2label) and the \
            tokenizer files (vocab.txt …), which an app needs to make the inputs. Inputs: input_ids, \
            attention_mask and, for BERT, token_type_ids — int64 [batch, sequence], both axes dynamic; \
            output: logits, float [batch, labels]. It computes what `retort predict` computes: LoRA \
            adapters are merged in; a quantized folder (or --int8) gives int8 weights with one scale \
            per output channel and each layer's input quantized per row at run time (MatMulInteger), \
            as Retort's int8 kernels do. BERT and MPNet classifiers.
            """)

    @Option(name: .long, help: "Classifier folder (BERT or MPNet; fine-tuned, distilled or from retort quantize).") var model: String
    @Option(name: .long, help: "Output folder (new, or empty).") var out: String
    @Option(name: .long, help: "File format: onnx.", transform: { $0.lowercased() }) var format = "onnx"
    @Flag(name: .long, help: "Quantize a float model's weights to int8 in the exported file (a quantized folder is int8 anyway).") var int8 = false
    @OptionGroup var cpu: CPUThreadsOption

    func validate() throws {
        guard format == "onnx" else { throw ValidationError("--format \(format) is not supported; use onnx") }
    }

    func run() throws {
        try withFlags { try export() }
    }

    func export() throws {
        let (source, destination, config) = try classifierToNewFolder(model: model, out: out, command: "export")
        let start = Date()
        let classifier = try Classifier.load(folder: source, maxLength: min(128, config.maxTokens), backend: try cpu.backend(), inference: true)
        let quantized = int8 || config.quantization != nil
        let data = try EncoderONNX.serialized(classifier.model, labelNames: classifier.labelNames, int8: quantized,
                                              producerVersion: Retort.configuration.version)
        var saved = classifier.model.config
        saved.id2label = classifier.id2label
        try writeNewFolder(destination) { partial in
            try writeAtomically(data, to: (partial as NSString).appendingPathComponent("model.onnx"))
            try writeAtomically(try saved.json(), to: (partial as NSString).appendingPathComponent("config.json"))
            try copyTokenizerFiles(from: source, to: partial)
        }
        let inputs = config.typeVocabSize > 0 ? "input_ids, attention_mask, token_type_ids" : "input_ids, attention_mask"
        print(String(format: "%@: %@ %d layers, %.1f M parameters, %@, %.1f MB, opset %d; inputs %@ (int64 [batch, sequence]) → logits [batch, %d]; in %.1f s",
                     ((out as NSString).standardizingPath as NSString).appendingPathComponent("model.onnx"), config.family.rawValue, config.layers, Double(classifier.parameterCount) / 1e6, quantized ? "int8 weights" : "fp32",
                     Double(data.count) / 1e6, EncoderONNX.opset, inputs, classifier.labelNames.count, Date().timeIntervalSince(start)))
    }
}
