// GGUF, llama.cpp's single-file model format (versions 2 and 3), read in place (memory-mapped):
//   "GGUF", version u32, tensor count u64, metadata count u64;
//   metadata: key (u64 length + UTF-8), value type u32, value — u8 i8 u16 i16 u32 i32 f32 bool
//     string array u64 i64 f64 (types 0…12; an array is an element type u32, a count u64, the
//     elements);
//   tensor infos: name, dimension count u32 (≤ 4), ne u64 × n (ne[0] varies fastest), ggml type
//     u32, offset u64 into the data section;
//   the data section, at the next multiple of general.alignment (default 32) after the infos.
// Everything is validated before a tensor is read: a truncated file, an unknown value or tensor
// type, a tensor past the end of the file is a one-line error naming the file and the field.
// Shapes are given in HF's order (the reverse of ne), so a [out, in] weight reads as [out, in].
import Foundation

public final class GGUFFile: @unchecked Sendable {
    public indirect enum Value: Sendable, Equatable {
        case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([Value])
    }

    public struct Tensor: Sendable {
        public let name: String
        public let type: GGMLType
        /// HF's order: the reverse of GGUF's ne.
        public let shape: [Int]
        public var count: Int { shape.reduce(1, *) }
        /// Byte offset in the file, and length.
        let offset, bytes: Int
    }

    public let path: String
    public let version: Int
    public let metadata: [String: Value]
    /// In file order.
    public let tensors: [Tensor]
    private let index: [String: Int]
    private let file: MappedFile

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        var r = Reader(bytes: file.bytes, name: file.name)
        guard file.size >= 4, r.peekMagic() else {
            throw CheckpointError("\(file.name): not a GGUF file (it does not start with \"GGUF\")")
        }
        r.position = 4
        let version = Int(try r.u32("the version"))
        guard version == 2 || version == 3 else {
            throw CheckpointError("\(file.name): GGUF version \(version); Retort reads versions 2 and 3")
        }
        self.version = version
        let tensorCount = try r.count("the tensor count", minimumBytesEach: 24)
        let metadataCount = try r.count("the metadata count", minimumBytesEach: 12)
        var metadata: [String: Value] = [:]
        for _ in 0..<metadataCount {
            let key = try r.string("a metadata key")
            metadata[key] = try r.value(type: try r.u32("the type of '\(key)'"), key: key)
        }
        var infos: [(name: String, ne: [Int], type: UInt32, offset: UInt64)] = []
        for _ in 0..<tensorCount {
            let name = try r.string("a tensor name")
            let dimensions = try r.u32("the dimension count of '\(name)'")
            guard (1...4).contains(dimensions) else {
                throw CheckpointError("\(file.name): tensor '\(name)' has \(dimensions) dimensions (1 to 4 expected)")
            }
            let ne = try (0..<Int(dimensions)).map { _ in try r.u64("the shape of '\(name)'") }
            guard ne.allSatisfy({ $0 > 0 && $0 < 1 << 40 }) else {
                throw CheckpointError("\(file.name): tensor '\(name)' has an invalid shape \(ne)")
            }
            infos.append((name, ne.map { Int($0) }, try r.u32("the type of '\(name)'"), try r.u64("the offset of '\(name)'")))
        }
        let alignment: Int
        switch metadata["general.alignment"] {
        case nil: alignment = 32
        case .uint(let a)? where a > 0 && a <= 1 << 20 && a & (a - 1) == 0: alignment = Int(a)
        case let other?: throw CheckpointError("\(file.name): general.alignment is \(other), not a power of two")
        }
        let dataStart = (r.position + alignment - 1) / alignment * alignment
        var tensors: [Tensor] = [], index: [String: Int] = [:]
        for info in infos {
            guard let type = GGMLType(rawValue: info.type) else {
                throw CheckpointError("\(file.name): tensor '\(info.name)' is \(GGMLType.describe(info.type)), which Retort cannot read "
                                      + "(it reads " + GGMLType.allCases.map(\.name).joined(separator: ", ") + ")")
            }
            let (perBlock, blockBytes) = type.block
            guard info.ne[0] % perBlock == 0 else {
                throw CheckpointError("\(file.name): tensor '\(info.name)' has \(info.ne[0]) values per row, not a multiple of \(type.name)'s block of \(perBlock)")
            }
            // Each dimension is below 2⁴⁰, but four of them multiply past Int: a shape no file holds.
            guard let count = checkedProduct(info.ne), let bytes = checkedProduct([count / perBlock, blockBytes]) else {
                throw CheckpointError("\(file.name): tensor '\(info.name)' has a shape \(info.ne) of more values than a file can hold (corrupt?)")
            }
            let (offset, overflow) = dataStart.addingReportingOverflow(Int(clamping: info.offset))
            guard !overflow, info.offset % UInt64(alignment) == 0, offset <= file.size, bytes <= file.size - offset else {
                throw CheckpointError("\(file.name): tensor '\(info.name)' (\(bytes) bytes at offset \(info.offset)) runs past the end of the "
                                      + "\(file.size)-byte file (truncated?)")
            }
            guard index[info.name] == nil else { throw CheckpointError("\(file.name): tensor '\(info.name)' appears twice") }
            index[info.name] = tensors.count
            tensors.append(Tensor(name: info.name, type: type, shape: info.ne.reversed(), offset: offset, bytes: bytes))
        }
        (self.metadata, self.tensors, self.index) = (metadata, tensors, index)
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let i = index[name] else { throw CheckpointError("\(file.name): no tensor named '\(name)'") }
        return tensors[i]
    }

    /// A tensor's values as Float, dequantised (row-major in `shape`).
    public func floats(_ name: String) throws -> [Float] {
        let t = try tensor(name)
        let raw = UnsafeRawBufferPointer(rebasing: file.bytes[t.offset..<(t.offset + t.bytes)])
        return [Float](unsafeUninitializedCapacity: t.count) { out, initialized in
            t.type.dequantize(raw, count: t.count, into: out.baseAddress!)
            initialized = t.count
        }
    }

    // MARK: metadata

    /// A string value; nil when absent; an error when the key holds something else.
    public func string(_ key: String) throws -> String? {
        switch metadata[key] {
        case nil: return nil
        case .string(let s)?: return s
        case let other?: throw wrongType(key, other, "a string")
        }
    }

    /// An integer value (any integer type); nil when absent.
    public func integer(_ key: String) throws -> Int? {
        switch metadata[key] {
        case nil: return nil
        case .uint(let u)? where u <= UInt64(Int.max): return Int(u)
        case .int(let i)?: return Int(i)
        case let other?: throw wrongType(key, other, "an integer")
        }
    }

    /// A boolean value; nil when absent.
    public func bool(_ key: String) throws -> Bool? {
        switch metadata[key] {
        case nil: return nil
        case .bool(let v)?: return v
        case let other?: throw wrongType(key, other, "a boolean")
        }
    }

    /// A floating-point value (or an integer, converted); nil when absent.
    public func number(_ key: String) throws -> Double? {
        switch metadata[key] {
        case nil: return nil
        case .float(let f)?: return f
        case .uint(let u)?: return Double(u)
        case .int(let i)?: return Double(i)
        case let other?: throw wrongType(key, other, "a number")
        }
    }

    /// An array of strings; nil when absent.
    public func strings(_ key: String) throws -> [String]? {
        try array(key, "an array of strings") { if case .string(let s) = $0 { return s } else { return nil } }
    }

    /// An array of integers; nil when absent.
    public func integers(_ key: String) throws -> [Int]? {
        try array(key, "an array of integers") {
            switch $0 {
            case .uint(let u) where u <= UInt64(Int.max): return Int(u)
            case .int(let i): return Int(i)
            default: return nil
            }
        }
    }

    /// An array whose every element `element` converts; nil when absent.
    private func array<T>(_ key: String, _ expected: String, _ element: (Value) -> T?) throws -> [T]? {
        switch metadata[key] {
        case nil: return nil
        case .array(let values)?:
            return try values.map { value in
                guard let converted = element(value) else { throw wrongType(key, value, expected) }
                return converted
            }
        case let other?: throw wrongType(key, other, expected)
        }
    }

    private func wrongType(_ key: String, _ value: Value, _ expected: String) -> CheckpointError {
        let shown = "\(value)"
        return CheckpointError("\(file.name): metadata '\(key)' is \(shown.count > 60 ? String(shown.prefix(60)) + "…" : shown), expected \(expected)")
    }
}

/// A bounds-checked little-endian cursor over the mapped file: reading past the end is a
/// "truncated" error naming what was being read.
private struct Reader {
    let bytes: UnsafeRawBufferPointer
    let name: String
    var position = 0

    func peekMagic() -> Bool { bytes.count >= 4 && Array(bytes[0..<4]) == Array("GGUF".utf8) }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard count >= 0, count <= bytes.count - position else {
            throw CheckpointError("\(name): truncated at byte \(position) of \(bytes.count) while reading \(what())")
        }
        defer { position += count }
        return position
    }

    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 { bytes[try take(1, what())] }
    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 {
        UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(2, what()), as: UInt16.self))
    }
    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(4, what()), as: UInt32.self))
    }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(8, what()), as: UInt64.self))
    }

    /// A u64 count of items at least `minimumBytesEach` long: one the rest of the file cannot hold is an error.
    mutating func count(_ what: @autoclosure () -> String, minimumBytesEach: Int) throws -> Int {
        let n = try u64(what())
        guard n <= UInt64(bytes.count - position) / UInt64(minimumBytesEach) else {
            throw CheckpointError("\(name): \(what()) is \(n), more than the \(bytes.count)-byte file can hold (corrupt or truncated)")
        }
        return Int(n)
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let length = try count(what(), minimumBytesEach: 1)
        let start = try take(length, what())
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]), as: UTF8.self) else {
            throw CheckpointError("\(name): \(what()) at byte \(start) is not UTF-8")
        }
        return s
    }

    mutating func value(type: UInt32, key: String) throws -> GGUFFile.Value {
        func what() -> String { "the value of '\(key)'" }   // only for an error
        switch type {
        case 0: return .uint(UInt64(try u8(what())))
        case 1: return .int(Int64(Int8(bitPattern: try u8(what()))))
        case 2: return .uint(UInt64(try u16(what())))
        case 3: return .int(Int64(Int16(bitPattern: try u16(what()))))
        case 4: return .uint(UInt64(try u32(what())))
        case 5: return .int(Int64(Int32(bitPattern: try u32(what()))))
        case 6: return .float(Double(Float(bitPattern: try u32(what()))))
        case 7:
            let b = try u8(what())
            guard b <= 1 else { throw CheckpointError("\(name): '\(key)' is a bool of value \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string(what()))
        case 9:
            let elementType = try u32("the element type of '\(key)'")
            guard elementType != 9 else { throw CheckpointError("\(name): '\(key)' is an array of arrays, which GGUF does not allow") }
            let n = try count("the length of '\(key)'", minimumBytesEach: Self.size(of: elementType))
            return .array(try (0..<n).map { _ in try value(type: elementType, key: key) })
        case 10: return .uint(try u64(what()))
        case 11: return .int(Int64(bitPattern: try u64(what())))
        case 12: return .float(Double(bitPattern: try u64(what())))
        default: throw CheckpointError("\(name): '\(key)' has value type \(type), which GGUF does not define (0 to 12)")
        }
    }

    /// The fewest bytes one value of a type takes (a string: its 8-byte length).
    static func size(of type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        default: return 8
        }
    }
}
