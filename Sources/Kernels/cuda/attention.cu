// Fused multi-head attention, forward and backward (fp32; the flash-style tensor-core kernels
// come with the fused-attention issue).
//   q, out, dq, dout: [B,T,NH·HS] (head h in columns h·HS…); HS ≤ 128
//   k, v, dk, dv: [B,T,NKV·HS]; query head h reads key/value head h/(NH/NKV) (grouped-query)
//   mask: [B,T] key mask (0 = padded key) or NULL      bias, dbias: [NH,T,T] or NULL
//   causal ≠ 0: query i sees keys j ≤ i only
//   lse: [B,NH,T] log-sum-exp per query row (+inf: no valid key; the row outputs zeros)
//   scores, dscores: [B,NH,T,T] pre-softmax scores scale·q·kᵀ + bias (0 at masked keys) / the
//   gradient a distillation loss sends into them, optional
//   dropout on the probabilities: inverted, mask rt_keep(key(seed), ((b·NH+h)·T+i)·T+j)
//   D: [B,NH,T] scratch, D_i = dout_i·out_i (written by the query pass, read by the key pass)
//   score target (tq, tk [B,T,NH·tHS], tbias [NH,T,T] or NULL; tq NULL: none): backward adds
//   tweight·(S − S_t) to dS, S_t = tscale·tq·tkᵀ + tbias recomputed per element (TinyBERT's
//   attention-score MSE against a teacher head, fused: no T×T tensor on either side);
//   attention_score_loss_rows gives that loss's per-row sums (partial[B·NH·T], doubles)
// Launch: one warp per row — attention_forward and attention_backward_query per query row
// (b,h,i), attention_backward_key per key row (b,g,j) of a key/value head, which loops over the
// query heads sharing it — with blockDim = 32·WARPS.
// Forward streams the keys 32 at a time with an online softmax: lanes own keys for q·kᵀ, then
// own head dimensions for P·V. Nothing T×T is written unless `scores` is asked for. Backward
// recomputes P from lse: the query pass gives dq (and dbias, by atomics over the batch), the key
// pass gives dk and dv — no atomics on activations. CPU reference: Sources/Kernels/cpu/attention.c.
#include "common.cuh"

#define WARPS 4
#define MAX_HS 128

// Σ_d x[d]·y[d] for one lane (x in shared memory, y a row in global memory).
__device__ __forceinline__ float row_dot(const float *x, const float *y, int HS) {
    float s = 0.0f;
    for (int d = 0; d < HS; d++) s += x[d] * y[d];
    return s;
}

// acc[t] (head dimension lane + 32t) += Σ_jj w_jj · rows[jj][d] over the `count` rows of a chunk:
// lane jj holds w_jj; rows[jj] starts at rows + jj·C. Zero weights are skipped (warp-uniform).
__device__ __forceinline__ void add_weighted_rows(float acc[MAX_HS / 32], float w, const float *rows, int count, int C,
                                                  int HS, int lane) {
    for (int jj = 0; jj < count; jj++) {
        const float wj = __shfl_sync(0xffffffffu, w, jj);
        if (wj == 0.0f) continue;
        const float *r = rows + (long long)jj * C;
        for (int t = 0; t < MAX_HS / 32; t++) {
            const int d = lane + 32 * t;
            if (d < HS) acc[t] += wj * r[d];
        }
    }
}

// Where query row (b, h, i) reads: its head's offset in q-shaped tensors and its key/value head's
// in k-shaped ones, and one past the last key it may see.
struct attention_row {
    int b, h, i, C, CK, keys;
    long long head, kvhead;
};
__device__ __forceinline__ attention_row attention_place(long long row, int T, int NH, int NKV, int HS, int causal) {
    attention_row r;
    r.i = (int)(row % T);
    r.h = (int)(row / T % NH);
    r.b = (int)(row / ((long long)T * NH));
    r.C = NH * HS;
    r.CK = NKV * HS;
    r.head = (long long)r.b * T * r.C + (long long)r.h * HS;
    r.kvhead = (long long)r.b * T * r.CK + (long long)(r.h / (NH / NKV)) * HS;
    r.keys = causal ? r.i + 1 : T;
    return r;
}

extern "C" __global__ void attention_forward(float *out, float *lse, float *scores, const float *q, const float *k,
                                             const float *v, const int *mask, const float *bias, int B, int T, int NH,
                                             int NKV, int HS, int causal, float scale, float dropout,
                                             unsigned long long seed) {
    __shared__ float qs[WARPS][MAX_HS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long row = blockIdx.x * (long long)WARPS + warp;   // (b, h, i)
    if (row >= (long long)B * NH * T) return;
    const attention_row r = attention_place(row, T, NH, NKV, HS, causal);
    const int i = r.i, h = r.h, b = r.b, C = r.C, CK = r.CK;
    const long long head = r.head, kvhead = r.kvhead;
    for (int d = lane; d < HS; d += 32) qs[warp][d] = q[head + (long long)i * C + d];
    __syncwarp();
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
    float acc[MAX_HS / 32] = {0.0f, 0.0f, 0.0f, 0.0f};
    float m = -RT_INF, l = 0.0f;
    for (int j0 = 0; j0 < (scores ? T : r.keys); j0 += 32) {   // keys past r.keys only for the zeros of `scores`
        const int j = j0 + lane;
        const bool valid = j < r.keys && (!mask || mask[(long long)b * T + j]);
        float s = -RT_INF;
        if (j < r.keys) {
            float x = scale * row_dot(qs[warp], k + kvhead + (long long)j * CK, HS);
            if (bias) x += bias[((long long)h * T + i) * T + j];
            if (valid) s = x;
        }
        if (scores && j < T) scores[row * T + j] = valid ? s : 0.0f;
        const float m_new = fmaxf(m, warp_max(s));
        if (m_new == -RT_INF) continue;   // no valid key yet (warp-uniform)
        float p = valid ? expf(s - m_new) : 0.0f;
        const float correction = expf(m - m_new);
        l = l * correction + warp_sum(p);
        m = m_new;
        if (dropout > 0.0f && valid) p *= rt_keep(key, (unsigned long long)row * T + j, dropout) ? keep_scale : 0.0f;
        for (int t = 0; t < MAX_HS / 32; t++) acc[t] *= correction;
        add_weighted_rows(acc, p, v + kvhead + (long long)j0 * CK, T - j0 < 32 ? T - j0 : 32, CK, HS, lane);
    }
    float *o = out + head + (long long)i * C;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int t = 0; t < MAX_HS / 32; t++) {
        const int d = lane + 32 * t;
        if (d < HS) o[d] = acc[t] * inv;
    }
    if (lane == 0) lse[row] = l > 0.0f ? m + logf(l) : RT_INF;
}

// dq (overwritten), D, and dbias (accumulated with atomics over the batch) for one query row.
extern "C" __global__ void attention_backward_query(float *dq, float *dbias, float *D, const float *dout,
                                                    const float *dscores, const float *out, const float *lse,
                                                    const float *q, const float *k, const float *v, const int *mask,
                                                    const float *bias, int B, int T, int NH, int NKV, int HS,
                                                    int causal, float scale, float dropout, unsigned long long seed,
                                                    const float *tq, const float *tk, const float *tbias, int tHS,
                                                    float tscale, float tweight) {
    __shared__ float qs[WARPS][MAX_HS], dos[WARPS][MAX_HS], tqs[WARPS][MAX_HS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long row = blockIdx.x * (long long)WARPS + warp;
    if (row >= (long long)B * NH * T) return;
    const attention_row r = attention_place(row, T, NH, NKV, HS, causal);
    const int i = r.i, h = r.h, b = r.b, C = r.C, CK = r.CK;
    const long long head = r.head, kvhead = r.kvhead, self = head + (long long)i * C;
    float Di = 0.0f;
    for (int d = lane; d < HS; d += 32) {
        qs[warp][d] = q[self + d];
        dos[warp][d] = dout[self + d];
        Di += dout[self + d] * out[self + d];
    }
    const int tC = NH * tHS;
    const long long thead = (long long)b * T * tC + (long long)h * tHS;
    if (tq)
        for (int d = lane; d < tHS; d += 32) tqs[warp][d] = tq[thead + (long long)i * tC + d];
    Di = warp_sum(Di);
    __syncwarp();
    if (lane == 0) D[row] = Di;
    const float L = lse[row];
    float acc[MAX_HS / 32] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (L != RT_INF) {
        const unsigned key = rt_dropout_key(seed);
        const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
        for (int j0 = 0; j0 < r.keys; j0 += 32) {
            const int j = j0 + lane;
            float ds = 0.0f;
            if (j < r.keys && (!mask || mask[(long long)b * T + j])) {
                const float *kr = k + kvhead + (long long)j * CK, *vr = v + kvhead + (long long)j * CK;
                float x = scale * row_dot(qs[warp], kr, HS);
                if (bias) x += bias[((long long)h * T + i) * T + j];
                const float P = expf(x - L);
                float dP = row_dot(dos[warp], vr, HS);
                if (dropout > 0.0f) dP *= rt_keep(key, (unsigned long long)row * T + j, dropout) ? keep_scale : 0.0f;
                ds = P * (dP - Di);
                if (dscores) ds += dscores[row * T + j];
                if (tq) {
                    float xt = tscale * row_dot(tqs[warp], tk + thead + (long long)j * tC, tHS);
                    if (tbias) xt += tbias[((long long)h * T + i) * T + j];
                    ds += tweight * (x - xt);
                }
                if (dbias) atomicAdd(&dbias[((long long)h * T + i) * T + j], ds);
            }
            add_weighted_rows(acc, ds, k + kvhead + (long long)j0 * CK, T - j0 < 32 ? T - j0 : 32, CK, HS, lane);
        }
    }
    for (int t = 0; t < MAX_HS / 32; t++) {
        const int d = lane + 32 * t;
        if (d < HS) dq[self + d] = scale * acc[t];
    }
}

// dk and dv (overwritten) for one key row (b, g, j) of key/value head g: the sum over the query
// heads h of the group and their queries i (i ≥ j when causal); needs D from attention_backward_query.
extern "C" __global__ void attention_backward_key(float *dk, float *dv, const float *dout, const float *dscores,
                                                  const float *lse, const float *D, const float *q, const float *k,
                                                  const float *v, const int *mask, const float *bias, int B, int T,
                                                  int NH, int NKV, int HS, int causal, float scale, float dropout,
                                                  unsigned long long seed, const float *tq, const float *tk,
                                                  const float *tbias, int tHS, float tscale, float tweight) {
    __shared__ float ks[WARPS][MAX_HS], vs[WARPS][MAX_HS], tks[WARPS][MAX_HS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long krow = blockIdx.x * (long long)WARPS + warp;   // (b, g, j)
    if (krow >= (long long)B * NKV * T) return;
    const int j = (int)(krow % T), g = (int)(krow / T % NKV), b = (int)(krow / ((long long)T * NKV));
    const int C = NH * HS, CK = NKV * HS, G = NH / NKV;
    const long long self = (long long)b * T * CK + (long long)g * HS + (long long)j * CK;
    const int tC = NH * tHS;
    float dka[MAX_HS / 32] = {0.0f, 0.0f, 0.0f, 0.0f}, dva[MAX_HS / 32] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (!mask || mask[(long long)b * T + j]) {
        for (int d = lane; d < HS; d += 32) { ks[warp][d] = k[self + d]; vs[warp][d] = v[self + d]; }
        const unsigned key = rt_dropout_key(seed);
        const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
        for (int h = g * G; h < (g + 1) * G; h++) {
            const long long head = (long long)b * T * C + (long long)h * HS, bh = (long long)b * NH + h;
            const long long thead = (long long)b * T * tC + (long long)h * tHS;
            if (tq) {
                __syncwarp();
                for (int d = lane; d < tHS; d += 32) tks[warp][d] = tk[thead + (long long)j * tC + d];
            }
            __syncwarp();
            for (int i0 = causal ? j : 0; i0 < T; i0 += 32) {
                const int i = i0 + lane;
                float pd = 0.0f, ds = 0.0f;
                if (i < T) {
                    const long long qrow = bh * T + i;
                    const float *qr = q + head + (long long)i * C, *dor = dout + head + (long long)i * C;
                    float x = scale * row_dot(ks[warp], qr, HS);
                    if (bias) x += bias[((long long)h * T + i) * T + j];
                    const float P = expf(x - lse[qrow]);
                    float m = 1.0f;
                    if (dropout > 0.0f) m = rt_keep(key, (unsigned long long)qrow * T + j, dropout) ? keep_scale : 0.0f;
                    pd = P * m;
                    ds = P * (row_dot(vs[warp], dor, HS) * m - D[qrow]);
                    if (dscores) ds += dscores[qrow * T + j];
                    if (tq) {
                        float xt = tscale * row_dot(tks[warp], tq + thead + (long long)i * tC, tHS);
                        if (tbias) xt += tbias[((long long)h * T + i) * T + j];
                        ds += tweight * (x - xt);
                    }
                }
                const int count = T - i0 < 32 ? T - i0 : 32;
                add_weighted_rows(dva, pd, dout + head + (long long)i0 * C, count, C, HS, lane);
                add_weighted_rows(dka, ds, q + head + (long long)i0 * C, count, C, HS, lane);
            }
        }
    }
    for (int t = 0; t < MAX_HS / 32; t++) {
        const int d = lane + 32 * t;
        if (d < HS) { dk[self + d] = scale * dka[t]; dv[self + d] = dva[t]; }
    }
}

// partial[row] = Σ_j (S_ij − S_t,ij)² over the valid keys of one query row (b,h,i), in double;
// mean_finish_double (losses.cu) divides by B·NH·T·T. Rows with no valid key give 0.
extern "C" __global__ void attention_score_loss_rows(double *partial, const float *q, const float *k, const int *mask,
                                                     const float *bias, const float *tq, const float *tk,
                                                     const float *tbias, int B, int T, int NH, int HS, float scale,
                                                     int tHS, float tscale) {
    __shared__ float qs[WARPS][MAX_HS], tqs[WARPS][MAX_HS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const long long row = blockIdx.x * (long long)WARPS + warp;   // (b, h, i)
    if (row >= (long long)B * NH * T) return;
    const int i = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / ((long long)T * NH));
    const int C = NH * HS, tC = NH * tHS;
    const long long head = (long long)b * T * C + (long long)h * HS, thead = (long long)b * T * tC + (long long)h * tHS;
    for (int d = lane; d < HS; d += 32) qs[warp][d] = q[head + (long long)i * C + d];
    for (int d = lane; d < tHS; d += 32) tqs[warp][d] = tq[thead + (long long)i * tC + d];
    __syncwarp();
    double sum = 0.0;
    for (int j = lane; j < T; j += 32) {
        if (mask && !mask[(long long)b * T + j]) continue;
        float x = scale * row_dot(qs[warp], k + head + (long long)j * C, HS);
        float xt = tscale * row_dot(tqs[warp], tk + thead + (long long)j * tC, tHS);
        if (bias) x += bias[((long long)h * T + i) * T + j];
        if (tbias) xt += tbias[((long long)h * T + i) * T + j];
        const float d = x - xt;
        sum += (double)d * d;
    }
    sum = warp_sum_double(sum);
    if (lane == 0) partial[row] = sum;
}
