// What every recipe does around a Trainer: one stage of a run in its output folder — log lines,
// checkpoints (at every evaluation, every N steps or minutes, at a stop and at the stage's end),
// resuming from a checkpoint, Ctrl-C, and a loss that diverges — reported as RunEvents.
import Backend
import Foundation
import Models

/// What happens during a run, for a front end to show (the CLI prints a progress line).
public enum RunEvent {
    /// A one-line fact about the run (data sizes, trainable parameters, the layer map, …).
    case note(String)
    /// The memory plan, before the first step.
    case memoryPlan(String)
    /// Texts longer than the maximum length, whose ends the run does not see.
    case truncated(Truncation)
    case stageStarted(stage: String?, epochs: Int, steps: Int, learningRate: Double)
    /// `finished`: the checkpoint is the end of the run's last stage (nothing is left to train).
    case resumed(stage: String?, step: Int, totalSteps: Int, finished: Bool)
    case step(StepProgress)
    case evaluated(EvalLog, improved: Bool)
    case checkpointSaved(String)
    /// Something went wrong that the run survives (a checkpoint that could not be written).
    case warning(String)
    case tested(ClassificationMetrics)
    /// A teacher labelling texts before training (minutes on a large set): done of total so far.
    case labelled(done: Int, total: Int, seconds: Double)
    /// An evaluation on "dev" or "test" under way: texts done of total so far (a dev evaluation
    /// says so once it has run a second).
    case evaluating(set: String, done: Int, total: Int, seconds: Double, noun: String = "texts")
}

/// How many texts of each set (training, dev; or a command's inputs) were cut to the maximum length.
public struct Truncation: Sendable {
    /// Per set: its name in the message ("training", "dev", or "" for a command's inputs), the texts cut and all.
    public let sets: [(name: String, cut: Int, total: Int)]
    public let maxLength: Int

    public init(_ sets: [(name: String, encodings: [Encoding])], maxLength: Int) {
        self.sets = sets.map { ($0.name, $0.encodings.count(where: \.truncated), $0.encodings.count) }
        self.maxLength = maxLength
    }

    public var anyCut: Bool { sets.contains { $0.cut > 0 } }

    public var message: SettingText {
        let parts = sets.filter { $0.cut > 0 }.map { set in
            "\(set.cut) of \(set.total) \(set.name.isEmpty ? "" : set.name + " ")text\(set.total == 1 ? "" : "s") ("
                + String(format: "%.1f %%", 100 * Double(set.cut) / Double(max(set.total, 1))) + ")"
        }
        let one = sets.reduce(0) { $0 + $1.cut } == 1
        return "\(parts.joined(separator: " and ")) \(one ? "is" : "are") longer than \(Setting.maxLength) \(maxLength) tokens and "
            + "\(one ? "was" : "were") cut there; a larger \(Setting.maxLength) lets the model read more (at more time and memory)"
    }
}

/// One step as the progress line shows it.
public struct StepProgress: Sendable {
    public let log: StepLog
    public let epochs, totalSteps: Int
    /// Seconds left in this stage, from the pace since it started (or resumed).
    public let secondsLeft: Double
    /// fp16: the scale now and the updates skipped so far.
    public let lossScale: Double?
    public let skippedSteps: Int
}

final class StageRunner {
    let folder: RunFolder
    let store: CheckpointStore
    let policy: CheckpointPolicy
    let log: LogFile
    let progress: (RunEvent) -> Void
    let shouldStop: () -> Bool
    /// Whether checkpoints are written (rank 0 of a data-parallel job, or a process on its own).
    let writes: Bool
    /// Training time of the run before this process (from a checkpoint) and since it started.
    private let earlierSeconds: Double
    private let started = Date()
    private(set) var lastSavedStep: (stage: Int, step: Int)?
    /// Saved with every checkpoint: what a --resume must train on (Recipe.fingerprint).
    let dataFingerprint: String?
    let adapters: String?

    init(folder: RunFolder, policy: CheckpointPolicy, log: LogFile, earlierSeconds: Double, progress: @escaping (RunEvent) -> Void,
         shouldStop: @escaping () -> Bool, writes: Bool = true, dataFingerprint: String? = nil, adapters: String? = nil) {
        self.folder = folder; self.policy = policy; self.log = log; self.earlierSeconds = earlierSeconds; self.dataFingerprint = dataFingerprint
        self.adapters = adapters
        self.progress = progress; self.shouldStop = shouldStop; self.writes = writes
        store = CheckpointStore(folder: folder.checkpoints, keep: policy.keep)
    }

    /// Training seconds of the whole run so far.
    var trainSeconds: Double { earlierSeconds + Date().timeIntervalSince(started) }

    /// Runs `trainer` as stage `stageIndex` (named `stage`) of the run, from `checkpoint` when
    /// resuming. `saveBest` saves the model when dev metrics improve (or at each epoch's end
    /// without a dev set). Returns the best dev metrics.
    func run(_ trainer: Trainer, stage: String?, stageIndex: Int, lastStage: Bool = true, epochs: Int, from checkpoint: String?,
             saveBest: @escaping () throws -> Void) throws -> ClassificationMetrics? {
        if let checkpoint {
            if writes { store.removeLeftovers() }
            try trainer.loadCheckpoint(folder: checkpoint)
            lastSavedStep = (stageIndex, trainer.step)
            progress(.resumed(stage: stage, step: trainer.step, totalSteps: trainer.totalSteps, finished: lastStage && trainer.step >= trainer.totalSteps))
        }
        if checkpoint == nil || trainer.step < trainer.totalSteps {   // (a stage resumed at its end has nothing to start)
            progress(.stageStarted(stage: stage, epochs: epochs, steps: trainer.totalSteps, learningRate: trainer.options.learningRate))
        }
        trainer.stage = stage
        defer {   // the hooks capture the trainer: let it go when the stage ends
            trainer.onStep = { _ in }; trainer.onImproved = {}; trainer.onEval = { _, _ in }; trainer.onEvaluating = { _, _, _ in }
            trainer.afterStep = {}
        }
        let stageStart = Date(), startStep = trainer.step
        var lastSave = Date()
        func save() throws {
            guard writes else { lastSavedStep = (stageIndex, trainer.step); return }
            var state = trainer.state
            state.stage = stage; state.stageIndex = stageIndex; state.trainSeconds = trainSeconds; state.logBytes = log.length
            state.dataFingerprint = dataFingerprint
            state.adapters = adapters
            let name = (stage.map { $0 + "-" } ?? "") + "step-\(trainer.step)"
            let path = try store.save(named: name) { try trainer.saveCheckpoint(folder: $0, state: state) }
            lastSavedStep = (stageIndex, trainer.step)
            lastSave = Date()
            progress(.checkpointSaved(path))
        }
        func saveSurviving() {
            do { try save() } catch { progress(.warning("could not save a checkpoint: \(error)")) }
        }
        trainer.onStep = { [unowned trainer, progress, log] entry in
            log.write(entry)
            let done = entry.step - startStep, left = trainer.totalSteps - entry.step
            progress(.step(StepProgress(log: entry, epochs: epochs, totalSteps: trainer.totalSteps,
                                        secondsLeft: Date().timeIntervalSince(stageStart) / Double(max(done, 1)) * Double(left),
                                        lossScale: trainer.lossScaler.map { Double($0.scale) }, skippedSteps: trainer.lossScaler?.skippedSteps ?? 0)))
        }
        trainer.onImproved = { [unowned trainer] in
            try saveBest()
            if !trainer.hasDev { try save() }   // no evaluation to save after: the epoch's end is the point
        }
        trainer.onEvaluating = { [progress, noun = trainer.task.examplesNoun] in
            progress(.evaluating(set: "dev", done: $0, total: $1, seconds: $2, noun: noun))
        }
        trainer.onEval = { [progress, log] entry, improved in
            log.write(entry)
            progress(.evaluated(entry, improved: improved))
            saveSurviving()
        }
        trainer.afterStep = { [unowned trainer, policy] in
            let bySteps = policy.everySteps.map { trainer.step % $0 == 0 } ?? false
            let byTime = policy.everySeconds > 0 && Date().timeIntervalSince(lastSave) >= policy.everySeconds
            if (bySteps || byTime) && !(self.lastSavedStep.map { $0 == (stageIndex, trainer.step) } ?? false) { saveSurviving() }
        }
        trainer.shouldStop = shouldStop
        let best: ClassificationMetrics?
        do {
            best = try trainer.run()
        } catch var diverged as TrainingDiverged {
            diverged.checkpoint = store.newest()?.path
            diverged.bestModel = FileManager.default.fileExists(atPath: folder.path + "/model.safetensors") ? folder.path : nil
            throw diverged
        }
        // (a stop right after a save — an epoch's evaluation — has its checkpoint already)
        if !(lastSavedStep.map { $0 == (stageIndex, trainer.step) } ?? false) { try save() }
        if trainer.stopped {
            throw RunInterrupted(stage: stage, step: trainer.step, totalSteps: trainer.totalSteps, checkpoint: store.newest()?.path ?? folder.checkpoints)
        }
        return best
    }

    /// The checkpoint to resume from: the newest in OUT/checkpoints, else an older version's
    /// folder. Throws when there is none.
    static func resumePoint(_ folder: RunFolder, stages: [String]) throws -> (path: String, stageIndex: Int, state: TrainerState) {
        if let newest = CheckpointStore(folder: folder.checkpoints).newest() {
            return (newest.path, newest.state.stageIndex, newest.state)
        }
        if let legacy = folder.legacyCheckpoint(stages: stages) {
            var state = try TrainerState(file: legacy.path + "/trainer.json")
            state.stageIndex = legacy.stageIndex
            return (legacy.path, legacy.stageIndex, state)
        }
        throw InvalidSetting("\(Setting.resume): no checkpoint in \(folder.checkpoints)")
    }
}
