// The tensor-core attention kernels (Sources/Kernels/cuda/attention_tc.cu), run on the CPU under
// the warp emulator (Tests/WarpEmulation), against the CPU backend's fp32 attention: forward
// (out, lse) and backward (dq, dk, dv, dbias), bf16 and fp16, head sizes 32 and 64, lengths
// below, at and across the 64-row tiles, padded keys (one sequence fully padded), an additive
// bias, dropout, causal masking and grouped-query heads. The inputs are rounded to the 16-bit type first, so what is left is the
// rounding of P and dS to 16 bits inside the kernels: errors are measured against the largest
// reference value (bf16 has 8 mantissa bits, fp16 11). No GPU runs here: the mma instruction is
// emulated from the PTX ISA's fragment layout.
import Backend
import Conformance
import Foundation
import WarpEmulation
import XCTest

final class TensorCoreAttentionTests: XCTestCase {
    struct Case {
        let shape: AttentionShape
        let padded: [Int]   // padded keys at the end of each sequence
        let bias: Bool
    }

    let cases = [
        Case(shape: AttentionShape(batch: 2, length: 17, heads: 2, headSize: 32), padded: [0, 17], bias: true),
        Case(shape: AttentionShape(batch: 1, length: 64, heads: 3, headSize: 64, dropout: 0.1, seed: 5), padded: [9], bias: false),
        Case(shape: AttentionShape(batch: 2, length: 80, heads: 2, headSize: 64), padded: [3, 0], bias: true),
        Case(shape: AttentionShape(batch: 1, length: 130, heads: 2, headSize: 32, dropout: 0.2, seed: 11), padded: [40], bias: true),
        Case(shape: AttentionShape(batch: 2, length: 100, heads: 4, headSize: 64, keyValueHeads: 2, causal: true), padded: [0, 20],
             bias: false),
        Case(shape: AttentionShape(batch: 1, length: 70, heads: 3, headSize: 32, keyValueHeads: 1, causal: true, dropout: 0.1, seed: 3),
             padded: [5], bias: true),
    ]

    /// Rounded to bf16 or fp16 and back through the CPU backend's casts.
    func rounded(_ values: [Float], _ dtype: DType, _ cpu: CPUBackend) throws -> [Float] {
        cpu.floats(try HalfPrecisionCases.round(cpu.upload(values), dtype, cpu))
    }

    func assertNear(_ got: [Float], _ expected: [Float], relative: Float, _ what: String) {
        XCTAssertEqual(got.count, expected.count, what)
        let largest = expected.map { abs($0) }.max() ?? 0
        var worst: Float = 0, at = 0
        for (i, (g, e)) in zip(got, expected).enumerated() where !(g == e) {   // equal infinities pass
            let d = abs(g - e)
            if !(d <= worst) { worst = d; at = i }
        }
        XCTAssertLessThanOrEqual(worst, relative * max(largest, 1e-3),
                                 "\(what): |Δ| \(worst) at \(at) (got \(got[at]), expected \(expected[at])), largest \(largest)")
    }

    func testForwardAndBackwardMatchTheCPU() throws {
        let cpu = try CPUBackend(threads: 2)
        for dtype in [DType.bf16, .f16] {
            let tolerance: Float = dtype == .bf16 ? 1e-2 : 2e-3
            for c in cases {
                let s = c.shape, (B, T, NH, HS) = (s.batch, s.length, s.heads, s.headSize)
                let (NKV, KV) = (s.keyValueHeads, s.keyValueActivations)
                let name = "\(dtype) B=\(B) T=\(T) NH=\(NH) NKV=\(NKV) HS=\(HS) causal \(s.causal) dropout \(s.dropout)"
                var rng = SeededRandom(UInt64(T * 31 + HS))
                let q = try rounded(rng.floats(s.activations, -2, 2), dtype, cpu), k = try rounded(rng.floats(KV, -2, 2), dtype, cpu)
                let v = try rounded(rng.floats(KV), dtype, cpu), dOut = try rounded(rng.floats(s.activations), dtype, cpu)
                let bias: [Float]? = c.bias ? rng.floats(NH * T * T) : nil
                let mask = (0..<B).flatMap { b in (0..<T).map { j in Int32(j < T - c.padded[b] ? 1 : 0) } }

                // The reference: the CPU backend's fp32 attention.
                let tq = try cpu.upload(q), tk = try cpu.upload(k), tv = try cpu.upload(v), tm = try cpu.upload(mask)
                let tb = try bias.map { try cpu.upload($0) }
                let out = try cpu.zeros(s.activations), lse = try cpu.zeros(s.rows)
                cpu.attentionForward(out, lse: lse, scores: nil, q: tq, k: tk, v: tv, mask: tm, bias: tb, s)
                let dq = try cpu.zeros(s.activations), dk = try cpu.zeros(KV), dv = try cpu.zeros(KV)
                let dBias = c.bias ? try cpu.zeros(NH * T * T) : nil
                cpu.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: try cpu.upload(dOut), dScores: nil, out: out, lse: lse,
                                      q: tq, k: tk, v: tv, mask: tm, bias: tb, s)

                // The kernels, emulated.
                let half: Int32 = dtype == .f16 ? 1 : 0
                var eOut = [Float](repeating: 0, count: s.activations), eLse = [Float](repeating: 0, count: s.rows)
                var eDq = eOut, eDk = [Float](repeating: 0, count: KV), eDv = eDk, eD = eLse
                var eDBias = [Float](repeating: 0, count: c.bias ? NH * T * T : 0)
                let biasPointer = bias.map { b -> UnsafeMutablePointer<Float> in
                    let p = UnsafeMutablePointer<Float>.allocate(capacity: b.count)
                    p.initialize(from: b, count: b.count)
                    return p
                }
                defer { biasPointer?.deallocate() }
                XCTAssertEqual(rt_emulated_attention_tc_forward(half, &eOut, &eLse, q, k, v, mask, biasPointer, Int32(B), Int32(T),
                                                                Int32(NH), Int32(NKV), Int32(HS), s.causal ? 1 : 0, s.scale, s.dropout,
                                                                s.seed), 0)
                let forwardOut = eOut, forwardLse = eLse
                XCTAssertEqual(eDBias.withUnsafeMutableBufferPointer { db in
                    rt_emulated_attention_tc_backward(half, &eDq, &eDk, &eDv, c.bias ? db.baseAddress : nil, &eD, dOut, forwardOut,
                                                      forwardLse, q, k, v, mask, biasPointer, Int32(B), Int32(T), Int32(NH), Int32(NKV),
                                                      Int32(HS), s.causal ? 1 : 0, s.scale, s.dropout, s.seed)
                }, 0)

                assertNear(eOut, cpu.floats(out), relative: tolerance, "\(name): out")
                assertNear(eLse, cpu.floats(lse), relative: 1e-5, "\(name): lse")
                assertNear(eDq, cpu.floats(dq), relative: tolerance, "\(name): dq")
                assertNear(eDk, cpu.floats(dk), relative: tolerance, "\(name): dk")
                assertNear(eDv, cpu.floats(dv), relative: tolerance, "\(name): dv")
                if let dBias { assertNear(eDBias, cpu.floats(dBias), relative: tolerance, "\(name): dbias") }
                if c.padded.contains(T) {   // a fully padded sequence: lse +inf, zeros out
                    let b = c.padded.firstIndex(of: T)!
                    XCTAssertTrue(eLse[(b * NH * T)..<((b + 1) * NH * T)].allSatisfy { $0 == .infinity }, "\(name): lse of the padded sequence")
                }
            }
        }
    }

    func testUnsupportedHeadSizesAreRefused() {
        var x = [Float](repeating: 0, count: 16 * 2)
        var l = [Float](repeating: 0, count: 2)
        XCTAssertEqual(rt_emulated_attention_tc_forward(0, &x, &l, x, x, x, nil, nil, 1, 2, 1, 1, 16, 0, 0.25, 0, 0), -1)
    }
}
