// Every op and the model cases on CUDA against the CPU backend (Sources/Conformance; the same
// cases `backend-check` runs on a GPU machine). Without a GPU the CUDA cases are skipped with
// the reason; the harness itself is exercised CPU against CPU.
import Backend
import Conformance
import XCTest

final class ConformanceTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Golden").path
    static let assets = ProcessInfo.processInfo.environment["RETORT_ASSETS"] ?? (NSHomeDirectory() + "/.cache/retort/assets")

    func cuda(_ precision: Precision = .fp32) throws -> Backend {
        if let reason = Devices.cudaUnavailableReason { throw XCTSkip("cuda conformance skipped: \(reason)") }
        do { return try CUDABackend(precision: precision) } catch let error as CUDABackend.PrecisionError {
            throw XCTSkip("\(precision) conformance skipped: \(error)")
        }
    }

    func assertAll(_ results: [CheckResult], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(results.isEmpty, file: file, line: line)
        for r in results where !r.passed { XCTFail("\(r.name): \(r.detail)", file: file, line: line) }
    }

    func testEveryOpOnCUDAMatchesTheCPU() throws {
        let gpu = try cuda()
        assertAll(Conformance.runOps(candidate: gpu, reference: try CPUBackend()))
    }

    func testHalfPrecisionOpsOnCUDAMatchTheCPU() throws {
        for precision in [Precision.bf16, .fp16] {
            assertAll(Conformance.runOps(candidate: try cuda(precision), reference: try CPUBackend()))
        }
    }

    func testModelsOnCUDAMatchTheCPU() throws {
        let gpu = try cuda()
        let results = ModelCases.run(candidate: gpu, reference: try CPUBackend(), golden: Self.golden, assets: Self.assets)
            + DecoderCases.run(candidate: gpu, reference: try CPUBackend(), golden: Self.golden, assets: Self.assets)
        for r in results where r.skipped { print("skipped: \(r.name): \(r.detail)") }
        assertAll(results)
    }

    /// The harness on two CPU backends: every case runs, and a deterministic backend agrees with itself.
    func testTheHarnessRunsEveryCaseCPUAgainstCPU() throws {
        let results = Conformance.runOps(candidate: try CPUBackend(), reference: try CPUBackend())
        XCTAssertGreaterThan(results.count, 60)
        assertAll(results)
    }

    /// The bf16/fp16 cases on two CPU backends (the harness; a GPU at those precisions runs them
    /// through backend-check): they run and agree with themselves.
    func testTheHalfPrecisionCasesRunCPUAgainstCPU() throws {
        let cpu = try CPUBackend(), reference = try CPUBackend()
        for precision in [Precision.bf16, .fp16] {
            let results = HalfPrecisionCases.cases(precision).flatMap { Conformance.run($0, candidate: cpu, reference: reference) }
            XCTAssertGreaterThan(results.count, 20, "\(precision)")
            assertAll(results)
        }
        XCTAssertTrue(HalfPrecisionCases.cases(.tf32).isEmpty)
    }

    /// The comparison fails on a real difference and names the worst element.
    func testCompareNamesTheWorstElement() {
        let r = Conformance.compare("x", got: [1, 2, 3.1], expected: [1, 2, 3], atol: 1e-3, rtol: 1e-3)
        XCTAssertFalse(r.passed)
        XCTAssertTrue(r.detail.contains("[2]"), r.detail)
        XCTAssertFalse(Conformance.compare("nan", got: [.nan], expected: [0], atol: 1, rtol: 1).passed)
        XCTAssertTrue(Conformance.compare("ok", got: [1.0005], expected: [1], atol: 1e-3, rtol: 0).passed)
    }
}
