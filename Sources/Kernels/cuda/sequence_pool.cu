// Pooling over time of a recurrent layer's outputs: out[B,C] from time-major y[T,B,C] over each
// sequence's lengths[b] steps — mode 0 mean, 1 max (argmax[B,C] int32 saved), 2 last (columns
// < split: step len−1; columns ≥ split: step 0). A sequence of length 0 pools to 0. Backward
// overwrites dy[T,B,C]. CPU reference: Sources/Kernels/cpu/sequence_pool.c (the same order of sums).
// One thread per (b, c) forward and per (t, b, c) backward, grid-stride loops.
#include "common.cuh"

extern "C" __global__ void sequence_pool_forward(float *out, int *argmax, const float *y, const int *lengths, int T, int B, int C,
                                                 int mode, int split) {
    RT_GRID_STRIDE(k, (long long)B * C) {
        const long long s = k / C;
        const int c = (int)(k % C), len = lengths[s] < T ? lengths[s] : T;
        if (len <= 0) { out[k] = 0.0f; if (argmax) argmax[k] = -1; continue; }
        if (mode == 0) {
            float sum = 0.0f;
            for (int t = 0; t < len; t++) sum += y[((long long)t * B + s) * C + c];
            out[k] = sum / (float)len;
        } else if (mode == 1) {
            float best = y[s * C + c];
            int arg = 0;
            for (int t = 1; t < len; t++) {
                const float v = y[((long long)t * B + s) * C + c];
                if (v > best) { best = v; arg = t; }
            }
            out[k] = best; argmax[k] = arg;
        } else {
            const int t = c < split ? len - 1 : 0;
            out[k] = y[((long long)t * B + s) * C + c];
        }
    }
}

extern "C" __global__ void sequence_pool_backward(float *dy, const float *dout, const int *argmax, const int *lengths, int T, int B,
                                                  int C, int mode, int split) {
    RT_GRID_STRIDE(k, (long long)T * B * C) {
        const int c = (int)(k % C);
        const long long s = (k / C) % B;
        const int t = (int)(k / ((long long)B * C)), len = lengths[s] < T ? lengths[s] : T;
        float g = 0.0f;
        if (t < len) {
            const float d = dout[s * C + c];
            if (mode == 0) g = d / (float)len;
            else if (mode == 1) g = argmax[s * C + c] == t ? d : 0.0f;
            else g = t == (c < split ? len - 1 : 0) ? d : 0.0f;
        }
        dy[k] = g;
    }
}
