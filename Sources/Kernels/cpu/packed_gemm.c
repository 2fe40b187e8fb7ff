// Products against a weight packed once and then read many times: a recurrent layer's W_hh,
// multiplied by the B rows of the state at every one of T steps, forward and backward. A BLAS
// repacks the weight on every call; rt_sgemm_rows reads it in place along K, four channels at a
// time, with a horizontal sum per output. Packed into panels of 16 channels, a tile of MR rows ×
// 16 channels is MR·2 vector accumulators fed by one broadcast of A and two loads of W per k.
//   rt_pack_weight:  P = W as panels of 16 output channels: panel p is [K][16], channel p·16 + j of
//                    row k at P[(p·K + k)·16 + j] (0 past N); ((N + 15)/16)·16·K floats.
//                    trans 0: W [N,K] (row stride ldw), a Linear's layout (C = A·Wᵀ);
//                    trans 1: W [K,N] (row stride ldw) (C = A·W).
//   rt_sgemm_packed: C[M,N] (row stride ldc) = (A[M,K]·op(W) + beta·C) + bias[N], A's rows lda
//                    apart; beta 0 ignores C's old values; bias may be NULL. The bias is added as each
//                    tile is stored (no second pass over C, no second wait for the pool).
// Panels are split over the pool; rows go in blocks that stay in L2 when A is large. Each output
// is one sum in k order, whatever the thread count or block. (Not for a huge K: the head's
// backward, K = 49,152, ran at 0.6–0.8× OpenBLAS — it stays with the BLAS.)
#include "common.h"

typedef float v8 __attribute__((vector_size(32)));

typedef struct {
    float *P;
    const float *W;
    int N, K, ldw, trans;
} pack_args;

RT_TASK(pack_task) {
    const pack_args *a = ctx;
    const int K = a->K;
    // Each source row is read in order: W [K,N] a panel's 16 channels of row k at a time, W [N,K]
    // channel by channel along k (a panel, K·64 bytes, stays in cache while its columns fill).
    // Against one element at a time in panel order (one thread, means of 30): W_hh [300,1200] for
    // the backward 0.13–0.15 ms instead of 0.54–0.64, [1200,300] for the forward 0.20–0.28 instead of 0.29–0.45.
    for (int64_t p = b; p < e; p++) {
        float *panel = a->P + p * K * 16;
        const int n0 = (int)p * 16, nc = a->N - n0 < 16 ? a->N - n0 : 16;
        if (a->trans) {
            for (int k = 0; k < K; k++) {
                const float *row = a->W + (int64_t)k * a->ldw + n0;
                if (nc == 16) memcpy(panel + (int64_t)k * 16, row, 16 * sizeof(float));
                else for (int j = 0; j < 16; j++) panel[(int64_t)k * 16 + j] = j < nc ? row[j] : 0;
            }
            continue;
        }
        for (int j = 0; j < nc; j++) {
            const float *channel = a->W + (int64_t)(n0 + j) * a->ldw;
            for (int k = 0; k < K; k++) panel[(int64_t)k * 16 + j] = channel[k];
        }
        for (int j = nc; j < 16; j++)
            for (int k = 0; k < K; k++) panel[(int64_t)k * 16 + j] = 0;
    }
}

int64_t rt_packed_weight_count(int N, int K) { return (int64_t)(N + 15) / 16 * 16 * K; }

void rt_pack_weight(float *P, const float *W, int ldw, int N, int K, int trans) {
    if (N <= 0 || K <= 0) return;
    pack_args a = { .P = P, .W = W, .N = N, .K = K, .ldw = ldw, .trans = trans };
    const int64_t panels = (N + 15) / 16;
    rt_parallel_for(panels, rt_balanced_grain(panels), pack_task, &a);
}

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

RT_TASK(packed_task) {
    const packed_args *a = ctx;
    // 6 rows fill AVX2's 16 registers (12 accumulators); the SSE baseline's 16 hold 2 rows' 8;
    // AVX-512 takes 12 rows of two panels at once (packed_tile16), a lone panel alike.
    const int MR = level >= 3 ? 6 : 2, rowBlock = level >= 4 ? 12 : MR;
    // When all of A would not stay in a core's L2 (512 KB on Zen 3) while the thread's panels
    // pass, its rows go in blocks of about 256 KB: A read once per block, each panel once per
    // block. (2-core Zen 3, SmolLM2's layer matmuls: 0.93–1.01× OpenBLAS at 512 rows without
    // the blocks, 1.18–1.23× with them, and 1.04–1.20× at 1,024–2,048 rows.)
    const int64_t rowBytes = (int64_t)a->K * (int64_t)sizeof(float), budget = 256 << 10;
    int MC = a->M;
    if ((int64_t)a->M * rowBytes > 2 * budget) {
        MC = (int)(budget / rowBytes) / rowBlock * rowBlock;
        if (MC < rowBlock) MC = rowBlock;
    }
    for (int m0 = 0; m0 < a->M; m0 += MC) {
        const int end = a->M - m0 < MC ? a->M : m0 + MC;
        for (int64_t p = b; p < e; p++) {
            if (level >= 4) {   // two panels of this thread's share at once, or its last one alone
                if (p + 1 < e) packed_rows16(a, m0, end, p++, 2);
                else packed_rows16(a, m0, end, p, 1);
                continue;
            }
            int m = m0;
            for (; m + MR <= end; m += MR) packed_tile(a, m, MR, p);
            switch (end - m) {   // the last rows as one tile (a constant height for each case)
            case 5: packed_tile(a, m, 5, p); break;
            case 4: packed_tile(a, m, 4, p); break;
            case 3: packed_tile(a, m, 3, p); break;
            case 2: packed_tile(a, m, 2, p); break;
            case 1: packed_tile(a, m, 1, p); break;
            }
        }
    }
}

void rt_sgemm_packed(float *C, int ldc, const float *A, int lda, const float *P, const float *bias, int M, int N, int K, float beta) {
    if (M <= 0 || N <= 0) return;
    packed_args a = { .C = C, .A = A, .P = P, .bias = bias, .M = M, .N = N, .K = K, .lda = lda, .ldc = ldc, .beta = beta };
    // On AVX-512, an even number of panels per chunk, so they are taken in pairs: with a grain of
    // one (N = 300, the backward's product on 2 threads) every panel ran alone, at 0.54× the pairs' speed.
    const int64_t panels = (N + 15) / 16;
    int64_t grain = rt_balanced_grain(panels);
    if (rt_cpu_level() >= 4) grain = grain < 2 ? 2 : (grain + 1) / 2 * 2;
    rt_parallel_for(panels, grain, packed_task, &a);
}
