// The commands as a newcomer meets them: --help that reads cleanly, `predict` on a plain text
// file, `finetune` on the tiny golden model (output folder, resume, Ctrl-C, the LoRA learning
// rate), and the one-line errors.
import Foundation
import Models
import XCTest

final class CommandsCLITests: TinyRunTestCase {
    func testHelpTextsHaveNoStrayBackslashesOrBrokenExampleLines() throws {
        for command in ["finetune", "distill", "augment", "eval", "predict", "compare", "generate", "tokenize", "devices", "quantize", "export",
                        "serve"] {
            let (status, output) = try retort([command, "--help"], environment: ["COLUMNS": "80"])
            XCTAssertEqual(status, 0, output)
            let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            var inExample = false
            for (i, line) in lines.enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces), indented = line.hasPrefix("  ")
                if indented && trimmed.hasPrefix("retort ") { inExample = true }
                if inExample {
                    // Every line of an example stays indented: one the terminal width wrapped would not.
                    XCTAssertTrue(indented, "\(command): an example line broken by wrapping: \(line)")
                    if !trimmed.hasSuffix("\\") {
                        inExample = false
                        let next = i + 1 < lines.count ? lines[i + 1] : ""
                        XCTAssertTrue(next.isEmpty || next.hasPrefix("  "), "\(command): an example's end wrapped onto: \(next)")
                    }
                } else {
                    XCTAssertFalse(trimmed.hasSuffix("\\"), "\(command): a stray backslash: \(line)")
                }
            }
        }
        let (_, predict) = try retort(["predict", "--help"])
        XCTAssertFalse(predict.contains("--label-column"), "predict reads no labels: \(predict)")
        let (_, finetune) = try retort(["finetune", "--help"])
        XCTAssertTrue(finetune.contains("1e-3 when only LoRA") && finetune.contains("adapters train"), finetune)
    }

    /// A RETORT_* variable set to something it does not take is a one-line error before any work
    /// (the kernels read RETORT_NUM_THREADS with atoi, and ignored "two"); empty counts as unset;
    /// an OpenBLAS core name only OpenBLAS can judge is named in the cpu line when it is unknown.
    func testEnvironmentVariablesWithBadValuesAreOneLineErrors() throws {
        for (name, value, expected) in [("RETORT_NUM_THREADS", "two", "RETORT_NUM_THREADS=two is not a whole number of threads from 1 to 256"),
                                        ("RETORT_NUM_THREADS", "0", "RETORT_NUM_THREADS=0 is not a whole number"),
                                        ("RETORT_CPU_LEVEL", "avx2", "RETORT_CPU_LEVEL=avx2 is not 4 (AVX-512), 3 (AVX2+FMA) or 1 (baseline)"),
                                        ("RETORT_COLLECTIVE_TIMEOUT", "-5", "RETORT_COLLECTIVE_TIMEOUT=-5 is not a positive number of seconds")] {
            let (status, output) = try retort(["devices"], environment: [name: value])
            XCTAssertEqual(status, 64, output)
            XCTAssertTrue(output.contains("Error: \(expected)") && output.contains("unset it for the default"), output)
            XCTAssertEqual(output.split(separator: "\n").count, 1, output)
        }
        let (status, output) = try retort(["devices"], environment: ["RETORT_NUM_THREADS": "2", "RETORT_CPU_LEVEL": "", "RETORT_NCCL": "0"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("2 threads"), output)
        // More threads than CPUs only take turns on them: held to the CPUs, as --threads is.
        let cpus = ProcessInfo.processInfo.activeProcessorCount, model = golden.appendingPathComponent("tiny-bert").path
        let (capped, cappedOutput) = try retort(["predict", "--model", model, "w1 w2"], environment: ["RETORT_NUM_THREADS": "256"])
        XCTAssertEqual(capped, 0, cappedOutput)
        if cpus < 256 {
            XCTAssertTrue(cappedOutput.contains("RETORT_NUM_THREADS=256: this machine has \(cpus) CPUs; using \(cpus)")
                          && cappedOutput.contains(", \(cpus) threads;"), cappedOutput)
        }
        // A core name OpenBLAS does not know: it detects its own, and the cpu line says so.
        let (bogusStatus, bogus) = try retort(["devices"], environment: ["RETORT_BLAS_CORETYPE": "Bogus"])
        XCTAssertEqual(bogusStatus, 0, bogus)
        XCTAssertTrue(bogus.contains(" kernels (RETORT_BLAS_CORETYPE=Bogus, which this OpenBLAS does not run as such: it chose these)"), bogus)
        // A core whose instructions the CPU lacks (SkylakeX's AVX-512 on an AVX2 machine) would
        // end the process at the first matmul (SIGILL): CPUID's choice runs, and the line says so.
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        if !cpuinfo.contains(" avx512f") {
            let (status, output) = try retort(["devices"], environment: ["RETORT_BLAS_CORETYPE": "SkylakeX"])
            XCTAssertEqual(status, 0, output)
            XCTAssertTrue(output.contains("(RETORT_BLAS_CORETYPE=SkylakeX needs AVX-512, which this CPU lacks: chosen from CPUID)"), output)
        }
    }

    /// `tokenize` picks the tokenizer from the folder: WordPiece (vocab.txt) or GPT-2's byte-level
    /// BPE (vocab.json + merges.txt); a folder with neither is a one-line error.
    func testTokenizeReadsWordPieceAndByteLevelBPEFolders() throws {
        let texts = work.appendingPathComponent("lines.txt")
        try "w5 w6\nhello<|endoftext|>world\n".write(to: texts, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["tokenize", "--model", teacher, "--input", texts.path])
        XCTAssertEqual(status, 0, output)
        // The same texts given as arguments: the same lines of ids.
        let (argumentsStatus, fromArguments) = try retort(["tokenize", "--model", teacher, "w5 w6", "hello<|endoftext|>world"])
        XCTAssertEqual(argumentsStatus, 0, fromArguments)
        XCTAssertEqual(fromArguments, output)
        XCTAssertTrue(output.hasPrefix("[2,"), output)   // [CLS] first (the tiny vocabulary's id 2)
        // An empty argument is a text too: its special tokens alone, alone or among others.
        let (emptyStatus, empty) = try retort(["tokenize", "--model", teacher, ""])
        XCTAssertEqual(emptyStatus, 0, empty)
        let specials = empty.trimmingCharacters(in: .newlines)
        XCTAssertTrue(specials.hasPrefix("[2,") && specials.split(separator: ",").count == 2, empty)   // [CLS] [SEP]
        let (_, among) = try retort(["tokenize", "--model", teacher, "w5 w6", "", "w5 w6"])
        XCTAssertEqual(among.split(separator: "\n", omittingEmptySubsequences: false).map(String.init),
                       [String(output.split(separator: "\n")[0]), specials, String(output.split(separator: "\n")[0]), ""], among)
        let root = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")
        if FileManager.default.fileExists(atPath: root + "/gpt2-tokenizer/merges.txt") {
            let (status, output) = try retort(["tokenize", "--model", root + "/gpt2-tokenizer", "--input", texts.path])
            XCTAssertEqual(status, 0, output)
            XCTAssertEqual(output, "[86,20,266,21]\n[31373,50256,6894]\n")
        }
        let (refused, message) = try retort(["tokenize", "--model", work.path, "--input", texts.path])
        XCTAssertEqual(refused, 1)
        XCTAssertEqual(message.trimmingCharacters(in: .newlines), "Error: --model \(work.path): no tokenizer there (a folder with vocab.txt "
                       + "for WordPiece, tokenizer.json or vocab.json and merges.txt for byte-level BPE, or a .gguf file)")
        // Standard input is read as a file is: NUL bytes (or bytes that are not UTF-8) are refused, not read as �.
        let (binary, binaryRefusal) = try retort(["tokenize", "--model", teacher], standardInput: "w5\u{0}w6\n")
        XCTAssertEqual(binary, 1, binaryRefusal)
        XCTAssertEqual(binaryRefusal.trimmingCharacters(in: .newlines),
                       "Error: standard input: not UTF-8 text (UTF-16, or NUL bytes); save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
        let (notGGUF, refusal) = try retort(["tokenize", "--model", texts.path, "--input", texts.path])
        XCTAssertEqual(notGGUF, 1)
        XCTAssertEqual(refusal.trimmingCharacters(in: .newlines), "Error: --model \(texts.path): a file, not a model folder or a GGUF file (give the "
                       + "folder that holds vocab.txt, tokenizer.json or vocab.json and merges.txt, or a .gguf file)")
    }

    /// A label holding a tab or a line break is written escaped, as a text is: one line per input.
    func testPredictKeepsOneLinePerInputWhateverTheLabel() throws {
        let tabbed = work.appendingPathComponent("tabbed").path
        try FileManager.default.copyItem(atPath: teacher, toPath: tabbed)
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tabbed + "/config.json"))) as? [String: Any])
        config["id2label"] = ["0": "a\tb", "1": "c\nd", "2": "e"]
        config["label2id"] = nil
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: tabbed + "/config.json"))
        let (status, output) = try retort(["predict", "--model", tabbed, "w1 w2", "w3 w4 w5", "a b", "--device", "cpu", "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        let lines = output.split(separator: "\n").filter { !$0.hasPrefix("retort: ") }
        XCTAssertEqual(lines.count, 3, output)
        for line in lines {
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            XCTAssertEqual(fields.count, 3, output)
            XCTAssertTrue(["a\\tb", "c\\nd", "e"].contains(String(fields[0])), output)
        }
    }

    /// A .csv, .tsv or .jsonl --input is read by column (one line of ids per record), the same ids
    /// as the texts given as lines; column flags for lines, and --pair for a table, are refused.
    func testTokenizeReadsTablesByColumn() throws {
        let lines = work.appendingPathComponent("lines.txt"), pairs = work.appendingPathComponent("pairs.txt")
        try "w5 w6\nw7, w8\n".write(to: lines, atomically: true, encoding: .utf8)
        try "w5 w6\tw9\nw7, w8\tw5\n".write(to: pairs, atomically: true, encoding: .utf8)
        let (status, expected) = try retort(["tokenize", "--model", teacher, "--input", lines.path])
        XCTAssertEqual(status, 0, expected)
        let (pairStatus, expectedPairs) = try retort(["tokenize", "--model", teacher, "--input", pairs.path, "--pair"])
        XCTAssertEqual(pairStatus, 0, expectedPairs)
        XCTAssertEqual(expected.split(separator: "\n").count, 2, expected)
        let csv = work.appendingPathComponent("data.csv"), jsonl = work.appendingPathComponent("data.jsonl")
        try "label,text,second\n1,w5 w6,w9\n0,\"w7, w8\",w5\n".write(to: csv, atomically: true, encoding: .utf8)
        try "{\"sentence\": \"w5 w6\", \"label\": 1}\n{\"sentence\": \"w7, w8\", \"label\": 0}\n".write(to: jsonl, atomically: true, encoding: .utf8)
        let (csvStatus, byColumn) = try retort(["tokenize", "--model", teacher, "--input", csv.path])
        XCTAssertEqual(csvStatus, 0, byColumn)
        XCTAssertEqual(byColumn, expected)
        let (jsonlStatus, byKey) = try retort(["tokenize", "--model", teacher, "--input", jsonl.path, "--text-column", "sentence"])
        XCTAssertEqual(jsonlStatus, 0, byKey)
        XCTAssertEqual(byKey, expected)
        let (pairedStatus, paired) = try retort(["tokenize", "--model", teacher, "--input", csv.path, "--text-pair-column", "second"])
        XCTAssertEqual(pairedStatus, 0, paired)
        XCTAssertEqual(paired, expectedPairs)
        // A headerless .tsv by index; a record without text keeps its line (the specials alone).
        let tsv = work.appendingPathComponent("pairs.tsv")
        try "w5 w6\tw9\n\t\nw7, w8\tw5\n".write(to: tsv, atomically: true, encoding: .utf8)
        let (tsvStatus, byIndex) = try retort(["tokenize", "--model", teacher, "--input", tsv.path, "--text-column", "0", "--text-pair-column", "1"])
        XCTAssertEqual(tsvStatus, 0, byIndex)
        let pairLines = expectedPairs.split(separator: "\n")
        XCTAssertEqual(byIndex.split(separator: "\n"), [pairLines[0], "[2,3,3]", pairLines[1]], byIndex)   // [CLS] [SEP] [SEP]
        let (refused, message) = try retort(["tokenize", "--model", teacher, "--input", csv.path, "--pair"])
        XCTAssertNotEqual(refused, 0, message)
        XCTAssertTrue(message.contains("--text-pair-column"), message)
        let (linesRefused, linesMessage) = try retort(["tokenize", "--model", teacher, "--input", lines.path, "--text-column", "1"])
        XCTAssertNotEqual(linesRefused, 0, linesMessage)
        XCTAssertTrue(linesMessage.contains("lines.txt is read as lines"), linesMessage)
        let (missing, missingMessage) = try retort(["tokenize", "--model", teacher, "--input", csv.path, "--text-column", "sentence"])
        XCTAssertNotEqual(missing, 0, missingMessage)
        XCTAssertTrue(missingMessage.contains("no column named 'sentence'"), missingMessage)
    }

    func testPredictReadsATextFileOneTextPerLine() throws {
        let texts = work.appendingPathComponent("texts.txt")
        try "w5 w6 w7\n\nw8 a b, with a comma\nw9 \"quoted\"\n".write(to: texts, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["predict", "--model", teacher, "--input", texts.path, "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        let lines = output.split(separator: "\n").filter { $0.hasPrefix("LABEL_") }
        XCTAssertEqual(lines.map { $0.split(separator: "\t").last.map(String.init) }, ["w5 w6 w7", "w8 a b, with a comma", "w9 \"quoted\""], output)
        XCTAssertTrue(lines.allSatisfy { $0.split(separator: "\t").count == 3 }, output)
        XCTAssertFalse(output.contains("longer than"), output)
        // A record without text is skipped like a blank line, and said so; an empty argument is refused.
        let holes = work.appendingPathComponent("holes.csv")
        try "text\nw5 w6\n\"\"\n\"w7\nw8\"\n \n".write(to: holes, atomically: true, encoding: .utf8)
        let (skipped, skippedOutput) = try retort(["predict", "--model", teacher, "--input", holes.path, "--json", "--threads", "1"])
        XCTAssertEqual(skipped, 0, skippedOutput)
        XCTAssertTrue(skippedOutput.contains("retort: \(holes.path): 2 inputs without text skipped (lines 3, 6)"), skippedOutput)
        XCTAssertEqual(skippedOutput.split(separator: "\n").filter { $0.hasPrefix("{") }
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.map { $0["line"] as? Int }, [2, 4],
                       "each input's line, a quoted line break counted: \(skippedOutput)")
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        let (many, manyOutput) = try retort(["predict", "--model", teacher, "w5", "--threads", "\(cpus + 1)"])
        XCTAssertEqual(many, 0, manyOutput)
        XCTAssertTrue(manyOutput.contains("retort: --threads \(cpus + 1): this machine has \(cpus) CPUs; using \(cpus)")
                      && manyOutput.contains(", \(cpus) threads;"), manyOutput)
        let (blank, blankOutput) = try retort(["predict", "--model", teacher, "w5", ""])
        XCTAssertNotEqual(blank, 0)
        XCTAssertTrue(blankOutput.contains("Error: text 2 is empty: give some text to label"), blankOutput)
        // Texts cut to --max-length are counted ([CLS] w5 w6 w7 [SEP] is 5 tokens).
        let (cut, cutOutput) = try retort(["predict", "--model", teacher, "--input", texts.path, "--max-length", "4", "--threads", "1"])
        XCTAssertEqual(cut, 0, cutOutput)
        XCTAssertTrue(cutOutput.contains("retort: 3 of 3 texts (100.0 %) are longer than --max-length 4 tokens and were cut there; a larger --max-length lets the model read more"), cutOutput)

        // Standard input ("-"), a tab, line break and backslash shown escaped (one line per input),
        // and --json naming each input's line (blank lines are skipped).
        let (piped, pipedOutput) = try retort(["predict", "--model", teacher, "--input", "-", "--threads", "1"],
                                              standardInput: "w5 w6\n\nw7\tw8\n")
        XCTAssertEqual(piped, 0, pipedOutput)
        XCTAssertEqual(pipedOutput.split(separator: "\n").filter { $0.hasPrefix("LABEL_") }.map { $0.split(separator: "\t").last.map(String.init) },
                       ["w5 w6", "w7\\tw8"], pipedOutput)
        // Lines piped in without --input are read as with --input -; nothing piped is one line.
        let (implicit, implicitOutput) = try retort(["predict", "--model", teacher, "--threads", "1"], standardInput: "w5 w6\n\nw7\tw8\n")
        XCTAssertEqual(implicit, 0, implicitOutput)
        XCTAssertEqual(implicitOutput.split(separator: "\n").filter { $0.hasPrefix("LABEL_") }, pipedOutput.split(separator: "\n").filter { $0.hasPrefix("LABEL_") })
        let (nothing, nothingOutput) = try retort(["predict", "--model", teacher], standardInput: "")
        XCTAssertNotEqual(nothing, 0, nothingOutput)
        XCTAssertTrue(nothingOutput.contains("Error: standard input (read as no text was given): no examples"), nothingOutput)
        let jsonl = work.appendingPathComponent("texts.jsonl")
        try "{\"text\": \"w1\\nw2 \\\\ w3\"}\n{\"text\": \"w4\"}\n".write(to: jsonl, atomically: true, encoding: .utf8)
        let (escaped, escapedOutput) = try retort(["predict", "--model", teacher, "--input", jsonl.path, "--threads", "1"])
        XCTAssertEqual(escaped, 0, escapedOutput)
        XCTAssertEqual(escapedOutput.split(separator: "\n").filter { $0.hasPrefix("LABEL_") }.map { $0.split(separator: "\t").last.map(String.init) },
                       ["w1\\nw2 \\\\ w3", "w4"], escapedOutput)
        let (json, jsonOutput) = try retort(["predict", "--model", teacher, "--input", texts.path, "--json", "--threads", "1"])
        XCTAssertEqual(json, 0, jsonOutput)
        let objects = jsonOutput.split(separator: "\n").filter { $0.hasPrefix("{") }
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(objects.map { $0["line"] as? Int }, [1, 3, 4], jsonOutput)
    }

    func finetune(_ extra: [String]) throws -> (Int32, String) {
        try retort(["finetune", "--model", teacher, "--train", data, "--max-length", "16", "--batch-size", "8", "--threads", "1"] + extra)
    }

    /// A labelled record without text teaches and scores nothing: finetune and eval skip it and
    /// name its line; a file with no text at all is a one-line error.
    func testRecordsWithoutTextAndCutTestTextsAreNamed() throws {
        var rows = try String(contentsOfFile: data, encoding: .utf8).split(separator: "\n").map(String.init)
        rows.insert(",LABEL_0", at: 3)
        rows.insert("\"  \",LABEL_1", at: 10)
        let holes = work.appendingPathComponent("holes.csv").path
        try rows.joined(separator: "\n").write(toFile: holes, atomically: true, encoding: .utf8)
        let skipped = "holes.csv: 2 records without text skipped (lines 4, 11)"
        let (status, output) = try retort(["finetune", "--model", teacher, "--train", holes, "--max-length", "16", "--batch-size", "8",
                                           "--threads", "1", "--epochs", "1", "--out", work.appendingPathComponent("run").path])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains(skipped), output)
        XCTAssertTrue(output.contains("86 training and 10 dev examples"), output)   // the 96 with text
        let (evalStatus, evaluated) = try retort(["eval", "--model", teacher, "--data", holes, "--threads", "1"])
        XCTAssertEqual(evalStatus, 0, evaluated)
        XCTAssertTrue(evaluated.contains(skipped) && evaluated.contains("96 examples: accuracy"), evaluated)
        let (withDev, devOutput) = try retort(["finetune", "--model", teacher, "--train", data, "--dev", holes, "--max-length", "16",
                                               "--batch-size", "8", "--threads", "1", "--epochs", "1", "--out", work.appendingPathComponent("dev-run").path])
        XCTAssertEqual(withDev, 0, devOutput)
        XCTAssertTrue(devOutput.contains(skipped) && devOutput.contains("96 training and 96 dev examples"), devOutput)
        let (distilled, distillOutput) = try retort(["distill", "--teacher", teacher, "--train", data, "--test", holes, "--max-length", "12",
                                                     "--batch-size", "8", "--threads", "1", "--student-layers", "1", "--epochs", "1",
                                                     "--out", work.appendingPathComponent("student").path])
        XCTAssertEqual(distilled, 0, distillOutput)
        XCTAssertEqual(distillOutput.components(separatedBy: skipped).count - 1, 1, "the --test file's, once (not again by the report): \(distillOutput)")
        let (compared, compareOutput) = try retort(["compare", teacher, "--test", holes, "--threads", "1", "--out", work.appendingPathComponent("report").path])
        XCTAssertEqual(compared, 0, compareOutput)
        XCTAssertTrue(compareOutput.contains(skipped), compareOutput)
        XCTAssertFalse(compareOutput.contains("longer than"), compareOutput)
        XCTAssertTrue(compareOutput.contains("retort: timing tiny-bert: B=1 latency and B=32 throughput"), compareOutput)
        // One folder twice (another path to it) is measured twice, and said.
        let (twice, twiceOutput) = try retort(["compare", teacher, teacher + "/", "--threads", "1", "--out", work.appendingPathComponent("report-twice").path])
        XCTAssertEqual(twice, 0, twiceOutput)
        XCTAssertTrue(twiceOutput.contains("retort: note: \(teacher)/ is given twice"), twiceOutput)
        for file in ["report.md", "report.html"] {   // and in the report, for whoever reads it later
            let report = try String(contentsOfFile: work.appendingPathComponent("report-twice/" + file).path, encoding: .utf8)
            XCTAssertTrue(report.contains("Note:") && report.contains("\(teacher)/ is given twice"), report)
        }
        // Models of different classes, without --test: their metrics are on different tasks.
        let relabelled = work.appendingPathComponent("relabelled")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: teacher), to: relabelled)
        let config = relabelled.appendingPathComponent("config.json")
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any])
        object["id2label"] = ["0": "negative", "1": "neutral", "2": "positive"]
        object["label2id"] = ["negative": 0, "neutral": 1, "positive": 2]
        try JSONSerialization.data(withJSONObject: object).write(to: config)
        let (different, differentOutput) = try retort(["compare", teacher, relabelled.path, "--threads", "1",
                                                       "--out", work.appendingPathComponent("report-different").path])
        XCTAssertEqual(different, 0, differentOutput)
        let classes = "these models label different classes (tiny-bert: LABEL_0, LABEL_1, LABEL_2; relabelled: negative, neutral, positive)"
        XCTAssertTrue(differentOutput.contains("retort: note: " + classes), differentOutput)
        let report = try String(contentsOfFile: work.appendingPathComponent("report-different/report.md").path, encoding: .utf8)
        XCTAssertTrue(report.contains("Note: " + classes), report)
        // Two runs' own dev sets: other texts, said.
        let (own, ownOutput) = try retort(["compare", work.appendingPathComponent("run").path, work.appendingPathComponent("dev-run").path,
                                           "--threads", "1", "--out", work.appendingPathComponent("report-own").path])
        XCTAssertEqual(own, 0, ownOutput)
        XCTAssertTrue(ownOutput.contains("retort: note: without --test each model's metrics are on its own run's dev set (other texts); give --test"),
                      ownOutput)
        XCTAssertFalse(differentOutput.contains("without --test each model's"), "rows without metrics compare nothing: \(differentOutput)")
        // Test texts cut to --max-length are counted per model, as eval counts them.
        let (short, shortOutput) = try retort(["compare", teacher, "--test", holes, "--max-length", "6", "--threads", "1",
                                               "--out", work.appendingPathComponent("report-short").path])
        XCTAssertEqual(short, 0, shortOutput)
        let (evalShort, evalShortOutput) = try retort(["eval", "--model", teacher, "--data", holes, "--max-length", "6", "--threads", "1"])
        XCTAssertEqual(evalShort, 0, evalShortOutput)
        let cut = try XCTUnwrap(evalShortOutput.split(separator: "\n").first { $0.contains("longer than --max-length 6") }, evalShortOutput)
        let counted = String(cut.dropFirst("retort: ".count).prefix { $0 != "(" })   // "N of 96 texts "
        XCTAssertTrue(shortOutput.contains("retort: tiny-bert: " + counted.replacingOccurrences(of: " texts ", with: " test texts ")), "\(counted) | \(shortOutput)")
        let empty = work.appendingPathComponent("empty.csv").path
        try "text,label\n,LABEL_0\n\" \",LABEL_1\n".write(toFile: empty, atomically: true, encoding: .utf8)
        let (refused, message) = try retort(["finetune", "--model", teacher, "--train", empty, "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(refused, 0, message)
        XCTAssertTrue(message.contains("empty.csv: no record has text (column 'text')"), message)
        // One record with text and no --dev: the held-out split takes it; the error says so.
        let lone = work.appendingPathComponent("lone.csv").path
        try "text,label\n,LABEL_0\nw1 w2,LABEL_1\n".write(toFile: lone, atomically: true, encoding: .utf8)
        let (alone, loneMessage) = try retort(["finetune", "--model", teacher, "--train", lone, "--out", work.appendingPathComponent("y").path])
        XCTAssertNotEqual(alone, 0, loneMessage)
        XCTAssertTrue(loneMessage.contains("lone.csv: 1 record with text, all held out by --dev-split 0.1; give more data, or a separate --dev file"),
                      loneMessage)
    }

    func testFinetuneWritesItsFolderAndResumesAFinishedRunAsFinished() throws {
        let out = work.appendingPathComponent("run").path
        let (status, output) = try finetune(["--epochs", "1", "--out", out])
        XCTAssertEqual(status, 0, output)
        for file in ["config.json", "model.safetensors", "vocab.txt", "log.jsonl", "metrics.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + file), "\(file): \(output)")
        }
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")
        XCTAssertEqual(checkpoints.count, 1, "one evaluation, one checkpoint: \(checkpoints)")
        XCTAssertFalse(output.contains("longer than"), "texts of 3–7 words fit in 16 tokens: \(output)")
        // Texts of 5–7 words (three in five) do not fit in 6 tokens: counted, in both sets.
        let (short, shortOutput) = try retort(["finetune", "--model", teacher, "--train", data, "--max-length", "6", "--max-steps", "1",
                                               "--threads", "1", "--out", work.appendingPathComponent("short").path])
        XCTAssertEqual(short, 0, shortOutput)
        let cutLine = shortOutput.split(separator: "\n").first { $0.contains("longer than") }.map(String.init) ?? shortOutput
        XCTAssertTrue(cutLine.hasPrefix("retort: ") && cutLine.contains(" of 86 training texts (") && cutLine.contains(" of 10 dev texts (")
                      && cutLine.contains(" are longer than --max-length 6 tokens and were cut there; a larger --max-length"), cutLine)
        let cutTraining = Int(cutLine.dropFirst("retort: ".count).prefix { $0 != " " }) ?? -1
        XCTAssertTrue((40...65).contains(cutTraining), "about three in five of 86 cut: \(cutLine)")
        let trained = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        let (again, againOutput) = try finetune(["--epochs", "1", "--out", out, "--resume"])
        XCTAssertEqual(again, 0, againOutput)
        XCTAssertTrue(againOutput.contains("resuming at step 11 of 11: that checkpoint is the end of the training, so nothing is left to train"),
                      againOutput)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")), trained, "the finished run's model, as it was")
        XCTAssertTrue(againOutput.contains("fine-tuned in ") && againOutput.contains(" (in all, with the run it resumed); best dev accuracy "),
                      againOutput)
        // Into a pipe, progress lines are whole lines: no carriage return rewrites them into one line of the log.
        XCTAssertFalse(output.contains("\r"), output)
        XCTAssertTrue(output.split(separator: "\n").contains { $0.hasPrefix("epoch 1/1  step 11/11  loss ") }, output)

        // A continuation with other settings would not be the run it claims to continue.
        let (changed, changedOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--lr", "1e-3", "--seed", "7"])
        XCTAssertNotEqual(changed, 0, changedOutput)
        XCTAssertTrue(changedOutput.contains("was trained with --lr 5e-05 (this run: 0.001), --seed 42 (this run: 7); resume with the same settings"),
                      changedOutput)

        // A step limit below the checkpoint's step would end the run at once, with no model saved by it.
        let (limited, limitedOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--max-steps", "5"])
        XCTAssertEqual(limited, 1, limitedOutput)
        XCTAssertTrue(limitedOutput.contains("Error: --resume: \(out)/checkpoints/") && limitedOutput.contains("-step-11 is at step 11, past this "
                                             + "run's --max-steps 5; give a --max-steps of at least 11, or none, to go on from it"), limitedOutput)

        let (none, noneOutput) = try finetune(["--epochs", "1", "--out", work.appendingPathComponent("empty").path, "--resume"])
        XCTAssertNotEqual(none, 0)
        XCTAssertTrue(noneOutput.contains("Error: --resume: \(work.path)/empty does not exist"), noneOutput)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("empty").path), "a refused resume makes no folder")
        try FileManager.default.createDirectory(at: work.appendingPathComponent("empty"), withIntermediateDirectories: false)
        let (still, stillOutput) = try finetune(["--epochs", "1", "--out", work.appendingPathComponent("empty").path, "--resume"])
        XCTAssertNotEqual(still, 0)
        XCTAssertTrue(stillOutput.contains("Error: --resume: no checkpoint in \(work.path)/empty/checkpoints"), stillOutput)

        // A new run in a folder that holds one would replace a trained model: refused, the model
        // left as it was, unless --overwrite says so.
        let model = try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors"))
        let (fresh, freshOutput) = try finetune(["--epochs", "1", "--lr", "1e-3", "--out", out])
        XCTAssertNotEqual(fresh, 0, freshOutput)
        XCTAssertTrue(freshOutput.contains("Error: --out \(out) already holds a run (model.safetensors); add --resume to continue it, "
                                           + "add --overwrite to start afresh there, or choose a new folder"), freshOutput)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")), model)
        let (both, bothOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--overwrite"])
        XCTAssertNotEqual(both, 0, bothOutput)
        XCTAssertTrue(bothOutput.contains("--resume continues the run in --out and --overwrite replaces it; give one of them"), bothOutput)
        let (metric, metricOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--metric", "mcc"])
        XCTAssertNotEqual(metric, 0, metricOutput)
        XCTAssertTrue(metricOutput.contains("was trained with --metric accuracy (this run: mcc)"), metricOutput)
        // Adapters the checkpoint has not (or of another rank, alpha, dropout or targets) are another model.
        let (lora, loraOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--lora-rank", "4", "--lr", "5e-5"])
        XCTAssertNotEqual(lora, 0, loraOutput)
        XCTAssertTrue(loraOutput.contains("was trained with no LoRA (this run: LoRA rank 4, alpha 8, dropout 0.1, targets query,value); "
                                          + "resume with the same --lora-rank settings"), loraOutput)
        // Other examples (here another dev split; other data or --max-length alike) are not the run it continues.
        let (other, otherOutput) = try finetune(["--epochs", "1", "--out", out, "--resume", "--dev-split", "0.3"])
        XCTAssertNotEqual(other, 0, otherOutput)
        XCTAssertTrue(otherOutput.contains("Error: --resume: \(out)/checkpoints/") && otherOutput.contains(
            " was trained on other data: its training or dev examples, their labels, the dev split or the --max-length differ"), otherOutput)
        let (itself, itselfOutput) = try finetune(["--epochs", "1", "--model", out, "--out", out + "/", "--overwrite"])
        XCTAssertNotEqual(itself, 0, itselfOutput)
        XCTAssertTrue(itselfOutput.contains("Error: --out \(out)/ is the --model this command reads; choose another folder"), itselfOutput)
        // --overwrite starts afresh: nothing of the earlier run (a LoRA adapter, a report, another
        // model's tokenizer file) is left to be taken for this one's; a file of the user's stays.
        for stale in ["adapter", "report.md", "vocab.json", "NOTES.txt"] { try Data().write(to: URL(fileURLWithPath: out + "/" + stale)) }
        let (replaced, replacedOutput) = try finetune(["--epochs", "1", "--lr", "1e-3", "--out", out, "--overwrite"])
        XCTAssertEqual(replaced, 0, replacedOutput)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors")), model, "--overwrite trained a new model")
        for stale in ["adapter", "report.md", "vocab.json"] { XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/" + stale), stale) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/NOTES.txt"))
    }

    func testLoRAWithoutALearningRateTrainsAtTheAdapterRate() throws {
        let out = work.appendingPathComponent("lora").path
        // A module named twice is one adapter (it stopped the run with a trap).
        let (status, output) = try finetune(["--lora-rank", "4", "--lora-targets", "query,value,query", "--max-steps", "3", "--warmup", "0", "--out", out])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("LoRA r=4 on query,value:"), output)
        let first = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
        let entry = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]
        XCTAssertEqual(entry?["lr"] as? Double, 1e-3, first)
        XCTAssertTrue(output.contains("trainable parameters of"), output)
    }

    /// The help's DistilBERT example and a single TinyBERT stage run without --epochs (the
    /// default 3,2 is for two stages; one stage takes 3).
    func testOneStageDistillationTakesTheDefaultEpochs() throws {
        for (name, extra) in [("distilbert", ["--method", "distilbert", "--temperature", "2"]), ("prediction", ["--stages", "prediction"])] {
            let out = work.appendingPathComponent(name).path
            let (status, output) = try retort(["distill", "--teacher", teacher, "--train", data, "--max-length", "16", "--batch-size", "8",
                                               "--threads", "1", "--max-steps", "1", "--no-report", "--out", out] + extra)
            XCTAssertEqual(status, 0, "\(name): \(output)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model.safetensors"), "\(name): \(output)")
            // DistilBERT aligns the last hidden states: its note names no TinyBERT layer map.
            XCTAssertEqual(output.contains("last hidden states aligned"), name == "distilbert", output)
            XCTAssertEqual(output.contains("layer map"), name != "distilbert", output)
        }
    }

    /// A learning rate so high that one update leaves the weights infinite: the evaluation after it
    /// stops the run, and neither the model nor a checkpoint of those weights is saved.
    func testADevLossThatIsNotANumberStopsTheRunAndSavesNothing() throws {
        let out = work.appendingPathComponent("diverged").path
        let (status, output) = try finetune(["--lr", "1e30", "--max-steps", "1", "--out", out])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("Error: after step 1 the dev loss is ") && output.contains("stopped without saving the model or a checkpoint"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/model.safetensors"), output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/checkpoints"), output)
        XCTAssertTrue(output.contains("then start again (in this folder with --overwrite)"), output)
        // Its log is a run's, with nothing to resume from: the rerun is told of --overwrite alone.
        let (again, againOutput) = try finetune(["--max-steps", "1", "--out", out])
        XCTAssertNotEqual(again, 0, againOutput)
        XCTAssertTrue(againOutput.contains("Error: --out \(out) already holds the log of a run that stopped before it saved anything (log.jsonl); "
                                           + "add --overwrite to start afresh there, or choose a new folder"),
                      againOutput)
    }

    /// Ctrl-C, and SIGTERM alike (kill, timeout, a scheduler): the run stops after its step with a
    /// checkpoint and exits 128 + the signal's number.
    func testCtrlCSavesACheckpointSaysHowToResumeAndResumeFinishes() throws {
        for signal in [SIGINT, SIGTERM] {
            let out = work.appendingPathComponent("interrupted-\(signal)").path
            let process = try RetortProcess(["finetune", "--model", teacher, "--train", data, "--max-length", "16", "--batch-size", "8",
                                             "--threads", "1", "--epochs", "200", "--save-minutes", "0", "--out", out])
            // Interrupt once training is under way (its first step is logged).
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, ((try? String(contentsOfFile: out + "/log.jsonl", encoding: .utf8)) ?? "").isEmpty { usleep(20_000) }
            kill(process.process.processIdentifier, signal)
            let (status, output) = process.finish()
            XCTAssertEqual(status, 128 + signal, output)
            XCTAssertTrue(output.contains("interrupted at step ") && output.contains("checkpoint saved in \(out)/checkpoints/"), output)
            XCTAssertTrue(output.contains("Continue with the same settings and --resume."), output)
            let (resumed, resumedOutput) = try finetune(["--epochs", "200", "--max-steps", "40", "--out", out, "--resume"])
            XCTAssertEqual(resumed, 0, resumedOutput)
            XCTAssertTrue(resumedOutput.contains("resuming at step "), resumedOutput)
        }
    }

    /// Values a newcomer tries that once trapped, or failed only after the work, or named no flag:
    /// each is one "Error:" line (ArgumentParser adds its usage lines to a flag's error) naming what
    /// to change, before anything is loaded, and nothing is written.
    func testBadValuesAndPlacesAreOneLineErrorsBeforeAnyWork() throws {
        let gguf = work.appendingPathComponent("model.gguf").path, stories = work.appendingPathComponent("stories.txt").path
        try Data("GGUF".utf8).write(to: URL(fileURLWithPath: gguf))
        try "Once upon a time\nthere was a robot\n".write(toFile: stories, atomically: true, encoding: .utf8)
        let fresh = work.appendingPathComponent("fresh").path
        let commas = work.appendingPathComponent("commas.csv").path, utf16 = work.appendingPathComponent("utf16.txt").path
        try "text,label\nw1 w2, w3,LABEL_0\n".write(toFile: commas, atomically: true, encoding: .utf8)
        try "w1 w2\n".write(toFile: utf16, atomically: true, encoding: .utf16)
        let onnx = work.appendingPathComponent("exported").path
        try FileManager.default.createDirectory(atPath: onnx, withIntermediateDirectories: false)
        for file in ["config.json", "model.onnx"] { try Data("{}".utf8).write(to: URL(fileURLWithPath: onnx + "/" + file)) }
        // Labels that would have trained wrong: a header read as a record, an empty label, two spellings of one.
        let header = work.appendingPathComponent("header.csv").path, emptyLabel = work.appendingPathComponent("empty-label.tsv").path
        let cased = work.appendingPathComponent("cased.tsv").path, latin1 = work.appendingPathComponent("latin1.txt").path
        try "label,sentence\n0,a b\n1,c d\n0,e f\n".write(toFile: header, atomically: true, encoding: .utf8)
        try "0\ta b\n\tc d\n1\te f\n".write(toFile: emptyLabel, atomically: true, encoding: .utf8)
        try "pos\ta b\nPos\tc d\nneg\te f\n".write(toFile: cased, atomically: true, encoding: .utf8)
        try Data([0x63, 0x61, 0x66, 0xE9, 0x0A]).write(to: URL(fileURLWithPath: latin1))
        let unfinished = work.appendingPathComponent("unfinished").path, noHeader = work.appendingPathComponent("no-header.tsv").path
        try FileManager.default.createDirectory(atPath: unfinished, withIntermediateDirectories: false)
        try "{\"step\": 1}\n".write(toFile: unfinished + "/log.jsonl", atomically: true, encoding: .utf8)
        try "1\ta stirring , funny and finally transporting re-imagining of a tale\n".write(toFile: noHeader, atomically: true, encoding: .utf8)
        let existing = work.appendingPathComponent("existing.jsonl").path
        try "{}\n".write(toFile: existing, atomically: true, encoding: .utf8)
        let emptyPrompt = work.appendingPathComponent("empty-prompt.jsonl").path
        try "{\"prompt\": \"Once\"}\n{\"prompt\": \"\"}\n".write(toFile: emptyPrompt, atomically: true, encoding: .utf8)
        let headedPrompts = work.appendingPathComponent("headed-prompts.csv").path   // read by index: its header would be a prompt
        try "prompt\nOnce upon a time\nThe capital of France is\n".write(toFile: headedPrompts, atomically: true, encoding: .utf8)
        let blankPrompt = work.appendingPathComponent("blank-prompt.jsonl").path   // only spaces: as empty
        try "{\"prompt\": \"Once\"}\n{\"prompt\": \"Then\"}\n{\"prompt\": \" \\t \"}\n".write(toFile: blankPrompt, atomically: true, encoding: .utf8)
        // A folder that holds a run (its model alone is enough), and a link to the teacher.
        let trained = work.appendingPathComponent("trained").path
        for folder in [trained, trained + "-generator"] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            try Data().write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
        }
        try FileManager.default.createSymbolicLink(atPath: work.path + "/tiny-bert-link", withDestinationPath: teacher)
        // A pretrained encoder (the teacher without its classifier): its head would be random.
        let base = work.appendingPathComponent("base").path
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: false)
        for file in ["config.json", "vocab.txt"] { try FileManager.default.copyItem(atPath: teacher + "/" + file, toPath: base + "/" + file) }
        let weights = try SafeTensorsFile(path: teacher + "/model.safetensors")
        try SafeTensorsWriter.write(try weights.entries.keys.sorted().filter { !$0.hasPrefix("classifier.") }.map {
            SafeTensorsWriter.Tensor(name: $0, shape: weights.entries[$0]!.shape, values: try weights.floats($0))
        }, to: base + "/model.safetensors")
        // Models of the wrong kind for the command: a recurrent student, a language model, a tokenizer alone, a weights file.
        let recurrent = work.appendingPathComponent("recurrent").path, llama = golden.appendingPathComponent("tiny-llama").path
        try FileManager.default.createDirectory(atPath: recurrent, withIntermediateDirectories: false)
        try "{\"model_type\": \"retort-recurrent\"}".write(toFile: recurrent + "/config.json", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: recurrent + "/model.safetensors", contents: Data())   // its kind is refused before its weights are read
        let weightless = work.appendingPathComponent("weightless").path   // a config without weights
        try FileManager.default.createDirectory(atPath: weightless, withIntermediateDirectories: false)
        try FileManager.default.copyItem(atPath: teacher + "/config.json", toPath: weightless + "/config.json")
        try FileManager.default.copyItem(atPath: teacher + "/vocab.txt", toPath: weightless + "/vocab.txt")
        _ = FileManager.default.createFile(atPath: weightless + "/pytorch_model.bin", contents: Data())
        // A decoder fine-tuned as a classifier (its config says so; generate reads no further).
        let llamaClassifier = work.appendingPathComponent("llama-classifier").path
        try FileManager.default.copyItem(atPath: llama, toPath: llamaClassifier)
        var classifierConfig = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: llama + "/config.json"))) as? [String: Any])
        classifierConfig["architectures"] = ["LlamaForSequenceClassification"]
        classifierConfig["id2label"] = ["0": "neg", "1": "pos"]
        try JSONSerialization.data(withJSONObject: classifierConfig).write(to: URL(fileURLWithPath: llamaClassifier + "/config.json"))
        // A vocab.txt longer than the embedding table (its last ids would read rows of zeros).
        let longVocabulary = work.appendingPathComponent("long-vocabulary").path
        try FileManager.default.copyItem(atPath: teacher, toPath: longVocabulary)
        try (try String(contentsOfFile: teacher + "/vocab.txt", encoding: .utf8) + "extra1\nextra2\n")
            .write(toFile: longVocabulary + "/vocab.txt", atomically: true, encoding: .utf8)
        // A folder whose config.json is broken: compare refuses it before measuring the one before it.
        let broken = work.appendingPathComponent("broken").path
        try FileManager.default.copyItem(atPath: teacher, toPath: broken)
        try "not json".write(toFile: broken + "/config.json", atomically: true, encoding: .utf8)
        // A classifier of other labels than the test data's: compare refuses it before measuring any folder.
        let otherLabels = work.appendingPathComponent("other-labels").path
        try FileManager.default.copyItem(atPath: teacher, toPath: otherLabels)
        var otherConfig = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: teacher + "/config.json"))) as? [String: Any])
        otherConfig["id2label"] = ["0": "x", "1": "y", "2": "z"]
        otherConfig["label2id"] = ["x": 0, "y": 1, "z": 2]
        try JSONSerialization.data(withJSONObject: otherConfig).write(to: URL(fileURLWithPath: otherLabels + "/config.json"))
        let tokenizerOnly = work.appendingPathComponent("tokenizer-only").path, swapped = work.appendingPathComponent("swapped.csv").path
        try FileManager.default.createDirectory(atPath: tokenizerOnly, withIntermediateDirectories: false)
        try FileManager.default.copyItem(atPath: teacher + "/vocab.txt", toPath: tokenizerOnly + "/vocab.txt")
        try "w1 w2 w3 w4,LABEL_0\nw5 w6 w7,LABEL_1\n".write(toFile: swapped, atomically: true, encoding: .utf8)
        let headless = "\(base): a pretrained encoder without a classifier head (model.safetensors has no 'classifier.weight'); "
            + "fine-tune it on labelled texts first (retort finetune)"
        let cases: [([String], String)] = [
            (["predict", "--model", base, "hi"], headless),
            (["eval", "--model", base, "--data", data], headless),
            (["compare", teacher, base, "--out", fresh], headless),
            (["serve", "--model", base], headless),
            (["quantize", "--model", base, "--out", fresh], headless),
            (["export", "--model", base, "--out", fresh], headless),
            (["distill", "--teacher", base, "--train", data, "--out", fresh], headless),
            (["predict", "--model", teacher, "--batch-size", "0", "hi"], "--batch-size must be at least 1"),
            (["finetune", "--model", teacher, "--train", data, "--batch-size", "9223372036854775807", "--out", fresh],
             "--batch-size 9223372036854775807 is more than Retort takes (at most 1048576)"),
            (["finetune", "--model", teacher, "--train", data, "--epochs", "4000000000000000000", "--out", fresh],
             "--epochs 4000000000000000000 is more than Retort takes"),
            (["generate", "--model", gguf, "--prompt", "hi", "--max-new-tokens", "9223372036854775807"],
             "--max-new-tokens 9223372036854775807 is more than Retort takes"),
            (["finetune", "--model", teacher, "--train", data, "--lora-rank", "4", "--lora-targets", ",", "--out", fresh],
             "--lora-targets names no module"),
            (["distill", "--teacher", teacher, "--train", data, "--test", work.path + "/nope.tsv", "--max-length", "16", "--out", fresh],
             "nope.tsv: no such file"),
            (["compare", teacher, broken, "--out", fresh], "\(broken)/config.json: not valid JSON"),
            (["compare", teacher, otherLabels, "--test", data, "--out", fresh], "\(otherLabels): \(data): line 2: label 'LABEL_"),
            (["eval", "--model", teacher, "--data", data, "--text-column", "0", "--label-column", "0"], "--label-column 0 is --text-column too"),
            (["predict", "--model", teacher, "--input", data, "--text-column", "text", "--text-pair-column", "text"],
             "--text-pair-column text is the text column too"),
            (["predict", "--model", longVocabulary, "hi"], "\(longVocabulary)/vocab.txt: "),
            (["finetune", "--model", recurrent, "--train", data, "--out", fresh], "--model \(recurrent) is a recurrent student; retort finetune takes"),
            (["finetune", "--model", teacher + "/model.safetensors", "--train", data, "--out", fresh], "model.safetensors: a file, not a model folder"),
            (["finetune", "--model", onnx, "--train", data, "--out", fresh], "--model \(onnx): an ONNX export"),
            (["finetune", "--model", teacher, "--train", data, "--lora-rank", "65", "--max-length", "16", "--out", fresh],
             "--lora-rank 65 is above encoder.layer.0.attention.self.query's 64×64 (an adapter's update has rank at most 64)"),
            (["finetune", "--model", gguf, "--task", "causal-lm", "--train", stories, "--label-column", "0", "--out", fresh],
             "--label-column is a classifier's; --task causal-lm reads only the text"),
            (["distill", "--teacher", recurrent, "--student", "bilstm", "--train", data, "--out", fresh], "is a recurrent student; a teacher is"),
            (["augment", "--generator", llama, "--teacher", recurrent, "--train", data, "--out", fresh + ".jsonl"], "is a recurrent student; a teacher is"),
            (["distill", "--teacher", teacher, "--train", data, "--student-init", llama, "--out", fresh], "--student-init \(llama) is a decoder"),
            (["distill", "--teacher", teacher, "--train", data, "--pooling", "mean", "--out", fresh], "are for recurrent students"),
            (["distill", "--teacher", teacher, "--train", data, "--alpha", "0.9", "--out", fresh], "--alpha, --beta and --gamma are for --method distilbert"),
            (["distill", "--teacher", teacher, "--train", data, "--method", "distilbert", "--hard-label-weight", "1", "--out", fresh],
             "--stages and --hard-label-weight are TinyBERT's"),
            (["distill", "--teacher", teacher, "--train", data, "--method", "distilbert", "--layer-map", "0:1", "--out", fresh],
             "--layer-map is TinyBERT's; --method distilbert aligns the last hidden states only"),
            (["generate", "--model", tokenizerOnly, "--prompt", "hi"], "a tokenizer alone, without a model (no config.json)"),
            (["quantize", "--model", weightless, "--out", fresh], "\(weightless): config.json but no weights (model.safetensors); its pytorch_model.bin is not read here"),
            (["finetune", "--model", weightless, "--train", data, "--out", fresh], "\(weightless): config.json but no weights (model.safetensors)"),
            (["eval", "--model", teacher, "--data", swapped, "--text-column", "1", "--label-column", "0"],
             "it reads like a text: are --text-column and --label-column the wrong way round?"),
            // Nothing made before is replaced without --overwrite (a run folder, a transfer set, generations).
            (["distill", "--teacher", teacher, "--train", data, "--out", fresh + "/../" + (teacher as NSString).lastPathComponent + "-link"],
             "--out \(fresh)/../tiny-bert-link is the --teacher this command reads; choose another folder"),
            (["distill", "--teacher", teacher, "--train", data, "--out", trained],
             "--out \(trained) already holds a run (model.safetensors); add --overwrite to start afresh there, or choose a new folder"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--out", existing],
             "--out \(existing) exists; add --overwrite to replace it, or choose a new file"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--generator-epochs", "1", "--generator-out", teacher,
              "--out", "t.jsonl"], "--generator-out \(teacher) is the --teacher this command reads"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--generator-epochs", "1", "--out", trained + ".jsonl"],
             "--generator-out (by default) \(trained)-generator already holds a run (model.safetensors); add --overwrite to start afresh there"),
            (["generate", "--model", gguf, "--input", stories, "--output", existing], "--output \(existing) exists; add --overwrite"),
            (["generate", "--model", gguf, "--input", stories, "--output", work.path], "--output \(work.path) is a folder; give the path of a file"),
            (["generate", "--model", gguf, "--prompt", "hi", "--overwrite"], "--overwrite goes with --output"),
            (["generate", "--model", gguf, "--prompt", "hi", "--batch-size", "4"], "--batch-size goes with --input (one --prompt runs alone)"),
            // Before the model loads (the fake GGUF would fail to).
            (["generate", "--model", gguf, "--input", emptyPrompt], "\(emptyPrompt): line 2: the prompt is empty: give some text, or remove the record"),
            (["generate", "--model", gguf, "--input", headedPrompts, "--prompt-column", "0"],
             "\(headedPrompts): line 1 looks like a header ('prompt'), not a prompt: name the column instead of its index 0 (--prompt-column prompt)"),
            (["generate", "--model", gguf, "--input", blankPrompt], "\(blankPrompt): line 3: the prompt is empty: give some text, or remove the record"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--generator-out", fresh, "--out", "t.jsonl"],
             "--generator-out goes with --generator-epochs"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--resume", "--out", "t.jsonl"],
             "--resume goes with --generator-epochs"),
            (["finetune", "--model", gguf, "--task", "causal-lm", "--train", stories, "--metric", "mcc", "--out", fresh],
             "--metric is a classifier's; --task causal-lm keeps the model with the lowest dev loss"),
            (["predict", "--model", teacher, "--max-length", "1", "hi"], "--max-length must be at least 3"),
            // A negative number after an option is its value (ArgumentParser alone took -1 for a flag).
            (["predict", "--model", teacher, "--max-length", "-1", "hi"], "--max-length must be at least 3"),
            (["generate", "--model", gguf, "--temperature", "-0.5", "--prompt", "hi"], "--temperature must be 0 (greedy) or a positive number"),
            // A misspelt required option is named as such, not reported as the required one missing.
            (["predict", "--modle", teacher, "hi"], "unknown option --modle (did you mean --model?)"),
            // Another command's name for the same thing.
            (["eval", "--model", teacher, "--test", data], "unknown option --test (did you mean --data?)"),
            // So is a misspelt command (ArgumentParser said "2 unexpected arguments").
            (["predcit", "--model", teacher, "hi"], "unknown command predcit (did you mean predict?); the commands are devices, "),
            (["help", "predcit"], "unknown command predcit (did you mean predict?)"),
            (["--versoin"], "unknown option --versoin (did you mean --version?); retort itself takes --help and --version"),
            // A text that starts with - (ArgumentParser read the h of "this" as -h and printed the help, status 0).
            (["predict", "--model", teacher, "good", "-1 for this film"], "\"-1 for this film\" starts with - like a flag: put texts"),
            // Not a number, or no number at all.
            (["finetune", "--model", teacher, "--train", data, "--lr", "nan", "--out", fresh], "--lr must be a positive number"),
            (["generate", "--model", gguf, "--temperature", "inf", "--prompt", "hi"], "--temperature must be 0 (greedy) or a positive number"),
            (["finetune", "--model", teacher, "--train", data, "--lora-rank", "4", "--lora-alpha", "-1", "--out", fresh],
             "--lora-alpha must be a positive number"),
            (["finetune", "--model", teacher, "--train", data, "--lora-targets", "query", "--out", fresh], "need --lora-rank"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--near-duplicate", "-1", "--out", "t.jsonl"],
             "--near-duplicate must be positive"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--min-characters", "500", "--max-characters", "10",
              "--out", "t.jsonl"], "--min-characters 500 is above --max-characters 10"),
            // Files that would have been read wrong: a text cut at an unquoted comma, UTF-16.
            (["predict", "--model", teacher, "--input", commas], "line 2 has 3 fields, the header 2 (put a text that holds commas in double quotes)"),
            (["predict", "--model", teacher, "--input", utf16], "not UTF-8 text (UTF-16, or NUL bytes)"),
            (["predict", "--model", unfinished, "hi"], "\(unfinished): a run that has not saved a model yet (stopped before its first evaluation); run it again"),
            (["finetune", "--model", teacher, "--train", noHeader, "--out", fresh], "no column named 'text' (the header has: 1, a stirring"),
            (["finetune", "--model", teacher, "--train", noHeader, "--out", fresh], "; no header? then give the columns by index (0 for the first)"),
            (["predict", "--model", teacher, "--input", latin1], "\(latin1): line 1 is not UTF-8 (Latin-1 or Windows-1252?)"),
            (["finetune", "--model", teacher, "--train", header, "--text-column", "1", "--label-column", "0", "--out", fresh],
             "header.csv: line 1 looks like a header (label 'label', found nowhere else; text 'sentence'): name the columns"),
            (["finetune", "--model", teacher, "--train", emptyLabel, "--text-column", "1", "--label-column", "0", "--out", fresh],
             "empty-label.tsv: line 2 has an empty label"),
            (["finetune", "--model", teacher, "--train", cased, "--text-column", "1", "--label-column", "0", "--out", fresh],
             "cased.tsv: labels 'Pos' and 'pos' differ only in case"),
            // An ONNX export is for ONNX Runtime; compare checks every folder before it measures the first.
            (["predict", "--model", onnx, "hi"], "\(onnx): an ONNX export, for ONNX Runtime"),
            (["compare", teacher, onnx, "--out", fresh], "\(onnx): an ONNX export, for ONNX Runtime"),
            (["compare", teacher, llama, "--out", fresh], "\(llama): not a classifier (config.json has no id2label)"),
            (["generate", "--model", llamaClassifier, "--prompt", "hi"],
             "--model \(llamaClassifier): a classifier (LlamaForSequenceClassification), not a language model; label texts with it: retort predict"),
            (["export", "--model", onnx, "--out", fresh], "--model \(onnx): an ONNX export, for ONNX Runtime"),
            (["quantize", "--model", work.path + "/nope", "--out", fresh], "--model \(work.path)/nope: no such model folder"),
            (["export", "--model", gguf, "--out", fresh], "a GGUF language model, not a classifier"),
            (["generate", "--model", gguf, "--system", "be brief", "--prompt", "hi"], "--system goes with --chat"),
            (["finetune", "--model", "all-MiniLM-L6-v2", "--train", data, "--out", fresh], "--model all-MiniLM-L6-v2: no such model folder or file"),
            (["distill", "--teacher", "runs/nope", "--train", data, "--out", fresh], "--teacher runs/nope: no such model folder"),
            (["eval", "--model", teacher, "--data", data, "--max-length", "2"], "--max-length must be at least 3"),
            (["serve", "--model", teacher, "--max-length", "1"], "--max-length must be at least 3"),
            (["serve", "--model", teacher, "--max-batch", "1000000"], "--max-batch 1000000: 1000000 texts of "),
            (["serve", "--model", teacher, "--max-batch", "1000000000"], "--max-batch 1000000000 is more than Retort takes"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--count", "0", "--out", "t.jsonl"],
             "--count must be at least 1"),
            (["predict", "--model", teacher, "--threads", "0", "hi"], "--threads must be at least 1"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--max-length", "1", "--out", "t.jsonl"],
             "--max-length must be at least 3"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--out", "/proc/retort-test.jsonl"],
             "--out /proc/retort-test.jsonl: cannot write in /proc"),
            (["finetune", "--model", teacher, "--train", data, "--warmup", "2", "--out", fresh], "--warmup must be in [0, 1)"),
            (["finetune", "--model", teacher, "--train", data, "--out", "/proc/retort-test"], "--out /proc/retort-test: cannot write in /proc"),
            (["finetune", "--model", teacher, "--train", data, "--resume", "--out", fresh], "--resume: \(fresh) does not exist"),
            (["finetune", "--model", teacher, "--train", stories, "--out", fresh], "lines of plain text carry no labels"),
            (["distill", "--teacher", teacher, "--train", data, "--student-init", "od", "--out", fresh],
             "--student-init must be odd, even, uniform or a model folder"),
            (["distill", "--teacher", teacher, "--train", data, "--epochs", "3,2,1", "--out", fresh], "--epochs: 3 numbers for 2 stages"),
            (["predict", "--model", gguf, "hi"], "a GGUF language model, not a classifier"),
            (["predict", "--model", teacher, "--input", data, "--label-column", "label"], "--label-column: predict reads no labels (retort eval"),
            (["predict", "--model", teacher, "hi", "--text-column", "1"], "--text-column picks a column of --input's file"),
            (["predict", "--model", teacher, "--input", work.path], "a folder, not a data file"),
            (["predict", "--model", teacher, "--input", work.appendingPathComponent("nope.txt").path], "nope.txt: no such file"),
            (["compare", teacher, "--out", "/proc/retort-test"], "--out /proc/retort-test: cannot write in /proc"),
            (["augment", "--generator", gguf, "--teacher", teacher, "--train", data, "--out", work.path + "/new/t.jsonl"],
             "--out \(work.path)/new/t.jsonl: the folder \(work.path)/new does not exist"),
        ]
        for (arguments, message) in cases {
            let (status, output) = try retort(arguments + (["quantize", "export"].contains(arguments[0]) ? [] : ["--device", "cpu"]))   // (those two run on the CPU)
            XCTAssertNotEqual(status, 0, "\(arguments): \(output)")
            XCTAssertEqual(output.split(separator: "\n").filter { $0.hasPrefix("Error: ") }.count, 1, "\(arguments): \(output)")
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
            XCTAssertFalse(output.contains("crashed") || output.contains("Fatal error"), "\(arguments): \(output)")
            XCTAssertFalse(output.contains("measuring"), "refused before any model is measured: \(arguments): \(output)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh), "no run folder is left by a refused run")
    }

    /// A model path that is not there: status 1 in every command, one line naming the flag, before
    /// any work (no device line); a value out of range: status 64, with the usage.
    func testEveryCommandGivesTheSameStatusForTheSameMistake() throws {
        let nope = work.appendingPathComponent("nope").path, out = work.appendingPathComponent("out").path
        for (arguments, flag) in [
            (["predict", "--model", nope, "hi"], "--model"), (["eval", "--model", nope, "--data", data], "--model"),
            (["serve", "--model", nope], "--model"), (["finetune", "--model", nope, "--train", data, "--out", out], "--model"),
            (["distill", "--teacher", nope, "--train", data, "--out", out], "--teacher"),
            (["augment", "--generator", nope, "--teacher", teacher, "--train", data, "--out", out + ".jsonl"], "--generator"),
            (["augment", "--generator", golden.appendingPathComponent("tiny-llama").path, "--teacher", nope, "--train", data, "--out", out + ".jsonl"],
             "--teacher"),
            (["generate", "--model", nope, "--prompt", "hi"], "--model"), (["quantize", "--model", nope, "--out", out], "--model"),
            (["export", "--model", nope, "--out", out], "--model"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertEqual(status, 1, "\(arguments): \(output)")
            let lines = output.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(arguments): \(output)")
            XCTAssertTrue(lines.first?.hasPrefix("Error: \(flag) \(nope): no such model folder") == true, "\(arguments): \(output)")
        }
        // A data file that is not there, or a folder: the same, naming its flag, before the device line.
        let missing = work.appendingPathComponent("nope.tsv").path, folder = work.path
        for (arguments, expected) in [
            (["finetune", "--model", teacher, "--train", missing, "--out", out], "--train \(missing): no such file"),
            (["finetune", "--model", teacher, "--train", data, "--dev", folder, "--out", out], "--dev \(folder): a folder, not a data file"),
            (["distill", "--teacher", teacher, "--train", missing, "--out", out], "--train \(missing): no such file"),
            (["distill", "--teacher", teacher, "--train", data, "--student", "bilstm", "--test", missing, "--out", out], "--test \(missing): no such file"),
            (["distill", "--teacher", teacher, "--transfer", folder, "--student", "bilstm", "--out", out],
             "--transfer \(folder): a folder, not a data file (retort augment's .jsonl)"),
            (["eval", "--model", teacher, "--data", missing], "--data \(missing): no such file"),
            (["eval", "--model", teacher, "--data", folder], "--data \(folder): a folder, not a data file (a labelled .csv, .tsv or .jsonl)"),
            (["predict", "--model", teacher, "--input", missing], "--input \(missing): no such file"),
            (["compare", teacher, "--test", missing, "--out", out], "--test \(missing): no such file"),
            (["augment", "--generator", golden.appendingPathComponent("tiny-llama").path, "--teacher", teacher, "--train", missing, "--out", out + ".jsonl"],
             "--train \(missing): no such file"),
            (["generate", "--model", golden.appendingPathComponent("tiny-llama").path, "--input", missing], "--input \(missing): no such file"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertEqual(status, 1, "\(arguments): \(output)")
            XCTAssertEqual(output.split(separator: "\n").count, 1, "\(arguments): \(output)")
            XCTAssertTrue(output.hasPrefix("Error: \(expected)"), "\(arguments): \(output)")
        }
        for (arguments, message) in [
            (["predict", "--model", teacher, "--max-length", "1", "hi"], "--max-length must be at least 3"),
            (["finetune", "--model", teacher, "--train", data, "--epochs", "0", "--out", out], "--epochs"),
            (["generate", "--model", nope, "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
            // Settings that would train something else than asked, or nothing.
            (["finetune", "--model", teacher, "--train", data, "--dev", data, "--dev-split", "0.5", "--out", out],
             "--dev-split holds out part of --train when there is no --dev; give one of them"),
            (["distill", "--teacher", teacher, "--train", data, "--stages", "prediction,intermediate", "--out", out],
             "--stages prediction,intermediate: the stages run in TinyBERT's order, each once"),
            (["distill", "--teacher", teacher, "--train", data, "--method", "distilbert", "--alpha", "0", "--beta", "0", "--gamma", "0", "--out", out],
             "--alpha, --beta and --gamma are all 0: the student would learn nothing"),
            (["distill", "--teacher", teacher, "--train", data, "--layer-map", "garbage", "--out", out],
             "--layer-map: 'garbage' is not student:teacher"),
        ] {
            let (status, output) = try retort(arguments)
            XCTAssertEqual(status, 64, "\(arguments): \(output)")
            XCTAssertTrue(output.contains("Usage: retort \(arguments[0])"), "\(arguments): \(output)")
            XCTAssertTrue(output.contains(message), "\(arguments): \(output)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// A batch larger than the data is planned and allocated for the data's examples: 96 texts
    /// (86 to train on, 10 held out) at --batch-size 1000000 train (the plan of a million rows was
    /// refused), planned as at --batch-size 86, the larger of the two sets.
    func testABatchLargerThanTheDataIsPlannedForTheData() throws {
        func plan(_ batch: String, _ name: String) throws -> String {
            let (status, output) = try retort(["finetune", "--model", teacher, "--train", data, "--max-length", "16", "--batch-size", batch,
                                               "--max-steps", "1", "--threads", "1", "--out", work.appendingPathComponent(name).path])
            XCTAssertEqual(status, 0, output)
            let line = try XCTUnwrap(output.split(separator: "\n").first { $0.hasPrefix("retort: memory plan on cpu: ") }, output)
            return String(line.prefix { $0 != "(" })   // the sizes, not what is available
        }
        let planned = try plan("86", "exact")
        XCTAssertEqual(try plan("1000000", "huge"), planned)
        XCTAssertNotEqual(try plan("85", "one-less"), planned, "a batch within the data sizes the plan")
    }

    /// --eval-every N evaluates within an epoch too: each line names its step (11 steps of 8 texts;
    /// evaluations at steps 5, 10 and the epoch's end), and log.jsonl has them all.
    func testEvaluationsEveryNStepsSayTheirStep() throws {
        let out = work.appendingPathComponent("every").path
        let (status, output) = try finetune(["--epochs", "1", "--eval-every", "5", "--out", out])
        XCTAssertEqual(status, 0, output)
        let lines = output.split(separator: "\n").filter { $0.contains(": dev accuracy ") }
        XCTAssertEqual(lines.map { String($0.prefix { $0 != ":" }) }, ["epoch 1, step 5", "epoch 1, step 10", "epoch 1, step 11"], output)
        let log = try String(contentsOfFile: out + "/log.jsonl", encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").filter { $0.contains("\"dev\"") }.count, 3, log)
    }

    func testAMaxLengthBeyondTheModelIsOneLineNamingTheFlag() throws {
        let (status, output) = try finetune(["--max-length", "600", "--out", work.appendingPathComponent("x").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("Error: --max-length 600 exceeds the model's max_position_embeddings"), output)
        XCTAssertEqual(output.split(separator: "\n").filter { !$0.hasPrefix("retort: ") }.count, 1, output)
    }
}
