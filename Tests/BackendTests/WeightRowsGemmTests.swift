// rt_sgemm_rows, the CPU's kernel for few rows against a weight stored [N, K] (decoding, recurrent
// steps), against a double loop. In make test's op tests, so it runs on every CPU kernel level.
import Foundation
import Kernels
import XCTest

final class WeightRowsGemmTests: XCTestCase {
    /// The weight-row kernel (decoding, recurrent steps) against a double loop: every remainder of
    /// its three-row blocks, four-channel items and eight-float K steps, strided A, W and C, beta 0
    /// over NaN (ignored) and beta ≠ 0, on the CPU level in effect (make test runs 1, 3 and native).
    func testWeightRowsGemmMatchesADoubleLoop() {
        var rng = SeededRandom(29)
        for (M, N, K) in [(1, 1, 1), (1, 5, 7), (2, 6, 8), (3, 7, 9), (4, 9, 17), (5, 67, 300), (31, 13, 40), (32, 70, 576), (33, 8, 15)] {
            for beta: Float in [0, 0.5] {
                let lda = K + 3, ldw = K + 1, ldc = N + 2
                let a = rng.floats(M * lda), w = rng.floats(N * ldw)
                var c0 = rng.floats(M * ldc)
                if beta == 0 { for i in stride(from: 0, to: c0.count, by: 3) { c0[i] = .nan } }
                var c = c0
                c.withUnsafeMutableBufferPointer { cp in
                    rt_sgemm_rows(cp.baseAddress, Int32(ldc), a, Int32(lda), w, Int32(ldw), Int32(M), Int32(N), Int32(K), 0.75, beta)
                }
                var expected = [Double](), got = [Float]()
                for m in 0..<M {
                    for n in 0..<N {
                        var s = 0.0
                        for k in 0..<K { s += Double(a[m * lda + k]) * Double(w[n * ldw + k]) }
                        expected.append(0.75 * s + (beta == 0 ? 0 : Double(beta) * Double(c0[m * ldc + n])))
                        got.append(c[m * ldc + n])
                    }
                    for n in N..<ldc { XCTAssertTrue(c[m * ldc + n].bitPattern == c0[m * ldc + n].bitPattern, "M=\(M) N=\(N): column \(n) past N written") }
                }
                assertClose(got, expected, "rows gemm M=\(M) N=\(N) K=\(K) beta=\(beta) level \(rt_cpu_level())")
            }
        }
    }
}
