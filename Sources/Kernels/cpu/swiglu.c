// SwiGLU, the gate of Llama's MLP: out = silu(gate)·up, silu(g) = g·σ(g).
//   gate, up, out, dgate, dup, dout: flat [n].
//   dgate = dout·up·σ(g)·(1 + g·(1 − σ(g)));  dup = dout·silu(g)   (both overwritten)
#include "common.h"

#define GRAIN 16384
typedef struct { float *out, *dgate, *dup; const float *gate, *up, *dout; } swiglu_args;

RT_TASK(swiglu_forward_task) {
    swiglu_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        const float g = a->gate[i];
        a->out[i] = g * rt_sigmoidf(g) * a->up[i];
    }
}
void rt_swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    swiglu_args a = { .out = out, .gate = gate, .up = up };
    rt_parallel_for(n, GRAIN, swiglu_forward_task, &a);
}

RT_TASK(swiglu_backward_task) {
    swiglu_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        const float g = a->gate[i], s = rt_sigmoidf(g), d = a->dout[i];
        a->dgate[i] = d * a->up[i] * s * (1.0f + g * (1.0f - s));
        a->dup[i] = d * g * s;
    }
}
void rt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    swiglu_args a = { .dgate = dgate, .dup = dup, .dout = dout, .gate = gate, .up = up };
    rt_parallel_for(n, GRAIN, swiglu_backward_task, &a);
}
