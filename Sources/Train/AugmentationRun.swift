// A generated transfer set as a library call (`retort augment`): a decoder writes new texts from
// prompts taken from the training set (the first words of a random training text; with
// --generator-epochs it is first fine-tuned on the training texts as a causal language model),
// the texts are cleaned (TransferSetCleaner: every rule counted), and the teacher labels every
// original and kept text. The output is JSONL, one object per text —
//   {"text": …, "label": …, "teacher_label": …, "logits": […], "origin": "original" | "generated"}
// — "label" is the data's own label for an original text (the teacher's when the data is a .txt of
// unlabelled lines) and the teacher's for a generated one;
// every retort command reads it as labelled data, and `retort distill --transfer` trains on the
// stored logits without running the teacher again. Written to a temporary file, then renamed.
import Backend
import Foundation
import Models

public final class AugmentationRun {
    public struct Configuration: Sendable {
        /// A decoder: an HF folder or a .gguf (a language model, not a classifier).
        public var generator: String
        /// A fine-tuned classifier folder.
        public var teacher: String
        /// Labelled training data (its texts prompt the generator and are written as originals).
        public var data: DataFiles
        public var output: String
        public var count = 1000
        public var promptWords = 3
        public var maxNewTokens = 40
        public var sampling = SamplingOptions(temperature: 1, topK: 0, topP: 0.95, seed: 42)
        public var batchSize = 64
        /// Fine-tune the generator on the training texts first, for this many epochs, into `generatorOutput`.
        public var generatorEpochs: Int?
        public var generatorOutput: String?
        /// Where the fine-tuned generator goes: generatorOutput, else the output without .jsonl, plus -generator.
        public var generatorFolder: String { generatorOutput ?? (output as NSString).deletingPathExtension + "-generator" }
        public var generatorTraining = TrainingSettings()
        public var cleaning = TransferSetCleaner.Rules()
        /// Tokens per text for the teacher.
        public var maxLength = 128

        public init(generator: String, teacher: String, data: DataFiles, output: String) {
            self.generator = generator; self.teacher = teacher; self.data = data; self.output = output
        }
    }

    public struct Summary: Sendable {
        public var originals = 0, generated = 0, kept = 0
        public var dropped: [String: Int] = [:]
        public var generatorFolder: String
        public var tokensPerSecond = 0.0
        /// Generation was stopped (Ctrl-C): the texts finished by then were cleaned, labelled and written.
        public var interrupted = false
    }

    public let configuration: Configuration
    public let backend: Backend
    public var progress: (RunEvent) -> Void = { _ in }
    /// Asked during the generator's fine-tuning (which then saves a checkpoint and throws
    /// RunInterrupted) and before each generation step (which then ends with the texts finished).
    public var shouldStop: () -> Bool = { Interrupt.requested }

    public init(_ configuration: Configuration, backend: Backend) {
        self.configuration = configuration; self.backend = backend
    }

    @discardableResult
    public func run() throws -> Summary {
        let c = configuration
        guard c.count >= 1, c.promptWords >= 1, c.maxNewTokens >= 1, c.batchSize >= 1 else {
            throw InvalidSetting("--count, --prompt-words, --max-new-tokens and --batch-size must be positive")
        }
        let teacher = try loadTextClassifier(folder: c.teacher, maxLength: c.maxLength, backend: backend, packWeights: false)
        // A .txt is one unlabelled text per line: the teacher labels the originals too.
        let unlabelled = c.data.train.hasSuffix(".txt")
        var columns = unlabelled ? ColumnSpec(text: .name("text")) : c.data.columns
        if columns.label == nil && !unlabelled { columns.label = .name("label") }
        guard columns.pair == nil else {
            throw InvalidSetting("augment writes single texts; a transfer set of text pairs is not supported (drop the pair column)")
        }
        let examples = try Dataset.loadWithText(c.data.train, columns: columns) { progress(.note($0)) }
        let labels = unlabelled ? nil : try Dataset.labelIds(examples, names: teacher.labelNames, path: c.data.train)
        let generator = try fineTunedGenerator(examples)
        var summary = Summary(originals: examples.count, generatorFolder: generator)
        let texts = try generate(from: generator, prompts: examples.map(\.text), summary: &summary)
        var cleaner = TransferSetCleaner(rules: c.cleaning, training: examples.map(\.text))
        let kept = texts.compactMap { cleaner.admit($0) }
        (summary.generated, summary.kept) = (texts.count, kept.count)
        summary.dropped = Dictionary(uniqueKeysWithValues: cleaner.dropped.map { ($0.key.rawValue, $0.value) })
        progress(.note(cleaner.summary(generated: texts.count)))

        let all = examples + kept.map { Example(text: $0, line: 0) }
        let started = Date()
        let logits = try teacherLogits(teacher, teacher.encode(all), progress: progress)
        progress(.note(String(format: "the teacher labelled %d texts in %.1f s", all.count, Date().timeIntervalSince(started))))
        var lines: [String] = []
        for (i, row) in logits.enumerated() {
            let predicted = teacher.labelNames[row.indices.max { row[$0] < row[$1] }!]
            let original = i < examples.count
            let object: [String: Any] = ["text": all[i].text, "label": original ? labels.map { teacher.labelNames[Int($0[i])] } ?? predicted : predicted,
                                         "teacher_label": predicted, "logits": row.map(Double.init), "origin": original ? "original" : "generated"]
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
                                as: UTF8.self))
        }
        try writeAtomically(Data((lines.joined(separator: "\n") + "\n").utf8), to: c.output)
        return summary
    }

    /// The generator to sample from: the one given, or — with generatorEpochs — it fine-tuned on
    /// the training texts as a causal language model.
    func fineTunedGenerator(_ examples: [Example]) throws -> String {
        let c = configuration
        guard let epochs = c.generatorEpochs else { return c.generator }
        let folder = c.generatorFolder
        let texts = FileManager.default.temporaryDirectory.appendingPathComponent("retort-augment-\(getpid())-texts.txt").path
        defer { try? FileManager.default.removeItem(atPath: texts) }
        try writeAtomically(Data(examples.map { TransferSetCleaner.normalised($0.text) }.joined(separator: "\n").utf8), to: texts)
        var config = FineTuningRun.Configuration(model: c.generator, data: DataFiles(train: texts, columns: ColumnSpec(text: .name("text"))),
                                                 output: folder)
        config.objective = .causalLM
        config.training = c.generatorTraining
        config.training.options.epochs = epochs
        progress(.note("fine-tuning the generator on \(examples.count) training texts for \(epochs) epoch\(epochs == 1 ? "" : "s") into \(folder)"))
        let run = FineTuningRun(config, backend: backend)
        run.progress = progress
        run.shouldStop = shouldStop
        try run.run()
        return folder
    }

    /// `count` texts: each the first words of a random training text (a seeded draw) and what the
    /// generator writes after them, up to the end of its line.
    func generate(from path: String, prompts sources: [String], summary: inout Summary) throws -> [String] {
        let c = configuration
        let model = try DecoderModel.load(path, backend: backend, inference: true)
        guard model.labels == 0 else {
            throw InvalidSetting("the generator \(path) is a classifier; give a language model (a decoder folder or .gguf)")
        }
        try model.packForInference()
        let tokenizer = try DecoderTokenizer(model: path, config: model.config)
        var rng = SplitMix(seed: c.sampling.seed ^ 0xA06)
        let sources = sources.map { $0.split(whereSeparator: { $0.isWhitespace }) }.filter { !$0.isEmpty }
        guard !sources.isEmpty else { throw DataError("\(c.data.train): no training text has a word to start a prompt with") }
        let prompts = (0..<c.count).map { _ -> String in
            let words = sources[Int(rng.next() % UInt64(sources.count))]
            return words.prefix(max(1, min(c.promptWords, words.count - 1))).joined(separator: " ")
        }
        let requests = try prompts.map { prompt -> GenerationRequest in
            let ids = tokenizer.bpe.encodeAsInput(prompt)
            guard ids.count + c.maxNewTokens <= model.config.maxPositions else {
                throw InvalidSetting("--max-new-tokens \(c.maxNewTokens) after a \(ids.count)-token prompt exceeds \(path)'s context of \(model.config.maxPositions)")
            }
            return GenerationRequest(prompt: ids, maxNewTokens: c.maxNewTokens)
        }
        // One call: --batch-size sequences at a time, a waiting prompt taking each freed slot; a
        // prompt's random stream follows its place, not its batch.
        var bytes = [[UInt8]](repeating: [], count: prompts.count), tokens = 0, done = 0, reported = 0
        var cut = Set<Int>()   // sequences Ctrl-C ended before their line did
        let started = Date(), newline = UInt8(ascii: "\n")
        var lastReport = started   // a line every 10 % of the texts, and at least every 30 s
        _ = try model.generate(requests, batchSize: c.batchSize, sampling: c.sampling, endTokens: tokenizer.endTokens,
                               onToken: { s, token in bytes[s] += tokenizer.bpe.bytes(token); tokens += 1 },   // (the rate counts unfinished texts' tokens too)
                               stopped: { s, _ in bytes[s].contains(newline) },
                               finished: { s, result in
            if result.finish == "interrupted" { cut.insert(s); return }
            done += 1
            if done * 10 / prompts.count > reported || done == prompts.count || Date().timeIntervalSince(lastReport) >= 30 {
                reported = done * 10 / prompts.count
                lastReport = Date()
                let seconds = Date().timeIntervalSince(started)
                progress(.note(String(format: "generated %d/%d texts (%.1f new tokens/s, %@ left)", done, prompts.count,
                                      Double(tokens) / max(seconds, 1e-9), Self.duration(seconds / Double(done) * Double(prompts.count - done)))))
            }
        }, interrupted: shouldStop)
        summary.interrupted = !cut.isEmpty
        if summary.interrupted { progress(.note("stopped (Ctrl-C or SIGTERM) after \(done) of \(prompts.count) texts; the unfinished ones are dropped")) }
        let texts = prompts.indices.filter { !cut.contains($0) }.map { i -> String in
            let line = bytes[i].split(separator: newline, omittingEmptySubsequences: false).first.map(Array.init) ?? []
            return prompts[i] + String(decoding: line, as: UTF8.self)
        }
        summary.tokensPerSecond = Double(tokens) / max(Date().timeIntervalSince(started), 1e-9)
        return texts
    }

    static func duration(_ seconds: Double) -> String {
        seconds < 60 ? String(format: "%.0fs", seconds) : String(format: "%dm%02ds", Int(seconds) / 60, Int(seconds) % 60)
    }
}
