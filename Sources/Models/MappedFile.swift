// A file mapped read-only into memory (unmapped in deinit), for the weight formats that read
// tensors in place: safetensors and GGUF.
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class MappedFile: @unchecked Sendable {
    let path: String
    let base: UnsafeRawPointer
    let size: Int
    /// The file's name, as errors cite it.
    var name: String { (path as NSString).lastPathComponent }

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw CheckpointError("\(path): cannot stat: \(String(cString: strerror(errno)))") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw CheckpointError("\(path): not a regular file") }
        size = Int(info.st_size)
        guard size > 0 else { throw CheckpointError("\(path): the file is empty") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw CheckpointError("\(path): cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(map)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }
}

/// `count` little-endian F32 values from `raw` (at least 4·count bytes, any alignment) into
/// `out`: one copy on a little-endian host (a loop over the values takes seconds for a
/// 135 M-parameter model in a debug build).
func copyLittleEndianFloats(_ raw: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
    precondition(raw.count >= 4 * count, "copyLittleEndianFloats: \(raw.count) bytes for \(count) floats")
    guard count > 0 else { return }
    #if _endian(little)
    UnsafeMutableRawPointer(out).copyMemory(from: raw.baseAddress!, byteCount: 4 * count)
    #else
    for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
    #endif
}

func copyLittleEndianFloats(_ raw: UnsafeRawBufferPointer, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        if let base = buffer.baseAddress { copyLittleEndianFloats(raw, count: count, into: base) }
        initialized = count
    }
}

/// IEEE half and bfloat16 bit patterns to Float.
@inline(__always) func floatFromHalfBits(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }
@inline(__always) func floatFromBFloat16Bits(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
