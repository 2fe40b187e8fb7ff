// What the machine offers, asserted where it must hold and reported where it may not.
import Backend
import CBackend
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
