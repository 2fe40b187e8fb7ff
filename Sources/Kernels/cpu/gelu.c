// GELU, erf form as HF BERT: gelu(x) = x·Φ(x) = ½·x·erfc(−x/√2), gelu'(x) = Φ(x) + x·φ(x),
// φ(x) = exp(−x²/2)/√(2π); or (tanh_form ≠ 0) GPT-2's "gelu_new": ½·x·(1 + tanh(u)),
// u = √(2/π)·(x + 0.044715·x³), gelu'(x) = ½·(1 + t) + ½·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²).
//   x, out, dx, dout: flat [n].
#include "common.h"

#define GRAIN 16384
#define SQRT_2_OVER_PI 0.7978845608028654f
typedef struct { float *out; const float *x, *dout; int tanh_form; } gelu_args;

RT_TASK(forward_task) {
    gelu_args *a = ctx;
    if (a->tanh_form) {
        for (int64_t i = b; i < e; i++) {
            float x = a->x[i];
            a->out[i] = 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x)));
        }
        return;
    }
    for (int64_t i = b; i < e; i++) {
        float x = a->x[i];
        a->out[i] = 0.5f * x * rt_erfcf(-x * 0.70710678118654752f);
    }
}
void rt_gelu_forward(float *out, const float *x, int64_t n, int tanh_form) {
    gelu_args a = { .out = out, .x = x, .tanh_form = tanh_form };
    rt_parallel_for(n, GRAIN, forward_task, &a);
}

RT_TASK(backward_task) {
    gelu_args *a = ctx;
    if (a->tanh_form) {
        for (int64_t i = b; i < e; i++) {
            float x = a->x[i], t = tanhf(SQRT_2_OVER_PI * (x + 0.044715f * x * x * x));
            float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
            a->out[i] = a->dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
        }
        return;
    }
    for (int64_t i = b; i < e; i++) {
        float x = a->x[i];
        float cdf = 0.5f * rt_erfcf(-x * 0.70710678118654752f);
        float pdf = 0.39894228040143268f * rt_expf(-0.5f * x * x);
        a->out[i] = a->dout[i] * (cdf + x * pdf);
    }
}
void rt_gelu_backward(float *dx, const float *dout, const float *x, int64_t n, int tanh_form) {
    gelu_args a = { .out = dx, .x = x, .dout = dout, .tanh_form = tanh_form };
    rt_parallel_for(n, GRAIN, backward_task, &a);
}
