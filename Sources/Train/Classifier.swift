// A BERT classifier with its tokenizer and label names: what a model folder holds, and the
// batched evaluation and prediction every command uses.
import Backend
import Foundation

/// What eval and predict need of a classifier, whatever the model: a BERT-family `Classifier`
/// or a decoder's `DecoderClassifier`.
public protocol TextClassifier: AnyObject {
    var labelNames: [String] { get }
    /// Tokens per example, specials included.
    var maxLength: Int { get }
    /// Every weight of the model (adapters merged or not, as loaded).
    var parameterCount: Int { get }
    func encode(_ examples: [Example]) -> [Encoding]
    /// Logits [N][labels] of the encodings, in batches.
    func classify(_ encodings: [Encoding], batchSize: Int) throws -> [[Float]]
    /// Inference speed on its device: B=1 latency and B=32 throughput on `length`-token texts.
    func speed(length: Int, repeats: Int) throws -> InferenceSpeed
    /// Logits of up to `batchSize` encodings at a time, the activation arena made once for every
    /// call (a server's many small batches).
    func forwardSession(batchSize: Int) throws -> ([Encoding]) throws -> [[Float]]
}

/// A classifier folder as eval, predict and compare take it: a decoder fine-tuned as a
/// classifier, a recurrent student, or a BERT-family one. `maxLength` nil: 128 tokens, or the
/// model's maximum when smaller (a recurrent student: the length it was trained at).
/// `packWeights`: a decoder keeps its weights packed for the backend's matmuls too (DecoderPacking:
/// faster, as much memory again); false for a teacher that lives beside a student's training.
public func loadTextClassifier(folder: String, maxLength: Int?, backend: Backend, packWeights: Bool = true) throws -> TextClassifier {
    try checkClassifierFolder(folder)
    if RecurrentConfig.describes((folder as NSString).appendingPathComponent("config.json")) {
        return try RecurrentClassifier.load(folder: folder, maxLength: maxLength, backend: backend)
    }
    if FineTuningRun.isDecoder(folder) {
        return try DecoderClassifier.load(folder: folder, maxLength: maxLength, backend: backend, packWeights: packWeights)
    }
    let length = try maxLength ?? min(128, BertConfig(path: (folder as NSString).appendingPathComponent("config.json")).maxTokens)
    return try Classifier.load(folder: folder, maxLength: length, backend: backend, inference: true)
}

/// A model folder's name as tables and pages show it: its own, also when given as "." or "runs/x/".
public func modelName(folder: String) -> String {
    (URL(fileURLWithPath: folder).standardizedFileURL.path as NSString).lastPathComponent
}

private let onnxExport = "an ONNX export, for ONNX Runtime; retort runs the model folder it was exported from"

/// Refuses what is not a model folder in words that say what it is instead: a missing path, a
/// file (a .gguf is a language model: accepted where `gguf`), an ONNX export, a LoRA adapter's
/// folder, a run that saved no model yet, a folder without config.json.
public func checkModelFolder(_ folder: String, gguf: Bool = false) throws {
    let files = FileManager.default
    var isDirectory: ObjCBool = false
    guard files.fileExists(atPath: folder, isDirectory: &isDirectory) else {
        throw CheckpointError("\(folder): no such model folder" + (gguf ? " or .gguf file" : ""))
    }
    guard isDirectory.boolValue else {
        let name = folder.lowercased()
        if gguf && name.hasSuffix(".gguf") { return }
        throw CheckpointError(name.hasSuffix(".gguf")
            ? "\(folder): a GGUF language model, not a classifier (retort finetune makes a classifier folder from it; retort generate writes text with it)"
            : name.hasSuffix(".onnx") ? "\(folder): \(onnxExport)"
            : "\(folder): a file, not a model folder; give the folder that holds it (config.json, model.safetensors and the tokenizer's files)")
    }
    let path = { (file: String) in (folder as NSString).appendingPathComponent(file) }
    if files.fileExists(atPath: path("model.onnx")) && !files.fileExists(atPath: path("model.safetensors"))
        && !files.fileExists(atPath: path("model.safetensors.index.json")) {
        throw CheckpointError("\(folder): \(onnxExport)")
    }
    guard files.fileExists(atPath: path("config.json")) else {
        if files.fileExists(atPath: path("adapter_config.json")) {
            throw CheckpointError("\(folder): a LoRA adapter alone; give the model folder that holds it (the one retort finetune wrote)")
        }
        if case let run = RunFolder(folder), run.runFile != nil {
            throw CheckpointError("\(folder): a run that has not saved a model yet (stopped before its first evaluation); "
                                  + (run.hasCheckpoint ? "continue it with the same command and --resume" : "run it again"))
        }
        if files.fileExists(atPath: path("vocab.json")) || files.fileExists(atPath: path("tokenizer.json")) || files.fileExists(atPath: path("vocab.txt")) {
            throw CheckpointError("\(folder): a tokenizer alone, without a model (no config.json)")
        }
        if let gguf = ((try? files.contentsOfDirectory(atPath: folder)) ?? []).sorted().first(where: { $0.hasSuffix(".gguf") }) {
            throw CheckpointError("\(folder): not a model folder (no config.json); it holds \(gguf): give that file")
        }
        throw CheckpointError("\(folder): not a model folder (no config.json)")
    }
    guard !ComparisonReport.weightFiles(folder).isEmpty || files.fileExists(atPath: path("model.safetensors.index.json")) else {
        throw CheckpointError("\(folder): config.json but no weights (model.safetensors)"
                              + (files.fileExists(atPath: path("pytorch_model.bin")) ? "; its pytorch_model.bin is not read here: save the model as safetensors "
                                 + "(transformers: model.save_pretrained(folder), which writes model.safetensors)" : ""))
    }
}

/// Whether a decoder's config.json (`object`, with `id2label` as DecoderConfig read it) is a
/// classifier's: its architectures say …ForSequenceClassification (as Retort and transformers
/// write them), or, where it names none, its id2label has two or more labels (the rule eval and
/// predict load a decoder classifier by). nil: the classifier's architecture, or "N labels".
public func decoderClassifierKind(_ object: [String: Any]?, id2label: [Int: String]) -> String? {
    if let architectures = object?["architectures"] as? [String] {
        return architectures.first { $0.hasSuffix("ForSequenceClassification") }
    }
    return id2label.count >= 2 ? "\(id2label.count) labels" : nil
}

/// checkModelFolder, and refuses a language model (a decoder without labels) and a pretrained
/// encoder without a classifier head.
public func checkClassifierFolder(_ folder: String) throws {
    try checkModelFolder(folder)
    let path = { (file: String) in (folder as NSString).appendingPathComponent(file) }
    // The config (and an encoder's weights file) read in full: a broken one is refused here, before
    // compare measures the folders before it or distill trains.
    let config = path("config.json"), decoder = FineTuningRun.isDecoder(folder)
    if decoder {
        guard try DecoderConfig(path: config).id2label.count >= 2 else {
            throw CheckpointError("\(folder): not a classifier (config.json has no id2label); generate text with it instead: retort generate --model \(folder)")
        }
    } else if RecurrentConfig.describes(config) {
        _ = try RecurrentConfig(path: config)
    } else {
        let family = try BertConfig(path: config).family
        if FileManager.default.fileExists(atPath: path("model.safetensors")),
           try SafeTensorsFile(path: path("model.safetensors")).entries[BertModel.classifierTensor(family)] == nil {
            // a random head would label texts at random
            throw CheckpointError("\(folder): a pretrained encoder without a classifier head (model.safetensors has no "
                                  + "'\(BertModel.classifierTensor(family))'); fine-tune it on labelled texts first (retort finetune)")
        }
    }
}

extension TextClassifier {
    /// The label names by class index, as config.json's id2label.
    public var id2label: [Int: String] { Dictionary(uniqueKeysWithValues: labelNames.enumerated().map { ($0, $1) }) }

    /// The metrics on a labelled test file (`columns`' label column, by default "label"), in batches;
    /// records without text are skipped (as in the run's dev data) and `skipped` says which;
    /// `progress` hears (texts done, all, seconds) as `evaluate` reports them.
    public func evaluate(testFile path: String, columns: ColumnSpec, batchSize: Int, skipped: (String) -> Void = { _ in },
                         progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> ClassificationMetrics {
        var columns = columns
        if columns.label == nil { columns.label = .name("label") }
        let examples = try Dataset.loadWithText(path, columns: columns, skipped: skipped)
        return try evaluate(encode(examples), labels: try Dataset.labelIds(examples, names: labelNames, path: path), batchSize: batchSize,
                            progress: progress)
    }

    /// Accuracy, macro-F1, MCC and mean cross-entropy over labelled encodings, in order of length;
    /// `progress` hears (texts done, all, seconds) after every 512 texts or so.
    public func evaluate(_ encodings: [Encoding], labels: [Int32], batchSize: Int,
                         progress: (Int, Int, Double) -> Void = { _, _, _ in }) throws -> ClassificationMetrics {
        let batchSize = max(1, min(batchSize, encodings.count))   // no arena larger than the texts need
        let logits = try classifyInSlices(encodings, slice: max(1, 512 / batchSize) * batchSize, progress: progress,
                                          classify: try forwardSession(batchSize: batchSize))   // one arena for every slice
        return ClassificationMetrics(logits: logits, labels: labels, classes: labelNames.count)
    }

    /// Logits [N][labels] of the encodings, in their order, computed in batches of similar lengths.
    public func classifyByLength(_ encodings: [Encoding], batchSize: Int) throws -> [[Float]] {
        try inLengthOrder(encodings) { try classify($0, batchSize: batchSize) }
    }
}

/// The logits of `encodings` (in their order), run in order of length `slice` texts at a time
/// through `classify`, `progress` hearing (texts done, all, seconds) after each slice. With
/// `slice` a multiple of classify's batch size these are the batches one call over all of them
/// (classifyByLength) runs, so the logits are the same.
public func classifyInSlices(_ encodings: [Encoding], slice: Int, progress: (Int, Int, Double) -> Void,
                             classify: ([Encoding]) throws -> [[Float]]) rethrows -> [[Float]] {
    let started = Date()
    return try inLengthOrder(encodings) { sorted in
        var rows: [[Float]] = []
        for start in stride(from: 0, to: sorted.count, by: max(1, slice)) {
            rows += try classify(Array(sorted[start..<min(start + max(1, slice), sorted.count)]))
            progress(rows.count, sorted.count, Date().timeIntervalSince(started))
        }
        return rows
    }
}

/// A teacher's logits for `encodings` (in their order), as classifyByLength computes them — in
/// order of length, batches of `batchSize` — reported after every 512 texts (.labelled).
public func teacherLogits(_ teacher: TextClassifier, _ encodings: [Encoding], batchSize: Int = 64,
                          progress: (RunEvent) -> Void) throws -> [[Float]] {
    try classifyInSlices(encodings, slice: max(1, 512 / batchSize) * batchSize, progress: { progress(.labelled(done: $0, total: $1, seconds: $2)) },
                         classify: try teacher.forwardSession(batchSize: batchSize))
}

/// `logits` of the encodings sorted by token count (ties in their order), returned in the
/// encodings' order. A batch pads to its longest text, so batches of similar lengths waste little
/// compute (`retort predict` over SST-2's 1,821 test sentences in batches of 32: 22.0 s in the
/// file's order, 11.5 s in order of length, on 2 Zen 3 cores).
public func inLengthOrder(_ encodings: [Encoding], _ logits: ([Encoding]) throws -> [[Float]]) rethrows -> [[Float]] {
    let order = encodings.indices.sorted { (encodings[$0].ids.count, $0) < (encodings[$1].ids.count, $1) }
    let sorted = try logits(order.map { encodings[$0] })
    var out = [[Float]](repeating: [], count: encodings.count)
    for (position, index) in order.enumerated() { out[index] = sorted[position] }
    return out
}

extension ClassificationMetrics {
    /// The metrics of logit rows against labels (loss: mean cross-entropy, in double).
    public init(logits: [[Float]], labels: [Int32], classes: Int) {
        var loss = 0.0
        var predictions: [Int] = []
        for (row, label) in zip(logits, labels) {
            let m = row.max()!, lse = Double(m) + log(row.reduce(0.0) { $0 + exp(Double($1 - m)) })
            loss += lse - Double(row[Int(label)])
            predictions.append(row.indices.max { row[$0] < row[$1] }!)
        }
        self.init(predictions: predictions, labels: labels.map(Int.init), classes: classes, loss: labels.isEmpty ? 0 : loss / Double(labels.count))
    }
}

public final class Classifier: TextClassifier {
    /// The labels of an encoder whose config names none (HF's two defaults).
    static let unnamedLabels = ["LABEL_0", "LABEL_1"]

    public let model: BertModel
    public let tokenizer: WordPieceTokenizer
    public var labelNames: [String]
    public let maxLength: Int
    /// The labels of the head the folder had, when load started a new one for other labels.
    public private(set) var replacedHeadLabels: [String]?

    public init(model: BertModel, tokenizer: WordPieceTokenizer, labelNames: [String], maxLength: Int) {
        self.model = model; self.tokenizer = tokenizer; self.labelNames = labelNames; self.maxLength = maxLength
    }

    /// Loads a model folder (config.json, model.safetensors, vocab.txt). `labels` overrides the
    /// folder's label names (fine-tuning a new head).
    /// `inference`: forward only (no gradient buffer): a teacher, evaluation, prediction.
    public static func load(folder: String, labels: [String]? = nil, maxLength: Int = 128, backend: Backend, seed: UInt64 = 42,
                            inference: Bool = false) throws -> Classifier {
        let tokenizer = try WordPieceTokenizer(folder: folder)
        let config = try BertConfig(path: (folder as NSString).appendingPathComponent("config.json"))
        // A token past the embedding table would read a row of zeros: another model's vocabulary.
        if let last = tokenizer.vocabulary.filter({ !$0.key.isEmpty }).values.max(), Int(last) >= config.vocabSize {   // (a blank last line is no token)
            throw CheckpointError("\(folder)/vocab.txt: \(last + 1) tokens, more than config.json's vocab_size \(config.vocabSize); "
                                  + "the vocabulary is another model's (copy this model's vocab.txt)")
        }
        if let method = config.quantization, !inference {
            throw InvalidSetting("\(folder) is quantized (\(method)), for eval, predict and compare; fine-tune or distil the float model it came from")
        }
        let stored = config.id2label.isEmpty ? nil : LabelMap.names(config.id2label)
        let names = labels ?? stored ?? Self.unnamedLabels
        let model = try BertModel(config: config, labels: names.count, backend: backend, inference: inference)
        // A head trained for other labels is not reused: a new one starts as HF initialises it.
        // (A pretrained encoder gets a fresh head here — the perf suite's MPNet teacher — and is refused
        // where a command wants a classifier: checkClassifierFolder.)
        try model.loadWeights((folder as NSString).appendingPathComponent("model.safetensors"), seed: seed,
                              freshHead: stored != nil && stored != names)
        guard maxLength <= config.maxTokens else {
            let limit = config.family == .mpnet ? "\(config.maxTokens) tokens (max_position_embeddings \(config.maxPositions) less padding_idx + 1)"
                : "max_position_embeddings \(config.maxPositions)"
            throw InvalidSetting("\(Setting.maxLength) \(maxLength) exceeds the model's \(limit)")
        }
        let classifier = Classifier(model: model, tokenizer: tokenizer, labelNames: names, maxLength: maxLength)
        if let stored, stored != names { classifier.replacedHeadLabels = stored }
        return classifier
    }

    public func encode(_ examples: [Example]) -> [Encoding] {
        examples.map { tokenizer.encode($0.text, $0.pair, maxLength: maxLength) }
    }

    /// Pads `encodings` to their longest (or to `length`) and loads them (and labels) into `a`;
    /// `forBackward` false when only a forward pass follows.
    public func load(_ encodings: [Encoding], labels: [Int32], into a: BertActivations, forBackward: Bool? = nil, length: Int? = nil) {
        let padded = tokenizer.pad(encodings, to: length.map { max($0, encodings.map(\.ids.count).max() ?? 0) })
        let T = padded.first?.ids.count ?? 0
        a.load(ids: padded.flatMap(\.ids), types: padded.flatMap(\.typeIds), mask: padded.flatMap(\.attentionMask),
               labels: labels, batch: padded.count, length: T, backend: model.backend, forBackward: forBackward)
    }

    /// Logits [N][labels] of the encodings, in batches (`progress` hears the texts done after each).
    public func logits(_ encodings: [Encoding], batchSize: Int, activations: BertActivations? = nil,
                       progress: (Int) -> Void = { _ in }) throws -> [[Float]] {
        let a = try activations ?? BertActivations(config: model.config, labels: model.labels, maxBatch: batchSize,
                                                    maxLength: maxLength, backend: model.backend, inference: true)
        var out: [[Float]] = []
        for start in stride(from: 0, to: encodings.count, by: batchSize) {
            let chunk = Array(encodings[start..<min(start + batchSize, encodings.count)])
            load(chunk, labels: [], into: a, forBackward: false)
            let flat = model.backend.floats(model.forward(a))
            for i in 0..<chunk.count { out.append(Array(flat[(i * model.labels)..<((i + 1) * model.labels)])) }
            progress(out.count)
        }
        return out
    }

    public func classify(_ encodings: [Encoding], batchSize: Int) throws -> [[Float]] { try logits(encodings, batchSize: batchSize) }

    public func forwardSession(batchSize: Int) throws -> ([Encoding]) throws -> [[Float]] {
        let a = try BertActivations(config: model.config, labels: model.labels, maxBatch: batchSize, maxLength: maxLength,
                                    backend: model.backend, inference: true)
        return { try self.logits($0, batchSize: batchSize, activations: a) }
    }

    public var parameterCount: Int { model.layout.total }

    public func speed(length requested: Int = 64, repeats: Int = 20) throws -> InferenceSpeed {
        let b = model.backend, T = min(requested, maxLength, model.config.maxPositions - 2)
        let a = try BertActivations(config: model.config, labels: model.labels, maxBatch: 32, maxLength: T, backend: b, inference: true)
        return InferenceSpeed.measure(length: T, vocabulary: model.config.vocabSize, repeats: repeats) { ids, B in
            a.load(ids: ids, types: [Int32](repeating: 0, count: B * T), mask: [Int32](repeating: 1, count: B * T), labels: [], batch: B,
                   length: T, backend: b)
            return { _ = b.floats(self.model.forward(a)) }
        }
    }

    /// Accuracy, macro-F1, MCC and mean cross-entropy over labelled encodings (in `activations`, a
    /// training arena, when given).
    public func evaluate(_ encodings: [Encoding], labels: [Int32], batchSize: Int, activations: BertActivations?,
                         progress: (Int) -> Void = { _ in }) throws -> ClassificationMetrics {
        ClassificationMetrics(logits: try inLengthOrder(encodings) { try logits($0, batchSize: batchSize, activations: activations, progress: progress) },
                              labels: labels, classes: model.labels)
    }

    /// Saves a HF model folder: config.json (with id2label/label2id), model.safetensors and the
    /// tokenizer files copied from `tokenizerSource`.
    /// `adapter`: also write LoRA adapters in PEFT's format to folder/adapter, on the base model in
    /// `tokenizerSource` (off for distilled students, whose base exists nowhere else).
    public func save(folder: String, tokenizerSource: String, adapter: Bool = true) throws {
        try model.save(folder: folder, id2label: id2label)
        // The PEFT adapter goes in a subfolder: with adapter_config.json beside model.safetensors,
        // transformers would treat the folder as an adapter and apply it again on the base model.
        if model.lora != nil && adapter {
            try model.saveAdapter(folder: folder + "/adapter", baseModel: tokenizerSource)
        }
        try Self.copyTokenizer(from: tokenizerSource, to: folder)
    }

    /// Copies a WordPiece tokenizer's files (those that exist) between folders, each atomically:
    /// a run killed mid-save never leaves half a vocabulary.
    static func copyTokenizer(from source: String, to folder: String) throws {
        for file in ["vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"] {
            let from = (source as NSString).appendingPathComponent(file), to = (folder as NSString).appendingPathComponent(file)
            guard from != to, let data = FileManager.default.contents(atPath: from) else { continue }
            try writeAtomically(data, to: to)
        }
    }
}

/// Inference speed on the current device: B=1 latency and B=32 throughput on sequences of
/// `length` tokens (no padding), medians of repeated runs after a warm-up.
public struct InferenceSpeed: Sendable {
    public var length: Int
    public var latencyMilliseconds: Double      // one sequence
    public var tokensPerSecond: Double          // batches of 32

    /// Medians of `repeats` runs (after 3 warm-up runs) at B=1 and B=32 of what `prepare` returns
    /// for B random texts of `length` tokens (`ids`, B·T of them, loaded before the clock starts):
    /// a forward pass whose logits are read back.
    public static func measure(length T: Int, vocabulary: Int, repeats: Int, prepare: (_ ids: [Int32], _ B: Int) throws -> () -> Void)
        rethrows -> InferenceSpeed {
        var rng = SplitMix(seed: 7)
        func median(_ B: Int, runs: Int) throws -> Double {
            let ids = (0..<(B * T)).map { _ in Int32(truncatingIfNeeded: rng.next() % UInt64(vocabulary)) }
            let forward = try prepare(ids, B)
            // Up to three warm-up runs (fewer where one after the first takes over half a second: that
            // one is timed), then `runs` timed ones, or as many (three at least) as fill 5 s: a decoder
            // at B=32 took a minute otherwise.
            var times: [Double] = [], warm = 0
            while times.count < max(1, runs) {
                let start = DispatchTime.now().uptimeNanoseconds
                forward()
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                if warm < 3 {   // a slow run after the first ends the warm-up (and is timed)
                    if warm >= 1 && seconds > 0.5 { warm = 3 } else { warm += 1; continue }
                }
                times.append(seconds)
                if times.count >= 3 && times.reduce(0, +) >= 5 { break }
            }
            return times.sorted()[times.count / 2]
        }
        let single = try median(1, runs: repeats), full = try median(32, runs: max(3, repeats / 4))
        return InferenceSpeed(length: T, latencyMilliseconds: single * 1000, tokensPerSecond: Double(32 * T) / full)
    }
}
