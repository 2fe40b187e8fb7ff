// RMSNorm over the last dimension (Llama's LlamaRMSNorm).
//   x, out, dx, dout: [N,C]; weight: [C]; rstd: [N].
//   out = x·rstd·weight, rstd = 1/√(mean x² + eps);  dx = rstd·(g − x̂·mean(g·x̂)), g = dout·weight, x̂ = x·rstd.
// Forward and dx: one warp per row (launch ≥ N·32 threads, blockDim a multiple of 32).
// dweight, two stages (deterministic, no atomics): rmsnorm_backward_partials sums slice s of
// `slice_rows` rows per column into partials[s, C] (Σ dout·x̂) — blockDim (32, 8), gridDim
// (⌈C/32⌉, ⌈N/slice_rows⌉) — then column_sum_finish (memory.cu) adds the slices, in order.
// CPU reference: Sources/Kernels/cpu/rmsnorm.c.

#include "common.cuh"

extern "C" __global__ void rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int N, int C, float eps) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + (long long)row * C;
    float squares = 0.0f;
    for (int c = lane; c < C; c += 32) squares += xr[c] * xr[c];
    float s = rsqrtf(warp_sum(squares) / C + eps);
    float *o = out + (long long)row * C;
    for (int c = lane; c < C; c += 32) o[c] = xr[c] * s * weight[c];
    if (lane == 0) rstd[row] = s;
}

extern "C" __global__ void rmsnorm_backward_input(float *dx, const float *dout, const float *x, const float *weight,
                                                  const float *rstd, int N, int C) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float *xr = x + (long long)row * C, *dr = dout + (long long)row * C;
    float s = rstd[row], mean_gx = 0.0f;
    for (int c = lane; c < C; c += 32) mean_gx += dr[c] * weight[c] * xr[c] * s;
    mean_gx = warp_sum(mean_gx) / C;
    float *o = dx + (long long)row * C;
    for (int c = lane; c < C; c += 32) o[c] = s * (dr[c] * weight[c] - xr[c] * s * mean_gx);
}

// partials[s, c] = Σ_{n ∈ slice s} dout[n,c]·x[n,c]·rstd[n]
extern "C" __global__ void rmsnorm_backward_partials(float *partials, const float *dout, const float *x, const float *rstd,
                                                     int N, int C, int slice_rows) {
    const int c = blockIdx.x * 32 + threadIdx.x, first = blockIdx.y * slice_rows;
    const int last = first + slice_rows < N ? first + slice_rows : N;
    float dw = 0.0f;
    if (c < C)
        for (int n = first + threadIdx.y; n < last; n += 8) dw += dout[(long long)n * C + c] * x[(long long)n * C + c] * rstd[n];
    const float w = column_block_sum(dw);
    if (threadIdx.y == 0 && c < C) partials[(long long)blockIdx.y * C + c] = w;
}
