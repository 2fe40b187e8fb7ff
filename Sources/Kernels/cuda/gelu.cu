// GELU, erf form (HF BERT): gelu(x) = ½·x·erfc(−x/√2); gelu'(x) = Φ(x) + x·φ(x); or (tanh_form ≠ 0)
// GPT-2's "gelu_new": ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
//   x, out, dx, dout: flat [n]. Grid-stride loops; any launch size works.
// CPU reference: Sources/Kernels/cpu/gelu.c. Self-contained: NVRTC gets no CUDA headers.
#include "common.cuh"

#define SQRT_2_OVER_PI 0.7978845608028654f

extern "C" __global__ void gelu_forward(float *out, const float *x, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        out[i] = tanh_form ? 0.5f * v * (1.0f + tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)))
                           : 0.5f * v * erfcf(-v * 0.70710678118654752f);
    }
}

// dx = dout · gelu'(x) (overwrites dx)
extern "C" __global__ void gelu_backward(float *dx, const float *dout, const float *x, long long n, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        if (tanh_form) {
            const float t = tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v));
            const float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
            dx[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
            continue;
        }
        float cdf = 0.5f * erfcf(-v * 0.70710678118654752f);
        float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dout[i] * (cdf + v * pdf);
    }
}
