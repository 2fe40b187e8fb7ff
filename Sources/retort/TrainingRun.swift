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

    init(showStages: Bool) { self.showStages = showStages }

    func handle(_ event: RunEvent) {
        switch event {
        case .note(let text): say("retort: " + text)
        case .memoryPlan(let text): say("retort: " + text)
        case .truncated(let cut): say("retort: " + flags(cut.message))
        case .resumed(let stage, let step, let total):
            say("retort: " + (stage.map { "\($0) stage: " } ?? "") + "resuming at step \(step) of \(total)")
        case .stageStarted(let stage, let epochs, let steps, let lr):
            if let stage, showStages { say("retort: \(stage) stage, \(epochs) epoch(s), \(steps) steps, lr \(lr)") }
        case .step(let p):
            let label = showStages ? p.log.stage.map { "[\($0)] " } ?? "" : ""
            let ranks = ProcessGroup.world.map { " (\($0.size) ranks)" } ?? ""
            var line = String(format: "%@epoch %d/%d  step %d/%d  loss %.4f  lr %.2e  %.0f tok/s%@  ETA %@", label, p.log.epoch, p.epochs,
                              p.log.step, p.totalSteps, p.log.loss, p.log.lr, p.log.tokensPerSecond, ranks, duration(p.secondsLeft))
            if let scale = p.lossScale {   // fp16: the scale now and the updates skipped for overflows so far
                line += String(format: "  loss scale %.0f", scale) + (p.skippedSteps > 0 ? " (\(p.skippedSteps) skipped)" : "")
            }
            FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
            lineOpen = true
            evaluationWidth = nil   // a step's line is kept, not cleared
        case .evaluated(let entry, let improved):
            let m = entry.dev
            if m.nextToken == true {
                say(String(format: "epoch %d: dev loss %.4f  perplexity %.2f  next-token accuracy %.4f%@", entry.epoch, m.loss, exp(m.loss),
                           m.accuracy, improved ? "  (best so far: saved)" : ""))
                return
            }
            say(String(format: "epoch %d: dev accuracy %.4f  macro-F1 %.4f  MCC %.4f  loss %.4f%@", entry.epoch, m.accuracy, m.macroF1,
                        m.mcc, m.loss, improved ? "  (best so far: saved)" : ""))
        case .checkpointSaved: break
        case .warning(let text): say("retort: warning: " + text)
        case .labelled(let done, let total, let seconds):   // a line rewritten in place; the run's next note ends it
            let rate = Double(done) / max(seconds, 1e-9)
            FileHandle.standardError.write(Data(String(format: "\rretort: the teacher labelled %d of %d texts  %.0f texts/s  ETA %@   ", done, total,
                                                       rate, duration(Double(total - done) / rate)).utf8))
            lineOpen = true
            evaluationWidth = nil
        case .evaluating(let set, let done, let total, let seconds):
            if lineOpen && evaluationWidth == nil { FileHandle.standardError.write(Data("\n".utf8)) }   // the last step's line stays
            let rate = Double(done) / max(seconds, 1e-9)
            let line = String(format: "retort: evaluating on the %@ set: %d of %d texts  %.0f texts/s  ETA %@   ", set, done, total, rate,
                              duration(Double(total - done) / rate))
            let width = max(evaluationWidth ?? 0, line.count)   // padded over a longer line before it
            FileHandle.standardError.write(Data(("\r" + line.padding(toLength: width, withPad: " ", startingAt: 0)).utf8))
            lineOpen = true
            evaluationWidth = width
        case .tested(let m):
            say(String(format: "retort: test accuracy %.4f  macro-F1 %.4f  MCC %.4f (", m.accuracy, m.macroF1, m.mcc) + counted(m.examples, "example") + ")")
        }
    }

    /// A line of its own, after any open progress line (in place of an evaluation's).
    func say(_ text: String) {
        finish()
        printError(text)
    }

    /// Ends an open progress line (before the final summary or an error); an evaluation's is cleared
    /// on a terminal. Into a file or a pipe it ends with a newline: the rewrites stay on one line of
    /// the log, and what follows starts a line of its own (blanks and a carriage return would glue
    /// the next line, or compare's table on stdout, to it).
    func finish() {
        if let width = evaluationWidth, isatty(STDERR_FILENO) == 1 {
            FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: width) + "\r").utf8))
        } else if lineOpen {
            FileHandle.standardError.write(Data("\n".utf8))
        }
        lineOpen = false
        evaluationWidth = nil
    }
}
