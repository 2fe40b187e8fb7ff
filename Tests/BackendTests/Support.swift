// Shared test support: a seeded RNG, assertClose with a worst-element report, the list of
// backends every op test runs on, and a finite-difference gradient checker.
import Backend
import Conformance
import Models
import XCTest

struct SeededRandom {
    private var generator: SplitMix
    init(_ seed: UInt64) { generator = SplitMix(mixing: seed) }
    mutating func next() -> UInt64 { generator.next() }
    mutating func uniform() -> Float { generator.unit() }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in lo + (hi - lo) * uniform() }
    }
    mutating func ints(_ n: Int, below: Int) -> [Int32] { (0..<n).map { _ in Int32(next() % UInt64(below)) } }
}

/// Fails with the worst element (index, got, expected) when |got − expected| > atol + rtol·|expected|.
func assertClose(_ got: [Float], _ expected: [Double], atol: Double = 1e-5, rtol: Double = 1e-4, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, expected.count, "\(what): length", file: file, line: line)
    var worst = -1, worstExcess = 0.0
    for i in 0..<min(got.count, expected.count) {
        let err = abs(Double(got[i]) - expected[i]), allowed = atol + rtol * abs(expected[i])
        if !(err <= allowed) && (worst < 0 || err - allowed > worstExcess || err.isNaN) {
            worst = i
            worstExcess = err - allowed
        }
    }
    if worst >= 0 {
        XCTFail("\(what): worst element [\(worst)] got \(got[worst]), expected \(expected[worst]) "
                + "(atol \(atol), rtol \(rtol))", file: file, line: line)
    }
}

func assertClose(_ got: [Float], _ expected: [Float], atol: Double = 1e-5, rtol: Double = 1e-4, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    assertClose(got, expected.map(Double.init), atol: atol, rtol: rtol, what, file: file, line: line)
}

/// Every backend the op tests run on: the CPU always, CUDA when a GPU is usable (otherwise
/// AvailabilityTests.testCUDA and ConformanceTests report the skip visibly).
func backends() throws -> [Backend] {
    [try CPUBackend()] + (Devices.cudaUnavailableReason == nil ? [try CUDABackend()] : [])
}

extension Backend {
    func upload(_ values: [Float]) throws -> Tensor { try tensor(values, .f32) }
    func upload(_ values: [Int32]) throws -> Tensor { try tensor(values, .i32) }
    func set(_ t: Tensor, _ values: [Float]) { values.withUnsafeBytes { upload(t, $0) } }
}

/// Central-difference check of an analytic gradient. `loss` recomputes the forward pass from
/// the current contents of `input` and returns Σ w·y in double precision. Checks `samples`
/// elements spread over the input.
func checkGradient(_ what: String, backend: Backend, input: Tensor, values: [Float], analytic: [Float],
                   samples: Int = 24, step: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 2e-2,
                   loss: () -> Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(analytic.count, values.count, "\(what): gradient length", file: file, line: line)
    var x = values
    let stride = max(1, values.count / samples)
    var got: [Float] = [], expected: [Double] = []
    for i in Swift.stride(from: 0, to: values.count, by: stride) {
        x[i] = values[i] + step
        backend.set(input, x)
        let plus = loss()
        x[i] = values[i] - step
        backend.set(input, x)
        let minus = loss()
        x[i] = values[i]
        got.append(analytic[i])
        expected.append((plus - minus) / Double(2 * step))
    }
    backend.set(input, values)
    assertClose(got, expected, atol: atol, rtol: rtol, "\(what) (finite differences)", file: file, line: line)
}

func dot(_ a: [Float], _ w: [Float]) -> Double {
    zip(a, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
}
