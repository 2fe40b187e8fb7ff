// retort finetune: fine-tune a BERT checkpoint on labelled text.
import ArgumentParser
import Backend
import Foundation
import Train

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune a BERT model folder on labelled text; the output folder is a HF model folder.",
        discussion: """
            Examples:
              retort finetune --model ~/.cache/retort/assets/all-MiniLM-L6-v2 \\
                --train ../shared/data/sst2/train.tsv --text-column 1 --label-column 0 \\
                --dev-split 0.1 --epochs 2 --max-length 64 --out runs/sst2
              retort finetune --model M --train tweets.csv --text-column tweet --label-column class --out runs/hate
            Writes OUT/{config.json, model.safetensors, vocab.txt, …} (the best dev epoch), OUT/log.jsonl, \\
            OUT/metrics.json and OUT/checkpoint/ (resume with --resume).
            """)

    @Option(name: .long, help: "Pretrained or fine-tuned model folder (config.json, model.safetensors, vocab.txt).")
    var model: String
    @Option(name: .long, help: "Training data: .csv, .tsv or .jsonl.")
    var train: String
    @Option(name: .long, help: "Development data (default: --dev-split of the training data).")
    var dev: String?
    @Option(name: .long, help: "Fraction of the training data held out for evaluation when --dev is not given.")
    var devSplit = 0.1
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "Output folder.")
    var out: String
    @Option(name: .long, help: "Epochs.") var epochs = 3
    @Option(name: .long, help: "Examples per optimiser step (per micro-batch with --grad-accum).") var batchSize = 32
    @Option(name: .long, help: "Micro-batches per optimiser step.") var gradAccum = 1
    @Option(name: .long, help: "Peak learning rate.") var lr = 5e-5
    @OptionGroup var optimizer: OptimizerOptions
    @Option(name: .long, help: "Tokens per example, specials included.") var maxLength = 128
    @Option(name: .long, help: "Seed for data order, the dev split, dropout and a new head.") var seed: UInt64 = 42
    @Option(name: .long, help: "Also evaluate every N steps.") var evalEvery: Int?
    @Option(name: .long, help: "Metric that picks the best model: accuracy, macro_f1 or mcc.") var metric = "accuracy"
    @Option(name: .long, help: "Stop after N optimiser steps.") var maxSteps: Int?
    @Flag(name: .long, help: "Batch examples of similar length together (less padding).") var bucket = false
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var memory: MemoryOptions
    @Flag(name: .long, help: "Continue from OUT/checkpoint.") var resume = false
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard epochs > 0, batchSize > 0, gradAccum > 0, maxLength >= 3 else {
            throw ValidationError("--epochs, --batch-size and --grad-accum must be positive and --max-length at least 3")
        }
        guard lr > 0, devSplit > 0, devSplit < 1 else {
            throw ValidationError("--lr must be positive and --dev-split in (0, 1)")
        }
        guard ["accuracy", "macro_f1", "mcc"].contains(metric) else { throw ValidationError("--metric must be accuracy, macro_f1 or mcc") }
    }

    func run() throws {
        let backend = try deviceOptions.backend()
        let data = try LabelledData.load(train: train, dev: dev, devSplit: devSplit, columns: columns, seed: seed)
        let classifier = try Classifier.load(folder: expand(model), labels: data.names, maxLength: maxLength, backend: backend, seed: seed)
        printError("retort: \(data.train.count) training and \(data.dev.count) dev examples, labels \(data.names.joined(separator: ", "))")
        try lora.attach(to: classifier.model, seed: seed)
        var options = TrainingOptions()
        options.epochs = epochs; options.batchSize = batchSize; options.accumulation = gradAccum
        options.learningRate = lr; optimizer.apply(to: &options)
        options.seed = seed; options.evalEvery = evalEvery
        options.bucket = bucket; options.metric = metric; options.maxSteps = maxSteps
        try memory.check(classifier.model, batch: batchSize, length: maxLength)
        let trainer = try Trainer(classifier: classifier, train: classifier.encode(data.train), trainLabels: data.trainLabels,
                                  dev: classifier.encode(data.dev), devLabels: data.devLabels, options: options,
                                  recomputeGelu: memory.recompute == .gelu)
        let outFolder = expand(out), checkpoint = outFolder + "/checkpoint"
        try FileManager.default.createDirectory(atPath: outFolder, withIntermediateDirectories: true)
        if resume {
            guard FileManager.default.fileExists(atPath: checkpoint + "/trainer.json") else {
                throw DataError("--resume: no checkpoint in \(checkpoint)")
            }
            try trainer.loadCheckpoint(folder: checkpoint)
            printError("retort: resuming at step \(trainer.step) of \(trainer.totalSteps)")
        } else {
            try? FileManager.default.removeItem(atPath: outFolder + "/log.jsonl")
        }
        let log = try LogFile(outFolder + "/log.jsonl")
        let started = Date()
        let lastLoss = reportProgress(trainer, epochs: epochs, log: log)
        trainer.onImproved = { try classifier.save(folder: outFolder, tokenizerSource: expand(model)) }
        trainer.onEval = { epoch, step, metrics, improved in
            logEvaluation(log, epoch: epoch, step: step, metrics, improved: improved)
            do { try trainer.saveCheckpoint(folder: checkpoint) } catch { printError("retort: could not save the checkpoint: \(error)") }
        }
        let best = try runInterruptibly(trainer, checkpoint: checkpoint)
        let seconds = Date().timeIntervalSince(started)
        var metrics: [String: Any] = ["train_examples": data.train.count, "dev_examples": data.dev.count, "labels": data.names,
                                      "method": lora.rank == nil ? "finetune" : "finetune-lora",
                                      "trainable_parameters": classifier.model.trainable.reduce(0) { $0 + $1.weight.count },
                                      "parameters": classifier.model.layout.total,
                                      "steps": trainer.step, "final_train_loss": lastLoss(), "train_seconds": seconds,
                                      "device": backend.kind.rawValue]
        if let best { metrics["best_dev"] = metricsObject(best) }
        try writeJSON(metrics, to: outFolder + "/metrics.json")
        print(String(format: "fine-tuned in %@; best dev %@ %.4f; model saved in %@", duration(seconds), metric,
                     best.map { metric == "mcc" ? $0.mcc : metric == "macro_f1" ? $0.macroF1 : $0.accuracy } ?? .nan, out))
    }
}
