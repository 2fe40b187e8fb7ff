// The int8 kernels (Kernels/cpu/int8_linear.c) against naive loops, exactly: per-row
// quantization as round-half-even of x·127/max|x|, and the int8 linear's int32 sums through the
// shared epilogue fma(float(sum)·scale, wscale, bias). The Makefile runs these at every CPU level
// (portable, AVX2, and here AVX-512 VNNI), and each must give the same bits.
import Backend
import Kernels
import XCTest

final class Int8Tests: XCTestCase {
    /// The path the CPU level in effect selects (RETORT_CPU_LEVEL caps it).
    var expectedPath: String {
        switch rt_cpu_level() {
        case 4...:   // AVX-512 without VNNI takes the AVX2 path (the CPU's flags read independently of the kernels' CPUID check)
            let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            return flags.contains(" avx512_vnni") && flags.contains(" avx512bw") ? "avx512-vnni" : "avx2"
        case 3: return "avx2"
        default: return "portable"
        }
    }

    func naiveQuantize(_ x: [Float], rows: Int, columns: Int) -> ([Int8], [Float]) {
        var q = [Int8](), scales = [Float]()
        for r in 0..<rows {
            let row = x[(r * columns)..<(r * columns + columns)]
            let amax = row.map { abs($0) }.max() ?? 0, inv: Float = amax > 0 ? 127 / amax : 0
            scales.append(amax / 127)
            q += row.map { Int8(max(-127, min(127, ($0 * inv).rounded(.toNearestOrEven)))) }
        }
        return (q, scales)
    }

    func testQuantizeRowsRoundsHalfToEvenAndClamps() {
        var rng = SeededRandom(81)
        let (rows, columns) = (5, 37)
        var x = rng.floats(rows * columns, -3, 3)
        for j in 0..<columns { x[2 * columns + j] = 0 }                 // a zero row: scale 0, values 0
        x[3 * columns + 5] = 127; x[3 * columns + 6] = 0.5; x[3 * columns + 7] = 1.5; x[3 * columns + 8] = -2.5   // exact halves
        let (q, scales) = quantizeRowsInt8(x, rows: rows, columns: columns)
        let (nq, nscales) = naiveQuantize(x, rows: rows, columns: columns)
        XCTAssertEqual(q, nq)
        XCTAssertEqual(scales, nscales)
        XCTAssertEqual(Array(q[(3 * columns + 5)...(3 * columns + 8)]), [127, 0, 2, -2], "halves round to even")
        XCTAssertEqual(scales[2], 0)
    }

    func testInt8LinearIsExactOnThisLevelsPath() throws {
        let backend = try CPUBackend()
        let path = try XCTUnwrap(backend.int8Kernels)
        XCTAssertEqual(path, expectedPath, "level \(rt_cpu_level())")
        var rng = SeededRandom(82)
        // Odd sizes: row blocks (4 and 8) and panels (16 and 32 channels) with remainders, K not a multiple of 4.
        // N = 20 and 50: an even number of panels, the last partial (the second of a VNNI pair).
        for (M, N, K, withBias) in [(1, 16, 4, true), (5, 33, 37, true), (9, 40, 64, false), (17, 100, 130, true), (32, 384, 384, true),
                                    (8, 20, 40, true), (12, 50, 24, false)] {
            var x = rng.floats(M * K, -4, 4)
            if M > 2 { for j in 0..<K { x[K + j] = 0 } }                  // a zero row
            let w = (0..<(N * K)).map { _ in Int8(Int(rng.next() % 255) - 127) }
            let wscale = rng.floats(N, 0.001, 0.05), bias = withBias ? rng.floats(N, -1, 1) : nil
            let weight = try XCTUnwrap(try backend.int8Weight(values: w, scales: wscale, outFeatures: N, inFeatures: K))
            // x as rows of a wider buffer (stride K + 3), as a layer reads the [CLS] rows.
            let ldx = K + 3
            var strided = [Float](repeating: 9, count: M * ldx)
            for m in 0..<M { for k in 0..<K { strided[m * ldx + k] = x[m * K + k] } }
            let y = try backend.zeros(M * N)
            backend.int8Linear(y, try backend.upload(strided), weight: weight, bias: try bias.map { try backend.upload($0) }, rows: M, inputStride: ldx)
            let (q, scale) = naiveQuantize(x, rows: M, columns: K)
            var expected = [Float](repeating: 0, count: M * N)
            for m in 0..<M {
                for n in 0..<N {
                    var sum: Int32 = 0
                    for k in 0..<K { sum += Int32(q[m * K + k]) * Int32(w[n * K + k]) }
                    expected[m * N + n] = (bias?[n] ?? 0).addingProduct(Float(sum) * scale[m], wscale[n])
                }
            }
            XCTAssertEqual(backend.floats(y), expected, "\(path): M=\(M) N=\(N) K=\(K)")
        }
    }

    /// Weight-only int8 (decoders): fp32 inputs against the int8 weights. Up to the level's few rows
    /// (rt_int8_weight_linear reads the int8 rows along K: 3 on AVX-512, 7 on AVX2, none on the
    /// baseline) within float rounding of a double loop (16-lane partial sums, then the tail; FMA or
    /// not by level); past them the product with the dequantized weight fl(W·scale), one sum in k
    /// order, so within the recursive-summation bound K·u·Σ|x·w| of a double loop over those values,
    /// and bit for bit rt_sgemm_packed's product with those values packed (the same register tiles).
    func testWeightOnlyInt8LinearMatchesADoubleLoop() throws {
        let backend = try CPUBackend()
        let dotRows = rt_cpu_level() >= 4 ? 3 : rt_cpu_level() == 3 ? 7 : 0
        var rng = SeededRandom(83)
        // Panels of 16 channels taken in pairs on AVX-512: N = 33 and 49 end in a partial panel, 70 in
        // a lone one; K = 37 and 130 leave a tail after the 16-column blocks; ldx > K, rows of a wider buffer.
        for (M, N, K, ldx, withBias) in [(1, 3, 5, 5, true), (1, 49, 576, 576, true), (3, 64, 37, 40, false), (5, 33, 37, 37, true),
                                         (8, 70, 130, 131, true), (9, 20, 5, 7, true), (17, 10, 130, 130, true), (40, 49, 576, 600, false),
                                         (100, 32, 16, 16, true)] {
            let x = rng.floats(M * K, -4, 4), w = (0..<(N * K)).map { _ in Int8(Int(rng.next() % 255) - 127) }
            let wscale = rng.floats(N, 0.001, 0.05), bias = withBias ? rng.floats(N, -1, 1) : nil
            let weight = try XCTUnwrap(try backend.int8Weight(values: w, scales: wscale, outFeatures: N, inFeatures: K, kind: .weightOnly))
            var strided = [Float](repeating: 7, count: M * ldx)
            for m in 0..<M { for k in 0..<K { strided[m * ldx + k] = x[m * K + k] } }
            let y = try backend.zeros(M * N)
            backend.int8Linear(y, try backend.upload(strided), weight: weight, bias: try bias.map { try backend.upload($0) }, rows: M,
                               inputStride: ldx)
            let got = backend.floats(y), dequantized = dequantizeRowsInt8(w, scales: wscale, columns: K)
            if M > dotRows {
                var packed = [Float](repeating: 0, count: Int(rt_packed_weight_count(Int32(N), Int32(K)))), product = [Float](repeating: 0, count: M * N)
                rt_pack_weight(&packed, dequantized, Int32(K), Int32(N), Int32(K), 0)
                rt_sgemm_packed(&product, Int32(N), strided, Int32(ldx), packed, bias, Int32(M), Int32(N), Int32(K), 0)
                XCTAssertEqual(got.map(\.bitPattern), product.map(\.bitPattern), "M=\(M) N=\(N) K=\(K): not the packed product of the dequantized weight")
            }
            for m in 0..<M {
                for n in 0..<N {
                    var sum = 0.0, size = 0.0
                    if M <= dotRows {
                        for k in 0..<K { sum += Double(x[m * K + k]) * Double(w[n * K + k]); size += abs(Double(x[m * K + k]) * Double(w[n * K + k])) }
                        let expected = sum * Double(wscale[n]) + Double(bias?[n] ?? 0)
                        XCTAssertLessThanOrEqual(abs(Double(got[m * N + n]) - expected), 1e-6 * size * Double(wscale[n]) + 1e-6,
                                                 "M=\(M) N=\(N) K=\(K) [\(m), \(n)] (int8 rows)")
                    } else {
                        for k in 0..<K {
                            let product = Double(x[m * K + k]) * Double(dequantized[n * K + k])
                            sum += product; size += abs(product)
                        }
                        let expected = sum + Double(bias?[n] ?? 0)
                        XCTAssertLessThanOrEqual(abs(Double(got[m * N + n]) - expected), Double(K + 1) * 0x1p-24 * (size + abs(expected)),
                                                 "M=\(M) N=\(N) K=\(K) [\(m), \(n)] (dequantized panels)")
                    }
                }
            }
        }
    }
}
