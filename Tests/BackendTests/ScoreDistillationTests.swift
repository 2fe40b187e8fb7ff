// The fused attention-score distillation loss (TinyBERT's MSE between a student's and a
// teacher's pre-softmax scores, computed tile by tile) against the unfused path — scores written
// by attentionForward, then mse, then the dense dScores into attentionBackward — on every backend:
// loss and gradients, with key masks (one sequence fully padded), both sides' additive biases,
// teacher head sizes that differ from the student's, dropout; and the fused gradient by finite
// differences of the fused loss.
import Backend
import Foundation
import XCTest

final class ScoreDistillationTests: XCTestCase {
    struct Pair {
        let student: AttentionShape
        let teacherHeadSize: Int
        let padded: [Int]      // keys of each sequence that are padding (the last ones)
        let biases: Bool
    }

    let pairs = [
        Pair(student: AttentionShape(batch: 3, length: 19, heads: 2, headSize: 8), teacherHeadSize: 8, padded: [0, 5, 19], biases: true),
        Pair(student: AttentionShape(batch: 2, length: 37, heads: 3, headSize: 16, dropout: 0.1, seed: 9), teacherHeadSize: 32,
             padded: [3, 0], biases: false),
        Pair(student: AttentionShape(batch: 1, length: 70, heads: 2, headSize: 24), teacherHeadSize: 12, padded: [6], biases: true),
    ]

    struct Inputs {
        let q, k, v, dOut, mask: Tensor
        let bias: Tensor?
        let target: ScoreTarget
    }

    func inputs(_ p: Pair, _ backend: Backend) throws -> Inputs {
        let s = p.student, (B, T, NH) = (s.batch, s.length, s.heads)
        var rng = SeededRandom(UInt64(T * 7 + p.teacherHeadSize))
        let tCount = B * T * NH * p.teacherHeadSize
        let mask = (0..<B).flatMap { b in (0..<T).map { j in Int32(j < T - p.padded[b] ? 1 : 0) } }
        let q = try backend.upload(rng.floats(s.activations, -2, 2)), k = try backend.upload(rng.floats(s.activations, -2, 2))
        let tq = try backend.upload(rng.floats(tCount, -2, 2)), tk = try backend.upload(rng.floats(tCount, -2, 2))
        let bias = p.biases ? try backend.upload(rng.floats(NH * T * T)) : nil
        let tBias = p.biases ? try backend.upload(rng.floats(NH * T * T)) : nil
        return Inputs(q: q, k: k, v: try backend.upload(rng.floats(s.activations)), dOut: try backend.upload(rng.floats(s.activations)),
                      mask: try backend.upload(mask), bias: bias,
                      target: ScoreTarget(q: tq, k: tk, bias: tBias, headSize: p.teacherHeadSize))
    }

    func testFusedLossAndGradientsEqualTheUnfusedPath() throws {
        for backend in try backends() {
            for p in pairs {
                let s = p.student, x = try inputs(p, backend), name = "\(backend.kind) T=\(s.length) HS=\(s.headSize)/\(p.teacherHeadSize)"
                let teacherShape = AttentionShape(batch: s.batch, length: s.length, heads: s.heads, headSize: p.teacherHeadSize)
                // Unfused: both models' scores stored, mse, its gradient into the backward.
                let scores = try backend.zeros(s.scores), teacherScores = try backend.zeros(s.scores), dScores = try backend.zeros(s.scores)
                let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows), unfusedLoss = try backend.zeros(1)
                backend.attentionForward(try backend.zeros(teacherShape.activations), lse: try backend.zeros(s.rows), scores: teacherScores,
                                         q: x.target.q, k: x.target.k, v: try backend.zeros(teacherShape.activations), mask: x.mask,
                                         bias: x.target.bias,
                                         teacherShape)
                backend.attentionForward(out, lse: lse, scores: scores, q: x.q, k: x.k, v: x.v, mask: x.mask, bias: x.bias, s)
                backend.mse(unfusedLoss, dA: dScores, scores, teacherScores, count: s.scores, gradScale: 2.5)
                var unfused: [[Float]] = []
                var fused: [[Float]] = []
                for gradient in [ScoreGradient.dense(dScores), .scoreMSE(x.target, gradScale: 2.5)] {
                    let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.activations), dv = try backend.zeros(s.activations)
                    let dBias = try x.bias.map { _ in try backend.zeros(s.heads * s.length * s.length) }
                    backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: dBias, dOut: x.dOut, dScores: gradient, out: out, lse: lse,
                                              q: x.q, k: x.k, v: x.v, mask: x.mask, bias: x.bias, s)
                    let grads = [dq, dk, dv].map(backend.floats) + (dBias.map { [backend.floats($0)] } ?? [])
                    if case .dense = gradient { unfused = grads } else { fused = grads }
                }
                // Fused.
                let fusedLoss = try backend.zeros(1)
                backend.attentionScoreLoss(fusedLoss, q: x.q, k: x.k, mask: x.mask, bias: x.bias, target: x.target, s)
                XCTAssertGreaterThan(backend.floats(unfusedLoss)[0], 0.1, name)
                assertClose(backend.floats(fusedLoss), backend.floats(unfusedLoss), atol: 1e-6, rtol: 1e-5, "\(name): loss")
                for (i, what) in ["dq", "dk", "dv", "dBias"].prefix(unfused.count).enumerated() {
                    assertClose(fused[i], unfused[i], atol: 1e-5, rtol: 1e-4, "\(name): \(what)")
                }
            }
        }
    }

    func testFusedGradientByFiniteDifferences() throws {
        for backend in try backends() {
            for p in pairs where p.student.activations <= 1200 {
                var s = p.student
                s.dropout = 0
                let x = try inputs(p, backend), loss = try backend.zeros(1), name = "\(backend.kind) T=\(s.length)"
                let value = { () -> Double in
                    backend.attentionScoreLoss(loss, q: x.q, k: x.k, mask: x.mask, bias: x.bias, target: x.target, s)
                    return Double(backend.floats(loss)[0])
                }
                let out = try backend.zeros(s.activations), lse = try backend.zeros(s.rows), zero = try backend.zeros(s.activations)
                backend.attentionForward(out, lse: lse, scores: nil, q: x.q, k: x.k, v: x.v, mask: x.mask, bias: x.bias, s)
                let dq = try backend.zeros(s.activations), dk = try backend.zeros(s.activations), dv = try backend.zeros(s.activations)
                backend.attentionBackward(dq: dq, dk: dk, dv: dv, dBias: nil, dOut: zero, dScores: .scoreMSE(x.target, gradScale: 1),
                                          out: out, lse: lse, q: x.q, k: x.k, v: x.v, mask: x.mask, bias: x.bias, s)
                XCTAssertEqual(backend.floats(dv).map(abs).max(), 0, "\(name): dv without dOut")
                checkGradient("\(name) dq", backend: backend, input: x.q, values: backend.floats(x.q), analytic: backend.floats(dq),
                              step: 1e-2, atol: 1e-4, rtol: 1e-2, loss: value)
                checkGradient("\(name) dk", backend: backend, input: x.k, values: backend.floats(x.k), analytic: backend.floats(dk),
                              step: 1e-2, atol: 1e-4, rtol: 1e-2, loss: value)
            }
        }
    }
}
