// Tiles shared by the fused attention kernels (attention.c) and the attention-score
// distillation loss (attention_score_loss.c): packing one head of [B,T,NH·HS] rows, key
// masks as vectors, and a QB-row block of q·kᵀ.
#pragma once
#include "common.h"

#define QB 4   // query rows per block

// S[QB][Tp] = A[QB][HSp] · Bt[HS][Tp], 32 columns at a time (Tp is a multiple of 32).
RT_INLINE void scores_tile(float *S, const float *A, int HSp, const float *Bt, int HS, int Tp, int jend) {
    for (int j0 = 0; j0 < jend; j0 += 32) {
        v16 acc[QB][2];
        for (int r = 0; r < QB; r++) acc[r][0] = acc[r][1] = v16_splat(0);
        for (int d = 0; d < HS; d++) {
            v16 b0 = v16_load(Bt + (int64_t)d * Tp + j0), b1 = v16_load(Bt + (int64_t)d * Tp + j0 + 16);
            for (int r = 0; r < QB; r++) {
                float a = A[r * HSp + d];
                acc[r][0] += a * b0;
                acc[r][1] += a * b1;
            }
        }
        for (int r = 0; r < QB; r++) {
            v16_store(S + r * Tp + j0, acc[r][0]);
            v16_store(S + r * Tp + j0 + 16, acc[r][1]);
        }
    }
}

// Packs rows [T] of one head of X ([B,T,C], head offset applied) as Xt[HS][Tp] (transposed)
// and/or Xp[T][HSp] (padded); padding is zero.
static inline void pack_head(float *Xt, float *Xp, const float *X, int T, int C, int HS, int Tp, int HSp) {
    if (Xt) {
        memset(Xt, 0, sizeof(float) * HS * Tp);
        for (int j = 0; j < T; j++)
            for (int d = 0; d < HS; d++) Xt[(int64_t)d * Tp + j] = X[(int64_t)j * C + d];
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
