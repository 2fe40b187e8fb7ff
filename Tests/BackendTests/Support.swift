// Shared test support: a seeded RNG, assertClose with a worst-element report, the list of
// backends every op test runs on, and a finite-difference gradient checker.
import Backend
import XCTest

struct SeededRandom {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {   // splitmix64
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
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

/// Every backend the op tests run on. The CPU always; CUDA has no backend yet — its test case
/// (BackendAvailabilityTests.testCUDA) reports the skip visibly.
func backends() throws -> [Backend] {
    [try CPUBackend()]
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
