// LayerNorm over the last dimension.
//   x, out, dx, dout: [N,C]; weight, bias, dweight, dbias: [C]; mean, rstd: [N].
// Forward and dx: one warp per row (launch ≥ N·32 threads, blockDim a multiple of 32).
// dweight/dbias, two stages (deterministic, no atomics): layernorm_backward_partials sums slice
// s of `slice_rows` rows per column into partials[s, 2C] (Σ dout·x̂ in the first C, Σ dout in the
// next C) — blockDim (32, 8), gridDim (⌈C/32⌉, ⌈N/slice_rows⌉), a block per 32 columns of a slice;
// then column_sum_finish (memory.cu) adds the slices, in order, into dweight and dbias.
// CPU reference: Sources/Kernels/cpu/layernorm.c.

#include "common.cuh"

extern "C" __global__ void layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                                             const float *weight, const float *bias, int N, int C, float eps) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + (long long)row * C;
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += xr[c];
    float m = warp_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane; c < C; c += 32) { float d = xr[c] - m; var += d * d; }
    float s = rsqrtf(warp_sum(var) / C + eps);
    float *o = out + (long long)row * C;
    for (int c = lane; c < C; c += 32) o[c] = (xr[c] - m) * s * weight[c] + bias[c];
    if (lane == 0) { mean[row] = m; rstd[row] = s; }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dout·weight (overwrites dx)
extern "C" __global__ void layernorm_backward_input(float *dx, const float *dout, const float *x, const float *weight,
                                                    const float *mean, const float *rstd, int N, int C) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + (long long)row * C, *dr = dout + (long long)row * C;
    float m = mean[row], s = rstd[row], mean_g = 0.0f, mean_gx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float g = dr[c] * weight[c];
        mean_g += g;
        mean_gx += g * (xr[c] - m) * s;
    }
    mean_g = warp_sum(mean_g) / C;
    mean_gx = warp_sum(mean_gx) / C;
    float *o = dx + (long long)row * C;
    for (int c = lane; c < C; c += 32) o[c] = s * (dr[c] * weight[c] - mean_g - (xr[c] - m) * s * mean_gx);
}

// partials[s, c] = Σ_{n ∈ slice s} dout[n,c]·x̂[n,c];  partials[s, C + c] = Σ_{n ∈ slice s} dout[n,c]
extern "C" __global__ void layernorm_backward_partials(float *partials, const float *dout, const float *x, const float *mean,
                                                       const float *rstd, int N, int C, int slice_rows) {
    const int c = blockIdx.x * 32 + threadIdx.x, first = blockIdx.y * slice_rows;
    const int last = first + slice_rows < N ? first + slice_rows : N;
    float dw = 0.0f, db = 0.0f;
    if (c < C)
        for (int n = first + threadIdx.y; n < last; n += 8) {
            const float d = dout[(long long)n * C + c];
            dw += d * (x[(long long)n * C + c] - mean[n]) * rstd[n];
            db += d;
        }
    const float w = column_block_sum(dw), b = column_block_sum(db);
    if (threadIdx.y == 0 && c < C) {
        float *out = partials + (long long)blockIdx.y * 2 * C;
        out[c] = w;
        out[C + c] = b;
    }
}
