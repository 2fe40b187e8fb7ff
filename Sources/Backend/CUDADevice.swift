// The CUDA side of the backend below the ops: the device's primary context and one stream, a
// caching allocator (no cuMemAlloc inside a training step once the first step has run), and
// the NVRTC-compiled kernels, cached on disk. Everything goes through CBackend's run-time
// loaders; nothing here needs CUDA to build.
import CBackend
import Foundation
import Kernels

/// One GPU: its primary context (shared with cuBLASLt and any other library in the process),
/// the stream every op runs on, and what it is.
final class CUDADevice: @unchecked Sendable {
    let driver: rt_cuda_driver
    let ordinal: Int32
    let device: rt_CUdevice
    let context: rt_CUcontext
    let stream: rt_CUstream
    let info: GPUInfo
    let driverVersion: Int

    init(ordinal: Int) throws {
        let cuda = rt_cuda_load()!.pointee
        guard cuda.usable != 0 else { throw BackendError("CUDA is not available: \(string(cuda.error))") }
        guard ordinal >= 0 && ordinal < Int(cuda.device_count) else {
            throw BackendError("cuda:\(ordinal) does not exist (\(cuda.device_count) device(s))")
        }
        driver = cuda.fn
        driverVersion = Int(cuda.driver_version)
        self.ordinal = Int32(ordinal)
        guard let gpu = Devices.gpus.first(where: { $0.ordinal == ordinal }) else {
            throw BackendError("cuda:\(ordinal): the driver would not describe the device")
        }
        info = gpu
        var device: rt_CUdevice = 0
        try CUDADevice.check(driver.cuDeviceGet(&device, Int32(ordinal)), "cuDeviceGet")
        self.device = device
        var context: rt_CUcontext?
        try CUDADevice.check(driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")
        self.context = context!
        try CUDADevice.check(driver.cuCtxSetCurrent(context), "cuCtxSetCurrent")
        var stream: rt_CUstream?
        try CUDADevice.check(driver.cuStreamCreate(&stream, 0), "cuStreamCreate")
        self.stream = stream!
    }

    deinit {
        _ = driver.cuCtxSetCurrent(context)
        _ = driver.cuStreamSynchronize(stream)
        _ = driver.cuStreamDestroy(stream)
        _ = driver.cuDevicePrimaryCtxRelease(device)
    }

    /// RETORT_CUDA_SYNC=1: wait for the device after every kernel and matmul, so a fault is
    /// reported with the op that caused it (normally it surfaces at the next download, unnamed).
    let synchronizeEachOp = ProcessInfo.processInfo.environment["RETORT_CUDA_SYNC"] == "1"

    /// Under RETORT_CUDA_SYNC=1, waits for `what` (a kernel with its grid and block, or a
    /// matmul) to finish and stops the program naming it if it faulted; otherwise nothing.
    func checkpoint(_ what: @autoclosure () -> String) {
        guard synchronizeEachOp else { return }
        must(driver.cuStreamSynchronize(stream), "\(what()) (RETORT_CUDA_SYNC=1: the device faulted in this op)")
    }

    /// Makes the context current on the calling thread (cheap; ops may come from any thread).
    func makeCurrent() {
        var current: rt_CUcontext?
        if driver.cuCtxGetCurrent(&current) != 0 || current != context { _ = driver.cuCtxSetCurrent(context) }
    }

    static func check(_ result: rt_CUresult, _ what: @autoclosure () -> String) throws {
        guard result != 0 else { return }
        throw BackendError("\(what()) failed: \(String(cString: rt_cuda_error_string(result))) (CUDA error \(result))")
    }

    /// For ops, which cannot throw: a CUDA error there is a device fault or a bug, never bad user
    /// data (every size is checked before a launch), so it stops the program with the reason.
    func must(_ result: rt_CUresult, _ what: @autoclosure () -> String) {
        if result != 0 {
            fatalError("retort: CUDA error in \(what()): \(String(cString: rt_cuda_error_string(result))) (error \(result))")
        }
    }

    var freeMemory: (free: Int, total: Int) {
        makeCurrent()
        var free = 0, total = 0
        _ = driver.cuMemGetInfo(&free, &total)
        return (free, total)
    }
}

/// Caching device allocator. Blocks are rounded (512 B below 1 MiB, 2 MiB above) and kept on
/// free lists per size when their DeviceBuffer dies, so steady-state training never calls
/// cuMemAlloc. One stream means a block handed out again is only touched after the work queued
/// on the old owner — the same reasoning as PyTorch's single-stream caching allocator.
final class CUDAMemoryPool: @unchecked Sendable {
    private let device: CUDADevice
    private let lock = NSLock()
    private var cached: [Int: [rt_CUdeviceptr]] = [:]
    private(set) var reservedBytes = 0     // obtained from the driver
    private(set) var inUseBytes = 0
    private(set) var peakInUseBytes = 0

    init(device: CUDADevice) { self.device = device }

    deinit { releaseCached() }

    func resetPeak() {
        lock.lock()
        peakInUseBytes = inUseBytes
        lock.unlock()
    }

    static func rounded(_ bytes: Int) -> Int {
        let b = max(bytes, 1)
        return b < 1 << 20 ? (b + 511) / 512 * 512 : (b + (2 << 20) - 1) / (2 << 20) * (2 << 20)
    }

    func allocate(_ bytes: Int) throws -> (address: rt_CUdeviceptr, size: Int) {
        let size = Self.rounded(bytes)
        lock.lock()
        if var list = cached[size], let address = list.popLast() {
            cached[size] = list
            inUseBytes += size
            peakInUseBytes = max(peakInUseBytes, inUseBytes)
            lock.unlock()
            return (address, size)
        }
        lock.unlock()
        device.makeCurrent()
        var address: rt_CUdeviceptr = 0
        var result = device.driver.cuMemAlloc(&address, size)
        if result == Int32(RT_CUDA_ERROR_OUT_OF_MEMORY) {   // give the cache back and try once more
            releaseCached()
            result = device.driver.cuMemAlloc(&address, size)
        }
        guard result == 0 else {
            let (free, total) = device.freeMemory
            throw OutOfMemory(message: "out of GPU memory: could not allocate \(megabytes(size)) on \(device.info.name) "
                              + "(\(megabytes(free)) free of \(megabytes(total)), \(megabytes(inUseBytes)) held by Retort); "
                              + "use a smaller \(Setting.batchSize) or \(Setting.maxLength), or LoRA")
        }
        lock.lock()
        reservedBytes += size
        inUseBytes += size
        peakInUseBytes = max(peakInUseBytes, inUseBytes)
        lock.unlock()
        return (address, size)
    }

    func release(_ address: rt_CUdeviceptr, size: Int) {
        lock.lock()
        cached[size, default: []].append(address)
        inUseBytes -= size
        lock.unlock()
    }

    /// Frees every cached block back to the driver (after the stream has drained).
    func releaseCached() {
        lock.lock()
        let blocks = cached
        cached = [:]
        lock.unlock()
        guard !blocks.isEmpty else { return }
        device.makeCurrent()
        _ = device.driver.cuStreamSynchronize(device.stream)
        for (size, list) in blocks {
            for address in list { _ = device.driver.cuMemFree(address) }
            lock.lock()
            reservedBytes -= size * list.count
            lock.unlock()
        }
    }
}

/// A device allocation failed: the run does not fit.
public struct OutOfMemory: SettingsError, Sendable { public let message: SettingText }

func megabytes(_ bytes: Int) -> String { "\(bytes / (1 << 20)) MiB" }

/// Retort's CUDA C kernels, compiled by NVRTC for this device at first use and cached on disk
/// (~/.cache/retort/kernels or $RETORT_KERNEL_CACHE), keyed by the source's hash (kernel file
/// and common header), every compile option (the target among them) and the NVRTC version. A
/// cached image the driver will not load is deleted and compiled again, once.
final class CUDAKernels: @unchecked Sendable {
    private let device: CUDADevice
    private let lock = NSLock()
    private var modules: [String: rt_CUmodule] = [:]
    private var functions: [String: rt_CUfunction] = [:]
    private let sources: [String: String]
    let arch: Int
    /// A cubin for this GPU, or PTX for an older architecture when NVRTC does not know this one.
    let target: NVRTC.Target
    let cacheFolder: URL?

    init(device: CUDADevice) throws {
        self.device = device
        arch = device.info.arch
        let nvrtc = NVRTC.status
        guard nvrtc.available else { throw BackendError("the CUDA backend needs NVRTC to compile its kernels: \(nvrtc.error)") }
        target = try NVRTC.target(for: arch).get()
        sources = Dictionary(uniqueKeysWithValues: NVRTC.kernelSources.map { ($0.name, $0.source) })
        let env = ProcessInfo.processInfo.environment
        let folder = env["RETORT_KERNEL_CACHE"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/retort/kernels")
        cacheFolder = (try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)) != nil ? folder : nil
    }

    deinit {
        device.makeCurrent()
        for module in modules.values { _ = device.driver.cuModuleUnload(module) }
    }

    /// Compiles (or takes from the disk cache) and loads every kernel file now, so a broken
    /// installation fails when the backend is made — where `--device auto` can fall back.
    func loadAll() throws {
        lock.lock()
        defer { lock.unlock() }
        for file in sources.keys.sorted() where modules[file] == nil { modules[file] = try load(file) }
    }

    /// The function `name` from kernel file `file` (e.g. "attention.cu"), compiling it if needed.
    func function(_ file: String, _ name: String) throws -> rt_CUfunction {
        let key = file + ":" + name
        lock.lock()
        defer { lock.unlock() }
        if let fn = functions[key] { return fn }
        device.makeCurrent()
        let module = try modules[file] ?? load(file)
        modules[file] = module
        var fn: rt_CUfunction?
        try CUDADevice.check(device.driver.cuModuleGetFunction(&fn, module, name), "loading kernel \(name) from \(file)")
        functions[key] = fn!
        return fn!
    }

    private func load(_ file: String) throws -> rt_CUmodule {
        guard let source = sources[file] else { throw BackendError("no CUDA kernel file \(file) is embedded") }
        let options = NVRTC.options(target)
        let hash = fnv1a64(([NVRTC.commonHeader.source, source] + options).joined(separator: "\u{0}"))
        let cacheName = "\(file.replacingOccurrences(of: ".cu", with: ""))-\(String(hash, radix: 16))-\(target.ptx ? "compute" : "sm")"
            + "\(target.arch)-nvrtc\(NVRTC.status.version).\(target.ptx ? "ptx" : "cubin")"
        let cached = cacheFolder.map { $0.appendingPathComponent(cacheName) }
        device.makeCurrent()
        func loadImage(_ image: [UInt8]) -> (rt_CUmodule?, rt_CUresult) {
            var module: rt_CUmodule?
            let result = image.withUnsafeBytes { device.driver.cuModuleLoadData(&module, $0.baseAddress) }
            return (module, result)
        }
        if let cached, let data = try? Data(contentsOf: cached), !data.isEmpty {
            // A NUL after it: the driver reads an image that is not ELF as PTX up to a NUL, so a
            // damaged file must not send it past the end (harmless for a cubin).
            let (module, result) = loadImage([UInt8](data) + [0])
            if result == 0, let module { return module }
            try? FileManager.default.removeItem(at: cached)   // stale or damaged: compile it again
        }
        let image = try NVRTC.compile(source: source, name: file, target: target)
        let (module, result) = loadImage(image)
        try CUDADevice.check(result, "loading \(file) (\(target) for sm_\(arch), NVRTC \(NVRTC.status.version), "
                             + "driver \(device.driverVersion / 1000).\(device.driverVersion % 1000 / 10))")
        if let cached, let folder = cacheFolder {   // only an image the driver took (temp file, then rename)
            let temp = folder.appendingPathComponent(".\(cacheName).\(getpid()).tmp")
            if (try? Data(image).write(to: temp)) != nil, rename(temp.path, cached.path) != 0 {
                try? FileManager.default.removeItem(at: temp)
            }
        }
        return module!
    }
}

func fnv1a64(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x100_0000_01b3
    }
    return hash
}
