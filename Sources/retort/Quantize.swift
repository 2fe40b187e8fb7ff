// retort quantize: a BERT-family classifier's weights stored as int8 (dynamic quantization), or a
// decoder's (a language model or a classifier; weight-only int8, as `generate --int8`).
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Store a classifier or a decoder with int8 weights.",
        discussion: """
            Examples:
              retort quantize --model runs/sst2 --out runs/sst2-int8
              retort eval --model runs/sst2-int8 --data ../shared/data/sst2/test.tsv \\
                  --text-column 1 --label-column 0
              retort quantize --model SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2-int8
              retort generate --model smollm2-int8 --chat "Name three rivers."

            Every linear layer's weight becomes int8 with one fp32 scale per output channel, and the \
            word embeddings int8 with one scale per row (symmetric); norms, biases and the other \
            embeddings stay fp32. The layers then run on int8 kernels — on the CPU AVX-512 VNNI, AVX2 \
            or portable C, on CUDA dp4a — their inputs quantized per row at run time. The folder holds config.json ("retort_quantization"), \
            model.safetensors (I8 weights beside "<name>_scale" F32 tensors) and the tokenizer files; \
            eval, predict, compare and serve load it like any model.

            Decoders (GPT-2, Llama family; an HF folder or a .gguf, a language model or a classifier) \
            get weight-only int8: every linear layer and the LM head or score head int8 per output \
            channel, the token embeddings per row, inputs kept fp32 — the model `generate --int8` makes \
            at load, stored: config.json says "retort_quantization": "int8-weight-only", the tokenizer \
            files come along (written from the GGUF for a .gguf). generate, eval, predict, compare and \
            serve load it; fine-tuning refuses it (train the float model).
            """)

    @Option(name: .long, help: "Fine-tuned or distilled classifier folder (BERT family), or a decoder (folder or .gguf).") var model: String
    @Option(name: .long, help: "Output folder: a new one, or an empty one.") var out: String
    @OptionGroup var cpu: CPUThreadsOption

    func run() throws {
        try withFlags { try quantize() }
    }

    func quantize() throws {
        if FineTuningRun.isDecoder(expand(model)) { return try quantizeDecoder() }
        let (source, destination, config) = try classifierToNewFolder(model: model, out: out, command: "quantize")
        guard config.quantization == nil else { throw UserError(description: "--model \(model) is already quantized (\(config.quantization!))") }
        let backend = try cpu.backend()
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

    /// A decoder (folder or .gguf): weight-only int8 of its Linears and head, with its tokenizer files.
    func quantizeDecoder() throws {
        let source = (expand(model) as NSString).standardizingPath, destination = (expand(out) as NSString).standardizingPath
        guard FileManager.default.fileExists(atPath: source) else { throw UserError(description: "--model \(model): no such folder or .gguf file") }
        try checkNewFolder(destination, out: out)
        let gguf = source.hasSuffix(".gguf")
        let config = gguf ? try DecoderConfig(gguf: try GGUFFile(path: source))
            : try DecoderConfig(path: (source as NSString).appendingPathComponent("config.json"))
        if let method = config.quantization { throw UserError(description: "--model \(model) is already quantized (\(method))") }
        let tokenizer = try DecoderTokenizer(model: source, config: config)   // before the weights: a folder without one fails fast
        let object = FileManager.default.contents(atPath: (source as NSString).appendingPathComponent("config.json"))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
        let classifier = decoderClassifierKind(object, id2label: config.id2label) != nil
        let backend = try cpu.backend(), start = Date()
        let decoder = try DecoderModel.load(source, labels: classifier ? max(config.id2label.count, 2) : 0, backend: backend, inference: true)
        try writeNewFolder(destination) { partial in
            try decoder.saveQuantized(folder: partial)
            try tokenizer.save(folder: partial, source: source)
        }
        let before = gguf ? Double((try? FileManager.default.attributesOfItem(atPath: source)[.size] as? Int) ?? 0) / 1e6
            : ComparisonReport.weightMegabytes(source)
        let after = ComparisonReport.weightMegabytes(destination)
        print(String(format: "%@: %@, %.1f M parameters, %d weight matrices as int8 (weight-only), %@ %.1f MB → model.safetensors %.1f MB, in %.1f s",
                     out, decoder.config.modelType, Double(decoder.layout.total) / 1e6, decoder.int8ParameterNames.count,
                     gguf ? (source as NSString).lastPathComponent : "model.safetensors", before, after, Date().timeIntervalSince(start)))
    }
}
