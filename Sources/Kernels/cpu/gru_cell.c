// One time step t of a GRU layer (torch.nn.GRU's cell; gate order r, z, n) over B sequences of
// hidden size H; sequence b is valid for t < lengths[b]. A padded step carries the state
// unchanged and outputs 0 (torch's packed sequences), for either direction.
//   xg [B,3H]: x_t·W_ihᵀ + b_ih;  hg [B,3H]: h_prev·W_hhᵀ + b_hh   (pre-activations)
//   r = σ(xg_r + hg_r), z = σ(xg_z + hg_z), n = tanh(xg_n + r·hg_n);  h = (1 − z)·n + z·h_prev
//   h, hprev: [B,H]; y: h at y[b·ldy + j] (0 at padded steps); saved [B,4H]: r, z, n, hg_n.
// Backward, from dy (the outputs' gradient at t, rows ldy apart) and dh (h_t's from later steps):
// dxg [B,3H] the gradient through xg, dhg [B,3H] through hg (they differ in the n block: r·dn);
// dhprev [B,H] the direct part z·dh (dh itself at padded steps: the caller adds dhg·W_hh). All
// overwritten; 0 at padded steps. Parallel over rows.
#include "common.h"

typedef struct {
    float *h, *y, *saved, *dxg, *dhg, *dhprev;
    const float *xg, *hg, *hprev, *dy, *dh, *ssaved;
    const int32_t *lengths;
    int64_t t, ldy; int H;
} gru_args;

// One sequence's row (restrict parameters: the loop vectorises without run-time overlap checks).
RT_INLINE void gru_row_forward(int H, float *restrict h, float *restrict y, float *restrict saved, const float *restrict xg,
                               const float *restrict hg, const float *restrict hprev) {
    for (int j = 0; j < H; j++) {
        const float reset = rt_sigmoidf(xg[j] + hg[j]), z = rt_sigmoidf(xg[H + j] + hg[H + j]), hn = hg[2 * H + j];
        const float n = rt_tanhf(xg[2 * H + j] + reset * hn), out = (1.0f - z) * n + z * hprev[j];
        h[j] = out; y[j] = out;
        saved[j] = reset; saved[H + j] = z; saved[2 * H + j] = n; saved[3 * H + j] = hn;
    }
}

RT_TASK(gru_forward_task) {
    gru_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *h = a->h + r * H, *y = a->y + r * a->ldy, *saved = a->saved + r * 4 * H;
        const float *hprev = a->hprev + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) { h[j] = hprev[j]; y[j] = 0; }
            for (int j = 0; j < 4 * H; j++) saved[j] = 0;
            continue;
        }
        gru_row_forward(H, h, y, saved, a->xg + r * 3 * H, a->hg + r * 3 * H, hprev);
    }
}

void rt_gru_cell_forward(float *h, float *y, float *saved, const float *xg, const float *hg, const float *hprev,
                         const int32_t *lengths, int64_t t, int B, int H, int64_t ldy) {
    gru_args a = { .h = h, .y = y, .saved = saved, .xg = xg, .hg = hg, .hprev = hprev, .lengths = lengths, .t = t, .ldy = ldy,
                   .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, gru_forward_task, &a);
}

RT_INLINE void gru_row_backward(int H, float *restrict dxg, float *restrict dhg, float *restrict dhprev, const float *restrict dy,
                                const float *restrict dh, const float *restrict saved, const float *restrict hprev) {
    for (int j = 0; j < H; j++) {
        const float reset = saved[j], z = saved[H + j], n = saved[2 * H + j], hn = saved[3 * H + j];
        const float dhj = dy[j] + dh[j];
        const float dn = dhj * (1.0f - z) * (1.0f - n * n);
        const float dr = dn * hn * reset * (1.0f - reset), dz = dhj * (hprev[j] - n) * z * (1.0f - z);
        dxg[j] = dr; dhg[j] = dr;
        dxg[H + j] = dz; dhg[H + j] = dz;
        dxg[2 * H + j] = dn;
        dhg[2 * H + j] = dn * reset;
        dhprev[j] = dhj * z;
    }
}

RT_TASK(gru_backward_task) {
    gru_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *dxg = a->dxg + r * 3 * H, *dhg = a->dhg + r * 3 * H, *dhprev = a->dhprev + r * H;
        const float *dh = a->dh + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) dhprev[j] = dh[j];
            for (int j = 0; j < 3 * H; j++) dxg[j] = dhg[j] = 0;
            continue;
        }
        gru_row_backward(H, dxg, dhg, dhprev, a->dy + r * a->ldy, dh, a->ssaved + r * 4 * H, a->hprev + r * H);
    }
}

void rt_gru_cell_backward(float *dxg, float *dhg, float *dhprev, const float *dy, const float *dh, const float *saved,
                          const float *hprev, const int32_t *lengths, int64_t t, int B, int H, int64_t ldy) {
    gru_args a = { .dxg = dxg, .dhg = dhg, .dhprev = dhprev, .dy = dy, .dh = dh, .ssaved = saved, .hprev = hprev,
                   .lengths = lengths, .t = t, .ldy = ldy, .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, gru_backward_task, &a);
}
