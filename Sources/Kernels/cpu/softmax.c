// Masked softmax over keys: the unfused attention path (and its reference), the composed
// attention a backend without a fused kernel gets (Backend/ComposedOps.swift), and the masking
// of its score tensors.
//   scores, probs, dprobs, dscores: [B,NH,T,T]; mask: [B,T] (0 = padded key) or NULL;
//   bias: [NH,T,T] or NULL; lse: [B,NH,T] or NULL. A row with no valid key is all zeros (lse +inf).
//   causal ≠ 0: keys past the query row are masked too.
#include "common.h"

typedef struct { float *out, *lse; const float *scores, *bias, *dprobs, *probs; const int32_t *mask; int NH, T, causal; } softmax_args;

RT_TASK(forward_task) {
    softmax_args *a = ctx;
    const int T = a->T;
    for (int64_t row = b; row < e; row++) {
        int64_t bh = row / T, i = row % T;
        int batch = (int)(bh / a->NH), h = (int)(bh % a->NH);
        const float *s = a->scores + row * T;
        const float *bias = a->bias ? a->bias + ((int64_t)h * T + i) * T : NULL;
        const int32_t *mask = a->mask ? a->mask + (int64_t)batch * T : NULL;
        float *p = a->out + row * T;
        float mx = -INFINITY;
        for (int j = 0; j < T; j++) {
            float v = s[j] + (bias ? bias[j] : 0.0f);
            p[j] = v;
            if ((!mask || mask[j]) && (!a->causal || j <= i) && v > mx) mx = v;
        }
        if (mx == -INFINITY) {
            memset(p, 0, sizeof(float) * T);
            if (a->lse) a->lse[row] = INFINITY;
            continue;
        }
        float sum = 0;
        for (int j = 0; j < T; j++) {
            float x = (!mask || mask[j]) && (!a->causal || j <= i) ? rt_expf(p[j] - mx) : 0.0f;
            p[j] = x;
            sum += x;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < T; j++) p[j] *= inv;
        if (a->lse) a->lse[row] = mx + logf(sum);
    }
}
void rt_masked_softmax_forward(float *probs, float *lse, const float *scores, const int32_t *mask, const float *bias,
                               int B, int NH, int T, int causal) {
    softmax_args a = { .out = probs, .lse = lse, .scores = scores, .bias = bias, .mask = mask, .NH = NH, .T = T, .causal = causal };
    rt_parallel_for((int64_t)B * NH * T, 16, forward_task, &a);
}

RT_TASK(backward_task) {
    softmax_args *a = ctx;
    const int T = a->T;
    for (int64_t row = b; row < e; row++) {
        const float *p = a->probs + row * T, *dp = a->dprobs + row * T;
        float dot = 0;
        for (int j = 0; j < T; j++) dot += p[j] * dp[j];
        float *ds = a->out + row * T;
        for (int j = 0; j < T; j++) ds[j] = p[j] * (dp[j] - dot);
    }
}
void rt_masked_softmax_backward(float *dscores, const float *dprobs, const float *probs, int64_t rows, int T) {
    softmax_args a = { .out = dscores, .dprobs = dprobs, .probs = probs, .T = T };
    rt_parallel_for(rows, 16, backward_task, &a);
}

RT_TASK(mask_task) {
    softmax_args *a = ctx;
    const int T = a->T;
    for (int64_t row = b; row < e; row++) {
        int64_t bh = row / T, i = row % T;
        int batch = (int)(bh / a->NH), h = (int)(bh % a->NH);
        const float *bias = a->bias ? a->bias + ((int64_t)h * T + i) * T : NULL;
        const int32_t *mask = a->mask ? a->mask + (int64_t)batch * T : NULL;
        float *s = a->out + row * T;
        for (int j = 0; j < T; j++) s[j] = (!mask || mask[j]) && (!a->causal || j <= i) ? s[j] + (bias ? bias[j] : 0.0f) : 0.0f;
    }
}
void rt_masked_scores(float *scores, const int32_t *mask, const float *bias, int B, int NH, int T, int causal) {
    softmax_args a = { .out = scores, .bias = bias, .mask = mask, .NH = NH, .T = T, .causal = causal };
    rt_parallel_for((int64_t)B * NH * T, 16, mask_task, &a);
}
