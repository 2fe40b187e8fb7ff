// GELU, erf form as HF BERT: gelu(x) = x·Φ(x) = ½·x·erfc(−x/√2).
//   x, out, dx, dout: flat [n]. gelu'(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
#include "common.h"

#define GRAIN 16384
typedef struct { float *out; const float *x, *dout; } gelu_args;

RT_TASK(forward_task) {
    gelu_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        float x = a->x[i];
        a->out[i] = 0.5f * x * rt_erfcf(-x * 0.70710678118654752f);
    }
}
void rt_gelu_forward(float *out, const float *x, int64_t n) {
    gelu_args a = { .out = out, .x = x };
    rt_parallel_for(n, GRAIN, forward_task, &a);
}

RT_TASK(backward_task) {
    gelu_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        float x = a->x[i];
        float cdf = 0.5f * rt_erfcf(-x * 0.70710678118654752f);
        float pdf = 0.39894228040143268f * rt_expf(-0.5f * x * x);
        a->out[i] = a->dout[i] * (cdf + x * pdf);
    }
}
void rt_gelu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    gelu_args a = { .out = dx, .x = x, .dout = dout };
    rt_parallel_for(n, GRAIN, backward_task, &a);
}
