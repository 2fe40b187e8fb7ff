// What finetune and distill share: the labelled data (a dev file or a held-out split), the
// progress line, log.jsonl, and Ctrl-C handling.
import ArgumentParser
import Backend
import Foundation
import Train

/// Training and dev examples with their label ids.
struct LabelledData {
    var train: [Example], dev: [Example]
    var names: [String]
    var trainLabels: [Int32], devLabels: [Int32]

    /// `names`: the label names to use (a teacher's); nil: those of the training data.
    static func load(train: String, dev: String?, devSplit: Double, columns: ColumnOptions, seed: UInt64, names given: [String]? = nil) throws -> LabelledData {
        let spec = columns.spec(labelled: true)
        var trainExamples = try Dataset.load(expand(train), columns: spec)
        let devExamples: [Example]
        if let dev {
            devExamples = try Dataset.load(expand(dev), columns: spec)
        } else {
            (trainExamples, devExamples) = Dataset.split(trainExamples, fraction: devSplit, seed: seed)
        }
        let names = given ?? Dataset.labelNames(trainExamples)
        guard names.count >= 2 else { throw DataError("\(train): only one label (\(names.first ?? "none")); a classifier needs two or more") }
        return LabelledData(train: trainExamples, dev: devExamples, names: names,
                            trainLabels: try Dataset.labelIds(trainExamples, names: names, path: train),
                            devLabels: try Dataset.labelIds(devExamples, names: names, path: dev ?? "\(train) (held-out split)"))
    }
}

/// The progress line (stderr, rewritten in place) and log.jsonl of a trainer.
func reportProgress(_ trainer: Trainer, epochs: Int, log: LogFile, label: String = "") -> () -> Double {
    let started = Date(), startStep = trainer.step
    var lastLoss = Double.nan
    trainer.onStep = { entry in
        lastLoss = entry.loss
        log.write(entry)
        let done = entry.step - startStep, left = trainer.totalSteps - entry.step
        let eta = Date().timeIntervalSince(started) / Double(max(done, 1)) * Double(left)
        var line = String(format: "%@epoch %d/%d  step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %@", label,
                          entry.epoch, epochs, entry.step, trainer.totalSteps, entry.loss, entry.lr, entry.tokensPerSecond, duration(eta))
        if let scaler = trainer.lossScaler {   // fp16: the scale now and the updates skipped for overflows so far
            line += String(format: "  loss scale %.0f", scaler.scale) + (scaler.skippedSteps > 0 ? " (\(scaler.skippedSteps) skipped)" : "")
        }
        FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
    }
    return { lastLoss }
}

/// Logs a dev evaluation and prints it.
func logEvaluation(_ log: LogFile, epoch: Int, step: Int, _ metrics: ClassificationMetrics, improved: Bool, stage: String? = nil) {
    var entry: [String: Any] = ["epoch": epoch, "step": step, "dev": metricsObject(metrics)]
    if let stage { entry["stage"] = stage }
    log.write(entry)
    printError(String(format: "\nepoch %d: dev accuracy %.4f  macro-F1 %.4f  MCC %.4f  loss %.4f%@",
                      epoch, metrics.accuracy, metrics.macroF1, metrics.mcc, metrics.loss, improved ? "  (best so far: saved)" : ""))
}

func metricsObject(_ m: ClassificationMetrics) -> [String: Any] {
    ["accuracy": m.accuracy, "macro_f1": m.macroF1, "mcc": m.mcc, "loss": m.loss, "examples": m.examples]
}

/// Runs the trainer; Ctrl-C finishes the step, saves a checkpoint in `checkpoint` and exits 130
/// with how to resume. `stage` names the stage in that message.
func runInterruptibly(_ trainer: Trainer, checkpoint: String, stage: String? = nil) throws -> ClassificationMetrics? {
    interrupted = 0
    signal(SIGINT) { _ in interrupted = 1 }
    trainer.shouldStop = { interrupted != 0 }
    let best = try trainer.run()
    signal(SIGINT, SIG_DFL)
    if trainer.stopped {
        try trainer.saveCheckpoint(folder: checkpoint)
        printError("\nretort: interrupted" + (stage.map { " in the \($0) stage" } ?? "") + " at step \(trainer.step) of \(trainer.totalSteps); "
                   + "checkpoint saved in \(checkpoint). Continue with the same command and --resume.")
        throw ExitCode(130)
    }
    return best
}

/// Set by the SIGINT handler.
nonisolated(unsafe) var interrupted: sig_atomic_t = 0

/// log.jsonl, appended one JSON object per line.
final class LogFile {
    let handle: FileHandle
    init(_ path: String) throws {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DataError("\(path): cannot open for writing") }
        handle.seekToEndOfFile()
        self.handle = handle
    }
    func write<T: Encodable>(_ value: T) {
        if let data = try? JSONEncoder().encode(value) { handle.write(data + Data("\n".utf8)) }
    }
    func write(_ object: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) { handle.write(data + Data("\n".utf8)) }
    }
}

/// Writes a JSON object atomically.
func writeJSON(_ object: [String: Any], to path: String) throws {
    try writeAtomically(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: path)
}
