// The recurrent layers' ops as callers use them (checked here, above the seam, like Ops.swift):
// one time step of an LSTM, GRU or Elman RNN cell, and pooling over time. A layer is a loop over
// its steps (Models/RecurrentLayer.swift): one matmul for every step's input part at once, then
// per step a matmul of the previous state and this fused pointwise step. Time-major layouts:
// a layer's outputs are [T,B,D·H] (D directions), its gates [T,B,G·H].

/// The cell of a recurrent layer, with torch's gate orders (LSTM i,f,g,o; GRU r,z,n).
public enum RecurrentCell: String, Sendable, Codable, CaseIterable {
    case lstm, gru, rnn

    /// Gate blocks of H rows in W_ih and W_hh: 4 (LSTM), 3 (GRU), 1 (RNN).
    public var gates: Int {
        switch self { case .lstm: return 4; case .gru: return 3; case .rnn: return 1 }
    }

    /// What a step saves for backward, per hidden unit: LSTM its activated gates; GRU r, z, n
    /// and W_hn·h + b_hn; an RNN nothing (its output is enough).
    public var savedWidth: Int { self == .rnn ? 0 : 4 }

    /// torch's class name.
    public var torchName: String {
        switch self { case .lstm: return "LSTM"; case .gru: return "GRU"; case .rnn: return "RNN" }
    }
}

/// Time step `step` of a layer over `batch` sequences of `hidden` units; the step's output rows
/// are `outputStride` elements apart (D·H in a [T,B,D·H] output).
public struct RecurrentStep: Sendable {
    public var cell: RecurrentCell
    public var batch, hidden, step, outputStride: Int
    public init(cell: RecurrentCell, batch: Int, hidden: Int, step: Int, outputStride: Int) {
        self.cell = cell; self.batch = batch; self.hidden = hidden; self.step = step; self.outputStride = outputStride
    }
    var state: Int { batch * hidden }
    var gateCount: Int { batch * cell.gates * hidden }
    var savedCount: Int { batch * cell.savedWidth * hidden }
    var outputSpan: Int { (batch - 1) * outputStride + hidden }
}

public enum PoolingMode: String, Sendable, Codable, CaseIterable {
    case mean, max, last
    var code: Int32 { self == .mean ? 0 : self == .max ? 1 : 2 }
}

/// Pooling of time-major y [T,B,C] into [B,C]; `last` takes step len−1 for columns below
/// `split` (a forward direction) and step 0 from there on (a reverse direction's final state).
public struct PoolShape: Sendable {
    public var length, batch, channels: Int
    public var mode: PoolingMode
    public var split: Int
    public init(length: Int, batch: Int, channels: Int, mode: PoolingMode, split: Int? = nil) {
        self.length = length; self.batch = batch; self.channels = channels; self.mode = mode; self.split = split ?? channels
    }
}

public extension Backend {
    /// One step forward: h (and an LSTM's c) from the step's pre-activations xGates (x·W_ihᵀ + b_ih)
    /// and hGates (hPrev·W_hhᵀ + b_hh), h also written to y's rows (0 at steps past a sequence's
    /// length, where the state carries over); `saved` for backward (LSTM, GRU). An LSTM's `saved`
    /// may be `xGates` itself: each unit's pre-activations are read before its gates are written.
    func recurrentForward(_ h: Tensor, c: Tensor?, y: Tensor, saved: Tensor?, xGates: Tensor, hGates: Tensor, hPrev: Tensor,
                          cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let lstm = s.cell == .lstm
        precondition(h.count == s.state && hPrev.count == s.state && xGates.count == s.gateCount && hGates.count == s.gateCount
                     && y.count >= s.outputSpan && lengths.count >= s.batch && (saved?.count ?? 0) == s.savedCount
                     && (c?.count ?? 0) == (lstm ? s.state : 0) && (cPrev?.count ?? 0) == (lstm ? s.state : 0),
                     "recurrentForward: operands do not fit the \(s.cell) step (state B·H, gates B·G·H, saved, y)")
        precondition(lstm || !(saved?.overlaps(xGates) ?? false), "recurrentForward: only an LSTM's saved may be its xGates")
        f32(h, c, y, saved, xGates, hGates, hPrev, cPrev, op: "recurrentForward")
        i32(lengths, "recurrentForward: lengths")
        runRecurrentForward(h, c: c, y: y, saved: saved, xGates: xGates, hGates: hGates, hPrev: hPrev, cPrev: cPrev, lengths: lengths, s)
    }

    /// One step backward from dY (the step's output rows) and dh, dc (h's and c's gradients from
    /// later steps): dXGates (the pre-activations' gradient through xGates; also W_hh's, except a
    /// GRU's, which is dHGates), dhPrev (the direct part: the caller adds dXGates·W_hh or
    /// dHGates·W_hh) and an LSTM's dcPrev, all overwritten. Reads: LSTM saved, c, cPrev; GRU saved,
    /// hPrev; RNN h. An LSTM's dXGates may be `saved` itself (each unit's gates are read before
    /// their gradients are written).
    func recurrentBackward(dXGates: Tensor, dHGates: Tensor?, dhPrev: Tensor, dcPrev: Tensor?, dY: Tensor, dh: Tensor, dc: Tensor?,
                           saved: Tensor?, h: Tensor, c: Tensor?, hPrev: Tensor, cPrev: Tensor?, lengths: Tensor, _ s: RecurrentStep) {
        let lstm = s.cell == .lstm, gru = s.cell == .gru
        precondition(dXGates.count == s.gateCount && (dHGates?.count ?? 0) == (gru ? s.gateCount : 0) && dhPrev.count == s.state
                     && dh.count == s.state && dY.count >= s.outputSpan && h.count == s.state && hPrev.count == s.state
                     && (saved?.count ?? 0) == s.savedCount && lengths.count >= s.batch
                     && [dcPrev, dc, c, cPrev].allSatisfy({ ($0?.count ?? 0) == (lstm ? s.state : 0) }),
                     "recurrentBackward: operands do not fit the \(s.cell) step")
        precondition(lstm || !(saved.map { dXGates.overlaps($0) || (dHGates?.overlaps($0) ?? false) } ?? false),
                     "recurrentBackward: only an LSTM's dXGates may be its saved")
        f32(dXGates, dHGates, dhPrev, dcPrev, dY, dh, dc, saved, h, c, hPrev, cPrev, op: "recurrentBackward")
        i32(lengths, "recurrentBackward: lengths")
        runRecurrentBackward(dXGates: dXGates, dHGates: dHGates, dhPrev: dhPrev, dcPrev: dcPrev, dY: dY, dh: dh, dc: dc, saved: saved,
                             h: h, c: c, hPrev: hPrev, cPrev: cPrev, lengths: lengths, s)
    }

    /// out [B,C] pooled over each sequence's lengths[b] steps of y [T,B,C]; max saves argmax [B,C].
    func sequencePoolForward(_ out: Tensor, argmax: Tensor?, _ y: Tensor, lengths: Tensor, _ s: PoolShape) {
        precondition(out.count == s.batch * s.channels && y.count == s.length * s.batch * s.channels && lengths.count >= s.batch
                     && (s.mode != .max || argmax?.count == s.batch * s.channels), "sequencePoolForward: out not B·C, y not T·B·C or no argmax for max")
        f32(out, y, op: "sequencePoolForward")
        i32(argmax, "sequencePoolForward: argmax")
        i32(lengths, "sequencePoolForward: lengths")
        runSequencePoolForward(out, argmax: argmax, y, lengths: lengths, s)
    }

    /// dY [T,B,C] (overwritten) from dOut [B,C].
    func sequencePoolBackward(dY: Tensor, dOut: Tensor, argmax: Tensor?, lengths: Tensor, _ s: PoolShape) {
        precondition(dOut.count == s.batch * s.channels && dY.count == s.length * s.batch * s.channels && lengths.count >= s.batch
                     && (s.mode != .max || argmax?.count == s.batch * s.channels), "sequencePoolBackward: dOut not B·C, dY not T·B·C or no argmax for max")
        f32(dY, dOut, op: "sequencePoolBackward")
        i32(argmax, "sequencePoolBackward: argmax")
        i32(lengths, "sequencePoolBackward: lengths")
        runSequencePoolBackward(dY: dY, dOut: dOut, argmax: argmax, lengths: lengths, s)
    }
}
