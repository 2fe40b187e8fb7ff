// A transfer set as `retort augment` writes it: JSONL rows of text, label, the teacher's logits
// and origin (original / generated). Read for `retort distill --transfer`, which trains on the
// stored logits; each bad row stops the run with its line and field named.
import Foundation

public struct TransferSet {
    public var examples: [Example] = []
    public var labels: [Int32] = []
    public var logits: [[Float]] = []
    public var original: [Bool] = []
    /// The note naming the rows left out (a text that is empty or only spaces), as a data file's.
    public var skipped: [String] = []
    /// The teacher's label names, in class order.
    public let names: [String]
    public var generatedCount: Int { original.filter { !$0 }.count }

    /// `names`: the teacher's label names (a row's label must be one, its logits one per name).
    public init(path: String, names: [String]) throws {
        self.names = names
        let index = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int32($0)) })
        var blank: [Example] = []
        for (n, line) in DelimitedText.lines(try DelimitedText.read(path)).enumerated() {
            guard !line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) else { continue }
            let at = "\(path): line \(n + 1)"
            guard let parsed = try? JSONSerialization.jsonObject(with: Data(line)) else {
                throw DataError("\(at): not valid JSON, or a number in it beyond a double's range (a transfer set is retort augment's JSONL)")
            }
            guard let row = parsed as? [String: Any] else { throw DataError("\(at): not a JSON object (a transfer set is retort augment's JSONL)") }
            guard let text = row["text"] as? String else { throw DataError("\(at): no \"text\" string") }
            guard !text.allSatisfy(\.isWhitespace) else {
                blank.append(Example(text: text, label: nil, line: n + 1))
                continue
            }
            guard let logitsValue = row["logits"] else {
                throw DataError("\(at): no \"logits\": a transfer set is retort augment's JSONL (text, label, the teacher's logits); "
                                + "labelled data without logits goes to --train (the teacher then runs on it)")
            }
            // A label as augment writes it (a string) or as a number (-1, 1), read as a data file reads it.
            guard let label = row["label"].flatMap(Dataset.jsonText), let id = index[label] else {
                let given = row["label"].map { Dataset.jsonText($0).map { "'\($0)' is not one of them" } ?? "is not a string or a number" } ?? "is missing"
                throw DataError("\(at): \"label\" \(given); the teacher's labels are \(names.joined(separator: ", "))")
            }
            guard let values = logitsValue as? [NSNumber], values.count == names.count else {
                throw DataError("\(at): \"logits\" must hold \(names.count) numbers, one per teacher label")
            }
            // A classifier's logits are of the order of ten; far beyond, a loss on them overflows.
            if let wild = values.first(where: { !(abs($0.doubleValue) <= Self.logitLimit) }) {
                throw DataError("\(at): \"logits\" holds \(wild), beyond ±\(Int(Self.logitLimit)); a teacher's logits are finite and far smaller")
            }
            let best = values.indices.max { values[$0].floatValue < values[$1].floatValue }!
            if let stored = row["teacher_label"].flatMap(Dataset.jsonText), stored != names[best] {
                throw DataError("\(at): \"teacher_label\" '\(stored)' is not the argmax of its logits under this teacher's labels "
                                + "(\(names.joined(separator: ", "))); was the set made with another teacher?")
            }
            examples.append(Example(text: text, label: label, line: n + 1))
            labels.append(id)
            logits.append(values.map { $0.floatValue })
            original.append((row["origin"] as? String ?? "original") == "original")
        }
        skipped = Dataset.withText(blank, path: path, noun: "row").skipped.map { [$0] } ?? []
        guard !examples.isEmpty else { throw DataError("\(path): no rows" + (blank.isEmpty ? "" : " with text (\(blank.count) empty)")) }
    }

    /// The largest stored logit taken (in magnitude).
    static let logitLimit = 1e4

    /// Whether `teacher` made the stored logits: it runs on the `count` shortest uncut texts of
    /// `examples` (encoded as `encodings`, their stored logits `logits`) and compares. A warning
    /// naming the worst line where some logit differs by more than `tolerance` (0.05: another
    /// batch's padding moved the same teacher's logits by 2.4e-7 on the CPU, another device's
    /// rounding is of the order of 1e-5; another teacher moves them by tenths), nil where they agree.
    public static func teacherMismatch(_ examples: [Example], _ encodings: [Encoding], logits: [[Float]], teacher: TextClassifier,
                                       path: String, count: Int = 8, tolerance: Float = 0.05) throws -> String? {
        let rows = encodings.indices.filter { !encodings[$0].truncated }
            .sorted { (encodings[$0].ids.count, $0) < (encodings[$1].ids.count, $1) }.prefix(count)
        guard !rows.isEmpty else { return nil }
        let computed = try teacher.forwardSession(batchSize: rows.count)(rows.map { encodings[$0] })
        var worst: (difference: Float, row: Int) = (0, rows.first!)
        for (row, values) in zip(rows, computed) {
            let difference = zip(values, logits[row]).map { abs($0 - $1) }.max() ?? 0
            if difference > worst.difference { worst = (difference, row) }
        }
        guard worst.difference > tolerance else { return nil }
        return "\(path): line \(examples[worst.row].line): the stored logits differ from --teacher's by \(String(format: "%.3g", worst.difference)) "
            + "(the \(rows.count) shortest texts checked): the set was labelled by another teacher, or a quantized copy of it; "
            + "training goes on with the stored logits (give --train with this --teacher to label the texts anew)"
    }

    /// Training data and its logits; dev: `files.dev` if given, else `files.devSplit` of the
    /// original texts (a generated text never lands in dev).
    public func split(dev files: DataFiles, seed: UInt64) throws -> (LabelledData, [[Float]]) {
        var trainRows = Array(examples.indices), dev: [Example] = [], devLabels: [Int32] = [], skipped: [String] = []
        if let path = files.dev {
            var columns = files.columns
            if columns.label == nil { columns.label = .name("label") }
            dev = try Dataset.loadWithText(path, columns: columns) { skipped.append($0) }   // as LabelledData's dev
            devLabels = try Dataset.labelIds(dev, names: names, path: path)
        } else {
            var rng = SplitMix(seed: seed ^ 0xDE5)
            let originals = examples.indices.filter { original[$0] }.shuffled(using: &rng)
            let count = originals.count < 2 ? 0 : min(originals.count - 1, max(1, Int((Double(originals.count) * files.devSplit).rounded())))
            guard count > 0 else { throw DataError("\(files.train): too few original texts to hold a dev split out of; give --dev") }
            let held = Set(originals.prefix(count))
            trainRows = trainRows.filter { !held.contains($0) }
            dev = held.sorted().map { examples[$0] }
            devLabels = held.sorted().map { labels[$0] }
        }
        let data = LabelledData(train: trainRows.map { examples[$0] }, dev: dev, names: names, trainLabels: trainRows.map { labels[$0] },
                                devLabels: devLabels, skipped: self.skipped + skipped)
        return (data, trainRows.map { logits[$0] })
    }
}
