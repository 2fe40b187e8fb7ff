// Reading a transfer set (`retort augment`'s JSONL) for `distill --transfer`: rows without text are
// skipped and named like a data file's; a row the run could not train on stops it, naming its line.
import Foundation
import Train
import XCTest

final class TransferSetTests: XCTestCase {
    let names = ["neg", "pos"]

    func write(_ lines: [String]) throws -> String {
        let path = NSTemporaryDirectory() + "transfer-\(UUID().uuidString).jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func row(_ text: String, _ label: String = "pos", logits: String = "[-1.5,2]", origin: String = "generated") -> String {
        "{\"text\":\(String(decoding: try! JSONSerialization.data(withJSONObject: text, options: .fragmentsAllowed), as: UTF8.self)),"
            + "\"label\":\"\(label)\",\"logits\":\(logits),\"origin\":\"\(origin)\"}"
    }

    func testRowsWithoutTextAreSkippedAndNamed() throws {
        let path = try write([row("a fine film", origin: "original"), row(""), row("   "), row("a dull one", "neg", logits: "[3,-2.25]", origin: "original")])
        let set = try TransferSet(path: path, names: names)
        XCTAssertEqual(set.examples.map(\.text), ["a fine film", "a dull one"])
        XCTAssertEqual(set.examples.map(\.line), [1, 4])
        XCTAssertEqual(set.labels, [1, 0])
        XCTAssertEqual(set.logits, [[-1.5, 2], [3, -2.25]])
        XCTAssertEqual(set.original, [true, true])
        XCTAssertEqual(set.skipped, ["\(path): 2 rows without text skipped (lines 2, 3)"])
        // ... and reach the run's notes through its split.
        let (data, _) = try set.split(dev: DataFiles(train: path, devSplit: 0.5), seed: 1)
        XCTAssertEqual(data.skipped, set.skipped)

        let empty = try write([row(""), row(" ")])
        XCTAssertThrowsError(try TransferSet(path: empty, names: names)) {
            XCTAssertEqual("\($0)", "\(empty): no rows with text (2 empty)")
        }
    }

    func testLogitsBeyondWhatALossCanTakeAreRefusedNamingTheLine() throws {
        for (logits, message) in [("[3e38,-3e38]", "line 2: \"logits\" holds 3e+38, beyond ±10000"),
                                  ("[1e999,0]", "line 2: not valid JSON, or a number in it beyond a double's range"),
                                  ("[-20000.5,1]", "line 2: \"logits\" holds -20000.5, beyond ±10000")] {
            let path = try write([row("a fine film"), row("a dull one", "neg", logits: logits)])
            XCTAssertThrowsError(try TransferSet(path: path, names: names), logits) { error in
                XCTAssertTrue("\(error)".hasPrefix("\(path): \(message)"), "\(logits): \(error)")
            }
        }
        // The largest taken, and a row at it trains.
        let path = try write([row("a fine film", logits: "[-10000,10000]")])
        XCTAssertEqual(try TransferSet(path: path, names: names).logits, [[-10000, 10000]])
    }

    /// A teacher with labels -1 and 1: a row's label may be the number as well as the string (as a
    /// data file's is read); a label it does not have, a row without logits (labelled data given as
    /// --transfer) and a label of another type are refused, each saying what is wrong.
    func testNumberLabelsAreReadAndOtherRowsSayWhatIsWrong() throws {
        let numbered = ["-1", "1"]
        let good = try write(["{\"text\":\"a\",\"label\":-1,\"logits\":[2,-1],\"teacher_label\":-1}",
                              "{\"text\":\"b\",\"label\":\"1\",\"logits\":[-2,1]}"])
        XCTAssertEqual(try TransferSet(path: good, names: numbered).labels, [0, 1])
        for (line, message) in [("{\"text\":\"a\",\"label\":2,\"logits\":[2,-1]}", "\"label\" '2' is not one of them; the teacher's labels are -1, 1"),
                                ("{\"text\":\"a\",\"label\":[1],\"logits\":[2,-1]}", "\"label\" is not a string or a number"),
                                ("{\"text\":\"a\",\"logits\":[2,-1]}", "\"label\" is missing"),
                                ("{\"text\":\"a\",\"label\":1}", "no \"logits\": a transfer set is retort augment's JSONL")] {
            let path = try write([line])
            XCTAssertThrowsError(try TransferSet(path: path, names: numbered), line) { error in
                XCTAssertTrue("\(error)".hasPrefix("\(path): line 1: \(message)"), "\(line): \(error)")
            }
        }
    }
}
