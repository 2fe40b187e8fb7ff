// Checkpoints that survive anything. A run's checkpoints live in OUT/checkpoints/, one folder
// each, named by a save sequence number ("000007-step-120", "000012-prediction-step-40"). A
// folder is written under a temporary name, every file fsynced, then renamed into place (and the
// parent fsynced): `kill -9` or a power cut at any instant, mid-step or mid-save, leaves the
// newest complete checkpoint loadable. The last `keep` are kept; older ones are renamed away
// before they are deleted, so a half-deleted folder is never taken for a checkpoint.
import Backend
import Foundation
import Models

/// When a run saves a checkpoint, beside every evaluation, the end of each stage and a stop.
public struct CheckpointPolicy: Sendable, Codable {
    /// Every N optimizer steps (nil: by time only).
    public var everySteps: Int?
    /// At least this often, in seconds of training (0: not by time).
    public var everySeconds: Double
    /// Complete checkpoints kept (the newest ones).
    public var keep: Int

    public init(everySteps: Int? = nil, everySeconds: Double = 300, keep: Int = 2) {
        self.everySteps = everySteps; self.everySeconds = everySeconds; self.keep = keep
    }
}

/// What a checkpoint records beside its tensors: the trainer's position and the run's progress.
public struct TrainerState: Codable, Sendable {
    public var step: Int
    public var options: TrainingOptions
    public var best: ClassificationMetrics?
    public var lossScaler: LossScaler?
    /// The step of the last evaluation (older checkpoints: assumed to be `step`).
    public var evaluatedStep: Int?
    public var lastLoss: Double?
    /// Filled in by the run: which stage (and its index among the run's stages), the training
    /// time so far, and the length of log.jsonl when saved (a resumed run cuts the log back there).
    public var stage: String?
    public var stageIndex = 0
    public var trainSeconds = 0.0
    public var logBytes: Int?
    /// The run's data as trained on (Recipe.fingerprint; older checkpoints: nil, not checked).
    public var dataFingerprint: String?
    /// The adapters that train (TrainerState.adapters(lora); older checkpoints: nil, not checked).
    public var adapters: String?

    enum CodingKeys: String, CodingKey {
        case step, options, best, lossScaler = "loss_scaler", evaluatedStep = "evaluated_step", lastLoss = "last_loss"
        case stage, stageIndex = "stage_index", trainSeconds = "train_seconds", logBytes = "log_bytes", dataFingerprint = "data_fingerprint"
        case adapters
    }

    public init(step: Int, options: TrainingOptions, best: ClassificationMetrics?, lossScaler: LossScaler?, evaluatedStep: Int?,
                lastLoss: Double?) {
        self.step = step; self.options = options; self.best = best; self.lossScaler = lossScaler
        self.evaluatedStep = evaluatedStep; self.lastLoss = lastLoss.flatMap { $0.isFinite ? $0 : nil }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        step = try c.decode(Int.self, forKey: .step)
        options = try c.decode(TrainingOptions.self, forKey: .options)
        best = try c.decodeIfPresent(ClassificationMetrics.self, forKey: .best)
        lossScaler = try c.decodeIfPresent(LossScaler.self, forKey: .lossScaler)
        evaluatedStep = try c.decodeIfPresent(Int.self, forKey: .evaluatedStep)
        lastLoss = try c.decodeIfPresent(Double.self, forKey: .lastLoss)
        stage = try c.decodeIfPresent(String.self, forKey: .stage)
        stageIndex = try c.decodeIfPresent(Int.self, forKey: .stageIndex) ?? 0
        trainSeconds = try c.decodeIfPresent(Double.self, forKey: .trainSeconds) ?? 0
        logBytes = try c.decodeIfPresent(Int.self, forKey: .logBytes)
        dataFingerprint = try c.decodeIfPresent(String.self, forKey: .dataFingerprint)
        adapters = try c.decodeIfPresent(String.self, forKey: .adapters)
    }

    /// What trains besides the whole model, in words a resume conflict names: "no LoRA", or the
    /// adapters' rank, alpha, dropout, targets (and rsLoRA).
    static func adapters(_ lora: LoRAConfig?) -> String {
        guard let lora else { return "no LoRA" }
        let alpha = lora.alpha == lora.alpha.rounded() ? String(Int(lora.alpha)) : "\(lora.alpha)"
        return "LoRA rank \(lora.rank), alpha \(alpha)\(lora.rsLoRA ? " (rsLoRA)" : ""), dropout \(lora.dropout), "
            + "targets \(lora.targets.map(\.rawValue).joined(separator: ","))"
    }

    /// Reads trainer.json.
    init(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError("\(path): missing or unreadable") }
        do { self = try JSONDecoder().decode(TrainerState.self, from: data) } catch {
            throw DataError("\(path): not a Retort checkpoint state (\(error))")
        }
    }

    func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}

/// OUT/checkpoints: complete checkpoints, newest by sequence number.
public struct CheckpointStore: Sendable {
    public let folder: String
    public let keep: Int

    public init(folder: String, keep: Int = 2) {
        precondition(keep >= 1, "keep at least one checkpoint")
        self.folder = folder; self.keep = keep
    }

    public struct Checkpoint: Sendable {
        public let path: String
        public let state: TrainerState
    }

    /// Writes a new checkpoint with `write` (which fills the folder it is given), atomically;
    /// prunes all but the newest `keep`. Returns its path.
    @discardableResult
    public func save(named name: String, _ write: (String) throws -> Void) throws -> String {
        let files = FileManager.default
        try files.createDirectory(atPath: folder, withIntermediateDirectories: true)
        removeLeftovers()
        let sequence = (completeFolders().first?.sequence ?? 0) + 1
        let final = String(format: "%06d-", sequence) + name, temporary = folder + "/.tmp-\(final)"
        try? files.removeItem(atPath: temporary)
        try files.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        try write(temporary)
        syncFolder(temporary)
        TestHooks.killIfAsked(at: "checkpoint")   // crash tests: die with the folder complete but not yet in place
        guard rename(temporary, folder + "/" + final) == 0 else {
            throw CheckpointError("\(folder)/\(final): cannot move the checkpoint into place: \(String(cString: strerror(errno)))")
        }
        syncFolder(folder)
        for old in completeFolders().dropFirst(keep) {
            let trash = folder + "/.trash-" + old.name
            if rename(folder + "/" + old.name, trash) == 0 { try? files.removeItem(atPath: trash) }
        }
        return folder + "/" + final
    }

    /// The newest checkpoint that loads (its trainer.json decodes and its tensors file is there).
    public func newest() -> Checkpoint? {
        for entry in completeFolders() {
            let path = folder + "/" + entry.name
            guard FileManager.default.fileExists(atPath: path + "/state.safetensors"),
                  let state = try? TrainerState(file: path + "/trainer.json") else { continue }
            return Checkpoint(path: path, state: state)
        }
        return nil
    }

    /// Checkpoint folders ("NNNNNN-…"), newest first.
    private func completeFolders() -> [(sequence: Int, name: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard let dash = name.firstIndex(of: "-"), let n = Int(name[..<dash]), n > 0 else { return nil }
            return (n, name)
        }.sorted { $0.0 > $1.0 }
    }

    /// Temporary and half-deleted folders of saves a crash interrupted (also at a resume, which
    /// may have no save of its own to clear them: a run killed after its last checkpoint).
    func removeLeftovers() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        where name.hasPrefix(".tmp-") || name.hasPrefix(".trash-") {
            try? FileManager.default.removeItem(atPath: folder + "/" + name)
        }
    }
}

/// Fault injection for the crash tests (Tests/CLITests/CrashResumeTests): with
/// RETORT_TEST_KILL_AT="checkpoint:N" the process sends itself SIGKILL during its N-th checkpoint
/// save, after the folder is written and before it is renamed into place. Unset, nothing happens.
enum TestHooks {
    nonisolated(unsafe) private static var counts: [String: Int] = [:]
    private static let plan: (point: String, count: Int)? = {
        guard let text = ProcessInfo.processInfo.environment["RETORT_TEST_KILL_AT"] else { return nil }
        let parts = text.split(separator: ":")
        guard parts.count == 2, let n = Int(parts[1]) else { return nil }
        return (String(parts[0]), n)
    }()

    static func killIfAsked(at point: String) {
        guard let plan, plan.point == point else { return }
        counts[point, default: 0] += 1
        if counts[point] == plan.count { kill(getpid(), SIGKILL) }
    }

    /// RETORT_TEST_DIVERGE_RANK=R: data-parallel rank R nudges one weight after its first step,
    /// so that the ranks' weights differ (Tests/CLITests/DataParallelCLITests).
    static let divergingRank = ProcessInfo.processInfo.environment["RETORT_TEST_DIVERGE_RANK"].flatMap(Int.init)
}
