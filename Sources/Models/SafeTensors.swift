// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {…}}, then the data.
// The reader memory-maps the file and validates everything before any tensor is touched: a
// sane header size, known dtypes, non-negative shapes, offsets in bounds, byte counts that match
// the shapes, and data regions that neither overlap nor leave holes (as the reference
// implementation requires). The writer writes a temporary file and renames it.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum SafeTensorsDType: String, CaseIterable, Sendable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }
}

public final class SafeTensorsFile: @unchecked Sendable {
    public struct Entry: Sendable {
        public let name: String
        public let dtype: SafeTensorsDType
        public let shape: [Int]
        public let begin: Int   // byte offsets into the data section
        public let end: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    /// The largest header the reference implementation accepts.
    static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        // Errors name the whole path: every model folder's file is model.safetensors.
        guard file.size >= 8 else { throw CheckpointError("\(path): \(file.size) bytes is too short for a safetensors file") }
        (entries, metadata, dataStart) = try Self.parseHeader(file.base, size: file.size, name: path)
    }

    private static func parseHeader(_ base: UnsafeRawPointer, size: Int, name: String) throws
        -> ([String: Entry], [String: String], Int) {
        let stated = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))   // any 8 bytes: checked before it is an Int
        guard stated > 0, stated <= UInt64(maxHeaderBytes) else {
            throw CheckpointError("\(name): header length \(stated) is not sane (not a safetensors file?)")
        }
        let headerBytes = Int(stated)
        guard 8 + headerBytes <= size else {
            throw CheckpointError("\(name): header of \(headerBytes) bytes runs past the end of the \(size)-byte file (truncated?)")
        }
        let header = Data(bytes: base + 8, count: headerBytes)
        guard let object = try? JSONSerialization.jsonObject(with: header), let table = object as? [String: Any] else {
            throw CheckpointError("\(name): the header is not a JSON object")
        }
        let dataBytes = size - 8 - headerBytes
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {   // the same file gives the same error every time
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else { throw CheckpointError("\(name): __metadata__ is not an object") }
                for (k, v) in m { metadata[k] = v as? String ?? "\(v)" }
                continue
            }
            guard let fields = value as? [String: Any] else { throw CheckpointError("\(name): tensor '\(key)' is not an object") }
            guard let dtypeName = fields["dtype"] as? String, let dtype = SafeTensorsDType(rawValue: dtypeName) else {
                throw CheckpointError("\(name): tensor '\(key)' has unknown dtype \(fields["dtype"].map { "\($0)" } ?? "(none)")")
            }
            guard let shapeValues = fields["shape"] as? [Any],
                  let shape = Optional(shapeValues.compactMap { ($0 as? NSNumber)?.intValue }), shape.count == shapeValues.count,
                  shape.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError("\(name): tensor '\(key)' has an invalid shape")
            }
            guard let offsets = fields["data_offsets"] as? [Any], offsets.count == 2,
                  let begin = (offsets[0] as? NSNumber)?.intValue, let end = (offsets[1] as? NSNumber)?.intValue,
                  begin >= 0, begin <= end else {
                throw CheckpointError("\(name): tensor '\(key)' has invalid data_offsets")
            }
            guard end <= dataBytes else {
                throw CheckpointError("\(name): tensor '\(key)' ends at byte \(end) but the data section has \(dataBytes) (truncated?)")
            }
            guard let elements = checkedProduct(shape), elements.multipliedReportingOverflow(by: dtype.size).partialValue == end - begin else {
                throw CheckpointError("\(name): tensor '\(key)' is \(dtype.rawValue) \(shape) but spans \(end - begin) bytes")
            }
            entries[key] = Entry(name: key, dtype: dtype, shape: shape, begin: begin, end: end)
        }
        var cursor = 0
        for entry in entries.values.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard entry.begin == cursor else {
                throw CheckpointError(entry.begin < cursor
                    ? "\(name): tensor '\(entry.name)' overlaps the tensor before it"
                    : "\(name): a gap of \(entry.begin - cursor) bytes precedes tensor '\(entry.name)'")
            }
            cursor = entry.end
        }
        guard cursor == dataBytes else {
            throw CheckpointError("\(name): the data section has \(dataBytes - cursor) bytes no tensor accounts for")
        }
        return (entries, metadata, 8 + headerBytes)
    }

    public func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else {
            throw CheckpointError("\(path): no tensor named '\(name)'")
        }
        return e
    }

    /// The raw bytes of a tensor (valid while this object lives).
    public func bytes(_ e: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: file.base + dataStart + e.begin, count: e.end - e.begin)
    }

    /// A floating-point tensor as Float (F32, F16 and BF16 convert; F64 rounds).
    public func floats(_ name: String) throws -> [Float] {
        let e = try entry(name), raw = bytes(e)
        switch e.dtype {
        case .f32: return copyLittleEndianFloats(raw, count: e.count)
        case .f64: return (0..<e.count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
        case .bf16: return (0..<e.count).map { floatFromBFloat16Bits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case .f16: return (0..<e.count).map { floatFromHalfBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        default: throw CheckpointError("\(path): tensor '\(name)' is \(e.dtype.rawValue), expected a float type")
        }
    }

    /// An I8 tensor's values.
    public func int8s(_ name: String) throws -> [Int8] {
        let e = try entry(name)
        guard e.dtype == .i8 else {
            throw CheckpointError("\(path): tensor '\(name)' is \(e.dtype.rawValue), expected I8")
        }
        let raw = bytes(e)
        return [Int8](unsafeUninitializedCapacity: raw.count) { buffer, count in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
            count = raw.count
        }
    }

    /// An integer tensor as Int64 (I64, I32, I16, I8, U8).
    public func integers(_ name: String) throws -> [Int64] {
        let e = try entry(name), raw = bytes(e)
        switch e.dtype {
        case .i64: return (0..<e.count).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .i32: return (0..<e.count).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self))) }
        case .i16: return (0..<e.count).map { Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self))) }
        case .i8: return (0..<e.count).map { Int64(raw.load(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: return (0..<e.count).map { Int64(raw.load(fromByteOffset: $0, as: UInt8.self)) }
        default: throw CheckpointError("\(path): tensor '\(name)' is \(e.dtype.rawValue), expected an integer type")
        }
    }
}

public enum SafeTensorsWriter {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: [Float]   // written as F32
        public let int8: [Int8]?     // written as I8 instead
        /// The F32 values fetched only when the tensor is written (from a device, say), a range
        /// (offset, count) at a time, so that a file of large tensors never holds more than one
        /// chunk of one of them in memory.
        let fetch: ((Int, Int) -> [Float])?
        let fetchCount: Int
        public init(name: String, shape: [Int], values: [Float]) {
            self.name = name; self.shape = shape; self.values = values; int8 = nil; fetch = nil; fetchCount = 0
        }
        public init(name: String, shape: [Int], int8: [Int8]) {
            self.name = name; self.shape = shape; values = []; self.int8 = int8; fetch = nil; fetchCount = 0
        }
        /// F32 values that `fetch(offset, n)` returns, `n` of the `count` from `offset`, when the file
        /// is written (in chunks of `SafeTensorsWriter.chunk`).
        public init(name: String, shape: [Int], count: Int, fetch: @escaping (Int, Int) -> [Float]) {
            self.name = name; self.shape = shape; values = []; int8 = nil; self.fetch = fetch; fetchCount = count
        }
        var count: Int { int8?.count ?? (fetch != nil ? fetchCount : values.count) }
        var bytes: Int { int8 != nil ? count : 4 * count }
    }

    /// Writes F32 and I8 tensors (in the order given) to `path` through a temporary file and a
    /// rename, streaming them one after another (no copy of the whole file in memory).
    public static func write(_ tensors: [Tensor], metadata: [String: String] = ["format": "pt"], to path: String) throws {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            guard t.shape.reduce(1, *) == t.count else {
                throw CheckpointError("tensor '\(t.name)': shape \(t.shape) does not hold \(t.count) values")
            }
            header[t.name] = ["dtype": t.int8 != nil ? "I8" : "F32", "shape": t.shape, "data_offsets": [offset, offset + t.bytes]] as [String: Any]
            offset += t.bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }   // pad with spaces so the data is 8-byte aligned
        try writeAtomically(to: path) { file in
            try withUnsafeBytes(of: UInt64(json.count).littleEndian) { try file.append($0) }
            try json.withUnsafeBytes { try file.append($0) }
            for t in tensors {
                if let int8 = t.int8 {
                    try int8.withUnsafeBytes { try file.append($0) }
                    continue
                }
                guard let fetch = t.fetch else {
                    try append(t.values, to: file)
                    continue
                }
                for start in stride(from: 0, to: t.count, by: chunk) {
                    let n = min(chunk, t.count - start), values = fetch(start, n)
                    guard values.count == n else { throw CheckpointError("tensor '\(t.name)': fetched \(values.count) values, not \(n)") }
                    try append(values, to: file)
                }
            }
        }
    }
}

extension SafeTensorsWriter {
    /// The values a fetched tensor is read in at a time (16 MB).
    static let chunk = 1 << 22

    static func append(_ values: [Float], to file: FileWriter) throws {
        #if _endian(little)
        try values.withUnsafeBytes { try file.append($0) }   // already the file's byte order
        #else
        try values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { try file.append($0) }
        #endif
    }
}

/// A file being written: `append` writes all of the bytes given (retrying short writes).
public struct FileWriter {
    let fd: Int32
    let path: String
    public func append(_ raw: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw CheckpointError("\(path): write failed: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}

/// Writes `data` to a temporary file beside `path`, flushes it to disk (fsync), then renames it
/// over `path` and flushes the folder: a reader, a crash or a power cut never sees a half-written
/// file, only the old one or the new one.
public func writeAtomically(_ data: Data, to path: String) throws { try writeAtomically([(path, data)]) }

/// writeAtomically of what `contents` writes (a file too large to build in memory first).
public func writeAtomically(to path: String, _ contents: (FileWriter) throws -> Void) throws {
    try withoutActuallyEscaping(contents) { contents in try writeAtomically([(path: path, contents: contents)]) }
}

/// writeAtomically for files that belong together (a report's three).
public func writeAtomically(_ files: [(path: String, data: Data)]) throws {
    try writeAtomically(files.map { file in (file.path, { writer in try file.data.withUnsafeBytes { try writer.append($0) } }) })
}

/// Each file is written in full under a temporary name first (a full disk changes nothing), then
/// they are renamed into place; should a rename fail, those already renamed are put back as they
/// were (their earlier versions kept under a second name until the last rename), so the set is
/// all new or all old.
public func writeAtomically(_ files: [(path: String, contents: (FileWriter) throws -> Void)]) throws {
    func beside(_ path: String, _ suffix: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(suffix)").path
    }
    let temporaries = files.map { beside($0.path, "tmp") }
    defer { temporaries.forEach { unlink($0) } }
    for (file, temporary) in zip(files, temporaries) {
        do { try writeDurably(to: temporary, file.contents) } catch { throw CheckpointError("\(file.path): cannot write: \(error)") }
    }
    let earlier = files.count == 1 ? [nil] : files.map { link($0.path, beside($0.path, "old")) == 0 ? beside($0.path, "old") : nil }
    defer { earlier.compactMap { $0 }.forEach { unlink($0) } }
    for (i, (file, temporary)) in zip(files, temporaries).enumerated() where rename(temporary, file.path) != 0 {
        let reason = String(cString: strerror(errno))
        for (done, kept) in zip(files.prefix(i), earlier) {
            if let kept { rename(kept, done.path) } else { unlink(done.path) }
        }
        throw CheckpointError("\(file.path): cannot rename the temporary file into place: \(reason)"
                              + (i > 0 ? " (the \(i) file\(i == 1 ? "" : "s") renamed before it put back)" : ""))
    }
    for folder in Set(files.map { ($0.path as NSString).deletingLastPathComponent }) { syncFolder(folder.isEmpty ? "." : folder) }
}

/// Creates (or truncates) `path`, writes what `contents` writes and fsyncs it before returning.
public func writeDurably(to path: String, _ contents: (FileWriter) throws -> Void) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CheckpointError("\(path): cannot create: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try contents(FileWriter(fd: fd, path: path))
    guard fsync(fd) == 0 else { throw CheckpointError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
}

/// Flushes a folder's entries (a rename into it) to disk; best effort.
public func syncFolder(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { return }
    _ = fsync(fd)
    close(fd)
}

/// The product of a stored tensor's dimensions, nil where it passes Int (a corrupt file's shape:
/// read unchecked, it was a trap). For safetensors and GGUF alike.
func checkedProduct(_ dimensions: [Int]) -> Int? {
    var product = 1
    for d in dimensions {
        let (p, overflow) = product.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        product = p
    }
    return product
}
