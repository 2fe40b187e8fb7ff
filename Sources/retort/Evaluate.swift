// retort eval and retort predict.
import ArgumentParser
import Backend
import Foundation
import Train

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy, macro-F1, Matthews correlation and loss of a fine-tuned model on labelled data.",
        discussion: """
            Example:
              retort eval --model runs/sst2 --data ../shared/data/sst2/test.tsv \\
                  --text-column 1 --label-column 0 --json
            """)

    @Option(name: .long, help: "Labelled data: .csv, .tsv or .jsonl.") var data: String
    @OptionGroup var inference: InferenceOptions
    @OptionGroup var columns: ColumnOptions
    @Flag(name: .long, help: "Print one JSON object: accuracy, macro_f1, mcc, loss, examples.") var json = false

    func validate() throws { try checkDataArgument(data, flag: "--data", kinds: labelledKinds) }

    func run() throws {
        try withFlags { try evaluate() }
    }

    func evaluate() throws {
        let (classifier, backend) = try inference.classifier()
        let batchSize = inference.batchSize
        let examples = try Dataset.loadWithText(expand(data), columns: columns.spec(labelled: true)) { printError("retort: " + $0) }
        let labels = try Dataset.labelIds(examples, names: classifier.labelNames, path: data)
        let encodings = classifier.encode(examples)
        noteTruncation(encodings, maxLength: classifier.maxLength)
        let m = ClassificationMetrics(logits: try classifyShowingProgress(classifier, encodings, batchSize: batchSize, backend: backend),
                                      labels: labels, classes: classifier.labelNames.count)
        if json {
            let object: [String: Any] = ["accuracy": m.accuracy, "macro_f1": m.macroF1, "mcc": m.mcc, "loss": m.loss, "examples": m.examples]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(counted(m.examples, "example") + String(format: ": accuracy %.4f  macro-F1 %.4f  MCC %.4f  loss %.4f", m.accuracy, m.macroF1, m.mcc, m.loss))
        }
    }
}

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Label texts with a fine-tuned model.",
        discussion: """
            Examples:
              retort predict --model runs/sst2 "a gorgeous , witty film" "a dull mess"
              retort predict --model runs/sst2 --input texts.txt
              retort predict --model runs/sst2 --input reviews.tsv --text-column 1 --json

            --input reads a .txt file as one text per line, and .csv, .tsv or .jsonl files by \
            column (--text-column, --text-pair-column); blank lines are skipped (--json gives each \
            input's line number). Without --json: one line per input, label<TAB>probability<TAB>text, \
            a tab, line break or backslash in a text written as \\t, \\n or \\\\. A text that \
            starts with - goes after -- \
            (retort predict --model runs/sst2 -- "-1 for this film"). With neither texts nor --input, \
            lines piped in are read (cat texts.txt | retort predict --model runs/sst2).
            """)

    @Argument(help: "Texts to label.") var texts: [String] = []
    @Option(name: .long, help: "A file of inputs instead of arguments: .txt (one text per line), .csv, .tsv or .jsonl; - reads lines from standard input.") var input: String?
    @OptionGroup var inference: InferenceOptions
    @OptionGroup var columns: TextColumnOptions
    @Option(name: .customLong("label-column"), help: .hidden) var labelColumn: String?   // refused, with eval named
    @Flag(name: .long, help: "One JSON object per input: label, probabilities (label: p, as serve gives them), logits (in class order), text, the line it starts on, and whether --max-length cut it.") var json = false

    /// Where the texts come from: --input, or standard input when it is a pipe or file and no text was given as an argument.
    var source: String? { input ?? (texts.isEmpty && isatty(STDIN_FILENO) == 0 ? "-" : nil) }

    func validate() throws {
        guard input == nil || texts.isEmpty else { throw ValidationError("give texts as arguments or --input FILE (one of the two)") }
        try checkDataArgument(input, flag: "--input")
        guard source != nil || !texts.isEmpty else {
            throw ValidationError("give texts as arguments, --input FILE, or lines on standard input (… | retort predict --model M)")
        }
        if labelColumn != nil { throw ValidationError("--label-column: predict reads no labels (retort eval scores a labelled file)") }
        if let empty = texts.firstIndex(where: { $0.allSatisfy(\.isWhitespace) }) {
            throw ValidationError("text \(empty + 1) is empty: give some text to label")
        }
        if input == nil, columns.given {
            throw ValidationError("--\(columns.textColumn != nil ? "text-column" : "text-pair-column") picks a column of --input's file; texts given as arguments have none")
        }
    }

    func run() throws {
        try withFlags { try predict() }
    }

    func predict() throws {
        let (classifier, backend) = try inference.classifier()
        let batchSize = inference.batchSize
        let input = source
        var examples: [Example]
        do {
            examples = try input.map { try Dataset.load(expand($0), columns: columns.spec()) }
                ?? texts.enumerated().map { Example(text: $1, pair: nil, label: nil, line: $0 + 1) }
        } catch let error as DataError where self.input == nil {   // standard input, read as no text was given
            throw UserError(description: "standard input (read as no text was given)\(error.description.dropFirst(1)); "
                            + "give texts as arguments, --input FILE, or lines on standard input")
        }
        // A record without text (an empty field) is skipped, as a blank line is; --json's "line" keeps the others' places.
        let skipped: String?
        (examples, skipped) = Dataset.withText(examples, path: input ?? "input", noun: "input")
        if let skipped {
            printError("retort: " + skipped)
            guard !examples.isEmpty else { throw UserError(description: "\(input ?? "input"): no text to label") }
        }
        let encodings = classifier.encode(examples)
        noteTruncation(encodings, maxLength: classifier.maxLength)
        let logits = try classifyShowingProgress(classifier, encodings, batchSize: batchSize, backend: backend)
        var output = ""
        for ((example, encoding), row) in zip(zip(examples, encodings), logits) {
            let probabilities = classProbabilities(row)
            let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] }!
            if json {
                let object: [String: Any] = ["label": classifier.labelNames[best], "probabilities": labelledProbabilities(probabilities, names: classifier.labelNames),
                                             "logits": row.map(Double.init), "text": example.text, "line": example.line,
                                             "truncated": encoding.truncated]
                output += String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) + "\n"
            } else {
                output += "\(oneLine(classifier.labelNames[best]))\t\(String(format: "%.4f", probabilities[best]))\t\(oneLine(example.text))\n"
            }
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }
}

/// One line per input: a tab, line break or backslash inside a text (or a label) written escaped.
private func oneLine(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\t", with: "\\t")
        .replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
}

/// Says on stderr how many texts were cut to --max-length (the model reads no further).
func noteTruncation(_ encodings: [Encoding], maxLength: Int) {
    let cut = Truncation([("", encodings)], maxLength: maxLength)
    if cut.anyCut { printError("retort: " + flags(cut.message)) }
}

/// The logits of `encodings` (in their order), run in order of length as classifyByLength does —
/// the same batches, through one forward session — with a progress line where stderr is a
/// terminal and there are more than four batches.
/// A batch holds at most as many texts as there are (its activations are sized by it).
func classifyShowingProgress(_ classifier: TextClassifier, _ encodings: [Encoding], batchSize asked: Int, backend: Backend) throws -> [[Float]] {
    let batchSize = max(1, min(asked, encodings.count))
    try checkBatchFits(classifier, backend: backend, batch: batchSize, flag: "--batch-size")
    let (chunk, overflow) = batchSize.multipliedReportingOverflow(by: 4)
    guard !overflow, encodings.count > chunk, isatty(STDERR_FILENO) == 1 else {
        return try classifier.classifyByLength(encodings, batchSize: batchSize)
    }
    let session = try classifier.forwardSession(batchSize: batchSize)
    defer { FileHandle.standardError.write(Data("\n".utf8)) }
    return try classifyInSlices(encodings, slice: chunk, progress: { done, total, seconds in   // whole batches: chunk is a multiple of batchSize
        let rate = Double(done) / max(seconds, 1e-9)
        FileHandle.standardError.write(Data(String(format: "\rretort: %d/%d texts  %.0f texts/s  ETA %@   ", done, total, rate,
                                                   duration(Double(total - done) / rate)).utf8))
    }, classify: session)
}

/// A forward pass's activations for `batch` texts are made at once: one text's, measured, times
/// `batch` must stay within three quarters of what the device has free (`flag` sets `batch`).
func checkBatchFits(_ classifier: TextClassifier, backend: Backend, batch: Int, flag: String) throws {
    let before = backend.memoryUse.inUse
    let session = try classifier.forwardSession(batchSize: 1)
    let perText = withExtendedLifetime(session) { max(backend.memoryUse.inUse - before, 0) }
    let needed = Double(perText) * Double(batch), available = Double(backend.memoryUse.available)
    guard needed <= 0.75 * available else {
        throw UserError(description: String(format: "%@ %d: %d texts of %d tokens need up to about %.1f GiB of activations, more than three quarters of "
                                            + "the %.1f GiB free; lower %@ (or --max-length)", flag, batch, batch, classifier.maxLength,
                                            needed / 1_073_741_824, available / 1_073_741_824, flag))
    }
}

/// The model, batching and device options of eval and predict.
struct InferenceOptions: ParsableArguments {
    @Option(name: .long, help: "Fine-tuned model folder (a BERT-family classifier, a decoder fine-tuned as one, or a recurrent student).") var model: String
    @Option(name: .long, help: "Examples per batch.") var batchSize = 64
    @Option(name: .long, help: "Tokens per example, specials included (default 128, or the model's maximum when smaller).")
    var maxLength: Int?
    @OptionGroup var deviceOptions: DeviceOptions

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        try checkCounts([("--batch-size", batchSize)])
        try checkMaxLength(maxLength)
        try checkModelArgument(model, flag: "--model", checkClassifierFolder)
    }

    func classifier() throws -> (TextClassifier, Backend) {
        let backend = try deviceOptions.backend()
        return (try loadTextClassifier(folder: expand(model), maxLength: maxLength, backend: backend), backend)
    }
}
