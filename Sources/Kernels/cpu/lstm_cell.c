// One time step t of an LSTM layer (torch.nn.LSTM's cell; gate order i, f, g, o) over B sequences
// of hidden size H; sequence b is valid for t < lengths[b]. A padded step carries the state
// unchanged and outputs 0 (torch's packed sequences), for either direction.
//   xg [B,4H]: x_t·W_ihᵀ + b_ih;  hg [B,4H]: h_prev·W_hhᵀ + b_hh   (pre-activations)
//   i = σ(xg+hg)[0:H], f = σ(…)[H:2H], g = tanh(…)[2H:3H], o = σ(…)[3H:4H]
//   c = f·c_prev + i·g;  h = o·tanh(c)
//   h, c, hprev, cprev: [B,H]; y: h at y[b·ldy + j] (0 at padded steps); gates [B,4H]: i,f,g,o saved.
// Backward, from dy (the outputs' gradient at t, rows ldy apart) and dh, dc (h_t's and c_t's from
// later steps): dxg [B,4H] the pre-activations' gradient (0 at padded steps; W_hh's too);
// dhprev [B,H] the direct part (dh itself at padded steps, else 0: the caller adds dxg·W_hh);
// dcprev [B,H]. All overwritten. Parallel over rows.
// In place: gates may be xg itself (forward) and dxg may be gates (backward) — each channel's four
// values are read before its four results are written, and no other channel's are touched — so a
// layer keeps one [T,B,4H] buffer for the pre-activations, the saved gates and their gradients.
// Rows go 16 channels at a time in vectors, the last H mod 16 one at a time (not the last 16 again,
// overlapping: in place, those would read results as inputs).
#include "common.h"

typedef struct {
    float *h, *c, *y, *gates, *dxg, *dhprev, *dcprev;
    const float *xg, *hg, *hprev, *cprev, *dy, *dh, *dc, *sgates, *sc;
    const int32_t *lengths;
    int64_t t, ldy; int H;
} lstm_args;

// Channels j … j+15 of one row (gates may be xg: all loads come before the stores).
RT_INLINE void lstm_forward16(int H, int j, float *h, float *c, float *y, float *gates, const float *xg, const float *hg,
                              const float *cprev) {
    const v16 i = rt_sigmoid16(v16_load(xg + j) + v16_load(hg + j)), f = rt_sigmoid16(v16_load(xg + H + j) + v16_load(hg + H + j));
    const v16 g = rt_tanh16(v16_load(xg + 2 * H + j) + v16_load(hg + 2 * H + j));
    const v16 o = rt_sigmoid16(v16_load(xg + 3 * H + j) + v16_load(hg + 3 * H + j));
    const v16 cell = v16_load(cprev + j) * f + i * g, out = o * rt_tanh16(cell);
    v16_store(c + j, cell); v16_store(h + j, out); v16_store(y + j, out);
    v16_store(gates + j, i); v16_store(gates + H + j, f); v16_store(gates + 2 * H + j, g); v16_store(gates + 3 * H + j, o);
}

// Channels j0 … H−1 of one row, one at a time (the same formulas).
RT_INLINE void lstm_tail_forward(int H, int j0, float *h, float *c, float *y, float *gates, const float *xg, const float *hg,
                                 const float *cprev) {
    for (int j = j0; j < H; j++) {
        const float i = rt_sigmoidf(xg[j] + hg[j]), f = rt_sigmoidf(xg[H + j] + hg[H + j]);
        const float g = rt_tanhf(xg[2 * H + j] + hg[2 * H + j]), o = rt_sigmoidf(xg[3 * H + j] + hg[3 * H + j]);
        const float cell = f * cprev[j] + i * g, out = o * rt_tanhf(cell);
        c[j] = cell; h[j] = out; y[j] = out;
        gates[j] = i; gates[H + j] = f; gates[2 * H + j] = g; gates[3 * H + j] = o;
    }
}

RT_TASK(lstm_forward_task) {
    lstm_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *h = a->h + r * H, *c = a->c + r * H, *y = a->y + r * a->ldy, *gates = a->gates + r * 4 * H;
        const float *hprev = a->hprev + r * H, *cprev = a->cprev + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) { h[j] = hprev[j]; c[j] = cprev[j]; y[j] = 0; }
            for (int j = 0; j < 4 * H; j++) gates[j] = 0;
            continue;
        }
        const float *xg = a->xg + r * 4 * H, *hg = a->hg + r * 4 * H;
        int j = 0;
        for (; j + 16 <= H; j += 16) lstm_forward16(H, j, h, c, y, gates, xg, hg, cprev);
        lstm_tail_forward(H, j, h, c, y, gates, xg, hg, cprev);
    }
}

void rt_lstm_cell_forward(float *h, float *c, float *y, float *gates, const float *xg, const float *hg, const float *hprev,
                          const float *cprev, const int32_t *lengths, int64_t t, int B, int H, int64_t ldy) {
    lstm_args a = { .h = h, .c = c, .y = y, .gates = gates, .xg = xg, .hg = hg, .hprev = hprev, .cprev = cprev,
                    .lengths = lengths, .t = t, .ldy = ldy, .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, lstm_forward_task, &a);
}

// Channels j … j+15 of one row (dxg may be gates: all loads come before the stores).
RT_INLINE void lstm_backward16(int H, int j, float *dxg, float *dhprev, float *dcprev, const float *dy, const float *dh, const float *dc,
                               const float *gates, const float *c, const float *cprev) {
    const v16 i = v16_load(gates + j), f = v16_load(gates + H + j), g = v16_load(gates + 2 * H + j), o = v16_load(gates + 3 * H + j);
    const v16 dhj = v16_load(dy + j) + v16_load(dh + j), tc = rt_tanh16(v16_load(c + j)), cp = v16_load(cprev + j);
    const v16 dcj = v16_load(dc + j) + dhj * o * (1.0f - tc * tc);
    v16_store(dxg + j, dcj * g * i * (1.0f - i));
    v16_store(dxg + H + j, dcj * cp * f * (1.0f - f));
    v16_store(dxg + 2 * H + j, dcj * i * (1.0f - g * g));
    v16_store(dxg + 3 * H + j, dhj * tc * o * (1.0f - o));
    v16_store(dcprev + j, dcj * f);
    v16_store(dhprev + j, v16_splat(0));
}

// Channels j0 … H−1 of one row, one at a time.
RT_INLINE void lstm_tail_backward(int H, int j0, float *dxg, float *dhprev, float *dcprev, const float *dy, const float *dh,
                                  const float *dc, const float *gates, const float *c, const float *cprev) {
    for (int j = j0; j < H; j++) {
        const float i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
        const float dhj = dy[j] + dh[j], tc = rt_tanhf(c[j]);
        const float dcj = dc[j] + dhj * o * (1.0f - tc * tc);
        dxg[j] = dcj * g * i * (1.0f - i);
        dxg[H + j] = dcj * cprev[j] * f * (1.0f - f);
        dxg[2 * H + j] = dcj * i * (1.0f - g * g);
        dxg[3 * H + j] = dhj * tc * o * (1.0f - o);
        dcprev[j] = dcj * f;
        dhprev[j] = 0;
    }
}

RT_TASK(lstm_backward_task) {
    lstm_args *a = ctx;
    const int H = a->H;
    for (int64_t r = b; r < e; r++) {
        float *dxg = a->dxg + r * 4 * H, *dhprev = a->dhprev + r * H, *dcprev = a->dcprev + r * H;
        const float *dh = a->dh + r * H, *dc = a->dc + r * H;
        if (a->t >= a->lengths[r]) {
            for (int j = 0; j < H; j++) { dhprev[j] = dh[j]; dcprev[j] = dc[j]; }
            for (int j = 0; j < 4 * H; j++) dxg[j] = 0;
            continue;
        }
        const float *dy = a->dy + r * a->ldy, *gates = a->sgates + r * 4 * H, *c = a->sc + r * H, *cprev = a->cprev + r * H;
        int j = 0;
        for (; j + 16 <= H; j += 16) lstm_backward16(H, j, dxg, dhprev, dcprev, dy, dh, dc, gates, c, cprev);
        lstm_tail_backward(H, j, dxg, dhprev, dcprev, dy, dh, dc, gates, c, cprev);
    }
}

void rt_lstm_cell_backward(float *dxg, float *dhprev, float *dcprev, const float *dy, const float *dh, const float *dc,
                           const float *gates, const float *c, const float *cprev, const int32_t *lengths, int64_t t, int B, int H,
                           int64_t ldy) {
    lstm_args a = { .dxg = dxg, .dhprev = dhprev, .dcprev = dcprev, .dy = dy, .dh = dh, .dc = dc, .sgates = gates, .sc = c,
                    .cprev = cprev, .lengths = lengths, .t = t, .ldy = ldy, .H = H };
    rt_parallel_for(B, H >= 1024 ? 1 : 1024 / H, lstm_backward_task, &a);
}
