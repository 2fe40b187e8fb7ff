// rt_pack_weight + rt_sgemm_packed, the CPU's products against a weight packed once (a recurrent
// layer's W_hh at every step), against a double loop. In make test's op tests, so it runs on
// every CPU kernel level.
import Foundation
import Kernels
import XCTest

final class PackedGemmTests: XCTestCase {
    /// Both weight layouts ([N,K] and [K,N], strided), every remainder of the 12-, 6- and 2-row
    /// tiles and of the 16-channel panels, panels taken in pairs (AVX-512) and one left alone, rows in L2-sized blocks (130 × 1,100), strided A and C, beta 0 over NaN (ignored) and beta ≠ 0;
    /// columns past N untouched, and the panels' padding past N zero. With a bias, each output is the
    /// same product plus bias[n], bit for bit (the bias is added as the tile is stored).
    func testPackedGemmMatchesADoubleLoop() {
        var rng = SeededRandom(31), biasRNG = SeededRandom(32)
        for (M, N, K) in [(1, 1, 1), (1, 17, 7), (2, 16, 8), (5, 33, 9), (6, 15, 300), (7, 48, 17), (10, 31, 5), (13, 70, 64), (32, 300, 120), (33, 8, 15), (130, 20, 1100),
                          (11, 64, 9), (12, 32, 4), (23, 40, 33), (25, 96, 20), (19, 129, 6), (9, 48, 70),
                          (3, 48, 9), (16, 40, 7)] {
            for transposed in [false, true] {
                for beta: Float in [0, 1] {
                    let lda = K + 3, ldc = N + 2, ldw = transposed ? N + 1 : K + 1
                    let a = rng.floats(M * lda), w = rng.floats((transposed ? K : N) * ldw)
                    func weight(_ n: Int, _ k: Int) -> Float { transposed ? w[k * ldw + n] : w[n * ldw + k] }
                    var packed = [Float](repeating: .nan, count: Int(rt_packed_weight_count(Int32(N), Int32(K))))
                    packed.withUnsafeMutableBufferPointer { rt_pack_weight($0.baseAddress, w, Int32(ldw), Int32(N), Int32(K), transposed ? 1 : 0) }
                    let panels = (N + 15) / 16
                    XCTAssertEqual(packed.count, panels * 16 * K)
                    for p in 0..<panels { for k in 0..<K { for j in 0..<16 where p * 16 + j >= N {
                        XCTAssertEqual(packed[(p * K + k) * 16 + j].bitPattern, 0, "N=\(N) K=\(K): padding of panel \(p) not 0")
                    } } }
                    var c0 = rng.floats(M * ldc)
                    if beta == 0 { for i in stride(from: 0, to: c0.count, by: 3) { c0[i] = .nan } }
                    var c = c0
                    c.withUnsafeMutableBufferPointer { cp in
                        rt_sgemm_packed(cp.baseAddress, Int32(ldc), a, Int32(lda), packed, nil, Int32(M), Int32(N), Int32(K), beta)
                    }
                    var expected = [Double](), got = [Float]()
                    for m in 0..<M {
                        for n in 0..<N {
                            var s = 0.0
                            for k in 0..<K { s += Double(a[m * lda + k]) * Double(weight(n, k)) }
                            expected.append(s + (beta == 0 ? 0 : Double(beta) * Double(c0[m * ldc + n])))
                            got.append(c[m * ldc + n])
                        }
                        for n in N..<ldc {
                            XCTAssertTrue(c[m * ldc + n].bitPattern == c0[m * ldc + n].bitPattern, "M=\(M) N=\(N): column \(n) past N written")
                        }
                    }
                    assertClose(got, expected, "packed gemm M=\(M) N=\(N) K=\(K) transposed=\(transposed) beta=\(beta) level \(rt_cpu_level())")
                    let bias = biasRNG.floats(N)
                    var cBias = c0
                    cBias.withUnsafeMutableBufferPointer { cp in
                        rt_sgemm_packed(cp.baseAddress, Int32(ldc), a, Int32(lda), packed, bias, Int32(M), Int32(N), Int32(K), beta)
                    }
                    for m in 0..<M {
                        for n in 0..<ldc where cBias[m * ldc + n].bitPattern != (n < N ? c[m * ldc + n] + bias[n] : c0[m * ldc + n]).bitPattern {
                            XCTFail("packed gemm with bias M=\(M) N=\(N) K=\(K) transposed=\(transposed) beta=\(beta): [\(m), \(n)] is \(cBias[m * ldc + n]), not the product + bias")
                            return
                        }
                    }
                }
            }
        }
    }
}
