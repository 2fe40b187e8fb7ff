// Fine-tuning: AdamW (no decay on biases and LayerNorm), linear warmup then linear decay,
// gradient clipping and accumulation, evaluation every epoch (or N steps), the best model kept
// in the output folder, checkpoints with exact resume. Data order comes from (seed, epoch) and
// dropout masks from (seed, step), so a resumed run replays the uninterrupted one exactly.
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
    public init() {}
}

public struct StepLog: Codable, Sendable {
    public let step: Int, epoch: Int
    public let loss, lr, gradNorm, tokensPerSecond: Double
    /// Distillation: the unweighted loss terms of the step's last micro-batch.
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

public final class Trainer {
    public let classifier: Classifier
    public let options: TrainingOptions
    let train: [Encoding], trainLabels: [Int32]
    let dev: [Encoding], devLabels: [Int32]
    let activations: BertActivations
    let optimizer: Optimizer
    public private(set) var step = 0
    public private(set) var best: ClassificationMetrics?
    public var onStep: (StepLog) -> Void = { _ in }
    public var onEval: (Int, Int, ClassificationMetrics, Bool) -> Void = { _, _, _, _ in }   // epoch, step, metrics, improved
    public var onImproved: () throws -> Void = {}
    /// Checked after every step; true stops the run there (Ctrl-C: the caller then checkpoints).
    public var shouldStop: () -> Bool = { false }
    public private(set) var stopped = false
    /// The loss of one loaded micro-batch (activations, its encodings, dropout seed, gradient
    /// scale), accumulating gradients; nil: cross-entropy against the labels (fine-tuning).
    public var objective: ((BertActivations, [Encoding], UInt64, Float) -> Double)?
    /// Loss terms to log with each step (distillation).
    public var stepTerms: () -> [String: Double]? = { nil }
    public var stage: String?
    /// Tensors trained beside the model's (a distillation projection).
    let extra: [TrainableTensor]
    /// Dynamic loss scaling (fp16); nil: none.
    public private(set) var lossScaler: LossScaler?

    public init(classifier: Classifier, train: [Encoding], trainLabels: [Int32], dev: [Encoding], devLabels: [Int32],
                options: TrainingOptions, extra: [TrainableTensor] = [], idle: Set<String> = [], recomputeGelu: Bool = false,
                lossScaler: LossScaler? = nil) throws {
        precondition(train.count == trainLabels.count && dev.count == devLabels.count)
        self.classifier = classifier
        self.options = options
        self.train = train; self.trainLabels = trainLabels
        self.dev = dev; self.devLabels = devLabels
        let model = classifier.model, b = model.backend
        activations = try BertActivations(config: model.config, labels: model.labels, maxBatch: options.batchSize,
                                          maxLength: classifier.maxLength, backend: b, recomputeGelu: recomputeGelu)
        self.extra = extra
        optimizer = try Optimizer(model: model, extra: extra, idle: idle)
        // fp16 needs loss scaling; any backend can be given a scaler (the CPU tests do).
        self.lossScaler = lossScaler ?? (b.precision == .fp16 ? LossScaler() : nil)
    }

    public var stepsPerEpoch: Int { (train.count + options.batchSize * options.accumulation - 1) / (options.batchSize * options.accumulation) }
    public var totalSteps: Int { min(stepsPerEpoch * options.epochs, options.maxSteps ?? .max) }

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

    /// Runs until `totalSteps`. Returns the best dev metrics seen (nil without a dev set).
    @discardableResult
    public func run() throws -> ClassificationMetrics? {
        let model = classifier.model
        let perEpoch = stepsPerEpoch, k = options.accumulation
        while step < totalSteps {
            let epoch = step / perEpoch
            let micro = batches(epoch: epoch)
            for s in (step % perEpoch)..<perEpoch where step < totalSteps {
                let start = DispatchTime.now().uptimeNanoseconds
                model.zeroGradients()
                for p in extra { model.backend.fill(p.grad, 0) }
                var loss = 0.0, tokens = 0
                let lossScale = lossScaler?.scale ?? 1
                let group = micro[(s * k)..<min(s * k + k, micro.count)]
                for (j, indices) in group.enumerated() {
                    let batch = indices.map { train[$0] }
                    classifier.load(batch, labels: indices.map { trainLabels[$0] }, into: activations)
                    tokens += activations.batch * activations.length
                    let seed = options.seed &* 1_000_003 &+ UInt64(step) &* 131 &+ UInt64(j), scale = lossScale / Float(group.count)
                    if let objective {
                        loss += objective(activations, batch, seed, scale) / Double(group.count)
                    } else {
                        model.forward(activations, training: true, seed: seed)
                        loss += Double(model.backward(activations, gradScale: scale)) / Double(group.count)
                    }
                }
                let gradNorm = optimizer.clip(maxNorm: options.maxGradNorm, lossScale: Double(lossScale))
                let lr = learningRate(at: step)
                // An overflow under loss scaling skips the update (the data and the schedule move on).
                let apply = lossScaler?.update(finiteGradients: gradNorm.isFinite) ?? true
                if apply { optimizer.step(learningRate: lr, weightDecay: options.weightDecay, step: step + 1) }
                step += 1
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                var entry = StepLog(step: step, epoch: epoch + 1, loss: loss, lr: lr, gradNorm: gradNorm, tokensPerSecond: Double(tokens) / seconds)
                entry.terms = stepTerms()
                entry.stage = stage
                if lossScaler != nil {
                    entry.lossScale = Double(lossScale)
                    entry.skipped = !apply
                }
                onStep(entry)
                if let every = options.evalEvery, step % every == 0, step % perEpoch != 0 { try evaluate(epoch: epoch + 1) }
                if shouldStop() { stopped = true; return best }
            }
            if step % perEpoch == 0 || step == totalSteps { try evaluate(epoch: epoch + 1) }
        }
        return best
    }

    func evaluate(epoch: Int) throws {
        guard !dev.isEmpty else { try onImproved(); return }
        let metrics = try classifier.evaluate(dev, labels: devLabels, batchSize: options.batchSize, activations: activations)
        let improved = best.map { score(metrics) > score($0) } ?? true
        if improved { best = metrics; try onImproved() }
        onEval(epoch, step, metrics, improved)
    }

    func score(_ m: ClassificationMetrics) -> Double {
        switch options.metric {
        case "macro_f1": return m.macroF1
        case "mcc": return m.mcc
        default: return m.accuracy
        }
    }

    // MARK: checkpoints

    /// Saves weights, optimizer moments and the step into `folder` (each file written atomically).
    public func saveCheckpoint(folder: String) throws {
        let model = classifier.model, b = model.backend
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let tensors = checkpointTensors.map {
            SafeTensorsWriter.Tensor(name: $0.0, shape: [$0.1.count], values: b.floats($0.1))
        }
        try SafeTensorsWriter.write(tensors, metadata: ["format": "retort-checkpoint"], to: folder + "/state.safetensors")
        var state: [String: Any] = ["step": step, "options": try JSONSerialization.jsonObject(with: JSONEncoder().encode(options))]
        if let best { state["best"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(best)) }
        if let lossScaler { state["loss_scaler"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(lossScaler)) }
        try writeAtomically(try JSONSerialization.data(withJSONObject: state, options: [.prettyPrinted, .sortedKeys]), to: folder + "/trainer.json")
    }

    var checkpointTensors: [(String, Tensor)] {
        let model = classifier.model
        return [("weights", model.weights), ("adam.m", optimizer.m), ("adam.v", optimizer.v)] + (model.lora.map { [("lora", $0.weights)] } ?? [])
            + extra.map { ($0.name, $0.weight) }
    }

    /// Restores a checkpoint written by saveCheckpoint for the same model and data.
    public func loadCheckpoint(folder: String) throws {
        let model = classifier.model, b = model.backend
        let file = try SafeTensorsFile(path: folder + "/state.safetensors")
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
        guard let data = FileManager.default.contents(atPath: folder + "/trainer.json"),
              let state = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let saved = state["step"] as? Int else {
            throw DataError("\(folder)/trainer.json: missing or unreadable")
        }
        step = saved
        if let bestObject = state["best"] {
            best = try JSONDecoder().decode(ClassificationMetrics.self, from: JSONSerialization.data(withJSONObject: bestObject))
        }
        if lossScaler != nil, let saved = state["loss_scaler"] {   // a resumed fp16 run goes on at the scale it reached
            lossScaler = try JSONDecoder().decode(LossScaler.self, from: JSONSerialization.data(withJSONObject: saved))
        }
    }
}
