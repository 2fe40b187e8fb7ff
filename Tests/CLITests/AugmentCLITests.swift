// `retort augment` end to end with the real SmolLM2-135M generator (skipped without it) and the
// tiny golden teacher: the transfer set's rows (originals with their own labels, generated texts
// with the teacher's, logits, origin), the cleaning summary, `retort distill --transfer` on it,
// and bad input refused in one line with nothing written.
import Foundation
import XCTest

final class AugmentCLITests: TinyRunTestCase {
    func testATransferSetIsWrittenCleanedLabelledAndDistilledFrom() throws {
        let out = work.appendingPathComponent("transfer.jsonl").path
        let (status, output) = try retort(["augment", "--generator", try smolLM2(), "--teacher", teacher, "--train", data, "--count", "12",
                                           "--batch-size", "6", "--max-new-tokens", "12", "--min-characters", "4", "--max-length", "12",
                                           "--out", out, "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("generated 12/12 texts") && output.contains("of 12 generated texts"), output)
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let originals = rows.filter { $0["origin"] as? String == "original" }, generated = rows.filter { $0["origin"] as? String == "generated" }
        XCTAssertEqual(originals.count, 96, "every training text")
        XCTAssertTrue((1...12).contains(generated.count), "\(generated.count) kept")
        XCTAssertTrue(output.contains("96 original and \(generated.count) generated texts (of 12;"), output)
        for row in rows {
            let logits = try XCTUnwrap(row["logits"] as? [Double])
            XCTAssertEqual(logits.count, 3)
            let best = "LABEL_\(logits.indices.max { logits[$0] < logits[$1] }!)"
            XCTAssertEqual(row["teacher_label"] as? String, best)
            if row["origin"] as? String == "generated" { XCTAssertEqual(row["label"] as? String, best) }
        }
        let data = try String(contentsOfFile: self.data, encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(originals.map { $0["label"] as? String }, data.map { String($0.split(separator: ",").last!) }, "originals keep their labels")

        // distill --transfer: a BiLSTM on the stored logits; eval reads the transfer set as labelled data.
        let student = work.appendingPathComponent("bilstm").path
        let (status2, output2) = try retort(["distill", "--teacher", teacher, "--transfer", out, "--student", "bilstm", "--hidden", "8",
                                             "--head-hidden", "4", "--epochs", "1", "--max-length", "12", "--batch-size", "8", "--no-report",
                                             "--out", student, "--threads", "1"])
        XCTAssertEqual(status2, 0, output2)
        XCTAssertTrue(output2.contains("(\(generated.count) generated); the teacher's stored logits"), output2)
        XCTAssertFalse(output2.contains("teacher logits for"), "the teacher does not run again")
        XCTAssertFalse(output2.contains("warning"), "the stored logits are this teacher's: \(output2)")
        let (status3, output3) = try retort(["eval", "--model", student, "--data", out, "--threads", "1"])
        XCTAssertEqual(status3, 0, output3)

        // Logits another teacher made (here: twice these, so every argmax still agrees) are
        // trained on, with a warning that names the set and a line.
        let other = work.appendingPathComponent("other-teacher.jsonl").path
        try rows.map { row -> String in
            var row = row
            row["logits"] = (row["logits"] as! [Double]).map { $0 * 2 }
            return String(decoding: try JSONSerialization.data(withJSONObject: row), as: UTF8.self)
        }.joined(separator: "\n").write(toFile: other, atomically: true, encoding: .utf8)
        let (status4, output4) = try retort(["distill", "--teacher", teacher, "--transfer", other, "--student", "bilstm", "--hidden", "8",
                                             "--head-hidden", "4", "--epochs", "1", "--max-length", "12", "--batch-size", "8", "--no-report",
                                             "--out", work.appendingPathComponent("bilstm-other").path, "--threads", "1"])
        XCTAssertEqual(status4, 0, output4)
        XCTAssertTrue(output4.contains("retort: warning: \(other): line ") && output4.contains("the stored logits differ from --teacher's by"), output4)
    }

    /// Ctrl-C during generation: the texts finished by then are cleaned, labelled and written
    /// (the unfinished ones dropped), and the exit status is 130.
    func testCtrlCWritesTheTextsFinishedByThen() throws {
        let out = work.appendingPathComponent("interrupted.jsonl").path
        let process = try RetortProcess(["augment", "--generator", try smolLM2(), "--teacher", teacher, "--train", data, "--count", "400",
                                         "--batch-size", "4", "--max-new-tokens", "12", "--max-length", "12", "--out", out, "--threads", "1",
                                         "--device", "cpu"])
        let deadline = Date().addingTimeInterval(120)   // interrupt once a tenth of the texts are generated
        while Date() < deadline, !((try? String(contentsOf: process.output, encoding: .utf8)) ?? "").contains("generated 40/400") { usleep(50_000) }
        kill(process.process.processIdentifier, SIGINT)
        let (status, output) = process.finish()
        XCTAssertEqual(status, 130, output)
        let stopped = try XCTUnwrap(output.components(separatedBy: "stopped (Ctrl-C or SIGTERM) after ").dropFirst().first, output)
        let finished = try XCTUnwrap(Int(stopped.prefix { $0.isNumber }), output)
        XCTAssertTrue((40..<400).contains(finished), output)
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(output.contains("96 original and \(rows.count - 96) generated texts (of \(finished);"), output)
    }

    func testATxtOfUnlabelledLinesIsLabelledByTheTeacher() throws {
        let lines = work.appendingPathComponent("lines.txt"), out = work.appendingPathComponent("lines.jsonl").path
        try "w1 w2 w3 w4\na b c d\nw5 w6 e f\n".write(to: lines, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["augment", "--generator", try smolLM2(), "--teacher", teacher, "--train", lines.path, "--count", "2",
                                           "--max-new-tokens", "4", "--max-length", "12", "--out", out, "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        let originals = rows.filter { $0["origin"] as? String == "original" }
        XCTAssertEqual(originals.map { $0["text"] as? String }, ["w1 w2 w3 w4", "a b c d", "w5 w6 e f"])
        for row in originals { XCTAssertEqual(row["label"] as? String, row["teacher_label"] as? String) }
    }

    func testBadInputIsRefusedInOneLineWithNothingWritten() throws {
        let out = work.appendingPathComponent("bad.jsonl").path
        let cases: [([String], String)] = [
            (["--generator", teacher], "is not a decoder Retort implements"),
            (["--generator", try smolLM2(), "--count", "0"], "--count must be at least 1"),
            (["--generator", try smolLM2(), "--out", work.appendingPathComponent("x.csv").path], "--out: a .jsonl file"),
        ]
        for (flags, message) in cases {
            var arguments = ["augment", "--teacher", teacher, "--train", data, "--max-length", "12", "--threads", "1"] + flags
            if !flags.contains("--out") { arguments += ["--out", out] }
            let (status, output) = try retort(arguments)
            XCTAssertNotEqual(status, 0, output)
            XCTAssertTrue(output.contains(message), output)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
        // A transfer set whose logits do not fit the teacher.
        try #"{"text":"a b c","label":"LABEL_0","logits":[1,2],"origin":"original"}"#.write(toFile: out, atomically: true, encoding: .utf8)
        let (status, output) = try retort(["distill", "--teacher", teacher, "--transfer", out, "--student", "bilstm", "--max-length", "12",
                                           "--out", work.appendingPathComponent("s").path, "--threads", "1"])
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("bad.jsonl: line 1: \"logits\" must hold 3 numbers"), output)
        // A --dev beside a transfer set whose records have no text is refused, naming the file.
        try #"{"text":"a b c","label":"LABEL_0","logits":[1,2,3],"origin":"original"}"#.write(toFile: out, atomically: true, encoding: .utf8)
        let blankDev = work.appendingPathComponent("blank-dev.csv").path
        try "text,label\n,LABEL_0\n\" \",LABEL_1\n".write(toFile: blankDev, atomically: true, encoding: .utf8)
        let (devStatus, devOutput) = try retort(["distill", "--teacher", teacher, "--transfer", out, "--dev", blankDev, "--student", "bilstm",
                                                 "--max-length", "12", "--out", work.appendingPathComponent("s").path, "--threads", "1"])
        XCTAssertNotEqual(devStatus, 0, devOutput)
        XCTAssertTrue(devOutput.contains("blank-dev.csv: no record has text (column 'text')"), devOutput)
    }
}
