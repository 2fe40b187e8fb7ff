// Options shared by finetune, eval and predict.
import ArgumentParser
import Backend
import Foundation
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

    @Option(name: .long, help: "CPU threads (default: all the CPUs this process may use).")
    var threads: Int?

    func backend() throws -> Backend {
        let (backend, note) = try Devices.makeBackend(device, threads: threads)
        if let note { printError("retort: \(note)") }
        printError("retort: \(backend.kind): \(backend.summary)")
        return backend
    }
}

extension Devices.Choice: ExpressibleByArgument {}

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
