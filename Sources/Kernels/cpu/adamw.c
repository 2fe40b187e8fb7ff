// Fused AdamW step over one flat parameter buffer. params, grads, m, v: [n].
// As torch.optim.AdamW: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
// p ← p·(1 − lr·wd) − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps).
#include "common.h"

// Coefficients are formed in double from double hyper-parameters and rounded once to float,
// as torch does (its scalars are Python floats): 1 − 0.999 becomes 0.001f, not 1 − 0.999f.
typedef struct { float *p, *m, *v; const float *g; float lr, b1, omb1, b2, omb2, eps, decay, c1, c2; } adamw_args;

RT_TASK(adamw_task) {
    adamw_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        float g = a->g[i];
        float m = a->b1 * a->m[i] + a->omb1 * g;
        float v = a->b2 * a->v[i] + a->omb2 * g * g;
        a->m[i] = m;
        a->v[i] = v;
        float p = a->p[i];
        a->p[i] = p * a->decay - a->lr * (m * a->c1) / (sqrtf(v * a->c2) + a->eps);
    }
}

void rt_adamw(float *params, const float *grads, float *m, float *v, int64_t n, double lr, double beta1,
              double beta2, double eps, double weight_decay, int64_t step) {
    adamw_args a = { .p = params, .m = m, .v = v, .g = grads, .lr = (float)lr, .b1 = (float)beta1,
                     .omb1 = (float)(1.0 - beta1), .b2 = (float)beta2, .omb2 = (float)(1.0 - beta2), .eps = (float)eps,
                     .decay = (float)(1.0 - lr * weight_decay),
                     .c1 = (float)(1.0 / (1.0 - pow(beta1, (double)step))),
                     .c2 = (float)(1.0 / (1.0 - pow(beta2, (double)step))) };
    rt_parallel_for(n, 16384, adamw_task, &a);
}
