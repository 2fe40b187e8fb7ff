// Task distillation as a library call: a fine-tuned teacher folder and labelled text in, a
// smaller student (a HF model folder: the best dev epoch of the last stage) out, with
// log.jsonl, metrics.json and checkpoints (RunFolder.swift). TinyBERT runs its intermediate
// stage, then its prediction stage; DistilBERT one stage; either can train the student through
// LoRA. `retort distill` is a thin front end to this.
import Backend
import Foundation

public final class DistillationRun: TrainingRecipe {
    public struct Configuration: Sendable {
        /// A fine-tuned classifier folder (`retort finetune` output).
        public var teacher: String
        /// Training and dev data (the teacher's label names), and test data evaluated at the end.
        public var data: DataFiles
        public var output: String
        /// Where the student's weights come from (the teacher's odd/even layers, a uniform map, a folder).
        public var studentInit: StudentInit = .odd
        /// nil: half the teacher's layers (a folder student: its own).
        public var studentLayers: Int?
        /// "0:1,1:3,2:5" (0-based student:teacher); nil: each layer learns from the one it was copied from.
        public var layerMap: String?
        public var method: DistillationMethod = .tinybert
        /// TinyBERT's stages, in order (DistilBERT has one).
        public var stages: [DistillationStage] = [.intermediate, .prediction]
        /// Epochs per stage (one number: the same for each).
        public var epochs: [Int] = [3, 2]
        /// nil: 1 for TinyBERT, 2 for DistilBERT.
        public var temperature: Double?
        public var hardLabelWeight = 0.0                      // TinyBERT prediction: weight of CE against the labels
        public var alpha = 0.5, beta = 0.5, gamma = 1.0       // DistilBERT: KL, CE, cosine
        /// Batch, optimizer settings, seed, bucketing, max steps per stage (its epochs: `epochs`).
        public var training = TrainingSettings()

        public init(teacher: String, data: DataFiles, output: String) {
            self.teacher = teacher; self.data = data; self.output = output
        }

        /// The stages that run, each with its name in logs and checkpoints.
        public var runStages: [(stage: DistillationStage, name: String)] {
            method == .distilbert ? [(.prediction, "distilbert")] : stages.map { ($0, $0.rawValue) }
        }

        func stageEpochs() throws -> [Int] {
            let count = runStages.count
            guard !epochs.isEmpty, epochs.allSatisfy({ $0 > 0 }), count > 0 else {
                throw InvalidSetting("\(Setting.epochs): positive whole numbers, one per stage (e.g. 3,2) or one for all")
            }
            if epochs.count == 1 { return Array(repeating: epochs[0], count: count) }
            guard epochs.count >= count else { throw InvalidSetting("\(Setting.epochs): \(epochs.count) numbers for \(count) stages") }
            return Array(epochs.prefix(count))
        }
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration, backend: Backend) {
        self.configuration = configuration
        super.init(backend: backend)
    }

    /// Runs every stage (resuming where a checkpoint says), evaluates the saved student on the
    /// test data, writes metrics.json and returns it.
    @discardableResult
    public func run() throws -> RunMetrics {
        let c = configuration, folder = RunFolder(c.output), stages = c.runStages, epochs = try c.stageEpochs()
        var t = c.training
        let seed = t.options.seed
        let teacher = try Classifier.load(folder: c.teacher, maxLength: t.maxLength, backend: backend, seed: seed, inference: true)
        if let method = teacher.model.config.quantization {
            throw InvalidSetting("the teacher \(c.teacher) is quantized (\(method)); distil from the float model it came from")
        }
        let data = try LabelledData.load(c.data, seed: seed, names: teacher.labelNames)
        try LabelledData.checkTest(c.data, names: teacher.labelNames)
        t.options.dataRows = max(data.train.count, data.dev.count)
        let student = try Distillation.makeStudent(teacher: teacher, teacherFolder: c.teacher, initFrom: c.studentInit, layers: c.studentLayers,
                                                   backend: backend, seed: seed)
        let (Ns, Nt) = (student.model.config.layers, teacher.model.config.layers)
        let map = try c.layerMap.map { try LayerMap(parsing: $0, student: Ns, teacher: Nt) } ?? .following(c.studentInit, student: Ns, teacher: Nt)
        try attach(t.lora, to: student.model, seed: seed)
        var loss = DistillationLoss(layerMap: map)
        loss.method = c.method
        loss.temperature = c.temperature ?? (c.method == .distilbert ? 2 : 1)
        loss.hardLabelWeight = c.hardLabelWeight
        loss.alpha = c.alpha; loss.beta = c.beta; loss.gamma = c.gamma
        let projection = DistillationContext.projectionSize(student: student.model.config.hiddenSize, teacher: teacher.model.config.hiddenSize)
        try check(t.plan(student.model, extraTrainable: projection, teacher: (teacher.model, Set(map.pairs.map(\.teacher)))))
        let context = try DistillationContext(teacher: teacher, student: student, layerMap: map, method: c.method, maxBatch: t.options.rankBatchSize,
                                              seed: seed)
        progress(.note("\(data.train.count) training and \(data.dev.count) dev examples; teacher \(Nt) layers, student \(Ns) layer\(Ns == 1 ? "" : "s") "
                       + "(init \(c.studentInit.name)), " + (c.method == .distilbert ? "last hidden states aligned" : "layer map \(map)")
                       + (context.projection.isEmpty ? "" : ", with a learned projection")))
        for note in data.skipped { progress(.note(note)) }
        func stageOptions(_ index: Int) -> TrainingOptions {
            var options = t.resolvedOptions
            options.epochs = epochs[index]
            options.seed = seed &+ UInt64(index)
            options.evalEvery = nil
            return options
        }
        let trainEncodings = student.encode(data.train), devEncodings = student.encode(data.dev)
        reportTruncation(train: trainEncodings, dev: devEncodings, maxLength: t.maxLength)
        let fingerprint = Self.fingerprint(train: trainEncodings, trainLabels: data.trainLabels, dev: devEncodings, devLabels: data.devLabels,
                                           names: data.names)
        let (runner, resumePoint) = try open(folder, resume: t.resume, stages: stages.map(\.name), policy: t.checkpoints,
                                             examples: data.train.count, fingerprint: fingerprint, lora: t.lora, options: stageOptions)
        var best: ClassificationMetrics?, lastLoss: Double?, steps = 0, dataParallel: DataParallelMetrics?
        for (index, (stage, name)) in stages.enumerated() {
            loss.stage = stage
            let last = index == stages.count - 1
            let options = stageOptions(index)
            if let resumePoint, index < resumePoint.stageIndex {   // finished before the checkpoint
                steps += options.totalSteps(examples: data.train.count)
                continue
            }
            // Only the last stage picks a best epoch on the dev set; earlier ones just run to the end.
            let trainer = try Trainer(classifier: student, train: trainEncodings, trainLabels: data.trainLabels,
                                      dev: last ? devEncodings : [], devLabels: last ? data.devLabels : [], options: options,
                                      objective: try context.objective(loss), recomputeGelu: t.recomputeGelu)
            let checkpoint = resumePoint.flatMap { $0.stageIndex == index ? $0.path : nil }
            best = try runner.run(trainer, stage: name, stageIndex: index, lastStage: last, epochs: options.epochs, from: checkpoint) {
                if last { try student.save(folder: c.output, tokenizerSource: c.teacher, adapter: false) }
            }
            lastLoss = trainer.lastLoss ?? lastLoss
            steps += trainer.step
            dataParallel = trainer.dataParallel ?? dataParallel
        }
        var metrics = RunMetrics(method: c.method == .distilbert ? "distilbert" : (t.lora == nil ? "tinybert" : "tinybert-lora"))
        // DistilBERT aligns the last hidden states, with no map of layers, in its one stage of its own name.
        metrics.studentInit = c.studentInit.name; metrics.layerMap = c.method == .distilbert ? nil : map.description; metrics.teacher = c.teacher
        metrics.stages = stages.map(\.name); metrics.trainExamples = data.train.count; metrics.devExamples = data.dev.count
        metrics.labels = data.names
        metrics.trainableParameters = student.model.trainableCount + context.projection.reduce(0) { $0 + $1.weight.count }
        metrics.parameters = student.model.layout.total; metrics.steps = steps; metrics.finalTrainLoss = lastLoss
        metrics.trainSeconds = runner.trainSeconds; metrics.device = backend.kind.rawValue; metrics.temperature = loss.temperature
        metrics.bestDev = best
        metrics.dataParallel = dataParallel
        if let test = c.data.test, writesOutputs {   // the saved (best) student, as a user will load it, in the batches the memory plan allowed for
            let saved = try Classifier.load(folder: c.output, maxLength: t.maxLength, backend: backend, inference: true)
            let m = try saved.evaluate(testFile: test, columns: c.data.columns, batchSize: t.options.rankBatchSize, skipped: { progress(.note($0)) },
                                       progress: { progress(.evaluating(set: "test", done: $0, total: $1, seconds: $2)) })
            metrics.test = m
            progress(.tested(m))
        }
        if writesOutputs { try folder.write(metrics) }
        return metrics
    }
}
