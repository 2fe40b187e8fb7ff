// Attention of one new query per sequence against a KV cache (decoding), with grouped-query heads:
//   q, out: [B, NH·HS]; k_cache, v_cache: [B, Tmax, NKV·HS] (a prefill's k, v rows [B, T, NKV·HS]
//   copy in unchanged); lengths: [B] int32, the cached
//   positions each query attends to (its own included, 1 ≤ length ≤ Tmax); query head h reads
//   key/value head h / (NH / NKV).
//   out = softmax(scale·q·kᵀ over the first `length` keys)·V, an online softmax (no score buffer).
// Parallel over (b, h).
#include "common.h"

typedef struct {
    float *out; const float *q, *k, *v; const int32_t *lengths;
    int NH, NKV, HS, Tmax; float scale;
} decode_args;

RT_TASK(decode_task) {
    decode_args *a = ctx;
    const int NH = a->NH, HS = a->HS, group = a->NH / a->NKV;
    for (int64_t bh = b; bh < e; bh++) {
        const int64_t batch = bh / NH;
        const int h = (int)(bh % NH), kv = h / group, length = a->lengths[batch];
        const float *q = a->q + bh * HS;
        const int64_t row = (int64_t)a->NKV * HS;   // between consecutive positions
        const float *k = a->k + batch * a->Tmax * row + (int64_t)kv * HS;
        const float *v = a->v + batch * a->Tmax * row + (int64_t)kv * HS;
        float *out = a->out + bh * HS;
        float running_max = -INFINITY, sum = 0;
        for (int d = 0; d < HS; d++) out[d] = 0;
        for (int t = 0; t < length; t++) {
            float s = 0;
            for (int d = 0; d < HS; d++) s += q[d] * k[t * row + d];
            s *= a->scale;
            const float m = s > running_max ? s : running_max, correction = rt_expf(running_max - m), p = rt_expf(s - m);
            sum = sum * correction + p;
            for (int d = 0; d < HS; d++) out[d] = out[d] * correction + p * v[t * row + d];
            running_max = m;
        }
        for (int d = 0; d < HS; d++) out[d] /= sum;
    }
}

void rt_decode_attention(float *out, const float *q, const float *k_cache, const float *v_cache, const int32_t *lengths,
                         int B, int NH, int NKV, int HS, int Tmax, float scale) {
    decode_args a = { .out = out, .q = q, .k = k_cache, .v = v_cache, .lengths = lengths, .NH = NH, .NKV = NKV, .HS = HS,
                      .Tmax = Tmax, .scale = scale };
    rt_parallel_for((int64_t)B * NH, 1, decode_task, &a);
}
