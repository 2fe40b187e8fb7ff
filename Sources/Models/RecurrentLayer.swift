// One recurrent layer (torch.nn.LSTM / GRU / RNN, one layer, one or two directions) over a
// time-major batch: x [T·B, In] (row t·B + b), output [T,B,D·H] with direction d in columns
// d·H..<(d+1)·H, 0 at steps past a sequence's length (torch's packed sequences).
// Per direction: xGates = x·W_ihᵀ + b_ih for every step in one matmul (its Linear), then step by
// step hGates = h_prev·W_hhᵀ + b_hh and the fused pointwise step (Backend.recurrentForward);
// W_hh is packed once per direction for the steps' products, forward and backward (PackedWeight).
// The directions are independent lanes (Backend.forEachLane): each has its own scratch, writes
// its own columns of the output and its own gradients, so the CPU runs them at once; only dX,
// which both add to, is left for after them.
// States live in T+1 slots of B·H: the forward direction reads slot t and writes slot t+1, the
// reverse direction reads t+1 and writes t — so the slots before each step are one contiguous
// [T·B, H] block, and W_hh's gradient is one matmul over all steps after the backward loop.
import Backend

/// One direction of a layer: its input and recurrent projections (HF-style typed Linears over
/// torch's weight_ih/bias_ih and weight_hh/bias_hh).
public struct RecurrentDirection {
    public let input: Linear     // W_ih [G·H, In], b_ih
    public let hidden: Linear    // W_hh [G·H, H], b_hh
    public let reverse: Bool
}

public struct RecurrentLayer {
    public let cell: RecurrentCell
    public let hiddenSize, inputSize: Int
    public let directions: [RecurrentDirection]

    var outputSize: Int { directions.count * hiddenSize }

    /// Where direction `d`'s backward writes its gates' gradients [T,B,G·H] (dXGates): over its
    /// pre-activations, which no backward step reads (an LSTM's hold its saved gates by then, each
    /// step's read before overwritten: RecurrentDirectionActivations).
    func gateGradients(_ a: RecurrentLayerActivations, _ d: Int, rows: Int) -> Tensor {
        a.directions[d].xGates.slice(0, rows * cell.gates * hiddenSize)
    }

    /// Slot `k` of a [T+1, B, H] state buffer.
    static func slot(_ states: Tensor, _ k: Int, _ state: Int) -> Tensor { states.slice(k * state, state) }

    /// output [T,B,D·H] from x [T·B, In]; saves what backward reads in `a`.
    public func forward(_ b: Backend, _ a: RecurrentLayerActivations, x: Tensor, lengths: Tensor, batch B: Int, length T: Int) {
        let H = hiddenSize, G = cell.gates, state = B * H, DH = outputSize
        let output = a.output.slice(0, T * B * DH)
        b.forEachLane(directions.count) { d in
            let direction = directions[d], s = a.directions[d], scratch = a.scratch[d]
            let xGates = s.xGates.slice(0, T * B * G * H)
            direction.input.forward(b, xGates, x, rows: T * B)
            // W_hh packed once for the T steps' products (as it is where the backend packs nothing)
            let wHH = b.packWeight(direction.hidden.weight.weight, n: G * H, k: H, transB: true, into: scratch.packedWeight)
            let first = direction.reverse ? T : 0
            b.fill(Self.slot(s.states, first, state), 0)
            if let cells = s.cells { b.fill(Self.slot(cells, first, state), 0) }
            for step in 0..<T {
                let t = direction.reverse ? T - 1 - step : step
                let (read, write) = direction.reverse ? (t + 1, t) : (t, t + 1)
                let hGates = scratch.hGates.slice(0, B * G * H), hPrev = Self.slot(s.states, read, state)
                b.matmul(hGates, hPrev, wHH, bias: direction.hidden.bias?.weight, rows: B)
                b.recurrentForward(Self.slot(s.states, write, state), c: s.cells.map { Self.slot($0, write, state) },
                                   y: output.slice(t * B * DH + d * H, (B - 1) * DH + H),
                                   saved: s.saved.map { $0.slice(t * B * 4 * H, B * 4 * H) },
                                   xGates: xGates.slice(t * B * G * H, B * G * H), hGates: hGates, hPrev: hPrev,
                                   cPrev: s.cells.map { Self.slot($0, read, state) }, lengths: lengths,
                                   RecurrentStep(cell: cell, batch: B, hidden: H, step: t, outputStride: DH))
            }
        }
    }

    /// From dOutput [T,B,D·H]: every parameter gradient (accumulated) and dX [T·B, In]
    /// (overwritten; nil: not needed — the first layer over frozen embeddings).
    public func backward(_ b: Backend, _ a: RecurrentLayerActivations, dOutput: Tensor, dX: Tensor?, x: Tensor, lengths: Tensor,
                         batch B: Int, length T: Int) {
        let H = hiddenSize, G = cell.gates, state = B * H, DH = outputSize
        b.forEachLane(directions.count) { d in
            let direction = directions[d], s = a.directions[d], scratch = a.scratch[d]
            let dXGates = gateGradients(a, d, rows: T * B)
            let dHGates = cell == .gru ? scratch.dHGates!.slice(0, T * B * G * H) : dXGates
            var (dh, dhNext) = (scratch.dh[0].slice(0, state), scratch.dh[1].slice(0, state))
            var (dc, dcNext) = (scratch.dc.map { $0[0].slice(0, state) }, scratch.dc.map { $0[1].slice(0, state) })
            b.fill(dh, 0)
            if let dc { b.fill(dc, 0) }
            let wHH = b.packWeight(direction.hidden.weight.weight, n: H, k: G * H, transB: false, into: scratch.packedWeight)
            for step in 0..<T {   // the forward's steps in reverse order
                let t = direction.reverse ? step : T - 1 - step
                let (read, write) = direction.reverse ? (t + 1, t) : (t, t + 1)
                let rows = t * B * G * H
                b.recurrentBackward(dXGates: dXGates.slice(rows, B * G * H), dHGates: cell == .gru ? dHGates.slice(rows, B * G * H) : nil,
                                    dhPrev: dhNext, dcPrev: dcNext, dY: dOutput.slice(t * B * DH + d * H, (B - 1) * DH + H), dh: dh, dc: dc,
                                    saved: s.saved.map { $0.slice(t * B * 4 * H, B * 4 * H) }, h: Self.slot(s.states, write, state),
                                    c: s.cells.map { Self.slot($0, write, state) }, hPrev: Self.slot(s.states, read, state),
                                    cPrev: s.cells.map { Self.slot($0, read, state) }, lengths: lengths,
                                    RecurrentStep(cell: cell, batch: B, hidden: H, step: t, outputStride: DH))
                if step < T - 1 {   // the state before the first step is a constant: no gradient needed
                    b.matmul(dhNext, dHGates.slice(rows, B * G * H), wHH, bias: nil, rows: B, beta: 1)
                }
                swap(&dh, &dhNext)
                swap(&dc, &dcNext)
            }
            // W_hh and b_hh over every step at once: the states each step read are one block.
            let previous = s.states.slice((direction.reverse ? 1 : 0) * state, T * state)
            // An LSTM's or RNN's gate gradients feed both biases: their column sums, once.
            let biases = [direction.input.bias, direction.hidden.bias].compactMap { $0 }
            let shared = cell != .gru && biases.count == 2 && biases.allSatisfy(\.trains)
            if shared {
                let sum = scratch.biasSum.slice(0, G * H)
                b.fill(sum, 0)
                b.biasBackward(sum, dOut: dXGates, rows: T * B, channels: G * H)
                for bias in biases { b.axpy(bias.gradient, sum, count: G * H, alpha: 1) }
            }
            direction.hidden.backward(b, dX: nil, dY: dHGates, x: previous, rows: T * B, biasGradient: !shared)
            direction.input.backward(b, dX: nil, dY: dXGates, x: x, rows: T * B, biasGradient: !shared)
        }
        // dX: the directions' parts added in turn, after both lanes.
        guard let dX else { return }
        for (d, direction) in directions.enumerated() {
            direction.input.inputGradient(b, dX: dX, dY: gateGradients(a, d, rows: T * B), rows: T * B, beta: d == 0 ? 0 : 1)
        }
    }
}
