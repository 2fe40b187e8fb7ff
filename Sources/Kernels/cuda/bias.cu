// Bias of a linear layer.
//   bias_add:      out[N,C] += bias[C] (batched matmuls; single ones use cuBLASLt's epilogue).
//                  Grid-stride over N·C.
//   bias_backward_partials: dbias[C] += Σ_n dout[n,c] in two deterministic stages (no atomics):
//                  this kernel writes partials[s, c] = Σ over slice s of `slice_rows` rows —
//                  blockDim (32, 8), gridDim (⌈C/32⌉, ⌈N/slice_rows⌉), 8 thread rows striding the
//                  slice, then a fixed-order sum — and column_sum_finish (memory.cu) adds the
//                  slices, in order, into dbias.
// CPU reference: Sources/Kernels/cpu/bias.c.
#include "common.cuh"

extern "C" __global__ void bias_add(float *out, const float *bias, long long N, int C) {
    RT_GRID_STRIDE(i, N * C) out[i] += bias[i % C];
}

extern "C" __global__ void bias_backward_partials(float *partials, const float *dout, long long N, int C, int slice_rows) {
    const int c = blockIdx.x * 32 + threadIdx.x;
    const long long first = (long long)blockIdx.y * slice_rows, last = first + slice_rows < N ? first + slice_rows : N;
    float s = 0.0f;
    if (c < C)
        for (long long n = first + threadIdx.y; n < last; n += 8) s += dout[n * C + c];
    const float total = column_block_sum(s);
    if (threadIdx.y == 0 && c < C) partials[(long long)blockIdx.y * C + c] = total;
}
