// The gradient all-reduce of a data-parallel step. On the CPU a gradient thread sums each
// layer's gradients over the ranks (a blocking MPI_Allreduce, Open MPI's fastest) as soon as the
// hand-written backward has finished that layer (the model's `layerGradientsReady` hook, armed
// for the step's last micro-batch), while the backward goes on with the layers below; `finish`
// queues what no layer covered (embeddings, the head, adapters, a distillation projection) and
// waits for the thread, bounded by the job's timeout. On CUDA with NCCL the same hook starts the
// layer's all-reduce on NCCL's own stream, ordered after the backward's work queued so far by an
// event, while the backward's kernels go on with the layers below; without NCCL (sums through
// host memory) everything is summed at the end. The gradients are left summed, not averaged:
// the trainer folds 1/N into the clipping factor.
import Backend
import Foundation
import Models

final class GradientExchange {
    let group: ProcessGroup
    let backend: Backend
    /// What the optimizer steps: the buffers to sum (Optimizer.gradientGroups).
    let gradients: [Tensor]
    /// Whether the next layers' hooks start sums (the last micro-batch of a step).
    var armed = false
    /// Ranges (buffer, elements) whose sums have started this step.
    private var started: [(buffer: ObjectIdentifier, range: Range<Int>)] = []
    /// The CPU's gradient thread (nil on a device, or when MPI allows one calling thread only).
    private let worker: SumThread?
    /// Buckets started by layer hooks over the run.
    private(set) var layerBuckets = 0
    /// On a device: whether layer hooks start sums (false once they found the sums go through
    /// host memory), and a hook's failure, thrown by finish.
    private var deviceHooks: Bool
    private var hookFailure: Error?

    init(group: ProcessGroup, backend: Backend, gradients: [Tensor]) {
        self.group = group; self.backend = backend; self.gradients = gradients
        worker = backend.kind == .cpu && group.serialized ? SumThread(group: group) : nil
        deviceHooks = backend.kind != .cpu
    }

    deinit { worker?.stop() }

    /// The hook: `grads` (one layer's gradient tensors: its parameters', its adapters') are
    /// final for this step. Queues the sum of each buffer's part that is one contiguous span of
    /// a buffer the optimizer steps (a span may take in gradients the optimizer leaves alone,
    /// such as a stage's idle ones: summing them is harmless).
    func layerFinished(_ grads: [Tensor]) {
        guard armed, worker != nil || deviceHooks, hookFailure == nil else { return }
        for part in Dictionary(grouping: grads, by: { ObjectIdentifier($0.buffer) }).values {
            var seen = Set<Int>()
            let sorted = part.filter { seen.insert($0.offset).inserted }.sorted { $0.offset < $1.offset }   // GPT-2's q/k/v share an A
            guard let first = sorted.first, zip(sorted, sorted.dropFirst()).allSatisfy({ $0.offset + $0.count == $1.offset }) else { continue }
            let span = first.offset..<(sorted.last!.offset + sorted.last!.count)
            guard gradients.contains(where: { $0.buffer === first.buffer }),
                  !started.contains(where: { $0.buffer == ObjectIdentifier(first.buffer) && $0.range.overlaps(span) }) else { continue }
            let bucket = Tensor(first.buffer, offset: span.lowerBound, count: span.count)
            if let worker {
                worker.enqueue(bucket)
            } else {
                do {
                    guard try group.startDeviceSum([bucket], backend: backend) else { deviceHooks = false; return }
                } catch {
                    hookFailure = error
                    return
                }
            }
            started.append((ObjectIdentifier(first.buffer), span))
            layerBuckets += 1
        }
    }

    /// Sums every gradient not yet started, waits for all sums, and readies the next step.
    func finish() throws {
        defer { armed = false; started = [] }
        if let failure = hookFailure { hookFailure = nil; throw failure }
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
        if let worker {
            rest.forEach(worker.enqueue)
            try worker.drain()
        } else {   // also waits for the sums the layer hooks started on a device
            try group.sum(rest, backend: backend, what: "the gradient all-reduce")
        }
    }
}

/// One thread that sums queued CPU tensors over the ranks, in order; the training thread waits
/// for it (`drain`) with the job's timeout. MPI is never called by both threads at once: the
/// training thread's own collectives come after `drain`.
final class SumThread: @unchecked Sendable {
    let group: ProcessGroup
    private let condition = NSCondition()
    private var queue: [Tensor] = []
    private var queued = 0, done = 0
    private var failure: Error?
    private var stopping = false

    init(group: ProcessGroup) {
        self.group = group
        let thread = Thread { self.loop() }   // holds self until stop() ends the loop
        thread.name = "retort-gradient-sums"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let t = queue.removeFirst()
            condition.unlock()
            var error: Error?
            do { try group.sumNow(t, what: "the gradient all-reduce") } catch let e { error = e }
            condition.lock()
            done += 1
            if failure == nil { failure = error }
            condition.broadcast()
            condition.unlock()
        }
    }

    func enqueue(_ t: Tensor) {
        condition.lock()
        queue.append(t)
        queued += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every queued sum is done; throws its error, or the job's timeout.
    func drain() throws {
        let deadline = Date().addingTimeInterval(group.timeout)
        condition.lock()
        defer { condition.unlock() }
        while done < queued {
            if !condition.wait(until: deadline) && done < queued { throw group.timedOut("the gradient all-reduce") }
        }
        if let failure { self.failure = nil; throw failure }
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }
}
