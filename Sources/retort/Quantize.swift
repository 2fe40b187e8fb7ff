// retort quantize: a BERT-family classifier's weights stored as int8 (dynamic quantization).
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Store a fine-tuned or distilled classifier with int8 weights (dynamic quantization).",
        discussion: """
            Example:
              retort quantize --model runs/sst2 --out runs/sst2-int8
              retort eval --model runs/sst2-int8 --data ../shared/data/sst2/test.tsv \\
                  --text-column 1 --label-column 0

            Every linear layer's weight becomes int8 with one fp32 scale per output channel, and the \
            word embeddings int8 with one scale per row (symmetric); norms, biases and the other \
            embeddings stay fp32. The layers then run on int8 kernels — on the CPU AVX-512 VNNI, AVX2 \
            or portable C, on CUDA dp4a — their inputs quantized per row at run time. The folder holds config.json ("retort_quantization"), \
            model.safetensors (I8 weights beside "<name>_scale" F32 tensors) and the tokenizer files; \
            eval, predict and compare load it like any model. BERT-family classifiers for now.
            """)

    @Option(name: .long, help: "Fine-tuned or distilled classifier folder (BERT family).") var model: String
    @Option(name: .long, help: "Output folder (must not exist yet).") var out: String

    func run() throws {
        try withFlags { try quantize() }
    }

    func quantize() throws {
        let (source, destination, config) = try classifierToNewFolder(model: model, out: out, command: "quantize")
        guard config.quantization == nil else { throw UserError(description: "--model \(model) is already quantized (\(config.quantization!))") }
        let backend = try CPUBackend()
        let start = Date()
        let classifier = try Classifier.load(folder: source, maxLength: min(128, config.maxTokens), backend: backend, inference: true)
        try writeNewFolder(destination) { partial in
            try classifier.model.saveQuantized(folder: partial, id2label: classifier.id2label)
            try copyTokenizerFiles(from: source, to: partial)
        }
        let (before, after) = (ComparisonReport.weightMegabytes(source), ComparisonReport.weightMegabytes(destination))
        print(String(format: "%@: %.1f M parameters, model.safetensors %.1f MB → %.1f MB (%.2f×), in %.1f s; int8 kernels here: %@",
                     out, Double(classifier.parameterCount) / 1e6, before, after, after / max(before, 1e-9), Date().timeIntervalSince(start),
                     backend.int8Kernels ?? "none"))
    }
}
