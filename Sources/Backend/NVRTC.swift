// NVRTC: compiles Retort's CUDA C kernels (Sources/Kernels/cuda, embedded in the binary) at run
// time. No GPU is needed to compile, only libnvrtc (the nvidia-cuda-nvrtc wheel or a toolkit).
import CBackend
import Kernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public struct KernelCompileError: Error, CustomStringConvertible, Sendable {
    public let kernel: String
    public let target: NVRTC.Target
    public let log: String
    public var description: String { "NVRTC could not compile \(kernel) for \(target):\n\(log)" }
}

public enum NVRTC {
    public struct Status: Sendable {
        public let available: Bool
        public let version, path, error: String
    }

    public static var status: Status {
        let info = rt_nvrtc_load()!.pointee
        return Status(available: info.loaded != 0, version: "\(info.major).\(info.minor)",
                      path: string(info.path), error: string(info.error))
    }

    /// The embedded kernel sources: (file name, CUDA C source).
    public static var kernelSources: [(name: String, source: String)] {
        (0..<Int(rt_cuda_source_count())).map { index in
            let entry = rt_cuda_source_at(Int32(index))!.pointee
            return (String(cString: entry.name), String(cString: entry.source))
        }
    }

    /// The header every kernel includes (cuda/common.cuh): (include name, contents).
    public static var commonHeader: (name: String, source: String) {
        let entry = rt_cuda_common_header()!.pointee
        return (String(cString: entry.name), String(cString: entry.source))
    }

    /// What NVRTC builds for a GPU: a cubin for its own sm_XY when NVRTC knows that
    /// architecture, otherwise PTX for the newest compute_XY it knows below it, which the driver
    /// compiles for the GPU when the module is loaded.
    public struct Target: Sendable, Equatable, CustomStringConvertible {
        public let arch: Int
        public let ptx: Bool
        public init(arch: Int, ptx: Bool = false) { self.arch = arch; self.ptx = ptx }
        public var option: String { "--gpu-architecture=\(ptx ? "compute" : "sm")_\(arch)" }
        public var description: String { ptx ? "PTX for compute_\(arch)" : "sm_\(arch)" }
    }

    /// The compute capabilities this NVRTC compiles for (empty when it cannot say).
    public static var supportedArchitectures: [Int] {
        var archs = [Int32](repeating: 0, count: 128)
        let count = Int(rt_nvrtc_supported_archs(&archs, Int32(archs.count)))
        return archs.prefix(count).map(Int.init)
    }

    /// The target for a GPU of compute capability `arch` (e.g. 89), or why there is none.
    public static func target(for arch: Int) -> Result<Target, BackendError> {
        let known = supportedArchitectures
        if known.isEmpty || known.contains(arch) { return .success(Target(arch: arch)) }
        if let older = known.filter({ $0 < arch }).max() { return .success(Target(arch: older, ptx: true)) }
        return .failure(BackendError("NVRTC \(status.version) compiles for sm_\(known.first!)–sm_\(known.last!), not this GPU's "
                                     + "sm_\(arch): use an NVRTC of CUDA \(arch < 50 ? "11 or older" : arch < 75 ? "12" : "12 or newer")"))
    }

    /// Every option a kernel is compiled with (the kernel cache keys on them).
    public static func options(_ target: Target) -> [String] { [target.option, "--std=c++17"] }

    /// Compiles one source (which may #include the common header) for `target` and returns the
    /// cubin, or the PTX (NUL-terminated); throws with the compiler's log (file, line and
    /// message) on error.
    public static func compile(source: String, name: String, target: Target) throws -> [UInt8] {
        var image: UnsafeMutablePointer<CChar>?
        var size = 0
        var log: UnsafeMutablePointer<CChar>?
        let header = commonHeader, options = options(target), count = options.count
        let cStrings = (options + [header.source, header.name]).map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let pointers = cStrings.map { UnsafePointer<CChar>($0) }
        let result = pointers.withUnsafeBufferPointer { p -> Int32 in
            let base = p.baseAddress!
            return rt_nvrtc_compile(source, name, target.ptx ? 1 : 0, 1, base + count, base + count + 1, base, Int32(count),
                                    &image, &size, &log)
        }
        defer { free(image); free(log) }
        guard result == 0, let image else {
            throw KernelCompileError(kernel: name, target: target, log: log.map { String(cString: $0) } ?? "unknown error")
        }
        return Array(UnsafeRawBufferPointer(start: image, count: size))
    }
}
