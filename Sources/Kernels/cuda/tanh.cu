// tanh (the pooler's activation). x, out, dx, dout: [n]; backward from the output:
// dx = dout·(1 − out²). Grid-stride loops. CPU reference: Sources/Kernels/cpu/tanh.c.
#include "common.cuh"

extern "C" __global__ void tanh_forward(float *out, const float *x, long long n) {
    RT_GRID_STRIDE(i, n) out[i] = tanhf(x[i]);
}

extern "C" __global__ void tanh_backward(float *dx, const float *dout, const float *out, long long n) {
    RT_GRID_STRIDE(i, n) { float o = out[i]; dx[i] = dout[i] * (1.0f - o * o); }
}
