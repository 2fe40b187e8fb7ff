// Dynamic batching: one model, many concurrent callers. Callers queue their texts; one worker
// thread owns the model. When it is idle and a request arrives, it waits at most `maxWait` for
// more (while fewer than `maxBatch` texts are queued), takes whole requests up to `maxBatch`
// texts (a larger request alone), tokenizes them, runs forward passes over texts of similar
// length (little padding) and answers each caller. Requests that arrive during a forward pass
// form the next batch, so under load batches fill without waiting.
import Foundation
import Models
import Train

/// What the server says about one text.
public struct TextPrediction: Sendable {
    public let label: String
    public let probabilities: [Double]
    /// The text was longer than the model's maximum length; only its first tokens were read.
    public let truncated: Bool
}

public final class BatchingClassifier: @unchecked Sendable {
    public let labelNames: [String]
    public let maxBatch: Int
    public let maxWait: Double

    /// Requests, texts, forward passes and the most texts in one pass so far (at most maxBatch;
    /// GET /v1/model shows them).
    public struct Counters: Sendable { public var requests = 0, texts = 0, batches = 0, largestBatch = 0 }

    private struct Pending {
        let texts: [String]
        let answer: CheckedContinuation<[TextPrediction], any Error>
    }

    private let classifier: TextClassifier
    private let forward: ([Encoding]) throws -> [[Float]]
    private let condition = NSCondition()
    private var queue: [Pending] = []
    private var queuedTexts = 0
    private var stopping = false
    private var counters = Counters()
    private var worker: Thread?

    /// The model's activation arena (for `maxBatch` texts) is made here, once.
    public init(_ classifier: TextClassifier, maxBatch: Int, maxWait: Double) throws {
        precondition(maxBatch >= 1 && maxWait >= 0)
        self.classifier = classifier
        self.labelNames = classifier.labelNames
        self.maxBatch = maxBatch
        self.maxWait = maxWait
        self.forward = try classifier.forwardSession(batchSize: maxBatch)
        let thread = Thread { self.run() }   // holds self until stop() ends the loop
        thread.name = "retort-serve-model"
        thread.stackSize = 16 << 20
        worker = thread
        thread.start()
    }

    public var snapshot: Counters {
        condition.lock(); defer { condition.unlock() }
        return counters
    }

    /// Label and class probabilities for each text, in order.
    public func classify(_ texts: [String]) async throws -> [TextPrediction] {
        try await withCheckedThrowingContinuation { answer in
            condition.lock()
            if stopping {
                condition.unlock()
                answer.resume(throwing: CancellationError())
                return
            }
            queue.append(Pending(texts: texts, answer: answer))
            queuedTexts += texts.count
            condition.signal()
            condition.unlock()
        }
    }

    /// Answers what is queued, then ends the worker (the server calls it after its last request).
    public func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while let batch = nextBatch() {
            let texts = batch.flatMap(\.texts)
            do {
                let encodings = classifier.encode(texts.enumerated().map { Example(text: $1, line: $0 + 1) })
                var logits = [[Float]](repeating: [], count: encodings.count)
                let groups = similarLengthGroups(encodings.map(\.ids.count), maxGroup: maxBatch)   // padding under a quarter of a pass's tokens
                condition.lock()
                counters.batches += groups.count
                counters.largestBatch = max(counters.largestBatch, groups.map(\.count).max() ?? 0)
                condition.unlock()
                for group in groups {
                    for (i, row) in zip(group, try forward(group.map { encodings[$0] })) { logits[i] = row }
                }
                var offset = 0
                for request in batch {
                    let range = offset..<(offset + request.texts.count)
                    request.answer.resume(returning: range.map { prediction(logits[$0], truncated: encodings[$0].truncated) })
                    offset += request.texts.count
                }
            } catch {
                for request in batch { request.answer.resume(throwing: error) }
            }
        }
    }

    /// The next requests to run together, or nil once stopping with nothing queued.
    private func nextBatch() -> [Pending]? {
        condition.lock(); defer { condition.unlock() }
        while queue.isEmpty && !stopping { condition.wait() }
        if queue.isEmpty { return nil }
        let deadline = Date(timeIntervalSinceNow: maxWait)
        while queuedTexts < maxBatch && !stopping && condition.wait(until: deadline) {}
        var batch = [queue.removeFirst()], count = batch[0].texts.count
        while let next = queue.first, count + next.texts.count <= maxBatch {
            batch.append(queue.removeFirst())
            count += next.texts.count
        }
        queuedTexts -= count
        counters.requests += batch.count
        counters.texts += count
        return batch
    }

    private func prediction(_ logits: [Float], truncated: Bool) -> TextPrediction {
        let probabilities = classProbabilities(logits)
        let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] } ?? 0
        return TextPrediction(label: labelNames[best], probabilities: probabilities, truncated: truncated)
    }
}
