// Memory on a device: a DeviceBuffer owns an allocation (freed in deinit, through the backend
// that made it); a Tensor is a flat view into one (offset and count in elements). Shapes are
// not stored: ops take their sizes explicitly, as in llm.c, so views never allocate.

public enum DType: String, Sendable {
    case f32, bf16, f16, i32

    public var size: Int {
        switch self {
        case .f32, .i32: return 4
        case .bf16, .f16: return 2
        }
    }
}

public final class DeviceBuffer: @unchecked Sendable {
    /// Host pointer on the CPU, device pointer (CUdeviceptr) on CUDA.
    public let address: UInt
    public let count: Int
    public let dtype: DType
    private let release: (UInt) -> Void
    /// The elements written since a backend's copy of this buffer last caught up (nil: none),
    /// as one range: Ops.swift notes the output of upload, copy, fill, matmul (C), scale, axpy,
    /// AdamW (the parameters) and cast — the only ops weights are ever written by — after queueing
    /// it, so a 16-bit copy of a weight buffer remakes just what changed (DeviceRuntime.keepHalfCopy).
    public internal(set) var written: Range<Int>?
    /// What a backend keeps beside this buffer (CUDA: its 16-bit copy), freed with it.
    var companion: AnyObject?

    /// Tracked only for a buffer with a companion: no other buffer's copy needs it, and lanes
    /// (DeviceRuntime.forEachLane) write one buffer from several threads at once on the CPU.
    func noteWrite(_ t: Tensor, count: Int? = nil) {
        let range = t.offset..<(t.offset + (count ?? t.count))
        guard !range.isEmpty, companion != nil else { return }
        written = written.map { min($0.lowerBound, range.lowerBound)..<max($0.upperBound, range.upperBound) } ?? range
    }

    public init(address: UInt, count: Int, dtype: DType, release: @escaping (UInt) -> Void) {
        self.address = address
        self.count = count
        self.dtype = dtype
        self.release = release
    }

    deinit { release(address) }
}

public struct Tensor: @unchecked Sendable {
    public let buffer: DeviceBuffer
    public let offset: Int
    public let count: Int

    public init(_ buffer: DeviceBuffer, offset: Int = 0, count: Int? = nil) {
        let count = count ?? buffer.count - offset
        precondition(offset >= 0 && count >= 0 && offset + count <= buffer.count, "tensor view out of bounds")
        self.buffer = buffer
        self.offset = offset
        self.count = count
    }

    public var dtype: DType { buffer.dtype }
    public var bytes: Int { count * dtype.size }

    /// Elements [from, from + count) of this view.
    public func slice(_ from: Int, _ count: Int) -> Tensor {
        precondition(from >= 0 && count >= 0 && from + count <= self.count, "slice out of bounds")
        return Tensor(buffer, offset: offset + from, count: count)
    }

    /// Whether the two views share an element of one buffer.
    public func overlaps(_ other: Tensor) -> Bool {
        buffer === other.buffer && offset < other.offset + other.count && other.offset < offset + count
    }
}
