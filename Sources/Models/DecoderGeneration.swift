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
    let keys, values: [Tensor]        // per layer [B, Tmax, NKV·HS]
    /// Positions cached per sequence (setting it rewinds a sequence: later positions are overwritten).
    public var lengths: [Int]
    let lengthTensor: Tensor          // [B] int32: lengths + 1 during a step (the new token included)

    public init(config c: DecoderConfig, batch B: Int, capacity: Int, backend: Backend) throws {
        batch = B
        self.capacity = capacity
        keys = try (0..<c.layers).map { _ in try backend.zeros(B * capacity * c.keyValueChannels) }
        values = try (0..<c.layers).map { _ in try backend.zeros(B * capacity * c.keyValueChannels) }
        lengths = Array(repeating: 0, count: B)
        lengthTensor = try backend.zeros(B, .i32)
    }
}

/// One decoding step's buffers: B rows of everything a layer computes.
public final class DecodeBuffers {
    let x, h, q, k, v, context, residual, up, gate, activated, mean, rstd, positions, ids: Tensor
    public init(config c: DecoderConfig, batch B: Int, backend: Backend) throws {
        func f(_ n: Int) throws -> Tensor { try backend.zeros(n) }
        (x, h, q, k, v) = (try f(B * c.hiddenSize), try f(B * c.hiddenSize), try f(B * c.queryChannels), try f(B * c.keyValueChannels),
                           try f(B * c.keyValueChannels))
        (context, residual) = (try f(B * c.queryChannels), try f(B * c.hiddenSize))
        (up, gate, activated) = (try f(B * c.intermediateSize), try f(B * c.intermediateSize), try f(B * c.intermediateSize))
        (mean, rstd, positions, ids) = (try f(B), try f(B), try backend.zeros(B, .i32), try backend.zeros(B, .i32))
    }
}

extension DecoderLayer {
    /// One new token per sequence: x [B, C] → out [B, C], its key and value appended to the cache
    /// at each sequence's position (cache.lengths, the lengths tensor already counting it).
    func decode(_ b: Backend, _ d: DecodeBuffers, x: Tensor, out: Tensor, cache: KVCache, config c: DecoderConfig,
                inverseFrequencies: Tensor?) {
        let (B, C, KC, QC, FF) = (cache.batch, c.hiddenSize, c.keyValueChannels, c.queryChannels, c.intermediateSize)
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
        b.decodeAttention(d.context, q: d.q, keyCache: cache.keys[index], valueCache: cache.values[index], lengths: cache.lengthTensor,
                          DecodeShape(batch: B, heads: c.heads, keyValueHeads: c.keyValueHeads, headSize: c.headSize, capacity: cache.capacity))
        output.forward(b, d.residual, d.context.slice(0, B * QC), rows: B)
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
    /// their keys and values; returns the logits [B, V] at each prompt's last token.
    public func prefill(_ a: DecoderActivations, cache: KVCache) -> [Float] {
        precondition(labels == 0 && a.batch == cache.batch && a.length <= cache.capacity, "prefill: the cache does not fit the prompts")
        forward(a, cache: cache)
        cache.lengths = a.lastTokens.map { $0 + 1 }
        return backend.floats(lastTokenLogits(a))
    }

    /// One token per sequence (`tokens` [B]) at its next position: the cache grows by one and the
    /// logits [B, V] of the next tokens come back.
    public func step(_ tokens: [Int32], cache: KVCache, buffers d: DecodeBuffers, logits: Tensor) -> [Float] {
        let c = config, b = backend, P = parameters!, B = cache.batch, C = c.hiddenSize
        precondition(tokens.count == B && cache.lengths.allSatisfy { $0 < cache.capacity }, "step: the cache is full")
        let positions = cache.lengths.map { Int32($0) }, counted = cache.lengths.map { Int32($0 + 1) }
        positions.withUnsafeBytes { b.upload(d.positions, $0) }
        counted.withUnsafeBytes { b.upload(cache.lengthTensor, $0) }
        tokens.withUnsafeBytes { b.upload(d.ids, $0) }
        b.embeddingForward(d.x, ids: d.ids, positions: d.positions, types: nil, word: P.embedTokens.weight,
                           position: P.positionEmbeddings?.weight ?? P.embedTokens.weight.slice(0, 0), type: nil,
                           EmbeddingShape(tokens: B, channels: C, vocabulary: c.vocabSize, positions: c.family == .gpt2 ? c.maxPositions : 0))
        for layer in P.layers {   // x → residual stream in d.x, alternating through d.h's sibling buffer
            layer.decode(b, d, x: d.x, out: d.x, cache: cache, config: c, inverseFrequencies: inverseFrequencies)
        }
        P.finalNorm.forward(b, d.h, mean: d.mean, rstd: d.rstd, d.x, rows: B, channels: C)
        P.head.forward(b, logits, d.h, rows: B)
        cache.lengths = cache.lengths.map { $0 + 1 }
        return b.floats(logits)
    }
}
