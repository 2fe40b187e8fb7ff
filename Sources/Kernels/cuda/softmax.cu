// Masked softmax over keys: the unfused and the composed attention paths, and the masking of
// their score tensors.
//   scores, probs, dprobs, dscores: [B,NH,T,T]; mask: [B,T] (0 = padded key) or NULL;
//   bias: [NH,T,T] or NULL; lse: [B,NH,T] or NULL. A row with no valid key is all zeros (lse +inf).
//   causal ≠ 0: keys past the query row are masked too.
// One warp per row (launch ≥ rows·32 threads, blockDim a multiple of 32); lanes stride over keys.
// CPU reference: Sources/Kernels/cpu/softmax.c.
#include "common.cuh"

extern "C" __global__ void masked_softmax_forward(float *probs, float *lse, const float *scores, const int *mask,
                                                  const float *bias, int B, int NH, int T, int causal) {
    const long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (long long)B * NH * T) return;
    const int i = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / ((long long)T * NH));
    const float *s = scores + row * T;
    const float *bi = bias ? bias + ((long long)h * T + i) * T : 0;
    const int *m = mask ? mask + (long long)b * T : 0;
    float *p = probs + row * T;
    float mx = -RT_INF;
    for (int j = lane; j < T; j += 32)
        if ((!m || m[j]) && (!causal || j <= i)) mx = fmaxf(mx, s[j] + (bi ? bi[j] : 0.0f));
    mx = warp_max(mx);
    if (mx == -RT_INF) {
        for (int j = lane; j < T; j += 32) p[j] = 0.0f;
        if (lse && lane == 0) lse[row] = RT_INF;
        return;
    }
    float sum = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float x = (!m || m[j]) && (!causal || j <= i) ? expf(s[j] + (bi ? bi[j] : 0.0f) - mx) : 0.0f;
        p[j] = x;
        sum += x;
    }
    sum = warp_sum(sum);
    const float inv = 1.0f / sum;
    for (int j = lane; j < T; j += 32) p[j] *= inv;
    if (lse && lane == 0) lse[row] = mx + logf(sum);
}

// scores += bias[h], then 0 at masked keys, in place; one warp per row.
extern "C" __global__ void masked_scores(float *scores, const int *mask, const float *bias, int B, int NH, int T,
                                         int causal) {
    const long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= (long long)B * NH * T) return;
    const int i = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / ((long long)T * NH));
    const float *bi = bias ? bias + ((long long)h * T + i) * T : 0;
    const int *m = mask ? mask + (long long)b * T : 0;
    float *s = scores + row * T;
    for (int j = lane; j < T; j += 32) s[j] = (!m || m[j]) && (!causal || j <= i) ? s[j] + (bi ? bi[j] : 0.0f) : 0.0f;
}

// dscores = probs ⊙ (dprobs − Σ_j probs·dprobs), rows of length T.
extern "C" __global__ void masked_softmax_backward(float *dscores, const float *dprobs, const float *probs,
                                                   long long rows, int T) {
    const long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    const float *p = probs + row * T, *dp = dprobs + row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) dot += p[j] * dp[j];
    dot = warp_sum(dot);
    float *ds = dscores + row * T;
    for (int j = lane; j < T; j += 32) ds[j] = p[j] * (dp[j] - dot);
}
