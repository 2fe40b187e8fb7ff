// Runs the op cases and the model cases on a candidate backend against the CPU reference and
// reports each output's worst element. Used by `swift test` (Tests/BackendTests/
// ConformanceTests.swift) and by the `backend-check` executable, which scripts/gpu-check
// carries to a GPU machine (no Swift there, so no XCTest).
import Backend
import Foundation

public struct CheckResult: Sendable {
    public let name: String
    public let passed: Bool
    public let detail: String   // the worst element, or why the case could not run
    public let skipped: Bool
}

public enum Conformance {
    /// Compares `got` with `expected`: fails on a length mismatch, a NaN, or an element off by
    /// more than atol + rtol·|expected|; the detail names the worst element.
    /// At tf32 (`precision`), the tolerances widen to at least `tf32Tolerance` relative to
    /// `scale` (default: the output's largest |expected|) and to each element.
    public static func compare(_ name: String, got: [Float], expected: [Float], atol: Double, rtol: Double,
                               precision: Precision = .fp32, scale: Double? = nil) -> CheckResult {
        guard got.count == expected.count else {
            return CheckResult(name: name, passed: false, detail: "length \(got.count), expected \(expected.count)", skipped: false)
        }
        var atol = atol, rtol = rtol
        if precision == .tf32 {
            atol = max(atol, tf32Tolerance * (scale ?? Double(expected.lazy.map { abs($0) }.max() ?? 0)))
            rtol = max(rtol, tf32Tolerance)
        }
        var worst = -1, worstExcess = -Double.infinity, maxError = 0.0
        for i in 0..<got.count {
            let error = abs(Double(got[i]) - Double(expected[i]))
            let excess = error.isNaN ? Double.infinity : error - (atol + rtol * abs(Double(expected[i])))
            if excess > worstExcess { worst = i; worstExcess = excess }
            if !error.isNaN { maxError = max(maxError, error) }
        }
        guard worst >= 0 else { return CheckResult(name: name, passed: true, detail: "empty", skipped: false) }
        let detail = "max |error| \(short(maxError)); worst [\(worst)] \(got[worst]) vs \(expected[worst]) (atol \(atol), rtol \(rtol))"
        return CheckResult(name: name, passed: worstExcess <= 0, detail: detail, skipped: false)
    }

    /// TF32 keeps 10 of each fp32 matmul operand's 23 mantissa bits. This bound was 4e-3 of the
    /// output's scale while it took the operands to be rounded; on an H200 (cuBLASLt 13.1,
    /// 32F_FAST_TF32) the tiny Qwen2's LM gradients came out 5.5e-3 of their scale off the CPU's.
    /// The emulated cuBLASLt cutting its operands instead of rounding gives 5.0e-3 on that case
    /// (rounding: 1e-4; its loss 1.7e-3 off against 1.6e-4), so we infer — from this case, not
    /// from NVIDIA's documentation — that the tensor cores cut. A cut operand is off by up to
    /// 2⁻¹⁰ ≈ 9.8e-4 relative, twice rounding's bound, and always towards zero: errors add up
    /// over a sum instead of cancelling, through every matmul an output passes (LoRA, attention,
    /// a backward, a model's layers). Hence 8e-3, twice the old bound: 1.45× the worst error
    /// seen on the H200 — measured headroom, not a proof; a longer chain may need more.
    public static let tf32Tolerance = 8e-3

    /// Runs one op case on both backends and compares every output.
    public static func run(_ c: OpCase, candidate: Backend, reference: Backend) -> [CheckResult] {
        do {
            let expected = try c.run(reference), got = try c.run(candidate)
            return zip(got, expected).map { g, e in
                compare("\(c.name): \(g.0)", got: g.1, expected: e.1, atol: c.atol, rtol: c.rtol, precision: candidate.precision)
            }
        } catch {
            return [CheckResult(name: c.name, passed: false, detail: "\(error)", skipped: false)]
        }
    }

    public static func runOps(candidate: Backend, reference: Backend) -> [CheckResult] {
        cases(for: candidate.precision).flatMap { run($0, candidate: candidate, reference: reference) }
    }

    /// The op cases for a candidate at `precision`: every op at fp32 (and tf32, looser by nature);
    /// at bf16/fp16 the 16-bit matmul and tensor-core attention cases (the other ops are fp32 at
    /// every precision and are checked by an fp32 run).
    public static func cases(for precision: Precision) -> [OpCase] {
        precision.halfType == nil ? OpCases.all : HalfPrecisionCases.cases(precision)
    }

    static func short(_ x: Double) -> String {
        x == 0 ? "0" : x < 1e-3 || x >= 1e4 ? String(format: "%.2e", x) : String(format: "%.5f", x)
    }
}
