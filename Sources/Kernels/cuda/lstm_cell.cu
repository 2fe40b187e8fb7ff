// One time step t of an LSTM layer (torch.nn.LSTM's cell; gate order i, f, g, o) over B sequences
// of hidden size H; sequence b is valid for t < lengths[b]: a padded step carries the state and
// outputs 0. Shapes and formulas: the CPU reference, Sources/Kernels/cpu/lstm_cell.c.
//   h, c, hprev, cprev [B,H]; y rows ldy apart; gates, xg, hg, dxg [B,4H]; dhprev, dcprev, dh, dc [B,H].
// One thread per (b, j), grid-stride loops; any launch size works. In place like the CPU's: gates
// may be xg and dxg may be gates (a thread reads its unit's four values before writing its four).
#include "common.cuh"

extern "C" __global__ void lstm_cell_forward(float *h, float *c, float *y, float *gates, const float *xg, const float *hg,
                                             const float *hprev, const float *cprev, const int *lengths, long long t, int B, int H,
                                             long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        float *g = gates + r * 4 * H;
        if (t >= lengths[r]) {
            h[k] = hprev[k]; c[k] = cprev[k]; y[r * ldy + j] = 0.0f;
            g[j] = g[H + j] = g[2 * H + j] = g[3 * H + j] = 0.0f;
            continue;
        }
        const float *x = xg + r * 4 * H, *p = hg + r * 4 * H;
        const float i = rt_sigmoidf(x[j] + p[j]), f = rt_sigmoidf(x[H + j] + p[H + j]);
        const float gg = rt_tanhf(x[2 * H + j] + p[2 * H + j]), o = rt_sigmoidf(x[3 * H + j] + p[3 * H + j]);
        const float cell = f * cprev[k] + i * gg, out = o * rt_tanhf(cell);
        c[k] = cell; h[k] = out; y[r * ldy + j] = out;
        g[j] = i; g[H + j] = f; g[2 * H + j] = gg; g[3 * H + j] = o;
    }
}

extern "C" __global__ void lstm_cell_backward(float *dxg, float *dhprev, float *dcprev, const float *dy, const float *dh,
                                              const float *dc, const float *gates, const float *c, const float *cprev,
                                              const int *lengths, long long t, int B, int H, long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        float *d = dxg + r * 4 * H;
        if (t >= lengths[r]) {
            dhprev[k] = dh[k]; dcprev[k] = dc[k];
            d[j] = d[H + j] = d[2 * H + j] = d[3 * H + j] = 0.0f;
            continue;
        }
        const float *g = gates + r * 4 * H;
        const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        const float dhj = dy[r * ldy + j] + dh[k], tc = rt_tanhf(c[k]);
        const float dcj = dc[k] + dhj * o * (1.0f - tc * tc);
        d[j] = dcj * gg * i * (1.0f - i);
        d[H + j] = dcj * cprev[k] * f * (1.0f - f);
        d[2 * H + j] = dcj * i * (1.0f - gg * gg);
        d[3 * H + j] = dhj * tc * o * (1.0f - o);
        dcprev[k] = dcj * f;
        dhprev[k] = 0.0f;
    }
}
