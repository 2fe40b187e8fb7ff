// Fused multi-head attention, forward and backward, flash-style on the CPU.
//   q, out, dq, dout: [B,T,NH·HS] (head h in columns h·HS … h·HS+HS−1)
//   k, v, dk, dv: [B,T,NKV·HS]; query head h reads key/value head h / (NH/NKV) (grouped-query
//                 attention: NKV = NH is ordinary multi-head attention, the heads are not copied)
//   mask: [B,T] key mask (0 = padded key) or NULL      bias, dbias: [NH,T,T] or NULL
//   causal: query i sees keys j ≤ i only (decoders); the key blocks past the row block are skipped
//   lse: [B,NH,T] log-sum-exp of each query row (+inf: no valid key, the row outputs zeros)
//   scores, dscores: [B,NH,T,T] pre-softmax scores (0 at masked keys) / their gradient, optional
//   target: backward adds the gradient of TinyBERT's attention-score MSE against another model's
//           scores, recomputed tile by tile from its q, k (no T×T tensor on either side)
//   dropout: on the probabilities (training), inverted, mask rt_dropout_keep(seed, ((b·NH+h)·T+i)·T+j)
// Forward: one work item is one (batch, head). Backward: one (batch, key/value head) looping
// over the query heads that share it, so dK and dV accumulate without races — or one key/value
// head looping over the batch when dbias is wanted, so dbias needs no atomics. Within it, K (and V) are packed once, then each block of
// QB query rows goes through scale·q·kᵀ + bias, mask, softmax and ·V in one pass; only a QB×T
// block of scores ever exists. Backward recomputes P from lse (nothing T×T is saved) and
// accumulates dK, dV in per-item buffers. Inner loops are register tiles of 16-float vectors sized
// to the clone (attention_tiles.h).
#include "attention_tiles.h"
#include <stdlib.h>

typedef struct {
    float *out, *lse, *scores, *dq, *dk, *dv, *dbias;
    const float *q, *k, *v, *dout, *dscores, *fout, *flse, *bias;
    const rt_score_target *target;   // backward: the attention-score MSE's gradient, computed here
    const int32_t *mask;
    int B, T, NH, NKV, HS, causal;
    float scale;
    float dropout;    // on the attention probabilities (training); mask from (seed, ((b·NH + h)·T + i)·T + j)
    uint64_t seed;
    uint32_t key;     // rt_dropout_key(seed)
} attention_args;

// Out rows r0 … r0+RG−1, 16·NV columns from c0: Σ_j P[r][j] · M[j][c0…]; M is [T][HSp].
RT_INLINE void weighted_rows(float *Out, int ldo, const float *P, int Tp, const float *M, int HSp, int r0, int c0,
                             int jend, const int RG, const int NV) {
    v16 acc[TILE_ROWS_MAX][NVMAX];
    for (int r = 0; r < RG; r++)
        for (int t = 0; t < NV; t++) acc[r][t] = v16_splat(0);
    for (int j = 0; j < jend; j++) {
        const float *m = M + (int64_t)j * HSp + c0;
        v16 mv[NVMAX];
        for (int t = 0; t < NV; t++) mv[t] = v16_load(m + 16 * t);
        for (int r = 0; r < RG; r++) {
            float p = P[(r0 + r) * Tp + j];
            for (int t = 0; t < NV; t++) acc[r][t] += p * mv[t];
        }
    }
    for (int r = 0; r < RG; r++)
        for (int t = 0; t < NV; t++) v16_store(Out + (r0 + r) * ldo + c0 + 16 * t, acc[r][t]);
}

// Out[QB][HSp] = P[QB][·] · M over the first jend keys, in the clone's register tiles.
RT_INLINE void weighted_rows_all(float *Out, int ldo, const float *P, int Tp, const float *M, int HSp, int jend, const int level) {
    const int RG = TILE_ROWS(level), NV = TILE_VECTORS(level);
    for (int r0 = 0; r0 < QB; r0 += RG) {
        int c0 = 0;
        for (; c0 + 16 * NV <= HSp; c0 += 16 * NV) weighted_rows(Out, ldo, P, Tp, M, HSp, r0, c0, jend, RG, NV);
        if (c0 < HSp) weighted_rows(Out, ldo, P, Tp, M, HSp, r0, c0, jend, RG, 1);   // HSp − c0 = 16
    }
}

// Acc[j][c0…] += Σ_r W[r][j] · X[r][c0…] over rows r0 … r0+RG−1, for j < jend; Acc is [T][HSp],
// X is [QB][HSp].
RT_INLINE void accumulate_columns(float *Acc, const float *W, int Tp, const float *X, int HSp, int r0, int c0,
                                  int jend, const int RG, const int NV) {
    v16 xv[TILE_ROWS_MAX][NVMAX];
    for (int r = 0; r < RG; r++)
        for (int t = 0; t < NV; t++) xv[r][t] = v16_load(X + (r0 + r) * HSp + c0 + 16 * t);
    for (int j = 0; j < jend; j++) {
        float *acc_row = Acc + (int64_t)j * HSp + c0;
        v16 acc[NVMAX];
        for (int t = 0; t < NV; t++) acc[t] = v16_load(acc_row + 16 * t);
        for (int r = 0; r < RG; r++) {
            float w = W[(r0 + r) * Tp + j];
            for (int t = 0; t < NV; t++) acc[t] += w * xv[r][t];
        }
        for (int t = 0; t < NV; t++) v16_store(acc_row + 16 * t, acc[t]);
    }
}

// Acc[j][·] += Σ_r W[r][j] · X[r][·] over the block's QB rows, in the clone's register tiles.
RT_INLINE void accumulate_columns_all(float *Acc, const float *W, int Tp, const float *X, int HSp, int jend, const int level) {
    const int RG = TILE_ROWS(level), NV = TILE_VECTORS(level);
    for (int r0 = 0; r0 < QB; r0 += RG) {
        int c0 = 0;
        for (; c0 + 16 * NV <= HSp; c0 += 16 * NV) accumulate_columns(Acc, W, Tp, X, HSp, r0, c0, jend, RG, NV);
        if (c0 < HSp) accumulate_columns(Acc, W, Tp, X, HSp, r0, c0, jend, RG, 1);
    }
}

// s[0 … 16·nt) = scale·s + bias (bias may be NULL).
RT_INLINE void scale_and_bias(float *s, const float *bias, float scale, int nt) {
    for (int t = 0; t < nt; t++) {
        v16 x = v16_load(s + 16 * t) * scale;
        if (bias) x += v16_load(bias + 16 * t);
        v16_store(s + 16 * t, x);
    }
}

// One query row: x = scale·s + bias (skipped when `biased` says s already holds it), then
// s = exp(x − max) at valid keys, 0 elsewhere. Writes lse, returns the sum of the exponentials.
RT_INLINE float softmax_row(float *s, const float *bias, float scale, int biased, const float *keep,
                            const float *neg, int nt, float *lse) {
    v16 vmax = v16_splat(-INFINITY);
    for (int t = 0; t < nt; t++) {
        v16 x = v16_load(s + 16 * t);
        if (!biased) {
            x *= scale;
            if (bias) x += v16_load(bias + 16 * t);
            v16_store(s + 16 * t, x);
        }
        vmax = __builtin_elementwise_max(vmax, x + v16_load(neg + 16 * t));
    }
    const float mx = __builtin_reduce_max(vmax);
    v16 vsum = v16_splat(0);
    for (int t = 0; t < nt; t++) {
        v16 p = rt_exp16(v16_load(s + 16 * t) - mx) * v16_load(keep + 16 * t);
        v16_store(s + 16 * t, p);
        vsum += p;
    }
    const float sum = v16_sum(vsum);
    *lse = mx + logf(sum);
    return sum;
}

// Backward for one query row: p holds q·kᵀ, ds holds dP = dO·vᵀ. Afterwards
// p = exp(scale·q·kᵀ + bias − lse) at valid keys (else 0) and ds = p·(dP − D).
RT_INLINE void probabilities_and_dscores(float *p, float *ds, const float *bias, float scale, float lse, float D,
                                         const float *keep, int nt) {
    for (int t = 0; t < nt; t++) {
        v16 x = v16_load(p + 16 * t) * scale;
        if (bias) x += v16_load(bias + 16 * t);
        v16 pv = rt_exp16(x - lse) * v16_load(keep + 16 * t);
        v16_store(p + 16 * t, pv);
        v16_store(ds + 16 * t, pv * (v16_load(ds + 16 * t) - D));
    }
}

// With dropout on the probabilities (mask m = keep/(1 − q) or 0 per key): p = P·m for dV and
// ds = P·(dP·m − D), P = exp(scale·q·kᵀ + bias − lse) at valid keys.
RT_INLINE void dropped_probabilities_and_dscores(float *p, float *ds, const float *bias, float scale, float lse, float D,
                                                 const float *keep, const float *m, int nt) {
    for (int t = 0; t < nt; t++) {
        v16 x = v16_load(p + 16 * t) * scale;
        if (bias) x += v16_load(bias + 16 * t);
        v16 pv = rt_exp16(x - lse) * v16_load(keep + 16 * t), mv = v16_load(m + 16 * t);
        v16_store(ds + 16 * t, pv * (v16_load(ds + 16 * t) * mv - D));
        v16_store(p + 16 * t, pv * mv);
    }
}


// Causal attention: query row i's own key vectors over jtiles columns (keys past i invalid).
// Returns whether the row has any valid key (with left padding the first rows may have none).
static inline int causal_row(float *rkeep, float *rneg, const float *keep, const float *neg, int i, int jtiles) {
    int any = 0;
    for (int j = 0; j < jtiles; j++) {
        rkeep[j] = j <= i ? keep[j] : 0.0f;
        rneg[j] = j <= i ? neg[j] : -INFINITY;
        any |= rkeep[j] != 0.0f;
    }
    return any;
}

// Keys a block of query rows [i0, i0 + rows) can see: all valid ones, or with causal masking
// those up to its last row.
static inline int block_key_end(const attention_args *a, int jend, int i0, int rows) {
    return a->causal && i0 + rows < jend ? i0 + rows : jend;
}

RT_INLINE void forward_item(attention_args *a, int b, int h, int thread, const int level) {
    const int T = a->T, HS = a->HS, NH = a->NH, C = NH * HS, CK = a->NKV * HS;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16);
    const int64_t head = (int64_t)b * T * C + (int64_t)h * HS;
    const int64_t kvhead = (int64_t)b * T * CK + (int64_t)(h / (NH / a->NKV)) * HS;
    const int jend = key_end(a->mask, b, T);
    float *lse = a->lse + ((int64_t)b * NH + h) * T;
    float *scores = a->scores ? a->scores + ((int64_t)b * NH + h) * T * T : NULL;
    if (jend == 0) {   // no valid key: zeros out, +inf marks the rows for backward
        for (int i = 0; i < T; i++) {
            memset(a->out + head + (int64_t)i * C, 0, sizeof(float) * HS);
            lse[i] = INFINITY;
        }
        if (scores) memset(scores, 0, sizeof(float) * T * T);
        return;
    }
    float *Kt = rt_thread_scratch(thread, 0, sizeof(float) * HS * Tp);
    float *Vp = rt_thread_scratch(thread, 1, sizeof(float) * T * HSp);
    float *S = rt_thread_scratch(thread, 2, sizeof(float) * QB * Tp);
    float *Qb = rt_thread_scratch(thread, 3, sizeof(float) * QB * HSp);
    float *Ob = rt_thread_scratch(thread, 4, sizeof(float) * QB * HSp);
    float *keep = rt_thread_scratch(thread, 5, sizeof(float) * Tp);
    float *neg = rt_thread_scratch(thread, 6, sizeof(float) * Tp);
    float *brow = rt_thread_scratch(thread, 7, sizeof(float) * Tp);
    float *mrow = rt_thread_scratch(thread, 8, sizeof(float) * Tp);
    float *rkeep = rt_thread_scratch(thread, 9, sizeof(float) * 2 * Tp), *rneg = rkeep + Tp;
    key_vectors(keep, neg, a->mask, b, T, Tp);
    pack_head(Kt, NULL, a->k + kvhead, T, CK, HS, Tp, HSp);
    pack_head(NULL, Vp, a->v + kvhead, T, CK, HS, Tp, HSp);
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int rows = T - i0 < QB ? T - i0 : QB;
        const int bend = block_key_end(a, jend, i0, rows), jtiles = (int)round_up(bend, 32), nt = jtiles / 16;
        float inv_sum[QB];
        load_rows(Qb, a->q + head + (int64_t)i0 * C, rows, C, HS, HSp);
        scores_tile(S, Qb, HSp, Kt, HS, Tp, jtiles, level);
        for (int r = 0; r < rows; r++) {
            const int i = i0 + r;
            float *s = S + r * Tp;
            const float *kp = keep, *ng = neg;
            if (a->causal && !causal_row(rkeep, rneg, keep, neg, i, jtiles)) {   // no key to attend to
                memset(s, 0, sizeof(float) * jtiles);
                if (scores) memset(scores + (int64_t)i * T, 0, sizeof(float) * T);
                inv_sum[r] = 0.0f;
                lse[i] = INFINITY;
                continue;
            }
            if (a->causal) kp = rkeep, ng = rneg;
            const float *bias = bias_row(brow, a->bias, h, i, T, Tp);
            if (scores) {   // scale·q·kᵀ + bias, 0 at masked keys
                scale_and_bias(s, bias, a->scale, nt);
                float *so = scores + (int64_t)i * T;
                for (int j = 0; j < T; j++) so[j] = j < jtiles ? s[j] * kp[j] : 0.0f;
            }
            const float sum = softmax_row(s, bias, scores ? 1.0f : a->scale, scores != NULL, kp, ng, nt, &lse[i]);
            inv_sum[r] = 1.0f / sum;
            if (a->dropout > 0) {   // drop probabilities after the statistics: lse stays the softmax's
                rt_dropout_row(mrow, a->key, (((uint64_t)b * NH + h) * T + i) * T, jtiles, a->dropout, 1.0f / (1.0f - a->dropout));
                for (int j = 0; j < jtiles; j++) s[j] *= mrow[j];
            }
        }
        weighted_rows_all(Ob, HSp, S, Tp, Vp, HSp, bend, level);
        for (int r = 0; r < rows; r++) {
            float *o = a->out + head + (int64_t)(i0 + r) * C;
            for (int d = 0; d < HS; d++) o[d] = Ob[r * HSp + d] * inv_sum[r];
        }
    }
}

RT_TASK(forward_task) {
    attention_args *a = ctx;
    for (int64_t item = b; item < e; item++) forward_item(a, (int)(item / a->NH), (int)(item % a->NH), thread, level);
}

void rt_attention_forward(float *out, float *lse, float *scores, const float *q, const float *k, const float *v,
                          const int32_t *mask, const float *bias, int B, int T, int NH, int NKV, int HS, int causal,
                          float scale, float dropout, uint64_t seed) {
    attention_args a = { .out = out, .lse = lse, .scores = scores, .q = q, .k = k, .v = v, .mask = mask,
                         .bias = bias, .B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .scale = scale,
                         .dropout = dropout, .seed = seed,
                         .key = rt_dropout_key(seed) };
    rt_parallel_for((int64_t)B * NH, 1, forward_task, &a);
}

// Query head h's part of the backward: dq written, dK and dV (the item's key/value head,
// packed in Kt, Kp, Vt) accumulated.
RT_INLINE void backward_head(attention_args *a, int b, int h, int jend, float *const *buf, int thread, const int level) {
    const int T = a->T, HS = a->HS, NH = a->NH, C = NH * HS;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16);
    const int64_t head = (int64_t)b * T * C + (int64_t)h * HS;
    float *Kt = buf[0], *Vt = buf[1], *Kp = buf[2], *dK = buf[3], *dV = buf[4], *keep = buf[5], *neg = buf[6];
    float *P = rt_thread_scratch(thread, 5, sizeof(float) * QB * Tp);
    float *dS = rt_thread_scratch(thread, 6, sizeof(float) * QB * Tp);
    float *Qb = rt_thread_scratch(thread, 7, sizeof(float) * QB * HSp);
    float *dOb = rt_thread_scratch(thread, 8, sizeof(float) * QB * HSp);
    float *dQb = rt_thread_scratch(thread, 9, sizeof(float) * QB * HSp);
    float *brow = rt_thread_scratch(thread, 12, sizeof(float) * Tp);
    float *mrow = rt_thread_scratch(thread, 13, sizeof(float) * Tp);
    float *rkeep = rt_thread_scratch(thread, 15, sizeof(float) * 2 * Tp), *rneg = rkeep + Tp;
    // With a score target: its K packed, a QB-row tile of its q·kᵀ, its Q rows, and one
    // gradient row, carved from one scratch slot (every piece a multiple of 16 floats).
    const rt_score_target *tg = a->target;
    const int tHS = tg ? tg->HS : 0, tHSp = (int)round_up(tHS, 16), tC = NH * tHS;
    const int64_t thead = (int64_t)b * T * tC + (int64_t)h * tHS;
    float *tKt = NULL, *tS = NULL, *tQb = NULL, *grow = NULL, *tbrow = NULL;
    if (tg) {
        tKt = rt_thread_scratch(thread, 14, sizeof(float) * ((int64_t)tHS * Tp + QB * Tp + QB * tHSp + 2 * Tp));
        tS = tKt + (int64_t)tHS * Tp, tQb = tS + QB * Tp, grow = tQb + QB * tHSp, tbrow = grow + Tp;
        pack_head(tKt, NULL, tg->k + thead, T, tC, tHS, Tp, tHSp);
    }
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int rows = T - i0 < QB ? T - i0 : QB;
        const int bend = block_key_end(a, jend, i0, rows), jtiles = (int)round_up(bend, 32), nt = jtiles / 16;
        load_rows(Qb, a->q + head + (int64_t)i0 * C, rows, C, HS, HSp);
        load_rows(dOb, a->dout + head + (int64_t)i0 * C, rows, C, HS, HSp);
        float Dv[QB];   // D = dO·O per row, for the whole block first so the rows' loads overlap
        for (int r = 0; r < rows; r++) {
            const float *o = a->fout + head + (int64_t)(i0 + r) * C, *dout = dOb + r * HSp;
            v16 acc = v16_splat(0);
            float D = 0;
            int d = 0;
            for (; d + 16 <= HS; d += 16) acc += v16_load(dout + d) * v16_load(o + d);
            for (; d < HS; d++) D += dout[d] * o[d];
            Dv[r] = D + v16_sum(acc);
        }
        scores_tile(P, Qb, HSp, Kt, HS, Tp, jtiles, level);
        scores_tile(dS, dOb, HSp, Vt, HS, Tp, jtiles, level);   // dP = dO·Vᵀ, turned into dS below
        if (tg) {
            load_rows(tQb, tg->q + thead + (int64_t)i0 * tC, rows, tC, tHS, tHSp);
            scores_tile(tS, tQb, tHSp, tKt, tHS, Tp, jtiles, level);
        }
        for (int r = 0; r < QB; r++) {
            const int i = i0 + r;
            float *p = P + r * Tp, *ds = dS + r * Tp;
            if (r >= rows) { memset(p, 0, sizeof(float) * jtiles); memset(ds, 0, sizeof(float) * jtiles); continue; }
            const float *kp = keep;
            if (a->causal) {   // keys past i are invalid (a row with none has lse = +inf: P = 0)
                causal_row(rkeep, rneg, keep, neg, i, jtiles);
                kp = rkeep;
            }
            const float lse = a->flse[((int64_t)b * NH + h) * T + i];
            const float *bias = bias_row(brow, a->bias, h, i, T, Tp);
            const float D = Dv[r];
            if (tg) {   // weight·(S − S_target) at valid keys, from the raw q·kᵀ still in p
                const float *tbias = bias_row(tbrow, tg->bias, h, i, T, Tp), *ts = tS + r * Tp;
                for (int j = 0; j < bend; j++) {
                    const float x = a->scale * p[j] + (bias ? bias[j] : 0.0f), y = tg->scale * ts[j] + (tbias ? tbias[j] : 0.0f);
                    grow[j] = kp[j] * tg->weight * (x - y);
                }
            }
            if (a->dropout > 0) {   // dV uses the dropped P; dS = P·(dP_dropped·mask/(1 − q) − D)
                rt_dropout_row(mrow, a->key, (((uint64_t)b * NH + h) * T + i) * T, jtiles, a->dropout, 1.0f / (1.0f - a->dropout));
                dropped_probabilities_and_dscores(p, ds, bias, a->scale, lse, D, kp, mrow, nt);
            } else {
                probabilities_and_dscores(p, ds, bias, a->scale, lse, D, kp, nt);
            }
            if (a->dscores) {   // gradient arriving through the scores output (0 at masked keys)
                const float *dsc = a->dscores + (((int64_t)b * NH + h) * T + i) * T;
                for (int j = 0; j < bend; j++) ds[j] += kp[j] * dsc[j];
            }
            if (tg)
                for (int j = 0; j < bend; j++) ds[j] += grow[j];
            if (a->dbias) {
                float *db = a->dbias + ((int64_t)h * T + i) * T;
                for (int j = 0; j < bend; j++) db[j] += ds[j];
            }
        }
        // dQ = scale·dS·K ; dK += dSᵀ·Q (scaled at the end) ; dV += Pᵀ·dO
        weighted_rows_all(dQb, HSp, dS, Tp, Kp, HSp, bend, level);
        for (int r = 0; r < rows; r++) {
            float *dq = a->dq + head + (int64_t)(i0 + r) * C;
            for (int d = 0; d < HS; d++) dq[d] = dQb[r * HSp + d] * a->scale;
        }
        accumulate_columns_all(dK, dS, Tp, Qb, HSp, bend, level);
        accumulate_columns_all(dV, P, Tp, dOb, HSp, bend, level);
    }
}

// Key/value head g of batch item b: its query heads in turn, then dk and dv.
RT_INLINE void backward_item(attention_args *a, int b, int g, int thread, const int level) {
    const int T = a->T, HS = a->HS, NH = a->NH, C = NH * HS, CK = a->NKV * HS, G = NH / a->NKV;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16);
    const int64_t kvhead = (int64_t)b * T * CK + (int64_t)g * HS;
    const int jend = key_end(a->mask, b, T);
    if (jend == 0) {   // the forward output was constant zero: no gradient
        for (int i = 0; i < T; i++) {
            for (int h = g * G; h < (g + 1) * G; h++) memset(a->dq + (int64_t)b * T * C + (int64_t)i * C + h * HS, 0, sizeof(float) * HS);
            memset(a->dk + kvhead + (int64_t)i * CK, 0, sizeof(float) * HS);
            memset(a->dv + kvhead + (int64_t)i * CK, 0, sizeof(float) * HS);
        }
        return;
    }
    float *buf[7] = {
        rt_thread_scratch(thread, 0, sizeof(float) * HS * Tp),    // Kt
        rt_thread_scratch(thread, 1, sizeof(float) * HS * Tp),    // Vt
        rt_thread_scratch(thread, 2, sizeof(float) * T * HSp),    // Kp
        rt_thread_scratch(thread, 3, sizeof(float) * T * HSp),    // dK
        rt_thread_scratch(thread, 4, sizeof(float) * T * HSp),    // dV
        rt_thread_scratch(thread, 10, sizeof(float) * Tp),        // keep
        rt_thread_scratch(thread, 11, sizeof(float) * Tp),        // neg
    };
    float *dK = buf[3], *dV = buf[4];
    key_vectors(buf[5], buf[6], a->mask, b, T, Tp);
    pack_head(buf[0], buf[2], a->k + kvhead, T, CK, HS, Tp, HSp);
    pack_head(buf[1], NULL, a->v + kvhead, T, CK, HS, Tp, HSp);
    memset(dK, 0, sizeof(float) * T * HSp);
    memset(dV, 0, sizeof(float) * T * HSp);
    for (int h = g * G; h < (g + 1) * G; h++) backward_head(a, b, h, jend, buf, thread, level);
    for (int j = 0; j < T; j++) {
        float *dk = a->dk + kvhead + (int64_t)j * CK, *dv = a->dv + kvhead + (int64_t)j * CK;
        for (int d = 0; d < HS; d++) {
            dk[d] = dK[(int64_t)j * HSp + d] * a->scale;
            dv[d] = dV[(int64_t)j * HSp + d];
        }
    }
}

RT_TASK(backward_task) {
    attention_args *a = ctx;
    for (int64_t item = b; item < e; item++) {
        if (a->dbias) {   // one key/value head per item, the batch in order: dbias without races
            for (int batch = 0; batch < a->B; batch++) backward_item(a, batch, (int)item, thread, level);
        } else {
            backward_item(a, (int)(item / a->NKV), (int)(item % a->NKV), thread, level);
        }
    }
}

void rt_attention_backward(float *dq, float *dk, float *dv, float *dbias, const float *dout, const float *dscores,
                           const rt_score_target *target, const float *out, const float *lse, const float *q,
                           const float *k, const float *v,
                           const int32_t *mask, const float *bias, int B, int T, int NH, int NKV, int HS, int causal,
                           float scale, float dropout, uint64_t seed) {
    attention_args a = { .dq = dq, .dk = dk, .dv = dv, .dbias = dbias, .dout = dout, .dscores = dscores, .target = target,
                         .fout = out, .flse = lse, .q = q, .k = k, .v = v, .mask = mask, .bias = bias,
                         .B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS, .causal = causal, .scale = scale, .dropout = dropout,
                         .seed = seed, .key = rt_dropout_key(seed) };
    rt_parallel_for(dbias ? NKV : (int64_t)B * NKV, 1, backward_task, &a);
}
