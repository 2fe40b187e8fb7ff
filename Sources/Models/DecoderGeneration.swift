// Text generation with a decoder: a prefill of the prompts (the training forward, causal, over
// right-padded rows, with each layer's keys and values copied into a KV cache), then one token
// per sequence per step against the cache (DecoderLayer.decode: decoding attention, no T×T).
//   KV cache per layer: keys, values [B, Tmax, NKV·HS] — position-major, so the prefill's k and
//   v rows [B, T, NKV·HS] copy in unchanged and a step's new row is one copy per sequence.
// Sampling runs on the host over the logits of each step: greedy, or temperature, then top-k,
// then top-p (transformers' order), from a seeded generator (reproducible by seed).
import Backend
import Foundation

public final class KVCache {
    public let batch, capacity: Int
    public let keys, values: [Tensor] // per layer [B, Tmax, NKV·HS]
    /// Positions cached per slot (setting it rewinds a sequence: later positions are overwritten).
    public var lengths: [Int]
    /// Slots a step runs: the first `active` (generation moves running sequences down as others
    /// end, and prefills waiting prompts into the slots after them).
    public private(set) var active: Int
    /// The slot a prefill's first sequence goes to (the others follow it).
    var prefillSlot = 0
    let lengthTensor: Tensor          // [B] int32: lengths + 1 during a step (the new token included)
    private let channels: Int         // NKV·HS floats per cached position

    public init(config c: DecoderConfig, batch B: Int, capacity: Int, backend: Backend) throws {
        batch = B
        active = B
        self.capacity = capacity
        channels = c.keyValueChannels
        keys = try (0..<c.layers).map { _ in try backend.zeros(B * capacity * c.keyValueChannels) }
        values = try (0..<c.layers).map { _ in try backend.zeros(B * capacity * c.keyValueChannels) }
        lengths = Array(repeating: 0, count: B)
        lengthTensor = try backend.zeros(B, .i32)
    }

    /// Slot `source`'s keys, values and length into slot `destination` (both below `active`).
    public func move(_ source: Int, to destination: Int, backend: Backend) {
        precondition(source < active && destination < active, "KVCache.move: slot out of range")
        guard source != destination else { return }
        let (n, slot) = (lengths[source] * channels, capacity * channels)
        for layer in keys.indices {
            backend.copy(keys[layer].slice(destination * slot, n), keys[layer].slice(source * slot, n))
            backend.copy(values[layer].slice(destination * slot, n), values[layer].slice(source * slot, n))
        }
        lengths[destination] = lengths[source]
    }

    /// Steps run the first `count` slots only: fewer after the running sequences were moved
    /// there, more after a prefill into the slots past them.
    public func resize(to count: Int) {
        precondition(count >= 0 && count <= batch, "KVCache.resize: \(count) of \(batch) slots")
        active = count
    }
}

/// One decoding step's buffers: B rows of everything a layer computes.
public final class DecodeBuffers {
    let x, h, q, k, v, context, residual, up, gate, activated, mean, rstd, positions, ids: Tensor
    public convenience init(config c: DecoderConfig, batch B: Int, backend: Backend) throws {
        func f(_ n: Int, _ dtype: DType = .f32) throws -> Tensor { try backend.zeros(B * n, dtype) }
        try self.init([f(c.hiddenSize), f(c.hiddenSize), f(c.queryChannels), f(c.keyValueChannels), f(c.keyValueChannels),
                       f(c.queryChannels), f(c.hiddenSize), f(c.intermediateSize), f(c.intermediateSize), f(c.intermediateSize),
                       f(1), f(1), f(1, .i32), f(1, .i32)])
    }

    private init(_ t: [Tensor]) {
        (x, h, q, k, v, context, residual) = (t[0], t[1], t[2], t[3], t[4], t[5], t[6])
        (up, gate, activated, mean, rstd, positions, ids) = (t[7], t[8], t[9], t[10], t[11], t[12], t[13])
    }

    /// The first `rows` of every buffer (a batch that shrank as sequences ended).
    func first(_ rows: Int, of batch: Int) -> DecodeBuffers {
        guard rows != batch else { return self }
        let all = [x, h, q, k, v, context, residual, up, gate, activated, mean, rstd, positions, ids]
        return DecodeBuffers(all.map { $0.slice(0, $0.count / batch * rows) })
    }
}

extension DecoderLayer {
    /// One new token per sequence: x [B, C] → out [B, C], its key and value appended to the cache
    /// at each sequence's position (cache.lengths, the lengths tensor already counting it).
    func decode(_ b: Backend, _ d: DecodeBuffers, x: Tensor, out: Tensor, cache: KVCache, config c: DecoderConfig,
                inverseFrequencies: Tensor?) {
        let (B, C, KC, FF) = (cache.active, c.hiddenSize, c.keyValueChannels, c.intermediateSize)
        inputNorm.forward(b, d.h, mean: d.mean, rstd: d.rstd, x, rows: B, channels: C)
        query.forward(b, d.q, d.h, rows: B)
        key.forward(b, d.k, d.h, rows: B)
        value.forward(b, d.v, d.h, rows: B)
        if let inv = inverseFrequencies {
            b.rope(d.q, d.q, positions: d.positions, inverseFrequencies: inv, RoPEShape(tokens: B, heads: c.heads, headSize: c.headSize))
            b.rope(d.k, d.k, positions: d.positions, inverseFrequencies: inv, RoPEShape(tokens: B, heads: c.keyValueHeads, headSize: c.headSize))
        }
        for s in 0..<B {
            let row = (s * cache.capacity + cache.lengths[s]) * KC
            b.copy(cache.keys[index].slice(row, KC), d.k.slice(s * KC, KC))
            b.copy(cache.values[index].slice(row, KC), d.v.slice(s * KC, KC))
        }
        let slots = B * cache.capacity * KC
        b.decodeAttention(d.context, q: d.q, keyCache: cache.keys[index].slice(0, slots), valueCache: cache.values[index].slice(0, slots),
                          lengths: cache.lengthTensor.slice(0, B),
                          DecodeShape(batch: B, heads: c.heads, keyValueHeads: c.keyValueHeads, headSize: c.headSize, capacity: cache.capacity,
                                      longest: (cache.lengths.prefix(B).max() ?? 0) + 1))
        output.forward(b, d.residual, d.context, rows: B)
        b.axpy(d.residual, x, count: B * C, alpha: 1)
        postAttentionNorm.forward(b, d.h, mean: d.mean, rstd: d.rstd, d.residual, rows: B, channels: C)
        up.forward(b, d.up, d.h, rows: B)
        if let gate {
            gate.forward(b, d.gate, d.h, rows: B)
            b.swigluForward(d.activated, gate: d.gate, up: d.up, count: B * FF)
        } else {
            b.geluForward(d.activated, d.up, count: B * FF, tanh: true)
        }
        down.forward(b, out, d.activated, rows: B)
        b.axpy(out, d.residual, count: B * C, alpha: 1)
    }
}

extension DecoderModel {
    /// Runs the prompts loaded in `a` (right-padded, an inference arena) and fills `cache` with
    /// their keys and values, from slot `firstSlot` on (the slots up to the last one filled become
    /// active); returns the logits [B, V] at each prompt's last token.
    public func prefill(_ a: DecoderActivations, cache: KVCache, firstSlot: Int = 0) -> [Float] {
        precondition(labels == 0 && firstSlot + a.batch <= cache.batch && a.length <= cache.capacity, "prefill: the cache does not fit the prompts")
        cache.prefillSlot = firstSlot
        forward(a, cache: cache)
        for (s, last) in a.lastTokens.enumerated() { cache.lengths[firstSlot + s] = last + 1 }
        cache.resize(to: max(cache.active, firstSlot + a.batch))
        return backend.floats(lastTokenLogits(a))
    }

    /// One token per active slot (`tokens` [B], B = cache.active) at its next position: the cache
    /// grows by one and the logits [B, V] of the next tokens come back.
    public func step(_ tokens: [Int32], cache: KVCache, buffers: DecodeBuffers, logits: Tensor) -> [Float] {
        let c = config, b = backend, P = parameters!, B = cache.active, C = c.hiddenSize
        let d = buffers.first(B, of: cache.batch)
        let lengths = cache.lengths.prefix(B)
        precondition(tokens.count == B && lengths.allSatisfy { $0 < cache.capacity }, "step: the cache is full")
        let positions = lengths.map { Int32($0) }, counted = lengths.map { Int32($0 + 1) }
        positions.withUnsafeBytes { b.upload(d.positions, $0) }
        counted.withUnsafeBytes { b.upload(cache.lengthTensor.slice(0, B), $0) }
        tokens.withUnsafeBytes { b.upload(d.ids, $0) }
        b.embeddingForward(d.x, ids: d.ids, positions: d.positions, types: nil, word: P.embedTokens.weight,
                           position: P.positionEmbeddings?.weight ?? P.embedTokens.weight.slice(0, 0), type: nil,
                           EmbeddingShape(tokens: B, channels: C, vocabulary: c.vocabSize, positions: c.family == .gpt2 ? c.maxPositions : 0))
        for layer in P.layers {   // x → residual stream in d.x, alternating through d.h's sibling buffer
            layer.decode(b, d, x: d.x, out: d.x, cache: cache, config: c, inverseFrequencies: inverseFrequencies)
        }
        P.finalNorm.forward(b, d.h, mean: d.mean, rstd: d.rstd, d.x, rows: B, channels: C)
        P.head.forward(b, logits.slice(0, B * c.vocabSize), d.h, rows: B)
        for s in 0..<B { cache.lengths[s] += 1 }
        return b.floats(logits.slice(0, B * c.vocabSize))
    }
}
