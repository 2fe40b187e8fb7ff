// Rotary position embedding, HF Llama's rotate_half convention, on rows of NH heads of HS:
//   x, out: [BT, NH·HS]; positions: [BT] int32; inv_freq: [HS/2] (θ^(−2i/HS), after any scaling).
//   For head h of row r, i < HS/2, a = positions[r]·inv_freq[i] (fp32), first = x[i], second = x[i + HS/2]:
//     out[i] = first·cos a − second·sin a,   out[i + HS/2] = second·cos a + first·sin a
//   sign −1 rotates by −a: the backward. out may be x. One thread per (row, head, i) pair,
//   grid-stride over BT·NH·HS/2. CPU reference: Sources/Kernels/cpu/rope.c.
#include "common.cuh"

extern "C" __global__ void rope(float *out, const float *x, const int *positions, const float *inv_freq, long long BT, int NH, int HS,
                                float sign) {
    const int half = HS / 2;
    RT_GRID_STRIDE(k, BT * NH * half) {
        const int i = (int)(k % half);
        const long long row_head = k / half, r = row_head / NH;
        const float angle = (float)positions[r] * inv_freq[i], c = cosf(angle), s = sign * sinf(angle);
        const long long at = row_head * HS + i;
        const float first = x[at], second = x[at + half];
        out[at] = first * c - second * s;
        out[at + half] = second * c + first * s;
    }
}
