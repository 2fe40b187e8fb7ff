// The comparison report: one row per model folder (a finetune or distill output) with its
// method, final training loss, test (or best dev) metrics, parameters, size on disk and speed on
// the current device; written as report.md, report.csv and a self-contained report.html (inline
// SVG: every run's training-loss curve, and metric against latency). `retort compare` and the
// end of `retort distill` print and write it.
import Backend
import Foundation
import Models

public struct ComparisonReport {
    public struct Row: Sendable {
        public var name, folder, method: String
        public var finalLoss: Double?
        public var metrics: ClassificationMetrics?
        public var metricSource: String          // "test", "own dev set" (each run's best dev metrics, on its own dev file or split), or "–" (none)
        public var parameters, trainable: Int    // trainable: 0 for a quantized folder (it trains no further)
        public var megabytes: Double
        public var speed: InferenceSpeed
        public var speedup: Double
        public var losses: [Double]              // training loss per logged step, all stages in order
    }

    public var rows: [Row]
    public var device: String
    /// A row's metricSource without --test: each run's best dev metrics, on its own dev file or split.
    public static let ownDevSet = "own dev set"
    /// What a reader of the table must know (models of different tasks, a folder given twice), as printed.
    public var notes: [String] = []

    /// Loads each model folder, evaluates it on `test` when given (else reads its best dev
    /// metrics from metrics.json) and measures its speed. The first folder is the reference for
    /// the speed-up (the teacher). `maxLength` nil: 128 tokens, or fewer when a model has fewer
    /// positions. `progress` hears which folder is being measured, `testProgress` (texts done, all,
    /// seconds) how far its test evaluation is.
    public static func build(runs: [String], test: String?, columns: ColumnSpec, maxLength: Int?, backend: Backend,
                             progress: (String) -> Void = { _ in }, testProgress: (Int, Int, Double) -> Void = { _, _, _ in },
                             skipped: ((String) -> Void)? = nil,
                             truncated: (_ model: String, Truncation) -> Void = { _, _ in }) throws -> ComparisonReport {
        var rows: [Row] = [], notes: [String] = []
        func note(_ text: String) { notes.append(text); progress("note: " + text) }
        var labelled = columns
        if labelled.label == nil { labelled.label = .name("label") }
        // Records without text are left out, as eval and the runs' dev data leave them (skipped nil: told as progress).
        let testExamples = try test.map { path in
            try Dataset.loadWithText(path, columns: labelled) { note in if let skipped { skipped(note) } else { progress(note) } }
        }
        // Without a test set each row's metrics are its own run's: say so where the models label different
        // classes (another task), and where one folder is given twice.
        if test == nil {
            let labels = runs.map { folder in (folder, (try? storedLabelNames(folder)) ?? []) }
            if Set(labels.map(\.1)).count > 1 {
                note("these models label different classes ("
                         + labels.map { "\(modelName(folder: $0.0)): \($0.1.joined(separator: ", "))" }.joined(separator: "; ")
                         + "): their metrics are on different tasks; only the size and speed columns compare them")
            }
        }
        let standardized = runs.map { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path }
        if let twice = standardized.enumerated().first(where: { standardized[..<$0.offset].contains($0.element) }) {
            note("\(runs[twice.offset]) is given twice: its rows show the same model (the speed-up between them is this machine's noise)")
        }
        // Every folder's labels against the test data's before the first is measured (which takes a while).
        if let testExamples, let test {
            for folder in runs {
                do { _ = try Dataset.labelIds(testExamples, names: try storedLabelNames(folder), path: test) } catch { throw DataError("\(folder): \(error)") }
            }
        }
        for (i, folder) in runs.enumerated() {
            progress("measuring \(folder) (\(i + 1)/\(runs.count))")
            let classifier = try loadTextClassifier(folder: folder, maxLength: maxLength, backend: backend)
            let run = RunFolder(folder), info = run.readMetrics()
            var metrics: ClassificationMetrics?, source = Self.ownDevSet   // without --test: each run's own dev file or split, not one set of examples
            if let testExamples, let test {
                let encodings = classifier.encode(testExamples)
                let cut = Truncation([("test", encodings)], maxLength: classifier.maxLength)   // as eval says it
                if cut.anyCut { truncated(modelName(folder: folder), cut) }
                metrics = try classifier.evaluate(encodings, labels: try Dataset.labelIds(testExamples, names: classifier.labelNames, path: test),
                                                  batchSize: 32, progress: testProgress)
                source = "test"
            } else {
                metrics = info?.bestDev
                if metrics == nil { source = "–" }   // (a quantized folder: it trained on no dev split)
            }
            progress("timing \(modelName(folder: folder)): B=1 latency and B=32 throughput")
            let speed = try classifier.speed(length: 64, repeats: 20)
            let total = classifier.parameterCount
            // A folder `retort quantize` wrote: its method is its storage (int8), as it trained no further.
            let quantized = quantization(folder)
            rows.append(Row(name: modelName(folder: folder), folder: folder, method: quantized ?? info?.method ?? "model",
                            finalLoss: info?.finalTrainLoss, metrics: metrics, metricSource: source,
                            parameters: total, trainable: quantized != nil ? 0 : info?.trainableParameters ?? total,
                            megabytes: weightMegabytes(folder), speed: speed, speedup: 1, losses: run.trainingLosses()))
        }
        if rows.filter({ $0.metricSource == Self.ownDevSet }).count >= 2 {
            note("without --test each model's metrics are on its own run's dev set (other texts); give --test to compare them on the same ones")
        }
        if let reference = rows.first?.speed.latencyMilliseconds {
            for i in rows.indices { rows[i].speedup = reference / rows[i].speed.latencyMilliseconds }
        }
        return ComparisonReport(rows: rows, device: "\(backend.kind.rawValue): \(backend.summary)", notes: notes)
    }

    /// The labels a classifier folder's config.json names (id2label, any family), in class order;
    /// an encoder's without them has two, as it loads.
    static func storedLabelNames(_ folder: String) throws -> [String] {
        let path = (folder as NSString).appendingPathComponent("config.json")
        let object = FileManager.default.contents(atPath: path).flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any]
        let names = LabelMap.names(try LabelMap.parse(object?["id2label"], source: path))
        return names.isEmpty ? Classifier.unnamedLabels : names
    }

    /// How `retort quantize` stored the folder's weights (config.json's "retort_quantization",
    /// any family), or nil for float weights.
    public static func quantization(_ folder: String) -> String? {
        (FileManager.default.contents(atPath: (folder as NSString).appendingPathComponent("config.json"))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) } as? [String: Any])?["retort_quantization"] as? String
    }

    /// The size of the model's weight files in `folder`, in MB (10⁶ bytes).
    /// (A link is followed: a Hugging Face cache's snapshot folders hold links to the weights.)
    public static func weightMegabytes(_ folder: String) -> Double {
        Double(weightFiles(folder).reduce(0) { total, path in
            var status = stat()   // stat (not lstat): the file a link names
            return total + (stat(path, &status) == 0 ? Int(status.st_size) : 0)
        }) / 1e6
    }

    /// The model's weight files in `folder`: model.safetensors, or its shards (model-00001-of-…).
    static func weightFiles(_ folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0 == "model.safetensors" || ($0.hasPrefix("model-") && $0.hasSuffix(".safetensors")) }
            .sorted().map { (folder as NSString).appendingPathComponent($0) }
    }

    // MARK: formats

    static let columns = ["model", "method", "final train loss", "accuracy", "macro-F1", "MCC", "metrics on", "params", "trainable",
                          "MB", "ms (B=1)", "tok/s (B=32)", "speed-up"]

    func cells(_ r: Row) -> [String] {
        func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "–" }
        return [r.name, r.method, f(r.finalLoss, "%.4f"), f(r.metrics?.accuracy, "%.4f"), f(r.metrics?.macroF1, "%.4f"), f(r.metrics?.mcc, "%.4f"),
                r.metricSource, String(format: "%.1fM", Double(r.parameters) / 1e6), r.trainable == r.parameters ? "all" : r.trainable == 0 ? "none" : "\(r.trainable)",
                String(format: "%.1f", r.megabytes), String(format: "%.2f", r.speed.latencyMilliseconds),
                String(format: "%.0f", r.speed.tokensPerSecond), String(format: "%.2f×", r.speedup)]
    }

    public var markdownTable: String {
        var lines = ["| " + Self.columns.joined(separator: " | ") + " |", "|" + Self.columns.map { _ in "---" }.joined(separator: "|") + "|"]
        lines += rows.map { "| " + cells($0).map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |" }
        return lines.joined(separator: "\n")
    }

    var markdown: String {
        let length = rows.first?.speed.length ?? 64
        return """
            # Retort comparison

            Speed measured on \(device), sequences of \(length) tokens; speed-up is the first row's B=1 latency over each row's.
            The final train loss is each run's own objective (cross-entropy when fine-tuning, the distillation loss for a student: MSE on logits, soft cross-entropy, …), so it compares runs of one method only.

            \(markdownTable)

            """ + notes.map { "Note: \($0).\n\n" }.joined()
    }

    var csv: String {
        func quote(_ s: String) -> String { s.contains(where: { ",\"\n".contains($0) }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }
        let header = ["model", "folder", "method", "final_train_loss", "accuracy", "macro_f1", "mcc", "metrics_on", "parameters",
                      "trainable_parameters", "size_mb", "latency_ms_b1", "tokens_per_s_b32", "speedup"]
        let body = rows.map { r -> String in
            let values: [String] = [r.name, r.folder, r.method, r.finalLoss.map { "\($0)" } ?? "", r.metrics.map { "\($0.accuracy)" } ?? "",
                                    r.metrics.map { "\($0.macroF1)" } ?? "", r.metrics.map { "\($0.mcc)" } ?? "", r.metricSource,
                                    "\(r.parameters)", "\(r.trainable)", String(format: "%.3f", r.megabytes),
                                    String(format: "%.3f", r.speed.latencyMilliseconds), String(format: "%.1f", r.speed.tokensPerSecond),
                                    String(format: "%.3f", r.speedup)]
            return values.map(quote).joined(separator: ",")
        }
        return ([header.joined(separator: ",")] + body).joined(separator: "\n") + "\n"
    }

    /// Writes report.md, report.csv and report.html into `folder`, all three new or, on an error,
    /// all three as they were (writeAtomically of the set). Returns their paths.
    public func write(folder: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let files = [("report.md", markdown), ("report.csv", csv), ("report.html", html)].map { name, text in
            (path: (folder as NSString).appendingPathComponent(name), data: Data(text.utf8))
        }
        try writeAtomically(files)
        return files.map(\.path)
    }
}
