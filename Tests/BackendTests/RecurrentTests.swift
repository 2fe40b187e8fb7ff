// The recurrent ops against naive loops in double, and every gradient by finite differences:
// one step of each cell (a padded row carries its state and outputs 0), and pooling over time.
import Backend
import Foundation
import XCTest

final class RecurrentTests: XCTestCase {
    func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// The step's outputs (h, c) by torch's formulas, in double; y = h at valid rows.
    func naiveStep(_ cell: RecurrentCell, xg: [Float], hg: [Float], hPrev: [Float], cPrev: [Float], lengths: [Int32], t: Int, B: Int, H: Int)
        -> (h: [Double], c: [Double]) {
        var h = [Double](repeating: 0, count: B * H), c = h
        for b in 0..<B {
            for j in 0..<H {
                let k = b * H + j, G = cell.gates * H
                func pre(_ gate: Int) -> Double { Double(xg[b * G + gate * H + j]) + Double(hg[b * G + gate * H + j]) }
                guard t < lengths[b] else { h[k] = Double(hPrev[k]); c[k] = cell == .lstm ? Double(cPrev[k]) : 0; continue }
                switch cell {
                case .lstm:
                    let i = sigmoid(pre(0)), f = sigmoid(pre(1)), g = tanh(pre(2)), o = sigmoid(pre(3))
                    c[k] = f * Double(cPrev[k]) + i * g
                    h[k] = o * tanh(c[k])
                case .gru:
                    let r = sigmoid(pre(0)), z = sigmoid(pre(1))
                    let n = tanh(Double(xg[b * G + 2 * H + j]) + r * Double(hg[b * G + 2 * H + j]))
                    h[k] = (1 - z) * n + z * Double(hPrev[k])
                case .rnn:
                    h[k] = tanh(pre(0))
                }
            }
        }
        return (h, c)
    }

    func testStepsAgainstNaiveLoopsAndFiniteDifferences() throws {
        var rng = SeededRandom(91)
        for backend in try backends() {
            // H: below one 16-wide vector; one vector and a remainder
            for (cell, H) in RecurrentCell.allCases.flatMap({ cell in [5, 21].map { (cell, $0) } }) {
                let (B, t) = (3, 2), G = cell.gates * H, ldy = 2 * H, lstm = cell == .lstm
                let lengthValues: [Int32] = [4, 2, 3]   // row 1 is padded at step 2
                let xv = rng.floats(B * G, -2, 2), hv = rng.floats(B * G, -2, 2), pv = rng.floats(B * H), cv = rng.floats(B * H)
                let lengths = try backend.upload(lengthValues)
                let xGates = try backend.upload(xv), hGates = try backend.upload(hv), hPrev = try backend.upload(pv)
                let cPrev = lstm ? try backend.upload(cv) : nil
                let h = try backend.zeros(B * H), c = lstm ? try backend.zeros(B * H) : nil, y = try backend.zeros(B * ldy)
                let saved = cell.savedWidth > 0 ? try backend.zeros(B * 4 * H) : nil
                let step = RecurrentStep(cell: cell, batch: B, hidden: H, step: t, outputStride: ldy)
                func forward() {
                    backend.recurrentForward(h, c: c, y: y.slice(0, (B - 1) * ldy + H), saved: saved, xGates: xGates, hGates: hGates,
                                             hPrev: hPrev, cPrev: cPrev, lengths: lengths, step)
                }
                forward()
                let expected = naiveStep(cell, xg: xv, hg: hv, hPrev: pv, cPrev: cv, lengths: lengthValues, t: t, B: B, H: H)
                assertClose(backend.floats(h), expected.h, atol: 1e-6, rtol: 1e-5, "\(backend.kind) \(cell) h")
                if let c { assertClose(backend.floats(c), expected.c, atol: 1e-6, rtol: 1e-5, "\(backend.kind) lstm c") }
                let yExpected = (0..<B).flatMap { b in (0..<ldy).map { j in j < H && t < lengthValues[b] ? expected.h[b * H + j] : 0 } }
                assertClose(backend.floats(y), yExpected, atol: 1e-6, rtol: 1e-5, "\(backend.kind) \(cell) y")
                // L = Σ wy·y + Σ wh·h (+ Σ wc·c): its gradients are what backward returns for dy, dh, dc = the weights.
                let wy = rng.floats(B * ldy), wh = rng.floats(B * H), wc = rng.floats(B * H)
                let loss = { () -> Double in
                    forward()
                    return dot(backend.floats(y), wy) + dot(backend.floats(h), wh) + (c.map { dot(backend.floats($0), wc) } ?? 0)
                }
                let dXGates = try backend.zeros(B * G), dHGates = cell == .gru ? try backend.zeros(B * G) : nil
                let dhPrev = try backend.zeros(B * H), dcPrev = lstm ? try backend.zeros(B * H) : nil
                backend.recurrentBackward(dXGates: dXGates, dHGates: dHGates, dhPrev: dhPrev, dcPrev: dcPrev,
                                          dY: try backend.upload(wy).slice(0, (B - 1) * ldy + H), dh: try backend.upload(wh),
                                          dc: lstm ? try backend.upload(wc) : nil, saved: saved, h: h, c: c, hPrev: hPrev, cPrev: cPrev,
                                          lengths: lengths, step)
                let what = "\(backend.kind) \(cell) H=\(H)"
                checkGradient("\(what) dXGates", backend: backend, input: xGates, values: xv, analytic: backend.floats(dXGates), loss: loss)
                checkGradient("\(what) dHGates", backend: backend, input: hGates, values: hv, analytic: backend.floats(dHGates ?? dXGates), loss: loss)
                checkGradient("\(what) dhPrev", backend: backend, input: hPrev, values: pv, analytic: backend.floats(dhPrev), loss: loss)
                if let cPrev, let dcPrev {
                    checkGradient("\(what) dcPrev", backend: backend, input: cPrev, values: cv, analytic: backend.floats(dcPrev), loss: loss)
                }
            }
        }
    }

    /// An LSTM layer keeps one buffer for its pre-activations, saved gates and their gradients:
    /// the step in place (saved = xGates forward, dXGates = saved backward) gives exactly what it
    /// gives into buffers of their own — at a hidden size below one vector, and at one with a
    /// vector part and a remainder (37 = 2·16 + 5), with a padded row.
    func testLSTMStepInPlaceMatchesSeparateBuffers() throws {
        var rng = SeededRandom(93)
        for backend in try backends() {
            for H in [5, 37] {
                let B = 3, G = 4 * H, t = 2, lengths = try backend.upload([4, 2, 3] as [Int32])
                let xv = rng.floats(B * G, -3, 3), hg = try backend.upload(rng.floats(B * G, -3, 3))
                let hPrev = try backend.upload(rng.floats(B * H)), cPrev = try backend.upload(rng.floats(B * H, -2, 2))
                let dY = try backend.upload(rng.floats(B * H)), dh = try backend.upload(rng.floats(B * H)), dc = try backend.upload(rng.floats(B * H))
                let step = RecurrentStep(cell: .lstm, batch: B, hidden: H, step: t, outputStride: H)
                /// h, c, y, the saved gates, dXGates, dhPrev, dcPrev — `inPlace`: one buffer for xGates, saved and dXGates.
                func run(inPlace: Bool) throws -> [[Float]] {
                    let xGates = try backend.upload(xv), saved = inPlace ? xGates : try backend.zeros(B * G)
                    let h = try backend.zeros(B * H), c = try backend.zeros(B * H), y = try backend.zeros(B * H)
                    backend.recurrentForward(h, c: c, y: y, saved: saved, xGates: xGates, hGates: hg, hPrev: hPrev, cPrev: cPrev,
                                             lengths: lengths, step)
                    let gates = backend.floats(saved), dXGates = inPlace ? saved : try backend.zeros(B * G)
                    let dhPrev = try backend.zeros(B * H), dcPrev = try backend.zeros(B * H)
                    backend.recurrentBackward(dXGates: dXGates, dHGates: nil, dhPrev: dhPrev, dcPrev: dcPrev, dY: dY, dh: dh, dc: dc,
                                              saved: saved, h: h, c: c, hPrev: hPrev, cPrev: cPrev, lengths: lengths, step)
                    return [backend.floats(h), backend.floats(c), backend.floats(y), gates, backend.floats(dXGates),
                            backend.floats(dhPrev), backend.floats(dcPrev)]
                }
                let separate = try run(inPlace: false), inPlace = try run(inPlace: true)
                for (name, (a, b)) in zip(["h", "c", "y", "saved gates", "dXGates", "dhPrev", "dcPrev"], zip(separate, inPlace)) {
                    let first = a.indices.first { a[$0] != b[$0] }
                    XCTAssertTrue(a.count == b.count && first == nil,
                                  "\(backend.kind) H=\(H): \(name) in place differs from separate buffers at \(first.map(String.init) ?? "length")")
                    XCTAssertTrue(a.contains { $0 != 0 }, "\(backend.kind) H=\(H): \(name) is all zeros")
                }
            }
        }
    }

    func testPoolingAgainstNaiveLoopsAndFiniteDifferences() throws {
        var rng = SeededRandom(92)
        for backend in try backends() {
            let (T, B, C, split) = (6, 4, 7, 3)
            let lengthValues: [Int32] = [6, 2, 0, 5]
            let yv = rng.floats(T * B * C), w = rng.floats(B * C)
            let y = try backend.upload(yv), lengths = try backend.upload(lengthValues)
            for mode in PoolingMode.allCases {
                let out = try backend.zeros(B * C), argmax = try backend.zeros(B * C, .i32)
                let s = PoolShape(length: T, batch: B, channels: C, mode: mode, split: split)
                let arg = mode == .max ? argmax : nil
                backend.sequencePoolForward(out, argmax: arg, y, lengths: lengths, s)
                let expected = (0..<B).flatMap { b in (0..<C).map { c -> Double in
                    let n = Int(lengthValues[b]), column = (0..<n).map { Double(yv[($0 * B + b) * C + c]) }
                    guard n > 0 else { return 0 }
                    switch mode {
                    case .mean: return column.reduce(0, +) / Double(n)
                    case .max: return column.max()!
                    case .last: return c < split ? column[n - 1] : column[0]
                    }
                } }
                assertClose(backend.floats(out), expected, atol: 1e-6, rtol: 1e-6, "\(backend.kind) \(mode) pooling")
                let loss = { () -> Double in backend.sequencePoolForward(out, argmax: arg, y, lengths: lengths, s); return dot(backend.floats(out), w) }
                let dY = try backend.upload(rng.floats(T * B * C))   // overwritten everywhere
                backend.sequencePoolBackward(dY: dY, dOut: try backend.upload(w), argmax: arg, lengths: lengths, s)
                checkGradient("\(backend.kind) \(mode) pooling dY", backend: backend, input: y, values: yv, analytic: backend.floats(dY),
                              samples: T * B * C, step: 1e-3, loss: loss)
            }
        }
    }
}
