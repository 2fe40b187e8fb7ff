// One time step t of an Elman RNN layer (torch.nn.RNN, tanh) over B sequences of hidden size H;
// sequence b is valid for t < lengths[b]: a padded step carries the state and outputs 0.
// Shapes and formulas: the CPU reference, Sources/Kernels/cpu/rnn_cell.c.
//   h, hprev, xg, hg, dxg, dhprev, dh [B,H]; y, dy rows ldy apart.
// One thread per (b, j), grid-stride loops; any launch size works.
#include "common.cuh"

extern "C" __global__ void rnn_cell_forward(float *h, float *y, const float *xg, const float *hg, const float *hprev,
                                            const int *lengths, long long t, int B, int H, long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        if (t >= lengths[r]) { h[k] = hprev[k]; y[r * ldy + j] = 0.0f; continue; }
        const float out = rt_tanhf(xg[k] + hg[k]);
        h[k] = out; y[r * ldy + j] = out;
    }
}

extern "C" __global__ void rnn_cell_backward(float *dxg, float *dhprev, const float *dy, const float *dh, const float *h,
                                             const int *lengths, long long t, int B, int H, long long ldy) {
    RT_GRID_STRIDE(k, (long long)B * H) {
        const long long r = k / H;
        const int j = (int)(k % H);
        if (t >= lengths[r]) { dhprev[k] = dh[k]; dxg[k] = 0.0f; continue; }
        dxg[k] = (dy[r * ldy + j] + dh[k]) * (1.0f - h[k] * h[k]);
        dhprev[k] = 0.0f;
    }
}
