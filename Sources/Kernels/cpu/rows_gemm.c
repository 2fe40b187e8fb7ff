// GEMM against a weight stored as rows, read in place: for the few-row products of inference
// (decoding, a recurrent step's h·W_hhᵀ), where a BLAS repacks the whole of W on every call for a
// handful of rows of A — at one row, twice the memory traffic of the product itself.
//   rt_sgemm_rows: C[M,N] (row stride ldc) = alpha·A·Wᵀ + beta·C, with A[M,K] (row stride lda)
//                  and W[N,K] (row stride ldw), both read along K; beta 0 ignores C's old values.
// Items of four output channels go to the pool. An item keeps its four rows of W in cache (L1 up
// to K ≈ 900, else L2) while the rows of A pass three at a time (12 accumulators of 8 floats),
// prefetching the next item's rows during the first pass; the sums of four channels are finished
// together by a transposing reduction, then the scalar tail of K.
// (W[K,N] is left to the BLAS: read in place, a strip of columns is a new page every row or two,
// and a version of this kernel for it ran at half OpenBLAS's speed.)
#include "common.h"

typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

typedef struct {
    float *C;
    const float *A, *W;
    int M, N, K, lda, ldw, ldc;
    float alpha, beta;
} rows_args;

RT_INLINE v8 v8_load(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }

// (Σ a0, Σ a1, Σ a2, Σ a3): pairwise sums that keep the vectors' order, then the two halves.
RT_INLINE v8 pair_sums(v8 x, v8 y) {
    return __builtin_shufflevector(x, y, 0, 2, 8, 10, 4, 6, 12, 14) + __builtin_shufflevector(x, y, 1, 3, 9, 11, 5, 7, 13, 15);
}
RT_INLINE v4 sums4(v8 a0, v8 a1, v8 a2, v8 a3) {
    const v8 s = pair_sums(pair_sums(a0, a1), pair_sums(a2, a3));
    return __builtin_shufflevector(s, s, 0, 1, 2, 3) + __builtin_shufflevector(s, s, 4, 5, 6, 7);
}

// Rows m0 … m0+MR−1 of A against the item's rows w[0..3] (channels n0 … n0+NC−1; w[c] repeats
// row 0 past NC), prefetching the first `ahead` rows of the next item.
RT_INLINE void rows_block(const rows_args *a, const int m0, const int MR, const float *const w[4], const int n0, const int NC,
                          const int ahead) {
    const int K = a->K;
    const float *x[3];
    v8 acc[3][4];
    for (int r = 0; r < MR; r++) {
        x[r] = a->A + (int64_t)(m0 + r) * a->lda;
        for (int c = 0; c < 4; c++) acc[r][c] = (v8){0};
    }
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        if (ahead > 0 && (k & 15) == 0)   // the next item's rows, a line at a time, ahead of use
            for (int c = 0; c < ahead; c++) __builtin_prefetch(w[c] + 4 * (int64_t)a->ldw + k);
        v8 xv[3];
        for (int r = 0; r < MR; r++) xv[r] = v8_load(x[r] + k);
        for (int c = 0; c < 4; c++) {
            const v8 wv = v8_load(w[c] + k);
            for (int r = 0; r < MR; r++) acc[r][c] += xv[r] * wv;
        }
    }
    for (int r = 0; r < MR; r++) {
        v4 s = sums4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
        for (int j = k; j < K; j++)
            for (int c = 0; c < 4; c++) s[c] += x[r][j] * w[c][j];
        float *out = a->C + (int64_t)(m0 + r) * a->ldc + n0;
        for (int c = 0; c < NC; c++) out[c] = a->beta == 0 ? a->alpha * s[c] : a->alpha * s[c] + a->beta * out[c];
    }
}

RT_TASK(rows_task) {
    const rows_args *a = ctx;
    for (int64_t item = b; item < e; item++) {
        const int n0 = (int)item * 4, NC = a->N - n0 < 4 ? a->N - n0 : 4;
        const float *w[4];
        for (int c = 0; c < 4; c++) w[c] = a->W + (int64_t)(n0 + (c < NC ? c : 0)) * a->ldw;
        int m0 = 0;
        // The next item's rows that exist, prefetched during the first pass over A.
        const int next = a->N - n0 - 4 < 4 ? a->N - n0 - 4 : 4;
        for (; m0 + 3 <= a->M; m0 += 3) rows_block(a, m0, 3, w, n0, NC, m0 == 0 ? next : 0);
        if (a->M - m0 == 2) rows_block(a, m0, 2, w, n0, NC, m0 == 0 ? next : 0);
        else if (a->M - m0 == 1) rows_block(a, m0, 1, w, n0, NC, m0 == 0 ? next : 0);
    }
}

void rt_sgemm_rows(float *C, int ldc, const float *A, int lda, const float *W, int ldw, int M, int N, int K, float alpha,
                   float beta) {
    if (M <= 0 || N <= 0) return;
    rows_args a = { .C = C, .A = A, .W = W, .M = M, .N = N, .K = K, .lda = lda, .ldw = ldw, .ldc = ldc, .alpha = alpha, .beta = beta };
    // The small projections (48 items for N = 192) still balance; each output is one item's sum.
    const int64_t items = (N + 3) / 4;
    rt_parallel_for(items, rt_balanced_grain(items), rows_task, &a);
}
