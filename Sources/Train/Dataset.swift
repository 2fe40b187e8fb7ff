// Labelled text from CSV, TSV or JSONL. Columns are named (the file then has a header row; JSONL
// keys) or 0-based indexes (no header). Labels are strings; their ids follow numeric order when
// every label is a number ("-1" < "1"), else sorted order, and are saved as id2label.
import Foundation

public struct Example: Sendable, Equatable {
    public var text: String
    public var pair: String?
    public var label: String?
    public var line: Int   // where it came from, for error messages
    public init(text: String, pair: String? = nil, label: String? = nil, line: Int) {
        self.text = text; self.pair = pair; self.label = label; self.line = line
    }
}

public enum Column: Sendable, Equatable, CustomStringConvertible {
    case name(String), index(Int)

    /// "3" is an index, anything else a name.
    public init(_ text: String) {
        if let i = Int(text), i >= 0 { self = .index(i) } else { self = .name(text) }
    }

    public var description: String {
        switch self {
        case .name(let n): return "'\(n)'"
        case .index(let i): return "\(i)"
        }
    }
}

public struct ColumnSpec: Sendable {
    public var text: Column
    public var pair: Column?
    public var label: Column?   // nil: unlabelled input (predict)
    public init(text: Column, pair: Column? = nil, label: Column? = nil) {
        self.text = text; self.pair = pair; self.label = label
    }
    /// Only the text, by its default name: a plain .txt file is then one text per line.
    var isPlainText: Bool { text == .name("text") && pair == nil && label == nil }
    var hasNames: Bool {
        [text, pair, label].contains { if case .name = $0 { return true } else { return false } }
    }
}

public enum Dataset {
    /// Reads `path` by its extension: .csv, .tsv, .jsonl/.json; any other file (.txt, none, "-"
    /// for standard input, .md, .log, …) is one text per line when only the text is asked for by
    /// its default name (`predict --input texts.txt`), else a TSV (tab-separated columns) — as is
    /// a file of another extension than .txt whose first line holds a tab (a .tab or .dat table).
    public static func load(_ path: String, columns: ColumnSpec) throws -> [Example] {
        // "-" (standard input) and a name without an extension (a pipe: /dev/stdin, <(…)) as .txt.
        let named = (path as NSString).pathExtension.lowercased(), ext = path == "-" || named.isEmpty ? "txt" : named
        let examples: [Example], plainLines: Bool
        if ext == "jsonl" || ext == "json" {
            plainLines = false
            examples = try jsonl(path, columns)
        } else {
            let bytes = try DelimitedText.read(path)
            let tabbed = ext != "txt" && bytes.prefix(while: { $0 != UInt8(ascii: "\n") }).contains(UInt8(ascii: "\t"))
            plainLines = !["csv", "tsv"].contains(ext) && columns.isPlainText && !tabbed
            if plainLines {
                examples = lines(bytes)
            } else {
                let rows = ext == "csv" ? try DelimitedText.csvRecords(bytes, path: path) : DelimitedText.tsvRecords(bytes)
                examples = try table(rows, path: path, columns)
            }
        }
        guard !examples.isEmpty else {
            throw DataError("\(path): no examples (the file is empty\(plainLines ? " or holds only blank lines" : ext == "jsonl" || ext == "json" ? "" : " or holds only a header"))")
        }
        return examples
    }

    static func table(_ records: [DelimitedText.Record], path: String, _ spec: ColumnSpec) throws -> [Example] {
        var records = records[...]
        var header: [String] = []
        if spec.hasNames {
            guard let first = records.first else { return [] }
            header = first.fields
            records = records.dropFirst()
        }
        func index(_ column: Column) throws -> Int {
            switch column {
            case .index(let i): return i
            case .name(let n):
                guard let i = header.firstIndex(of: n) else {
                    // A .txt (or a file without a known extension) whose first line is one text, not a header.
                    let plainLines = header.count == 1 && !["csv", "tsv"].contains((path as NSString).pathExtension.lowercased())
                    if plainLines {   // its first line is a text, not a header
                        throw DataError(spec.label != nil
                                        ? "\(path): lines of plain text carry no labels (no column '\(n)'): give a .csv, .tsv or .jsonl with text and label columns"
                                        : "\(path): lines of plain text, one text each, have no column '\(n)': give a .csv, .tsv or .jsonl to pick columns")
                    }
                    let rest = (header.count == 1 && header[0].contains(";") ? "; fields separated by semicolons? a .csv's are commas, a .tsv's tabs"
                        : !header.contains(where: { $0.count <= 40 && !$0.contains(" ") }) || header.contains(where: { $0.count > 40 })
                            ? "; no header? then give the columns by index (0 for the first)" : "")
                    let shown = header.prefix(8).joined(separator: ", ")
                    throw DataError("\(path): no column named '\(n)' (the header has: \(shown.count > 160 ? String(shown.prefix(160)) + "…" : shown))\(rest)")
                }
                return i
            }
        }
        let textIndex = try index(spec.text), pairIndex = try spec.pair.map(index), labelIndex = try spec.label.map(index)
        let needed = [textIndex, pairIndex ?? 0, labelIndex ?? 0].max()!
        var out: [Example] = []
        // More fields than the header (or, without one, most records), not all empty, means a text
        // was cut at an unquoted comma or a stray tab; reading on would label part of it.
        let width = header.isEmpty
            ? Dictionary(records.map { ($0.fields.count, 1) }, uniquingKeysWith: +).max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? 0
            : header.count
        let csv = (path as NSString).pathExtension.lowercased() == "csv"
        for record in records {
            let (line, row) = (record.line, record.fields)
            guard row.count > needed else {
                throw DataError("\(path): line \(line): no column \(needed) (it has \(row.count) fields; columns are 0-based)")
            }
            guard row.count <= width || row[width...].allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) else {
                let fix = csv ? "put a text that holds commas in double quotes" : "a text may not hold a tab"
                throw DataError("\(path): line \(line) has \(row.count) fields, \(header.isEmpty ? "most records" : "the header") \(width) (\(fix))")
            }
            out.append(Example(text: row[textIndex], pair: pairIndex.map { row[$0] },
                               label: labelIndex.map { row[$0].trimmingCharacters(in: .whitespaces) }, line: line))
        }
        return out
    }

    /// One unlabelled example per non-empty line.
    static func lines(_ path: String) throws -> [Example] { lines(try DelimitedText.read(path)) }

    static func lines(_ bytes: [UInt8]) -> [Example] {
        DelimitedText.lines(bytes).enumerated().compactMap { n, line in
            let text = String(decoding: line, as: UTF8.self)
            return text.trimmingCharacters(in: .whitespaces).isEmpty ? nil : Example(text: text, line: n + 1)
        }
    }

    static func jsonl(_ path: String, _ spec: ColumnSpec) throws -> [Example] {
        let bytes = try DelimitedText.read(path)
        var out: [Example] = []
        func key(_ column: Column) throws -> String {
            guard case .name(let n) = column else { throw DataError("\(path): JSONL columns are keys, not indexes (got \(column))") }
            return n
        }
        let textKey = try key(spec.text), pairKey = try spec.pair.map(key), labelKey = try spec.label.map(key)
        for (n, line) in DelimitedText.lines(bytes).enumerated() {
            guard line.contains(where: { $0 != 0x20 && $0 != 0x0D && $0 != 0x09 }) else { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])) as? [String: Any] else {
                throw DataError("\(path): line \(n + 1): not a JSON object")
            }
            func field(_ k: String) throws -> String {
                guard let v = object[k] else { throw DataError("\(path): line \(n + 1): no key '\(k)'") }
                guard !(v is NSNull) else { throw DataError("\(path): line \(n + 1): '\(k)' is null: give it a value, or remove the record") }
                guard let text = jsonText(v) else { throw DataError("\(path): line \(n + 1): '\(k)' is neither text nor a number") }
                return text
            }
            out.append(Example(text: try field(textKey), pair: try pairKey.map(field), label: try labelKey.map(field), line: n + 1))
        }
        return out
    }

    /// A JSON value as a field's text: a string as it is, a number as written (1, 1.5), JSON's true
    /// and false by those names (Foundation's booleans, objCType "c"; they read as 1 and 0 before);
    /// nil for anything else (an array, an object, null).
    static func jsonText(_ v: Any) -> String? {
        if let s = v as? String { return s }
        guard let num = v as? NSNumber else { return nil }
        return String(cString: num.objCType) == "c" ? (num.boolValue ? "true" : "false") : num.stringValue
    }

    /// The label names in id order: numeric order when all are numbers, else sorted.
    /// Labels that would train silently wrong are refused: an empty one; a first record of a
    /// table read by column indexes that looks like a header (a label found nowhere else, a text
    /// of one word) — it would become a class of its own; two labels that differ only in case.
    /// Labels that are texts: 20 or more, most records with one of its own (columns swapped).
    /// (`headerCheck` false: a dev file, whose header's label is refused as no label of the model.)
    static func checkLabels(_ examples: [Example], path: String, columns: ColumnSpec, headerCheck: Bool = true, namesGiven: Bool = false) throws {
        if let empty = examples.first(where: { $0.label?.isEmpty == true }) {
            throw DataError("\(path): line \(empty.line) has an empty label; fill it in or remove the record")
        }
        // Labels that are texts (the columns swapped, or the wrong one named): most records a class of
        // their own, and most of those with a space or long (a few examples of many intents, "book_flight",
        // or of a model's own labels, train; so do numbers, as classes).
        let distinct = Set(examples.compactMap(\.label))
        let texts = distinct.filter { $0.contains(" ") || $0.count > 30 }.count
        if headerCheck, !namesGiven, distinct.count >= 20, distinct.count * 2 > examples.count, texts * 2 > distinct.count,
           let sample = examples.first?.label {
            let texts = Set(examples.map(\.text)).sorted()
            let swapped = texts.count > 10 ? ""
                : "; the text column holds only \(texts.count) different value\(texts.count == 1 ? "" : "s") (\(texts.prefix(5).map { "'\($0)'" }.joined(separator: ", "))): "
                  + "are --text-column and --label-column swapped?"
            throw DataError("\(path): \(distinct.count) different labels in \(examples.count) records (such as '\(sample.count > 40 ? sample.prefix(40) + "…" : sample)'); "
                            + "a label is a class that many records share: check --label-column" + swapped)
        }
        let table = !["jsonl", "json"].contains((path as NSString).pathExtension.lowercased())
        if table, headerCheck, !columns.hasNames, examples.count >= 3, let first = examples.first, let label = first.label,
           !examples.dropFirst().contains(where: { $0.label == label }),
           first.text.count <= 40, !first.text.isEmpty, !first.text.contains(where: \.isWhitespace) {
            throw DataError("\(path): line \(first.line) looks like a header (label '\(label)', found nowhere else; text '\(first.text)'): "
                            + "name the columns instead of giving their indexes (text '\(first.text)', label '\(label)'), or remove that line")
        }
        var byFolded: [String: String] = [:]
        for label in Set(examples.compactMap(\.label)).sorted() {
            if let other = byFolded.updateValue(label, forKey: label.lowercased()) {
                throw DataError("\(path): labels '\(other)' and '\(label)' differ only in case, so they would train as two classes; write them alike")
            }
        }
    }

    public static func labelNames(_ examples: [Example]) -> [String] {
        let names = Set(examples.compactMap(\.label))
        if names.allSatisfy({ Double($0) != nil }) { return names.sorted { Double($0)! < Double($1)! } }
        return names.sorted()
    }

    /// Label ids for `examples`; a label outside `names` is an error naming the record.
    /// `whose`: where `names` come from, for the error ("the model's", "the training data's").
    public static func labelIds(_ examples: [Example], names: [String], path: String, whose: String = "the model's") throws -> [Int32] {
        let ids = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, Int32($0)) })
        return try examples.map { e in
            guard let label = e.label else { throw DataError("\(path): line \(e.line) has no label") }
            guard let id = ids[label] else {
                // '1' beside '1.0' (a spreadsheet's export): the same number, another label.
                let same = Double(label).flatMap { value in names.first { Double($0) == value } }
                // A label of several words is likely a text: the columns given by index the wrong way round.
                let sentence = label.split(separator: " ").count >= 3
                let table = !["jsonl", "json"].contains((path as NSString).pathExtension.lowercased())
                throw DataError("\(path): line \(e.line): label '\(label.count > 60 ? label.prefix(60) + "…" : label)' is not one of \(whose) labels (\(names.joined(separator: ", ")))"
                                + (same.map { ": it is written '\($0)' there; write the labels the same way in every file" }
                                   ?? (sentence && table ? "; it reads like a text: are --text-column and --label-column the wrong way round?"
                                       : e.line == 1 && table && label.contains(where: \.isLetter) ? "; a header? then name the columns (--text-column NAME --label-column NAME) instead of their indexes" : "")))
            }
            return id
        }
    }

    /// The examples that have text (a text or a pair's second text not all white space), and a
    /// note naming the others, which a run or predict skips: "train.csv: 2 records without text
    /// skipped (lines 5, 9)"; nil when none were.
    public static func withText(_ examples: [Example], path: String, noun: String = "record") -> (kept: [Example], skipped: String?) {
        let blank = { (e: Example) in e.text.allSatisfy(\.isWhitespace) && (e.pair ?? "").allSatisfy(\.isWhitespace) }
        let lines = examples.filter(blank).map(\.line)
        guard !lines.isEmpty else { return (examples, nil) }
        let shown = lines.prefix(5).map(String.init).joined(separator: ", ") + (lines.count > 5 ? ", …" : "")
        let note = "\(path): \(lines.count) \(noun)\(lines.count == 1 ? "" : "s") without text skipped (line\(lines.count == 1 ? "" : "s") \(shown))"
        return (examples.filter { !blank($0) }, note)
    }

    /// `load` for data a model learns from or is scored on: records without text are left out
    /// (`withText`) and `skipped` hears the note naming them; a file with none is an error.
    public static func loadWithText(_ path: String, columns: ColumnSpec, skipped: (String) -> Void) throws -> [Example] {
        let (kept, note) = withText(try load(path, columns: columns), path: path)
        if let note { skipped(note) }
        guard !kept.isEmpty else { throw DataError("\(path): no record has text (column \(columns.text))") }
        return kept
    }

    /// Whether `path` is read by column — a .csv, .tsv, .jsonl or .json — rather than as lines of text.
    public static func isTable(_ path: String) -> Bool {
        ["csv", "tsv", "jsonl", "json"].contains((path as NSString).pathExtension.lowercased())
    }

    /// A seeded split: (train, dev) with `fraction` of the examples in dev.
    public static func split(_ examples: [Example], fraction: Double, seed: UInt64) -> ([Example], [Example]) {
        var order = Array(examples.indices)
        var rng = SplitMix(seed: seed ^ 0x5EED)
        order.shuffle(using: &rng)
        let devCount = max(1, Int((Double(examples.count) * fraction).rounded()))
        let dev = order.prefix(devCount).sorted().map { examples[$0] }
        let train = order.dropFirst(devCount).sorted().map { examples[$0] }
        return (train, dev)
    }
}
