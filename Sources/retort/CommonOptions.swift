// Options shared by the commands, and the one place that turns the library's settings into
// this CLI's flags (error messages name the flag to change).
import ArgumentParser
import Backend
import Foundation
import Models
import Train

/// The text columns of a data file (predict's, which reads no labels).
struct TextColumnOptions: ParsableArguments {
    @Option(name: .long, help: "Text column: a name (the file has a header; JSONL key) or a 0-based index (default: text).")
    var textColumn: String?

    @Option(name: .long, help: "Second text of a sentence pair, by name or index.")
    var textPairColumn: String?

    func spec(label: Column? = nil) -> ColumnSpec {
        ColumnSpec(text: Column(textColumn ?? "text"), pair: textPairColumn.map(Column.init), label: label)
    }

    /// Whether a column flag was given (for predict to refuse them without a file).
    var given: Bool { textColumn != nil || textPairColumn != nil }

    func validate() throws {
        if let textPairColumn, Column(textPairColumn) == Column(textColumn ?? "text") {
            throw ValidationError("--text-pair-column \(textPairColumn) is the text column too: give the column of the pair's second text")
        }
    }
}

/// The text and label columns of a labelled data file.
struct ColumnOptions: ParsableArguments {
    @OptionGroup var text: TextColumnOptions

    @Option(name: .long, help: "Label column, by name or index (default: label).")
    var labelColumn: String?

    func spec(labelled: Bool) -> ColumnSpec { text.spec(label: labelled ? Column(labelColumn ?? "label") : nil) }

    func validate() throws {   // a text read as its own label scores 1.0 (a causal LM reads no label: only a given one)
        guard let labelColumn else { return }
        let label = Column(labelColumn), spec = text.spec()
        if let clash = [("--text-column", spec.text), ("--text-pair-column", spec.pair)].first(where: { $0.1 == label }) {
            throw ValidationError("--label-column \(labelColumn) is \(clash.0) too: give the column that holds the labels")
        }
    }
}

/// --threads: part of DeviceOptions, and alone for the commands that run on the CPU only (quantize, export).
struct CPUThreadsOption: ParsableArguments {
    @Option(name: .long, help: "CPU threads (default: all the CPUs this process may use).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    /// The threads asked for (--threads, else RETORT_NUM_THREADS), at most the CPUs: more only
    /// take turns on them (each step waits for the slowest); nil: the default.
    /// (EnvironmentCheck took RETORT_NUM_THREADS's form already.)
    func count() -> Int? {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        let fromEnvironment = ProcessInfo.processInfo.environment["RETORT_NUM_THREADS"].flatMap { Int($0) }
        let asked = threads ?? fromEnvironment
        if let asked, asked > cpus, DataParallel.prints {
            printError("retort: \(threads != nil ? "--threads " : "RETORT_NUM_THREADS=")\(asked): this machine has \(cpus) CPUs; using \(cpus)")
        }
        return asked.map { min($0, cpus) }
    }

    func backend() throws -> Backend { try CPUBackend(threads: count()) }
}

struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "auto (a GPU when one is usable, else the CPU), cpu or cuda.")
    var device: Devices.Choice = .auto

    @Option(name: .long, help: ArgumentHelp("GPU precision: fp32 (as the CPU), tf32 (tensor-core matmuls, ~1e-3 relative error), bf16 or fp16 (mixed precision: 16-bit tensor-core operands, fp32 weights and accumulation; training at fp16 scales the loss dynamically). The CPU computes in fp32.", valueName: "fp32|tf32|bf16|fp16"))
    var precision: Precision = .fp32

    @OptionGroup var cpu: CPUThreadsOption

    func backend() throws -> Backend {
        let (backend, note) = try Devices.makeBackend(device, threads: cpu.count() ?? DataParallel.defaultThreads,
                                                      precision: precision)
        try DataParallel.checkSameDevice(backend)
        guard DataParallel.prints else { return backend }
        if let note { printError("retort: " + flags(note)) }
        printError("retort: \(backend.kind): \(backend.summary)")
        if let world = ProcessGroup.world {
            printError("retort: data parallel: \(world.size) ranks (\(world.library)), global batch shared by them; rank 0 evaluates and writes")
        }
        return backend
    }
}

struct LoRAOptions: ParsableArguments {
    @Option(name: .customLong("lora-rank"), help: "LoRA rank: train low-rank adapters and the classifier only (PEFT semantics).")
    var rank: Int?
    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha (scale alpha/r; default 2·rank).") var alpha: Double?
    @Option(name: .customLong("lora-dropout"), help: "Dropout on the LoRA branch's input (default 0.1).") var dropout: Double?
    @Option(name: .customLong("lora-targets"), help: "Comma-separated modules: query, key, value, attention_output, intermediate, output (BERT, MPNet; default query,value); c_attn, c_proj, c_fc (GPT-2; default c_attn); q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (Llama family; default q_proj,v_proj).")
    var targets: String?
    @Flag(name: .customLong("rs-lora"), help: "Scale by alpha/√r instead of alpha/r (rsLoRA).") var rsLoRA = false

    func validate() throws {
        if let rank, rank < 1 { throw ValidationError("--lora-rank must be positive") }
        if rank == nil && (alpha != nil || targets != nil || dropout != nil || rsLoRA) {
            throw ValidationError("--lora-alpha, --lora-dropout, --lora-targets and --rs-lora need --lora-rank (LoRA is off without it)")
        }
        if let alpha, !(alpha > 0 && alpha.isFinite) { throw ValidationError("--lora-alpha must be a positive number") }
        if let dropout, !(0..<1).contains(dropout) { throw ValidationError("--lora-dropout must be in [0, 1)") }
        _ = try modules()
    }

    /// The modules given (one named twice is one adapter: LoRAConfig keeps each once), or (nil) the model's defaults.
    func modules() throws -> [LoRATarget]? {
        try targets.map { list in
            let modules = try list.split(separator: ",").map { name in
                guard let t = LoRATarget(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--lora-targets: unknown module '\(name)' (\(LoRATarget.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return t
            }
            guard !modules.isEmpty else {
                throw ValidationError("--lora-targets names no module: give some of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return modules
        }
    }

    /// The adapters to train, when --lora-rank is given; `defaults`: the model's targets when
    /// --lora-targets is not.
    func config(defaults: [LoRATarget] = [.query, .value]) throws -> LoRAConfig? {
        guard let rank else { return nil }
        return LoRAConfig(rank: rank, alpha: alpha ?? Double(2 * rank), dropout: dropout ?? 0.1, targets: try modules() ?? defaults, rsLoRA: rsLoRA)
    }
}

/// What finetune and distill share: the optimizer, the batch, checkpoints, memory.
struct TrainingOptionGroup: ParsableArguments {
    @Option(name: .long, help: "Examples per optimiser step (with retort finetune's --grad-accum: per micro-batch).") var batchSize = 32
    @Option(name: .long, help: "Peak learning rate (default 5e-5; 1e-3 when only LoRA adapters train, with --lora-rank, and for a recurrent student).")
    var lr: Double?
    @Option(name: .long, help: "Fraction of the steps (of each stage) spent warming up linearly.") var warmup = 0.1
    @Option(name: .long, help: "AdamW weight decay (not on biases and LayerNorm).") var weightDecay = 0.01
    @Option(name: .long, help: "Clip the global gradient norm to this (0: off).") var maxGradNorm = 1.0
    @Option(name: .long, help: "Tokens per example, specials included.") var maxLength = 128
    @Option(name: .long, help: "Seed for data order, the dev split, dropout and new weights.") var seed: UInt64 = 42
    @Option(name: .long, help: "Stop (each stage) after N optimiser steps (smoke runs).") var maxSteps: Int?
    @Flag(name: .long, help: "Batch examples of similar length together (less padding).") var bucket = false
    @Option(name: .long, help: ArgumentHelp("Recompute in backward instead of keeping: gelu (one FFN GELU output buffer for all layers; attention is always recomputed) or none.", valueName: "none|gelu"))
    var recompute = "none"
    @Option(name: .long, help: "Also save a checkpoint every N optimiser steps (besides every evaluation and --save-minutes).")
    var saveEvery: Int?
    @Option(name: .long, help: "Save a checkpoint at least this often, in minutes of training (0: off).") var saveMinutes = 5.0
    @Option(name: .long, help: "Checkpoints kept in OUT/checkpoints (the newest).") var keepCheckpoints = 2
    @Flag(name: .long, help: "Continue from the newest checkpoint in OUT/checkpoints.") var resume = false

    /// How long the run trained, as its closing line says it: with --resume, the runs before this one too.
    func trainingTime(_ metrics: RunMetrics) -> String {
        duration(metrics.trainSeconds ?? .nan) + (resume ? " (in all, with the run it resumed)" : "")
    }
    @Flag(name: .long, help: "Start afresh in an OUT that holds a run, removing what that run wrote: model, adapter, checkpoints, log, metrics, config, tokenizer and report files (without it, such an OUT is refused).")
    var overwrite = false
    @Option(name: .long, help: ArgumentHelp("Train with N processes on this machine, each a share of every batch (data parallel; starts Open MPI's mpirun). Under mpirun, the job's ranks are used.", valueName: "N"))
    var nproc: Int?

    /// Before a run: `out` is none of the run's `inputs` (folders it reads), can be written, holds
    /// no run unless --resume continues it or --overwrite replaces it, and --resume has a folder
    /// to continue from.
    func checkOutput(_ out: String, inputs: [(flag: String, path: String)]) throws {
        try checkNotAnInput(out, flag: "--out", inputs: inputs)
        if resume { try checkWritable(out, flag: "--out", isFolder: true) } else { try checkRunFolder(out, flag: "--out", overwrite: overwrite) }
        guard !resume || FileManager.default.fileExists(atPath: expand(out)) else {
            throw UserError(description: "--resume: \(out) does not exist, so there is no checkpoint to continue from")
        }
    }

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
        try checkCounts([("--batch-size", batchSize)])
        try checkMaxLength(maxLength)
        if let lr, !(lr > 0 && lr.isFinite) { throw ValidationError("--lr must be a positive number (got \(lr))") }
        guard (0..<1).contains(warmup) else { throw ValidationError("--warmup must be in [0, 1) (a fraction of the steps)") }
        guard weightDecay >= 0 && weightDecay.isFinite else { throw ValidationError("--weight-decay must be a number, not negative") }
        guard maxGradNorm >= 0 else { throw ValidationError("--max-grad-norm must not be negative (0: no clipping)") }
        guard ["none", "gelu"].contains(recompute) else { throw ValidationError("--recompute must be none or gelu") }
        if let saveEvery, saveEvery < 1 { throw ValidationError("--save-every must be positive") }
        guard saveMinutes >= 0 else { throw ValidationError("--save-minutes must not be negative (0: off)") }
        guard keepCheckpoints >= 1 else { throw ValidationError("--keep-checkpoints must be at least 1") }
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be positive") }
        if let nproc, nproc < 1 { throw ValidationError("--nproc must be positive") }
        guard !(resume && overwrite) else { throw ValidationError("--resume continues the run in --out and --overwrite replaces it; give one of them") }
    }

    /// The library's settings for these flags and `lora` (epochs, accumulation and evaluation are the command's).
    func settings(lora: LoRAOptions, loraDefaults: [LoRATarget] = [.query, .value]) throws -> TrainingSettings {
        var t = TrainingSettings()
        t.options.batchSize = batchSize; t.options.weightDecay = weightDecay; t.options.warmupRatio = warmup
        t.options.maxGradNorm = maxGradNorm; t.options.seed = seed; t.options.maxSteps = maxSteps; t.options.bucket = bucket
        t.learningRate = lr; t.maxLength = maxLength; t.lora = try lora.config(defaults: loraDefaults); t.recomputeGelu = recompute == "gelu"
        t.checkpoints = CheckpointPolicy(everySteps: saveEvery, everySeconds: saveMinutes * 60, keep: keepCheckpoints)
        t.resume = resume
        return t
    }
}

extension Devices.Choice: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// This CLI's flag for each setting the library's errors name.
let settingFlags: [Setting: String] = [
    .device: "--device", .precision: "--precision", .batchSize: "--batch-size", .maxLength: "--max-length",
    .learningRate: "--lr", .maxGradNorm: "--max-grad-norm", .epochs: "--epochs", .recompute: "--recompute",
    .loraRank: "--lora-rank", .studentLayers: "--student-layers", .hiddenSize: "--hidden", .embeddingSize: "--embedding-size", .studentInit: "--student-init", .layerMap: "--layer-map",
    .resume: "--resume", .output: "--out", .weightDecay: "--weight-decay", .warmup: "--warmup", .seed: "--seed", .bucket: "--bucket",
    .accumulation: "--grad-accum", .overwrite: "--overwrite", .metric: "--metric", .maxSteps: "--max-steps",
]

/// Library text with its settings named as flags.
func flags(_ text: SettingText) -> String { text.rendered { settingFlags[$0] ?? $0.words } }

/// A one-line error for the user (ArgumentParser prints "Error: " and the description).
struct UserError: Error, CustomStringConvertible {
    let description: String
}

/// Runs a command's body, turning the library's errors into messages that name this CLI's
/// flags; Ctrl-C (RunInterrupted) exits 130 after saying how to resume. `printer`: its progress
/// line is ended first.
func withFlags<T>(_ printer: ProgressPrinter? = nil, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let interrupted as RunInterrupted {
        printer?.finish()
        printError("retort: " + flags(interrupted.message))
        throw ExitCode(Interrupt.exitStatus)
    } catch let error as SettingsError {
        printer?.finish()
        throw UserError(description: flags(error.message))
    } catch {
        printer?.finish()
        throw error
    }
}

/// Refuses, before any work, an output that could not be written, so a long run never ends in
/// "cannot write". `isFolder`: `path` is a folder to write into, made with the folders above it
/// if need be (a run's --out): a file is created and removed in the nearest folder that exists.
/// Else `path` is a file (written through a temporary file beside it): its folder must exist and
/// take a file. A rank of a data-parallel job other than rank 0 writes nothing and checks nothing.
func checkWritable(_ path: String, flag: String, isFolder: Bool = false) throws {
    if isOtherRank { return }
    let files = FileManager.default
    var absolute = expand(path)
    if !absolute.hasPrefix("/") { absolute = (files.currentDirectoryPath as NSString).appendingPathComponent(absolute) }
    absolute = (absolute as NSString).standardizingPath
    var folder = isFolder ? absolute : (absolute as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    if !isFolder && !files.fileExists(atPath: folder) {
        throw UserError(description: "\(flag) \(path): the folder \(folder) does not exist; create it or choose another")
    }
    while !files.fileExists(atPath: folder, isDirectory: &isDirectory) {
        let parent = (folder as NSString).deletingLastPathComponent
        guard !parent.isEmpty, parent != folder else { break }
        folder = parent
    }
    guard isDirectory.boolValue else { throw UserError(description: "\(flag) \(path): \(folder) is a file, not a folder") }
    let probe = (folder as NSString).appendingPathComponent(".retort-write-check-\(ProcessInfo.processInfo.hostName)-\(getpid())")
    let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
        throw UserError(description: "\(flag) \(path): cannot write in \(folder) (\(String(cString: strerror(errno)))); choose a folder you can write to")
    }
    close(fd)
    unlink(probe)
}

/// A rank of a data-parallel job other than rank 0 (which alone writes outputs).
var isOtherRank: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].map { $0 != "0" } ?? false }

/// A new run's folder: refused, unless `overwrite`, when it already holds a run (a trained
/// model, its checkpoints or log) — a new run there would replace what was trained; --resume is
/// offered when it has a checkpoint. Then checked to be writable. `also`: another way out to name.
func checkRunFolder(_ folder: String, flag: String, overwrite: Bool, also: String? = nil) throws {
    if !overwrite, !isOtherRank, case let run = RunFolder(expand(folder)), let file = run.runFile {
        // Only a log: a run that stopped (killed, out of memory) before it saved a checkpoint or a model.
        let what = file == "log.jsonl" && !run.hasCheckpoint ? "the log of a run that stopped before it saved anything (log.jsonl)" : "a run (\(file))"
        throw UserError(description: "\(flag) \(folder) already holds \(what); " + (run.hasCheckpoint ? "add --resume to continue it, " : "")
                        + "add --overwrite to start afresh there, or choose a new folder" + (also.map { " (\($0))" } ?? ""))
    }
    try checkWritable(folder, flag: flag, isFolder: true)
}

/// Refuses, unless `overwrite`, an output file that exists, and always a folder; then checks it
/// can be written.
func checkNewFile(_ path: String, flag: String, overwrite: Bool) throws {
    var isFolder: ObjCBool = false
    if !isOtherRank, FileManager.default.fileExists(atPath: expand(path), isDirectory: &isFolder) {
        guard !isFolder.boolValue else { throw UserError(description: "\(flag) \(path) is a folder; give the path of a file to write") }
        guard overwrite else { throw UserError(description: "\(flag) \(path) exists; add --overwrite to replace it, or choose a new file") }
    }
    try checkWritable(path, flag: flag)
}

/// An output folder is none of the folders or files the command reads (with --overwrite, a
/// new run would remove the model it starts from).
func checkNotAnInput(_ out: String, flag: String, inputs: [(flag: String, path: String)], noun: String = "folder") throws {
    let resolved = { (path: String) in URL(fileURLWithPath: expand(path)).standardizedFileURL.resolvingSymlinksInPath().path }
    if let input = inputs.first(where: { resolved($0.path) == resolved(out) }) {
        throw UserError(description: "\(flag) \(out) is the \(input.flag) this command reads; choose another \(noun)")
    }
}

/// "1 text", "2 texts" (`plural` where adding s does not make it).
func counted(_ n: Int, _ noun: String, plural: String? = nil) -> String { "\(n) " + (n == 1 ? noun : plural ?? noun + "s") }

/// Tokens per example, specials included: a [CLS] text [SEP] needs three (every command's --max-length).
func checkMaxLength(_ maxLength: Int?) throws {
    if let maxLength, maxLength < 3 { throw ValidationError("--max-length must be at least 3") }
    try checkCounts([("--max-length", maxLength)])
}

/// The most a count flag takes (examples per batch, epochs, accumulation, tokens, widths): far
/// past any real run, and small enough that no product of them passes Int (2⁶³ − 1 overflowed
/// into a trap).
let countLimit = 1 << 20

/// Refuses a count above countLimit, naming the flag.
func checkCounts(_ counts: [(flag: String, value: Int?)]) throws {
    for (flag, value) in counts {
        if let value, value > countLimit { throw ValidationError("\(flag) \(value) is more than Retort takes (at most \(countLimit))") }
    }
}

/// A model the command line names, checked before any work (before the device is set up): what
/// `check` refuses is a one-line error naming the flag. Exit statuses, every command alike: 64 for
/// a command line that is malformed in itself (an unknown flag, a value out of range, flags that
/// do not go together: ValidationError, with the usage), 1 for a file or folder it names that is
/// missing or not what the command takes (this), and for anything that fails later.
func checkModelArgument(_ path: String, flag: String, _ check: (String) throws -> Void) throws {
    do { try check(expand(path)) } catch { throw UserError(description: "\(flag) \(error)") }
}

/// --dev-split: the part of --train held out (finetune's and distill's).
func checkDevSplit(_ devSplit: Double) throws {
    guard devSplit > 0, devSplit < 1 else {
        throw ValidationError("--dev-split \(devSplit) must be between 0 and 1 (not either): the part of --train held out to pick the best model, e.g. 0.1")
    }
}

/// The files labelled data comes in (a .txt of lines holds texts alone).
let labelledKinds = "a labelled .csv, .tsv or .jsonl"

/// A data file the command line names (nil or "-", standard input: nothing to check), checked
/// before any work like a model: there, and not a folder.
func checkDataArgument(_ path: String?, flag: String, kinds: String = ".csv, .tsv, .jsonl or .txt") throws {
    guard let path, path != "-" else { return }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: expand(path), isDirectory: &isDirectory) else {
        throw UserError(description: "\(flag) \(path): no such file")
    }
    if isDirectory.boolValue { throw UserError(description: "\(flag) \(path): a folder, not a data file (\(kinds))") }
}

/// distill's and augment's --teacher: not a recurrent student (it would label a transfer set
/// that distill, checking the stored logits against a real teacher, then warns about).
func checkRecurrentTeacher(_ teacher: String) throws {
    if RecurrentConfig.describes(expand(teacher) + "/config.json") {
        throw UserError(description: "--teacher \(teacher) is a recurrent student; a teacher is a fine-tuned encoder or decoder classifier")
    }
}

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

/// The folders of a command that turns a BERT-family classifier into a new folder (quantize,
/// export): `model` and `out` expanded, `model` checked to be such a classifier, `out` not there
/// yet, and the model's config.
func classifierToNewFolder(model: String, out: String, command: String) throws -> (source: String, destination: String, config: BertConfig) {
    let source = (expand(model) as NSString).standardizingPath, destination = (expand(out) as NSString).standardizingPath
    let configPath = (source as NSString).appendingPathComponent("config.json")
    // What it is instead, in words (no such folder, a .gguf, an ONNX export, a LoRA adapter, a pretrained encoder).
    // A decoder folder (classifier or language model) is named as such first.
    guard !(FileManager.default.fileExists(atPath: configPath) && FineTuningRun.isDecoder(source)) else {
        throw UserError(description: "--model \(model) is a decoder; retort \(command) takes BERT-family classifiers (BERT, MPNet) for now")
    }
    // (A classifier fine-tuned from it would be a decoder too: no hint that leads there.)
    guard !source.lowercased().hasSuffix(".gguf") else {
        throw UserError(description: "--model \(model): a GGUF language model, not a classifier; retort \(command) takes BERT-family classifiers (BERT, MPNet) for now")
    }
    try checkModelArgument(model, flag: "--model", checkClassifierFolder)
    guard !RecurrentConfig.describes(configPath) else {
        throw UserError(description: "--model \(model) is a recurrent student; retort \(command) takes BERT-family classifiers (BERT, MPNet)"
                        + (command == "quantize" ? " and decoders" : "") + " for now")
    }
    try checkNewFolder(destination, out: out)
    return (source, destination, try BertConfig(path: configPath))
}

/// `--out` (`destination` expanded) for a command that makes a new folder: not there yet (or empty), and
/// its place writable.
func checkNewFolder(_ destination: String, out: String) throws {
    guard !FileManager.default.fileExists(atPath: destination) || isEmptyFolder(destination) else {
        throw UserError(description: "--out \(out) exists; choose a new folder (nothing there is overwritten)")
    }
    try checkWritable(destination, flag: "--out", isFolder: true)
}

/// A folder with nothing in it (one a user made for the output first).
func isEmptyFolder(_ path: String) -> Bool { (try? FileManager.default.contentsOfDirectory(atPath: path))?.isEmpty == true }

/// Makes the new folder `destination` (a path already expanded) by `fill`, which writes into a
/// temporary folder beside it that is renamed into place afterwards: nobody ever sees half a model.
/// Ctrl-C or SIGTERM during `fill` is taken when it returns: the temporary folder is removed and
/// nothing is written (a second one ends the process at once; the next run into the same folder
/// removes what such a process left).
func writeNewFolder(_ destination: String, _ fill: (_ partial: String) throws -> Void) throws {
    let files = FileManager.default, parent = (destination as NSString).deletingLastPathComponent
    // .NAME.partial-HOST-PID: a process on another machine writing into shared storage is not ours to judge.
    let prefix = ".\((destination as NSString).lastPathComponent).partial-\(partialFolderHost)-"
    let partial = (parent as NSString).appendingPathComponent(prefix + "\(ProcessInfo.processInfo.processIdentifier)")
    // Temporary folders of earlier runs on this machine that were killed (their process is gone).
    for name in (try? files.contentsOfDirectory(atPath: parent.isEmpty ? "." : parent)) ?? [] where name.hasPrefix(prefix) {
        let digits = name.dropFirst(prefix.count)
        if !digits.isEmpty, digits.allSatisfy({ ("0"..."9").contains($0) }), let pid = pid_t(digits), kill(pid, 0) != 0 && errno == ESRCH {
            try? files.removeItem(atPath: (parent as NSString).appendingPathComponent(name))
        }
    }
    try? files.removeItem(atPath: partial)
    Interrupt.catchSIGINT()
    defer { Interrupt.release() }
    do {
        try files.createDirectory(atPath: partial, withIntermediateDirectories: true)
        try fill(partial)
        if Interrupt.requested {
            printError("retort: interrupted: nothing written to \(destination)")
            throw ExitCode(Interrupt.exitStatus)
        }
        if isEmptyFolder(destination) { try files.removeItem(atPath: destination) }
        do { try files.moveItem(atPath: partial, toPath: destination) } catch where files.fileExists(atPath: destination) {
            // Another run (or person) made the folder while this one wrote: theirs stays.
            throw UserError(description: "\(destination) appeared while this run wrote its output (another run into the same folder?); "
                            + "it is left as it is and nothing of this run was kept: choose a new folder")
        }
    } catch {
        try? files.removeItem(atPath: partial)
        throw error
    }
}

/// This machine's name as writeNewFolder's temporary folders carry it (letters, digits, - and . only).
let partialFolderHost = String(ProcessInfo.processInfo.hostName.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })

/// Copies a classifier folder's tokenizer files (those it has) into `folder`.
func copyTokenizerFiles(from source: String, to folder: String) throws {
    for name in ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        let from = (source as NSString).appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: from) {
            try FileManager.default.copyItem(atPath: from, toPath: (folder as NSString).appendingPathComponent(name))
        }
    }
}
