// retort augment: a generated transfer set (AugmentationRun) — a decoder writes new texts from
// the training set's first words, they are cleaned, the teacher labels them.
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct AugmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment",
        abstract: "Generate a transfer set: new texts from a decoder, cleaned, labelled by a teacher (for distill --transfer).",
        discussion: """
            Examples:
              retort augment --generator runs/sst2-generator --teacher runs/sst2 \\
                  --train ../shared/data/sst2/train.tsv --text-column 1 --label-column 0 \\
                  --count 20000 --out runs/sst2-transfer.jsonl
              retort augment --generator SmolLM2-135M-Instruct.Q4_1.gguf \\
                  --generator-epochs 1 --teacher runs/sst2 --train T --out transfer.jsonl
              retort distill --teacher runs/sst2 --transfer transfer.jsonl \\
                  --student bilstm --out runs/sst2-bilstm

            Each generated text starts with the first --prompt-words words of a random training \
            text and runs to the end of the generator's line (or --max-new-tokens). With \
            --generator-epochs the generator is first fine-tuned on the training texts as a causal \
            language model (into --generator-out). Cleaning drops, and counts, empty and garbled \
            texts, texts shorter or longer than the limits, exact copies of a training text or of \
            each other, and near-duplicates (word n-gram Jaccard overlap ≥ --near-duplicate). The \
            teacher then labels the training texts and every kept text.

            Writes OUT as JSONL, one object per text: text, label (the data's own for an original \
            text, the teacher's for a generated one), teacher_label, logits (the teacher's, one per \
            label) and origin (original or generated). Every retort command reads it as labelled \
            data; distill --transfer trains a recurrent student on the stored logits.
            """)

    @Option(name: .long, help: "The generator: a decoder (HF folder or .gguf), e.g. one fine-tuned with finetune --task causal-lm.") var generator: String
    @Option(name: .long, help: "The teacher: a fine-tuned classifier folder.") var teacher: String
    @Option(name: .long, help: "Training data: labelled .csv, .tsv or .jsonl, or a .txt of one text per line (the teacher labels those too); its texts prompt the generator.") var train: String
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "The transfer set to write (.jsonl).") var out: String
    @Option(name: .long, help: "Texts to generate (before cleaning).") var count = 1000
    @Option(name: .long, help: "Words of a training text that start each prompt.") var promptWords = 3
    @Option(name: .long, help: "Tokens generated per text at most.") var maxNewTokens = 40
    @Option(name: .long, help: "Sampling temperature (0: greedy).") var temperature = 1.0
    @Option(name: .long, help: "Sample from the k most likely tokens only (0: all).") var topK = 0
    @Option(name: .long, help: "Sample from the smallest set of tokens whose probability reaches p.") var topP = 0.95
    @Option(name: .long, help: "Seed for the prompts and the sampling.") var seed: UInt64 = 42
    @Option(name: .long, help: "Prompts generated together (a finished text's slot takes the next prompt).") var batchSize = 64
    @Option(name: .long, help: "Fine-tune the generator on the training texts for this many epochs first.") var generatorEpochs: Int?
    @Option(name: .long, help: "Where the fine-tuned generator goes (default: OUT without .jsonl, plus -generator).") var generatorOut: String?
    @Flag(name: .long, help: "Replace an existing OUT and, with --generator-epochs (and without --resume), start afresh in a generator folder that holds a run (without it, both are refused).")
    var overwrite = false
    @Flag(name: .long, help: "With --generator-epochs: continue the generator's fine-tuning from its newest checkpoint (after a Ctrl-C or a kill); with --overwrite, an existing OUT is replaced.")
    var resume = false
    @Option(name: .long, help: "Generator fine-tuning: peak learning rate.") var generatorLearningRate = 5e-5
    @Option(name: .long, help: "Generator fine-tuning: tokens per block of training text.") var generatorMaxLength = 128
    @Option(name: .long, help: "Generator fine-tuning: blocks per optimiser step.") var generatorBatchSize = 8
    @Option(name: .long, help: "Drop generated texts shorter than this many characters.") var minCharacters = 8
    @Option(name: .long, help: "Drop generated texts longer than this many characters.") var maxCharacters = 400
    @Option(name: .long, help: "Drop near-duplicates: word n-gram Jaccard overlap at or above this (above 1: off).") var nearDuplicate = 0.6
    @Option(name: .long, help: "Word n-gram length of the near-duplicate test.") var ngram = 3
    @Option(name: .long, help: "Tokens per text for the teacher, specials included.") var maxLength = 128
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        for (flag, value, least) in [("--count", count, 1), ("--prompt-words", promptWords, 1), ("--max-new-tokens", maxNewTokens, 1),
                                     ("--batch-size", batchSize, 1), ("--ngram", ngram, 1), ("--min-characters", minCharacters, 0),
                                     ("--max-characters", maxCharacters, 1)] where value < least {
            throw ValidationError("\(flag) must be at least \(least)")
        }
        try checkCounts([("--count", count), ("--prompt-words", promptWords), ("--max-new-tokens", maxNewTokens), ("--batch-size", batchSize),
                         ("--ngram", ngram), ("--generator-batch-size", generatorBatchSize), ("--generator-epochs", generatorEpochs),
                         ("--generator-max-length", generatorMaxLength)])
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 (greedy) or positive") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 (off) or positive") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard nearDuplicate > 0 else { throw ValidationError("--near-duplicate must be positive (the overlap that counts; above 1: off)") }
        if generatorEpochs == nil {
            if generatorOut != nil { throw ValidationError("--generator-out goes with --generator-epochs (the folder the generator is fine-tuned into)") }
            if resume { throw ValidationError("--resume goes with --generator-epochs (it continues the generator's fine-tuning)") }
        }
        guard minCharacters <= maxCharacters else { throw ValidationError("--min-characters \(minCharacters) is above --max-characters \(maxCharacters)") }
        try checkMaxLength(maxLength)
        guard generatorMaxLength >= 2 else { throw ValidationError("--generator-max-length must be at least 2") }
        guard generatorBatchSize >= 1 else { throw ValidationError("--generator-batch-size must be at least 1") }
        guard generatorLearningRate > 0, generatorLearningRate.isFinite else { throw ValidationError("--generator-learning-rate must be a positive number") }
        if let generatorEpochs, generatorEpochs < 1 { throw ValidationError("--generator-epochs must be positive") }
        guard out.hasSuffix(".jsonl") else { throw ValidationError("--out: a .jsonl file (got \(out))") }
        try checkModelArgument(generator, flag: "--generator") { try checkModelFolder($0, gguf: true) }
        try checkRecurrentTeacher(teacher)
        try checkModelArgument(teacher, flag: "--teacher", checkClassifierFolder)
        try checkDataArgument(train, flag: "--train", kinds: labelledKinds)
    }

    func run() throws {
        let printer = ProgressPrinter(showStages: false)
        try withFlags(printer) {
            var config = AugmentationRun.Configuration(generator: expand(generator), teacher: expand(teacher),
                                                       data: DataFiles(train: expand(train), columns: columns.spec(labelled: true)), output: expand(out))
            config.generatorEpochs = generatorEpochs; config.generatorOutput = generatorOut.map(expand)
            if generatorEpochs != nil {   // the generator is fine-tuned into a folder of its own
                let flag = generatorOut == nil ? "--generator-out (by default)" : "--generator-out"
                try checkNotAnInput(config.generatorFolder, flag: flag, inputs: [("--generator", generator), ("--teacher", teacher)])
                if resume { try checkWritable(config.generatorFolder, flag: flag, isFolder: true) } else {
                    try checkRunFolder(config.generatorFolder, flag: flag, overwrite: overwrite,
                                       also: "or --generator \(config.generatorFolder) without --generator-epochs to generate with it")
                }
            }
            try checkNewFile(out, flag: "--out", overwrite: overwrite)
            let backend = try deviceOptions.backend()
            config.count = count; config.promptWords = promptWords; config.maxNewTokens = maxNewTokens; config.batchSize = batchSize
            config.sampling = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed)
            config.generatorTraining.learningRate = generatorLearningRate
            config.generatorTraining.maxLength = generatorMaxLength
            config.generatorTraining.options.batchSize = generatorBatchSize
            config.generatorTraining.resume = resume
            config.cleaning.minCharacters = minCharacters; config.cleaning.maxCharacters = maxCharacters
            config.cleaning.nearDuplicate = nearDuplicate; config.cleaning.ngram = ngram
            config.maxLength = maxLength
            let run = AugmentationRun(config, backend: backend)
            run.progress = printer.handle
            Interrupt.catchSIGINT()
            defer { Interrupt.release() }
            let summary = try run.run()
            printer.finish()
            print("\(summary.originals) original and \(summary.kept) generated texts (of \(summary.generated); "
                  + String(format: "%.1f new tokens/s) written to %@", summary.tokensPerSecond, out))
            if summary.interrupted {   // Ctrl-C: what was finished is written, as generate does
                if generatorEpochs != nil {
                    printError("retort: the fine-tuned generator is in \(summary.generatorFolder): generate more with --generator \(summary.generatorFolder) "
                               + "and without --generator-epochs")
                }
                throw ExitCode(Interrupt.exitStatus)
            }
        }
    }
}
