// What a training run holds on its device, computed before the first step: parameters,
// gradients, optimizer state, activations (the arena exactly as BertActivations or
// DecoderActivations allocates it,
// plus the LoRA inputs it allocates at first use and the distillation scratch), the teacher
// (weights and inference arena) and workspace (the CUDA matmul workspace, at bf16/fp16 the
// scratch matmul operands are rounded into, and the T×T scratch of attention where the GPU
// composes it of matmuls).
// `retort finetune` and `retort distill` print it and refuse, naming the knobs to turn, when it
// exceeds what the device can still give.
import Backend
import Foundation
import Models

public struct MemoryPlan {
    /// The sizes that decide activation memory.
    public struct Shape: Sendable {
        public var batch, length: Int
        public var recomputeGelu: Bool
        public init(batch: Int, length: Int, recomputeGelu: Bool) {
            self.batch = batch; self.length = length; self.recomputeGelu = recomputeGelu
        }
    }
    public typealias Teacher = (model: BertModel, keepQueryKey: Set<Int>)

    public let shape: Shape
    /// Data parallel: the ranks that share every batch (`shape.batch` is one rank's share); the
    /// batch-size remedy is said for all of them.
    public var ranks = 1
    public private(set) var parameters = 0, gradients = 0, optimizer = 0, activations = 0, teacher = 0, workspace = 0
    public var total: Int { parameters + gradients + optimizer + activations + teacher + workspace }
    /// A language model's head: what its chunks hold against the [B·T, V] logits it never makes.
    public private(set) var headNote: String?
    // What the plan was made of, to plan other shapes.
    private enum Planned {
        case encoder(BertModel, extraTrainable: Int, teacher: Teacher?), decoder(DecoderModel), recurrent(RecurrentConfig, labels: Int, Backend)
    }
    private let planned: Planned

    /// The run of `model` (LoRA adapters attached, if any) at `shape`; `extraTrainable` floats
    /// train beside it (a projection); `teacher`: a distillation teacher and the layers whose
    /// queries and keys its arena keeps.
    public init(model: BertModel, shape: Shape, extraTrainable: Int = 0, teacher: Teacher? = nil) {
        (self.shape, planned) = (shape, .encoder(model, extraTrainable: extraTrainable, teacher: teacher))
        let f = MemoryLayout<Float>.size, c = model.config, BT = shape.batch * shape.length
        let adapterFloats = model.lora?.layout.total ?? 0
        parameters = (model.weights.count + adapterFloats + extraTrainable) * f + model.backend.halfCopyBytes(elements: model.weights.count)
        gradients = (model.grads.count + adapterFloats + extraTrainable) * f
        optimizer = 2 * (model.trainable.reduce(0) { $0 + $1.weight.count } + extraTrainable) * f
        activations = BertActivations.bytes(config: c, labels: model.labels, maxBatch: shape.batch, maxLength: shape.length,
                                            recomputeGelu: shape.recomputeGelu)
        if let lora = model.lora { activations += c.layers * lora.config.targets.count * BT * lora.config.rank * f }
        if let (t, keep) = teacher {
            let tc = t.config
            self.teacher = (t.weights.count + t.grads.count) * f + t.backend.halfCopyBytes(elements: t.weights.count)
                + BertActivations.bytes(config: tc, labels: t.labels, maxBatch: shape.batch, maxLength: shape.length, inference: true,
                                        keepQueryKey: keep)
            // The objective's scratch: projected hidden states and their gradient, and one gradient per distilled hidden state.
            let projected = tc.hiddenSize == c.hiddenSize ? 0 : 2 * BT * tc.hiddenSize
            activations += (projected + (keep.count + 1) * BT * c.hiddenSize) * f
        }
        let configs = [c] + (teacher.map { [$0.model.config] } ?? [])
        workspace = model.backend.workspaceBytes(matmuls: configs.flatMap { Self.layerMatmuls($0, tokens: BT) })
            + configs.map { model.backend.attentionScratchBytes(AttentionShape(batch: shape.batch, length: shape.length, heads: $0.heads,
                                                                               headSize: $0.headSize, dropout: Float($0.attentionDropout))) }
                .max()!   // named scratch buffers, shared by student and teacher
    }

    /// The run of a decoder (adapters attached, if any) at `shape`: its arena as DecoderActivations
    /// allocates it (the head in chunks of `headRows` rows), the LoRA inputs, the matmul workspace.
    public init(decoder model: DecoderModel, shape: Shape, headRows: Int = 256) {
        (self.shape, planned) = (shape, .decoder(model))
        let f = MemoryLayout<Float>.size, c = model.config, BT = shape.batch * shape.length
        let adapterFloats = model.lora?.layout.total ?? 0
        parameters = (model.weights.count + adapterFloats) * f + model.backend.halfCopyBytes(elements: model.weights.count)
        gradients = (model.grads.count + adapterFloats) * f
        optimizer = 2 * model.trainable.reduce(0) { $0 + $1.weight.count } * f
        activations = DecoderActivations.bytes(config: c, labels: model.labels, maxBatch: shape.batch, maxLength: shape.length,
                                               headRows: headRows)
        if let lora = model.lora { activations += lora.modules.count * BT * lora.config.rank * f }
        let (C, I, V, R) = (c.hiddenSize, c.intermediateSize, c.vocabSize, min(headRows, BT))
        if model.labels == 0 {   // logits and their gradient, [R, V] each, against the whole batch's
            headNote = R < BT ? "LM head \(Self.format(2 * R * V * f)) of logits and gradients in chunks of \(R) rows instead of \(Self.format(2 * BT * V * f))"
                : "LM head \(Self.format(2 * R * V * f)) of logits and gradients (all \(BT) rows in one chunk)"
        }
        workspace = model.backend.workspaceBytes(matmuls: [
            Gemm(m: BT, n: c.queryChannels, k: C, transB: true), Gemm(m: BT, n: I, k: C, transB: true), Gemm(m: BT, n: C, k: I, transB: true),
            Gemm(m: C, n: I, k: BT, transA: true), Gemm(m: I, n: C, k: BT, transA: true), Gemm(m: BT, n: I, k: C), Gemm(m: BT, n: C, k: I),
            Gemm(m: R, n: V, k: C, transB: true), Gemm(m: R, n: C, k: V)])
            + model.backend.attentionScratchBytes(AttentionShape(batch: shape.batch, length: shape.length, heads: c.heads, headSize: c.headSize,
                                                                 keyValueHeads: c.keyValueHeads, causal: true, dropout: c.attentionDropout))
    }

    /// A recurrent student's run, planned from its config before the model is made (beside its
    /// loaded teacher, which `budget` leaves out of what the plan may take).
    public init(recurrent c: RecurrentConfig, labels: Int, backend: Backend, shape: Shape) {
        (self.shape, planned) = (shape, .recurrent(c, labels: labels, backend))
        let f = MemoryLayout<Float>.size, BT = shape.batch * shape.length, G = c.cell.gates * c.hiddenSize
        let count = RecurrentModel.layout(c, labels: labels).total
        parameters = count * f
        gradients = count * f
        optimizer = 2 * count * f
        activations = RecurrentActivations.bytes(config: c, labels: labels, maxBatch: shape.batch, maxLength: shape.length, backend: backend)
        workspace = backend.workspaceBytes(matmuls: [Gemm(m: BT, n: G, k: max(c.embeddingSize, c.outputSize), transB: true),
                                                     Gemm(m: G, n: max(c.embeddingSize, c.outputSize), k: BT, transA: true)])
    }

    /// The matmuls of a layer's forward and backward over BT tokens (the largest operands there are).
    static func layerMatmuls(_ c: BertConfig, tokens BT: Int) -> [Gemm] {
        let C = c.hiddenSize, I = c.intermediateSize
        return [Gemm(m: BT, n: 3 * C, k: C, transB: true),   // q, k, v
                Gemm(m: BT, n: I, k: C, transB: true), Gemm(m: BT, n: C, k: I, transB: true),   // FFN
                Gemm(m: C, n: I, k: BT, transA: true), Gemm(m: I, n: C, k: BT, transA: true),   // FFN weight gradients
                Gemm(m: BT, n: I, k: C), Gemm(m: BT, n: C, k: I)]                               // FFN input gradients
    }

    /// The same run at another shape.
    public func replanned(_ shape: Shape) -> MemoryPlan {
        switch planned {
        case .encoder(let model, let extra, let teacher): return MemoryPlan(model: model, shape: shape, extraTrainable: extra, teacher: teacher)
        case .decoder(let model): return MemoryPlan(decoder: model, shape: shape)
        case .recurrent(let config, let labels, let backend): return MemoryPlan(recurrent: config, labels: labels, backend: backend, shape: shape)
        }
    }

    /// One line for the log: each part and the total against what the device can give.
    public func summary(device: String, use: MemoryUse) -> String {
        var parts = [("parameters", parameters), ("gradients", gradients), ("optimizer", optimizer), ("activations", activations)]
        if teacher > 0 { parts.append(("teacher", teacher)) }
        if workspace > 0 { parts.append(("workspace", workspace)) }
        return "memory plan on \(device): " + parts.map { "\($0.0) \(Self.format($0.1))" }.joined(separator: " + ")
            + " = \(Self.format(total)) (\(Self.format(budget(use))) available)" + (headNote.map { "; " + $0 } ?? "")
    }

    /// What the plan may take: for a model already loaded, what is in use (the plan counts it) and
    /// what is free; for a recurrent student, planned before it is made beside its loaded teacher
    /// (which stays), what is free.
    func budget(_ use: MemoryUse) -> Int {
        if case .recurrent = planned { return use.available }
        return use.inUse + use.available
    }

    /// Throws a one-line error naming the settings that would make the run fit, when it does not.
    public func check(use: MemoryUse, device: String) throws {
        let budget = self.budget(use)
        guard total > budget else { return }
        var knobs: [SettingText] = []
        var smaller = shape
        while smaller.batch > 1 {
            smaller.batch /= 2
            if replanned(smaller).total <= budget { knobs.append("\(Setting.batchSize) \(smaller.batch * ranks) (fits)"); break }
        }
        if knobs.isEmpty { knobs.append("a smaller \(Setting.batchSize)") }
        knobs.append("a shorter \(Setting.maxLength) (now \(shape.length))")
        var encoder = true, adapters = false
        switch planned {
        case .encoder(let model, _, _): adapters = model.lora != nil
        case .decoder(let model): (encoder, adapters) = (false, model.lora != nil)   // decoders always recompute their activation
        case .recurrent(let config, _, _):   // neither gelu nor adapters: its widths
            (encoder, adapters) = (false, true)
            knobs.append("a smaller \(Setting.hiddenSize) (now \(config.hiddenSize))")
            // What the embedding width sizes — the table (vocabulary × width) and the first layer's W_ih
            // (gates·H × width a direction), each with its gradient and AdamW's two moments — when it outweighs the rest.
            let widthFloats = config.embeddingSize * (config.vocabSize + config.cell.gates * config.hiddenSize * (config.bidirectional ? 2 : 1))
            if widthFloats * 4 * MemoryLayout<Float>.size > total / 2 {
                knobs.insert("a smaller \(Setting.embeddingSize) (now \(config.embeddingSize))", at: 0)
            }
            if config.layers > 1 { knobs.append("fewer \(Setting.studentLayers) (now \(config.layers))") }
        }
        if encoder && !shape.recomputeGelu {
            var recompute = shape
            recompute.recomputeGelu = true
            knobs.append("\(Setting.recompute) gelu (needs \(Self.format(replanned(recompute).total)))")
        }
        if !adapters { knobs.append("\(Setting.loraRank) 8 (optimizer state for the adapters only)") }
        throw MemoryPlanError(needed: total, available: budget, device: device, remedies: knobs)
    }

    public static func format(_ bytes: Int) -> String {
        let b = Double(bytes), (GiB, MiB) = (Double(1 << 30), Double(1 << 20))
        if b >= GiB { return String(format: "%.2f GiB", b / GiB) }
        if b >= MiB { return String(format: "%.1f MiB", b / MiB) }
        return String(format: "%.0f KiB", b / 1024)
    }
}

/// A run that would not fit in the device's memory, refused before it starts.
public struct MemoryPlanError: SettingsError, Sendable {
    public let needed, available: Int
    public let device: String
    public let remedies: [SettingText]

    public var message: SettingText {
        var text: SettingText = "this run needs \(MemoryPlan.format(needed)) on \(device) but \(MemoryPlan.format(available)) is available; try "
        for (i, remedy) in remedies.enumerated() { text = text + (i == 0 ? "" : ", ") + remedy }
        return text + "."
    }
}
