// RMSNorm over the last dimension (Llama's LlamaRMSNorm, computed in fp32):
//   out[N,C] = x·rstd·weight,  rstd[n] = 1/√(mean_c x² + eps)  (saved for backward)
//   dx = rstd·(g − x̂·mean_c(g·x̂)),  g = dout·weight,  x̂ = x·rstd      (overwrites dx)
//   dweight[c] += Σ_n dout[n,c]·x̂[n,c]                                  (when dweight is given)
// x, out, dx, dout: [N,C]; weight, dweight: [C]; rstd: [N].
// Forward and dx: parallel over rows. dweight: parallel over column blocks, each walking the
// rows in order — deterministic without atomics.
#include "common.h"

typedef struct {
    float *out, *rstd, *dx, *dweight;
    const float *x, *weight, *dout, *srstd;
    int64_t N; int C; float eps;
} rmsnorm_args;

RT_TASK(rms_forward_task) {
    rmsnorm_args *a = ctx;
    const int C = a->C;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * C;
        float squares = 0;
#pragma clang loop vectorize(enable) interleave(enable)
        for (int c = 0; c < C; c++) squares += x[c] * x[c];
        const float s = 1.0f / sqrtf(squares / C + a->eps);
        float *out = a->out + n * C;
        for (int c = 0; c < C; c++) out[c] = x[c] * s * a->weight[c];
        a->rstd[n] = s;
    }
}

void rt_rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int64_t N, int C, float eps) {
    rmsnorm_args a = { .out = out, .rstd = rstd, .x = x, .weight = weight, .N = N, .C = C, .eps = eps };
    rt_parallel_for(N, 16, rms_forward_task, &a);
}

RT_TASK(rms_dx_task) {
    rmsnorm_args *a = ctx;
    const int C = a->C;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * C, *dout = a->dout + n * C;
        const float s = a->srstd[n];
        float mean_gx = 0;
#pragma clang loop vectorize(enable) interleave(enable)
        for (int c = 0; c < C; c++) mean_gx += dout[c] * a->weight[c] * x[c] * s;
        mean_gx /= C;
        float *dx = a->dx + n * C;
        for (int c = 0; c < C; c++) dx[c] = s * (dout[c] * a->weight[c] - x[c] * s * mean_gx);
    }
}

#define RMS_COLUMN_BLOCK 64
RT_TASK(rms_dweight_task) {
    rmsnorm_args *a = ctx;
    const int c0 = (int)b * RMS_COLUMN_BLOCK, c1 = (int)e * RMS_COLUMN_BLOCK < a->C ? (int)e * RMS_COLUMN_BLOCK : a->C;
    for (int c = c0; c < c1; c += RMS_COLUMN_BLOCK) {
        const int width = c1 - c < RMS_COLUMN_BLOCK ? c1 - c : RMS_COLUMN_BLOCK;
        float dw[RMS_COLUMN_BLOCK] = {0};
        for (int64_t n = 0; n < a->N; n++) {
            const float *x = a->x + n * a->C + c, *dout = a->dout + n * a->C + c;
            const float s = a->srstd[n];
            for (int j = 0; j < width; j++) dw[j] += dout[j] * x[j] * s;
        }
        for (int j = 0; j < width; j++) a->dweight[c + j] += dw[j];
    }
}

void rt_rmsnorm_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                         const float *rstd, int64_t N, int C) {
    rmsnorm_args a = { .dx = dx, .dweight = dweight, .dout = dout, .x = x, .weight = weight, .srstd = rstd, .N = N, .C = C };
    rt_parallel_for(N, 16, rms_dx_task, &a);
    if (dweight) rt_parallel_for((C + RMS_COLUMN_BLOCK - 1) / RMS_COLUMN_BLOCK, 1, rms_dweight_task, &a);
}
