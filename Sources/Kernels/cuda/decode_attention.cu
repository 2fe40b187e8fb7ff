// Attention of one new query per sequence against a KV cache (decoding), with grouped-query heads:
//   q, out: [B, NH·HS]; k_cache, v_cache: [B, Tmax, NKV·HS]; lengths: [B] int32 (1 ≤ length ≤ Tmax);
//   query head h reads key/value head h / (NH / NKV).
//   out = softmax(scale·q·kᵀ over the first `length` keys)·V.
// Split over the cache (as the CPU kernel is): decode_attention runs one warp per (b, h, chunk of
// `chunk` positions), launch ≥ B·NH·chunks·32 threads, blockDim a multiple of 32; chunks·chunk
// covers every length (≤ Tmax, the caches' stride). Each lane owns head dimensions lane, lane + 32, … (HS ≤ 256): a key's score
// is a warp sum, its V row is read coalesced, an online softmax runs over the chunk. With
// partials NULL (one chunk, as long as the longest length) the warp writes out itself; otherwise it writes its
// chunk's maximum m, sum s = Σ e^(score−m) and o = Σ e^(score−m)·v to
//   partials: [B·NH, chunks, 2 + HS]
// and decode_attention_merge (one warp per (b, h)) writes out = Σ o·e^(m−M) / Σ s·e^(m−M) with
// M the largest m. A decode step at B=1 has only B·NH warps without the split (SmolLM2: 9).
// CPU reference: Sources/Kernels/cpu/decode_attention.c.
#include "common.cuh"

#define DECODE_MAX_DIMS_PER_LANE 8

extern "C" __global__ void decode_attention(float *out, float *partials, const float *q, const float *k_cache, const float *v_cache,
                                            const int *lengths, int B, int NH, int NKV, int HS, int Tmax, float scale, int chunk,
                                            int chunks) {
    const long long item = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (item >= (long long)B * NH * chunks) return;
    const long long bh = item / chunks, batch = bh / NH;
    const int h = (int)(bh % NH), kv = h / (NH / NKV), length = lengths[batch];
    const int start = (int)(item % chunks) * chunk, end = length < start + chunk ? length : start + chunk;
    const float *qh = q + bh * HS;
    const long long row = (long long)NKV * HS;   // between consecutive positions
    const float *k = k_cache + batch * Tmax * row + (long long)kv * HS;
    const float *v = v_cache + batch * Tmax * row + (long long)kv * HS;
    float mine[DECODE_MAX_DIMS_PER_LANE], acc[DECODE_MAX_DIMS_PER_LANE];
    for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
        const int d = lane + 32 * j;
        mine[j] = d < HS ? qh[d] : 0.0f;
        acc[j] = 0.0f;
    }
    float running_max = -RT_INF, sum = 0.0f;
    for (int t = start; t < end; t++) {
        float partial = 0.0f;
        for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
            const int d = lane + 32 * j;
            if (d < HS) partial += mine[j] * k[t * row + d];
        }
        const float s = warp_sum(partial) * scale;
        const float m = fmaxf(running_max, s), correction = expf(running_max - m), p = expf(s - m);
        sum = sum * correction + p;
        for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
            const int d = lane + 32 * j;
            if (d < HS) acc[j] = acc[j] * correction + p * v[t * row + d];
        }
        running_max = m;
    }
    if (partials == nullptr) {
        for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
            const int d = lane + 32 * j;
            if (d < HS) out[bh * HS + d] = acc[j] / sum;
        }
        return;
    }
    float *mine_partial = partials + item * (2 + HS);   // an empty chunk (past the length): m −∞, s 0
    if (lane == 0) { mine_partial[0] = running_max; mine_partial[1] = sum; }
    for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
        const int d = lane + 32 * j;
        if (d < HS) mine_partial[2 + d] = acc[j];
    }
}

// out row (b, h) from its chunks' partials: one warp per row, launch ≥ B·NH·32 threads.
extern "C" __global__ void decode_attention_merge(float *out, const float *partials, int B, int NH, int HS, int chunks) {
    const long long bh = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (bh >= (long long)B * NH) return;
    const float *first = partials + bh * chunks * (2 + HS);
    float top = -RT_INF;
    for (int c = lane; c < chunks; c += 32) top = fmaxf(top, first[c * (2 + HS)]);
    top = warp_max(top);
    float sum = 0.0f, acc[DECODE_MAX_DIMS_PER_LANE];
    for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) acc[j] = 0.0f;
    for (int c = 0; c < chunks; c++) {
        const float *p = first + c * (2 + HS);
        if (p[1] == 0.0f) continue;   // an empty chunk
        const float weight = expf(p[0] - top);
        sum += p[1] * weight;
        for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
            const int d = lane + 32 * j;
            if (d < HS) acc[j] += p[2 + d] * weight;
        }
    }
    for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
        const int d = lane + 32 * j;
        if (d < HS) out[bh * HS + d] = acc[j] / sum;
    }
}
