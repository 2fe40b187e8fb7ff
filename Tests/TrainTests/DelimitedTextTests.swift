// CSV (RFC 4180 and Python's leniencies) and TSV reading.
@testable import Train
import XCTest

final class DelimitedTextTests: XCTestCase {
    func csv(_ text: String) throws -> [[String]] { try DelimitedText.csv(Array(text.utf8), path: "t.csv") }

    func testQuotedFieldsNewlinesDoubledQuotesAndCRLF() throws {
        XCTAssertEqual(try csv("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",3\n"),
                       [["a", "b"], ["x, y", "say \"hi\""], ["multi\nline", "3"]])
        XCTAssertEqual(try csv("a,,c\n,\n\"\",x"), [["a", "", "c"], ["", ""], ["", "x"]])
        XCTAssertEqual(try csv("no newline at end"), [["no newline at end"]])
        XCTAssertEqual(try csv("x\n\n\ny\n"), [["x"], ["y"]])   // blank lines are not records
    }

    /// Each record's line is the line it starts on: blank lines and newlines inside quotes counted.
    func testRecordsKnowTheLineTheyStartOn() throws {
        let csv = try DelimitedText.csvRecords(Array("text,label\n\n\"multi\nline\",1\r\n\n\nlast,0".utf8), path: "t.csv")
        XCTAssertEqual(csv.map(\.line), [1, 3, 7])
        XCTAssertEqual(csv.map(\.fields), [["text", "label"], ["multi\nline", "1"], ["last", "0"]])
        XCTAssertEqual(DelimitedText.tsvRecords(Array("\n1\tgood\r\n\n\n0\tbad\n".utf8)).map(\.line), [2, 5])
    }

    /// LF, CRLF and a lone CR (old Mac files) each end a line, for every reader, and count alike.
    func testEveryReaderBreaksLinesAtLFCRLFAndALoneCR() throws {
        let text = Array("1\tone\r2\ttwo\r\n\r3\tthree\n".utf8)
        XCTAssertEqual(DelimitedText.lines(text).map { String(decoding: $0, as: UTF8.self) }, ["1\tone", "2\ttwo", "", "3\tthree", ""])
        XCTAssertEqual(DelimitedText.lines([]).count, 1)
        XCTAssertEqual(DelimitedText.tsvRecords(text).map(\.line), [1, 2, 4])
        XCTAssertEqual(Dataset.lines(text).map(\.line), [1, 2, 4])
        XCTAssertEqual(Dataset.lines(text).map(\.text), ["1\tone", "2\ttwo", "3\tthree"])
        let csv = try DelimitedText.csvRecords(Array("a,b\r\"x\ry\",1\r\rz,2".utf8), path: "t.csv")
        XCTAssertEqual(csv.map(\.line), [1, 2, 5])   // the quoted lone CR counts as a line, as in an editor
        XCTAssertEqual(DelimitedText.firstLineNotUTF8(Array("a\rb\r\nc\r".utf8) + [0xE9]), 4)
    }

    func testLenientLikePythonsCSVModule() throws {
        XCTAssertEqual(try csv("ab\"c,d\n"), [["ab\"c", "d"]])        // a quote inside an unquoted field
        XCTAssertEqual(try csv("\"ab\"c,d\n"), [["abc", "d"]])        // text after a closing quote
    }

    func testBrokenQuoteNamesFileAndLine() {
        XCTAssertThrowsError(try csv("a,b\n1,\"open\n2,3\n")) { error in
            XCTAssertEqual("\(error)", "t.csv: line 2: a quoted field is never closed (broken CSV quoting)")
        }
    }

    /// The first line that is not UTF-8, whatever its neighbours hold (multi-byte characters, CRLF).
    func testTheFirstLineThatIsNotUTF8IsNamed() {
        let good = Array("café ☕ 日本\r\nplain\n".utf8)
        XCTAssertNil(DelimitedText.firstLineNotUTF8(good))
        XCTAssertNil(DelimitedText.firstLineNotUTF8([]))
        XCTAssertEqual(DelimitedText.firstLineNotUTF8(good + [0x63, 0x61, 0x66, 0xE9]), 3, "Latin-1's é, last line without a newline")
        XCTAssertEqual(DelimitedText.firstLineNotUTF8([0xE6, 0x97, 0x0A] + good), 1, "a sequence cut by a newline")
        XCTAssertEqual(DelimitedText.firstLineNotUTF8(good + Array("x\n".utf8) + [0xC3, 0x28]), 4)
    }

    func testTSVAndByteOrderMark() throws {
        let path = NSTemporaryDirectory() + "retort-\(UInt64.random(in: 0...UInt64.max)).tsv"
        try Data([0xEF, 0xBB, 0xBF] + Array("1\tit's \"good\"\r\n0\tbad\n\n".utf8)).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(DelimitedText.tsv(try DelimitedText.read(path)), [["1", "it's \"good\""], ["0", "bad"]])
        XCTAssertThrowsError(try DelimitedText.read(path + ".missing")) { XCTAssertTrue("\($0)".contains(".missing: no such file"), "\($0)") }
        XCTAssertThrowsError(try DelimitedText.read(NSTemporaryDirectory())) { XCTAssertTrue("\($0)".contains("a folder, not a data file"), "\($0)") }
    }

    func testTheSharedDatasetsLoad() throws {
        let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data")
        guard FileManager.default.fileExists(atPath: data.path) else { throw XCTSkip("../shared/data not found") }
        let hate = data.appendingPathComponent("hate_speech/labeled_data.csv").path
        let rows = try DelimitedText.csv(try DelimitedText.read(hate), path: hate)
        XCTAssertEqual(rows.count, 24_784)   // header + 24,783 records (26,954 lines: quoted newlines)
        XCTAssertTrue(rows.allSatisfy { $0.count == 7 })
        XCTAssertEqual(DelimitedText.tsv(try DelimitedText.read(data.appendingPathComponent("sst2/train.tsv").path)).count, 6_920)
        XCTAssertEqual(DelimitedText.tsv(try DelimitedText.read(data.appendingPathComponent("cola/dev.tsv").path)).count, 516)
    }
}
