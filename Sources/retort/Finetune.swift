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
    @Option(name: .long, help: "Fraction of the steps spent warming up linearly.") var warmup = 0.1
    @Option(name: .long, help: "AdamW weight decay (not on biases and LayerNorm).") var weightDecay = 0.01
    @Option(name: .long, help: "Clip the global gradient norm to this (0: off).") var maxGradNorm = 1.0
    @Option(name: .long, help: "Tokens per example, specials included.") var maxLength = 128
    @Option(name: .long, help: "Seed for data order, the dev split, dropout and a new head.") var seed: UInt64 = 42
    @Option(name: .long, help: "Also evaluate every N steps.") var evalEvery: Int?
    @Option(name: .long, help: "Metric that picks the best model: accuracy, macro_f1 or mcc.") var metric = "accuracy"
    @Option(name: .long, help: "Stop after N optimiser steps.") var maxSteps: Int?
    @Flag(name: .long, help: "Batch examples of similar length together (less padding).") var bucket = false
    @Option(name: .long, help: "LoRA rank: train low-rank adapters and the classifier only (PEFT semantics).") var loraRank: Int?
    @Option(name: .long, help: "LoRA alpha (scale alpha/r).") var loraAlpha: Double?
    @Option(name: .long, help: "Dropout on the LoRA branch's input.") var loraDropout = 0.1
    @Option(name: .long, help: "Comma-separated: query, key, value, attention_output, intermediate, output.") var loraTargets = "query,value"
    @Flag(name: .long, help: "Scale by alpha/√r instead of alpha/r (rsLoRA).") var rsLora = false
    @Flag(name: .long, help: "Continue from OUT/checkpoint.") var resume = false
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard epochs > 0, batchSize > 0, gradAccum > 0, maxLength >= 3 else {
            throw ValidationError("--epochs, --batch-size and --grad-accum must be positive and --max-length at least 3")
        }
        guard lr > 0, (0..<1).contains(warmup), devSplit > 0, devSplit < 1 else {
            throw ValidationError("--lr must be positive, --warmup in [0, 1) and --dev-split in (0, 1)")
        }
        guard ["accuracy", "macro_f1", "mcc"].contains(metric) else { throw ValidationError("--metric must be accuracy, macro_f1 or mcc") }
        if let loraRank, loraRank < 1 { throw ValidationError("--lora-rank must be positive") }
        if loraRank == nil && loraAlpha != nil { throw ValidationError("--lora-alpha needs --lora-rank") }
        guard (0..<1).contains(loraDropout) else { throw ValidationError("--lora-dropout must be in [0, 1)") }
        _ = try targets()
    }

    func targets() throws -> [LoRATarget] {
        try loraTargets.split(separator: ",").map { name in
            guard let t = LoRATarget(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--lora-targets: unknown module '\(name)' (query, key, value, attention_output, intermediate, output)")
            }
            return t
        }
    }

    func run() throws {
        let backend = try deviceOptions.backend()
        let spec = columns.spec(labelled: true)
        var trainExamples = try Dataset.load(expand(train), columns: spec)
        let devExamples: [Example]
        if let dev {
            devExamples = try Dataset.load(expand(dev), columns: spec)
        } else {
            (trainExamples, devExamples) = Dataset.split(trainExamples, fraction: devSplit, seed: seed)
        }
        let names = Dataset.labelNames(trainExamples)
        guard names.count >= 2 else { throw DataError("\(train): only one label (\(names.first ?? "none")); a classifier needs two or more") }
        let trainLabels = try Dataset.labelIds(trainExamples, names: names, path: train)
        let devLabels = try Dataset.labelIds(devExamples, names: names, path: dev ?? "\(train) (held-out split)")
        let classifier = try Classifier.load(folder: expand(model), labels: names, maxLength: maxLength, backend: backend, seed: seed)
        printError("retort: \(trainExamples.count) training and \(devExamples.count) dev examples, labels \(names.joined(separator: ", "))")
        if let loraRank {
            try classifier.model.attachLoRA(LoRAConfig(rank: loraRank, alpha: loraAlpha ?? Double(2 * loraRank), dropout: loraDropout,
                                                       targets: try targets(), rsLoRA: rsLora), seed: seed)
            let count = classifier.model.trainable.reduce(0) { $0 + $1.weight.count }
            printError("retort: LoRA r=\(loraRank) on \(loraTargets): \(count) trainable parameters of \(classifier.model.layout.total)")
        }
        var options = TrainingOptions()
        options.epochs = epochs; options.batchSize = batchSize; options.accumulation = gradAccum
        options.learningRate = lr; options.warmupRatio = warmup; options.weightDecay = weightDecay
        options.maxGradNorm = maxGradNorm; options.seed = seed; options.evalEvery = evalEvery
        options.bucket = bucket; options.metric = metric; options.maxSteps = maxSteps
        let trainer = try Trainer(classifier: classifier, train: classifier.encode(trainExamples), trainLabels: trainLabels,
                                  dev: classifier.encode(devExamples), devLabels: devLabels, options: options)
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
        let started = Date(), startStep = trainer.step
        var lastLoss = Double.nan
        trainer.onStep = { entry in
            lastLoss = entry.loss
            log.write(entry)
            let done = entry.step - startStep, left = trainer.totalSteps - entry.step
            let eta = Date().timeIntervalSince(started) / Double(max(done, 1)) * Double(left)
            let line = String(format: "epoch %d/%d  step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %@",
                              entry.epoch, epochs, entry.step, trainer.totalSteps, entry.loss, entry.lr, entry.tokensPerSecond, duration(eta))
            FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
        }
        trainer.onImproved = { try classifier.save(folder: outFolder, tokenizerSource: expand(model)) }
        trainer.onEval = { epoch, step, metrics, improved in
            log.write(["epoch": epoch, "step": step, "dev": ["accuracy": metrics.accuracy, "macro_f1": metrics.macroF1,
                                                             "mcc": metrics.mcc, "loss": metrics.loss, "examples": metrics.examples]])
            printError(String(format: "\nepoch %d: dev accuracy %.4f  macro-F1 %.4f  MCC %.4f  loss %.4f%@",
                              epoch, metrics.accuracy, metrics.macroF1, metrics.mcc, metrics.loss, improved ? "  (best so far: saved)" : ""))
            do { try trainer.saveCheckpoint(folder: checkpoint) } catch { printError("retort: could not save the checkpoint: \(error)") }
        }
        interrupted = 0
        signal(SIGINT) { _ in interrupted = 1 }   // finish the step, checkpoint, then stop
        trainer.shouldStop = { interrupted != 0 }
        let best = try trainer.run()
        signal(SIGINT, SIG_DFL)
        if trainer.stopped {
            try trainer.saveCheckpoint(folder: checkpoint)
            printError("\nretort: interrupted at step \(trainer.step) of \(trainer.totalSteps); checkpoint saved in \(checkpoint). "
                       + "Continue with the same command and --resume.")
            throw ExitCode(130)
        }
        let seconds = Date().timeIntervalSince(started)
        var metrics: [String: Any] = ["train_examples": trainExamples.count, "dev_examples": devExamples.count, "labels": names,
                                      "trainable_parameters": classifier.model.trainable.reduce(0) { $0 + $1.weight.count },
                                      "steps": trainer.step, "final_train_loss": lastLoss, "train_seconds": seconds,
                                      "device": backend.kind.rawValue]
        if let best { metrics["best_dev"] = ["accuracy": best.accuracy, "macro_f1": best.macroF1, "mcc": best.mcc, "loss": best.loss] }
        try writeAtomically(try JSONSerialization.data(withJSONObject: metrics, options: [.prettyPrinted, .sortedKeys]),
                            to: outFolder + "/metrics.json")
        print(String(format: "fine-tuned in %@; best dev %@ %.4f; model saved in %@", duration(seconds), metric,
                     best.map { metric == "mcc" ? $0.mcc : metric == "macro_f1" ? $0.macroF1 : $0.accuracy } ?? .nan, out))
    }
}

/// Set by the SIGINT handler.
nonisolated(unsafe) var interrupted: sig_atomic_t = 0

/// log.jsonl, appended one JSON object per line.
final class LogFile {
    let handle: FileHandle
    init(_ path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DataError("\(path): cannot open for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }
    func write<T: Encodable>(_ value: T) {
        if let data = try? JSONEncoder().encode(value) { handle.write(data + Data("\n".utf8)) }
    }
    func write(_ object: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) { handle.write(data + Data("\n".utf8)) }
    }
}
