// Shared helpers of the CPU kernels: vector type, function clones, vectorisable exp and erfc.
#pragma once
#include "kernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define RT_INLINE static inline __attribute__((always_inline))

// Hot tasks are compiled three times — x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and the
// baseline — and rt_cpu_level() picks one at run time, so one binary runs on any x86-64 and the
// tests can run every path on one machine (RETORT_CPU_LEVEL=1|3|4 caps the level).
//   RT_TASK(name) { …body using ctx, b, e, thread… }   defines an rt_task called `name`; the
//   body also sees `level` (4, 3 or 1), a constant in each clone, for register tiles sized to it.
// Code holding 16-float vectors must live in RT_INLINE helpers or RT_TASK bodies: clang
// rejects 512-bit values written directly in functions that carry a target attribute.
#if defined(__x86_64__)
#define RT_TASK(name)                                                                                  \
    RT_INLINE void name##_body(void *ctx, int64_t b, int64_t e, int thread, const int level);          \
    __attribute__((target("arch=x86-64-v4"))) static void name##_v4(void *c, int64_t b, int64_t e, int t) { \
        name##_body(c, b, e, t, 4);                                                                    \
    }                                                                                                  \
    __attribute__((target("arch=x86-64-v3"))) static void name##_v3(void *c, int64_t b, int64_t e, int t) { \
        name##_body(c, b, e, t, 3);                                                                    \
    }                                                                                                  \
    static void name##_v1(void *c, int64_t b, int64_t e, int t) { name##_body(c, b, e, t, 1); }        \
    static void name(void *c, int64_t b, int64_t e, int t) {                                           \
        int level = rt_cpu_level();                                                                    \
        if (level >= 4) name##_v4(c, b, e, t);                                                         \
        else if (level == 3) name##_v3(c, b, e, t);                                                    \
        else name##_v1(c, b, e, t);                                                                    \
    }                                                                                                  \
    RT_INLINE void name##_body(void *ctx, int64_t b, int64_t e, int thread, const int level)
#else
#define RT_TASK(name)                                                                                  \
    RT_INLINE void name##_body(void *ctx, int64_t b, int64_t e, int thread, const int level);          \
    static void name(void *c, int64_t b, int64_t e, int t) { name##_body(c, b, e, t, 1); }             \
    RT_INLINE void name##_body(void *ctx, int64_t b, int64_t e, int thread, const int level)
#endif

// 16 floats. In the AVX-512 clone one register; elsewhere the compiler splits it.
typedef float v16 __attribute__((vector_size(64)));
RT_INLINE v16 v16_load(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
RT_INLINE void v16_store(float *p, v16 v) { memcpy(p, &v, sizeof v); }
// Spelt out, not (v16){0} + x: that sum is not x for x = −0, so the compiler must keep a scalar
// add and a register broadcast — in a GEMM's inner loop two extra uops per row on the FMA ports (the
// packed GEMM ran at half of AVX-512's peak). Spelt out, a splat of a load is one broadcast load.
RT_INLINE v16 v16_splat(float x) { return (v16){ x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x }; }
RT_INLINE float v16_sum(v16 v) {
    float s = 0;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}
static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// A grain of about eight chunks a thread, so that jobs of few items still balance over the pool;
// only for tasks whose outputs are each one item's own (results independent of the chunking).
static inline int64_t rt_balanced_grain(int64_t items) { return items / (8 * rt_current_threads()); }

// e^r for |r| ≤ ln2/2 (degree-6 Cephes polynomial), written once for float and v16 alike.
#define RT_EXP_POLY(r)                                                                              \
    (((((((1.9875691500e-4f * (r) + 1.3981999507e-3f) * (r) + 8.3334519073e-3f) * (r) + 4.1665795894e-2f) * (r) \
        + 1.6666665459e-1f) * (r) + 5.0000001201e-1f) * (r) * (r)) + (r) + 1.0f)

// exp(x) for float, about 1 ulp, written so loops over it vectorise (Cephes-style range
// reduction x = n·ln2 + r and a degree-6 polynomial; 2^n built in the exponent bits).
RT_INLINE float rt_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = RT_EXP_POLY(r);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// σ(x) and tanh(x) = 1 − 2/(e^{2x} + 1) (saturating cleanly) over rt_expf.
RT_INLINE float rt_sigmoidf(float x) { return 1.0f / (1.0f + rt_expf(-x)); }
RT_INLINE float rt_tanhf(float x) { return 1.0f - 2.0f / (rt_expf(2.0f * x) + 1.0f); }

// rt_expf on 16 lanes, the same formula (so vector and scalar paths agree bit for bit where
// the compiler contracts alike).
typedef int32_t vi16 __attribute__((vector_size(64)));
RT_INLINE v16 rt_exp16(v16 x) {
    x = __builtin_elementwise_max(x, v16_splat(-87.3f));
    x = __builtin_elementwise_min(x, v16_splat(88.3f));
    v16 n = __builtin_elementwise_roundeven(x * 1.44269504088896341f);
    v16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16 p = RT_EXP_POLY(r);
    vi16 bits = (__builtin_convertvector(n, vi16) + 127) << 23;
    return p * (v16)bits;
}
// σ and tanh on 16 lanes: rt_sigmoidf's and rt_tanhf's formulas over rt_exp16.
RT_INLINE v16 rt_sigmoid16(v16 x) { return 1.0f / (1.0f + rt_exp16(-x)); }
RT_INLINE v16 rt_tanh16(v16 x) { return 1.0f - 2.0f / (rt_exp16(2.0f * x) + 1.0f); }

// erfc(x) with relative error below 1.2e-7 everywhere (the Chebyshev-fitted form from
// Numerical Recipes, "erfcc"): accurate in the tails, where 1 + erf(x) would cancel.
RT_INLINE float rt_erfcf(float x) {
    float z = fabsf(x);
    float t = 1.0f / (1.0f + 0.5f * z);
    float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
                 t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
                 t * (-0.82215223f + t * 0.17087277f))))))));
    float r = t * rt_expf(-z * z + poly);
    return x >= 0 ? r : 2.0f - r;
}

// Counter-based dropout masks (the same on CPU and CUDA): element `index` of a tensor is kept
// when the hash of (seed, index) is at least p. Written with 32-bit operations so loops over it
// vectorise. rt_dropout_keep (lora.c) is the out-of-line form.
RT_INLINE uint32_t rt_mix32(uint32_t x) {
    x ^= x >> 16; x *= 0x7feb352du;
    x ^= x >> 15; x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
RT_INLINE uint32_t rt_dropout_key(uint64_t seed) { return rt_mix32((uint32_t)seed ^ rt_mix32((uint32_t)(seed >> 32) + 0x9e3779b9u)); }
RT_INLINE int rt_keep(uint32_t key, uint64_t index, float p) {
    uint32_t h = rt_mix32((uint32_t)index ^ rt_mix32((uint32_t)(index >> 32) ^ key));
    return (float)(h >> 8) * (1.0f / 16777216.0f) >= p;
}
// m[j] = inv or 0 for indices base … base + n − 1.
RT_INLINE void rt_dropout_row(float *m, uint32_t key, uint64_t base, int n, float p, float inv) {
    for (int j = 0; j < n; j++) m[j] = rt_keep(key, base + (uint64_t)j, p) ? inv : 0.0f;
}
