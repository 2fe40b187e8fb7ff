// Generating text: prompts in, tokens out, one step for every sequence at a time, each sequence
// stopping at an end-of-sequence token, a stop string, its token budget or the context length.
// Greedy decoding takes the argmax (the first on ties, as torch.argmax); sampling applies the
// temperature, keeps the top-k, then the smallest set whose probability reaches top-p, and draws
// from a seeded generator, so a seed reproduces a run.
import Backend
import Foundation

public struct SamplingOptions: Sendable {
    /// 0: greedy.
    public var temperature: Double = 0
    /// 0: no top-k.
    public var topK = 0
    /// 1: no top-p.
    public var topP: Double = 1
    public var seed: UInt64 = 0
    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }
}

/// Buffers a sampler reuses from token to token: one set per generation, shared by its sequences.
struct SamplerScratch {
    /// exp((l − max)/T) per token; the sort keys of a head.
    var weights: [Double] = [], keys: [UInt64] = []
    /// Tokens and their weight per bucket (a bucket: a weight's Double exponent and 2 mantissa
    /// bits, so weights down to 5e-324 — logits within 744·T of the top — have buckets of their own).
    var count = [Int](repeating: 0, count: SamplerScratch.bucketCount), mass = [Double](repeating: 0, count: SamplerScratch.bucketCount)
    static let bucketCount = 4096
    /// A weight's bucket: monotone in w ∈ [0, 1] (at most 4,092), so a bucket and those above it
    /// hold an upward-closed set of the order.
    static func bucket(_ w: Double) -> Int { Int(w.bitPattern >> 50) }
}

struct Sampler {
    let options: SamplingOptions
    /// splitmix64 draws: the same seed, the same tokens on every machine.
    var random: NormalRandom

    init(_ options: SamplingOptions) {
        self.options = options
        random = NormalRandom(seed: options.seed)
    }

    /// The next token from one row of logits.
    mutating func next(_ logits: ArraySlice<Float>) -> Int32 {
        var scratch = SamplerScratch()
        return next(logits, scratch: &scratch)
    }

    /// The next token from one row of logits, in buffers kept across calls.
    mutating func next(_ logits: ArraySlice<Float>, scratch: inout SamplerScratch) -> Int32 {
        let base = logits.startIndex
        guard options.temperature > 0 else {
            var best = base
            for i in logits.indices where logits[i] > logits[best] { best = i }
            return Int32(best - base)
        }
        // Weights exp((l − max)/T). Only the head of the order (by logit, then by index) is
        // sorted: the tokens of the top weight buckets, which come before every other token, so
        // sorting them gives the exact prefix of the full order. The buckets' counts and masses
        // say how many top buckets top-k, top-p and the draw need; a head that falls short by
        // rounding takes the next bucket too (all tokens at worst).
        // Logits that are not finite (an overflowed row) weigh nothing; a row with none finite
        // gives its first token.
        guard let top = logits.lazy.filter({ $0.isFinite }).max().map(Double.init) else { return 0 }
        let V = logits.count, temperature = options.temperature
        scratch.weights.removeAll(keepingCapacity: true)
        for i in 0..<SamplerScratch.bucketCount { scratch.count[i] = 0; scratch.mass[i] = 0 }
        for logit in logits {
            let w = logit.isFinite ? exp((Double(logit) - top) / temperature) : 0
            let bucket = SamplerScratch.bucket(w)
            scratch.weights.append(w)
            scratch.count[bucket] += 1
            scratch.mass[bucket] += w
        }
        // One UInt64 key per token (the logit's bits made to sort as unsigned integers, inverted
        // for descending, over the index): the sort compares integers and calls no closure.
        func key(_ i: Int) -> UInt64 {
            let logit = logits[base + i]
            let bits = logit.isFinite ? (logit == 0 ? 0 : logit).bitPattern : 0
            let ascending = logit.isFinite ? (bits & 0x8000_0000 != 0 ? ~bits : bits | 0x8000_0000) : 0
            return UInt64(~ascending) << 32 | UInt64(i)
        }
        /// The sorted head holding at least `count` tokens and more than (or, not strictly, at
        /// least) `mass` of weight.
        func head(count: Int, mass target: Double, strictly: Bool) -> [Int] {
            func enough(_ n: Int, _ m: Double) -> Bool { n >= count && (strictly ? m > target : m >= target) }
            var bucket = SamplerScratch.bucketCount - 1, n = 0, m = 0.0
            while bucket > 0 {
                n += scratch.count[bucket]; m += scratch.mass[bucket]
                if enough(n, m) { break }
                bucket -= 1
            }
            while true {
                scratch.keys.removeAll(keepingCapacity: true)
                for i in 0..<V where SamplerScratch.bucket(scratch.weights[i]) >= bucket { scratch.keys.append(key(i)) }
                scratch.keys.sort()
                let order = scratch.keys.map { Int($0 & 0xFFFF_FFFF) }
                let sum = order.reduce(0.0) { $0 + scratch.weights[$1] }   // in the order the draw walks
                if bucket == 0 || enough(order.count, sum) { return order }
                repeat { bucket -= 1 } while bucket > 0 && scratch.count[bucket] == 0
            }
        }
        let weights = scratch.weights
        var order: [Int], total: Double
        if options.topK > 0 {   // the k largest; their total
            order = Array(head(count: options.topK, mass: 0, strictly: false).prefix(options.topK))
            total = order.reduce(0.0) { $0 + weights[$1] }
        } else {
            total = weights.reduce(0, +)
            order = []
        }
        if options.topP < 1 {   // the smallest prefix whose probability reaches top-p (at least one token)
            let nucleus = options.topP * total
            if order.isEmpty { order = head(count: 1, mass: nucleus, strictly: false) }
            var kept = 0, mass = 0.0
            while kept < order.count && (kept == 0 || mass < nucleus) { mass += weights[order[kept]]; kept += 1 }
            order = Array(order.prefix(kept))
            total = mass
        }
        let draw = random.uniform() * total
        if order.isEmpty { order = head(count: 1, mass: draw, strictly: true) }
        var running = 0.0
        for token in order {
            running += weights[token]
            if draw < running { return Int32(token) }
        }
        // The draw reached the sum (rounding: `total` was summed in another order, or the draw
        // was 1): the last token of the kept order with a weight.
        return Int32(order.last { weights[$0] > 0 } ?? order.first ?? 0)
    }
}

public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var maxNewTokens: Int
    public init(prompt: [Int32], maxNewTokens: Int) { self.prompt = prompt; self.maxNewTokens = maxNewTokens }
}

public struct GenerationResult: Sendable {
    public var tokens: [Int32]
    /// "eos", "stop" (a stop string), "length" (the token budget), "context" (the model's context
    /// is full) or "interrupted" (the run was asked to stop before this sequence ended).
    public var finish: String
}

extension DecoderModel {
    /// Generates a continuation for every request, at most `batchSize` sequences at a time (nil:
    /// all): prompts prefilled together in groups of similar lengths (each right-padded), then a step per token for the sequences
    /// still running; a sequence that ends leaves the batch and the next waiting prompt is
    /// prefilled into the freed slot, so the batch stays full while prompts wait.
    /// `onToken(request, token)` is called as each token is chosen; `stopped(request, tokens so far)`
    /// may end a sequence (a stop string); `finished(request, result)` as each ends. A request's
    /// random stream is its own (seeded by its index), so batching does not change what it draws.
    /// `interrupted()`, asked before each step (Ctrl-C): when true, every sequence not yet ended
    /// (started or waiting) ends as "interrupted" with the tokens it has, and generate returns.
    public func generate(_ requests: [GenerationRequest], batchSize: Int? = nil, sampling: SamplingOptions, endTokens: Set<Int32>,
                         onToken: (Int, Int32) -> Void = { _, _ in },
                         stopped: (Int, [Int32]) -> Bool = { _, _ in false },
                         finished: (Int, GenerationResult) -> Void = { _, _ in },
                         interrupted: () -> Bool = { false }) throws -> [GenerationResult] {
        guard lora == nil || lora!.merged else {
            throw CheckpointError("generate: this model has LoRA adapters attached; generate from the folder a run saved (adapters merged)")
        }
        let N = requests.count, B = min(max(1, batchSize ?? N), N)
        precondition(N > 0 && requests.allSatisfy { !$0.prompt.isEmpty }, "generate: every prompt needs a token")
        // Only prompts with a token budget run: they size the buffers and must fit the context.
        let T = requests.filter { $0.maxNewTokens > 0 }.map(\.prompt.count).max() ?? 0
        guard T > 0 else {
            let results = requests.map { _ in GenerationResult(tokens: [], finish: "length") }
            for (s, result) in results.enumerated() { finished(s, result) }
            return results
        }
        let capacity = min(config.maxPositions, T + (requests.map(\.maxNewTokens).max() ?? 0))
        guard T < config.maxPositions else {
            throw CheckpointError("the prompt has \(T) tokens; the model's context is \(config.maxPositions)")
        }
        let a = try DecoderActivations(config: config, maxBatch: B, maxLength: T, backend: backend, inference: true, headRows: B)
        let cache = try KVCache(config: config, batch: B, capacity: capacity, backend: backend)
        let buffers = try DecodeBuffers(config: config, batch: B, backend: backend)
        let logits = try backend.zeros(B * config.vocabSize)
        var samplers: [Int: Sampler] = [:], scratch = SamplerScratch()
        var results = requests.map { _ in GenerationResult(tokens: [], finish: "length") }
        var running = requests.map { $0.maxNewTokens > 0 }
        let V = config.vocabSize
        // The cache's first `cache.active` slots hold running sequences: `sequences[slot]`, each
        // with its next token in `next[slot]`; requests from `waiting` on have not started.
        var sequences: [Int] = [], next: [Int32] = [], waiting = 0

        /// Chooses the next token of the sequence in `slot` from its logits; ends it when it is done.
        func choose(_ slot: Int, _ row: ArraySlice<Float>) {
            let s = sequences[slot]
            guard running[s] else { return }
            let token = samplers[s]!.next(row, scratch: &scratch)
            next[slot] = token
            if endTokens.contains(token) {
                running[s] = false
                results[s].finish = "eos"
                return
            }
            results[s].tokens.append(token)
            onToken(s, token)
            if stopped(s, results[s].tokens) {
                running[s] = false
                results[s].finish = "stop"
            } else if results[s].tokens.count >= requests[s].maxNewTokens {
                running[s] = false
            } else if cache.lengths[slot] >= cache.capacity {
                running[s] = false
                results[s].finish = cache.capacity >= config.maxPositions ? "context" : "length"
            }
        }
        /// Ended sequences leave the batch: each hole below the new count takes a running sequence
        /// from above it (its cache slot and next token move).
        func compact() {
            let kept = (0..<cache.active).filter { running[sequences[$0]] }
            for slot in 0..<cache.active where !running[sequences[slot]] { finished(sequences[slot], results[sequences[slot]]) }
            guard kept.count < cache.active else { return }
            let holes = (0..<kept.count).filter { !running[sequences[$0]] }
            for (hole, mover) in zip(holes, kept.filter { $0 >= kept.count }) {
                cache.move(mover, to: hole, backend: backend)
                sequences[hole] = sequences[mover]
                next[hole] = next[mover]
            }
            cache.resize(to: kept.count)
            sequences.removeLast(sequences.count - kept.count)
            next.removeLast(next.count - kept.count)
        }
        /// Prefills waiting prompts into the free slots and chooses their first tokens; a request
        /// with no token budget is finished as it is reached, without running its prompt.
        func refill() {
            let first = cache.active
            var starting: [Int] = []
            while starting.count < B - first && waiting < N {
                let s = waiting
                waiting += 1
                if requests[s].maxNewTokens > 0 { starting.append(s) } else { finished(s, results[s]) }
            }
            // Prompts of similar lengths are prefilled together, each group right-padded to its
            // longest (one long prompt among short ones would pad them all to its length), in
            // groups of at most 256 rows (a longer prompt alone): from there a group's matmuls run
            // at full speed (and the CPU's weight-only int8 kernels take up to 256), and more rows
            // only add padding, attention over longer rows and memory. (2-core Xeon, int8 SmolLM2,
            // the prefills of eight prompts of 287–646 tokens, one thread: as one padded batch 14.6
            // and 15.0 s, in groups of similar lengths without the limit 11.9 and 12.8, each alone
            // 10.0 and 11.4 at --batch-size 8, 9.6 and 9.4 at --batch-size 1.)
            guard !starting.isEmpty else { return }
            let lengths = starting.map { requests[$0].prompt.count }
            for group in similarLengthGroups(lengths, maxGroup: starting.count, enoughRows: 256) {
                let members = group.map { starting[$0] }, count = members.count, slot = cache.active
                let length = members.map { requests[$0].prompt.count }.max()!
                var ids = [Int32](repeating: 0, count: count * length), mask = [Int32](repeating: 0, count: count * length)
                for (row, s) in members.enumerated() {
                    for (t, id) in requests[s].prompt.enumerated() { ids[row * length + t] = id; mask[row * length + t] = 1 }
                    var o = sampling
                    o.seed = sampling.seed &+ UInt64(s) &* 0x9E37_79B9
                    samplers[s] = Sampler(o)
                }
                a.load(ids: ids, mask: mask, batch: count, length: length, backend: backend, forBackward: false)
                let rows = prefill(a, cache: cache, firstSlot: slot)
                sequences += members
                next += Array(repeating: 0, count: count)
                for row in 0..<count { choose(slot + row, rows[(row * V)..<((row + 1) * V)]) }
            }
        }

        cache.resize(to: 0)
        while true {
            // Ended sequences out, waiting prompts in (some may end at their first token: again),
            // until every active slot runs and the batch is full or nothing waits.
            compact()
            if interrupted() {
                let unfinished = sequences + Array(waiting..<N).filter { running[$0] }
                for s in unfinished {
                    running[s] = false
                    results[s].finish = "interrupted"
                    finished(s, results[s])
                }
                break
            }
            if cache.active < B && waiting < N {
                refill()
                continue
            }
            guard cache.active > 0 else { break }
            let rows = step(next, cache: cache, buffers: buffers, logits: logits)
            for slot in 0..<cache.active { choose(slot, rows[(slot * V)..<((slot + 1) * V)]) }
        }
        return results
    }
}
