// `retort devices` end to end, as a user runs it: in a separate process, because OpenBLAS and
// the CUDA libraries are loaded once per process.
import Foundation
import XCTest

/// Runs the built `retort` with extra environment; returns (exit status, stdout + stderr).
func retort(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var candidates = [directory.appendingPathComponent("retort")]
    // On Linux the test bundle is a directory inside the build folder; retort sits beside it.
    candidates.append(directory.deletingLastPathComponent().appendingPathComponent("retort"))
    guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw XCTSkip("the retort executable was not built next to the tests (\(directory.path))")
    }
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

final class CLITests: XCTestCase {
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
