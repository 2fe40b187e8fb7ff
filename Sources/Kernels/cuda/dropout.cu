// Inverted dropout with the counter-based mask shared with the CPU: out = x·keep/(1 − p),
// keep = rt_keep(key(seed), offset + i, p). Also its backward (same seed and offset).
// x, out: [n]; p in (0, 1). Grid-stride loop. CPU reference: Sources/Kernels/cpu/dropout.c.
#include "common.cuh"

extern "C" __global__ void dropout_f32(float *out, const float *x, long long n, float p,
                                       unsigned long long seed, unsigned long long offset) {
    const unsigned key = rt_dropout_key(seed);
    const float scale = 1.0f / (1.0f - p);
    RT_GRID_STRIDE(i, n) out[i] = rt_keep(key, offset + (unsigned long long)i, p) ? x[i] * scale : 0.0f;
}
