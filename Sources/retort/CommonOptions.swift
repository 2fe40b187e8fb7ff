// Options shared by finetune, eval and predict.
import ArgumentParser
import Backend
import Foundation
import Models
import Train

struct ColumnOptions: ParsableArguments {
    @Option(name: .long, help: "Text column: a name (the file has a header; JSONL key) or a 0-based index.")
    var textColumn = "text"

    @Option(name: .long, help: "Second text of a sentence pair, by name or index.")
    var textPairColumn: String?

    @Option(name: .long, help: "Label column, by name or index.")
    var labelColumn = "label"

    func spec(labelled: Bool) -> ColumnSpec {
        ColumnSpec(text: Column(textColumn), pair: textPairColumn.map(Column.init), label: labelled ? Column(labelColumn) : nil)
    }
}

struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "auto, cpu or cuda.")
    var device: Devices.Choice = .auto

    @Option(name: .long, help: ArgumentHelp("GPU precision: fp32 (as the CPU), tf32 (tensor-core matmuls, ~1e-3 relative error), bf16 or fp16 (mixed precision: 16-bit tensor-core operands, fp32 weights and accumulation; fp16 with dynamic loss scaling). The CPU computes in fp32.", valueName: "fp32|tf32|bf16|fp16"))
    var precision: Precision = .fp32

    @Option(name: .long, help: "CPU threads (default: all the CPUs this process may use).")
    var threads: Int?

    func backend() throws -> Backend {
        let (backend, note) = try Devices.makeBackend(device, threads: threads, precision: precision)
        if let note { printError("retort: \(note)") }
        printError("retort: \(backend.kind): \(backend.summary)")
        return backend
    }
}

/// Activation recomputation and the memory plan printed (and enforced) before the first step.
struct MemoryOptions: ParsableArguments {
    enum Recompute: String, ExpressibleByArgument, CaseIterable { case none, gelu }
    @Option(name: .long, help: "Recompute in backward instead of keeping: gelu (one FFN GELU output buffer for all layers; attention is always recomputed) or none.")
    var recompute: Recompute = .none

    /// Prints the plan of training `model` at these sizes on its backend and refuses (a one-line
    /// error naming the knobs) when it exceeds what the device can still give.
    func check(_ model: BertModel, batch: Int, length: Int, extraTrainable: Int = 0, teacher: MemoryPlan.Teacher? = nil) throws {
        let shape = MemoryPlan.Shape(batch: batch, length: length, recomputeGelu: recompute == .gelu)
        let plan = MemoryPlan(model: model, shape: shape, extraTrainable: extraTrainable, teacher: teacher)
        let use = model.backend.memoryUse, device = model.backend.kind.rawValue
        printError("retort: " + plan.summary(device: device, use: use))
        try plan.check(use: use, device: device)
    }
}

extension Devices.Choice: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func expand(_ path: String) -> String { (path as NSString).expandingTildeInPath }

/// "1m05s", "12s"
func duration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
}

struct LoRAOptions: ParsableArguments {
    @Option(name: .customLong("lora-rank"), help: "LoRA rank: train low-rank adapters and the classifier only (PEFT semantics).")
    var rank: Int?
    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha (scale alpha/r; default 2·rank).") var alpha: Double?
    @Option(name: .customLong("lora-dropout"), help: "Dropout on the LoRA branch's input.") var dropout = 0.1
    @Option(name: .customLong("lora-targets"), help: "Comma-separated: query, key, value, attention_output, intermediate, output.")
    var targets = "query,value"
    @Flag(name: .customLong("rs-lora"), help: "Scale by alpha/√r instead of alpha/r (rsLoRA).") var rsLoRA = false

    func validate() throws {
        if let rank, rank < 1 { throw ValidationError("--lora-rank must be positive") }
        if rank == nil && alpha != nil { throw ValidationError("--lora-alpha needs --lora-rank") }
        guard (0..<1).contains(dropout) else { throw ValidationError("--lora-dropout must be in [0, 1)") }
        _ = try modules()
    }

    func modules() throws -> [LoRATarget] {
        try targets.split(separator: ",").map { name in
            guard let t = LoRATarget(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--lora-targets: unknown module '\(name)' (query, key, value, attention_output, intermediate, output)")
            }
            return t
        }
    }

    /// Attaches adapters when --lora-rank is given, and says how many parameters train.
    func attach(to model: BertModel, seed: UInt64) throws {
        guard let rank else { return }
        try model.attachLoRA(LoRAConfig(rank: rank, alpha: alpha ?? Double(2 * rank), dropout: dropout, targets: try modules(), rsLoRA: rsLoRA),
                             seed: seed)
        let count = model.trainable.reduce(0) { $0 + $1.weight.count }
        printError("retort: LoRA r=\(rank) on \(targets): \(count) trainable parameters of \(model.layout.total)")
    }
}

/// The optimiser settings finetune and distill share.
struct OptimizerOptions: ParsableArguments {
    @Option(name: .long, help: "Fraction of the steps (of each stage) spent warming up linearly.") var warmup = 0.1
    @Option(name: .long, help: "AdamW weight decay (not on biases and LayerNorm).") var weightDecay = 0.01
    @Option(name: .long, help: "Clip the global gradient norm to this (0: off).") var maxGradNorm = 1.0

    func validate() throws {
        guard (0..<1).contains(warmup), weightDecay >= 0, maxGradNorm >= 0 else {
            throw ValidationError("--warmup must be in [0, 1), --weight-decay and --max-grad-norm not negative")
        }
    }

    func apply(to options: inout TrainingOptions) {
        options.warmupRatio = warmup; options.weightDecay = weightDecay; options.maxGradNorm = maxGradNorm
    }
}
