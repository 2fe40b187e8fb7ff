// Bias of a linear layer. out, dout: [N,C]; bias, dbias: [C].
// Forward is parallel over rows; backward over columns (each thread owns its columns and walks
// all rows), so dbias is deterministic without atomics.
#include "common.h"

typedef struct { float *out; const float *in; const float *bias; int64_t N; int C; } bias_args;

RT_TASK(add_task) {
    bias_args *a = ctx;
    for (int64_t n = b; n < e; n++) {
        float *row = a->out + n * a->C;
        for (int c = 0; c < a->C; c++) row[c] += a->bias[c];
    }
}
void rt_bias_add(float *out, const float *bias, int64_t N, int C) {
    bias_args a = { .out = out, .bias = bias, .N = N, .C = C };
    rt_parallel_for(N, 64, add_task, &a);
}

// Backward: each thread takes one run of whole 64-column blocks (about C / threads columns) and
// walks the rows once, reading its columns of each row as one stretch (up to 1,024 at a time):
// one pass over dout in long runs, where a pass per 64-column block re-read every row's page.
// Each column is still one sum in row order, whatever the thread count.
#define COLUMN_BLOCK 64
#define PIECE 1024
RT_TASK(backward_task) {
    bias_args *a = ctx;
    int c0 = (int)b * COLUMN_BLOCK, c1 = (int)e * COLUMN_BLOCK < a->C ? (int)e * COLUMN_BLOCK : a->C;
    float acc[PIECE];
    for (int c = c0; c < c1; c += PIECE) {
        int width = c1 - c < PIECE ? c1 - c : PIECE;
        memset(acc, 0, sizeof(float) * width);
        for (int64_t n = 0; n < a->N; n++) {
            const float *row = a->in + n * a->C + c;
            for (int j = 0; j < width; j++) acc[j] += row[j];
        }
        for (int j = 0; j < width; j++) a->out[c + j] += acc[j];
    }
}
void rt_bias_backward(float *dbias, const float *dout, int64_t N, int C) {
    bias_args a = { .out = dbias, .in = dout, .N = N, .C = C };
    const int64_t blocks = (C + COLUMN_BLOCK - 1) / COLUMN_BLOCK, threads = rt_current_threads();
    rt_parallel_for(blocks, (blocks + threads - 1) / threads, backward_task, &a);
}
