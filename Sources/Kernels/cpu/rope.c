// Rotary position embedding, HF Llama's rotate_half convention, on rows of NH heads of HS:
//   x, out: [BT, NH·HS]; positions: [BT] int32; inv_freq: [HS/2] (θ^(−2i/HS), after any scaling).
//   For head h of row r, i < HS/2, a = positions[r]·inv_freq[i] (fp32), first = x[i], second = x[i + HS/2]:
//     out[i] = first·cos a − second·sin a,   out[i + HS/2] = second·cos a + first·sin a
//   sign −1 rotates by −a: the backward (dx from dout), since each pair's rotation is orthogonal.
//   out may be x (each pair is read before it is written).
#include "common.h"

typedef struct { float *out; const float *x, *inv_freq; const int32_t *positions; int NH, HS; float sign; } rope_args;

RT_TASK(rope_task) {
    rope_args *a = ctx;
    const int NH = a->NH, HS = a->HS, half = HS / 2;
    for (int64_t r = b; r < e; r++) {
        const float p = (float)a->positions[r];
        for (int i = 0; i < half; i++) {
            const float angle = p * a->inv_freq[i], c = cosf(angle), s = a->sign * sinf(angle);
            for (int h = 0; h < NH; h++) {
                const int64_t at = r * NH * HS + (int64_t)h * HS + i;
                const float first = a->x[at], second = a->x[at + half];
                a->out[at] = first * c - second * s;
                a->out[at + half] = second * c + first * s;
            }
        }
    }
}

void rt_rope(float *out, const float *x, const int32_t *positions, const float *inv_freq, int64_t BT, int NH, int HS, float sign) {
    rope_args a = { .out = out, .x = x, .inv_freq = inv_freq, .positions = positions, .NH = NH, .HS = HS, .sign = sign };
    rt_parallel_for(BT, 16, rope_task, &a);
}
