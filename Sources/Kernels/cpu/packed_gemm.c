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
// backward, K = 49,152, ran at 0.6–0.8× OpenBLAS — it stays with the BLAS.) The register tiles
// are in packed_tiles.h, shared with the weight-only int8 product (int8_linear.c).
#include "packed_tiles.h"

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

RT_TASK(packed_task) {
    const packed_args *a = ctx;
    // AVX-512 takes 12 rows of two panels at once (packed_tile16), a lone panel alike; below it
    // tiles of 6 (AVX2) or 2 rows of one panel (packed_rows).
    const int rowBlock = level >= 4 ? 12 : level >= 3 ? 6 : 2;
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
        for (int64_t p = b, np; p < e; p += np) {   // two panels of this thread's share at once on AVX-512, or its last one alone
            np = level >= 4 && p + 1 < e ? 2 : 1;
            packed_panels(a, m0, end, p, np, level);
        }
    }
}

void rt_sgemm_packed(float *C, int ldc, const float *A, int lda, const float *P, const float *bias, int M, int N, int K, float beta) {
    if (M <= 0 || N <= 0) return;
    packed_args a = { .C = C, .A = A, .P = P, .bias = bias, .M = M, .N = N, .K = K, .lda = lda, .ldc = ldc, .beta = beta };
    const int64_t panels = (N + 15) / 16;
    rt_parallel_for(panels, packed_panel_grain(panels), packed_task, &a);
}
