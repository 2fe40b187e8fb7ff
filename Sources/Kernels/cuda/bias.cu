// Bias of a linear layer.
//   bias_add:      out[N,C] += bias[C] (batched matmuls; single ones use cuBLASLt's epilogue).
//                  Grid-stride over N·C.
//   bias_backward: dbias[C] += Σ_n dout[n,c]. Launch: blockDim (32, 8), gridDim.x = ⌈C/32⌉; each
//                  block owns 32 columns, its 8 thread rows stride over N, then a fixed-order
//                  reduction — deterministic, no atomics.
// CPU reference: Sources/Kernels/cpu/bias.c.
#include "common.cuh"

extern "C" __global__ void bias_add(float *out, const float *bias, long long N, int C) {
    RT_GRID_STRIDE(i, N * C) out[i] += bias[i % C];
}

extern "C" __global__ void bias_backward(float *dbias, const float *dout, long long N, int C) {
    __shared__ float partial[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < C)
        for (long long n = threadIdx.y; n < N; n += 8) s += dout[n * C + c];
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float total = 0.0f;
        for (int r = 0; r < 8; r++) total += partial[r][threadIdx.x];
        dbias[c] += total;
    }
}
