// How finetune and distill show a run: one line per fact, a progress line rewritten in place
// (stderr), a line per evaluation.
import Backend
import Foundation
import Train

/// Prints RunEvents as the CLI shows them.
final class ProgressPrinter {
    /// A progress line is on screen (no newline yet).
    private var lineOpen = false
    /// That line is an evaluation's, at most this wide: on a terminal the line after it replaces it (its result
    /// says what it was doing) rather than following it.
    private var evaluationWidth: Int?
    /// Distillation prefixes progress lines with the stage: "[intermediate] ".
    let showStages: Bool
    /// stderr is a terminal: progress lines are rewritten in place. Into a file or a pipe each is a
    /// line of its own, at most one every `logInterval` seconds (and the last of each kind): a run's
    /// rewrites made its log one line of megabytes.
    private let terminal = isatty(STDERR_FILENO) == 1
    static let logInterval: TimeInterval = 10
    /// Into a file: when the last progress line was written.
    private var lastLogged: Date?

    /// Evaluations come every N steps too (--eval-every): each line says its step.
    let evaluationSteps: Bool

    init(showStages: Bool, evaluationSteps: Bool = false) { self.showStages = showStages; self.evaluationSteps = evaluationSteps }

    /// Into a file or a pipe: a progress line as a line of its own, unless one was written less than
    /// logInterval ago and this is not the last (`final`). Returns false on a terminal (the caller
    /// rewrites the line in place).
    private func logged(_ line: String, final: Bool) -> Bool {
        guard !terminal else { return false }
        if final || lastLogged.map({ Date().timeIntervalSince($0) >= Self.logInterval }) ?? true {
            finish()
            printError(line)
            lastLogged = final ? nil : Date()
        }
        return true
    }

    func handle(_ event: RunEvent) {
        switch event {
        case .note(let text): say("retort: " + text)
        case .memoryPlan(let text): say("retort: " + text)
        case .truncated(let cut): say("retort: " + flags(cut.message))
        case .resumed(let stage, let step, let total, let finished):
            say("retort: " + (stage.map { "\($0) stage: " } ?? "") + "resuming at step \(step) of \(total)"
                + (finished ? ": that checkpoint is the end of the training, so nothing is left to train; the model it saved stays as it is" : ""))
        case .stageStarted(let stage, let epochs, let steps, let lr):
            if let stage, showStages { say("retort: \(stage) stage, \(counted(epochs, "epoch")), \(counted(steps, "step")), lr \(lr)") }
        case .step(let p):
            let label = showStages ? p.log.stage.map { "[\($0)] " } ?? "" : ""
            let ranks = ProcessGroup.world.map { " (\($0.size) ranks)" } ?? ""
            var line = String(format: "%@epoch %d/%d  step %d/%d  loss %.4f  lr %.2e  %.0f tok/s%@  ETA %@", label, p.log.epoch, p.epochs,
                              p.log.step, p.totalSteps, p.log.loss, p.log.lr, p.log.tokensPerSecond, ranks, duration(p.secondsLeft))
            if let scale = p.lossScale {   // fp16: the scale now and the updates skipped for overflows so far
                line += String(format: "  loss scale %.0f", scale) + (p.skippedSteps > 0 ? " (\(p.skippedSteps) skipped)" : "")
            }
            progress(line, final: p.log.step == p.totalSteps)
        case .evaluated(let entry, let improved):
            let m = entry.dev, when = "epoch \(entry.epoch)" + (evaluationSteps ? ", step \(entry.step)" : "")
            if m.nextToken == true {
                say(String(format: "%@: dev loss %.4f  perplexity %.2f  next-token accuracy %.4f%@", when, m.loss, exp(m.loss),
                           m.accuracy, improved ? "  (best so far: saved)" : ""))
                return
            }
            say(String(format: "%@: dev accuracy %.4f  macro-F1 %.4f  MCC %.4f  loss %.4f%@", when, m.accuracy, m.macroF1,
                        m.mcc, m.loss, improved ? "  (best so far: saved)" : ""))
        case .checkpointSaved: break
        case .warning(let text): say("retort: warning: " + text)
        case .labelled(let done, let total, let seconds):   // a line rewritten in place; the run's next note ends it
            let rate = Double(done) / max(seconds, 1e-9)
            let line = String(format: "retort: the teacher labelled %d of %d texts  %.0f texts/s  ETA %@", done, total, rate,
                              duration(Double(total - done) / rate))
            progress(line, final: done == total)
        case .evaluating(let set, let done, let total, let seconds, let noun):
            let rate = Double(done) / max(seconds, 1e-9)
            let text = String(format: "retort: evaluating on the %@ set: %d of %d %@  %.0f %@/s  ETA %@", set, done, total, noun, rate, noun,
                              duration(Double(total - done) / rate))
            if logged(text, final: done == total) { return }
            if lineOpen && evaluationWidth == nil { FileHandle.standardError.write(Data("\n".utf8)) }   // the last step's line stays
            let line = text + "   "
            let width = max(evaluationWidth ?? 0, line.count)   // padded over a longer line before it
            FileHandle.standardError.write(Data(("\r" + line.padding(toLength: width, withPad: " ", startingAt: 0)).utf8))
            lineOpen = true
            evaluationWidth = width
        case .tested(let m):
            say(String(format: "retort: test accuracy %.4f  macro-F1 %.4f  MCC %.4f (", m.accuracy, m.macroF1, m.mcc) + counted(m.examples, "example") + ")")
        }
    }

    /// A progress line (the last of its kind: `final`): rewritten in place on a terminal, where the
    /// next line of its own follows it; into a file or a pipe, a line at most every logInterval.
    func progress(_ line: String, final: Bool) {
        if logged(line, final: final) { return }
        FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
        lineOpen = true
        evaluationWidth = nil   // kept, not cleared
    }

    /// A line of its own, after any open progress line (in place of an evaluation's).
    func say(_ text: String) {
        finish()
        printError(text)
    }

    /// Ends an open progress line on a terminal (before the final summary or an error): an
    /// evaluation's is cleared, a step's ends with a newline. (Into a file or a pipe no line is
    /// left open: each progress line is written whole.)
    func finish() {
        if let width = evaluationWidth, terminal {
            FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: width) + "\r").utf8))
        } else if lineOpen {
            FileHandle.standardError.write(Data("\n".utf8))
        }
        lineOpen = false
        evaluationWidth = nil
    }
}
