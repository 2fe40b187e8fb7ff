// Shared by every kernel file (NVRTC gets it as an in-memory header; no CUDA headers exist here).
// Warp and block reductions, the counter-based dropout hash (bit-identical to the CPU's
// Sources/Kernels/cpu/common.h), and grid-stride loops.
#pragma once

#define RT_INF __int_as_float(0x7f800000)
#define RT_GRID_STRIDE(i, n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
__device__ __forceinline__ double warp_sum_double(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Σ over the block (blockDim.x a multiple of 32, ≤ 1024) in a fixed order; every thread gets it.
__device__ __forceinline__ double block_sum_double(double v) {
    __shared__ double partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum_double(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < warps ? partial[lane] : 0.0;
    return warp_sum_double(v);
}

// Σ over the 8 thread rows of a (32, 8) block, column (threadIdx.x) by column, in a fixed order:
// a slice's column sums in the parameter-gradient reductions. The result is valid in thread
// row 0; every thread of the block must call it (it may be called again: it waits first).
__device__ __forceinline__ float column_block_sum(float v) {
    __shared__ float partial[8][33];
    __syncthreads();   // a previous call's reads are done
    partial[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float s = 0.0f;
    if (threadIdx.y == 0)
        for (int r = 0; r < 8; r++) s += partial[r][threadIdx.x];
    return s;
}

// fp32 ↔ fp16 bits (cvt.rn: round to nearest even). Under the CPU emulation of the CUDA device
// (Tests/CUDAEmulation, RT_CUDA_EMULATION) the emulator supplies them: PTX asm does not compile there.
#ifndef RT_CUDA_EMULATION
__device__ __forceinline__ unsigned short rt_f16_bits(float x) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}
__device__ __forceinline__ float rt_f16_value(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
#endif

// A pointer read as a wider type must be aligned to it (a GPU faults otherwise); the emulated
// device checks it, a GPU build compiles it away.
#ifndef RT_CUDA_EMULATION
#define RT_CHECK_ALIGNED(p, bytes)
#endif

// Counter-based dropout masks, the same formula as the CPU kernels: element `index` is kept
// when the hash of (seed, index) is at least p.
__device__ __forceinline__ unsigned rt_mix32(unsigned x) {
    x ^= x >> 16; x *= 0x7feb352du;
    x ^= x >> 15; x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
__device__ __forceinline__ unsigned rt_dropout_key(unsigned long long seed) {
    return rt_mix32((unsigned)seed ^ rt_mix32((unsigned)(seed >> 32) + 0x9e3779b9u));
}
__device__ __forceinline__ bool rt_keep(unsigned key, unsigned long long index, float p) {
    unsigned h = rt_mix32((unsigned)index ^ rt_mix32((unsigned)(index >> 32) ^ key));
    return (float)(h >> 8) * (1.0f / 16777216.0f) >= p;
}

// σ(x) and tanh(x) = 1 − 2/(e^{2x} + 1), the CPU kernels' formulas (cpu/common.h).
__device__ __forceinline__ float rt_sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float rt_tanhf(float x) { return 1.0f - 2.0f / (expf(2.0f * x) + 1.0f); }
