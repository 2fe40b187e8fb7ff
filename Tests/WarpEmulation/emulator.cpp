// A CUDA-on-the-CPU shim just large enough for Retort's tensor-core kernels, so their source is
// tested on machines without a GPU. Every thread of a block is a fiber (ucontext) and the
// fibers of one block run cooperatively, one block after another: __syncthreads, __syncwarp,
// warp shuffles and mma.sync are collective operations that yield until the block (or warp) has
// arrived. `__shared__` becomes `static` (one block runs at a time); atomics are plain adds
// (fibers never race). mma.sync.m16n8k16 is emulated from the fragment layout of the PTX ISA
// (as documented in attention_tc.cu): the emulation checks the kernels' indexing, masking,
// online softmax and staging — not the hardware instruction, which only a GPU run checks.
#include "warp_emulation.h"
#include "../CUDAEmulation/tensor_core.h"

#include <ucontext.h>

#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

namespace emu {
struct Dim3 { unsigned x = 1, y = 1, z = 1; };
struct Fiber {
    ucontext_t context;
    unsigned tid = 0;
    bool done = false;
    std::vector<char> stack;
};
struct Barrier { int arrived = 0; unsigned long long generation = 0; };

static ucontext_t scheduler;
static std::vector<Fiber> fibers;
static Fiber *current;
static std::function<void()> body;
static Dim3 block_index, block_dim, grid_dim;
static Barrier block_barrier, warp_barriers[32];
static unsigned long long lane_slots[32][32];
static struct { unsigned a[4], b[2]; } fragments[32][32];
static const size_t stack_bytes = 256 << 10;

static Dim3 thread_index() { Dim3 d; d.x = current->tid; return d; }
static void yield() { swapcontext(&current->context, &scheduler); }

static void wait(Barrier &b, int count) {
    const unsigned long long generation = b.generation;
    if (++b.arrived == count) { b.arrived = 0; b.generation++; return; }
    for (long spins = 0; b.generation == generation; spins++) {
        if (spins > 100000000L) { fprintf(stderr, "warp emulator: a barrier never completed (deadlock)\n"); abort(); }
        yield();
    }
}
static void sync_block() { wait(block_barrier, (int)block_dim.x); }
static void sync_warp() { wait(warp_barriers[current->tid / 32], 32); }

template <class T> static T shuffle(T value, int source) {
    const unsigned warp = current->tid / 32, lane = current->tid % 32;
    memcpy(&lane_slots[warp][lane], &value, sizeof(T));
    sync_warp();
    T out;
    memcpy(&out, &lane_slots[warp][source & 31], sizeof(T));
    sync_warp();
    return out;
}

static void trampoline() {
    body();
    current->done = true;   // returning resumes `scheduler` (uc_link)
}

// Runs grid blocks of `threads` fibers each, one block at a time.
static void launch(int grid, int threads, std::function<void()> kernel) {
    if (threads % 32 != 0 || threads > 1024) { fprintf(stderr, "warp emulator: blocks of whole warps only\n"); abort(); }
    fibers.resize(threads);
    for (auto &f : fibers)
        if (f.stack.size() != stack_bytes) f.stack.resize(stack_bytes);
    block_dim.x = threads;
    grid_dim.x = grid;
    body = std::move(kernel);
    for (int bx = 0; bx < grid; bx++) {
        block_index.x = bx;
        block_barrier = Barrier();
        for (auto &w : warp_barriers) w = Barrier();
        for (int t = 0; t < threads; t++) {
            Fiber &f = fibers[t];
            f.tid = t;
            f.done = false;
            getcontext(&f.context);
            f.context.uc_stack.ss_sp = f.stack.data();
            f.context.uc_stack.ss_size = f.stack.size();
            f.context.uc_link = &scheduler;
            makecontext(&f.context, trampoline, 0);
        }
        for (bool running = true; running;) {
            running = false;
            for (auto &f : fibers) {
                if (f.done) continue;
                running = true;
                current = &f;
                swapcontext(&scheduler, &f.context);
            }
        }
    }
}

}   // namespace emu

// ---- the CUDA names the kernels use
#define RT_CUDA_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define RT_CHECK_ALIGNED(p, bytes) assert(((unsigned long long)(p) & ((bytes) - 1)) == 0)
#define threadIdx (emu::thread_index())
#define blockIdx (emu::block_index)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

static inline void __syncthreads() { emu::sync_block(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu::sync_warp(); }
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int mask) {
    return emu::shuffle(v, (int)(emu::current->tid % 32) ^ mask);
}
template <class T> static inline T __shfl_sync(unsigned, T v, int lane) { return emu::shuffle(v, lane); }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline float __uint_as_float(unsigned x) { float f; memcpy(&f, &x, 4); return f; }
static inline unsigned __float_as_uint(float x) { unsigned u; memcpy(&u, &x, 4); return u; }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline float atomicAdd(float *p, float v) { const float old = *p; *p = old + v; return old; }

// mma.sync.aligned.m16n8k16: d += a·b for the warp (the arithmetic: CUDAEmulation/tensor_core.h).
template <bool BF16> static inline void tc_mma(float d[4], const unsigned a[4], const unsigned b[2]) {
    const unsigned warp = emu::current->tid / 32, lane = emu::current->tid % 32;
    memcpy(emu::fragments[warp][lane].a, a, sizeof(unsigned) * 4);
    memcpy(emu::fragments[warp][lane].b, b, sizeof(unsigned) * 2);
    emu::sync_warp();
    float out[4];
    mma_lane_outputs<BF16>(out, d, emu::fragments[warp], lane);
    emu::sync_warp();   // every lane has read the fragments before any lane writes new ones
    for (int e = 0; e < 4; e++) d[e] = out[e];
}

#include "../../Sources/Kernels/cuda/attention_tc.cu"

// ---- launches, as CUDABackend makes them
static int tc_grid(int B, int T, int NH) { return B * NH * ((T + TC_ROWS - 1) / TC_ROWS); }

extern "C" int rt_emulated_attention_tc_forward(int half, float *out, float *lse, const float *q, const float *k,
                                                const float *v, const int32_t *mask, const float *bias, int B, int T,
                                                int NH, int NKV, int HS, int causal, float scale, float dropout,
                                                uint64_t seed) {
    decltype(&attention_tc_forward_bf16_hs32) kernel;
    if (HS == 32) kernel = half ? attention_tc_forward_f16_hs32 : attention_tc_forward_bf16_hs32;
    else if (HS == 64) kernel = half ? attention_tc_forward_f16_hs64 : attention_tc_forward_bf16_hs64;
    else return -1;
    emu::launch(tc_grid(B, T, NH), 128,
                [=] { kernel(out, lse, q, k, v, mask, bias, B, T, NH, NKV, causal, scale, dropout, (unsigned long long)seed); });
    return 0;
}

extern "C" int rt_emulated_attention_tc_backward(int half, float *dq, float *dk, float *dv, float *dbias, float *D,
                                                 const float *dout, const float *out, const float *lse,
                                                 const float *q, const float *k, const float *v, const int32_t *mask,
                                                 const float *bias, int B, int T, int NH, int NKV, int HS, int causal,
                                                 float scale, float dropout, uint64_t seed) {
    decltype(&attention_tc_backward_query_bf16_hs32) query;
    decltype(&attention_tc_backward_key_bf16_hs32) key;
    if (HS == 32) {
        query = half ? attention_tc_backward_query_f16_hs32 : attention_tc_backward_query_bf16_hs32;
        key = half ? attention_tc_backward_key_f16_hs32 : attention_tc_backward_key_bf16_hs32;
    } else if (HS == 64) {
        query = half ? attention_tc_backward_query_f16_hs64 : attention_tc_backward_query_bf16_hs64;
        key = half ? attention_tc_backward_key_f16_hs64 : attention_tc_backward_key_bf16_hs64;
    } else {
        return -1;
    }
    const unsigned long long s = seed;
    emu::launch(tc_grid(B, T, NH), 128,
                [=] { query(dq, dbias, D, dout, out, lse, q, k, v, mask, bias, B, T, NH, NKV, causal, scale, dropout, s); });
    emu::launch(tc_grid(B, T, NKV), 128,
                [=] { key(dk, dv, dout, lse, D, q, k, v, mask, bias, B, T, NH, NKV, causal, scale, dropout, s); });
    return 0;
}
