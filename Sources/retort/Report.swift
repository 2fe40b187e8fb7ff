// The comparison report: one row per model folder (a finetune or distill output) with its
// method, final training loss, test (or best dev) metrics, parameters, size on disk and speed on
// the current device; written as report.md, report.csv and a self-contained report.html (inline
// SVG: every run's training-loss curve, and metric against latency).
import Backend
import Foundation
import Models
import Train

struct ComparisonReport {
    struct Row {
        var name, folder, method: String
        var finalLoss: Double?
        var metrics: ClassificationMetrics?
        var metricSource: String          // "test" or "dev"
        var parameters, trainable: Int
        var megabytes: Double
        var speed: InferenceSpeed
        var speedup: Double
        var losses: [Double]              // training loss per logged step, all stages in order
    }

    var rows: [Row]
    var device: String

    /// Loads each folder, evaluates it on `test` when given (else reads its best dev metrics) and
    /// measures its speed. The first folder is the reference for the speed-up (the teacher).
    /// `maxLength` nil: 128 tokens, or fewer when a model has fewer positions.
    static func build(runs: [String], test: String?, columns: ColumnOptions, maxLength: Int?, backend: Backend) throws -> ComparisonReport {
        var rows: [Row] = []
        let testExamples = try test.map { try Dataset.load(expand($0), columns: columns.spec(labelled: true)) }
        for (i, folder) in runs.map(expand).enumerated() {
            printError("retort: measuring \(folder) (\(i + 1)/\(runs.count))")
            let positions = try BertConfig(path: folder + "/config.json").maxPositions
            let classifier = try Classifier.load(folder: folder, maxLength: maxLength ?? min(128, positions), backend: backend, inference: true)
            let info = readJSON(folder + "/metrics.json")
            var metrics: ClassificationMetrics?, source = "dev"
            if let testExamples, let test {
                metrics = try classifier.evaluate(classifier.encode(testExamples),
                                                  labels: try Dataset.labelIds(testExamples, names: classifier.labelNames, path: test), batchSize: 32)
                source = "test"
            } else if let dev = info["best_dev"] as? [String: Any],
                      let data = try? JSONSerialization.data(withJSONObject: dev) {
                metrics = try? JSONDecoder().decode(ClassificationMetrics.self, from: data)
            }
            let size = (try? FileManager.default.attributesOfItem(atPath: folder + "/model.safetensors")[.size] as? Int) ?? 0
            let speed = try InferenceSpeed.measure(classifier)
            let total = classifier.model.layout.total
            rows.append(Row(name: (folder as NSString).lastPathComponent, folder: folder, method: info["method"] as? String ?? "model",
                            finalLoss: info["final_train_loss"] as? Double, metrics: metrics, metricSource: source,
                            parameters: total, trainable: info["trainable_parameters"] as? Int ?? total,
                            megabytes: Double(size) / 1e6, speed: speed, speedup: 1, losses: trainingLosses(folder + "/log.jsonl")))
        }
        if let reference = rows.first?.speed.latencyMilliseconds {
            for i in rows.indices { rows[i].speedup = reference / rows[i].speed.latencyMilliseconds }
        }
        return ComparisonReport(rows: rows, device: "\(backend.kind.rawValue): \(backend.summary)")
    }

    static func readJSON(_ path: String) -> [String: Any] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }

    static func trainingLosses(_ path: String) -> [Double] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], object["dev"] == nil else { return nil }
            return object["loss"] as? Double
        }
    }

    // MARK: formats

    static let columns = ["model", "method", "final train loss", "accuracy", "macro-F1", "MCC", "metrics on", "params", "trainable",
                          "MB", "ms (B=1)", "tok/s (B=32)", "speed-up"]

    func cells(_ r: Row) -> [String] {
        func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "–" }
        return [r.name, r.method, f(r.finalLoss, "%.4f"), f(r.metrics?.accuracy, "%.4f"), f(r.metrics?.macroF1, "%.4f"), f(r.metrics?.mcc, "%.4f"),
                r.metricSource, String(format: "%.1fM", Double(r.parameters) / 1e6), r.trainable == r.parameters ? "all" : "\(r.trainable)",
                String(format: "%.1f", r.megabytes), String(format: "%.2f", r.speed.latencyMilliseconds),
                String(format: "%.0f", r.speed.tokensPerSecond), String(format: "%.2f×", r.speedup)]
    }

    var markdownTable: String {
        var lines = ["| " + Self.columns.joined(separator: " | ") + " |", "|" + Self.columns.map { _ in "---" }.joined(separator: "|") + "|"]
        lines += rows.map { "| " + cells($0).joined(separator: " | ") + " |" }
        return lines.joined(separator: "\n")
    }

    var markdown: String {
        let length = rows.first?.speed.length ?? 64
        return """
            # Retort comparison

            Speed measured on \(device), sequences of \(length) tokens; speed-up is the first row's B=1 latency over each row's.

            \(markdownTable)

            """
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

    /// Writes report.md, report.csv and report.html into `folder` (each atomically); returns their paths.
    func write(folder: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        var written: [String] = []
        for (name, text) in [("report.md", markdown), ("report.csv", csv), ("report.html", html)] {
            let path = (folder as NSString).appendingPathComponent(name)
            try writeAtomically(Data(text.utf8), to: path)
            written.append(path)
        }
        return written
    }
}
