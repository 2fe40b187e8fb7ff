// Fused LoRA branch, y += scale·(drop(x)·Aᵀ)·Bᵀ, for ranks up to MAX_R.
//   x, dx: [N,In]; y, dy: [N,Out]; A: [R,In]; B: [Out,R]; xa, dxa: [N,R]
//   drop: inverted dropout with probability p, mask rt_keep(key(seed), n·In + i) (as the CPU's)
// One warp per row (launch ≥ N·32 threads, blockDim = 32·WARPS):
//   lora_forward         xa = drop(x)·Aᵀ, then y += scale·xa·Bᵀ: the dropped row and its R
//                        projections never go through memory (only xa is written, for backward)
//   lora_backward_rows   dxa = scale·dy·B, then dx += drop'(dxa·A): no [N,In] scratch
// The reductions over rows (dA += dxaᵀ·drop(x), dB += scale·dyᵀ·xa) are cuBLASLt matmuls.
// CPU reference: Sources/Kernels/cpu/lora.c.
#include "common.cuh"

#define WARPS 8
#define MAX_R 128
#define CHUNK 16   // projections accumulated per pass over a row

// acc[t] += v·M[(k0 + t)·In + i] for the chunk's kn projections: CHUNK projections per pass over a
// row, so v (element i of the row, dropped) is produced once per pass.
__device__ __forceinline__ void accumulate_chunk(float acc[CHUNK], float v, const float *M, int k0, int kn, long long In,
                                                 int i) {
    for (int t = 0; t < CHUNK; t++)
        if (t < kn) acc[t] += v * M[(k0 + t) * In + i];
}

// out[k0 + t] = factor · Σ_lanes acc[t], written by lane 0.
__device__ __forceinline__ void finish_chunk(float *out, float acc[CHUNK], int k0, int kn, float factor, int lane) {
    for (int t = 0; t < CHUNK; t++) {
        const float s = warp_sum(acc[t]);
        if (t < kn && lane == 0) out[k0 + t] = factor * s;
    }
}

extern "C" __global__ void lora_forward(float *y, float *xa, const float *x, const float *A, const float *B, long long N,
                                        int In, int Out, int R, float scale, float p, unsigned long long seed) {
    __shared__ float xs[WARPS][MAX_R];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long n = blockIdx.x * (long long)WARPS + warp;
    if (n >= N) return;
    const float *xr = x + n * In;
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    for (int k0 = 0; k0 < R; k0 += CHUNK) {
        float acc[CHUNK];
        for (int t = 0; t < CHUNK; t++) acc[t] = 0.0f;
        const int kn = R - k0 < CHUNK ? R - k0 : CHUNK;
        for (int i = lane; i < In; i += 32) {
            float v = xr[i];
            if (p > 0.0f) v = rt_keep(key, (unsigned long long)n * In + i, p) ? v * keep_scale : 0.0f;
            accumulate_chunk(acc, v, A, k0, kn, In, i);
        }
        finish_chunk(xs[warp], acc, k0, kn, 1.0f, lane);
    }
    __syncwarp();
    for (int k = lane; k < R; k += 32) xa[n * R + k] = xs[warp][k];
    float *yr = y + n * Out;
    for (int o = lane; o < Out; o += 32) {
        const float *b = B + (long long)o * R;
        float s = 0.0f;
        for (int k = 0; k < R; k++) s += xs[warp][k] * b[k];
        yr[o] += scale * s;
    }
}

extern "C" __global__ void lora_backward_rows(float *dx, float *dxa, const float *dy, const float *A, const float *B,
                                              long long N, int In, int Out, int R, float scale, float p,
                                              unsigned long long seed) {
    __shared__ float ds[WARPS][MAX_R];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long n = blockIdx.x * (long long)WARPS + warp;
    if (n >= N) return;
    const float *dyr = dy + n * Out;
    // dxa[k] = scale·Σ_o dy[o]·B[o,k] (B is [Out,R]: a lane reads CHUNK consecutive floats of row o).
    for (int k0 = 0; k0 < R; k0 += CHUNK) {
        float acc[CHUNK];
        for (int t = 0; t < CHUNK; t++) acc[t] = 0.0f;
        const int kn = R - k0 < CHUNK ? R - k0 : CHUNK;
        for (int o = lane; o < Out; o += 32) {
            const float g = dyr[o];
            const float *b = B + (long long)o * R + k0;
            for (int t = 0; t < CHUNK; t++)
                if (t < kn) acc[t] += g * b[t];
        }
        finish_chunk(ds[warp], acc, k0, kn, scale, lane);
    }
    __syncwarp();
    for (int k = lane; k < R; k += 32) dxa[n * R + k] = ds[warp][k];
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    float *dxr = dx + n * In;
    for (int i = lane; i < In; i += 32) {
        if (p > 0.0f && !rt_keep(key, (unsigned long long)n * In + i, p)) continue;
        float s = 0.0f;
        for (int k = 0; k < R; k++) s += ds[warp][k] * A[(long long)k * In + i];
        dxr[i] += keep_scale * s;
    }
}
