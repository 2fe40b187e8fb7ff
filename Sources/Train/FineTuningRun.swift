// Fine-tuning as a library call: a model folder and labelled text in, a HF model folder out
// (the best dev epoch), with log.jsonl, metrics.json and checkpoints (RunFolder.swift). Full
// fine-tuning or LoRA (only the adapters and the classifier train; PEFT's adapter files in
// OUT/adapter). `retort finetune` is a thin front end to this.
//
//     var config = FineTuningRun.Configuration(model: "all-MiniLM-L6-v2", data: DataFiles(train: "train.tsv",
//         columns: ColumnSpec(text: .index(1), label: .index(0))), output: "runs/sst2")
//     config.training.options.epochs = 2
//     let run = FineTuningRun(config, backend: try CPUBackend())
//     run.progress = { event in … }
//     let metrics = try run.run()
import Backend
import Foundation

public final class FineTuningRun: TrainingRecipe {
    public struct Configuration: Sendable {
        /// A pretrained or fine-tuned model folder (config.json, model.safetensors, vocab.txt).
        public var model: String
        public var data: DataFiles
        /// The output folder (RunFolder).
        public var output: String
        public var training = TrainingSettings()
        /// A decoder's objective (an encoder is always a classifier).
        public var objective = DecoderObjective.classification

        public init(model: String, data: DataFiles, output: String) {
            self.model = model; self.data = data; self.output = output
        }
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration, backend: Backend) {
        self.configuration = configuration
        super.init(backend: backend)
    }

    /// Runs to the end (or to a stop), writes metrics.json and returns it.
    @discardableResult
    public func run() throws -> RunMetrics {
        if Self.isDecoder(configuration.model) { return try runDecoder() }
        let c = configuration, folder = RunFolder(c.output), seed = c.training.options.seed
        let data = try LabelledData.load(c.data, seed: seed)
        var t = c.training
        t.options.dataRows = max(data.train.count, data.dev.count)
        let classifier = try Classifier.load(folder: c.model, labels: data.names, maxLength: t.maxLength, backend: backend, seed: seed)
        progress(.note(data.summary))
        for note in data.skipped { progress(.note(note)) }
        if let old = classifier.replacedHeadLabels {
            progress(.note("a new classifier head for labels \(data.names.joined(separator: ", ")) (the model's head was for \(old.joined(separator: ", ")))"))
        }
        try attach(t.lora, to: classifier.model, seed: seed)
        let options = t.resolvedOptions
        try check(t.plan(classifier.model))
        let train = classifier.encode(data.train), dev = classifier.encode(data.dev)
        reportTruncation(train: train, dev: dev, maxLength: t.maxLength)
        let trainer = try Trainer(classifier: classifier, train: train, trainLabels: data.trainLabels,
                                  dev: dev, devLabels: data.devLabels, options: options,
                                  recomputeGelu: t.recomputeGelu)
        let fingerprint = Self.fingerprint(train: train, trainLabels: data.trainLabels, dev: dev, devLabels: data.devLabels, names: data.names)
        let (runner, resumePoint) = try open(folder, resume: t.resume, stages: [], policy: t.checkpoints, examples: data.train.count,
                                             fingerprint: fingerprint, lora: t.lora) { _ in options }
        let best = try runner.run(trainer, stage: nil, stageIndex: 0, epochs: options.epochs, from: resumePoint?.path) {
            try classifier.save(folder: c.output, tokenizerSource: c.model)
        }
        var metrics = RunMetrics(method: t.lora == nil ? "finetune" : "finetune-lora")
        metrics.trainExamples = data.train.count; metrics.devExamples = data.dev.count; metrics.labels = data.names
        metrics.trainableParameters = classifier.model.trainableCount; metrics.parameters = classifier.model.layout.total
        metrics.steps = trainer.step; metrics.finalTrainLoss = trainer.lastLoss; metrics.trainSeconds = runner.trainSeconds
        metrics.device = backend.kind.rawValue; metrics.bestDev = best
        metrics.dataParallel = trainer.dataParallel
        if writesOutputs { try folder.write(metrics) }
        return metrics
    }
}

extension BertModel {
    /// Parameters the optimiser updates (adapters and classifier with LoRA).
    public var trainableCount: Int { trainable.reduce(0) { $0 + $1.weight.count } }
}
