// Fused AdamW step over one flat parameter buffer. params, grads, m, v: [n].
// As torch.optim.AdamW: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// p ← p − lr·wd·p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps).
#include "common.h"

typedef struct { float *p, *m, *v; const float *g; float lr, b1, b2, eps, wd, c1, c2; } adamw_args;

static RT_CLONES void adamw_task(void *ctx, int64_t b, int64_t e, int thread) {
    adamw_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        float g = a->g[i];
        float m = a->b1 * a->m[i] + (1.0f - a->b1) * g;
        float v = a->b2 * a->v[i] + (1.0f - a->b2) * g * g;
        a->m[i] = m;
        a->v[i] = v;
        float p = a->p[i];
        a->p[i] = p - a->lr * a->wd * p - a->lr * (m * a->c1) / (sqrtf(v * a->c2) + a->eps);
    }
}

void rt_adamw(float *params, const float *grads, float *m, float *v, int64_t n, float lr, float beta1,
              float beta2, float eps, float weight_decay, int64_t step) {
    adamw_args a = { .p = params, .m = m, .v = v, .g = grads, .lr = lr, .b1 = beta1, .b2 = beta2, .eps = eps,
                     .wd = weight_decay,
                     .c1 = (float)(1.0 / (1.0 - pow(beta1, (double)step))),
                     .c2 = (float)(1.0 / (1.0 - pow(beta2, (double)step))) };
    rt_parallel_for(n, 16384, adamw_task, &a);
}
