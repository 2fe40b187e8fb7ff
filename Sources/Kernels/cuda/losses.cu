// Losses, forward and gradient in one pass, then a deterministic mean. Each op writes one
// partial per row (or per block), and a one-block *_finish kernel sums them in a fixed order:
// loss[0] = Σ partial / denominator. Gradients are d(grad_scale·loss), overwritten.
//   cross entropy:      logits, dlogits [N,V]; labels [N] (outside [0,V): ignored — loss and
//                       gradient 0; the mean is over valid rows, counted first by count_valid_labels)
//   soft cross entropy: logits, teacher, dlogits [N,V]; temperature T; mean over rows of
//                       −Σ_j softmax(teacher/T)_j·log softmax(logits/T)_j
//   mse:                a, b, da [n]; Σ (a − b)² / n (SUM_BLOCKS blocks of 256 threads)
//   cosine:             a, b, da [N,C]; mean over rows of 1 − cos(a_n, b_n) (eps 1e-12 on the norms²)
// Row kernels: one warp per row (launch ≥ N·32 threads). CPU reference: Sources/Kernels/cpu/losses.c.
#include "common.cuh"

// count[0] = number of labels in [0, V) (one block).
extern "C" __global__ void count_valid_labels(int *count, const int *labels, long long N, int V) {
    double c = 0;
    for (long long n = threadIdx.x; n < N; n += blockDim.x) c += labels[n] >= 0 && labels[n] < V;
    c = block_sum_double(c);
    if (threadIdx.x == 0) count[0] = (int)c;
}

extern "C" __global__ void cross_entropy_rows(float *partial, float *dlogits, const float *logits, const int *labels,
                                              const int *count, long long N, int V, float grad_scale) {
    const long long n = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *x = logits + n * V;
    float *g = dlogits ? dlogits + n * V : 0;
    const int label = labels[n];
    if (label < 0 || label >= V) {
        if (lane == 0) partial[n] = 0.0f;
        if (g) for (int j = lane; j < V; j += 32) g[j] = 0.0f;
        return;
    }
    float m = -RT_INF;
    for (int j = lane; j < V; j += 32) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < V; j += 32) sum += expf(x[j] - m);
    const float lse = m + logf(warp_sum(sum));
    if (lane == 0) partial[n] = lse - x[label];
    if (g) {
        const float norm = count[0] > 0 ? grad_scale / (float)count[0] : 0.0f;
        for (int j = lane; j < V; j += 32) g[j] = norm * (expf(x[j] - lse) - (j == label ? 1.0f : 0.0f));
    }
}

extern "C" __global__ void soft_cross_entropy_rows(float *partial, float *dlogits, const float *logits,
                                                   const float *teacher, long long N, int V, float temperature,
                                                   float grad_scale) {
    const long long n = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float invT = 1.0f / temperature, norm = grad_scale / (float)N;
    const float *s = logits + n * V, *t = teacher + n * V;
    float ms = -RT_INF, mt = -RT_INF;
    for (int j = lane; j < V; j += 32) { ms = fmaxf(ms, s[j] * invT); mt = fmaxf(mt, t[j] * invT); }
    ms = warp_max(ms);
    mt = warp_max(mt);
    float ss = 0.0f, st = 0.0f;
    for (int j = lane; j < V; j += 32) { ss += expf(s[j] * invT - ms); st += expf(t[j] * invT - mt); }
    const float lse_s = ms + logf(warp_sum(ss)), lse_t = mt + logf(warp_sum(st));
    float row = 0.0f;
    for (int j = lane; j < V; j += 32) {
        const float pt = expf(t[j] * invT - lse_t);
        row -= pt * (s[j] * invT - lse_s);
        if (dlogits) dlogits[n * V + j] = norm * invT * (expf(s[j] * invT - lse_s) - pt);
    }
    row = warp_sum(row);
    if (lane == 0) partial[n] = row;
}

// partials[blockIdx.x] = Σ (a − b)² over this block's share; da = norm·(a − b).
extern "C" __global__ void mse_partial(double *partials, float *da, const float *a, const float *b, long long n,
                                       float norm) {
    double s = 0;
    RT_GRID_STRIDE(i, n) {
        const float d = a[i] - b[i];
        s += (double)d * d;
        if (da) da[i] = norm * d;
    }
    s = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

extern "C" __global__ void cosine_rows(float *partial, float *da, const float *a, const float *b, long long N, int C,
                                       float norm) {
    const long long n = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (n >= N) return;
    const float *x = a + n * C, *y = b + n * C;
    float xy = 0.0f, xx = 0.0f, yy = 0.0f;
    for (int c = lane; c < C; c += 32) { xy += x[c] * y[c]; xx += x[c] * x[c]; yy += y[c] * y[c]; }
    xy = warp_sum(xy);
    xx = warp_sum(xx) + 1e-12f;   // as torch.nn.functional.cosine_embedding_loss
    yy = warp_sum(yy) + 1e-12f;
    const float inv = 1.0f / sqrtf(xx * yy), cosv = xy * inv;
    if (lane == 0) partial[n] = 1.0f - cosv;
    if (da)
        for (int c = lane; c < C; c += 32) da[n * C + c] = -norm * (y[c] * inv - cosv * x[c] / xx);
}

// loss[0] = Σ partial[0 … count) / (count_of_valid ? count_of_valid[0] : denominator); 0 when that is 0.
extern "C" __global__ void mean_finish(float *loss, const float *partial, long long count, const int *count_of_valid,
                                       float denominator) {
    double s = 0;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_sum_double(s);
    const float d = count_of_valid ? (float)count_of_valid[0] : denominator;
    if (threadIdx.x == 0) loss[0] = d > 0 ? (float)s / d : 0.0f;
}

// The same over double partials (mse).
extern "C" __global__ void mean_finish_double(float *loss, const double *partial, int count, float denominator) {
    double s = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) loss[0] = denominator > 0 ? (float)s / denominator : 0.0f;
}
