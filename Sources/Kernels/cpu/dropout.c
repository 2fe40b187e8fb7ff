// Inverted dropout with a counter-based mask (rt_dropout_keep: the same on CPU and CUDA, so
// backward regenerates it from the seed and nothing is stored).
//   x, out, dx, dout: flat [n]; out = x·keep/(1 − p). Element i uses mask index offset + i.
#include "common.h"

#define GRAIN 16384
typedef struct { float *out; const float *x; float p, scale; uint64_t offset; uint32_t key; } dropout_args;

RT_TASK(dropout_task) {
    dropout_args *a = ctx;
    for (int64_t i = b; i < e; i++)
        a->out[i] = rt_keep(a->key, a->offset + (uint64_t)i, a->p) ? a->x[i] * a->scale : 0.0f;
}

// Also the backward: dx = dout·keep/(1 − p) with the same seed and offset.
void rt_dropout(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t offset) {
    dropout_args a = { .out = out, .x = x, .p = p, .scale = 1.0f / (1.0f - p), .offset = offset, .key = rt_dropout_key(seed) };
    rt_parallel_for(n, GRAIN, dropout_task, &a);
}
