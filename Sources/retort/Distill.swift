// retort distill: train a smaller student from a fine-tuned teacher (DistillationRun), then
// compare the two (ComparisonReport).
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct DistillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Distil a fine-tuned teacher into a smaller student (TinyBERT or DistilBERT recipe, optionally through LoRA).",
        discussion: """
            Examples:
              retort distill --teacher runs/sst2 --train ../shared/data/sst2/train.tsv \\
                  --text-column 1 --label-column 0 --student-init odd \\
                  --student-layers 3 --max-length 64 --out runs/sst2-odd3
              retort distill --teacher runs/sst2 --train T --student-init even \\
                  --lora-rank 16 --out runs/sst2-lora3
              retort distill --teacher runs/sst2 --train T --method distilbert \\
                  --temperature 2 --out runs/sst2-distilbert

            TinyBERT runs two stages: intermediate (MSE on embeddings, mapped hidden states and \
            attention scores), then prediction (soft cross-entropy against the teacher's logits at \
            --temperature). The student starts from the teacher's odd layers {1,3,5,…}, even layers \
            {2,4,6,…} (1-based), a uniform map, or a checkpoint folder; each student layer learns \
            from the teacher layer it was copied from (for a folder: TinyBERT's uniform map, teacher \
            layer (i+1)·k−1) unless --layer-map says otherwise (0-based student:teacher pairs).

            Writes OUT (a HF model folder: the best dev epoch of the last stage), OUT/log.jsonl, \
            OUT/metrics.json, OUT/checkpoints/ (continue a stopped or killed run with --resume) \
            and, unless --no-report, OUT/report.{md,csv,html} comparing the student with its teacher.
            """)

    @Option(name: .long, help: "The fine-tuned teacher's folder (a classifier: `retort finetune` output).") var teacher: String
    @Option(name: .long, help: "Training data: .csv, .tsv or .jsonl.") var train: String
    @Option(name: .long, help: "Development data (default: --dev-split of the training data).") var dev: String?
    @Option(name: .long, help: "Fraction of the training data held out for evaluation when --dev is not given.") var devSplit = 0.1
    @Option(name: .long, help: "Test data: evaluated at the end and put in the report.") var test: String?
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "Output folder.") var out: String
    @Option(name: .long, help: "odd, even, uniform (the teacher's layers) or a model folder.") var studentInit = "odd"
    @Option(name: .long, help: "Student layers (default: half the teacher's).") var studentLayers: Int?
    @Option(name: .long, help: "tinybert or distilbert.") var method = "tinybert"
    @Option(name: .long, help: "TinyBERT stages to run, in order: intermediate, prediction.") var stages = "intermediate,prediction"
    @Option(name: .long, help: "Epochs per stage, comma-separated (one number: the same for each).") var epochs = "3,2"
    @Option(name: .long, help: "Softmax temperature of the soft targets (default 1 for tinybert, 2 for distilbert).") var temperature: Double?
    @Option(name: .long, help: "TinyBERT prediction stage: weight of cross-entropy against the true labels (0: off).") var hardLabelWeight = 0.0
    @Option(name: .long, help: "DistilBERT: weight of T²·KL against the teacher.") var alpha = 0.5
    @Option(name: .long, help: "DistilBERT: weight of cross-entropy against the labels.") var beta = 0.5
    @Option(name: .long, help: "DistilBERT: weight of 1 − cos between last hidden states.") var gamma = 1.0
    @Option(name: .long, help: "student:teacher layer pairs (0-based), e.g. 0:1,1:3,2:5.") var layerMap: String?
    @Flag(name: .long, help: "Do not write OUT/report.*.") var noReport = false
    @OptionGroup var training: TrainingOptionGroup
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var deviceOptions: DeviceOptions

    func stageList() throws -> [DistillationStage] {
        let list = try stages.split(separator: ",").map { name -> DistillationStage in
            guard let s = DistillationStage(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--stages: unknown stage '\(name)' (intermediate, prediction)")
            }
            return s
        }
        guard !list.isEmpty else { throw ValidationError("--stages: give intermediate, prediction or both") }
        return list
    }

    func epochList() throws -> [Int] {
        let numbers = epochs.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !numbers.isEmpty, numbers.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--epochs: positive whole numbers, one per stage (e.g. 3,2) or one for all")
        }
        return numbers.map { $0! }
    }

    func validate() throws {
        guard let method = DistillationMethod(rawValue: method) else { throw ValidationError("--method must be tinybert or distilbert") }
        guard devSplit > 0, devSplit < 1 else { throw ValidationError("--dev-split must be in (0, 1)") }
        if let studentLayers, studentLayers < 1 { throw ValidationError("--student-layers must be positive") }
        if let temperature, temperature <= 0 { throw ValidationError("--temperature must be positive") }
        guard hardLabelWeight >= 0, alpha >= 0, beta >= 0, gamma >= 0 else {
            throw ValidationError("--hard-label-weight, --alpha, --beta and --gamma must not be negative")
        }
        let count = method == .distilbert ? 1 : try stageList().count, numbers = try epochList()
        guard numbers.count == 1 || numbers.count >= count else { throw ValidationError("--epochs: \(numbers.count) numbers for \(count) stages") }
    }

    func run() throws {
        let printer = ProgressPrinter(showStages: true)
        try withFlags(printer) {
            let backend = try deviceOptions.backend()
            let spec = columns.spec(labelled: true)
            var config = DistillationRun.Configuration(
                teacher: expand(teacher), data: DataFiles(train: expand(train), dev: dev.map(expand), devSplit: devSplit,
                                                          test: test.map(expand), columns: spec),
                output: expand(out))
            config.studentInit = StudentInit(expand(studentInit)); config.studentLayers = studentLayers; config.layerMap = layerMap
            config.method = DistillationMethod(rawValue: method)!; config.stages = try stageList(); config.epochs = try epochList()
            config.temperature = temperature; config.hardLabelWeight = hardLabelWeight
            config.alpha = alpha; config.beta = beta; config.gamma = gamma
            config.training = try training.settings(lora: lora)
            let run = DistillationRun(config, backend: backend)
            run.progress = printer.handle
            Interrupt.catchSIGINT()
            defer { Interrupt.release() }
            let metrics = try run.run()
            printer.finish()
            print(String(format: "\ndistilled in %@; best dev accuracy %.4f; student saved in %@", duration(metrics.trainSeconds ?? .nan),
                         metrics.bestDev?.accuracy ?? .nan, out))
            guard !noReport else { return }
            let report = try ComparisonReport.build(runs: [config.teacher, config.output], test: config.data.test, columns: spec,
                                                    maxLength: training.maxLength, backend: backend) { printError("retort: " + $0) }
            let written = try report.write(folder: config.output)
            print(report.markdownTable)
            print("report: \(written.joined(separator: ", "))")
        }
    }
}
