// GEMM split by output columns over the pool: C[M,N] = alpha·op(A)·op(B) + beta·C with each
// thread calling the BLAS single-threaded on its own column block, so each packs only its part
// of B and no second thread pool is woken for a few microseconds of work (inference at batch 1),
// or within a team of rt_parallel_teams (OpenBLAS's own threads cannot be split between teams).
// Row-major; op(A) is [M,K] (with trans_a, A is [K,M]), op(B) is [K,N] (with trans_b, B is [N,K]).
#include "kernels.h"

typedef struct {
    rt_sgemm_fn gemm;
    int M, N, K, trans_a, trans_b, lda, ldb, ldc, block;
    float alpha, beta;
    const float *A, *B;
    float *C;
} split_args;

static void split_task(void *ctx, int64_t b, int64_t e, int thread) {
    split_args *a = ctx;
    for (int64_t blk = b; blk < e; blk++) {
        int n0 = (int)blk * a->block, n = a->N - n0 < a->block ? a->N - n0 : a->block;
        const float *B = a->trans_b ? a->B + (int64_t)n0 * a->ldb : a->B + n0;
        a->gemm(a->trans_a, a->trans_b, a->M, n, a->K, a->alpha, a->A, a->lda, B, a->ldb, a->beta, a->C + n0, a->ldc);
    }
}

void rt_split_gemm(rt_sgemm_fn gemm, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc) {
    int threads = rt_current_threads();
    int block = (N + threads - 1) / threads;
    block = (block + 15) / 16 * 16;
    split_args a = { .gemm = gemm, .M = M, .N = N, .K = K, .trans_a = trans_a, .trans_b = trans_b, .lda = lda, .ldb = ldb, .ldc = ldc,
                     .block = block, .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C };
    rt_parallel_for((N + block - 1) / block, 1, split_task, &a);
}
