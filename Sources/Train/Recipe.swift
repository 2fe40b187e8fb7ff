// What every recipe (FineTuningRun, DistillationRun) shares: the backend it runs on, the events
// it reports, the stop it obeys, and the steps around its stages — adapters, the memory plan,
// opening the output folder (fresh, or at its newest checkpoint).
import Backend
import Foundation
import Models

/// How a recipe trains, whatever it trains.
public struct TrainingSettings: Sendable {
    /// Epochs, batch, accumulation, optimizer settings, seed, evaluation, bucketing, max steps.
    /// Its learning rate is used only when `learningRate` is set.
    public var options = TrainingOptions()
    /// nil: TrainingOptions.defaultLearningRate (5e-5; 1e-3 when only LoRA adapters train).
    public var learningRate: Double?
    /// Tokens per example, specials included.
    public var maxLength = 128
    /// Train adapters (and the classifier) instead of the whole model.
    public var lora: LoRAConfig?
    /// One FFN GELU buffer for all layers, recomputed in backward.
    public var recomputeGelu = false
    public var checkpoints = CheckpointPolicy()
    /// Continue from the newest checkpoint in the output folder.
    public var resume = false

    public init() {}

    /// `options` with the learning rate given, or the one the rule gives.
    var resolvedOptions: TrainingOptions {
        var o = options
        o.learningRate = learningRate ?? TrainingOptions.defaultLearningRate(adaptersOnly: lora != nil)
        return o
    }

    /// The memory plan of training `model` at these sizes.
    func plan(_ model: BertModel, extraTrainable: Int = 0, teacher: MemoryPlan.Teacher? = nil) -> MemoryPlan {
        MemoryPlan(model: model, shape: MemoryPlan.Shape(batch: options.rankBatchSize, length: maxLength, recomputeGelu: recomputeGelu),
                   extraTrainable: extraTrainable, teacher: teacher)
    }
}

public class TrainingRecipe {
    public let backend: Backend
    /// Every event of the run, as it happens.
    public var progress: (RunEvent) -> Void = { _ in }
    /// Checked after every step: true stops the run with a checkpoint (RunInterrupted).
    public var shouldStop: () -> Bool = { Interrupt.requested }

    init(backend: Backend) { self.backend = backend }

    /// Whether this process writes the run's files: rank 0 of a data-parallel job (mpirun), or a
    /// process on its own. The other ranks train alike and write nothing.
    public var writesOutputs: Bool { ProcessGroup.isPrimaryProcess }

    /// Attaches adapters (when asked for) and says how many parameters train.
    func attach(_ lora: LoRAConfig?, to model: BertModel, seed: UInt64) throws {
        guard let lora else { return }
        try model.attachLoRA(lora, seed: seed)
        progress(.note("LoRA r=\(lora.rank) on \(lora.targets.map(\.rawValue).joined(separator: ",")): "
                       + "\(model.trainableCount) trainable parameters of \(model.layout.total)"))
    }

    /// Says how many examples were cut to `maxLength`, when any were.
    func reportTruncation(train: [Encoding], dev: [Encoding], maxLength: Int) {
        let cut = Truncation([("training", train), ("dev", dev)], maxLength: maxLength)
        if cut.anyCut { progress(.truncated(cut)) }
    }

    /// Reports the memory plan and refuses a run that will not fit, before anything is written.
    func check(_ plan: MemoryPlan) throws {
        var plan = plan, use = backend.memoryUse, ranks = ""
        let device = backend.kind.rawValue
        if let world = ProcessGroup.world {
            // The ranks on this machine share its memory (the CPU), or its GPUs.
            let perGPU = ProcessInfo.processInfo.environment["RETORT_NCCL"] == "1" ? 1   // a GPU each (CUDA_VISIBLE_DEVICES per rank)
                : (world.localSize + Devices.gpus.count - 1) / max(1, Devices.gpus.count)
            let sharing = backend.kind == .cpu ? world.localSize : perGPU
            use.available /= max(1, sharing)
            plan.ranks = world.size
            ranks = " per rank: \(world.size) ranks, each \(plan.shape.batch) examples of every batch"
                + (sharing > 1 ? ", \(sharing) sharing this \(backend.kind == .cpu ? "machine's memory" : "GPU")" : "")
        }
        progress(.memoryPlan(plan.summary(device: device, use: use) + ranks))
        try plan.check(use: use, device: device)
    }

    /// Creates the output folder and its log, and the runner of its stages: fresh (what an
    /// earlier run there wrote removed: RunFolder.clearEarlierRun), or at the newest checkpoint when resuming — refused, before the
    /// log is cut back, when stage `options(i)` over `examples` is not the checkpoint's run.
    func open(_ folder: RunFolder, resume: Bool, stages: [String], policy: CheckpointPolicy, examples: Int, fingerprint: String,
              lora: LoRAConfig?, options: (_ stageIndex: Int) -> TrainingOptions) throws
        -> (runner: StageRunner, resumePoint: (path: String, stageIndex: Int, state: TrainerState)?) {
        if writesOutputs { try folder.create() }
        let resumePoint = resume ? try StageRunner.resumePoint(folder, stages: stages) : nil
        let adapters = TrainerState.adapters(lora)
        if let resumePoint, let conflict = Trainer.resumeConflict(resumePoint.state, folder: resumePoint.path,
                                                                   options: options(resumePoint.stageIndex), examples: examples,
                                                                   fingerprint: fingerprint, adapters: adapters) {
            throw conflict
        }
        if !resume && writesOutputs { folder.clearEarlierRun() }
        let log = writesOutputs ? try LogFile(folder.log, fresh: !resume, truncatingTo: resumePoint?.state.logBytes) : LogFile()
        let runner = StageRunner(folder: folder, policy: policy, log: log, earlierSeconds: resumePoint?.state.trainSeconds ?? 0,
                                 progress: progress, shouldStop: shouldStop, writes: writesOutputs, dataFingerprint: fingerprint,
                                 adapters: adapters)
        return (runner, resumePoint)
    }

    /// What a run trains on, as 16 hex digits (FNV-1a over the token ids of the training and dev
    /// examples, their labels and the label names): a checkpoint keeps it, and a --resume on other
    /// data, another dev split or another maximum length (other ids) is refused.
    static func fingerprint(train: [Encoding], trainLabels: [Int32], dev: [Encoding], devLabels: [Int32], names: [String]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ value: Int32) {
            for shift in stride(from: 0, to: 32, by: 8) { hash = (hash ^ UInt64((UInt32(bitPattern: value) >> UInt32(shift)) & 0xff)) &* 0x100_0000_01b3 }
        }
        for (encodings, labels) in [(train, trainLabels), (dev, devLabels)] {
            mix(Int32(encodings.count))
            for e in encodings { mix(Int32(e.ids.count)); e.ids.forEach(mix); e.typeIds.forEach(mix) }
            labels.forEach(mix)
        }
        for name in names { mix(Int32(name.utf8.count)); name.utf8.forEach { mix(Int32($0)) } }
        return String(format: "%016llx", hash)
    }
}
