// Attention of one new query per sequence against a KV cache (decoding), with grouped-query heads:
//   q, out: [B, NH·HS]; k_cache, v_cache: [B, Tmax, NKV·HS]; lengths: [B] int32 (1 ≤ length ≤ Tmax);
//   query head h reads key/value head h / (NH / NKV).
//   out = softmax(scale·q·kᵀ over the first `length` keys)·V with an online softmax.
// One warp per (b, h) (launch ≥ B·NH·32 threads, blockDim a multiple of 32); each lane owns head
// dimensions lane, lane + 32, … (HS ≤ 256): a key's score is a warp sum, its V row is read
// coalesced. CPU reference: Sources/Kernels/cpu/decode_attention.c.
#include "common.cuh"

#define DECODE_MAX_DIMS_PER_LANE 8

extern "C" __global__ void decode_attention(float *out, const float *q, const float *k_cache, const float *v_cache,
                                            const int *lengths, int B, int NH, int NKV, int HS, int Tmax, float scale) {
    const long long bh = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (bh >= (long long)B * NH) return;
    const long long batch = bh / NH;
    const int h = (int)(bh % NH), kv = h / (NH / NKV), length = lengths[batch];
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
    for (int t = 0; t < length; t++) {
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
    for (int j = 0; j < DECODE_MAX_DIMS_PER_LANE; j++) {
        const int d = lane + 32 * j;
        if (d < HS) out[bh * HS + d] = acc[j] / sum;
    }
}
