// Distillation into a recurrent student (BiLSTM, GRU, RNN) as a library call: a fine-tuned
// teacher classifier (BERT-family or decoder) and labelled text in; the teacher's logits for every
// training text, computed once before training (the teacher has no dropout at inference, so they
// are what it would give at every step); a student trained on them (RecurrentStudentTask) out —
// its folder holds config.json, model.safetensors (PyTorch's names) and the teacher's tokenizer
// files; log.jsonl, metrics.json and checkpoints as every run.
import Backend
import Foundation
import Models

public final class RecurrentDistillationRun: TrainingRecipe {
    public enum EmbeddingInit: String, Sendable, CaseIterable {
        case teacher    // the teacher's word embeddings (a fixed random projection when the widths differ)
        case learned    // N(0, 1), nn.Embedding's default
    }

    public struct Configuration: Sendable {
        public var teacher: String
        public var data: DataFiles
        public var output: String
        public var cell: RecurrentCell = .lstm
        public var bidirectional = true
        public var hiddenSize = 300
        public var layers = 1
        public var pooling: PoolingMode = .max
        /// nil: the teacher's width (with teacher embeddings), else 300.
        public var embeddingSize: Int?
        public var embeddings: EmbeddingInit = .teacher
        public var headHiddenSize = 200
        public var loss = RecurrentLoss()
        /// A transfer set (`retort augment` output): train on its texts and stored teacher logits
        /// instead of `data.train` (dev: `data.dev`, or `data.devSplit` of its original texts).
        public var transfer: String?
        public var training = TrainingSettings()

        public init(teacher: String, data: DataFiles, output: String) {
            self.teacher = teacher; self.data = data; self.output = output
        }

        /// "bilstm", "gru", "bigru", "rnn", … as reports name the method.
        public var methodName: String { (bidirectional ? "bi" : "") + cell.rawValue }
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration, backend: Backend) {
        self.configuration = configuration
        super.init(backend: backend)
    }

    @discardableResult
    public func run() throws -> RunMetrics {
        let c = configuration, t = c.training, folder = RunFolder(c.output), seed = t.options.seed
        guard c.hiddenSize > 0, c.layers > 0, c.headHiddenSize > 0, (c.embeddingSize ?? 1) > 0 else {
            throw InvalidSetting("\(Setting.studentLayers), \(Setting.hiddenSize), the head's and the embeddings' widths must be positive")
        }
        let teacher = try loadTextClassifier(folder: c.teacher, maxLength: t.maxLength, backend: backend, packWeights: false)
        let source = try TeacherVocabulary(teacher, folder: c.teacher)
        // The data before the student: a file that cannot train is said before the plan and the student's line.
        let data: LabelledData, stored: [[Float]]?
        if let transfer = c.transfer {
            let set = try TransferSet(path: transfer, names: teacher.labelNames)
            let (split, logits) = try set.split(dev: c.data, seed: seed)
            (data, stored) = (split, logits)
            progress(.note(data.summary + " from \(transfer) (\(set.generatedCount) generated); the teacher's stored logits"))
        } else {
            (data, stored) = (try LabelledData.load(c.data, seed: seed, names: teacher.labelNames), nil)
            progress(.note(data.summary))
        }
        for note in data.skipped { progress(.note(note)) }
        try LabelledData.checkTest(c.data, names: data.names)
        let width = c.embeddingSize ?? (c.embeddings == .teacher ? source.width : 300)
        var config = RecurrentConfig(cell: c.cell, vocabSize: source.size, embeddingSize: width, hiddenSize: c.hiddenSize, layers: c.layers,
                                     bidirectional: c.bidirectional, pooling: c.pooling, headHiddenSize: c.headHiddenSize,
                                     padTokenId: Int(source.pad))
        config.tokenizer = source.kind
        config.emptyTokenId = Int(source.empty)
        var options = t.options
        options.dataRows = max(data.train.count, data.dev.count)
        options.learningRate = t.learningRate ?? 1e-3
        // Before the student is made: a size that would not fit is refused, not allocated.
        try check(MemoryPlan(recurrent: config, labels: teacher.labelNames.count, backend: backend,
                             shape: MemoryPlan.Shape(batch: options.rankBatchSize, length: t.maxLength, recomputeGelu: false)))
        let model = try RecurrentModel(config: config, labels: teacher.labelNames.count, backend: backend, seed: seed)
        if c.embeddings == .teacher { try source.initialise(model.embedding.weight, width: width, backend: backend, seed: seed) }
        progress(.note("\(c.methodName) student: \(c.layers) layer\(c.layers == 1 ? "" : "s") of \(c.hiddenSize), \(c.pooling.rawValue) pooling, "
                       + "embeddings \(width) wide (\(c.embeddings == .teacher ? (width == source.width ? "the teacher's" : "the teacher's, projected") : "learned")), "
                       + "\(model.layout.total) parameters; loss \(c.loss.soft.rawValue)"
                       + (c.loss.hardLabelWeight > 0 ? " + \(c.loss.hardLabelWeight)·CE" : "")))
        // Before the teacher's logits (minutes on a large set): a --resume that cannot continue.
        let train = teacher.encode(data.train), dev = teacher.encode(data.dev)
        reportTruncation(train: train, dev: dev, maxLength: t.maxLength)
        if let stored, let transfer = c.transfer,
           let warning = try TransferSet.teacherMismatch(data.train, train, logits: stored, teacher: teacher, path: transfer) {
            progress(.warning(warning))
        }
        let fingerprint = Self.fingerprint(train: train, trainLabels: data.trainLabels, dev: dev, devLabels: data.devLabels, names: data.names)
        let (runner, resumePoint) = try open(folder, resume: t.resume, stages: [], policy: t.checkpoints, examples: data.train.count,
                                             fingerprint: fingerprint, lora: t.lora) { _ in options }
        let started = Date()
        let teacherLogits = try stored ?? Train.teacherLogits(teacher, train, progress: progress)
        if stored == nil {
            progress(.note(String(format: "teacher logits for %d training texts in %.1f s", train.count, Date().timeIntervalSince(started))))
        }

        let task = try RecurrentStudentTask(model: model, teacherLogits: teacherLogits, loss: c.loss, maxBatch: options.rankBatchSize,
                                            maxLength: t.maxLength)
        let trainer = try Trainer(task: task, train: train, trainLabels: data.trainLabels, dev: dev, devLabels: data.devLabels, options: options)
        let best = try runner.run(trainer, stage: nil, stageIndex: 0, epochs: options.epochs, from: resumePoint?.path) {
            try model.save(folder: c.output, id2label: teacher.id2label, tokenizer: source.kind, maxLength: t.maxLength)
            try source.copyTokenizer(c.output)
        }
        var metrics = RunMetrics(method: c.methodName)
        metrics.teacher = c.teacher; metrics.trainExamples = train.count; metrics.devExamples = dev.count; metrics.labels = data.names
        metrics.parameters = model.layout.total; metrics.trainableParameters = model.layout.total; metrics.steps = trainer.step
        metrics.finalTrainLoss = trainer.lastLoss; metrics.trainSeconds = runner.trainSeconds; metrics.device = backend.kind.rawValue
        metrics.temperature = c.loss.soft == .softCrossEntropy ? c.loss.temperature : nil
        metrics.bestDev = best
        metrics.dataParallel = trainer.dataParallel
        if let test = c.data.test, writesOutputs {   // the saved (best) student, as a user will load it, in the batches the memory plan allowed for
            let saved = try RecurrentClassifier.load(folder: c.output, maxLength: nil, backend: backend)
            metrics.test = try saved.evaluate(testFile: test, columns: c.data.columns, batchSize: options.rankBatchSize, skipped: { progress(.note($0)) },
                                              progress: { progress(.evaluating(set: "test", done: $0, total: $1, seconds: $2)) })
            progress(.tested(metrics.test!))
        }
        if writesOutputs { try folder.write(metrics) }
        return metrics
    }
}

/// What a student takes from its teacher's tokenizer: the vocabulary size, the padding id, the
/// kind of tokenizer and its files, and the word embeddings [V, C].
struct TeacherVocabulary {
    let size: Int, pad: Int32, kind: String, width: Int
    /// The token an empty text becomes (the teacher's rule).
    let empty: Int32
    let embeddings: Tensor
    let copyTokenizer: (String) throws -> Void

    init(_ teacher: TextClassifier, folder: String) throws {
        if let t = teacher as? Classifier {
            let c = t.model.config
            (size, pad, kind, width) = (c.vocabSize, Int32(c.padTokenId), "wordpiece", c.hiddenSize)
            empty = pad
            embeddings = t.model.parameters.wordEmbeddings.weight
            copyTokenizer = { try Classifier.copyTokenizer(from: folder, to: $0) }
        } else if let t = teacher as? DecoderClassifier {
            let c = t.model.config
            (size, kind, width) = (c.vocabSize, "bpe", c.hiddenSize)
            pad = Int32(c.padTokenId ?? c.eosTokenIds.first ?? 0)
            empty = t.tokenizer.endTokens.min() ?? 0   // DecoderClassifier.encoding's rule
            embeddings = t.model.parameters.embedTokens.weight
            copyTokenizer = { try t.tokenizer.save(folder: $0, source: folder) }
        } else {
            throw InvalidSetting("the teacher \(folder) is a recurrent student; distil from a fine-tuned transformer classifier")
        }
    }

    /// The student's table [V, E] from the teacher's [V, C]: a copy, or when E ≠ C the teacher's
    /// rows times a fixed random matrix of N(0, 1/E) entries (which keeps the rows' norms, in
    /// expectation).
    func initialise(_ table: Tensor, width E: Int, backend: Backend, seed: UInt64) throws {
        guard E != width else { backend.copy(table, embeddings); return }
        var normal = NormalRandom(seed: seed ^ 0xE3BE)
        let scale = 1 / Float(E).squareRoot()
        let projection = try backend.tensor((0..<(width * E)).map { _ in normal.next() * scale }, .f32)
        backend.matmul(table, embeddings, projection, bias: nil, Gemm(m: size, n: E, k: width))
    }
}
