// SwiGLU, the gate of Llama's MLP: out = silu(gate)·up, silu(g) = g·σ(g).
//   gate, up, out, dgate, dup, dout: flat [n]. Grid-stride loops; any launch size works.
//   dgate = dout·up·σ(g)·(1 + g·(1 − σ(g)));  dup = dout·silu(g)   (both overwritten)
// CPU reference: Sources/Kernels/cpu/swiglu.c.
#include "common.cuh"

extern "C" __global__ void swiglu_forward(float *out, const float *gate, const float *up, long long n) {
    RT_GRID_STRIDE(i, n) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" __global__ void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                           long long n) {
    RT_GRID_STRIDE(i, n) {
        const float g = gate[i], s = 1.0f / (1.0f + expf(-g)), d = dout[i];
        dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = d * g * s;
    }
}
