// Grow-only scratch buffers for ops' temporaries, by name: a buffer is allocated the first time
// its name is asked for, and again only when a larger size than ever is asked for, so a training
// step allocates nothing after the first. One set per backend (DeviceRuntime.scratchBuffers).
import Foundation

public final class ScratchBuffers: @unchecked Sendable {
    private var buffers: [String: Tensor] = [:]
    private let lock = NSLock()

    public init() {}

    /// `count` elements of buffer `name`, allocating through `allocate` when it is missing or too small.
    func tensor(_ name: String, _ count: Int, _ dtype: DType, allocate: (Int, DType) throws -> Tensor) -> Tensor {
        lock.lock()
        defer { lock.unlock() }
        if let t = buffers[name], t.count >= count, t.dtype == dtype { return t.slice(0, count) }
        do {
            let t = try allocate(max(count, 1), dtype)
            buffers[name] = t
            return t.slice(0, count)
        } catch {
            fatalError("retort: scratch buffer \(name) (\(count) \(dtype)): \(error)")
        }
    }
}
