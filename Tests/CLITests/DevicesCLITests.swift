// `retort devices` end to end, as a user runs it: in a separate process, because OpenBLAS and
// the CUDA libraries are loaded once per process.
import Foundation
import XCTest

final class DevicesCLITests: XCTestCase {
    func testDevicesReportsTheKernelsAndExitsZero() throws {
        let (status, output) = try retort(["devices"])
        XCTAssertEqual(status, 0, output)
        let cpu = output.split(separator: "\n").first { $0.hasPrefix("cpu ") }
        XCTAssertNotNil(cpu, output)
        XCTAssertTrue(cpu?.contains("OpenBLAS") ?? false, output)
        XCTAssertTrue(cpu?.contains(" kernels (") ?? false, output)
        XCTAssertTrue(output.contains("\ncuda"), output)
    }

    func testDevicesWithoutOpenBLASSaysWhyAndStillExitsZero() throws {
        let (status, output) = try retort(["devices"], environment: ["RETORT_OPENBLAS": "/nonexistent/libopenblas.so.0"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("cpu       not available: RETORT_OPENBLAS=/nonexistent/libopenblas.so.0 could not be loaded"), output)
    }

    func testPerfAndBackendCheckWithoutOpenBLASSayWhyInOneLine() throws {
        let missing = ["RETORT_OPENBLAS": "/nonexistent/libopenblas.so.0"]
        for (executable, arguments) in [("Perf", ["--quick", "--python", "/nonexistent"]), ("backend-check", ["--backend", "cpu"])] {
            let (status, output) = try RetortProcess(arguments, environment: missing, executable: executable).finish()
            XCTAssertTrue(status == 1 || status == 2, "\(executable) exited \(status): \(output)")
            let lines = output.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(executable): one line, no backtrace: \(output)")
            XCTAssertTrue(output.contains("RETORT_OPENBLAS=/nonexistent/libopenblas.so.0 could not be loaded"), "\(executable): \(output)")
        }
    }

    /// The one binary scripts/gpu-check carries: `retort backend-check` and `retort perf` are
    /// the backend-check and Perf executables.
    func testRetortRunsTheChecksAndThePerfSuite() throws {
        let (listed, cases) = try retort(["backend-check", "--list"])
        let (_, alone) = try RetortProcess(["--list"], executable: "backend-check").finish()
        XCTAssertEqual(listed, 0, cases)
        XCTAssertEqual(cases, alone)
        XCTAssertTrue(cases.contains("layerNorm forward/backward\n") && cases.hasSuffix("models\n"), cases)
        let (checked, output) = try retort(["backend-check", "--backend", "cpu", "--filter", "biasBackward"])
        XCTAssertEqual(checked, 0, output)
        XCTAssertTrue(output.contains("ok   biasBackward") && output.contains("1 passed, 0 failed"), output)
        let (checkHelped, checkUsage) = try retort(["backend-check", "--help"])
        XCTAssertEqual(checkHelped, 0, checkUsage)
        XCTAssertTrue(checkUsage.hasPrefix("usage: backend-check"), checkUsage)
        let (helped, usage) = try retort(["perf", "--help"])
        XCTAssertEqual(helped, 0, usage)
        XCTAssertTrue(usage.contains("--precision GPU precision"), usage)
        let (_, top) = try retort(["--help"])
        XCTAssertTrue(top.contains("retort backend-check --help") && top.contains("retort perf --help"), top)
    }

    func testForcedCoreTypeIsReported() throws {
        let (status, output) = try retort(["devices"], environment: ["RETORT_BLAS_CORETYPE": "Sandybridge"])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("Sandybridge kernels (RETORT_BLAS_CORETYPE=Sandybridge)"), output)
    }

    func testHelpDescribesDevices() throws {
        let (status, output) = try retort(["devices", "--help"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(output.contains("List the compute devices"), output)
    }
}
