// Losses, forward and gradient in one pass. Each writes the scalar mean loss to loss[0] and,
// when the gradient pointer is not NULL, d(grad_scale·loss) (overwritten).
//   cross entropy:      logits, dlogits [N,V]; labels [N] (outside [0,V): ignored)
//   soft cross entropy: logits, teacher, dlogits [N,V]; temperature T
//   mse:                a, b, da [n]
//   cosine:             a, b, da [N,C]; loss = mean_n (1 − cos(a_n, b_n)), as CosineEmbeddingLoss(target 1)
// Per-row (or per-chunk) results are summed in order: deterministic for any thread count.
#include "common.h"

typedef struct {
    float *grad, *partial;
    const float *x, *y;
    const int32_t *labels;
    int64_t N; int V; float temperature, grad_scale, norm;
} loss_args;

RT_INLINE float row_max(const float *x, int V, float scale) {
    v16 vm = v16_splat(-INFINITY);
    int j = 0;
    for (; j + 16 <= V; j += 16) vm = __builtin_elementwise_max(vm, v16_load(x + j) * scale);
    float m = __builtin_reduce_max(vm);
    for (; j < V; j++) m = fmaxf(m, x[j] * scale);
    return m;
}

// Σ_j exp(x[j] − shift), 16 lanes summed in a fixed order (then the tail).
RT_INLINE float row_exp_sum(const float *x, int V, float shift) {
    v16 vs = v16_splat(0);
    int j = 0;
    for (; j + 16 <= V; j += 16) vs += rt_exp16(v16_load(x + j) - shift);
    float sum = v16_sum(vs);
    for (; j < V; j++) sum += rt_expf(x[j] - shift);
    return sum;
}

RT_TASK(ce_task) {
    loss_args *a = ctx;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * a->V;
        float *g = a->grad ? a->grad + n * a->V : NULL;
        int32_t label = a->labels[n];
        if (label < 0 || label >= a->V) {
            a->partial[n] = 0;
            if (g) memset(g, 0, sizeof(float) * a->V);
            continue;
        }
        const float m = row_max(x, a->V, 1.0f), lse = m + logf(row_exp_sum(x, a->V, m));
        a->partial[n] = lse - x[label];
        if (g) {
            int j = 0;
            for (; j + 16 <= a->V; j += 16) v16_store(g + j, a->norm * rt_exp16(v16_load(x + j) - lse));
            for (; j < a->V; j++) g[j] = a->norm * rt_expf(x[j] - lse);
            g[label] -= a->norm;
        }
    }
}

static float sum_in_order(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return (float)s;
}

void rt_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *labels,
                      int64_t N, int V, float grad_scale) {
    int64_t valid = 0;
    for (int64_t n = 0; n < N; n++) valid += labels[n] >= 0 && labels[n] < V;
    float *partial = rt_caller_scratch(15, sizeof(float) * (N > 0 ? N : 1));
    loss_args a = { .grad = dlogits, .partial = partial, .x = logits, .labels = labels, .N = N, .V = V,
                    .norm = valid ? grad_scale / (float)valid : 0.0f };
    rt_parallel_for(N, 16, ce_task, &a);
    loss[0] = valid ? sum_in_order(partial, N) / (float)valid : 0.0f;
}

RT_TASK(soft_ce_task) {
    loss_args *a = ctx;
    const float invT = 1.0f / a->temperature;
    for (int64_t n = b; n < e; n++) {
        const float *s = a->x + n * a->V, *t = a->y + n * a->V;
        float ms = row_max(s, a->V, invT), mt = row_max(t, a->V, invT), ss = 0, st = 0;
        for (int j = 0; j < a->V; j++) {
            ss += rt_expf(s[j] * invT - ms);
            st += rt_expf(t[j] * invT - mt);
        }
        float lse_s = ms + logf(ss), lse_t = mt + logf(st), row = 0;
        float *g = a->grad ? a->grad + n * a->V : NULL;
        for (int j = 0; j < a->V; j++) {
            float pt = rt_expf(t[j] * invT - lse_t);
            row -= pt * (s[j] * invT - lse_s);
            if (g) g[j] = a->norm * invT * (rt_expf(s[j] * invT - lse_s) - pt);
        }
        a->partial[n] = row;
    }
}

void rt_soft_cross_entropy(float *loss, float *dlogits, const float *logits, const float *teacher,
                           int64_t N, int V, float temperature, float grad_scale) {
    float *partial = rt_caller_scratch(15, sizeof(float) * (N > 0 ? N : 1));
    loss_args a = { .grad = dlogits, .partial = partial, .x = logits, .y = teacher, .N = N, .V = V,
                    .temperature = temperature, .norm = N ? grad_scale / (float)N : 0.0f };
    rt_parallel_for(N, 16, soft_ce_task, &a);
    loss[0] = N ? sum_in_order(partial, N) / (float)N : 0.0f;
}

#define MSE_GRAIN 16384
RT_TASK(mse_task) {
    loss_args *a = ctx;
    float lanes[16] = {0};
    int64_t i = b;
    for (; i + 16 <= e; i += 16)
        for (int l = 0; l < 16; l++) {
            float d = a->x[i + l] - a->y[i + l];
            lanes[l] += d * d;
            if (a->grad) a->grad[i + l] = a->norm * d;
        }
    for (; i < e; i++) {
        float d = a->x[i] - a->y[i];
        lanes[0] += d * d;
        if (a->grad) a->grad[i] = a->norm * d;
    }
    float total = 0;
    for (int l = 0; l < 16; l++) total += lanes[l];
    a->partial[b / MSE_GRAIN] = total;
}

void rt_mse(float *loss, float *da, const float *a_, const float *b_, int64_t n, float grad_scale) {
    int64_t chunks = (n + MSE_GRAIN - 1) / MSE_GRAIN;
    float *partial = rt_caller_scratch(15, sizeof(float) * (chunks > 0 ? chunks : 1));
    loss_args a = { .grad = da, .partial = partial, .x = a_, .y = b_, .N = n, .norm = n ? 2.0f * grad_scale / (float)n : 0.0f };
    rt_parallel_for(n, MSE_GRAIN, mse_task, &a);
    loss[0] = n ? sum_in_order(partial, chunks) / (float)n : 0.0f;
}

RT_TASK(cosine_task) {
    loss_args *a = ctx;
    const int C = a->V;
    for (int64_t n = b; n < e; n++) {
        const float *x = a->x + n * C, *y = a->y + n * C;
        float xy = 0, xx = 0, yy = 0;
        for (int c = 0; c < C; c++) { xy += x[c] * y[c]; xx += x[c] * x[c]; yy += y[c] * y[c]; }
        xx += 1e-12f;   // as torch.nn.functional.cosine_embedding_loss
        yy += 1e-12f;
        float inv = 1.0f / sqrtf(xx * yy), cosv = xy * inv;
        a->partial[n] = 1.0f - cosv;
        if (a->grad) {
            float *g = a->grad + n * C;
            for (int c = 0; c < C; c++) g[c] = -a->norm * (y[c] * inv - cosv * x[c] / xx);
        }
    }
}

void rt_cosine(float *loss, float *da, const float *a_, const float *b_, int64_t N, int C, float grad_scale) {
    float *partial = rt_caller_scratch(15, sizeof(float) * (N > 0 ? N : 1));
    loss_args a = { .grad = da, .partial = partial, .x = a_, .y = b_, .N = N, .V = C, .norm = N ? grad_scale / (float)N : 0.0f };
    rt_parallel_for(N, 16, cosine_task, &a);
    loss[0] = N ? sum_in_order(partial, N) / (float)N : 0.0f;
}
