// One time step t of a GRU layer (torch.nn.GRU's cell; gate order r, z, n) over B sequences of
// hidden size H; sequence b is valid for t < lengths[b]: a padded step carries the state and
// outputs 0. Shapes and formulas: the CPU reference, Sources/Kernels/cpu/gru_cell.c.
//   h, hprev, dhprev, dh [B,H]; y, dy rows ldy apart; xg, hg, dxg, dhg [B,3H]; saved [B,4H] r,z,n,hg_n.
// One thread per (b, j), grid-stride loops; any launch size works.
#include "common.cuh"

extern "C" __global__ void gru_cell_forward(float *h, float *y, float *saved, const float *xg, const float *hg, const float *hprev,
                                            const int *lengths, long long t, int B, int H, long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        float *s = saved + r * 4 * H;
        if (t >= lengths[r]) {
            h[k] = hprev[k]; y[r * ldy + j] = 0.0f;
            s[j] = s[H + j] = s[2 * H + j] = s[3 * H + j] = 0.0f;
            continue;
        }
        const float *x = xg + r * 3 * H, *p = hg + r * 3 * H;
        const float reset = rt_sigmoidf(x[j] + p[j]), z = rt_sigmoidf(x[H + j] + p[H + j]), hn = p[2 * H + j];
        const float n = rt_tanhf(x[2 * H + j] + reset * hn), out = (1.0f - z) * n + z * hprev[k];
        h[k] = out; y[r * ldy + j] = out;
        s[j] = reset; s[H + j] = z; s[2 * H + j] = n; s[3 * H + j] = hn;
    }
}

extern "C" __global__ void gru_cell_backward(float *dxg, float *dhg, float *dhprev, const float *dy, const float *dh,
                                             const float *saved, const float *hprev, const int *lengths, long long t, int B, int H,
                                             long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        float *dx = dxg + r * 3 * H, *dp = dhg + r * 3 * H;
        if (t >= lengths[r]) {
            dhprev[k] = dh[k];
            dx[j] = dx[H + j] = dx[2 * H + j] = dp[j] = dp[H + j] = dp[2 * H + j] = 0.0f;
            continue;
        }
        const float *s = saved + r * 4 * H;
        const float reset = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
        const float dhj = dy[r * ldy + j] + dh[k];
        const float dn = dhj * (1.0f - z) * (1.0f - n * n);
        const float dr = dn * hn * reset * (1.0f - reset), dz = dhj * (hprev[k] - n) * z * (1.0f - z);
        dx[j] = dp[j] = dr;
        dx[H + j] = dp[H + j] = dz;
        dx[2 * H + j] = dn;
        dp[2 * H + j] = dn * reset;
        dhprev[k] = dhj * z;
    }
}
