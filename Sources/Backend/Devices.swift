// What the machine offers: OpenBLAS (and which kernels it runs), the CUDA driver and GPUs,
// NVRTC and cuBLASLt — each found at run time; a missing piece is a status line, never a crash.
import CBackend
import Kernels

public struct BLASInfo: Sendable {
    public let loaded: Bool
    public let path, version, core, coreSource, config, error: String
    public let threads: Int

    static func load() -> BLASInfo {
        let info = rt_blas_load()!.pointee
        return BLASInfo(loaded: info.loaded != 0, path: string(info.path), version: string(info.version),
                        core: string(info.core), coreSource: string(info.coretype_source), config: string(info.config),
                        error: string(info.error), threads: Int(info.threads))
    }
}

public struct GPUInfo: Sendable {
    public let ordinal: Int
    public let name: String
    public let memoryBytes: Int
    public let computeCapability: (major: Int, minor: Int)
    public let multiprocessors: Int
    public var arch: Int { computeCapability.major * 10 + computeCapability.minor }
    /// Theoretical memory bandwidth in GB/s (2 transfers per clock × bus width), or nil.
    public var peakBandwidth: Double? {
        let kHz = Double(rt_cuda_device_attribute(Int32(ordinal), Int32(RT_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)))
        let bits = Double(rt_cuda_device_attribute(Int32(ordinal), Int32(RT_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)))
        return kHz > 0 && bits > 0 ? 2 * kHz * 1e3 * bits / 8 / 1e9 : nil
    }
}

/// One line per device or library, as `retort devices` prints them.
public struct DeviceLine: Sendable {
    public let name: String       // "cpu", "cuda", "nvrtc", "cublasLt"
    public let available: Bool
    public let text: String
}

public enum Devices {
    /// `--device` values.
    public enum Choice: String, CaseIterable, Sendable, Codable { case auto, cpu, cuda }

    public static var cpuLine: DeviceLine {
        let blas = BLASInfo.load()
        let cpu = rt_cpu_detect()!.pointee
        let brand = string(cpu.brand)
        guard blas.loaded else { return DeviceLine(name: "cpu", available: false, text: "not available: \(blas.error)") }
        return DeviceLine(name: "cpu", available: true,
                          text: cpuSummary(blas, threads: Int(rt_num_threads())) + (brand.isEmpty ? "" : " — \(brand)"))
    }

    /// "OpenBLAS 0.3.21, SkylakeX kernels (chosen from CPUID …), 2 threads; Retort kernels AVX-512 …"
    static func cpuSummary(_ blas: BLASInfo, threads: Int) -> String {
        "OpenBLAS \(blas.version), \(blas.core) kernels (\(blas.coreSource)), \(threads) thread\(threads == 1 ? "" : "s"); Retort kernels \(cpuKernelLevel)"
    }

    /// The instruction set Retort's own CPU kernels run with, e.g. "AVX-512 (x86-64-v4)".
    public static var cpuKernelLevel: String {
        switch rt_cpu_level() {
        case 4: return "AVX-512 (x86-64-v4)"
        case 3: return "AVX2+FMA (x86-64-v3)"
        default: return "baseline x86-64"
        }
    }

    public static var gpus: [GPUInfo] {
        let cuda = rt_cuda_load()!.pointee
        guard cuda.usable != 0 else { return [] }
        return (0..<Int(cuda.device_count)).compactMap { ordinal in
            var name = [CChar](repeating: 0, count: 256)
            var bytes = 0, major: Int32 = 0, minor: Int32 = 0, sms: Int32 = 0
            guard rt_cuda_device_info(Int32(ordinal), &name, name.count, &bytes, &major, &minor, &sms) == 0 else { return nil }
            let nameText = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return GPUInfo(ordinal: ordinal, name: nameText, memoryBytes: bytes,
                           computeCapability: (Int(major), Int(minor)), multiprocessors: Int(sms))
        }
    }

    /// Why CUDA cannot be used, or nil when a GPU is there.
    public static var cudaUnavailableReason: String? {
        let cuda = rt_cuda_load()!.pointee
        return cuda.usable != 0 ? nil : string(cuda.error)
    }

    public static var cudaLines: [DeviceLine] {
        var lines: [DeviceLine] = []
        let cuda = rt_cuda_load()!.pointee
        if let reason = cudaUnavailableReason {
            lines.append(DeviceLine(name: "cuda", available: false, text: "not available: \(reason)"))
        } else {
            let driver = "driver \(cuda.driver_version / 1000).\(cuda.driver_version % 1000 / 10)"
            for gpu in gpus {
                let gib = Double(gpu.memoryBytes) / Double(1 << 30)
                lines.append(DeviceLine(name: "cuda:\(gpu.ordinal)", available: true,
                                        text: "\(gpu.name), \(String(format1(gib))) GiB, sm_\(gpu.arch), "
                                            + "\(gpu.multiprocessors) SMs, \(driver)"))
            }
        }
        let nvrtc = NVRTC.status
        lines.append(DeviceLine(name: "nvrtc", available: nvrtc.available,
                                text: nvrtc.available ? "\(nvrtc.version) (\(nvrtc.path))" : "not available: \(nvrtc.error)"))
        let lt = rt_cublaslt_load()!.pointee
        if lt.loaded != 0 {
            let v = Int(lt.version)
            lines.append(DeviceLine(name: "cublasLt", available: true,
                                    text: "\(v / 10000).\(v / 100 % 100).\(v % 100) (\(string(lt.path)))"))
        } else {
            lines.append(DeviceLine(name: "cublasLt", available: false, text: "not available: \(string(lt.error))"))
        }
        return lines
    }

    /// The backend for a device choice, and a one-line note when `auto` fell back to the CPU:
    /// the one registry of backends the CLI, backend-check and Perf all use. `auto` takes the
    /// first GPU when the driver, NVRTC and cuBLASLt all load and the kernels compile; otherwise
    /// the CPU, saying why. The CPU computes in fp32: `cpu` with another precision is an error;
    /// `auto` falling back to the CPU says so in its note.
    /// The GPU a data-parallel rank uses: its rank on this machine (modulo the GPUs there).
    static var rankDevice: Int {
        guard let world = ProcessGroup.world else { return 0 }
        return world.localRank % max(1, gpus.count)
    }

    public static func makeBackend(_ choice: Choice, threads: Int? = nil,
                                   precision: Precision = .fp32) throws -> (backend: Backend, note: SettingText?) {
        switch choice {
        case .cpu:
            guard precision == .fp32 else {
                throw InvalidSetting("\(Setting.precision) \(precision.rawValue) is for GPUs: the CPU computes in fp32 "
                                     + "(drop \(Setting.precision), or use \(Setting.device) cuda)")
            }
            return (try CPUBackend(threads: threads), nil)
        case .cuda:
            if let reason = cudaUnavailableReason { throw InvalidSetting("\(Setting.device) cuda: CUDA is not available: \(reason)") }
            do { return (try CUDABackend(ordinal: rankDevice, precision: precision), nil) } catch let error as SettingsError {
                throw error
            } catch {
                throw InvalidSetting("\(Setting.device) cuda: \(error)")
            }
        case .auto:
            let fp32: SettingText = precision == .fp32 ? "" : " (in fp32: \(Setting.precision) \(precision.rawValue) is for GPUs)"
            if let reason = cudaUnavailableReason {
                return (try CPUBackend(threads: threads), "cuda not available (\(reason)); using cpu" + fp32)
            }
            do { return (try CUDABackend(ordinal: rankDevice, precision: precision), nil) } catch let error as CUDABackend.PrecisionError {
                throw error   // the GPU works, only not at this precision: say so rather than train on the CPU
            } catch {
                return (try CPUBackend(threads: threads), "cuda not usable (\(error)); using cpu" + fp32)
            }
        }
    }
}

func string<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

func format1(_ x: Double) -> String {
    let tenths = Int((x * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
