// Pooling over time of a recurrent layer's outputs: out[B,C] from y[T,B,C] (time-major: row t·B + b)
// over the lengths[b] valid steps of each sequence.
//   mode 0 mean: Σ_{t<len} y / len;   mode 1 max: the largest y over t < len (argmax[B,C] int32
//   keeps its step for backward);     mode 2 last: columns c < split take y[len − 1] (a forward
//   direction's final state), columns c ≥ split y[0] (a reverse direction's).
// A sequence of length 0 pools to 0. Backward overwrites dy[T,B,C] (0 where nothing flowed).
// Parallel over sequences.
#include "common.h"

typedef struct {
    float *out, *dy;
    int32_t *argmax;
    const float *y, *dout;
    const int32_t *lengths, *sargmax;
    int T, B, C, mode, split;
} pool_args;

RT_TASK(pool_forward_task) {
    pool_args *a = ctx;
    const int B = a->B, C = a->C;
    for (int64_t s = b; s < e; s++) {
        const int len = a->lengths[s] < a->T ? a->lengths[s] : a->T;
        float *out = a->out + s * C;
        if (len <= 0) {
            for (int c = 0; c < C; c++) out[c] = 0;
            if (a->argmax) for (int c = 0; c < C; c++) a->argmax[s * C + c] = -1;
            continue;
        }
        if (a->mode == 0) {
            for (int c = 0; c < C; c++) out[c] = 0;
            for (int t = 0; t < len; t++) {
                const float *y = a->y + ((int64_t)t * B + s) * C;
                for (int c = 0; c < C; c++) out[c] += y[c];
            }
            for (int c = 0; c < C; c++) out[c] /= (float)len;
        } else if (a->mode == 1) {
            int32_t *arg = a->argmax + s * C;
            const float *y0 = a->y + s * C;
            for (int c = 0; c < C; c++) { out[c] = y0[c]; arg[c] = 0; }
            for (int t = 1; t < len; t++) {
                const float *y = a->y + ((int64_t)t * B + s) * C;
                for (int c = 0; c < C; c++) if (y[c] > out[c]) { out[c] = y[c]; arg[c] = t; }
            }
        } else {
            const float *last = a->y + ((int64_t)(len - 1) * B + s) * C, *first = a->y + s * C;
            for (int c = 0; c < C; c++) out[c] = c < a->split ? last[c] : first[c];
        }
    }
}

void rt_sequence_pool_forward(float *out, int32_t *argmax, const float *y, const int32_t *lengths, int T, int B, int C, int mode,
                              int split) {
    pool_args a = { .out = out, .argmax = argmax, .y = y, .lengths = lengths, .T = T, .B = B, .C = C, .mode = mode, .split = split };
    rt_parallel_for(B, 1, pool_forward_task, &a);
}

RT_TASK(pool_backward_task) {
    pool_args *a = ctx;
    const int B = a->B, C = a->C;
    for (int64_t s = b; s < e; s++) {
        const int len = a->lengths[s] < a->T ? a->lengths[s] : a->T;
        const float *dout = a->dout + s * C;
        for (int t = 0; t < a->T; t++) {
            float *dy = a->dy + ((int64_t)t * B + s) * C;
            for (int c = 0; c < C; c++) {
                float g = 0;
                if (t < len) {
                    if (a->mode == 0) g = dout[c] / (float)len;
                    else if (a->mode == 1) g = a->sargmax[s * C + c] == t ? dout[c] : 0.0f;
                    else g = t == (c < a->split ? len - 1 : 0) ? dout[c] : 0.0f;
                }
                dy[c] = g;
            }
        }
    }
}

void rt_sequence_pool_backward(float *dy, const float *dout, const int32_t *argmax, const int32_t *lengths, int T, int B, int C,
                               int mode, int split) {
    pool_args a = { .dy = dy, .dout = dout, .sargmax = argmax, .lengths = lengths, .T = T, .B = B, .C = C, .mode = mode,
                    .split = split };
    rt_parallel_for(B, 1, pool_backward_task, &a);
}
