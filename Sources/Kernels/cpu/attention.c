// Fused multi-head attention, forward and backward, flash-style on the CPU.
//   q, k, v, out, dq, dk, dv, dout: [B,T,NH·HS] (head h in columns h·HS … h·HS+HS−1)
//   mask: [B,T] key mask (0 = padded key) or NULL      bias, dbias: [NH,T,T] or NULL
//   lse: [B,NH,T] log-sum-exp of each query row (+inf: no valid key, the row outputs zeros)
//   scores, dscores: [B,NH,T,T] pre-softmax scores (0 at masked keys) / their gradient, optional
// One work item is one (batch, head) — or one head looping over the batch when dbias is
// wanted, so dbias needs no atomics. Within it, K (and V) are packed once, then each block of
// QB query rows goes through scale·q·kᵀ + bias, mask, softmax and ·V in one pass; only a QB×T
// block of scores ever exists. Backward recomputes P from lse (nothing T×T is saved) and
// accumulates dK, dV in per-item buffers. Inner loops are 16-float register tiles.
#include "common.h"
#include <stdlib.h>

#define QB 4   // query rows per block

typedef struct {
    float *out, *lse, *scores, *dq, *dk, *dv, *dbias;
    const float *q, *k, *v, *dout, *dscores, *fout, *flse, *bias;
    const int32_t *mask;
    int B, T, NH, HS;
    float scale;
} attention_args;

// S[QB][Tp] = A[QB][HSp] · Bt[HS][Tp], 32 columns at a time (Tp is a multiple of 32).
RT_INLINE void scores_tile(float *S, const float *A, int HSp, const float *Bt, int HS, int Tp, int jend) {
    for (int j0 = 0; j0 < jend; j0 += 32) {
        v16 acc[QB][2];
        for (int r = 0; r < QB; r++) acc[r][0] = acc[r][1] = v16_splat(0);
        for (int d = 0; d < HS; d++) {
            v16 b0 = v16_load(Bt + (int64_t)d * Tp + j0), b1 = v16_load(Bt + (int64_t)d * Tp + j0 + 16);
            for (int r = 0; r < QB; r++) {
                float a = A[r * HSp + d];
                acc[r][0] += a * b0;
                acc[r][1] += a * b1;
            }
        }
        for (int r = 0; r < QB; r++) {
            v16_store(S + r * Tp + j0, acc[r][0]);
            v16_store(S + r * Tp + j0 + 16, acc[r][1]);
        }
    }
}

// acc[QB][NV] over 16·NV columns starting at c0: Σ_j P[r][j] · M[j][c0…]; M is [T][HSp].
RT_INLINE void weighted_rows(float *Out, int ldo, const float *P, int Tp, const float *M, int HSp, int c0,
                                 int jend, const int NV) {
    v16 acc[QB][4];
    for (int r = 0; r < QB; r++)
        for (int t = 0; t < NV; t++) acc[r][t] = v16_splat(0);
    for (int j = 0; j < jend; j++) {
        const float *m = M + (int64_t)j * HSp + c0;
        v16 mv[4];
        for (int t = 0; t < NV; t++) mv[t] = v16_load(m + 16 * t);
        for (int r = 0; r < QB; r++) {
            float p = P[r * Tp + j];
            for (int t = 0; t < NV; t++) acc[r][t] += p * mv[t];
        }
    }
    for (int r = 0; r < QB; r++)
        for (int t = 0; t < NV; t++) v16_store(Out + r * ldo + c0 + 16 * t, acc[r][t]);
}

RT_INLINE void weighted_rows_all(float *Out, int ldo, const float *P, int Tp, const float *M, int HSp, int jend) {
    int c0 = 0;
    for (; c0 + 64 <= HSp; c0 += 64) weighted_rows(Out, ldo, P, Tp, M, HSp, c0, jend, 4);
    if (HSp - c0 == 48) weighted_rows(Out, ldo, P, Tp, M, HSp, c0, jend, 3);
    else if (HSp - c0 == 32) weighted_rows(Out, ldo, P, Tp, M, HSp, c0, jend, 2);
    else if (HSp - c0 == 16) weighted_rows(Out, ldo, P, Tp, M, HSp, c0, jend, 1);
}

// Acc[j][c0…] += Σ_r W[r][j] · X[r][c0…] for j < jend; Acc is [T][HSp], X is [QB][HSp].
RT_INLINE void accumulate_columns(float *Acc, const float *W, int Tp, const float *X, int HSp, int c0,
                                      int jend, const int NV) {
    v16 xv[QB][4];
    for (int r = 0; r < QB; r++)
        for (int t = 0; t < NV; t++) xv[r][t] = v16_load(X + r * HSp + c0 + 16 * t);
    for (int j = 0; j < jend; j++) {
        float *acc_row = Acc + (int64_t)j * HSp + c0;
        v16 acc[4];
        for (int t = 0; t < NV; t++) acc[t] = v16_load(acc_row + 16 * t);
        for (int r = 0; r < QB; r++) {
            float w = W[r * Tp + j];
            for (int t = 0; t < NV; t++) acc[t] += w * xv[r][t];
        }
        for (int t = 0; t < NV; t++) v16_store(acc_row + 16 * t, acc[t]);
    }
}

RT_INLINE void accumulate_columns_all(float *Acc, const float *W, int Tp, const float *X, int HSp, int jend) {
    int c0 = 0;
    for (; c0 + 64 <= HSp; c0 += 64) accumulate_columns(Acc, W, Tp, X, HSp, c0, jend, 4);
    if (HSp - c0 == 48) accumulate_columns(Acc, W, Tp, X, HSp, c0, jend, 3);
    else if (HSp - c0 == 32) accumulate_columns(Acc, W, Tp, X, HSp, c0, jend, 2);
    else if (HSp - c0 == 16) accumulate_columns(Acc, W, Tp, X, HSp, c0, jend, 1);
}

// Packs rows [T] of one head of X ([B,T,C], head offset applied) as Xt[HS][Tp] (transposed)
// and/or Xp[T][HSp] (padded); padding is zero.
static void pack_head(float *Xt, float *Xp, const float *X, int T, int C, int HS, int Tp, int HSp) {
    if (Xt) {
        memset(Xt, 0, sizeof(float) * HS * Tp);
        for (int j = 0; j < T; j++)
            for (int d = 0; d < HS; d++) Xt[(int64_t)d * Tp + j] = X[(int64_t)j * C + d];
    }
    if (Xp) {
        for (int j = 0; j < T; j++) {
            memcpy(Xp + (int64_t)j * HSp, X + (int64_t)j * C, sizeof(float) * HS);
            memset(Xp + (int64_t)j * HSp + HS, 0, sizeof(float) * (HSp - HS));
        }
    }
}

// Copies up to QB rows (row stride C) into Dst[QB][HSp], zero-filling padding and missing rows.
static void load_rows(float *Dst, const float *X, int rows, int C, int HS, int HSp) {
    memset(Dst, 0, sizeof(float) * QB * HSp);
    for (int r = 0; r < rows; r++) memcpy(Dst + r * HSp, X + (int64_t)r * C, sizeof(float) * HS);
}

// One past the last valid key of batch item b (0 if none).
static int key_end(const int32_t *mask, int b, int T) {
    if (!mask) return T;
    for (int j = T - 1; j >= 0; j--)
        if (mask[(int64_t)b * T + j]) return j + 1;
    return 0;
}

static RT_CLONES void forward_item(attention_args *a, int b, int h, int thread) {
    const int T = a->T, HS = a->HS, C = a->NH * HS;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16);
    float *Kt = rt_thread_scratch(thread, 0, sizeof(float) * HS * Tp);
    float *Vp = rt_thread_scratch(thread, 1, sizeof(float) * T * HSp);
    float *S = rt_thread_scratch(thread, 2, sizeof(float) * QB * Tp);
    float *Qb = rt_thread_scratch(thread, 3, sizeof(float) * QB * HSp);
    float *Ob = rt_thread_scratch(thread, 4, sizeof(float) * QB * HSp);
    const int64_t head = (int64_t)b * T * C + (int64_t)h * HS;
    const int32_t *mask = a->mask ? a->mask + (int64_t)b * T : NULL;
    const int jend = key_end(a->mask, b, T);
    const int jtiles = (int)round_up(jend, 32);
    pack_head(Kt, NULL, a->k + head, T, C, HS, Tp, HSp);
    pack_head(NULL, Vp, a->v + head, T, C, HS, Tp, HSp);
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int rows = T - i0 < QB ? T - i0 : QB;
        float inv_sum[QB];
        load_rows(Qb, a->q + head + (int64_t)i0 * C, rows, C, HS, HSp);
        scores_tile(S, Qb, HSp, Kt, HS, Tp, jtiles);
        for (int r = 0; r < rows; r++) {
            const int i = i0 + r;
            float *s = S + r * Tp;
            const float *bias = a->bias ? a->bias + ((int64_t)h * T + i) * T : NULL;
            float mx = -INFINITY;
            for (int j = 0; j < jend; j++) {
                float x = s[j] * a->scale + (bias ? bias[j] : 0.0f);
                int valid = !mask || mask[j];
                s[j] = valid ? x : -INFINITY;
                mx = valid && x > mx ? x : mx;
            }
            float *lse = a->lse + ((int64_t)b * a->NH + h) * T + i;
            if (a->scores) {
                float *so = a->scores + (((int64_t)b * a->NH + h) * T + i) * T;
                for (int j = 0; j < T; j++) so[j] = j < jend && s[j] != -INFINITY ? s[j] : 0.0f;
            }
            if (mx == -INFINITY) {   // no valid key: zeros out, +inf marks it for backward
                memset(s, 0, sizeof(float) * Tp);
                *lse = INFINITY;
                inv_sum[r] = 0;
                continue;
            }
            float sum = 0;
            for (int j = 0; j < jend; j++) {
                float p = s[j] == -INFINITY ? 0.0f : rt_expf(s[j] - mx);
                s[j] = p;
                sum += p;
            }
            for (int j = jend; j < Tp; j++) s[j] = 0;
            *lse = mx + logf(sum);
            inv_sum[r] = 1.0f / sum;
        }
        weighted_rows_all(Ob, HSp, S, Tp, Vp, HSp, jend);
        for (int r = 0; r < rows; r++) {
            float *o = a->out + head + (int64_t)(i0 + r) * C;
            for (int d = 0; d < HS; d++) o[d] = Ob[r * HSp + d] * inv_sum[r];
        }
    }
}

static void forward_task(void *ctx, int64_t begin, int64_t end, int thread) {
    attention_args *a = ctx;
    for (int64_t item = begin; item < end; item++) forward_item(a, (int)(item / a->NH), (int)(item % a->NH), thread);
}

void rt_attention_forward(float *out, float *lse, float *scores, const float *q, const float *k, const float *v,
                          const int32_t *mask, const float *bias, int B, int T, int NH, int HS, float scale) {
    attention_args a = { .out = out, .lse = lse, .scores = scores, .q = q, .k = k, .v = v, .mask = mask,
                         .bias = bias, .B = B, .T = T, .NH = NH, .HS = HS, .scale = scale };
    rt_parallel_for((int64_t)B * NH, 1, forward_task, &a);
}

static RT_CLONES void backward_item(attention_args *a, int b, int h, int thread) {
    const int T = a->T, HS = a->HS, NH = a->NH, C = NH * HS;
    const int Tp = (int)round_up(T, 32), HSp = (int)round_up(HS, 16);
    float *Kt = rt_thread_scratch(thread, 0, sizeof(float) * HS * Tp);
    float *Vt = rt_thread_scratch(thread, 1, sizeof(float) * HS * Tp);
    float *Kp = rt_thread_scratch(thread, 2, sizeof(float) * T * HSp);
    float *dK = rt_thread_scratch(thread, 3, sizeof(float) * T * HSp);
    float *dV = rt_thread_scratch(thread, 4, sizeof(float) * T * HSp);
    float *P = rt_thread_scratch(thread, 5, sizeof(float) * QB * Tp);
    float *dS = rt_thread_scratch(thread, 6, sizeof(float) * QB * Tp);
    float *Qb = rt_thread_scratch(thread, 7, sizeof(float) * QB * HSp);
    float *dOb = rt_thread_scratch(thread, 8, sizeof(float) * QB * HSp);
    float *dQb = rt_thread_scratch(thread, 9, sizeof(float) * QB * HSp);
    const int64_t head = (int64_t)b * T * C + (int64_t)h * HS;
    const int32_t *mask = a->mask ? a->mask + (int64_t)b * T : NULL;
    const int jend = key_end(a->mask, b, T);
    const int jtiles = (int)round_up(jend, 32);
    pack_head(Kt, Kp, a->k + head, T, C, HS, Tp, HSp);
    pack_head(Vt, NULL, a->v + head, T, C, HS, Tp, HSp);
    memset(dK, 0, sizeof(float) * T * HSp);
    memset(dV, 0, sizeof(float) * T * HSp);
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int rows = T - i0 < QB ? T - i0 : QB;
        load_rows(Qb, a->q + head + (int64_t)i0 * C, rows, C, HS, HSp);
        load_rows(dOb, a->dout + head + (int64_t)i0 * C, rows, C, HS, HSp);
        scores_tile(P, Qb, HSp, Kt, HS, Tp, jtiles);
        scores_tile(dS, dOb, HSp, Vt, HS, Tp, jtiles);   // dP = dO·Vᵀ, turned into dS below
        for (int r = 0; r < QB; r++) {
            const int i = i0 + r;
            float *p = P + r * Tp, *ds = dS + r * Tp;
            if (r >= rows) { memset(p, 0, sizeof(float) * Tp); memset(ds, 0, sizeof(float) * Tp); continue; }
            const float lse = a->flse[((int64_t)b * NH + h) * T + i];
            const float *bias = a->bias ? a->bias + ((int64_t)h * T + i) * T : NULL;
            const float *dsc = a->dscores ? a->dscores + (((int64_t)b * NH + h) * T + i) * T : NULL;
            const float *o = a->fout + head + (int64_t)i * C, *dout = dOb + r * HSp;
            float D = 0;
            for (int d = 0; d < HS; d++) D += dout[d] * o[d];
            for (int j = 0; j < jend; j++) {
                int valid = (!mask || mask[j]) && lse != INFINITY;
                float pj = valid ? rt_expf(p[j] * a->scale + (bias ? bias[j] : 0.0f) - lse) : 0.0f;
                float g = pj * (ds[j] - D) + (valid && dsc ? dsc[j] : 0.0f);
                p[j] = pj;
                ds[j] = g;
            }
            for (int j = jend; j < Tp; j++) p[j] = ds[j] = 0;
            if (a->dbias) {
                float *db = a->dbias + ((int64_t)h * T + i) * T;
                for (int j = 0; j < jend; j++) db[j] += ds[j];
            }
        }
        // dQ = scale·dS·K ; dK += dSᵀ·Q (scaled at the end) ; dV += Pᵀ·dO
        weighted_rows_all(dQb, HSp, dS, Tp, Kp, HSp, jend);
        for (int r = 0; r < rows; r++) {
            float *dq = a->dq + head + (int64_t)(i0 + r) * C;
            for (int d = 0; d < HS; d++) dq[d] = dQb[r * HSp + d] * a->scale;
        }
        accumulate_columns_all(dK, dS, Tp, Qb, HSp, jend);
        accumulate_columns_all(dV, P, Tp, dOb, HSp, jend);
    }
    for (int j = 0; j < T; j++) {
        float *dk = a->dk + head + (int64_t)j * C, *dv = a->dv + head + (int64_t)j * C;
        for (int d = 0; d < HS; d++) {
            dk[d] = dK[(int64_t)j * HSp + d] * a->scale;
            dv[d] = dV[(int64_t)j * HSp + d];
        }
    }
}

static void backward_task(void *ctx, int64_t begin, int64_t end, int thread) {
    attention_args *a = ctx;
    for (int64_t item = begin; item < end; item++) {
        if (a->dbias) {   // one head per item, the batch in order: dbias without races
            for (int b = 0; b < a->B; b++) backward_item(a, b, (int)item, thread);
        } else {
            backward_item(a, (int)(item / a->NH), (int)(item % a->NH), thread);
        }
    }
}

void rt_attention_backward(float *dq, float *dk, float *dv, float *dbias, const float *dout, const float *dscores,
                           const float *out, const float *lse, const float *q, const float *k, const float *v,
                           const int32_t *mask, const float *bias, int B, int T, int NH, int HS, float scale) {
    attention_args a = { .dq = dq, .dk = dk, .dv = dv, .dbias = dbias, .dout = dout, .dscores = dscores,
                         .fout = out, .flse = lse, .q = q, .k = k, .v = v, .mask = mask, .bias = bias,
                         .B = B, .T = T, .NH = NH, .HS = HS, .scale = scale };
    rt_parallel_for(dbias ? NH : (int64_t)B * NH, 1, backward_task, &a);
}
