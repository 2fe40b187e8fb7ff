// Fused AdamW step over one flat parameter buffer, as torch.optim.AdamW. params, grads, m, v: [n].
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  p ← p·decay − lr·(m·c1)/(√(v·c2) + eps)
// with decay = 1 − lr·wd, c1 = 1/(1−β1^t), c2 = 1/(1−β2^t) formed in double on the host and
// rounded once (as the CPU kernel, Sources/Kernels/cpu/adamw.c). Grid-stride loop.
#include "common.cuh"

extern "C" __global__ void adamw_step(float *params, const float *grads, float *m, float *v, long long n,
                                      float lr, float b1, float omb1, float b2, float omb2, float eps,
                                      float decay, float c1, float c2) {
    RT_GRID_STRIDE(i, n) {
        const float g = grads[i];
        const float mi = b1 * m[i] + omb1 * g;
        const float vi = b2 * v[i] + omb2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = params[i] * decay - lr * (mi * c1) / (sqrtf(vi * c2) + eps);
    }
}
