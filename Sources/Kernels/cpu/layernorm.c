// LayerNorm over the last dimension.
//   x, out, dx, dout: [N,C]; weight, bias, dweight, dbias: [C]; mean, rstd: [N].
// Forward and dx: parallel over rows (two-pass mean/variance, the row stays in L1).
// dweight/dbias: a second pass parallel over column blocks, deterministic without atomics.
#include "common.h"

typedef struct {
    float *out, *mean, *rstd, *dx, *dweight, *dbias;
    const float *x, *weight, *bias, *dout, *smean, *srstd;
    int64_t N; int C; float eps;
} layernorm_args;

RT_TASK(forward_task) {
    layernorm_args *a = ctx;
    const int C = a->C;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * C;
        float sum = 0;
#pragma clang loop vectorize(enable) interleave(enable)
        for (int c = 0; c < C; c++) sum += x[c];
        float m = sum / C, var = 0;
#pragma clang loop vectorize(enable) interleave(enable)
        for (int c = 0; c < C; c++) var += (x[c] - m) * (x[c] - m);
        float s = 1.0f / sqrtf(var / C + a->eps);
        float *out = a->out + n * C;
        for (int c = 0; c < C; c++) out[c] = (x[c] - m) * s * a->weight[c] + a->bias[c];
        a->mean[n] = m;
        a->rstd[n] = s;
    }
}

void rt_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int64_t N, int C, float eps) {
    layernorm_args a = { .out = out, .mean = mean, .rstd = rstd, .x = x, .weight = weight, .bias = bias,
                         .N = N, .C = C, .eps = eps };
    rt_parallel_for(N, 16, forward_task, &a);
}

RT_TASK(dx_task) {
    layernorm_args *a = ctx;
    const int C = a->C;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * C, *dout = a->dout + n * C;
        float m = a->smean[n], s = a->srstd[n];
        float mean_g = 0, mean_gx = 0;
#pragma clang loop vectorize(enable) interleave(enable)
        for (int c = 0; c < C; c++) {
            float g = dout[c] * a->weight[c];
            mean_g += g;
            mean_gx += g * (x[c] - m) * s;
        }
        mean_g /= C;
        mean_gx /= C;
        float *dx = a->dx + n * C;
        for (int c = 0; c < C; c++) dx[c] = s * (dout[c] * a->weight[c] - mean_g - (x[c] - m) * s * mean_gx);
    }
}

#define COLUMN_BLOCK 64
RT_TASK(dparams_task) {
    layernorm_args *a = ctx;
    int c0 = (int)b * COLUMN_BLOCK, c1 = (int)e * COLUMN_BLOCK < a->C ? (int)e * COLUMN_BLOCK : a->C;
    for (int c = c0; c < c1; c += COLUMN_BLOCK) {
        int width = c1 - c < COLUMN_BLOCK ? c1 - c : COLUMN_BLOCK;
        float dw[COLUMN_BLOCK] = {0}, db[COLUMN_BLOCK] = {0};
        for (int64_t n = 0; n < a->N; n++) {
            const float *x = a->x + n * a->C + c, *dout = a->dout + n * a->C + c;
            float m = a->smean[n], s = a->srstd[n];
            for (int j = 0; j < width; j++) {
                dw[j] += dout[j] * (x[j] - m) * s;
                db[j] += dout[j];
            }
        }
        for (int j = 0; j < width; j++) {
            if (a->dweight) a->dweight[c + j] += dw[j];
            if (a->dbias) a->dbias[c + j] += db[j];
        }
    }
}

void rt_layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t N, int C) {
    layernorm_args a = { .dx = dx, .dweight = dweight, .dbias = dbias, .dout = dout, .x = x, .weight = weight,
                         .smean = mean, .srstd = rstd, .N = N, .C = C };
    if (dx) rt_parallel_for(N, 16, dx_task, &a);
    if (dweight || dbias) rt_parallel_for((C + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1, dparams_task, &a);
}
