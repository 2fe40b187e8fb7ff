// The CUDA dialect the kernels of Sources/Kernels/cuda are written in, for compiling them as
// C++ on the CPU (each kernels_*.cpp includes this, then one .cu inside a namespace).
// `__shared__` variables are function statics: blocks run one at a time, their threads as
// fibers of one OS thread, so atomics are plain read-modify-writes.
#pragma once
#include <cmath>
#include <cstring>

#include "emulation.h"

#define RT_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define RT_CHECK_ALIGNED(p, bytes) emu::check_aligned((const void *)(p), (bytes), #p)
#define threadIdx (emu::thread_index())
#define blockIdx (emu::block_index())
#define blockDim (emu::block_dim())
#define gridDim (emu::grid_dim())

static inline void __syncthreads() { emu::sync_block(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::sync_warp(mask); }

template <class T> static inline T emu_shuffle(unsigned mask, T value, int lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = emu::shuffle(bits, lane, mask);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}
template <class T> static inline T __shfl_sync(unsigned mask, T value, int lane) { return emu_shuffle(mask, value, lane & 31); }
template <class T> static inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask) {
    return emu_shuffle(mask, value, (int)(emu::lane_id() ^ (unsigned)lane_mask) & 31);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
    const unsigned source = emu::lane_id() + delta;
    return emu_shuffle(mask, value, source < 32 ? (int)source : (int)emu::lane_id());
}

static inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, 4); return f; }
static inline float __uint_as_float(unsigned x) { float f; std::memcpy(&f, &x, 4); return f; }
static inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
static inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
static inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
static inline float atomicAdd(float *p, float v) { const float old = *p; *p = old + v; return old; }
static inline double atomicAdd(double *p, double v) { const double old = *p; *p = old + v; return old; }
static inline int atomicAdd(int *p, int v) { const int old = *p; *p = old + v; return old; }

// cvt.rn.f16.f32 and cvt.f32.f16 (common.cuh asks for them under RT_CUDA_EMULATION).
static inline unsigned short rt_f16_bits(float x) {
    const _Float16 h = (_Float16)x;   // round to nearest even
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
static inline float rt_f16_value(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return (float)h;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: d += a·b for the warp, with the fragment
// layout of the PTX ISA (as attention_tc.cu documents it). Every lane publishes its fragments,
// the warp meets, each lane computes its four outputs, the warp meets again.
static inline float emu_half_value(unsigned bits, bool bf16) {
    bits &= 0xffffu;
    if (bf16) return __uint_as_float(bits << 16);
    return rt_f16_value((unsigned short)bits);
}
template <bool BF16> static inline void tc_mma(float d[4], const unsigned a[4], const unsigned b[2]) {
    emu::Fragments *lanes = emu::warp_fragments();
    const unsigned lane = emu::lane_id();
    std::memcpy(lanes[lane].a, a, sizeof(unsigned) * 4);
    std::memcpy(lanes[lane].b, b, sizeof(unsigned) * 2);
    emu::sync_warp(0xffffffffu);
    auto A = [&](int row, int kk) {   // a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
        const int owner = 4 * (row % 8) + (kk % 8) / 2, reg = (row >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0);
        return emu_half_value(lanes[owner].a[reg] >> (16 * (kk & 1)), BF16);
    };
    auto B = [&](int kk, int col) {   // b0 (2t.., g), b1 (2t+8.., g)
        const int owner = 4 * col + (kk % 8) / 2, reg = kk >= 8 ? 1 : 0;
        return emu_half_value(lanes[owner].b[reg] >> (16 * (kk & 1)), BF16);
    };
    const int g = (int)lane >> 2, t = (int)lane & 3;
    float out[4];
    for (int e = 0; e < 4; e++) {   // c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1)
        const int row = g + (e < 2 ? 0 : 8), col = 2 * t + (e & 1);
        float sum = 0.0f;
        for (int kk = 0; kk < 16; kk++) sum += A(row, kk) * B(kk, col);
        out[e] = d[e] + sum;
    }
    emu::sync_warp(0xffffffffu);   // every lane has read the fragments before any lane writes new ones
    for (int e = 0; e < 4; e++) d[e] = out[e];
}
