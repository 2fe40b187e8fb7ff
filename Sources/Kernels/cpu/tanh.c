// tanh (BERT's pooler). x, out, dx, dout: flat [n]. backward uses the output: dx = dout·(1 − out²).
#include "common.h"

#define GRAIN 16384
typedef struct { float *out; const float *x, *dout; } tanh_args;

RT_TASK(forward_task) {
    tanh_args *a = ctx;
    for (int64_t i = b; i < e; i++) a->out[i] = rt_tanhf(a->x[i]);
}
void rt_tanh_forward(float *out, const float *x, int64_t n) {
    tanh_args a = { .out = out, .x = x };
    rt_parallel_for(n, GRAIN, forward_task, &a);
}

RT_TASK(backward_task) {
    tanh_args *a = ctx;
    for (int64_t i = b; i < e; i++) a->out[i] = a->dout[i] * (1.0f - a->x[i] * a->x[i]);
}
void rt_tanh_backward(float *dx, const float *dout, const float *out, int64_t n) {
    tanh_args a = { .out = dx, .x = out, .dout = dout };
    rt_parallel_for(n, GRAIN, backward_task, &a);
}
