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
        throw XCTSkip("cuda op tests skipped: a GPU is present but the CUDA backend is not implemented yet")
    }

    func testAutoFallsBackToCPUWithANote() throws {
        let (backend, note) = try Devices.makeBackend(.auto)
        XCTAssertEqual(backend.kind, .cpu)
        XCTAssertNotNil(note)
    }

    func testDeviceLinesNeverCrash() {
        let lines = [Devices.cpuLine] + Devices.cudaLines
        XCTAssertEqual(lines.first?.name, "cpu")
        XCTAssertTrue(lines.contains { $0.name.hasPrefix("cuda") })
        XCTAssertTrue(lines.allSatisfy { !$0.text.isEmpty })
    }
}
