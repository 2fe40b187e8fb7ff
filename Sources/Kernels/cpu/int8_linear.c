// Dynamic int8 linear layers: weights quantized per output channel ahead of time, activations
// per row at run time (both symmetric, values in [−127, 127]); the products are summed exactly
// in int32, so every path below gives the same sums and the same outputs.
//   rt_quantize_rows_i8: q[M, ldq] int8 (columns K … ldq−1 zero), scale[M] = max|x[m,:]| / 127
//                        (0 for a zero row); q = round-half-even(x · 127 / max|x|) from x[M, ldx]
//   rt_int8_pack_weight: wp ← W[N,K] int8 in the kernels' layout: panels of 16 output channels,
//                        each [K4][16][4] bytes (K4 = ⌈K/4⌉, zero padded; rt_int8_packed_bytes);
//                        wsum[16·⌈N/16⌉] = Σ_k W[n,k] (0 past N)
//   rt_int8_linear:      y[M,N] (row stride ldy) = fma(float(Σ_k q[m,k]·W[n,k]) · scale[m], wscale[n], bias[n])
//                        with q, scale the rows of x[M, ldx] quantized here; bias may be NULL (0)
//   rt_int8_weight_linear: weight-only int8 (activations stay fp32), W[N,K] as stored. Up to
//                        weight_rows_dot() rows (decoding): y[m,n] = fma(Σ_k x[m,k]·float(W[n,k]) (fp32,
//                        16 lanes then the tail), wscale[n], bias[n]); past them (a prompt, a text to
//                        classify): y[m,n] = Σ_k x[m,k]·(float(W[n,k])·wscale[n]) in k order + bias[n],
//                        the product with the dequantized weight (rt_dequantize_rows_i8's values)
// Paths, the best the CPU has (capped by RETORT_CPU_LEVEL): AVX-512 VNNI — vpdpbusd on the
// unsigned q + 128 and W, minus 128·wsum; AVX2 — vpmaddubsw on |W| and q·sign(W) (a pair of
// products stays below 2¹⁵ because no value is −128), then vpmaddwd; portable C.
#include "packed_tiles.h"
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef int8_t vb16 __attribute__((vector_size(16)));

typedef struct {
    int8_t *q;
    float *scale;
    const float *x;
    int64_t M;
    int K, ldx, ldq;
    uint8_t flip;   // 0x80: each byte stored as q + 128 (unsigned), the VNNI path's operand
} quantize_args;

RT_TASK(quantize_task) {
    quantize_args *a = ctx;
    for (int64_t m = b; m < e; m++) {
        const float *x = a->x + m * a->ldx;
        int8_t *q = a->q + m * a->ldq;
        v16 vmax = v16_splat(0);
        int j = 0;
        for (; j + 16 <= a->K; j += 16) vmax = __builtin_elementwise_max(vmax, __builtin_elementwise_abs(v16_load(x + j)));
        float amax = __builtin_reduce_max(vmax);
        for (; j < a->K; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float inv = amax > 0 ? 127.0f / amax : 0.0f;
        a->scale[m] = amax / 127.0f;
        j = 0;
        for (; j + 16 <= a->K; j += 16) {
            v16 r = __builtin_elementwise_roundeven(v16_load(x + j) * inv);
            r = __builtin_elementwise_min(__builtin_elementwise_max(r, v16_splat(-127)), v16_splat(127));
            vb16 bytes = __builtin_convertvector(__builtin_convertvector(r, vi16), vb16) ^ (int8_t)a->flip;
            memcpy(q + j, &bytes, 16);
        }
        for (; j < a->K; j++) q[j] = (int8_t)((int8_t)fminf(fmaxf(__builtin_roundevenf(x[j] * inv), -127.0f), 127.0f) ^ (int8_t)a->flip);
        memset(q + a->K, a->flip, (size_t)(a->ldq - a->K));
    }
}

static void quantize_rows(int8_t *q, float *scale, const float *x, int64_t M, int K, int ldx, int ldq, uint8_t flip) {
    quantize_args a = { .q = q, .scale = scale, .x = x, .M = M, .K = K, .ldx = ldx, .ldq = ldq, .flip = flip };
    rt_parallel_for(M, 8, quantize_task, &a);
}

void rt_quantize_rows_i8(int8_t *q, float *scale, const float *x, int64_t M, int K, int ldx, int ldq) {
    quantize_rows(q, scale, x, M, K, ldx, ldq, 0);
}

void rt_dequantize_rows_i8(float *x, const int8_t *q, const float *scale, int64_t M, int K) {
    for (int64_t m = 0; m < M; m++)
        for (int k = 0; k < K; k++) x[m * K + k] = (float)q[m * K + k] * scale[m];
}

int64_t rt_int8_packed_bytes(int N, int K) { return (int64_t)((N + 15) / 16) * ((K + 3) / 4) * 64; }

void rt_int8_pack_weight(int8_t *wp, int32_t *wsum, const int8_t *W, int N, int K) {
    const int K4 = (K + 3) / 4, P = (N + 15) / 16;
    for (int p = 0; p < P; p++)
        for (int k4 = 0; k4 < K4; k4++)
            for (int c = 0; c < 16; c++)
                for (int j = 0; j < 4; j++) {
                    const int n = 16 * p + c, k = 4 * k4 + j;
                    wp[(((int64_t)p * K4 + k4) * 16 + c) * 4 + j] = n < N && k < K ? W[(int64_t)n * K + k] : 0;
                }
    for (int n = 0; n < 16 * P; n++) {
        int32_t s = 0;
        for (int k = 0; n < N && k < K; k++) s += W[(int64_t)n * K + k];
        wsum[n] = s;
    }
}

typedef struct {
    float *y;
    const int8_t *q, *wp;
    const float *scale, *wscale, *bias;
    const int32_t *wsum;
    int M, N, K4, ldq, ldy;
} linear_args;

// One output: the int32 sum through the float epilogue every path shares.
static inline float epilogue(const linear_args *a, int32_t sum, int m, int n) {
    return fmaf((float)sum * a->scale[m], a->wscale[n], a->bias ? a->bias[n] : 0.0f);
}

// Portable: one panel of 16 channels per task item.
static void linear_portable(void *ctx, int64_t pb, int64_t pe, int thread) {
    (void)thread;
    const linear_args *a = ctx;
    for (int64_t p = pb; p < pe; p++) {
        const int8_t *w = a->wp + p * a->K4 * 64;
        for (int m = 0; m < a->M; m++) {
            const int8_t *q = a->q + (int64_t)m * a->ldq;
            int32_t s[16] = {0};
            for (int k4 = 0; k4 < a->K4; k4++)
                for (int c = 0; c < 16; c++)
                    for (int j = 0; j < 4; j++) s[c] += (int32_t)q[4 * k4 + j] * w[(k4 * 16 + c) * 4 + j];
            for (int c = 0; c < 16 && 16 * p + c < a->N; c++) a->y[(int64_t)m * a->ldy + 16 * p + c] = epilogue(a, s[c], m, (int)(16 * p + c));
        }
    }
}

#if defined(__x86_64__)
// Four int8 inputs of row r at column 4·k4, as one int32 (read byte-wise: q is int8 memory).
static inline int32_t four(const int8_t *q, int k4) {
    int32_t v;
    memcpy(&v, q + 4 * k4, 4);
    return v;
}

// AVX2: rows m0 … m0+MR−1 against one panel (channels n0 … n0+15; the ymm halves are channels
// 0–7 and 8–15), MR·2 accumulators of 8 int32 sums.
__attribute__((target("avx2,fma"), always_inline)) static inline void avx2_block(const linear_args *a, int m0, const int MR, const int8_t *w, int n0) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int8_t *q[4];
    for (int r = 0; r < MR; r++) q[r] = a->q + (int64_t)(m0 + r) * a->ldq;
    __m256i acc[4][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int k4 = 0; k4 < a->K4; k4++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + k4 * 64)), w1 = _mm256_loadu_si256((const __m256i *)(w + k4 * 64 + 32));
        const __m256i u0 = _mm256_abs_epi8(w0), u1 = _mm256_abs_epi8(w1);
        for (int r = 0; r < MR; r++) {
            const __m256i x = _mm256_set1_epi32(four(q[r], k4));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(u0, _mm256_sign_epi8(x, w0)), ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(u1, _mm256_sign_epi8(x, w1)), ones));
        }
    }
    if (n0 + 16 <= a->N) {   // a whole panel: the epilogue 8 channels at a time (the same roundings)
        for (int h = 0; h < 2; h++) {
            const __m256 ws = _mm256_loadu_ps(a->wscale + n0 + 8 * h), bias = a->bias ? _mm256_loadu_ps(a->bias + n0 + 8 * h) : _mm256_setzero_ps();
            for (int r = 0; r < MR; r++) {
                const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][h]), _mm256_set1_ps(a->scale[m0 + r]));
                _mm256_storeu_ps(a->y + (int64_t)(m0 + r) * a->ldy + n0 + 8 * h, _mm256_fmadd_ps(v, ws, bias));
            }
        }
        return;
    }
    for (int r = 0; r < MR; r++) {
        int32_t s[16];
        _mm256_storeu_si256((__m256i *)s, acc[r][0]);
        _mm256_storeu_si256((__m256i *)(s + 8), acc[r][1]);
        for (int c = 0; c < 16 && n0 + c < a->N; c++) a->y[(int64_t)(m0 + r) * a->ldy + n0 + c] = epilogue(a, s[c], m0 + r, n0 + c);
    }
}

// A panel per item; rows 4 at a time, then one by one.
__attribute__((target("avx2,fma"))) static void linear_avx2(void *ctx, int64_t pb, int64_t pe, int thread) {
    (void)thread;
    const linear_args *a = ctx;
    for (int64_t p = pb; p < pe; p++) {
        const int8_t *w = a->wp + p * a->K4 * 64;
        int m0 = 0;
        for (; m0 + 4 <= a->M; m0 += 4) avx2_block(a, m0, 4, w, (int)p * 16);
        for (; m0 < a->M; m0++) avx2_block(a, m0, 1, w, (int)p * 16);
    }
}

// AVX-512 VNNI: rows m0 … m0+MR−1 against two panels w0, w1 (channels n0 … n0+31; w1 == w0 when
// there is one panel left): MR·2 accumulators of 16 int32 sums, four inputs per vpdpbusd. The
// rows were quantized as q + 128 (unsigned bytes), so each broadcast is one load: flipping the
// sign bit here took a scalar xor and a broadcast from a register, a uop on a port the vpdpbusd
// need (a third of the loop's slots). The epilogue runs 16 channels at a time.
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void
vnni_block(const linear_args *a, int m0, const int MR, const int8_t *w0, const int8_t *w1, int n0, int panels) {
    const int8_t *q[8];
    for (int r = 0; r < MR; r++) q[r] = a->q + (int64_t)(m0 + r) * a->ldq;
    __m512i acc[8][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (int k4 = 0; k4 < a->K4; k4++) {
        const __m512i b0 = _mm512_loadu_si512(w0 + k4 * 64), b1 = _mm512_loadu_si512(w1 + k4 * 64);
        for (int r = 0; r < MR; r++) {
            const __m512i x = _mm512_set1_epi32(four(q[r], k4));   // q + 128, unsigned
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], x, b0);
            if (panels == 2) acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], x, b1);
        }
    }
    for (int h = 0; h < panels; h++) {
        const __m512i correction = _mm512_slli_epi32(_mm512_loadu_si512(a->wsum + n0 + 16 * h), 7);   // 128·Σ_k W
        if (n0 + 16 * h + 16 <= a->N) {   // a whole panel (the same roundings as the scalar epilogue)
            const __m512 ws = _mm512_loadu_ps(a->wscale + n0 + 16 * h);
            const __m512 bias = a->bias ? _mm512_loadu_ps(a->bias + n0 + 16 * h) : _mm512_setzero_ps();
            for (int r = 0; r < MR; r++) {
                const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][h], correction)), _mm512_set1_ps(a->scale[m0 + r]));
                _mm512_storeu_ps(a->y + (int64_t)(m0 + r) * a->ldy + n0 + 16 * h, _mm512_fmadd_ps(v, ws, bias));
            }
            continue;
        }
        for (int r = 0; r < MR; r++) {
            int32_t s[16];
            _mm512_storeu_si512(s, _mm512_sub_epi32(acc[r][h], correction));
            for (int c = 0; c < 16 && n0 + 16 * h + c < a->N; c++)
                a->y[(int64_t)(m0 + r) * a->ldy + n0 + 16 * h + c] = epilogue(a, s[c], m0 + r, n0 + 16 * h + c);
        }
    }
}

// Two panels (32 channels) per item; rows 8 at a time, then 4, then one by one (decoding's one row).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void linear_vnni(void *ctx, int64_t bb, int64_t be, int thread) {
    (void)thread;
    const linear_args *a = ctx;
    const int P = (a->N + 15) / 16;
    for (int64_t blk = bb; blk < be; blk++) {
        const int p0 = (int)blk * 2, panels = p0 + 1 < P ? 2 : 1;
        const int8_t *w0 = a->wp + (int64_t)p0 * a->K4 * 64, *w1 = panels == 2 ? w0 + (int64_t)a->K4 * 64 : w0;
        int m0 = 0;
        for (; m0 + 8 <= a->M; m0 += 8) vnni_block(a, m0, 8, w0, w1, 16 * p0, panels);
        for (; m0 + 4 <= a->M; m0 += 4) vnni_block(a, m0, 4, w0, w1, 16 * p0, panels);
        for (; m0 < a->M; m0++) vnni_block(a, m0, 1, w0, w1, 16 * p0, panels);
    }
}

static int has_vnni(void) {
    static int known = -1;   // a property of the CPU: asked once
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
    }
    return known;
}
#endif

enum int8_path { INT8_PORTABLE, INT8_AVX2, INT8_VNNI };

// The path for the CPU level in effect (RETORT_CPU_LEVEL caps it).
static enum int8_path int8_path(void) {
#if defined(__x86_64__)
    const int level = rt_cpu_level();
    if (level >= 4 && has_vnni()) return INT8_VNNI;
    if (level >= 3) return INT8_AVX2;
#endif
    return INT8_PORTABLE;
}

const char *rt_int8_path(void) {
    static const char *const names[] = { "portable", "avx2", "avx512-vnni" };
    return names[int8_path()];
}

void rt_int8_linear(float *y, int ldy, const float *x, int ldx, int M, int K, const int8_t *wp, const float *wscale,
                    const int32_t *wsum, const float *bias, int N) {
    const int K4 = (K + 3) / 4, ldq = 4 * K4, P = (N + 15) / 16;
    int8_t *q = rt_caller_scratch(13, (size_t)M * ldq);
    float *scale = rt_caller_scratch(12, sizeof(float) * (size_t)(M > 0 ? M : 1));
    const enum int8_path path = int8_path();
    quantize_rows(q, scale, x, M, K, ldx, ldq, path == INT8_VNNI ? 0x80 : 0);
    linear_args a = { .y = y, .q = q, .wp = wp, .scale = scale, .wscale = wscale, .bias = bias, .wsum = wsum,
                      .M = M, .N = N, .K4 = K4, .ldq = ldq, .ldy = ldy };
    switch (path) {
#if defined(__x86_64__)
    case INT8_VNNI: rt_parallel_for((P + 1) / 2, 1, linear_vnni, &a); return;
    case INT8_AVX2: rt_parallel_for(P, 1, linear_avx2, &a); return;
#endif
    default: rt_parallel_for(P, 1, linear_portable, &a);
    }
}

typedef struct {
    float *y;
    const float *x, *wscale, *bias;
    const int8_t *W;
    int M, N, K, ldx, ldy;
} weight_only_args;

// Four output channels per item; each row of x against their four int8 rows (held in L1 while
// the rows of x pass), converted to float 16 at a time.
RT_TASK(weight_only_task) {
    const weight_only_args *a = ctx;
    const int K = a->K;
    for (int64_t item = b; item < e; item++) {
        const int n0 = (int)item * 4, count = a->N - n0 < 4 ? a->N - n0 : 4;
        const int8_t *w[4];
        for (int r = 0; r < 4; r++) w[r] = a->W + (int64_t)(n0 + (r < count ? r : 0)) * K;
        for (int m = 0; m < a->M; m++) {
            const float *x = a->x + (int64_t)m * a->ldx;
            v16 acc[4] = { v16_splat(0), v16_splat(0), v16_splat(0), v16_splat(0) };
            int k = 0;
            for (; k + 16 <= K; k += 16) {
                const v16 xv = v16_load(x + k);
                if ((k & 63) == 0)   // the next block of channels' rows, a line at a time, ahead of use
                    for (int r = 0; r < 4; r++) __builtin_prefetch(w[r] + 4 * (int64_t)K + k);
                for (int r = 0; r < 4; r++) {
                    vb16 bytes;
                    memcpy(&bytes, w[r] + k, 16);
                    acc[r] += xv * __builtin_convertvector(bytes, v16);
                }
            }
            for (int r = 0; r < count; r++) {
                float sum = v16_sum(acc[r]);
                for (int j = k; j < K; j++) sum += x[j] * (float)w[r][j];
                a->y[(int64_t)m * a->ldy + n0 + r] = fmaf(sum, a->wscale[n0 + r], a->bias ? a->bias[n0 + r] : 0.0f);
            }
        }
    }
}

// Rows up to which rt_int8_weight_linear reads the int8 rows along K as they are (weight_only_task);
// past them it makes 16-channel panels of the dequantized weight as it goes (weight_panels_task).
// Where the two met on the Emerald Rapids Xeon, one thread, SmolLM2's [1536, 576] and [576, 1536]:
// 3 rows on AVX-512 (4: 194 against 217 µs, 192 against 191), 7 on AVX2 (8: 478 against 573,
// 429 against 366; 10: 431 against 709, 441 against 485); none on the baseline (1 row: 427 against 443).
static int weight_rows_dot(void) {
    const int level = rt_cpu_level();
    return level >= 4 ? 3 : level == 3 ? 7 : 0;
}

// One round of a 16 × 16 transpose in registers: rows r and r | d (bit d of r clear) exchange
// bit d of the row index with bit d of the lane index. `lo` and `hi` are the two rows' new lanes
// as indices into (row r, row r | d). Four rounds, d = 1, 2, 4, 8, give t[r][c] ← t[c][r].
#define LANES(...) __VA_ARGS__
#define SWAP_BIT(d, lo, hi)                                                                \
    for (int r = 0; r < 16; r++)                                                            \
        if (!(r & (d))) {                                                                   \
            const v16 x = t[r], y = t[r | (d)];                                             \
            t[r] = __builtin_shufflevector(x, y, LANES lo);                                 \
            t[r | (d)] = __builtin_shufflevector(x, y, LANES hi);                           \
        }

RT_INLINE void transpose16(v16 t[16]) {
    SWAP_BIT(1, (0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30),
                (1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))
    SWAP_BIT(2, (0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
                (2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
    SWAP_BIT(4, (0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27),
                (4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
    SWAP_BIT(8, (0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23),
                (8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
}

// Panels p … p+np−1 of the dequantized weight into P ([np][K][16] floats, packed_tiles.h's layout):
// P[(q·K + k)·16 + j] = float(W[n,k])·wscale[n] for channel n = (p+q)·16 + j < N, else 0 — sixteen
// channels' next 16 bytes converted as rows, transposed, then scaled; the last K mod 16 one by one.
RT_INLINE void dequantize_panels(float *P, const weight_only_args *a, const int64_t p, const int np) {
    const int K = a->K;
    for (int q = 0; q < np; q++) {
        const int n0 = (int)(p + q) * 16, nc = a->N - n0 < 16 ? a->N - n0 : 16;
        float *panel = P + (int64_t)q * K * 16, s[16];
        const int8_t *w[16];
        for (int j = 0; j < 16; j++) {   // channels past N: channel n0's bytes times a scale of 0
            w[j] = a->W + (int64_t)(n0 + (j < nc ? j : 0)) * K;
            s[j] = j < nc ? a->wscale[n0 + j] : 0.0f;
        }
        const v16 scale = v16_load(s);
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            v16 t[16];
            for (int j = 0; j < 16; j++) {
                vb16 bytes;
                memcpy(&bytes, w[j] + k, 16);
                t[j] = __builtin_convertvector(bytes, v16);
            }
            transpose16(t);
            for (int i = 0; i < 16; i++) v16_store(panel + (int64_t)(k + i) * 16, t[i] * scale);
        }
        for (; k < K; k++)
            for (int j = 0; j < 16; j++) panel[(int64_t)k * 16 + j] = (float)w[j][k] * s[j];
    }
}

// Past weight_rows_dot() rows: each thread makes its panels (a pair on AVX-512) in its scratch, and
// every row of x passes them in the packed GEMM's register tiles. The int8 rows are read once a
// call — a quarter of the bytes of the fp32 weight a BLAS would repack on every call.
RT_TASK(weight_panels_task) {
    const weight_only_args *a = ctx;
    const int NP = level >= 4 ? 2 : 1;
    float *P = rt_thread_scratch(thread, 14, sizeof(float) * 16 * (size_t)NP * (size_t)a->K);
    for (int64_t p = b, np; p < e; p += np) {
        np = p + NP <= e ? NP : 1;
        dequantize_panels(P, a, p, (int)np);
        const packed_args t = { .C = a->y + p * 16, .A = a->x, .P = P, .bias = a->bias ? a->bias + p * 16 : NULL, .M = a->M,
                                .N = a->N - (int)p * 16, .K = a->K, .lda = a->ldx, .ldc = a->ldy, .beta = 0 };
        packed_panels(&t, 0, a->M, 0, (int)np, level);
    }
}

void rt_int8_weight_linear(float *y, int ldy, const float *x, int ldx, int M, int K, const int8_t *W, const float *wscale,
                           const float *bias, int N) {
    if (M <= 0 || N <= 0) return;
    weight_only_args a = { .y = y, .x = x, .wscale = wscale, .bias = bias, .W = W, .M = M, .N = N, .K = K, .ldx = ldx, .ldy = ldy };
    if (M > weight_rows_dot()) {
        const int64_t panels = (N + 15) / 16;
        rt_parallel_for(panels, packed_panel_grain(panels), weight_panels_task, &a);
        return;
    }
    const int64_t items = (N + 3) / 4;
    rt_parallel_for(items, rt_balanced_grain(items), weight_only_task, &a);
}
