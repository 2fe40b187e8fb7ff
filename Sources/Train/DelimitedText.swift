// Delimited text files: CSV as RFC 4180 (quoted fields, doubled quotes, newlines inside quotes,
// CRLF), lenient where Python's csv module is (a quote inside an unquoted field is literal;
// text after a closing quote is kept), and TSV as GLUE's loaders read it (one record per line,
// tab-separated, no quoting). A leading UTF-8 byte-order mark is dropped.
import Foundation
@_exported import Models

public struct DataError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum DelimitedText {
    /// One record: the line it starts on (1-based) and its fields.
    public struct Record: Equatable, Sendable {
        public let line: Int
        public let fields: [String]
    }

    /// Data files are read on the command's thread, one at a time.
    nonisolated(unsafe) private static var standardInputRead = false

    public static func read(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        if path != "-" {
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw DataError("\(path): no such file") }
            if isDirectory.boolValue { throw DataError("\(path): a folder, not a data file (.csv, .tsv, .jsonl or .txt)") }
        }
        // "-" is standard input (once: a second flag reading it would find it empty); a pipe such
        // as /dev/stdin or <(…), which has no contents to map, reads through a file handle.
        let read: Data?
        if path == "-" {
            guard !standardInputRead else { throw DataError("-: standard input was read already (by another flag); give this one a file") }
            standardInputRead = true
            read = try? FileHandle.standardInput.readToEnd() ?? Data()
        } else if let contents = FileManager.default.contents(atPath: path) {
            read = contents
        } else {
            read = FileHandle(forReadingAtPath: path).flatMap { try? $0.readToEnd() ?? Data() }
        }
        guard let data = read else { throw DataError("\(path): cannot read the file (check its permissions)") }
        var bytes = [UInt8](data)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) || bytes.prefix(65536).contains(0) {
            throw DataError("\(path): not UTF-8 text (UTF-16, or NUL bytes); save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8")
        }
        if let line = firstLineNotUTF8(bytes) {   // Latin-1 or Windows-1252 (é as one byte) would read as �
            throw DataError("\(path): line \(line) is not UTF-8 (Latin-1 or Windows-1252?); save the file as UTF-8, "
                            + "e.g. iconv -f WINDOWS-1252 -t UTF-8")
        }
        return bytes
    }

    /// The lines of `bytes`, without their breaks. A line ends at LF, CRLF or a lone CR (old Mac
    /// files), as the CSV reader and editors count them; after a final break comes one more,
    /// empty, line.
    public static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = [], start = 0, i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == lf || c == cr {
                lines.append(bytes[start..<i])
                if c == cr && i + 1 < bytes.count && bytes[i + 1] == lf { i += 1 }
                start = i + 1
            }
            i += 1
        }
        lines.append(bytes[start...])
        return lines
    }

    /// Whether byte `i` ends a line: LF, or a CR not followed by LF.
    static func endsLine(_ bytes: [UInt8], _ i: Int) -> Bool {
        bytes[i] == lf || (bytes[i] == cr && (i + 1 == bytes.count || bytes[i + 1] != lf))
    }

    private static let cr = UInt8(ascii: "\r"), lf = UInt8(ascii: "\n")

    /// The line (1-based) of the first byte sequence that is not UTF-8, nil if there is none.
    /// Checked a line at a time (a newline byte is never inside a UTF-8 sequence), so no copy of
    /// the whole file is made.
    static func firstLineNotUTF8(_ bytes: [UInt8]) -> Int? {
        var start = 0, line = 1, ascii = true
        for i in 0...bytes.count {
            if i == bytes.count || endsLine(bytes, i) {
                if !ascii && String(validating: bytes[start..<i], as: UTF8.self) == nil { return line }
                (start, line, ascii) = (i + 1, line + 1, true)
            } else if bytes[i] >= 0x80 {
                ascii = false
            }
        }
        return nil
    }

    /// Records of a CSV file; throws on a quoted field that never closes, naming the line it opened on.
    public static func csv(_ bytes: [UInt8], path: String = "input", delimiter: UInt8 = UInt8(ascii: ",")) throws -> [[String]] {
        try csvRecords(bytes, path: path, delimiter: delimiter).map(\.fields)
    }

    /// csv(…) with the line each record starts on (blank lines and newlines inside quotes counted).
    public static func csvRecords(_ bytes: [UInt8], path: String = "input", delimiter: UInt8 = UInt8(ascii: ",")) throws -> [Record] {
        let quote = UInt8(ascii: "\"")
        var records: [Record] = []
        var record: [String] = []
        var field: [UInt8] = []
        var i = 0, line = 1, recordLine = 0   // recordLine: where the record being read began (0: none yet)
        var fieldStarted = false   // something (even an empty quoted field) belongs to this record
        func endField() { record.append(String(decoding: field, as: UTF8.self)); field.removeAll(keepingCapacity: true) }
        func endRecord() {
            endField()
            records.append(Record(line: recordLine == 0 ? line : recordLine, fields: record))
            record = []
            fieldStarted = false
            recordLine = 0
        }
        while i < bytes.count {
            let c = bytes[i]
            if recordLine == 0 && c != lf && c != cr { recordLine = line }
            if c == quote && field.isEmpty {
                let opened = line
                i += 1
                var closed = false
                while i < bytes.count {
                    if bytes[i] == quote {
                        if i + 1 < bytes.count && bytes[i + 1] == quote { field.append(quote); i += 2; continue }
                        closed = true
                        i += 1
                        break
                    }
                    if endsLine(bytes, i) { line += 1 }
                    field.append(bytes[i])
                    i += 1
                }
                guard closed else {
                    throw DataError("\(path): line \(opened): a quoted field is never closed (broken CSV quoting)")
                }
                fieldStarted = true
                continue
            }
            if c == delimiter {
                endField()
                fieldStarted = true
            } else if c == lf || c == cr {
                if c == cr && i + 1 < bytes.count && bytes[i + 1] == lf { i += 1 }
                line += 1
                if fieldStarted || !field.isEmpty || !record.isEmpty { endRecord() }
            } else {
                field.append(c)
                fieldStarted = true
            }
            i += 1
        }
        if fieldStarted || !field.isEmpty || !record.isEmpty { endRecord() }
        return records
    }

    /// Records of a TSV file: lines split on tabs, no quoting; empty lines are skipped.
    public static func tsv(_ bytes: [UInt8]) -> [[String]] { tsvRecords(bytes).map(\.fields) }

    /// tsv(…) with each record's line.
    public static func tsvRecords(_ bytes: [UInt8]) -> [Record] {
        lines(bytes).enumerated().compactMap { n, line in
            guard !line.isEmpty else { return nil }
            return Record(line: n + 1, fields: line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
                .map { String(decoding: $0, as: UTF8.self) })
        }
    }
}
