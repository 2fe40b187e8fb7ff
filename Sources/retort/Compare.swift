// retort compare: one table (and report.md/csv/html) for a set of model folders.
import ArgumentParser
import Foundation
import Train

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare fine-tuned and distilled models: loss, metrics, size and speed in one table.",
        discussion: """
            Example:
              retort compare runs/sst2 runs/sst2-odd3 runs/sst2-even3 \\
                  --test ../shared/data/sst2/test.tsv \\
                  --text-column 1 --label-column 0 --out runs/report

            The first folder is the reference for the speed-up (put the teacher first). Without \
            --test the table shows each run's best dev metrics (from its metrics.json). Speed is \
            measured here, on the chosen device: B=1 latency and B=32 throughput on sequences of \
            64 tokens (or --max-length, when shorter). A report already in --out is replaced (and \
            said so).
            """)

    @Argument(help: "Model folders written by retort finetune or retort distill.") var runs: [String]
    @Option(name: .long, help: "Labelled test data to evaluate every model on.") var test: String?
    @OptionGroup var columns: ColumnOptions
    @Option(name: .long, help: "Tokens per example when evaluating (default 128, or a model's maximum when smaller); speed is measured at 64 or this, the shorter.") var maxLength: Int?
    @Option(name: .long, help: "Folder for report.md, report.csv and report.html.") var out = "report"
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard !runs.isEmpty else { throw ValidationError("give one or more model folders") }
        try checkMaxLength(maxLength)
        try checkDataArgument(test, flag: "--test", kinds: labelledKinds)
        for run in runs {   // every folder before the first is measured
            do { try checkClassifierFolder(expand(run)) } catch { throw UserError(description: "\(error)") }
        }
    }

    func run() throws {
        try withFlags {
            try checkWritable(out, flag: "--out", isFolder: true)
            let backend = try deviceOptions.backend()
            let printer = ProgressPrinter(showStages: false)   // a test evaluation's line, replaced by the next
            let report = try ComparisonReport.build(runs: runs.map(expand), test: test.map(expand), columns: columns.spec(labelled: true),
                                                    maxLength: maxLength, backend: backend, progress: { printer.say("retort: " + $0) },
                                                    testProgress: { printer.handle(.evaluating(set: "test", done: $0, total: $1, seconds: $2)) },
                                                    truncated: { printer.say("retort: \($0): " + flags($1.message)) })
            printer.finish()
            let earlier = FileManager.default.fileExists(atPath: (expand(out) as NSString).appendingPathComponent("report.md"))
            let written = try report.write(folder: expand(out))
            print(report.markdownTable)
            print("report: \(written.joined(separator: ", "))" + (earlier ? " (replacing the earlier report there)" : ""))
        }
    }
}
