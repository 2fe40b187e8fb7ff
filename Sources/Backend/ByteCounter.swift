// The CPU backend's count of live allocation bytes and their peak (memoryUse, the memory plan's check).
import Foundation

/// A thread-safe count of bytes in use and its peak.
final class ByteCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var inUse = 0, peak = 0
    func add(_ bytes: Int) {
        lock.lock()
        inUse += bytes
        peak = max(peak, inUse)
        lock.unlock()
    }
    func resetPeak() {
        lock.lock()
        peak = inUse
        lock.unlock()
    }
    var values: (inUse: Int, peak: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (inUse, peak)
    }
}
