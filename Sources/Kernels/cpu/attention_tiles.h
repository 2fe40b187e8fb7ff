// Tiles shared by the fused attention kernels (attention.c) and the attention-score
// distillation loss (attention_score_loss.c): packing one head of [B,T,NH·HS] rows, key
// masks as vectors, and a QB-row block of q·kᵀ.
#pragma once
#include "common.h"

#define QB 16   // query rows per block
#define NVMAX 2   // 16-float column vectors per row of a register tile, at most

// Register tiles of TILE_ROWS rows × TILE_VECTORS 16-float vectors of accumulators, for the
// clone's `level` (a constant there): AVX-512 holds 8 × 2 in 16 of its 32 registers; AVX2 splits
// a 16-float vector into two of its 16 registers, so 4 × 1 (8 × 2 there spilled: 32 values for
// 16 registers); the baseline (SSE, four registers a vector) takes 2 × 1.
#define TILE_ROWS(level) ((level) >= 4 ? 8 : (level) == 3 ? 4 : 2)
#define TILE_VECTORS(level) ((level) >= 4 ? 2 : 1)
#define TILE_ROWS_MAX 8
_Static_assert(QB % TILE_ROWS_MAX == 0, "a block of query rows is whole register tiles at every level");

// S[QB][Tp] = A[QB][HSp] · Bt[HS][Tp] over the first jend columns (jend a multiple of 32).
RT_INLINE void scores_tile(float *S, const float *A, int HSp, const float *Bt, int HS, int Tp, int jend, const int level) {
    const int RG = TILE_ROWS(level), NV = TILE_VECTORS(level);
    for (int j0 = 0; j0 < jend; j0 += 16 * NV)
        for (int r0 = 0; r0 < QB; r0 += RG) {
            v16 acc[TILE_ROWS_MAX][NVMAX];
            for (int r = 0; r < RG; r++)
                for (int t = 0; t < NV; t++) acc[r][t] = v16_splat(0);
            for (int d = 0; d < HS; d++) {
                v16 bv[NVMAX];
                for (int t = 0; t < NV; t++) bv[t] = v16_load(Bt + (int64_t)d * Tp + j0 + 16 * t);
                for (int r = 0; r < RG; r++) {
                    const float a = A[(r0 + r) * HSp + d];
                    for (int t = 0; t < NV; t++) acc[r][t] += a * bv[t];
                }
            }
            for (int r = 0; r < RG; r++)
                for (int t = 0; t < NV; t++) v16_store(S + (r0 + r) * Tp + j0 + 16 * t, acc[r][t]);
        }
}

// Out[c] = column c of the 16×16 block whose rows are R[0…15] (a transpose in registers:
// 32-bit, then 64-bit interleaves within 128-bit lanes, then a 4×4 transpose of the lanes).
RT_INLINE void transpose16(v16 *Out, const v16 *R) {
    v16 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = __builtin_shufflevector(R[i], R[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
        t[i + 1] = __builtin_shufflevector(R[i], R[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    }
    for (int i = 0; i < 16; i += 4) {   // u[i + c]: lane L holds column 4L + c of rows i … i+3
        u[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        u[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        u[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        u[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    for (int c = 0; c < 4; c++) {
        v16 x0 = __builtin_shufflevector(u[c], u[4 + c], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        v16 x1 = __builtin_shufflevector(u[c], u[4 + c], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        v16 x2 = __builtin_shufflevector(u[8 + c], u[12 + c], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
        v16 x3 = __builtin_shufflevector(u[8 + c], u[12 + c], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        Out[c] = __builtin_shufflevector(x0, x2, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        Out[4 + c] = __builtin_shufflevector(x1, x3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        Out[8 + c] = __builtin_shufflevector(x0, x2, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        Out[12 + c] = __builtin_shufflevector(x1, x3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
}

// Packs rows [T] of one head of X ([B,T,C], head offset applied) as Xt[HS][Tp] (transposed, in
// 16×16 blocks) and/or Xp[T][HSp] (padded); padding is zero.
RT_INLINE void pack_head(float *Xt, float *Xp, const float *X, int T, int C, int HS, int Tp, int HSp) {
    if (Xt) {
        const int T16 = (int)round_up(T, 16);
        for (int j0 = 0; j0 < T; j0 += 16) {
            const int rows = T - j0 < 16 ? T - j0 : 16;
            for (int d0 = 0; d0 < HS; d0 += 16) {
                const int cols = HS - d0 < 16 ? HS - d0 : 16;
                v16 R[16], Out[16];
                for (int r = 0; r < 16; r++) {
                    const float *x = X + (int64_t)(j0 + r) * C + d0;
                    if (r < rows && cols == 16) R[r] = v16_load(x);
                    else {
                        float row[16] = {0};
                        if (r < rows) memcpy(row, x, sizeof(float) * cols);
                        R[r] = v16_load(row);
                    }
                }
                transpose16(Out, R);
                for (int c = 0; c < cols; c++) v16_store(Xt + (int64_t)(d0 + c) * Tp + j0, Out[c]);
            }
        }
        for (int d = 0; d < HS; d++) memset(Xt + (int64_t)d * Tp + T16, 0, sizeof(float) * (Tp - T16));
    }
    if (Xp) {
        for (int j = 0; j < T; j++) {
            memcpy(Xp + (int64_t)j * HSp, X + (int64_t)j * C, sizeof(float) * HS);
            memset(Xp + (int64_t)j * HSp + HS, 0, sizeof(float) * (HSp - HS));
        }
    }
}

// Copies up to QB rows (row stride C) into Dst[QB][HSp], zero-filling padding and missing rows.
static inline void load_rows(float *Dst, const float *X, int rows, int C, int HS, int HSp) {
    memset(Dst, 0, sizeof(float) * QB * HSp);
    for (int r = 0; r < rows; r++) memcpy(Dst + r * HSp, X + (int64_t)r * C, sizeof(float) * HS);
}

// Per-item key vectors over Tp columns: keep = 1 for a valid key, else 0; neg = 0 or −inf.
static inline void key_vectors(float *keep, float *neg, const int32_t *mask, int b, int T, int Tp) {
    for (int j = 0; j < Tp; j++) {
        int valid = j < T && (!mask || mask[(int64_t)b * T + j]);
        keep[j] = valid ? 1.0f : 0.0f;
        neg[j] = valid ? 0.0f : -INFINITY;
    }
}

// Row i of bias[h] copied into a zero-padded Tp row (NULL without bias).
static inline const float *bias_row(float *dst, const float *bias, int h, int i, int T, int Tp) {
    if (!bias) return NULL;
    memcpy(dst, bias + ((int64_t)h * T + i) * T, sizeof(float) * T);
    memset(dst + T, 0, sizeof(float) * (Tp - T));
    return dst;
}

// One past the last valid key of batch item b (0 if none).
static inline int key_end(const int32_t *mask, int b, int T) {
    if (!mask) return T;
    for (int j = T - 1; j >= 0; j--)
        if (mask[(int64_t)b * T + j]) return j + 1;
    return 0;
}
