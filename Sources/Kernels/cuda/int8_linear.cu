// int8 linear layers on the GPU (CPU reference: Sources/Kernels/cpu/int8_linear.c). W is held
// as rows of 32-bit words, 4 int8 each: W[N, K4] (K4 = ⌈K/4⌉, the last word of a row zero padded).
//   int8_quantize_rows:  q[M, K4] words (columns K … 4·K4−1 zero), scale[M] = max|x[m,:]| / 127
//                        (0 for a zero row), q = round-half-even(x·127/max|x|) clamped to ±127, from
//                        x[M, ldx]; one block of 128 threads per row
//   int8_linear:         y[M, N] = fma(float(Σ_k q[m,k]·W[n,k]) · scale[m], wscale[n], bias[n])
//                        (bias may be NULL: 0); the int32 sums by dp4a are exact, so y equals the
//                        CPU's bit for bit; 16×16 outputs per block of (16, 16) threads, K in 64-byte steps
//   int8_weight_linear:  weight-only: y[M, N] = fma(Σ_k x[m,k]·float(W[n,k]), wscale[n], bias[n]) in
//                        fp32 (k in order), x[M, ldx]; same tiling
#include "common.cuh"

// Σ of the four int8 products of a and b, plus c.
__device__ __forceinline__ int rt_dp4a(int a, int b, int c) {
#ifdef RT_CUDA_EMULATION
    for (int j = 0; j < 4; j++) c += (int)(signed char)(a >> (8 * j)) * (int)(signed char)(b >> (8 * j));
    return c;
#else
    int d;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#endif
}

extern "C" __global__ void int8_quantize_rows(int *q, float *scale, const float *x, int rows, int K, int ldx) {
    __shared__ float partial[4];
    const int m = blockIdx.x, K4 = (K + 3) / 4;
    if (m >= rows) return;
    const float *xm = x + (long long)m * ldx;
    float amax = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) amax = fmaxf(amax, fabsf(xm[k]));
    amax = warp_max(amax);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = amax;
    __syncthreads();
    amax = fmaxf(fmaxf(partial[0], partial[1]), fmaxf(partial[2], partial[3]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    if (threadIdx.x == 0) scale[m] = amax / 127.0f;
    for (int w = threadIdx.x; w < K4; w += blockDim.x) {
        unsigned word = 0;
        for (int j = 0; j < 4; j++) {
            const int k = 4 * w + j;
            const int v = k < K ? (int)fminf(fmaxf(rintf(xm[k] * inv), -127.0f), 127.0f) : 0;
            word |= (unsigned)(v & 0xff) << (8 * j);
        }
        q[(long long)m * K4 + w] = (int)word;
    }
}

#define RT_I8_TILE 16

extern "C" __global__ void int8_linear(float *y, const int *q, const float *scale, const int *W, const float *wscale,
                                       const float *bias, int rows, int N, int K) {
    __shared__ int qs[RT_I8_TILE][RT_I8_TILE + 1], ws[RT_I8_TILE][RT_I8_TILE + 1];
    const int K4 = (K + 3) / 4, tx = threadIdx.x, ty = threadIdx.y;
    const int m0 = blockIdx.y * RT_I8_TILE, n0 = blockIdx.x * RT_I8_TILE, m = m0 + ty, n = n0 + tx;
    int sum = 0;
    for (int w0 = 0; w0 < K4; w0 += RT_I8_TILE) {
        const int w = w0 + tx;
        qs[ty][tx] = m < rows && w < K4 ? q[(long long)m * K4 + w] : 0;
        ws[ty][tx] = n0 + ty < N && w < K4 ? W[(long long)(n0 + ty) * K4 + w] : 0;
        __syncthreads();
        for (int j = 0; j < RT_I8_TILE; j++) sum = rt_dp4a(qs[ty][j], ws[tx][j], sum);
        __syncthreads();
    }
    if (m < rows && n < N) y[(long long)m * N + n] = fmaf((float)sum * scale[m], wscale[n], bias ? bias[n] : 0.0f);
}

extern "C" __global__ void int8_weight_linear(float *y, const float *x, int ldx, const int *W, const float *wscale,
                                              const float *bias, int rows, int N, int K) {
    __shared__ float xs[RT_I8_TILE][4 * RT_I8_TILE + 1], wf[RT_I8_TILE][4 * RT_I8_TILE + 1];
    const int K4 = (K + 3) / 4, tx = threadIdx.x, ty = threadIdx.y;
    const int m0 = blockIdx.y * RT_I8_TILE, n0 = blockIdx.x * RT_I8_TILE, m = m0 + ty, n = n0 + tx;
    float sum = 0.0f;
    for (int w0 = 0; w0 < K4; w0 += RT_I8_TILE) {
        const int w = w0 + tx;
        const unsigned word = n0 + ty < N && w < K4 ? (unsigned)W[(long long)(n0 + ty) * K4 + w] : 0u;
        for (int j = 0; j < 4; j++) {
            const int k = 4 * w + j;
            xs[ty][4 * tx + j] = m < rows && k < K ? x[(long long)m * ldx + k] : 0.0f;
            wf[ty][4 * tx + j] = (float)(signed char)(word >> (8 * j));
        }
        __syncthreads();
        for (int j = 0; j < 4 * RT_I8_TILE; j++) sum = fmaf(xs[ty][j], wf[tx][j], sum);
        __syncthreads();
    }
    if (m < rows && n < N) y[(long long)m * N + n] = fmaf(sum, wscale[n], bias ? bias[n] : 0.0f);
}
