// The training loop: AdamW (no decay on biases and LayerNorm), linear warmup then linear decay,
// gradient clipping and accumulation, evaluation every epoch (or N steps), the best model kept
// (through onImproved), checkpoints with exact resume. The loss comes from a TrainingObjective
// (fine-tuning cross-entropy, a distillation stage, …): the loop does not know which. Data order
// comes from (seed, epoch) and dropout masks from (seed, step), so a resumed run replays the
// uninterrupted one exactly. A loss or gradient that is not finite stops the run before its
// update is applied (fp16's overflow steps, which loss scaling skips, aside).
//
// In a data-parallel job (ProcessGroup.world, started by mpirun) every rank makes the same
// global batches and runs its share of each (`shard`); the gradients are summed over the ranks
// (GradientExchange, overlapped with the backward on the CPU) and the loss terms averaged, so
// every rank takes the same update and the weights stay identical (checked every
// `weightCheckEvery` steps). Rank 0 alone evaluates: the hooks that save and log run there.
import Backend
import Foundation

public struct TrainingOptions: Sendable, Codable {
    public var epochs = 3
    public var batchSize = 32
    public var accumulation = 1
    public var learningRate = 5e-5
    public var weightDecay = 0.01
    public var warmupRatio = 0.1
    public var maxGradNorm = 1.0
    public var seed: UInt64 = 42
    public var evalEvery: Int? = nil        // steps; nil: every epoch
    public var bucket = false               // group batches by length
    public var metric = "accuracy"          // accuracy | macro_f1 | mcc
    public var maxSteps: Int? = nil         // stop early (smoke runs, tests)
    /// The most examples one batch of the run can hold: its training or its dev set, the larger
    /// (nil: no bound). A batch larger than the data sized the arena, and the memory plan, for rows
    /// never filled: 32 × 128 tokens of SmolLM2 for 9 blocks of text, 3.4 GiB where 1 would do.
    public var dataRows: Int? = nil
    public init() {}

    /// The one rule for a learning rate nobody gave: 5e-5 when the whole model trains (BERT's
    /// fine-tuning recipe), 1e-3 when only adapters (and a head) train — LoRA needs a larger step
    /// (at 5e-5 an r 8 run on SST-2 stayed at the majority class).
    public static func defaultLearningRate(adaptersOnly: Bool) -> Double { adaptersOnly ? 1e-3 : 5e-5 }

    /// Examples per micro-batch in this process: the batch, or in a data-parallel job (mpirun)
    /// this rank's share of every global batch of `batchSize`.
    public var rankBatchSize: Int {
        let ranks = ProcessGroup.world?.size ?? 1
        return min((batchSize + ranks - 1) / ranks, max(1, dataRows ?? .max))
    }

    /// Optimizer steps per epoch over `examples` training examples.
    public func stepsPerEpoch(examples: Int) -> Int { (examples + batchSize * accumulation - 1) / (batchSize * accumulation) }

    /// Optimizer steps of the whole run over `examples` training examples.
    public func totalSteps(examples: Int) -> Int { min(stepsPerEpoch(examples: examples) * epochs, maxSteps ?? .max) }
}

public struct StepLog: Codable, Sendable {
    public let step: Int, epoch: Int
    public let loss, lr, gradNorm, tokensPerSecond: Double
    /// Distillation: the weighted loss terms of the step (averaged over its micro-batches).
    public var terms: [String: Double]? = nil
    public var stage: String? = nil
    /// fp16: the loss scale the step ran with, and whether its update was skipped (an overflow).
    public var lossScale: Double? = nil
    public var skipped: Bool? = nil
    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, lr, gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s", terms, stage
        case lossScale = "loss_scale", skipped
    }
}

/// A dev evaluation, as log.jsonl records it.
public struct EvalLog: Codable, Sendable {
    public let epoch, step: Int
    public let dev: ClassificationMetrics
    public var stage: String? = nil
}

public final class Trainer {
    /// The model, its arena and what a step minimises (ClassifierTask, DecoderTask).
    public let task: TrainingTask
    /// The BERT-family classifier a ClassifierTask trains (nil for another task).
    public var classifier: Classifier? { (task as? ClassifierTask)?.classifier }
    public let options: TrainingOptions
    let train: [Encoding], trainLabels: [Int32]
    let dev: [Encoding], devLabels: [Int32]
    let optimizer: Optimizer
    /// What a step reads back, in one download: the loss terms, then Σg² per gradient group.
    let readout: Tensor
    let losses: StepLosses
    public private(set) var step = 0
    public private(set) var best: ClassificationMetrics?
    /// The loss of the last step run (nil before the first).
    public private(set) var lastLoss: Double?
    /// The step of the last evaluation: a run resumed at an evaluation point that was not yet
    /// evaluated (stopped just before it) evaluates first.
    private var evaluatedStep = 0
    public var onStep: (StepLog) -> Void = { _ in }
    public var onEval: (EvalLog, _ improved: Bool) -> Void = { _, _ in }
    /// During a dev evaluation that has run a second or more: (texts done, all, seconds), at most
    /// four times a second.
    public var onEvaluating: (_ done: Int, _ total: Int, _ seconds: Double) -> Void = { _, _, _ in }
    public var onImproved: () throws -> Void = {}
    /// After every step and its evaluation, if due (periodic checkpoints).
    public var afterStep: () throws -> Void = {}
    /// Checked after every step; true stops the run there (the caller then checkpoints).
    public var shouldStop: () -> Bool = { false }
    public private(set) var stopped = false
    /// Data parallel: some rank was asked to stop at the last step (all stop together).
    private var stopRequested = false
    /// The stage name logged with each step (distillation).
    public var stage: String?
    /// Dynamic loss scaling (fp16); nil: none.
    public private(set) var lossScaler: LossScaler?
    /// The data-parallel job this trainer is one rank of (nil: a process on its own).
    public let group: ProcessGroup?
    private let exchange: GradientExchange?
    /// Steps between checks that every rank holds the same weights (data-parallel jobs; also at
    /// the end). RETORT_WEIGHT_CHECK_EVERY sets it.
    public var weightCheckEvery = ProcessInfo.processInfo.environment["RETORT_WEIGHT_CHECK_EVERY"].flatMap(Int.init).map { max(1, $0) } ?? 100
    /// Whether this process evaluates, saves and logs (rank 0, or a process on its own).
    public var isPrimary: Bool { group?.isPrimary ?? true }
    /// Steps this trainer ran (not counting those before a resume).
    private var stepsRun = 0

    /// What metrics.json says of a data-parallel run (nil for a process on its own).
    public var dataParallel: DataParallelMetrics? {
        guard let group, let exchange else { return nil }
        return DataParallelMetrics(ranks: group.size, layerBucketsPerStep: Double(exchange.layerBuckets) / Double(max(1, stepsRun)),
                                   gpuTransport: group.deviceTransport)
    }

    /// A BERT-family classifier; `objective` nil: cross-entropy against the labels (fine-tuning).
    public convenience init(classifier: Classifier, train: [Encoding], trainLabels: [Int32], dev: [Encoding], devLabels: [Int32],
                            options: TrainingOptions, objective: TrainingObjective? = nil, recomputeGelu: Bool = false,
                            lossScaler: LossScaler? = nil) throws {
        let task = try ClassifierTask(classifier: classifier, objective: objective ?? CrossEntropyObjective(model: classifier.model),
                                      maxBatch: options.rankBatchSize, recomputeGelu: recomputeGelu)
        try self.init(task: task, train: train, trainLabels: trainLabels, dev: dev, devLabels: devLabels, options: options,
                      lossScaler: lossScaler)
    }

    /// Any task; labels are per example (a language model's are not read: its targets are its ids).
    public init(task: TrainingTask, train: [Encoding], trainLabels: [Int32], dev: [Encoding], devLabels: [Int32],
                options: TrainingOptions, lossScaler: LossScaler? = nil) throws {
        precondition(train.count == trainLabels.count && dev.count == devLabels.count)
        self.task = task
        self.options = options
        self.train = train; self.trainLabels = trainLabels
        self.dev = dev; self.devLabels = devLabels
        let b = task.backend
        optimizer = try task.makeOptimizer()
        readout = try b.zeros(StepLosses.capacity + optimizer.gradientGroups.count)
        losses = StepLosses(readout.slice(0, StepLosses.capacity), backend: b)
        // fp16 needs loss scaling; any backend can be given a scaler (the CPU tests do).
        self.lossScaler = lossScaler ?? (b.precision == .fp16 ? LossScaler() : nil)
        let world = ProcessGroup.world, gradients = optimizer.gradientGroups
        group = world
        if let world {   // rank 0's setting, whatever reached the others' environment
            var every = [Double(weightCheckEvery)]
            try world.broadcastValue(&every, what: "the weight-check setting")
            weightCheckEvery = Int(every[0])
        }
        exchange = world.map { GradientExchange(group: $0, backend: b, gradients: gradients) }
        if let exchange { task.setLayerGradientsHook { [weak exchange] in exchange?.layerFinished($0) } }
    }

    deinit { task.setLayerGradientsHook(nil) }

    /// This rank's examples of a global micro-batch: every size-th from its rank-th. Shares
    /// differ by at most one example (none repeated, unlike PyTorch's DistributedSampler, which
    /// pads); each rank's loss is weighed by its share (`shareScale`), so that the ranks' mean is
    /// the batch's mean as one process computes it.
    static func shard(_ indices: [Int], rank: Int, size: Int) -> [Int] {
        guard size > 1 else { return indices }
        return stride(from: rank, to: indices.count, by: size).map { indices[$0] }
    }

    /// What a share's mean loss is multiplied by: ranks × (its examples / the batch's), so that
    /// the sum over the ranks divided by their number is the batch's mean.
    static func shareScale(examples: Int, of batch: Int, ranks: Int) -> Float {
        Float(ranks * examples) / Float(max(1, batch))
    }

    public var hasDev: Bool { !dev.isEmpty }
    public var stepsPerEpoch: Int { options.stepsPerEpoch(examples: train.count) }
    public var totalSteps: Int { options.totalSteps(examples: train.count) }

    /// The micro-batches of an epoch: indices into the training set.
    func batches(epoch: Int) -> [[Int]] {
        var rng = SplitMix(seed: options.seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(train.indices)
        order.shuffle(using: &rng)
        let B = options.batchSize
        if options.bucket {   // sort windows of 50 batches by length, then shuffle the batches
            var grouped: [[Int]] = []
            for start in stride(from: 0, to: order.count, by: 50 * B) {
                let window = order[start..<min(start + 50 * B, order.count)].sorted { train[$0].ids.count < train[$1].ids.count }
                for s in stride(from: 0, to: window.count, by: B) { grouped.append(Array(window[(window.startIndex + s)..<min(window.startIndex + s + B, window.endIndex)])) }
            }
            grouped.shuffle(using: &rng)
            return grouped
        }
        return stride(from: 0, to: order.count, by: B).map { Array(order[$0..<min($0 + B, order.count)]) }
    }

    func learningRate(at step: Int) -> Double {
        let total = Double(totalSteps), warmup = (options.warmupRatio * total).rounded(.up)
        let t = Double(step)
        if t < warmup { return options.learningRate * (t + 1) / max(warmup, 1) }
        return options.learningRate * max(0, (total - t) / max(total - warmup, 1))
    }

    /// Why a run with `options` over `examples` training examples cannot continue from a
    /// checkpoint `saved` (at `folder`, of stage `stageIndex`, whose seed is the run's + index):
    /// a continuation is the run it claims only with the same batches, data order and schedule,
    /// and on the same data. --max-steps may differ (a smoke run's stop). Nil: it can.
    public static func resumeConflict(_ saved: TrainerState, folder: String, options o: TrainingOptions, examples: Int,
                                      fingerprint: String? = nil, adapters: String? = nil) -> InvalidSetting? {
        let s = saved.options, offset = UInt64(saved.stageIndex)
        let settings: [(Setting, String, String)] = [
            (.batchSize, "\(s.batchSize)", "\(o.batchSize)"), (.accumulation, "\(s.accumulation)", "\(o.accumulation)"),
            (.learningRate, "\(s.learningRate)", "\(o.learningRate)"), (.weightDecay, "\(s.weightDecay)", "\(o.weightDecay)"),
            (.warmup, "\(s.warmupRatio)", "\(o.warmupRatio)"), (.maxGradNorm, "\(s.maxGradNorm)", "\(o.maxGradNorm)"),
            (.seed, "\(s.seed &- offset)", "\(o.seed &- offset)"), (.bucket, "\(s.bucket)", "\(o.bucket)"),
            (.epochs, "\(s.epochs)", "\(o.epochs)"), (.metric, s.metric, o.metric),
        ]
        let changed = settings.filter { $0.1 != $0.2 }
        if !changed.isEmpty {
            var text: SettingText = "\(Setting.resume): \(folder) was trained with "
            for (i, (setting, was, now)) in changed.enumerated() {
                text = text + (i == 0 ? "" : ", ") + "\(setting) \(was) (this run: \(now))"
            }
            return InvalidSetting(text + "; resume with the same settings, or start a new run in another output folder")
        }
        if let was = saved.adapters, let adapters, was != adapters {
            return InvalidSetting("\(Setting.resume): \(folder) was trained with \(was) (this run: \(adapters)); resume with the same "
                                  + "\(Setting.loraRank) settings, or start a new run in another output folder")
        }
        if let was = saved.dataFingerprint, let fingerprint, was != fingerprint {
            return InvalidSetting("\(Setting.resume): \(folder) was trained on other data: its training or dev examples, their labels, the dev "
                                  + "split or the \(Setting.maxLength) differ; resume with the same data and settings, or start a new run in another output folder")
        }
        let steps = o.stepsPerEpoch(examples: examples) * o.epochs
        guard saved.step <= steps else {
            return InvalidSetting("\(Setting.resume): \(folder) is at step \(saved.step), past the \(steps) steps of this run's "
                                  + "\(examples) training examples: it was trained on other data")
        }
        // A smaller step limit than the checkpoint's step would end the run before it trained or evaluated again.
        if let limit = o.maxSteps, saved.step > limit {
            return InvalidSetting("\(Setting.resume): \(folder) is at step \(saved.step), past this run's \(Setting.maxSteps) \(limit); "
                                  + "give a \(Setting.maxSteps) of at least \(saved.step), or none, to go on from it")
        }
        return nil
    }

    /// Runs until `totalSteps` (or until shouldStop). Returns the best dev metrics seen (nil
    /// without a dev set). Throws TrainingDiverged on a loss or gradient that is not finite.
    @discardableResult
    public func run() throws -> ClassificationMetrics? {
        try evaluateIfDue()
        try waitForPrimary()
        var epochBatches: (epoch: Int, batches: [[Int]])?
        while step < totalSteps {
            let epoch = step / stepsPerEpoch
            if epochBatches?.epoch != epoch { epochBatches = (epoch, batches(epoch: epoch)) }
            try trainStep(epoch: epoch, micro: epochBatches!.batches)
            try checkWeightsIfDue()   // (before rank 0 saves anything of this step)
            try evaluateIfDue()
            try afterStep()
            try waitForPrimary()
            if group == nil ? shouldStop() : stopRequested { stopped = true; return best }
        }
        return best
    }

    /// Data parallel: the ranks meet after what rank 0 alone does (evaluating, saving), waiting
    /// for it four times as long as for a step's sums.
    private func waitForPrimary() throws {
        guard let group, step > 0 else { return }
        var done = [0.0]
        try group.allReduce(&done, what: "the wait for rank 0's evaluation and checkpoint", timeout: 4 * group.timeout)
    }

    /// One optimizer step: the micro-batches of step `step` within its epoch, clipping, AdamW.
    private func trainStep(epoch: Int, micro: [[Int]]) throws {
        let k = options.accumulation, s = step % stepsPerEpoch
        let start = DispatchTime.now().uptimeNanoseconds
        task.zeroGradients()
        var tokens = 0
        let lossScale = lossScaler?.scale ?? 1
        let group = micro[(s * k)..<min(s * k + k, micro.count)]
        losses.reset()
        for (j, global) in group.enumerated() {
            var indices = self.group.map { Self.shard(global, rank: $0.rank, size: $0.size) } ?? global
            var seed = options.seed &* 1_000_003 &+ UInt64(step) &* 131 &+ UInt64(j), share: Float = 1
            if let world = self.group {   // weighed by its part of the batch; masks of its own
                share = Self.shareScale(examples: indices.count, of: global.count, ranks: world.size)
                // A batch smaller than the job leaves this rank nothing: it runs one example at
                // weight 0, so that its backward starts the same gradient sums as the others'.
                if indices.isEmpty { indices = [global[0]] }
                seed = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(world.rank)
            }
            let batch = indices.map { train[$0] }, labels = indices.map { trainLabels[$0] }
            if self.group != nil {   // padded as the whole batch would be
                let loaded = task.load(batch, labels: labels, examples: indices, whole: global.map { train[$0] })
                tokens += share > 0 ? loaded : 0
            } else {
                tokens += task.load(batch, labels: labels, examples: indices)
            }
            exchange?.armed = j == group.count - 1
            task.step(batch, seed: seed, gradScale: lossScale / Float(group.count) * share, losses: losses, weight: Double(share) / Double(group.count))
        }
        // Data parallel: the gradients summed over the ranks (1/N goes into the clipping factor).
        try exchange?.finish()
        let ranks = Double(self.group?.size ?? 1)
        // The step's one read of the device: the loss terms and the gradient norms together.
        let groups = optimizer.gradientGroups.count
        optimizer.squaredNorms(into: readout.slice(StepLosses.capacity, groups))
        var host = task.backend.floats(readout)
        if let world = self.group {   // the ranks' mean loss terms, global tokens, and a stop anywhere stops all
            var shared = host.prefix(StepLosses.capacity).map(Double.init) + [Double(tokens), shouldStop() ? 1 : 0]
            try world.allReduce(&shared, what: "the loss all-reduce")
            for i in 0..<StepLosses.capacity { host[i] = Float(shared[i] / ranks) }
            tokens = Int(shared[StepLosses.capacity])
            stopRequested = shared[StepLosses.capacity + 1] > 0
        }
        let (loss, terms) = losses.read(host)
        let gradNorm = optimizer.norm(sumsOfSquares: host[StepLosses.capacity...], lossScale: Double(lossScale) * ranks)
        optimizer.clip(norm: gradNorm, maxNorm: options.maxGradNorm, lossScale: Double(lossScale) * ranks)
        let lr = learningRate(at: step)
        // An overflow under loss scaling skips the update (the data and the schedule move on),
        // unless the scale cannot go lower; anything else not finite stops the run here.
        let overflowSkippable = lossScaler.map { loss.isFinite && $0.scale > $0.minimum } ?? false
        if !(loss.isFinite && gradNorm.isFinite) && !overflowSkippable {
            throw TrainingDiverged(stage: stage, step: step + 1, loss: loss, gradientNorm: gradNorm)
        }
        let apply = lossScaler?.update(finiteGradients: gradNorm.isFinite) ?? true
        if apply { optimizer.step(learningRate: lr, weightDecay: options.weightDecay, step: step + 1) }
        if step == 0, let world = self.group, TestHooks.divergingRank == world.rank, let p = optimizer.parameters.first {
            task.backend.axpy(p.weight.slice(0, 1), p.weight.slice(0, 1), count: 1, alpha: 1e-3)
        }
        step += 1
        stepsRun += 1
        lastLoss = loss
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var entry = StepLog(step: step, epoch: epoch + 1, loss: loss, lr: lr, gradNorm: gradNorm, tokensPerSecond: Double(tokens) / seconds)
        entry.terms = terms.isEmpty ? nil : Dictionary(terms.map { ($0.name, $0.value) }, uniquingKeysWith: +)
        entry.stage = stage
        if lossScaler != nil {
            entry.lossScale = Double(lossScale)
            entry.skipped = !apply
        }
        onStep(entry)
    }

    /// Evaluates when `step` ends an epoch (or the run), or hits evalEvery, and was not evaluated yet.
    private func evaluateIfDue() throws {
        guard step > 0, evaluatedStep != step else { return }
        guard isPrimary else { evaluatedStep = step; return }
        let epochEnd = step % stepsPerEpoch == 0 || step == totalSteps
        guard epochEnd || options.evalEvery.map({ step % $0 == 0 }) == true else { return }
        try evaluate(epoch: (step - 1) / stepsPerEpoch + 1)
    }

    func evaluate(epoch: Int) throws {
        evaluatedStep = step
        guard !dev.isEmpty else { try onImproved(); return }
        let started = Date(), total = dev.count
        var shown = started
        let metrics = try task.evaluate(dev, labels: devLabels, batchSize: options.rankBatchSize) { [onEvaluating] done in
            let now = Date()
            guard now.timeIntervalSince(started) >= 1, now.timeIntervalSince(shown) >= 0.25 else { return }
            shown = now
            onEvaluating(done, total, now.timeIntervalSince(started))
        }
        guard metrics.loss.isFinite else {   // never saved as the best model, nor checkpointed
            var diverged = TrainingDiverged(stage: stage, step: step, loss: metrics.loss, gradientNorm: .nan)
            diverged.onDev = true
            throw diverged
        }
        let improved = best.map { score(metrics) > score($0) } ?? true
        if improved { best = metrics; try onImproved() }
        onEval(EvalLog(epoch: epoch, step: step, dev: metrics, stage: stage), improved)
    }

    /// Data parallel: after this process's first step, every `weightCheckEvery` steps and at the
    /// end, a checksum of what trains (weights, adapters, a projection) compared with rank 0's;
    /// a rank that differs stops the whole job.
    private func checkWeightsIfDue() throws {
        guard let group, stepsRun == 1 || step % weightCheckEvery == 0 || step == totalSteps else { return }
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325   // FNV-1a over the bits of the weights, adapters, projection
        for (_, tensor) in task.checkpointTensors {
            for value in task.backend.floats(tensor) { hash = (hash ^ UInt64(value.bitPattern)) &* 0x100_0000_01B3 }
        }
        var bytes = withUnsafeBytes(of: hash) { Array($0) }
        try group.broadcast(&bytes, what: "the weight check")
        let primary = bytes.withUnsafeBytes { $0.load(as: UInt64.self) }
        var differs = [primary == hash ? 0.0 : 1.0]
        try group.allReduce(&differs, what: "the weight check")
        guard differs[0] == 0 else {
            throw ProcessGroup.CollectiveError(description: "rank \(group.rank): after step \(step) the weights of \(Int(differs[0])) rank(s) differ from rank 0's "
                + (primary == hash ? "(this rank's match)" : String(format: "(checksum %016llx here, %016llx on rank 0)", hash, primary))
                + ": the ranks run different binaries, CPU kernel levels or devices; run every rank alike")
        }
    }

    func score(_ m: ClassificationMetrics) -> Double { m.score(options.metric) }

    // MARK: checkpoints

    /// The trainer's part of a checkpoint: the step, options, best metrics, loss scale.
    public var state: TrainerState {
        TrainerState(step: step, options: options, best: best, lossScaler: lossScaler, evaluatedStep: evaluatedStep, lastLoss: lastLoss)
    }

    /// Saves weights, optimizer moments and `state` (extended with the run's progress) into
    /// `folder`, each file written durably; CheckpointStore makes the folder itself atomic.
    public func saveCheckpoint(folder: String, state: TrainerState? = nil) throws {
        let b = task.backend
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // Each read from the device as it is written: one chunk of one tensor in memory at a time.
        let tensors = checkpointTensors.map { name, tensor in
            SafeTensorsWriter.Tensor(name: name, shape: [tensor.count], count: tensor.count) { b.floats(tensor.slice($0, $1)) }
        }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "retort-checkpoint"], to: folder + "/state.safetensors")
        try writeAtomically(try (state ?? self.state).json(), to: folder + "/trainer.json")
    }

    var checkpointTensors: [(String, Tensor)] {
        task.checkpointTensors.prefix(1) + [("adam.m", optimizer.m), ("adam.v", optimizer.v)] + task.checkpointTensors.dropFirst()
    }

    /// Restores a checkpoint written by saveCheckpoint for the same model and data; returns its state.
    @discardableResult
    public func loadCheckpoint(folder: String) throws -> TrainerState {
        let b = task.backend
        let file = try SafeTensorsFile(path: folder + "/state.safetensors")
        let state = try TrainerState(file: folder + "/trainer.json")
        for (name, tensor) in checkpointTensors {
            guard file.entries[name] != nil else {
                throw DataError("\(folder)/state.safetensors: no '\(name)': the checkpoint is of a run \(name == "lora" ? "without" : "with") LoRA")
            }
            let values = try file.floats(name)
            guard values.count == tensor.count else {
                throw DataError("\(folder)/state.safetensors: '\(name)' has \(values.count) values, the model \(tensor.count): not this model's checkpoint")
            }
            values.withUnsafeBytes { b.upload(tensor, $0) }
        }
        step = state.step
        best = state.best
        lastLoss = state.lastLoss
        evaluatedStep = state.evaluatedStep ?? state.step
        if lossScaler != nil, let saved = state.lossScaler { lossScaler = saved }   // a resumed fp16 run goes on at the scale it reached
        return state
    }
}
