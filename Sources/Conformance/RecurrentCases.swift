// The recurrent ops (RecurrentOps.swift) on a candidate backend against the CPU: one step of each
// cell forward and backward (an odd batch with a padded row, an odd hidden size, output rows in a
// wider, misaligned view), pooling over time in every mode (a sequence of length 0 included), and
// a whole two-layer bidirectional student of each cell, forward and backward, through the model.
import Backend
import Foundation
import Models

extension OpCases {
    static let recurrent: [OpCase] = RecurrentCell.allCases.map { cell in
        OpCase(name: "\(cell.rawValue) step forward/backward (padded row, misaligned output rows)", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 71 + UInt64(cell.gates))
            let (B, H, t) = (5, 37, 3), G = cell.gates, ldy = 2 * H + 3, lstm = cell == .lstm
            let lengths = try x.ints([9, 4, 3, 1, 6])   // rows 2 and 3 are past their length at step 3
            let xGates = try x.floats(B * G * H, -3, 3), hGates = try x.floats(B * G * H, -3, 3)
            let hPrev = try x.floats(B * H), cPrev = lstm ? try x.floats(B * H, -2, 2) : nil
            let h = try x.zeros(B * H), c = lstm ? try x.zeros(B * H) : nil, saved = cell.savedWidth > 0 ? try x.zeros(B * 4 * H) : nil
            let yBuffer = try x.floats(1 + B * ldy), y = yBuffer.slice(1, (B - 1) * ldy + H)
            let step = RecurrentStep(cell: cell, batch: B, hidden: H, step: t, outputStride: ldy)
            backend.recurrentForward(h, c: c, y: y, saved: saved, xGates: xGates, hGates: hGates, hPrev: hPrev, cPrev: cPrev, lengths: lengths, step)
            let dYBuffer = try x.floats(3 + B * ldy), dY = dYBuffer.slice(3, (B - 1) * ldy + H)
            let dh = try x.floats(B * H), dc = lstm ? try x.floats(B * H) : nil
            let dXGates = try x.zeros(B * G * H), dHGates = cell == .gru ? try x.zeros(B * G * H) : nil
            let dhPrev = try x.zeros(B * H), dcPrev = lstm ? try x.zeros(B * H) : nil
            backend.recurrentBackward(dXGates: dXGates, dHGates: dHGates, dhPrev: dhPrev, dcPrev: dcPrev, dY: dY, dh: dh, dc: dc, saved: saved,
                                      h: h, c: c, hPrev: hPrev, cPrev: cPrev, lengths: lengths, step)
            let outputs: [(String, Tensor?)] = [("h", h), ("c", c), ("y (and what lies between its rows)", yBuffer), ("saved", saved),
                                                ("dXGates", dXGates), ("dHGates", dHGates), ("dhPrev", dhPrev), ("dcPrev", dcPrev)]
            return outputs.compactMap { name, t in t.map { (name, backend.floats($0)) } }
        }
    } + [
        OpCase(name: "sequence pooling (mean, max, last) forward/backward, a sequence of length 0", atol: 1e-6, rtol: 1e-5) { backend in
            var x = Inputs(backend, seed: 79)
            let (T, B, C) = (9, 5, 37)
            let lengths = try x.ints([9, 0, 4, 1, 7]), y = try x.floats(T * B * C), dOut = try x.floats(B * C)
            var outputs: [(String, [Float])] = []
            for mode in PoolingMode.allCases {
                let out = try x.zeros(B * C), dY = try x.floats(T * B * C), argmax = try backend.zeros(B * C, .i32)
                let s = PoolShape(length: T, batch: B, channels: C, mode: mode, split: 19)
                backend.sequencePoolForward(out, argmax: mode == .max ? argmax : nil, y, lengths: lengths, s)
                backend.sequencePoolBackward(dY: dY, dOut: dOut, argmax: mode == .max ? argmax : nil, lengths: lengths, s)
                outputs += [("\(mode) out", backend.floats(out)), ("\(mode) dY", backend.floats(dY))]
            }
            return outputs
        },
    ] + RecurrentCell.allCases.map { cell in
        OpCase(name: "\(cell.rawValue) student (2 bidirectional layers) logits and every gradient", atol: 1e-5, rtol: 1e-4) { backend in
            let pooling: PoolingMode = cell == .lstm ? .max : cell == .gru ? .mean : .last
            let config = RecurrentConfig(cell: cell, vocabSize: 53, embeddingSize: 19, hiddenSize: 23, layers: 2, bidirectional: true,
                                         pooling: pooling, headHiddenSize: 11, padTokenId: 0)
            let model = try RecurrentModel(config: config, labels: 3, backend: backend, seed: 5)
            let a = try RecurrentActivations(config: config, labels: 3, maxBatch: 6, maxLength: 13, backend: backend)
            var x = Inputs(backend, seed: 83)
            let sequences = [13, 2, 9, 1, 11].map { n in x.intValues(n, below: 52, offset: 1) }
            a.load(sequences, pad: 0, backend: backend)
            let logits = model.forward(a)
            let dLogits = x.values(sequences.count * 3)
            dLogits.withUnsafeBytes { backend.upload(model.dLogits(a), $0) }
            model.zeroGradients()
            model.backward(a)
            return [("logits", backend.floats(logits))] + model.layout.entries.map { ("grad \($0.name)", backend.floats(model.g($0.name))) }
        }
    }
}
