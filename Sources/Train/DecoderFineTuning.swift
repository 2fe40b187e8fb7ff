// Fine-tuning a decoder (GPT-2, Llama family; an HF folder or a .gguf): sequence classification
// on the last real token (labelled data as for encoders), or causal language modelling on raw
// text (one document per line, or a .csv's, .tsv's or .jsonl's text column; the documents tokenized, joined with the
// end-of-sequence token and cut into maxLength blocks; loss on every token). Full or LoRA (PEFT
// target names). The output folder holds the model as transformers saves it (adapters merged),
// the tokenizer (vocab.json + merges.txt) and, with LoRA, the PEFT adapter in OUT/adapter.
import Backend
import Foundation
import Models

/// What a decoder is fine-tuned for.
public enum DecoderObjective: String, Sendable, CaseIterable {
    case classification
    case causalLM = "causal-lm"
}

extension FineTuningRun {
    /// Whether `path` is a decoder: a .gguf file, or a folder whose config.json names a decoder family.
    public static func isDecoder(_ path: String) -> Bool {
        if path.hasSuffix(".gguf") { return true }
        guard let data = FileManager.default.contents(atPath: (path as NSString).appendingPathComponent("config.json")),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let type = object["model_type"] as? String
        else { return false }
        return ["gpt2", "llama", "qwen2", "mistral"].contains(type)
    }

    /// PEFT's default LoRA targets for the decoder at `path` (GPT-2: c_attn; Llama family: q_proj, v_proj).
    public static func defaultLoRATargets(_ path: String) -> [LoRATarget] {
        let gpt2 = path.hasSuffix(".gguf") ? (try? GGUFFile(path: path).string("general.architecture")) == "gpt2"
            : (try? DecoderConfig(path: (path as NSString).appendingPathComponent("config.json")))?.family == .gpt2
        return gpt2 ? [.cAttn] : [.qProj, .vProj]
    }

    func runDecoder() throws -> RunMetrics {
        let c = configuration, t = c.training, folder = RunFolder(c.output), seed = t.options.seed
        let lm = c.objective == .causalLM
        let config = c.model.hasSuffix(".gguf") ? try DecoderConfig(gguf: try GGUFFile(path: c.model))
            : try DecoderConfig(path: (c.model as NSString).appendingPathComponent("config.json"))
        if config.quantization != nil {
            throw DataError("\(c.model) holds int8 weights (retort quantize), for inference only: train from the float model it was made from")
        }
        guard t.maxLength <= config.maxPositions else {
            throw DataError("max length \(t.maxLength) is beyond \((c.model as NSString).lastPathComponent)'s context of \(config.maxPositions) positions: lower --max-length")
        }
        let tokenizer = try DecoderTokenizer(model: c.model, config: config)
        var train: [Encoding], dev: [Encoding], trainLabels: [Int32], devLabels: [Int32], names: [String] = []
        if lm {
            let end = tokenizer.endTokens.min() ?? config.eosTokenIds.first.map(Int32.init) ?? 0
            let text = c.data.columns.text
            let blocks = try Self.textBlocks(c.data.train, text: text, tokenizer: tokenizer.bpe, end: end, length: t.maxLength)
            if let devFile = c.data.dev {
                (train, dev) = (blocks, try Self.textBlocks(devFile, text: text, tokenizer: tokenizer.bpe, end: end, length: t.maxLength))
            } else {   // the last devSplit of the blocks (the text's end), at least one when there are ten
                let held = blocks.count >= 10 ? max(1, Int(Double(blocks.count) * c.data.devSplit)) : 0
                (train, dev) = (Array(blocks.dropLast(held)), Array(blocks.suffix(held)))
            }
            (trainLabels, devLabels) = (Array(repeating: 0, count: train.count), Array(repeating: 0, count: dev.count))
            progress(.note("\(train.count) training and \(dev.count) dev blocks of up to \(t.maxLength) tokens"))
        } else {
            let data = try LabelledData.load(c.data, seed: seed)
            (train, dev, trainLabels, devLabels, names) = (data.train.map { DecoderClassifier.encoding($0, tokenizer: tokenizer, maxLength: t.maxLength) },
                                                           data.dev.map { DecoderClassifier.encoding($0, tokenizer: tokenizer, maxLength: t.maxLength) },
                                                           data.trainLabels, data.devLabels, data.names)
            progress(.note(data.summary))
            for note in data.skipped { progress(.note(note)) }
            reportTruncation(train: train, dev: dev, maxLength: t.maxLength)
        }
        guard !train.isEmpty else { throw DataError("\(c.data.train): no training text") }
        let model = try DecoderModel.load(c.model, labels: lm ? 0 : names.count, backend: backend, seed: seed)
        if !lm {
            model.id2label = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($0, $1) })
            if model.config.padTokenId == nil { model.padTokenId = model.config.eosTokenIds.first }   // HF finds the last token by it
        }
        if let lora = t.lora {
            try model.attachLoRA(lora, seed: seed)
            progress(.note("LoRA r=\(lora.rank) on \(lora.targets.map(\.rawValue).joined(separator: ",")): "
                           + "\(model.trainable.reduce(0) { $0 + $1.weight.count }) trainable parameters of \(model.layout.total)"))
        }
        var options = t.resolvedOptions
        if lm { options.metric = "loss" }
        options.dataRows = max(train.count, dev.count)
        try check(MemoryPlan(decoder: model, shape: MemoryPlan.Shape(batch: options.rankBatchSize, length: t.maxLength, recomputeGelu: true)))
        let task = try DecoderTask(model: model, maxBatch: options.rankBatchSize, maxLength: t.maxLength)
        let trainer = try Trainer(task: task, train: train, trainLabels: trainLabels, dev: dev, devLabels: devLabels, options: options)
        let fingerprint = Self.fingerprint(train: train, trainLabels: trainLabels, dev: dev, devLabels: devLabels, names: names)
        let (runner, resumePoint) = try open(folder, resume: t.resume, stages: [], policy: t.checkpoints, examples: train.count,
                                             fingerprint: fingerprint, lora: t.lora) { _ in options }
        let best = try runner.run(trainer, stage: nil, stageIndex: 0, epochs: options.epochs, from: resumePoint?.path) {
            try model.save(folder: c.output)
            try tokenizer.save(folder: c.output, source: c.model)
            if model.lora != nil { try model.saveAdapter(folder: c.output + "/adapter", baseModel: c.model) }
        }
        var metrics = RunMetrics(method: (lm ? "causal-lm" : "finetune") + (t.lora == nil ? "" : "-lora"))
        metrics.trainExamples = train.count; metrics.devExamples = dev.count; metrics.labels = lm ? nil : names
        metrics.trainableParameters = model.trainable.reduce(0) { $0 + $1.weight.count }; metrics.parameters = model.layout.total
        metrics.steps = trainer.step; metrics.finalTrainLoss = trainer.lastLoss; metrics.trainSeconds = runner.trainSeconds
        metrics.device = backend.kind.rawValue; metrics.bestDev = best
        metrics.dataParallel = trainer.dataParallel
        if writesOutputs { try folder.write(metrics) }
        return metrics
    }

    /// A file's documents (a .txt's lines, a .csv's, .tsv's or .jsonl's `column`) tokenized, each followed by `end`,
    /// joined and cut into blocks of `length` tokens (the last one shorter).
    static func textBlocks(_ path: String, text column: Column, tokenizer: ByteLevelBPE, end: Int32, length: Int) throws -> [Encoding] {
        var stream: [Int32] = []
        // A .csv, .tsv or .jsonl: its text column (its other columns, labels say, are not text to
        // learn); any other file (.txt, .raw, .md, …): one document per line.
        let documents = Dataset.isTable(path) ? try Dataset.load(path, columns: ColumnSpec(text: column)) : try Dataset.lines(path)
        guard !documents.isEmpty else { throw DataError("\(path): no text (the file is empty\(Dataset.isTable(path) ? "" : " or holds only blank lines"))") }
        for example in documents { stream += tokenizer.encodeAsInput(example.text) + [end] }
        return stride(from: 0, to: stream.count, by: length).compactMap { start in
            let ids = Array(stream[start..<min(start + length, stream.count)])
            guard ids.count > 1 else { return nil }   // one token predicts nothing
            return Encoding(ids: ids)
        }
    }
}
