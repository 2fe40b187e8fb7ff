// Shared helpers of the CPU kernels: vector type, function clones, vectorisable exp and erfc.
#pragma once
#include "kernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// Hot loops are compiled three times and chosen when the library loads (GNU ifunc):
// x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and the baseline, so one binary runs anywhere.
#if defined(__x86_64__)
#define RT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RT_CLONES
#endif

#define RT_INLINE static inline __attribute__((always_inline))

// 16 floats. In the AVX-512 clone one register; elsewhere the compiler splits it.
typedef float v16 __attribute__((vector_size(64)));
RT_INLINE v16 v16_load(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
RT_INLINE void v16_store(float *p, v16 v) { memcpy(p, &v, sizeof v); }
RT_INLINE v16 v16_splat(float x) { return (v16){0} + x; }
RT_INLINE float v16_sum(v16 v) {
    float s = 0;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}
static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// exp(x) for float, about 1 ulp, written so loops over it vectorise (Cephes-style range
// reduction x = n·ln2 + r and a degree-6 polynomial; 2^n built in the exponent bits).
RT_INLINE float rt_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// rt_expf on 16 lanes, the same formula (so vector and scalar paths agree bit for bit where
// the compiler contracts alike).
typedef int32_t vi16 __attribute__((vector_size(64)));
RT_INLINE v16 rt_exp16(v16 x) {
    x = __builtin_elementwise_max(x, v16_splat(-87.3f));
    x = __builtin_elementwise_min(x, v16_splat(88.3f));
    v16 n = __builtin_elementwise_roundeven(x * 1.44269504088896341f);
    v16 r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    v16 p = v16_splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi16 bits = (__builtin_convertvector(n, vi16) + 127) << 23;
    return p * (v16)bits;
}

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
