// Fused LoRA branch: y += scale·(drop(x)·Aᵀ)·Bᵀ.
//   x, dx: [N,In]; y, dy: [N,Out]; A, dA: [R,In]; B, dB: [Out,R]; xa: [N,R] (saved by forward).
// Forward is one pass per row: the dropped x row, its R projections and the update of the y row
// never leave the cache (no x·Aᵀ round trip through memory). Backward: dx per row (parallel over
// rows), dA and dB over column blocks (each thread owns its columns: deterministic, no atomics).
// Dropout is regenerated from (seed, element index), so nothing but xa is saved.
#include "common.h"

int rt_dropout_keep(uint64_t seed, uint64_t index, float p) { return rt_keep(rt_dropout_key(seed), index, p); }

typedef struct {
    float *y, *xa, *dx, *dA, *dB, *dxa;
    const float *x, *A, *B, *Bt, *dy, *sxa;
    int64_t N; int In, Out, R;
    float scale, p;
    uint32_t key;
} lora_args;

RT_INLINE float dot(const float *a, const float *b, int n) {
    v16 acc0 = v16_splat(0), acc1 = v16_splat(0);
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 += v16_load(a + i) * v16_load(b + i);
        acc1 += v16_load(a + i + 16) * v16_load(b + i + 16);
    }
    for (; i + 16 <= n; i += 16) acc0 += v16_load(a + i) * v16_load(b + i);
    float s = v16_sum(acc0 + acc1);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// Row n of drop(x) into buf (or x itself when p == 0).
RT_INLINE const float *dropped_row(const lora_args *a, int64_t n, float *buf, int i0, int i1) {
    const float *x = a->x + n * a->In;
    if (a->p <= 0) return x;
    const float inv = 1.0f / (1.0f - a->p);
    for (int i = i0; i < i1; i++) buf[i] = rt_keep(a->key, (uint64_t)n * a->In + i, a->p) ? x[i] * inv : 0.0f;
    return buf;
}

RT_TASK(forward_task) {
    lora_args *a = ctx;
    float *buf = rt_thread_scratch(thread, 0, sizeof(float) * a->In);
    for (int64_t n = b; n < e; n++) {
        const float *xd = dropped_row(a, n, buf, 0, a->In);
        float *xa = a->xa + n * a->R, *y = a->y + n * a->Out;
        for (int r = 0; r < a->R; r++) xa[r] = dot(xd, a->A + (int64_t)r * a->In, a->In);
        for (int r = 0; r < a->R; r++) {
            const float w = a->scale * xa[r], *bt = a->Bt + (int64_t)r * a->Out;
            for (int o = 0; o < a->Out; o++) y[o] += w * bt[o];
        }
    }
}

// Bt[R,Out] = Bᵀ, in the caller's scratch.
static float *transpose_B(const float *B, int Out, int R) {
    float *Bt = rt_caller_scratch(15, sizeof(float) * Out * R);
    for (int o = 0; o < Out; o++)
        for (int r = 0; r < R; r++) Bt[(int64_t)r * Out + o] = B[(int64_t)o * R + r];
    return Bt;
}

void rt_lora_forward(float *y, float *xa, const float *x, const float *A, const float *B,
                     int64_t N, int In, int Out, int R, float scale, float p, uint64_t seed) {
    lora_args a = { .y = y, .xa = xa, .x = x, .A = A, .B = B, .Bt = transpose_B(B, Out, R), .N = N, .In = In,
                    .Out = Out, .R = R, .scale = scale, .p = p, .key = rt_dropout_key(seed) };
    rt_parallel_for(N, 8, forward_task, &a);
}

// dxa[n,r] = scale·dy[n]·B[:,r];  dx[n] += drop'(Σ_r dxa[n,r]·A[r])
RT_TASK(dx_task) {
    lora_args *a = ctx;
    float *row = rt_thread_scratch(thread, 0, sizeof(float) * a->In);
    const float inv = a->p > 0 ? 1.0f / (1.0f - a->p) : 1.0f;
    for (int64_t n = b; n < e; n++) {
        float *dxa = a->dxa + n * a->R;
        for (int r = 0; r < a->R; r++) dxa[r] = a->scale * dot(a->dy + n * a->Out, a->Bt + (int64_t)r * a->Out, a->Out);
        if (!a->dx) continue;
        memset(row, 0, sizeof(float) * a->In);
        for (int r = 0; r < a->R; r++) {
            const float w = dxa[r], *A = a->A + (int64_t)r * a->In;
            for (int i = 0; i < a->In; i++) row[i] += w * A[i];
        }
        float *dx = a->dx + n * a->In;
        if (a->p > 0) {
            for (int i = 0; i < a->In; i++) dx[i] += rt_keep(a->key, (uint64_t)n * a->In + i, a->p) ? row[i] * inv : 0.0f;
        } else {
            for (int i = 0; i < a->In; i++) dx[i] += row[i];
        }
    }
}

#define COLUMN_BLOCK 64
// dA[r, block] += Σ_n dxa[n,r]·drop(x)[n, block]
RT_TASK(dA_task) {
    lora_args *a = ctx;
    float *acc = rt_thread_scratch(thread, 1, sizeof(float) * a->R * COLUMN_BLOCK);
    float *buf = rt_thread_scratch(thread, 0, sizeof(float) * a->In);
    for (int64_t blk = b; blk < e; blk++) {
        const int i0 = (int)blk * COLUMN_BLOCK, i1 = i0 + COLUMN_BLOCK < a->In ? i0 + COLUMN_BLOCK : a->In;
        const int w = i1 - i0;
        memset(acc, 0, sizeof(float) * a->R * COLUMN_BLOCK);
        for (int64_t n = 0; n < a->N; n++) {
            const float *xd = dropped_row(a, n, buf, i0, i1) + i0;
            const float *dxa = a->dxa + n * a->R;
            for (int r = 0; r < a->R; r++) {
                float g = dxa[r], *ac = acc + r * COLUMN_BLOCK;
                for (int i = 0; i < w; i++) ac[i] += g * xd[i];
            }
        }
        for (int r = 0; r < a->R; r++)
            for (int i = 0; i < w; i++) a->dA[(int64_t)r * a->In + i0 + i] += acc[r * COLUMN_BLOCK + i];
    }
}

// dB[block, r] += scale·Σ_n dy[n, block]·xa[n,r]
RT_TASK(dB_task) {
    lora_args *a = ctx;
    float *acc = rt_thread_scratch(thread, 1, sizeof(float) * a->R * COLUMN_BLOCK);
    for (int64_t blk = b; blk < e; blk++) {
        const int o0 = (int)blk * COLUMN_BLOCK, o1 = o0 + COLUMN_BLOCK < a->Out ? o0 + COLUMN_BLOCK : a->Out;
        const int w = o1 - o0;
        memset(acc, 0, sizeof(float) * a->R * COLUMN_BLOCK);
        for (int64_t n = 0; n < a->N; n++) {
            const float *dy = a->dy + n * a->Out + o0, *xa = a->sxa + n * a->R;
            for (int r = 0; r < a->R; r++) {
                float g = xa[r], *ac = acc + r * COLUMN_BLOCK;
                for (int o = 0; o < w; o++) ac[o] += g * dy[o];
            }
        }
        for (int o = 0; o < w; o++)
            for (int r = 0; r < a->R; r++) a->dB[(int64_t)(o0 + o) * a->R + r] += a->scale * acc[r * COLUMN_BLOCK + o];
    }
}

void rt_lora_backward(float *dx, float *dA, float *dB, const float *dy, const float *x, const float *xa,
                      const float *A, const float *B, int64_t N, int In, int Out, int R,
                      float scale, float p, uint64_t seed) {
    float *Bt = transpose_B(B, Out, R);
    float *dxa = rt_caller_scratch(14, sizeof(float) * N * R);
    lora_args a = { .dx = dx, .dA = dA, .dB = dB, .dxa = dxa, .x = x, .A = A, .B = B, .Bt = Bt, .dy = dy,
                    .sxa = xa, .N = N, .In = In, .Out = Out, .R = R, .scale = scale, .p = p, .key = rt_dropout_key(seed) };
    rt_parallel_for(N, 8, dx_task, &a);
    if (dA) rt_parallel_for((In + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1, dA_task, &a);
    if (dB) rt_parallel_for((Out + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1, dB_task, &a);
}
