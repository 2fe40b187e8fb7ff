// What the machine offers, asserted where it must hold and reported where it may not.
import Backend
import CBackend
import Kernels
import XCTest

final class AvailabilityTests: XCTestCase {
    func testCPUBackendLoadsOpenBLASWithTheCoreCPUIDImplies() throws {
        let cpu = try CPUBackend()
        let expected = String(cString: rt_cpu_openblas_coretype())
        if ProcessInfo.processInfo.environment["RETORT_BLAS_CORETYPE"] == nil, !expected.isEmpty {
            // OpenBLAS may name a compatible core differently only by case.
            XCTAssertEqual(cpu.blas.core.lowercased(), expected.lowercased(), cpu.summary)
        }
        XCTAssertFalse(cpu.blas.version.isEmpty)
        print("cpu: \(cpu.summary)")
    }

    /// `ulimit -v` (RLIMIT_AS) bounds what the CPU reports available: a plan past it is refused, not
    /// allocated until malloc fails. Set here to 512 MiB above the process's size, then restored;
    /// an allocation past it fails as out of memory, naming the flags to lower.
    func testAvailableMemoryHonoursTheAddressSpaceLimit() throws {
        #if !os(Linux)
        throw XCTSkip("reads the process's size from /proc/self/status (Linux)")
        #endif
        let cpu = try CPUBackend()
        let before = cpu.memoryUse.available
        var saved = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_AS.rawValue)
        #else
        let resource = RLIMIT_AS
        #endif
        XCTAssertEqual(getrlimit(resource, &saved), 0)
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("VmSize:") })
        let size = try XCTUnwrap(Int(line.split(whereSeparator: \.isWhitespace)[1])) * 1024
        var limited = saved
        limited.rlim_cur = rlim_t(size + 512 << 20)
        XCTAssertEqual(setrlimit(resource, &limited), 0)
        let available = cpu.memoryUse.available
        let failure = Result { try cpu.allocate(1 << 30, .f32) }   // 4 GiB
        XCTAssertEqual(setrlimit(resource, &saved), 0)
        XCTAssertLessThanOrEqual(available, 512 << 20)
        XCTAssertGreaterThan(available, 256 << 20, "the limit less the process's size")
        XCTAssertGreaterThan(before, available)
        XCTAssertThrowsError(try failure.get()) { error in
            XCTAssertTrue("\(error)".hasPrefix("out of memory: could not allocate 4096 MiB on the cpu ("), "\(error)")
            XCTAssertTrue("\(error)".contains("use a smaller"), "\(error)")
        }
    }

    func testKernelLevelIsTheBestSupportedCappedByTheEnvironment() {
        let supported = Int(rt_cpu_level_supported())
        let cap = ProcessInfo.processInfo.environment["RETORT_CPU_LEVEL"].flatMap(Int.init) ?? 4
        let expected = min(supported, cap >= 4 ? 4 : cap >= 3 ? 3 : 1)
        XCTAssertEqual(Int(rt_cpu_level()), expected)
        print("cpu kernels: \(Devices.cpuKernelLevel) (supported level \(supported))")
    }

    func testCUDA() throws {
        if let reason = Devices.cudaUnavailableReason {
            throw XCTSkip("cuda op tests skipped: \(reason)")
        }
        let gpu = try CUDABackend()
        XCTAssertEqual(gpu.kind, .cuda)
        print("cuda: \(gpu.summary)")
    }

    func testAutoPicksCUDAWhenUsableElseTheCPUWithANote() throws {
        let (backend, note) = try Devices.makeBackend(.auto)
        if Devices.cudaUnavailableReason != nil {
            XCTAssertEqual(backend.kind, .cpu)
            XCTAssertNotNil(note)
        } else {
            XCTAssertEqual(backend.kind, note == nil ? .cuda : .cpu)
        }
    }

    func testDeviceCUDAWithoutAGPUIsAOneLineError() throws {
        guard let reason = Devices.cudaUnavailableReason else { throw XCTSkip("a GPU is present") }
        XCTAssertThrowsError(try Devices.makeBackend(.cuda)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.hasPrefix("device cuda: CUDA is not available"), text)
            let flagged = (error as? SettingsError)?.message.rendered { $0 == .device ? "--device" : $0.words }
            XCTAssertEqual(flagged?.hasPrefix("--device cuda: CUDA is not available"), true, text)
            XCTAssertTrue(text.contains(reason), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
    }

    func testDeviceLinesNeverCrash() {
        let lines = [Devices.cpuLine] + Devices.cudaLines
        XCTAssertEqual(lines.first?.name, "cpu")
        XCTAssertTrue(lines.contains { $0.name.hasPrefix("cuda") })
        XCTAssertTrue(lines.allSatisfy { !$0.text.isEmpty })
    }
}
