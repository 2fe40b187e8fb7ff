// retort finetune: fine-tune a BERT-family checkpoint on labelled text, or a decoder as a
// classifier or a causal language model (FineTuningRun).
import ArgumentParser
import Backend
import Foundation
import Train

struct FinetuneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune a BERT/MPNet folder or a decoder (GPT-2, SmolLM2/Llama/Qwen2 folder or .gguf) on labelled text, or a decoder on raw text; the output folder is a HF model folder.",
        discussion: """
            Examples:
              retort finetune --model ~/.cache/retort/assets/all-MiniLM-L6-v2 \\
                  --train ../shared/data/sst2/train.tsv \\
                  --text-column 1 --label-column 0 --epochs 2 --max-length 64 \\
                  --out runs/sst2
              retort finetune --model M --train tweets.csv \\
                  --text-column tweet --label-column class --lora-rank 8 \\
                  --out runs/hate-lora
              retort finetune --model SmolLM2-135M-Instruct.Q4_1.gguf \\
                  --train ../shared/data/cola/train.tsv --text-column 0 --label-column 1 \\
                  --lora-rank 8 --out runs/cola-smollm2
              retort finetune --model M.gguf --task causal-lm --train stories.txt \\
                  --lora-rank 8 --out runs/stories

            A decoder classifies with its last real token's hidden state through a bias-free score \
            head (HF's *ForSequenceClassification). --task causal-lm trains on raw text: one \
            document per line of a .txt (or a .csv's, .tsv's or .jsonl's --text-column), joined with the end token and cut into \
            --max-length blocks, the loss on every token; the best model has the lowest dev loss.

            Writes OUT/{config.json, model.safetensors, the tokenizer's files} (the best dev epoch), \
            OUT/log.jsonl, OUT/metrics.json, OUT/adapter/ (PEFT's files, with --lora-rank) and \
            OUT/checkpoints/. A checkpoint is saved at every evaluation, every --save-minutes \
            (5) of training, every --save-every steps and on Ctrl-C; the newest \
            --keep-checkpoints (2) are kept, each written atomically, so even a killed run \
            continues exactly with the same command and --resume. An OUT that holds a run is \
            refused unless --resume continues it or --overwrite starts afresh there.
            """)

    @Option(name: .long, help: "Pretrained or fine-tuned model: a folder (config.json, model.safetensors, tokenizer files) or a decoder's .gguf file.")
    var model: String
    @Option(name: .long, help: "A decoder's objective: classification (labelled data) or causal-lm (raw text).")
    var task = DecoderObjective.classification
    @Option(name: .long, help: "Training data: .csv, .tsv or .jsonl (causal-lm: a text file, one document per line, or a .csv's, .tsv's or .jsonl's --text-column).")
    var train: String
    @Option(name: .long, help: "Development data (default: --dev-split of the training data).")
    var dev: String?
    @Option(name: .customLong("dev-split"), help: "Fraction of the training data held out for evaluation when --dev is not given (default: 0.1).")
    var devSplitGiven: Double?
    /// The fraction held out: --dev-split, 0.1 by default.
    var devSplit: Double { devSplitGiven ?? 0.1 }
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "Output folder.")
    var out: String
    @Option(name: .long, help: "Epochs.") var epochs = 3
    @Option(name: .long, help: "Micro-batches per optimiser step.") var gradAccum = 1
    @Option(name: .long, help: "Also evaluate every N steps.") var evalEvery: Int?
    @Option(name: .long, help: "Metric that picks the best model: accuracy (default), macro_f1 or mcc (--task causal-lm: the lowest dev loss).")
    var metric: String?
    var bestMetric: String { metric ?? "accuracy" }
    @OptionGroup var training: TrainingOptionGroup
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard epochs > 0 else { throw ValidationError("--epochs must be positive") }
        guard gradAccum > 0 else { throw ValidationError("--grad-accum must be positive") }
        try checkCounts([("--epochs", epochs), ("--grad-accum", gradAccum), ("--eval-every", evalEvery)])
        try checkDevSplit(devSplit)
        if dev != nil && devSplitGiven != nil { throw ValidationError("--dev-split holds out part of --train when there is no --dev; give one of them") }
        if let evalEvery, evalEvery < 1 { throw ValidationError("--eval-every must be positive") }
        if let metric {
            guard ["accuracy", "macro_f1", "mcc"].contains(metric) else { throw ValidationError("--metric must be accuracy, macro_f1 or mcc") }
            guard task != .causalLM else { throw ValidationError("--metric is a classifier's; --task causal-lm keeps the model with the lowest dev loss") }
        }
        guard FileManager.default.fileExists(atPath: expand(model)) else {
            throw UserError(description: "--model \(model): no such model folder or file (a folder with config.json, or a .gguf)")
        }
        // What it is instead, in words (a file that is not a .gguf, an ONNX export, a LoRA adapter, a tokenizer alone).
        try checkModelArgument(model, flag: "--model") { try checkModelFolder($0, gguf: true) }
        if RecurrentConfig.describes(expand(model) + "/config.json") {
            throw UserError(description: "--model \(model) is a recurrent student; retort finetune takes BERT-family models (BERT, MPNet) and "
                                  + "decoders (retort distill --student bilstm, … trains recurrent students)")
        }
        if task == .causalLM && columns.labelColumn != nil {
            throw ValidationError("--label-column is a classifier's; --task causal-lm reads only the text")
        }
        if task == .causalLM && columns.text.textPairColumn != nil {
            throw ValidationError("--text-pair-column is a classifier's (a pair of texts); --task causal-lm reads one text column")
        }
        if task == .causalLM, let column = columns.text.textColumn, !Dataset.isTable(train) {
            throw ValidationError("--text-column \(column) picks a column of a .csv, .tsv or .jsonl; \(train) is read as one document per line")
        }
        if task == .causalLM && !FineTuningRun.isDecoder(expand(model)) {
            throw UserError(description: "--task causal-lm needs a decoder (GPT-2, Llama family); \(model) is an encoder")
        }
        for (flag, path) in [("--train", train), ("--dev", dev)] { try checkDataArgument(path, flag: flag) }
    }

    func run() throws {
        try withFlags { try training.checkOutput(out, inputs: [("--model", model)]) }
        try DataParallel.running(nproc: training.nproc, runHere)
    }

    private func runHere() throws {
        let printer = ProgressPrinter(showStages: false, evaluationSteps: evalEvery != nil)
        try withFlags(printer) {
            let decoder = FineTuningRun.isDecoder(expand(model))
            var config = FineTuningRun.Configuration(
                model: expand(model), data: DataFiles(train: expand(train), dev: dev.map(expand), devSplit: devSplit, columns: columns.spec(labelled: true)),
                output: expand(out))
            config.objective = task
            config.training = try training.settings(lora: lora, loraDefaults: decoder ? FineTuningRun.defaultLoRATargets(expand(model)) : [.query, .value])
            config.training.options.epochs = epochs; config.training.options.accumulation = gradAccum
            config.training.options.evalEvery = evalEvery; config.training.options.metric = bestMetric
            let run = FineTuningRun(config, backend: try deviceOptions.backend())
            if DataParallel.prints { run.progress = printer.handle }
            Interrupt.catchSIGINT()
            defer { Interrupt.release() }
            let metrics = try run.run()
            printer.finish()
            guard DataParallel.prints else { return }
            if task == .causalLM {
                guard let loss = metrics.bestDev?.loss else {
                    print("fine-tuned in \(training.trainingTime(metrics)) without a dev set (give --dev, or 10 or more blocks of text); model saved in \(out)")
                    return
                }
                print(String(format: "fine-tuned in %@; best dev loss %.4f (perplexity %.2f); model saved in %@", training.trainingTime(metrics),
                             loss, exp(loss), out))
                return
            }
            let best = metrics.bestDev.map { $0.score(bestMetric) } ?? .nan
            print(String(format: "fine-tuned in %@; best dev %@ %.4f; model saved in %@", training.trainingTime(metrics), bestMetric, best, out))
        }
    }
}

extension DecoderObjective: ExpressibleByArgument {}
