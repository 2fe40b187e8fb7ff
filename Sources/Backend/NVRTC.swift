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
    public let arch: Int
    public let log: String
    public var description: String { "NVRTC could not compile \(kernel) for sm_\(arch):\n\(log)" }
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

    /// Compiles one source (which may #include the common header) for sm_<arch> and returns the
    /// cubin; throws with the compiler's log (file, line and message) on error.
    public static func compile(source: String, name: String, arch: Int, options: [String] = []) throws -> [UInt8] {
        var cubin: UnsafeMutablePointer<CChar>?
        var size = 0
        var log: UnsafeMutablePointer<CChar>?
        let header = commonHeader, opts = options.count
        let cStrings = (options + [header.source, header.name]).map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let pointers = cStrings.map { UnsafePointer<CChar>($0) }
        let result = pointers.withUnsafeBufferPointer { p -> Int32 in
            let base = p.baseAddress!
            return rt_nvrtc_compile(source, name, Int32(arch), 1, base + opts, base + opts + 1, opts > 0 ? base : nil,
                                    Int32(opts), &cubin, &size, &log)
        }
        defer { free(cubin); free(log) }
        guard result == 0, let cubin else {
            throw KernelCompileError(kernel: name, arch: arch, log: log.map { String(cString: $0) } ?? "unknown error")
        }
        return Array(UnsafeRawBufferPointer(start: cubin, count: size))
    }
}
