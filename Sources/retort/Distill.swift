// retort distill: train a smaller student from a fine-tuned teacher (TinyBERT or DistilBERT recipe).
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
              retort distill --teacher runs/sst2 --train ../shared/data/sst2/train.tsv --text-column 1 --label-column 0 \\
                --student-init odd --student-layers 3 --max-length 64 --out runs/sst2-odd3
              retort distill --teacher runs/sst2 --train T --student-init even --lora-rank 16 --out runs/sst2-lora3
              retort distill --teacher runs/sst2 --train T --method distilbert --temperature 2 --out runs/sst2-distilbert
            TinyBERT runs two stages: intermediate (MSE on embeddings, mapped hidden states and attention scores), \\
            then prediction (soft cross-entropy against the teacher's logits at --temperature). The student starts \\
            from the teacher's odd layers {1,3,5,…}, even layers {2,4,6,…} (1-based), a uniform map, or a checkpoint \\
            folder; each student layer learns from the teacher layer it was copied from (for a folder: TinyBERT's \\
            uniform map, teacher layer (i+1)·k−1) unless --layer-map says otherwise (0-based student:teacher pairs).
            Writes OUT (a HF model folder: the best dev epoch of the last stage), OUT/log.jsonl, OUT/metrics.json, \\
            OUT/checkpoint-<stage>/ (--resume) and, unless --no-report, OUT/report.{md,csv,html} comparing the \\
            student with its teacher.
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
    @Option(name: .long, help: "Examples per step.") var batchSize = 32
    @Option(name: .long, help: "Peak learning rate (default 5e-5; 1e-3 with --lora-rank).") var lr: Double?
    @OptionGroup var optimizer: OptimizerOptions
    @Option(name: .long, help: "Tokens per example, specials included.") var maxLength = 128
    @Option(name: .long, help: "Seed for data order, the dev split and dropout.") var seed: UInt64 = 42
    @Option(name: .long, help: "Stop each stage after N steps (smoke runs).") var maxSteps: Int?
    @Flag(name: .long, help: "Batch examples of similar length together.") var bucket = false
    @Flag(name: .long, help: "Do not write OUT/report.*.") var noReport = false
    @OptionGroup var lora: LoRAOptions
    @OptionGroup var memory: MemoryOptions
    @Flag(name: .long, help: "Continue from OUT/checkpoint-<stage>.") var resume = false
    @OptionGroup var deviceOptions: DeviceOptions

    var distillationMethod: DistillationMethod? { DistillationMethod(rawValue: method) }

    func stageList() throws -> [DistillationStage] {
        if distillationMethod == .distilbert { return [.prediction] }
        let list = try stages.split(separator: ",").map { name -> DistillationStage in
            guard let s = DistillationStage(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--stages: unknown stage '\(name)' (intermediate, prediction)")
            }
            return s
        }
        guard !list.isEmpty else { throw ValidationError("--stages: give intermediate, prediction or both") }
        return list
    }

    func stageEpochs(_ count: Int) throws -> [Int] {
        let numbers = epochs.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !numbers.isEmpty, numbers.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--epochs: positive whole numbers, one per stage (e.g. 3,2) or one for all")
        }
        if numbers.count == 1 { return Array(repeating: numbers[0]!, count: count) }
        guard numbers.count >= count else { throw ValidationError("--epochs: \(numbers.count) numbers for \(count) stages") }
        return numbers.prefix(count).map { $0! }
    }

    func validate() throws {
        guard distillationMethod != nil else { throw ValidationError("--method must be tinybert or distilbert") }
        guard batchSize > 0, maxLength >= 3, devSplit > 0, devSplit < 1 else {
            throw ValidationError("--batch-size must be positive, --max-length at least 3 and --dev-split in (0, 1)")
        }
        if let studentLayers, studentLayers < 1 { throw ValidationError("--student-layers must be positive") }
        if let temperature, temperature <= 0 { throw ValidationError("--temperature must be positive") }
        if let lr, lr <= 0 { throw ValidationError("--lr must be positive") }
        guard hardLabelWeight >= 0, alpha >= 0, beta >= 0, gamma >= 0 else {
            throw ValidationError("--hard-label-weight, --alpha, --beta and --gamma must not be negative")
        }
        _ = try stageEpochs(try stageList().count)
    }

    func run() throws {
        let backend = try deviceOptions.backend()
        let teacherFolder = expand(teacher)
        let teacherModel = try Classifier.load(folder: teacherFolder, maxLength: maxLength, backend: backend, seed: seed, inference: true)
        let data = try LabelledData.load(train: train, dev: dev, devSplit: devSplit, columns: columns, seed: seed, names: teacherModel.labelNames)
        let student = try Distillation.makeStudent(teacher: teacherModel, teacherFolder: teacherFolder, initFrom: StudentInit(expand(studentInit)),
                                                   layers: studentLayers, backend: backend, seed: seed)
        let (Ns, Nt) = (student.model.config.layers, teacherModel.model.config.layers)
        let map = try layerMap.map { try LayerMap(parsing: $0, student: Ns, teacher: Nt) } 
            ?? LayerMap.following(StudentInit(expand(studentInit)), student: Ns, teacher: Nt)
        try lora.attach(to: student.model, seed: seed)
        let method = distillationMethod!, stageList = try stageList(), epochList = try stageEpochs(stageList.count)
        var loss = DistillationLoss(layerMap: map)
        loss.method = method
        loss.temperature = temperature ?? (method == .distilbert ? 2 : 1)
        loss.hardLabelWeight = hardLabelWeight
        loss.alpha = alpha; loss.beta = beta; loss.gamma = gamma
        let projection = DistillationObjective.projectionSize(student: student.model.config.hiddenSize,
                                                              teacher: teacherModel.model.config.hiddenSize)
        try memory.check(student.model, batch: batchSize, length: maxLength, extraTrainable: projection,
                         teacher: (teacherModel.model, Set(map.pairs.map(\.teacher))))
        let objective = try DistillationObjective(teacher: teacherModel, student: student, loss: loss, maxBatch: batchSize, seed: seed)
        printError("retort: \(data.train.count) training and \(data.dev.count) dev examples; teacher \(Nt) layers, student \(Ns) layers "
                   + "(init \(studentInit)), layer map \(map)" + (objective.projection.isEmpty ? "" : ", with a learned projection"))

        let outFolder = expand(out)
        try FileManager.default.createDirectory(atPath: outFolder, withIntermediateDirectories: true)
        if !resume { try? FileManager.default.removeItem(atPath: outFolder + "/log.jsonl") }
        let log = try LogFile(outFolder + "/log.jsonl")
        let trainEncodings = student.encode(data.train), devEncodings = student.encode(data.dev)
        let started = Date()
        var best: ClassificationMetrics?, lastLoss = Double.nan, steps = 0
        for (index, (stage, stageEpochs)) in zip(stageList, epochList).enumerated() {
            objective.loss.stage = stage
            let last = index == stageList.count - 1, name = method == .distilbert ? "distilbert" : stage.rawValue
            var options = TrainingOptions()
            options.epochs = stageEpochs; options.batchSize = batchSize; options.learningRate = lr ?? (lora.rank == nil ? 5e-5 : 1e-3)
            optimizer.apply(to: &options)
            options.seed = seed &+ UInt64(index); options.bucket = bucket; options.maxSteps = maxSteps
            // Only the last stage picks a best epoch on the dev set; earlier ones just run to the end.
            let trainer = try Trainer(classifier: student, train: trainEncodings, trainLabels: data.trainLabels,
                                      dev: last ? devEncodings : [], devLabels: last ? data.devLabels : [], options: options,
                                      extra: objective.projection, idle: objective.idleParameters,
                                      recomputeGelu: memory.recompute == .gelu)
            trainer.objective = { a, batch, seed, scale in objective.step(a, batch: batch, seed: seed, gradScale: scale) }
            trainer.stepTerms = { Dictionary(objective.terms.map { ($0.name, $0.value) }, uniquingKeysWith: +) }
            trainer.stage = name
            let checkpoint = outFolder + "/checkpoint-" + name
            if resume, FileManager.default.fileExists(atPath: checkpoint + "/trainer.json") {
                try trainer.loadCheckpoint(folder: checkpoint)
                printError("retort: \(name) stage: resuming at step \(trainer.step) of \(trainer.totalSteps)")
            }
            printError("retort: \(name) stage, \(stageEpochs) epoch(s), \(trainer.totalSteps) steps, lr \(options.learningRate)")
            let lossOf = reportProgress(trainer, epochs: stageEpochs, log: log, label: "[\(name)] ")
            trainer.onImproved = {
                if last { try student.save(folder: outFolder, tokenizerSource: teacherFolder, adapter: false) } else { try trainer.saveCheckpoint(folder: checkpoint) }
            }
            trainer.onEval = { epoch, step, metrics, improved in
                logEvaluation(log, epoch: epoch, step: step, metrics, improved: improved, stage: name)
                do { try trainer.saveCheckpoint(folder: checkpoint) } catch { printError("retort: could not save the checkpoint: \(error)") }
            }
            best = try runInterruptibly(trainer, checkpoint: checkpoint, stage: name)
            if !lossOf().isNaN { lastLoss = lossOf() }
            steps += trainer.step
            if !last { printError("") }
        }
        let seconds = Date().timeIntervalSince(started)
        var metrics: [String: Any] = [
            "method": method == .distilbert ? "distilbert" : (lora.rank == nil ? "tinybert" : "tinybert-lora"),
            "student_init": studentInit, "layer_map": map.description, "teacher": teacherFolder, "stages": stageList.map(\.rawValue),
            "train_examples": data.train.count, "dev_examples": data.dev.count, "labels": data.names,
            "trainable_parameters": student.model.trainable.reduce(0) { $0 + $1.weight.count } + objective.projection.reduce(0) { $0 + $1.weight.count },
            "parameters": student.model.layout.total, "steps": steps, "final_train_loss": lastLoss, "train_seconds": seconds,
            "device": backend.kind.rawValue, "temperature": loss.temperature]
        if let best { metrics["best_dev"] = metricsObject(best) }
        if let test {   // the saved (best) student, as a user will load it
            let saved = try Classifier.load(folder: outFolder, maxLength: maxLength, backend: backend, inference: true)
            let examples = try Dataset.load(expand(test), columns: columns.spec(labelled: true))
            let m = try saved.evaluate(saved.encode(examples), labels: try Dataset.labelIds(examples, names: saved.labelNames, path: test),
                                       batchSize: batchSize)
            metrics["test"] = metricsObject(m)
            printError(String(format: "\nretort: test accuracy %.4f  macro-F1 %.4f  MCC %.4f (%d examples)", m.accuracy, m.macroF1, m.mcc, m.examples))
        }
        try writeJSON(metrics, to: outFolder + "/metrics.json")
        print(String(format: "\ndistilled in %@; best dev accuracy %.4f; student saved in %@", duration(seconds), best?.accuracy ?? .nan, out))
        if !noReport {
            let report = try ComparisonReport.build(runs: [teacherFolder, outFolder], test: test, columns: columns, maxLength: maxLength,
                                                    backend: backend)
            let written = try report.write(folder: outFolder)
            print(report.markdownTable)
            print("report: \(written.joined(separator: ", "))")
        }
    }
}
