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
        abstract: "Distil a fine-tuned teacher into a smaller student (TinyBERT or DistilBERT recipe, optionally through LoRA), or into a BiLSTM, GRU or RNN.",
        discussion: """
            Examples:
              retort distill --teacher runs/sst2 --train ../shared/data/sst2/train.tsv \\
                  --text-column 1 --label-column 0 --student-init odd \\
                  --student-layers 3 --max-length 64 --out runs/sst2-odd3
              retort distill --teacher runs/sst2 --train T --student-init even \\
                  --lora-rank 16 --out runs/sst2-lora3
              retort distill --teacher runs/sst2 --train T --method distilbert \\
                  --temperature 2 --out runs/sst2-distilbert
              retort distill --teacher runs/sst2 --train T --student bilstm \\
                  --hidden 300 --epochs 5 --out runs/sst2-bilstm

            TinyBERT runs two stages: intermediate (MSE on embeddings, mapped hidden states and \
            attention scores), then prediction (soft cross-entropy against the teacher's logits at \
            --temperature). The student starts from the teacher's odd layers {1,3,5,…}, even layers \
            {2,4,6,…} (1-based), a uniform map, or a checkpoint folder; each student layer learns \
            from the teacher layer it was copied from (for a folder: TinyBERT's uniform map, teacher \
            layer (i+1)·k−1) unless --layer-map says otherwise (0-based student:teacher pairs).

            --student bilstm|bigru|birnn|lstm|gru|rnn trains a recurrent student instead (a "bi" \
            prefix: both directions): the teacher's word embeddings (or learned ones, --embeddings \
            learned), --student-layers recurrent layers (default 1) of --hidden units, --pooling over \
            the tokens, and a tanh MLP head; it learns the teacher's logits (computed once, before \
            training) by --loss mse or soft-ce (--temperature, default 1), plus --hard-label-weight·CE \
            against the labels; its learning rate defaults to 1e-3. With --transfer (retort augment's \
            JSONL) it trains on the texts and teacher logits stored there instead of --train. It \
            is saved as PyTorch names it (nn.Embedding, nn.LSTM/GRU/RNN, nn.Sequential head).

            Writes OUT (a HF model folder: the best dev epoch of the last stage), OUT/log.jsonl, \
            OUT/metrics.json, OUT/checkpoints/ (continue a stopped or killed run with --resume) \
            and, unless --no-report, OUT/report.{md,csv,html} comparing the student with its teacher. \
            An OUT that holds a run is refused unless --resume continues it or --overwrite starts \
            afresh there.
            """)

    @Option(name: .long, help: "The fine-tuned teacher's folder (a classifier: `retort finetune` output).") var teacher: String
    @Option(name: .long, help: "Training data: .csv, .tsv or .jsonl.") var train: String?
    @Option(name: .long, help: "Recurrent student: a transfer set (retort augment's JSONL) to train on instead of --train, with its stored teacher logits.")
    var transfer: String?
    @Option(name: .long, help: "Development data (default: --dev-split of the training data).") var dev: String?
    @Option(name: .customLong("dev-split"), help: "Fraction of the training data held out for evaluation when --dev is not given (default: 0.1).")
    var devSplitGiven: Double?
    /// The fraction held out: --dev-split, 0.1 by default.
    var devSplit: Double { devSplitGiven ?? 0.1 }
    @Option(name: .long, help: "Test data: evaluated at the end and put in the report.") var test: String?
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "Output folder.") var out: String
    @Option(name: .long, help: "transformer (the teacher's layers), or a recurrent student: bilstm, bigru, birnn, lstm, gru, rnn.")
    var student = "transformer"
    @Option(name: .long, help: "odd, even, uniform (the teacher's layers) or a model folder.") var studentInit = "odd"
    /// --student-init's values that take the teacher's layers (any other is a model folder).
    static let teacherLayerInits = ["odd", "even", "uniform"]
    @Option(name: .long, help: "Student layers (default: half the teacher's; a recurrent student: 1).") var studentLayers: Int?
    @Option(name: .long, help: "Recurrent student: hidden units per direction.") var hidden = 300
    @Option(name: .long, help: "Recurrent student: max, mean or last (the final states) over the tokens.") var pooling = "max"
    @Option(name: .long, help: "Recurrent student: teacher (its word embeddings) or learned.") var embeddings = "teacher"
    @Option(name: .long, help: "Recurrent student: embedding width (default: the teacher's; a different width projects its embeddings).")
    var embeddingSize: Int?
    @Option(name: .long, help: "Recurrent student: width of the head's hidden layer.") var headHidden = 200
    @Option(name: .long, help: "Recurrent student: mse (on logits) or soft-ce (at --temperature).") var loss = "mse"
    @Option(name: .long, help: "tinybert or distilbert.") var method = "tinybert"
    @Option(name: .long, help: "TinyBERT stages to run, in order: intermediate, prediction.") var stages = "intermediate,prediction"
    @Option(name: .long, help: "Epochs per stage, comma-separated (one number: the same for each; default 3,2, one stage 3; a recurrent student: 5).")
    var epochs: String?
    @Option(name: .long, help: "Softmax temperature of the soft targets (default 1 for tinybert, 2 for distilbert).") var temperature: Double?
    @Option(name: .long, help: "TinyBERT prediction stage or a recurrent student: weight of cross-entropy against the true labels (0: off).")
    var hardLabelWeight = 0.0
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
        guard list.count == Set(list).count, list == DistillationStage.allCases.filter(list.contains) else {
            throw ValidationError("--stages \(stages): the stages run in TinyBERT's order, each once: intermediate,prediction, or one of them")
        }
        return list
    }

    /// The recurrent student asked for: (cell, bidirectional), nil for a transformer.
    func recurrentStudent() throws -> (RecurrentCell, Bool)? {
        guard student != "transformer" else { return nil }
        let bidirectional = student.hasPrefix("bi")
        guard let cell = RecurrentCell(rawValue: bidirectional ? String(student.dropFirst(2)) : student) else {
            throw ValidationError("--student must be transformer, bilstm, bigru, birnn, lstm, gru or rnn (got '\(student)')")
        }
        return (cell, bidirectional)
    }

    /// --resume into a folder whose saved student is of another kind or shape, named by its flags
    /// before any work (the checkpoint's settings would name the learning rate, or its size fail
    /// to load after the teacher labelled the data). A run that saved no model yet has no config.json.
    func checkResumedStudent() throws {
        let path = (expand(out) as NSString).appendingPathComponent("config.json")
        guard training.resume, FileManager.default.fileExists(atPath: path) else { return }
        let asked = try recurrentStudent()
        guard RecurrentConfig.describes(path) else {
            if asked != nil { throw UserError(description: "--resume: \(out) holds a transformer student; resume it without --student \(student)") }
            return
        }
        let saved = try RecurrentConfig(path: path)
        let name = (saved.bidirectional ? "bi" : "") + saved.cell.rawValue
        guard asked != nil else { throw UserError(description: "--resume: \(out) holds a \(name) student; resume it with --student \(name)") }
        var differences: [String] = []
        if student != name { differences.append("--student \(student) (the saved student: \(name))") }
        if hidden != saved.hiddenSize { differences.append("--hidden \(hidden) (saved: \(saved.hiddenSize))") }
        if (studentLayers ?? 1) != saved.layers { differences.append("--student-layers \(studentLayers ?? 1) (saved: \(saved.layers))") }
        if pooling != saved.pooling.rawValue { differences.append("--pooling \(pooling) (saved: \(saved.pooling.rawValue))") }
        if headHidden != saved.headHiddenSize { differences.append("--head-hidden \(headHidden) (saved: \(saved.headHiddenSize))") }
        if let embeddingSize, embeddingSize != saved.embeddingSize {
            differences.append("--embedding-size \(embeddingSize) (saved: \(saved.embeddingSize))")
        }
        guard differences.isEmpty else {
            throw UserError(description: "--resume: \(out) holds another student: " + differences.joined(separator: ", ") + "; resume with the saved student's flags")
        }
    }

    func epochList() throws -> [Int] {
        let numbers = (epochs ?? "3,2").split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !numbers.isEmpty, numbers.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--epochs: positive whole numbers, one per stage (e.g. 3,2) or one for all")
        }
        try checkCounts(numbers.map { ("--epochs", $0) })
        return numbers.map { $0! }
    }

    func validate() throws {
        try checkRecurrentTeacher(teacher)
        try checkModelArgument(teacher, flag: "--teacher", checkClassifierFolder)
        for (flag, path) in [("--train", train), ("--dev", dev), ("--test", test)] { try checkDataArgument(path, flag: flag, kinds: labelledKinds) }
        try checkDataArgument(transfer, flag: "--transfer", kinds: "retort augment's .jsonl")
        guard let method = DistillationMethod(rawValue: method) else { throw ValidationError("--method must be tinybert or distilbert") }
        try checkDevSplit(devSplit)
        if dev != nil && devSplitGiven != nil { throw ValidationError("--dev-split holds out part of --train when there is no --dev; give one of them") }
        if let studentLayers, studentLayers < 1 { throw ValidationError("--student-layers must be positive") }
        if let temperature, !(temperature > 0 && temperature.isFinite) { throw ValidationError("--temperature must be a positive number") }
        guard [hardLabelWeight, alpha, beta, gamma].allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw ValidationError("--hard-label-weight, --alpha, --beta and --gamma must not be negative")
        }
        if try recurrentStudent() != nil {
            try validateRecurrent()
            return
        }
        guard train != nil, transfer == nil else { throw ValidationError("give --train (--transfer is for recurrent students: --student bilstm, …)") }
        guard hidden == 300, pooling == "max", embeddings == "teacher", embeddingSize == nil, headHidden == 200, loss == "mse" else {
            throw ValidationError("--hidden, --pooling, --embeddings, --embedding-size, --head-hidden and --loss are for recurrent students "
                                  + "(--student bilstm, …); drop them for a transformer student")
        }
        if method == .distilbert {
            guard stages == "intermediate,prediction", hardLabelWeight == 0 else {
                throw ValidationError("--stages and --hard-label-weight are TinyBERT's; with --method distilbert, --beta weighs the labels")
            }
            guard layerMap == nil else {
                throw ValidationError("--layer-map is TinyBERT's; --method distilbert aligns the last hidden states only (--gamma weighs them)")
            }
            guard alpha + beta + gamma > 0 else { throw ValidationError("--alpha, --beta and --gamma are all 0: the student would learn nothing; give one a weight") }
        } else if alpha != 0.5 || beta != 0.5 || gamma != 1.0 {
            throw ValidationError("--alpha, --beta and --gamma are for --method distilbert (TinyBERT's prediction stage takes --hard-label-weight)")
        }
        // The map's form before any work (the layers it names are checked against the models when they are read).
        if let layerMap {
            do { _ = try LayerMap(parsing: layerMap, student: .max, teacher: .max) } catch let error as SettingsError { throw ValidationError(flags(error.message)) }
        }
        try checkStudentInit()
        // The default 3,2 is TinyBERT's two stages; a run of one stage (DistilBERT, or --stages
        // with one) takes its first number, as the library does.
        let count = method == .distilbert ? 1 : try stageList().count, numbers = try epochList()
        guard epochs == nil || numbers.count == 1 || numbers.count == count else {
            throw ValidationError("--epochs: \(numbers.count) numbers for \(count) stage\(count == 1 ? "" : "s") (give one for all, or one per stage)")
        }
    }

    /// A transformer student: a teacher of the BERT family, and --student-init one of the teacher's
    /// layer sets or a BERT-family folder.
    func checkStudentInit() throws {
        if FineTuningRun.isDecoder(expand(teacher)) {
            throw UserError(description: "--teacher \(teacher) is a decoder classifier; it teaches recurrent students (--student bilstm, gru, …), "
                                  + "a transformer student copies an encoder teacher's layers")
        }
        guard !Self.teacherLayerInits.contains(studentInit) else { return }
        let folder = expand(studentInit)
        guard FileManager.default.fileExists(atPath: folder) else {
            throw UserError(description: "--student-init must be odd, even, uniform or a model folder (\(studentInit) is none of them)")
        }
        try checkModelArgument(studentInit, flag: "--student-init") { try checkModelFolder($0) }
        if case let decoder = FineTuningRun.isDecoder(folder), decoder || RecurrentConfig.describes(folder + "/config.json") {
            throw UserError(description: "--student-init \(studentInit) is a \(decoder ? "decoder" : "recurrent student"); "
                                  + "a transformer student starts from a BERT-family folder (BERT, MPNet) or the teacher's layers (odd, even, uniform)")
        }
    }

    func validateRecurrent() throws {
        guard method == "tinybert", stages == "intermediate,prediction", layerMap == nil, studentInit == "odd", lora.rank == nil else {
            throw ValidationError("--method, --stages, --layer-map, --student-init and --lora-rank are for transformer students; drop them with --student \(student)")
        }
        guard alpha == 0.5, beta == 0.5, gamma == 1.0 else { throw ValidationError("--alpha, --beta and --gamma are for --method distilbert; drop them with --student \(student)") }
        guard training.recompute == "none" else { throw ValidationError("--recompute is for transformer students (their GELU outputs); drop it with --student \(student)") }
        if temperature != nil && loss != "soft-ce" { throw ValidationError("--temperature goes with --loss soft-ce (the default loss, mse, has none)") }
        guard PoolingMode(rawValue: pooling) != nil else { throw ValidationError("--pooling must be max, mean or last") }
        guard RecurrentDistillationRun.EmbeddingInit(rawValue: embeddings) != nil else { throw ValidationError("--embeddings must be teacher or learned") }
        guard RecurrentLoss.Soft(rawValue: loss) != nil else { throw ValidationError("--loss must be mse or soft-ce") }
        for (flag, value) in [("--hidden", hidden), ("--head-hidden", headHidden), ("--embedding-size", embeddingSize ?? 1)] where value < 1 {
            throw ValidationError("\(flag) must be positive (got \(value))")
        }
        if let epochs, Int(epochs) == nil || Int(epochs)! < 1 { throw ValidationError("--epochs: one positive whole number for a recurrent student") }
        try checkCounts([("--hidden", hidden), ("--head-hidden", headHidden), ("--embedding-size", embeddingSize), ("--epochs", epochs.flatMap { Int($0) })])
        guard (train == nil) != (transfer == nil) else {
            throw ValidationError(train == nil ? "give --train (labelled texts) or --transfer (retort augment's JSONL)" : "give --train or --transfer, not both")
        }
    }

    func runRecurrent(_ cell: RecurrentCell, bidirectional: Bool) throws {
        let printer = ProgressPrinter(showStages: false)
        try withFlags(printer) {
            let backend = try deviceOptions.backend()
            let spec = columns.spec(labelled: true)
            var config = RecurrentDistillationRun.Configuration(
                teacher: expand(teacher), data: DataFiles(train: expand(train ?? transfer!), dev: dev.map(expand), devSplit: devSplit,
                                                          test: test.map(expand), columns: spec),
                output: expand(out))
            config.transfer = transfer.map(expand)
            config.cell = cell; config.bidirectional = bidirectional; config.hiddenSize = hidden; config.layers = studentLayers ?? 1
            config.pooling = PoolingMode(rawValue: pooling)!; config.embeddings = RecurrentDistillationRun.EmbeddingInit(rawValue: embeddings)!
            config.embeddingSize = embeddingSize; config.headHiddenSize = headHidden
            config.loss.soft = RecurrentLoss.Soft(rawValue: loss)!; config.loss.temperature = temperature ?? 1
            config.loss.hardLabelWeight = hardLabelWeight
            config.training = try training.settings(lora: lora)
            config.training.options.epochs = epochs.flatMap { Int($0) } ?? 5
            let run = RecurrentDistillationRun(config, backend: backend)
            try train(run, printer: printer, teacher: config.teacher, data: config.data, output: config.output, backend: backend, run.run)
        }
    }

    /// Runs a recipe (Ctrl-C stops it with a checkpoint), prints its outcome and, unless
    /// --no-report, the student beside its teacher.
    func train(_ recipe: TrainingRecipe, printer: ProgressPrinter, teacher: String, data: DataFiles, output: String, backend: Backend,
               _ run: () throws -> RunMetrics) throws {
        if DataParallel.prints { recipe.progress = printer.handle }
        Interrupt.catchSIGINT()
        defer { Interrupt.release() }
        let metrics = try run()
        printer.finish()
        guard DataParallel.prints else { return }
        print(String(format: "\ndistilled in %@; best dev accuracy %.4f; student saved in %@", training.trainingTime(metrics),
                     metrics.bestDev?.accuracy ?? .nan, out))
        // Ctrl-C after training (during the test evaluation, which runs to its end): the student and
        // metrics.json are saved; the report is left for later.
        if Interrupt.requested {
            printError("retort: interrupted: no report written (retort compare \(teacher) \(out) makes one)")
            throw ExitCode(Interrupt.exitStatus)
        }
        guard !noReport else { return }
        // Nothing is left to lose: Ctrl-C ends the report at once (its files are written together or not at all).
        Interrupt.release()
        printError("retort: the report: timing the teacher and the student (Ctrl-C skips it; the student is saved)")
        let report = try ComparisonReport.build(runs: [teacher, output], test: data.test, columns: data.columns, maxLength: training.maxLength,
                                                backend: backend, progress: { printError("retort: " + $0) },
                                                skipped: { _ in },   // the run said which --test records it skipped
                                                truncated: { printError("retort: \($0): " + flags($1.message)) })
        let written = try report.write(folder: output)
        print(report.markdownTable)
        print("report: \(written.joined(separator: ", "))")
    }

    func run() throws {
        try withFlags { try training.checkOutput(out, inputs: [("--teacher", teacher)]
                                                         + (Self.teacherLayerInits.contains(studentInit) ? [] : [("--student-init", studentInit)])) }
        try checkResumedStudent()
        try DataParallel.running(nproc: training.nproc) {
            if let (cell, bidirectional) = try recurrentStudent() { return try runRecurrent(cell, bidirectional: bidirectional) }
            try runTransformer()
        }
    }

    private func runTransformer() throws {
        let printer = ProgressPrinter(showStages: true)
        try withFlags(printer) {
            let backend = try deviceOptions.backend()
            let spec = columns.spec(labelled: true)
            var config = DistillationRun.Configuration(
                teacher: expand(teacher), data: DataFiles(train: expand(train!), dev: dev.map(expand), devSplit: devSplit,
                                                          test: test.map(expand), columns: spec),
                output: expand(out))
            config.studentInit = StudentInit(expand(studentInit)); config.studentLayers = studentLayers; config.layerMap = layerMap
            config.method = DistillationMethod(rawValue: method)!; config.stages = try stageList(); config.epochs = try epochList()
            config.temperature = temperature; config.hardLabelWeight = hardLabelWeight
            config.alpha = alpha; config.beta = beta; config.gamma = gamma
            config.training = try training.settings(lora: lora)
            let run = DistillationRun(config, backend: backend)
            try train(run, printer: printer, teacher: config.teacher, data: config.data, output: config.output, backend: backend, run.run)
        }
    }
}
