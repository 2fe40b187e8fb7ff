// The CUDA dialect the kernels of Sources/Kernels/cuda are written in, for compiling them as
// C++ on the CPU (each kernels_*.cpp includes this, then one .cu inside a namespace).
// `__shared__` variables are function statics: blocks run one at a time, their threads as
// fibers of one OS thread, so atomics are plain read-modify-writes.
#pragma once
#include <cmath>
#include <cstring>

#include "emulation.h"
#include "tensor_core.h"

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

// mma.sync: every lane publishes its fragments, the warp meets, each lane computes its four
// outputs (tensor_core.h), the warp meets again.
template <bool BF16> static inline void tc_mma(float d[4], const unsigned a[4], const unsigned b[2]) {
    emu::Fragments *lanes = emu::warp_fragments();
    const unsigned lane = emu::lane_id();
    std::memcpy(lanes[lane].a, a, sizeof(unsigned) * 4);
    std::memcpy(lanes[lane].b, b, sizeof(unsigned) * 2);
    emu::sync_warp(0xffffffffu);
    float out[4];
    mma_lane_outputs<BF16>(out, d, lanes, lane);
    emu::sync_warp(0xffffffffu);   // every lane has read the fragments before any lane writes new ones
    for (int e = 0; e < 4; e++) d[e] = out[e];
}
