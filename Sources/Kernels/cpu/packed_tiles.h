// Register tiles of the products against a weight packed in panels of 16 output channels
// (panel p is [K][16]: channel p·16 + j of row k at P[(p·K + k)·16 + j]), shared by the packed
// GEMM (packed_gemm.c) and the weight-only int8 product, which makes such panels from its int8
// rows as it goes (int8_linear.c).
//   packed_tile:   MR ≤ 6 rows × one panel, 8-float halves (AVX2 and the baseline)
//   packed_rows16: rows m … end−1 × NP (1 or 2) panels in AVX-512 tiles of up to 12 rows
//   packed_rows:   rows m … end−1 × one panel for the clone's level below AVX-512
//   packed_panels: either, by level; packed_panel_grain: the pool's grain that keeps pairs whole
// Each output C[m, n] = (Σ_k A[m,k]·P[n,k], in k order) (+ beta·C[m, n]) + bias[n].
#pragma once
#include "common.h"

typedef float v8 __attribute__((vector_size(32)));

typedef struct {
    float *C;
    const float *A, *P, *bias;
    int M, N, K, lda, ldc;
    float beta;
} packed_args;

RT_INLINE v8 v8_load(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
RT_INLINE void v8_store(float *p, v8 v) { memcpy(p, &v, sizeof v); }

// The last nc < 16 channels of a row: out[j] = (t[j] + beta·out[j]) + bias[n0 + j], the vector stores' sums.
RT_INLINE void store_tail(float *out, const float *t, const int nc, const int n0, const packed_args *a) {
    const float *bias = a->bias ? a->bias + n0 : NULL;
    for (int j = 0; j < nc; j++) {
        const float v = a->beta == 0 ? t[j] : t[j] + a->beta * out[j];
        out[j] = bias ? v + bias[j] : v;
    }
}

// Rows m0 … m0+MR−1 against panel p (MR ≤ 6: 12 accumulators, two weight vectors, a broadcast).
RT_INLINE void packed_tile(const packed_args *a, const int m0, const int MR, const int64_t p) {
    const int K = a->K;
    const float *w = a->P + p * K * 16, *x[6];
    v8 acc[6][2];
    for (int r = 0; r < MR; r++) {
        x[r] = a->A + (int64_t)(m0 + r) * a->lda;
        acc[r][0] = acc[r][1] = (v8){0};
    }
    for (int k = 0; k < K; k++) {
        const v8 w0 = v8_load(w + 16 * k), w1 = v8_load(w + 16 * k + 8);
        for (int r = 0; r < MR; r++) {
            const float s = x[r][k];
            const v8 xv = { s, s, s, s, s, s, s, s };
            acc[r][0] += xv * w0;
            acc[r][1] += xv * w1;
        }
    }
    const int n0 = (int)p * 16, nc = a->N - n0 < 16 ? a->N - n0 : 16;
    for (int r = 0; r < MR; r++) {
        float *out = a->C + (int64_t)(m0 + r) * a->ldc + n0;
        if (nc == 16) {
            if (a->beta != 0) {
                acc[r][0] += a->beta * v8_load(out);
                acc[r][1] += a->beta * v8_load(out + 8);
            }
            if (a->bias) {
                acc[r][0] += v8_load(a->bias + n0);
                acc[r][1] += v8_load(a->bias + n0 + 8);
            }
            v8_store(out, acc[r][0]);
            v8_store(out + 8, acc[r][1]);
        } else {
            float t[16];
            v8_store(t, acc[r][0]);
            v8_store(t + 8, acc[r][1]);
            store_tail(out, t, nc, n0, a);
        }
    }
}

// AVX-512: rows m0 … m0+MR−1 against NP panels from p (NP 1 or 2; MR ≤ 12: up to 24 accumulators
// of 16 channels in AVX-512's 32 registers, NP weight vectors, a broadcast) — twice the FMA width
// of the 8-float tile, and NP FMAs for each broadcast. Each output is the same sum in the same k order.
RT_INLINE void packed_tile16(const packed_args *a, const int m0, const int MR, const int64_t p, const int NP) {
    const int K = a->K;
    const float *w = a->P + p * K * 16, *x[12];
    v16 acc[12][2];
    for (int r = 0; r < MR; r++) {
        x[r] = a->A + (int64_t)(m0 + r) * a->lda;
        acc[r][0] = acc[r][1] = (v16){0};
    }
    for (int k = 0; k < K; k++) {
        v16 wv[2];
        for (int q = 0; q < NP; q++) wv[q] = v16_load(w + (int64_t)q * 16 * K + 16 * k);
        for (int r = 0; r < MR; r++) {
            const v16 xv = v16_splat(x[r][k]);
            for (int q = 0; q < NP; q++) acc[r][q] += xv * wv[q];
        }
    }
    for (int q = 0; q < NP; q++) {
        const int n0 = (int)(p + q) * 16, nc = a->N - n0 < 16 ? a->N - n0 : 16;
        for (int r = 0; r < MR; r++) {
            float *out = a->C + (int64_t)(m0 + r) * a->ldc + n0;
            if (nc == 16) {
                v16 v = a->beta != 0 ? acc[r][q] + a->beta * v16_load(out) : acc[r][q];
                v16_store(out, a->bias ? v + v16_load(a->bias + n0) : v);
            } else {
                float t[16];
                v16_store(t, acc[r][q]);
                store_tail(out, t, nc, n0, a);
            }
        }
    }
}

// Rows m … end−1 against NP panels from p in tiles of 12 (the last rows as one tile of constant height).
RT_INLINE void packed_rows16(const packed_args *a, int m, const int end, const int64_t p, const int NP) {
    for (; m + 12 <= end; m += 12) packed_tile16(a, m, 12, p, NP);
    switch (end - m) {
    case 11: packed_tile16(a, m, 11, p, NP); break;
    case 10: packed_tile16(a, m, 10, p, NP); break;
    case 9: packed_tile16(a, m, 9, p, NP); break;
    case 8: packed_tile16(a, m, 8, p, NP); break;
    case 7: packed_tile16(a, m, 7, p, NP); break;
    case 6: packed_tile16(a, m, 6, p, NP); break;
    case 5: packed_tile16(a, m, 5, p, NP); break;
    case 4: packed_tile16(a, m, 4, p, NP); break;
    case 3: packed_tile16(a, m, 3, p, NP); break;
    case 2: packed_tile16(a, m, 2, p, NP); break;
    case 1: packed_tile16(a, m, 1, p, NP); break;
    }
}

// Rows m … end−1 against panel p below AVX-512: tiles of MR rows (6 fill AVX2's 16 registers with
// 12 accumulators; the SSE baseline's 16 hold 2 rows' 8), the last rows as one tile of constant height.
RT_INLINE void packed_rows(const packed_args *a, int m, const int end, const int64_t p, const int level) {
    const int MR = level >= 3 ? 6 : 2;
    for (; m + MR <= end; m += MR) packed_tile(a, m, MR, p);
    switch (end - m) {
    case 5: packed_tile(a, m, 5, p); break;
    case 4: packed_tile(a, m, 4, p); break;
    case 3: packed_tile(a, m, 3, p); break;
    case 2: packed_tile(a, m, 2, p); break;
    case 1: packed_tile(a, m, 1, p); break;
    }
}

// Rows m … end−1 against np panels from p in the clone's tiles: on AVX-512 a pair at once (np 2,
// a constant in each call, so the tile's accumulators stay in registers) or a lone panel; below
// it one panel (np 1).
RT_INLINE void packed_panels(const packed_args *a, const int m, const int end, const int64_t p, const int np, const int level) {
    if (level < 4) packed_rows(a, m, end, p, level);
    else if (np == 2) packed_rows16(a, m, end, p, 2);
    else packed_rows16(a, m, end, p, 1);
}

// The pool's grain over `panels` panels: on AVX-512 an even number per chunk, so they are taken in
// pairs (with a grain of one — N = 300, an LSTM backward's product on 2 threads — every panel ran
// alone, at 0.54× the pairs' speed).
static inline int64_t packed_panel_grain(const int64_t panels) {
    const int64_t grain = rt_balanced_grain(panels);
    return rt_cpu_level() >= 4 ? (grain < 2 ? 2 : (grain + 1) / 2 * 2) : grain;
}

