// GELU, erf form (HF BERT): gelu(x) = ½·x·erfc(−x/√2); gelu'(x) = Φ(x) + x·φ(x).
//   x, out, dx, dout: flat [n]. Grid-stride loops; any launch size works.
// CPU reference: Sources/Kernels/cpu/gelu.c. Self-contained: NVRTC gets no CUDA headers.
#include "common.cuh"

extern "C" __global__ void gelu_forward(float *out, const float *x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        out[i] = 0.5f * v * erfcf(-v * 0.70710678118654752f);
    }
}

// dx = dout · gelu'(x) (overwrites dx)
extern "C" __global__ void gelu_backward(float *dx, const float *dout, const float *x, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        float cdf = 0.5f * erfcf(-v * 0.70710678118654752f);
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dout[i] * (cdf + v * pdf);
    }
}
