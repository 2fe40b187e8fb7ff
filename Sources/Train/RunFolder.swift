// A run's output folder, as every recipe lays it out:
//   OUT/                   the model (a HF folder: config.json, model.safetensors, tokenizer files)
//   OUT/log.jsonl          one JSON object per step (StepLog) and per evaluation (EvalLog)
//   OUT/metrics.json       the run's summary (RunMetrics)
//   OUT/checkpoints/       complete checkpoints, newest last (Checkpoints.swift)
//   OUT/adapter/           LoRA fine-tuning: PEFT's adapter files
import Backend
import Foundation

public struct RunFolder: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }

    public var log: String { path + "/log.jsonl" }
    public var metrics: String { path + "/metrics.json" }
    public var checkpoints: String { path + "/checkpoints" }

    /// What a run writes besides the model's config and tokenizer files (which the next save
    /// replaces), the report aside.
    static let runFiles = ["model.safetensors", "adapter", "checkpoints", "metrics.json", "log.jsonl"]

    /// The first of a run's own files found in the folder (nil: it holds no run, or is not
    /// there; an empty log is no run): a new run in it would replace a trained model, so the CLI
    /// refuses one without --resume or --overwrite.
    public var runFile: String? {
        Self.runFiles.first { name in
            let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
            return attributes != nil && !(name == "log.jsonl" && (attributes?[.size] as? NSNumber)?.intValue == 0)
        }
    }

    /// There is a complete checkpoint to --resume from.
    public var hasCheckpoint: Bool { CheckpointStore(folder: checkpoints).newest() != nil || legacyCheckpoint(stages: []) != nil }

    /// A new run here: what an earlier run left (its model, adapter, checkpoints, metrics; and
    /// where it was a run, its config, tokenizer files and report) is removed, so nothing of it
    /// is taken for this run's (a tokenizer.json of another model would win over this one's
    /// vocab.json); the log starts empty. A user's own files stay.
    func clearEarlierRun() {
        let earlier = runFile != nil ? ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "vocab.txt", "vocab.json", "merges.txt", "report.md", "report.csv", "report.html"] : []
        for name in Self.runFiles + earlier where name != "log.jsonl" {
            try? FileManager.default.removeItem(atPath: path + "/" + name)
        }
    }

    /// Creates the folder; removes temporary files a killed run left (writeAtomically's ".NAME.PID.tmp").
    func create() throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw DataError("\(path): cannot create the output folder (\(error.localizedDescription))")
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            try? FileManager.default.removeItem(atPath: path + "/" + name)
        }
    }

    /// Checkpoint folders of older Retort versions (OUT/checkpoint, OUT/checkpoint-<stage>), which
    /// a resumed run still accepts when it finds no newer ones.
    func legacyCheckpoint(stages: [String]) -> (path: String, stageIndex: Int)? {
        let names = stages.isEmpty ? ["checkpoint"] : stages.map { "checkpoint-" + $0 }
        for (index, name) in names.enumerated().reversed() where FileManager.default.fileExists(atPath: path + "/" + name + "/trainer.json") {
            return (path + "/" + name, index)
        }
        return nil
    }

    /// Writes metrics.json atomically.
    func write(_ metrics: RunMetrics) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try writeAtomically(try encoder.encode(metrics), to: self.metrics)
    }

    /// metrics.json of a finished run (nil when absent or unreadable).
    public func readMetrics() -> RunMetrics? {
        guard let data = FileManager.default.contents(atPath: metrics) else { return nil }
        return try? JSONDecoder().decode(RunMetrics.self, from: data)
    }

    /// The training loss of every logged step, all stages in order.
    public func trainingLosses() -> [Double] {
        guard let data = FileManager.default.contents(atPath: log) else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            (try? JSONDecoder().decode(StepLog.self, from: Data(line.utf8)))?.loss
        }
    }
}

/// log.jsonl, appended one JSON object per line (written straight to the file, so its length
/// at a checkpoint is exact and a resumed run can cut it back to that point).
final class LogFile {
    let handle: FileHandle?
    private let encoder = JSONEncoder()

    /// A log that writes nothing (a data-parallel rank other than 0).
    init() { handle = nil }

    /// Opens `path` for appending; `truncatingTo` cuts it to that many bytes first (a resume),
    /// `fresh` empties it (a new run).
    init(_ path: String, fresh: Bool, truncatingTo length: Int? = nil) throws {
        if fresh || !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw DataError("\(path): cannot create the log") }
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DataError("\(path): cannot open for writing") }
        if let length { try handle.truncate(atOffset: UInt64(length)) }
        handle.seekToEndOfFile()
        self.handle = handle
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    }

    deinit { try? handle?.close() }

    func write<T: Encodable>(_ value: T) {
        if let handle, let data = try? encoder.encode(value) { handle.write(data + Data("\n".utf8)) }
    }

    /// Bytes written so far.
    var length: Int { Int(handle?.offsetInFile ?? 0) }
}

/// metrics.json: what a run did and reached. Written by every recipe; read by `compare`.
public struct RunMetrics: Codable, Sendable {
    public var method: String
    public var device: String?
    public var labels: [String]?
    public var trainExamples, devExamples: Int?
    public var parameters, trainableParameters: Int?
    public var steps: Int?
    public var finalTrainLoss: Double?
    public var trainSeconds: Double?
    public var bestDev: ClassificationMetrics?
    public var test: ClassificationMetrics?
    // Distillation
    public var teacher: String?
    public var studentInit: String?
    public var layerMap: String?
    public var stages: [String]?
    public var temperature: Double?
    /// A data-parallel run's ranks and how its gradients were summed (its last stage).
    public var dataParallel: DataParallelMetrics?

    enum CodingKeys: String, CodingKey {
        case method, device, labels, trainExamples = "train_examples", devExamples = "dev_examples", parameters
        case trainableParameters = "trainable_parameters", steps, finalTrainLoss = "final_train_loss", trainSeconds = "train_seconds"
        case bestDev = "best_dev", test, teacher, studentInit = "student_init", layerMap = "layer_map", stages, temperature
        case dataParallel = "data_parallel"
    }

    public init(method: String) { self.method = method }
}

/// metrics.json's "data_parallel": the ranks, the gradient sums started during the backward per
/// step (per layer; the rest is summed after it), and how a GPU's gradients travelled.
public struct DataParallelMetrics: Codable, Sendable {
    public let ranks: Int
    public let layerBucketsPerStep: Double
    public let gpuTransport: String?
    enum CodingKeys: String, CodingKey { case ranks, layerBucketsPerStep = "layer_buckets_per_step", gpuTransport = "gpu_transport" }
}
