// Attention of one new query per sequence against a KV cache (decoding), with grouped-query heads:
//   q, out: [B, NH·HS]; k_cache, v_cache: [B, Tmax, NKV·HS] (a prefill's k, v rows [B, T, NKV·HS]
//   copy in unchanged); lengths: [B] int32, the cached
//   positions each query attends to (its own included, 1 ≤ length ≤ Tmax); query head h reads
//   key/value head h / (NH / NKV).
//   out = softmax(scale·q·kᵀ over the first `length` keys)·V.
// Parallel over (b, key/value head, chunk of DECODE_CHUNK positions): a task reads each key and
// value row of its chunk once for all G = NH / NKV query heads of the group, scores them with
// vector dot products into a buffer, and keeps each head's chunk maximum m, sum s = Σ e^(score−m)
// and unnormalised output o = Σ e^(score−m)·v. A sequence that fits one chunk writes o / s
// directly; longer ones merge their chunks' partials afterwards (M = max m, out = Σ o·e^(m−M) /
// Σ s·e^(m−M)). Chunks depend only on the positions, so a sequence's output is the same whatever
// the batch, the other lengths or the thread count.
#include "common.h"
#include <stdlib.h>

#define DECODE_CHUNK 128

typedef struct {
    float *out, *partials;   // partials: [B, chunks, NKV, G, 2 + HS] (m, s, o) when chunks > 1
    const float *q, *k, *v; const int32_t *lengths;
    int NH, NKV, HS, Tmax, chunks; float scale;
} decode_args;

// Σ of 16 lanes as a tree of halves (vectorises; the order is fixed, so every clone agrees).
RT_INLINE float lanes_sum(v16 x) {
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v4 __attribute__((vector_size(16)));
    v8 h = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 f = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    return (f[0] + f[2]) + (f[1] + f[3]);
}

RT_INLINE float dot(const float *a, const float *b, int n) {
    v16 acc = {0};
    int d = 0;
    for (; d + 16 <= n; d += 16) acc += v16_load(a + d) * v16_load(b + d);
    float s = lanes_sum(acc);
    for (; d < n; d++) s += a[d] * b[d];
    return s;
}

// o[0..HS) = Σ_t p[t]·v[t·row + d], four vectors of dimensions at a time, then the tail.
RT_INLINE void weighted_rows(float *o, const float *p, const float *v, int64_t row, int n, int HS) {
    int d0 = 0;
    for (; d0 + 64 <= HS; d0 += 64) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int t = 0; t < n; t++) {
            const float *r = v + t * row + d0;
            const v16 w = v16_splat(p[t]);
            a0 += w * v16_load(r); a1 += w * v16_load(r + 16); a2 += w * v16_load(r + 32); a3 += w * v16_load(r + 48);
        }
        v16_store(o + d0, a0); v16_store(o + d0 + 16, a1); v16_store(o + d0 + 32, a2); v16_store(o + d0 + 48, a3);
    }
    for (; d0 + 16 <= HS; d0 += 16) {
        v16 a = {0};
        for (int t = 0; t < n; t++) a += v16_splat(p[t]) * v16_load(v + t * row + d0);
        v16_store(o + d0, a);
    }
    for (; d0 < HS; d0++) {
        float a = 0;
        for (int t = 0; t < n; t++) a += p[t] * v[t * row + d0];
        o[d0] = a;
    }
}

RT_TASK(decode_chunk_task) {
    decode_args *a = ctx;
    const int NKV = a->NKV, HS = a->HS, G = a->NH / NKV, chunks = a->chunks;
    const int64_t row = (int64_t)NKV * HS;   // between consecutive positions
    float *scaled = rt_thread_scratch(thread, 0, sizeof(float) * (size_t)G * HS);
    float *scores = rt_thread_scratch(thread, 1, sizeof(float) * (size_t)G * DECODE_CHUNK);
    float *direct = rt_thread_scratch(thread, 2, sizeof(float) * (size_t)G * (2 + HS));
    for (int64_t item = b; item < e; item++) {
        const int64_t batch = item / ((int64_t)NKV * chunks);
        const int chunk = (int)(item / NKV % chunks), kv = (int)(item % NKV);
        const int start = chunk * DECODE_CHUNK, length = a->lengths[batch];
        const int n = length - start < DECODE_CHUNK ? length - start : DECODE_CHUNK;
        float *out = a->out + (batch * a->NH + (int64_t)kv * G) * HS;   // the group's G heads
        float *partial = chunks > 1 ? a->partials + (item * G) * (2 + HS) : direct;
        if (!scaled || !scores || !direct) {   // out of memory: NaN rather than a wrong answer
            for (int i = 0; i < G * HS; i++) out[i] = NAN;
            if (chunks > 1) for (int g = 0; g < G; g++) partial[g * (2 + HS)] = partial[g * (2 + HS) + 1] = NAN;
            continue;
        }
        if (n <= 0) {   // past this sequence's end: an empty partial (a length of 0 alone: NaN, as its softmax is)
            for (int g = 0; g < G; g++) { partial[g * (2 + HS)] = -INFINITY; partial[g * (2 + HS) + 1] = 0; }
            if (chunks == 1) for (int i = 0; i < G * HS; i++) out[i] = NAN;
            continue;
        }
        const float *k = a->k + (batch * a->Tmax + start) * row + (int64_t)kv * HS;
        const float *v = a->v + (batch * a->Tmax + start) * row + (int64_t)kv * HS;
        const float *q = a->q + (batch * a->NH + (int64_t)kv * G) * HS;   // the group's G query heads
        for (int i = 0; i < G * HS; i++) scaled[i] = q[i] * a->scale;
        for (int t = 0; t < n; t++)
            for (int g = 0; g < G; g++) scores[g * DECODE_CHUNK + t] = dot(scaled + g * HS, k + t * row, HS);
        for (int g = 0; g < G; g++) {
            float *p = scores + g * DECODE_CHUNK, *m = partial + g * (2 + HS);
            float top = -INFINITY;
            for (int t = 0; t < n; t++) top = p[t] > top ? p[t] : top;
            v16 sums = {0};
            int t = 0;
            for (; t + 16 <= n; t += 16) {
                const v16 x = rt_exp16(v16_load(p + t) - top);
                v16_store(p + t, x);
                sums += x;
            }
            float sum = lanes_sum(sums);
            for (; t < n; t++) { p[t] = rt_expf(p[t] - top); sum += p[t]; }
            m[0] = top;
            m[1] = sum;
            weighted_rows(m + 2, p, v, row, n, HS);
        }
        if (chunks == 1) {   // the whole sequence: normalise in place
            for (int g = 0; g < G; g++) {
                const float inverse = 1.0f / partial[g * (2 + HS) + 1];
                for (int d = 0; d < HS; d++) out[g * HS + d] = partial[g * (2 + HS) + 2 + d] * inverse;
            }
        }
    }
}

// out row (b, h) from its chunks' partials.
RT_TASK(decode_merge_task) {
    decode_args *a = ctx;
    const int NKV = a->NKV, HS = a->HS, G = a->NH / NKV, chunks = a->chunks;
    for (int64_t bh = b; bh < e; bh++) {
        const int64_t batch = bh / a->NH;
        const int h = (int)(bh % a->NH), kv = h / G, g = h % G;
        const float *first = a->partials + ((batch * chunks * NKV + kv) * G + g) * (2 + HS);
        const int64_t stride = (int64_t)NKV * G * (2 + HS);   // between a head's partials of consecutive chunks
        float top = -INFINITY, sum = 0;
        for (int c = 0; c < chunks; c++) top = first[c * stride] > top ? first[c * stride] : top;
        float *out = a->out + bh * HS;
        for (int d = 0; d < HS; d++) out[d] = 0;
        for (int c = 0; c < chunks; c++) {
            const float *m = first + c * stride;
            if (m[1] == 0) continue;   // an empty chunk
            const float weight = rt_expf(m[0] - top);
            sum += m[1] * weight;
            for (int d = 0; d < HS; d++) out[d] += m[2 + d] * weight;
        }
        const float inverse = 1.0f / sum;
        for (int d = 0; d < HS; d++) out[d] *= inverse;
    }
}

void rt_decode_attention(float *out, const float *q, const float *k_cache, const float *v_cache, const int32_t *lengths,
                         int B, int NH, int NKV, int HS, int Tmax, float scale) {
    int longest = 0;
    for (int b = 0; b < B; b++) longest = lengths[b] > longest ? lengths[b] : longest;
    decode_args a = { .out = out, .q = q, .k = k_cache, .v = v_cache, .lengths = lengths, .NH = NH, .NKV = NKV, .HS = HS,
                      .Tmax = Tmax, .scale = scale, .chunks = (longest + DECODE_CHUNK - 1) / DECODE_CHUNK };
    if (a.chunks < 1) a.chunks = 1;
    const int64_t items = (int64_t)B * NKV * a.chunks;
    if (a.chunks > 1) a.partials = malloc(sizeof(float) * (size_t)items * (NH / NKV) * (2 + HS));
    if (a.chunks > 1 && !a.partials) {   // out of memory: NaN rather than a wrong answer
        for (int64_t i = 0; i < (int64_t)B * NH * HS; i++) out[i] = NAN;
        return;
    }
    rt_parallel_for(items, 1, decode_chunk_task, &a);
    if (a.chunks > 1) {
        rt_parallel_for((int64_t)B * NH, 1 + rt_balanced_grain((int64_t)B * NH), decode_merge_task, &a);
        free(a.partials);
    }
}
