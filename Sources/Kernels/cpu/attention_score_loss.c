// TinyBERT's attention-score distillation loss, fused: the mean over [B,NH,T,T] of (S − S_t)²,
// where S = scale·q·kᵀ + bias is one model's pre-softmax scores and S_t = t.scale·t.q·t.kᵀ + t.bias
// another's (same batch, mask and heads; head sizes may differ), both 0 at masked keys.
//   q, k: [B,T,NH·HS]   t.q, t.k: [B,T,NH·t.HS]   mask: [B,T] key mask or NULL
//   bias, t.bias: [NH,T,T] or NULL
// Computed a QB-row tile at a time per (batch, head): nothing T×T is stored. Its gradient comes
// from the attention backward (rt_attention_backward's target). Per-item partials are summed in
// order: deterministic for any thread count. The unfused reference: rt_mse over the `scores`
// outputs of rt_attention_forward.
#include "attention_tiles.h"

typedef struct {
    double *partial;   // [B·NH]
    const float *q, *k, *bias;
    const int32_t *mask;
    const rt_score_target *t;
    int B, T, NH, HS;
    float scale;
} score_loss_args;

RT_INLINE double score_loss_item(const score_loss_args *a, int b, int h, int thread, const int level) {
    const int T = a->T, NH = a->NH, HS = a->HS, tHS = a->t->HS, C = NH * HS, tC = NH * tHS;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16), tHSp = (int)round_up(tHS, 16);
    const int jend = key_end(a->mask, b, T);
    if (jend == 0) return 0;   // every key masked: both sides are 0
    const int jtiles = (int)round_up(jend, 32);
    const int64_t head = (int64_t)b * T * C + (int64_t)h * HS, thead = (int64_t)b * T * tC + (int64_t)h * tHS;
    float *Kt = rt_thread_scratch(thread, 0, sizeof(float) * HS * Tp);
    float *tKt = rt_thread_scratch(thread, 1, sizeof(float) * tHS * Tp);
    float *S = rt_thread_scratch(thread, 2, sizeof(float) * QB * Tp);
    float *tS = rt_thread_scratch(thread, 3, sizeof(float) * QB * Tp);
    float *Qb = rt_thread_scratch(thread, 4, sizeof(float) * QB * HSp);
    float *tQb = rt_thread_scratch(thread, 5, sizeof(float) * QB * tHSp);
    float *keep = rt_thread_scratch(thread, 6, sizeof(float) * Tp);
    float *neg = rt_thread_scratch(thread, 7, sizeof(float) * Tp);
    float *brow = rt_thread_scratch(thread, 8, sizeof(float) * Tp);
    float *tbrow = rt_thread_scratch(thread, 9, sizeof(float) * Tp);
    key_vectors(keep, neg, a->mask, b, T, Tp);
    pack_head(Kt, NULL, a->k + head, T, C, HS, Tp, HSp);
    pack_head(tKt, NULL, a->t->k + thead, T, tC, tHS, Tp, tHSp);
    double sum = 0;
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int rows = T - i0 < QB ? T - i0 : QB;
        load_rows(Qb, a->q + head + (int64_t)i0 * C, rows, C, HS, HSp);
        load_rows(tQb, a->t->q + thead + (int64_t)i0 * tC, rows, tC, tHS, tHSp);
        scores_tile(S, Qb, HSp, Kt, HS, Tp, jtiles, level);
        scores_tile(tS, tQb, tHSp, tKt, tHS, Tp, jtiles, level);
        for (int r = 0; r < rows; r++) {
            const int i = i0 + r;
            const float *bias = bias_row(brow, a->bias, h, i, T, Tp), *tbias = bias_row(tbrow, a->t->bias, h, i, T, Tp);
            const float *s = S + r * Tp, *ts = tS + r * Tp;
            float row = 0;
            for (int j = 0; j < jend; j++) {
                const float x = a->scale * s[j] + (bias ? bias[j] : 0.0f);
                const float y = a->t->scale * ts[j] + (tbias ? tbias[j] : 0.0f);
                const float d = keep[j] * (x - y);
                row += d * d;
            }
            sum += row;
        }
    }
    return sum;
}

RT_TASK(score_loss_task) {
    score_loss_args *a = ctx;
    for (int64_t item = b; item < e; item++) a->partial[item] = score_loss_item(a, (int)(item / a->NH), (int)(item % a->NH), thread, level);
}

void rt_attention_score_loss(float *loss, const float *q, const float *k, const int32_t *mask, const float *bias,
                             const rt_score_target *target, int B, int T, int NH, int HS, float scale) {
    const int64_t items = (int64_t)B * NH;
    double *partial = rt_caller_scratch(15, sizeof(double) * (items > 0 ? items : 1));
    score_loss_args a = { .partial = partial, .q = q, .k = k, .bias = bias, .mask = mask, .t = target,
                          .B = B, .T = T, .NH = NH, .HS = HS, .scale = scale };
    rt_parallel_for(items, 1, score_loss_task, &a);
    double sum = 0;
    for (int64_t i = 0; i < items; i++) sum += partial[i];
    const double count = (double)items * T * T;
    loss[0] = count > 0 ? (float)(sum / count) : 0.0f;
}
