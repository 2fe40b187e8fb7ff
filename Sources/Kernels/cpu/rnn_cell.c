// One time step t of an Elman RNN layer (torch.nn.RNN, nonlinearity tanh) over B sequences of
// hidden size H; sequence b is valid for t < lengths[b]. A padded step carries the state
// unchanged and outputs 0 (torch's packed sequences), for either direction.
//   xg [B,H]: x_t·W_ihᵀ + b_ih;  hg [B,H]: h_prev·W_hhᵀ + b_hh;  h = tanh(xg + hg)
//   h, hprev: [B,H]; y: h at y[b·ldy + j] (0 at padded steps).
// Backward, from dy (the outputs' gradient at t, rows ldy apart), dh (h_t's from later steps) and
// h (h_t): dxg [B,H] = (dy + dh)·(1 − h²), 0 at padded steps (also W_hh's); dhprev [B,H] the direct
// part: dh at padded steps, else 0 (the caller adds dxg·W_hh). Both overwritten. Parallel over rows.
#include "common.h"

typedef struct {
    float *h, *y, *dxg, *dhprev;
    const float *xg, *hg, *hprev, *dy, *dh, *sh;
    const int32_t *lengths;
    int64_t t, ldy; int H;
} rnn_args;

// One sequence's row (restrict parameters: the loop vectorises without run-time overlap checks).
RT_INLINE void rnn_row_forward(int H, float *restrict h, float *restrict y, const float *restrict xg, const float *restrict hg) {
    for (int j = 0; j < H; j++) {
        const float out = rt_tanhf(xg[j] + hg[j]);
        h[j] = out; y[j] = out;
    }
}

RT_TASK(rnn_forward_task) {
    rnn_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *h = a->h + r * H, *y = a->y + r * a->ldy;
        const float *hprev = a->hprev + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) { h[j] = hprev[j]; y[j] = 0; }
            continue;
        }
        rnn_row_forward(H, h, y, a->xg + r * H, a->hg + r * H);
    }
}

void rt_rnn_cell_forward(float *h, float *y, const float *xg, const float *hg, const float *hprev, const int32_t *lengths,
                         int64_t t, int B, int H, int64_t ldy) {
    rnn_args a = { .h = h, .y = y, .xg = xg, .hg = hg, .hprev = hprev, .lengths = lengths, .t = t, .ldy = ldy, .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, rnn_forward_task, &a);
}

RT_TASK(rnn_backward_task) {
    rnn_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *dxg = a->dxg + r * H, *dhprev = a->dhprev + r * H;
        const float *dh = a->dh + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) { dhprev[j] = dh[j]; dxg[j] = 0; }
            continue;
        }
        const float *dy = a->dy + r * a->ldy, *h = a->sh + r * H;
        for (int j = 0; j < H; j++) {
            dxg[j] = (dy[j] + dh[j]) * (1.0f - h[j] * h[j]);
            dhprev[j] = 0;
        }
    }
}

void rt_rnn_cell_backward(float *dxg, float *dhprev, const float *dy, const float *dh, const float *h, const int32_t *lengths,
                          int64_t t, int B, int H, int64_t ldy) {
    rnn_args a = { .dxg = dxg, .dhprev = dhprev, .dy = dy, .dh = dh, .sh = h, .lengths = lengths, .t = t, .ldy = ldy, .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, rnn_backward_task, &a);
}
