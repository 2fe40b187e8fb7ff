// The gradient all-reduce of a data-parallel step. On the CPU each layer's gradients start
// summing over the ranks as soon as the hand-written backward has finished that layer (the
// model's `layerGradientsReady` hook, armed for the step's last micro-batch), and every MPI
// call the hook makes moves the earlier buckets along while the backward goes on; `finish`
// then sums what no layer covered (embeddings, the head, adapters, a distillation projection)
// and waits for all of it. On a device everything is summed at the end (through host memory).
// The gradients are left summed, not averaged: the trainer folds 1/N into the clipping factor.
import Backend
import Models

final class GradientExchange {
    let group: ProcessGroup
    let backend: Backend
    /// What the optimizer steps: the buffers to sum (Optimizer.gradientGroups).
    let gradients: [Tensor]
    /// Whether the next layers' hooks start sums (the last micro-batch of a step).
    var armed = false
    private var pending: [ProcessGroup.Request] = []
    /// Ranges (buffer, elements) whose sums have started this step.
    private var started: [(buffer: ObjectIdentifier, range: Range<Int>)] = []
    /// The first failure of a hook (a hook cannot throw); `finish` rethrows it.
    private var failure: Error?
    /// Buckets started by layer hooks over the run (the perf suite and tests read it).
    private(set) var layerBuckets = 0

    init(group: ProcessGroup, backend: Backend, gradients: [Tensor]) {
        self.group = group; self.backend = backend; self.gradients = gradients
    }

    /// The hook: `grads` (one layer's gradient tensors) are final for this step. Starts their
    /// sum when they are one contiguous span of a gradient buffer (CPU only), and tests the
    /// sums in flight.
    func layerFinished(_ grads: [Tensor]) {
        guard armed, backend.kind == .cpu, failure == nil, let first = grads.first else { return }
        let sorted = grads.sorted { $0.offset < $1.offset }
        guard sorted.allSatisfy({ $0.buffer === first.buffer }),
              zip(sorted, sorted.dropFirst()).allSatisfy({ $0.offset + $0.count == $1.offset }) else { return }
        let span = sorted[0].offset..<(sorted.last!.offset + sorted.last!.count)
        guard gradients.contains(where: { $0.buffer === first.buffer && $0.offset <= span.lowerBound && span.upperBound <= $0.offset + $0.count }),
              !started.contains(where: { $0.buffer == ObjectIdentifier(first.buffer) && $0.range.overlaps(span) }) else { return }
        do {
            pending += try group.startSum(Tensor(first.buffer, offset: span.lowerBound, count: span.count), what: "the gradient all-reduce")
            started.append((ObjectIdentifier(first.buffer), span))
            layerBuckets += 1
            try group.poll(&pending)
        } catch {
            failure = error
        }
    }

    /// Sums every gradient not yet started, waits for all sums, and readies the next step.
    func finish() throws {
        defer { armed = false; started = []; pending = [] }
        if let failure { self.failure = nil; throw failure }
        var rest: [Tensor] = []
        for g in gradients {   // the complement of the started spans within g
            var cursor = g.offset
            let end = g.offset + g.count
            for s in started.filter({ $0.buffer == ObjectIdentifier(g.buffer) }).map(\.range).sorted(by: { $0.lowerBound < $1.lowerBound }) {
                let lower = max(s.lowerBound, g.offset), upper = min(s.upperBound, end)
                guard lower < upper else { continue }
                if cursor < lower { rest.append(Tensor(g.buffer, offset: cursor, count: lower - cursor)) }
                cursor = max(cursor, upper)
            }
            if cursor < end { rest.append(Tensor(g.buffer, offset: cursor, count: end - cursor)) }
        }
        if backend.kind == .cpu {
            pending += try rest.flatMap { try group.startSum($0, what: "the gradient all-reduce") }
            try group.wait(&pending)
        } else {
            try group.sum(rest, backend: backend, what: "the gradient all-reduce")
        }
    }
}
