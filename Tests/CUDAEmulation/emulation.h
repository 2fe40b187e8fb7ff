// The emulated CUDA device's internals, shared by its parts:
//   fibers.cpp    runs a grid: every CUDA thread a fiber, blocks one at a time, thread and block
//                 order shuffled per launch; barriers, warp shuffles and exited lanes checked
//   device.cpp    device memory (its own address range, guard pages, inaccessible to the host
//                 outside device work), streams that run their work only when the host waits,
//                 fault reports naming the kernel, counters
//   driver.cpp    the driver API (cu*) over those
//   nvrtc.cpp     NVRTC: "compiling" hands back a token for the CPU-compiled kernels of that file
//   cublaslt.cpp  cuBLASLt: descriptors, layouts, preferences, heuristics and a reference matmul
//   kernels_*.cpp each Sources/Kernels/cuda/*.cu compiled as C++ against kernel_api.h, its
//                 kernels registered with the parameter lists their signatures declare
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "retort_emulated_cuda.h"

namespace emu {

// ---------------------------------------------------------------- errors
/// Prints "emulated CUDA: <message>" to stderr.
void report(const char *format, ...) __attribute__((format(printf, 1, 2)));
/// Reports and ends the process (a device fault: the program could not go on on a GPU either).
[[noreturn]] void fatal(const char *format, ...) __attribute__((format(printf, 1, 2)));

// ---------------------------------------------------------------- kernels
struct Dim3 { unsigned x = 1, y = 1, z = 1; };

/// A parameter of a kernel: a pointer (checked to be device memory or null) or a scalar.
struct Parameter {
    bool pointer;
    size_t bytes;
    size_t element_bytes;   // pointers: the size of what they point at (their alignment on a GPU)
};

template <class A> constexpr size_t element_bytes() {
    if constexpr (std::is_pointer_v<A> && !std::is_void_v<std::remove_pointer_t<A>>) return sizeof(std::remove_pointer_t<A>);
    else return 1;
}

/// A kernel compiled into the emulator, callable with its arguments packed in a blob.
struct Kernel {
    const char *file, *name;
    int min_arch;                        // absent from modules below this compute capability
    /// Its threads never meet (no barrier, shuffle or shared memory): they may run one after
    /// another as plain calls. A collective operation in such a kernel is reported.
    bool independent_threads;
    std::vector<Parameter> parameters;
    size_t blob_bytes;
    /// Unpacks `params` (the driver's void** list) into `blob` by the parameter types.
    void (*pack)(void *blob, void *const *params);
    /// Runs the kernel body for the current thread with the blob's arguments.
    void (*invoke)(const void *blob);
};

std::vector<Kernel> &kernels();

template <class... A, size_t... I>
void pack_tuple(std::tuple<A...> &t, void *const *params, std::index_sequence<I...>) {
    ((std::memcpy(&std::get<I>(t), params[I], sizeof(A))), ...);
}

template <auto Fn, class... A> struct Entry {
    using Blob = std::tuple<std::decay_t<A>...>;
    static void pack(void *blob, void *const *params) {
        auto *t = new (blob) Blob();
        pack_tuple(*t, params, std::index_sequence_for<A...>());
    }
    static void invoke(const void *blob) { std::apply(Fn, *static_cast<const Blob *>(blob)); }
};

template <auto Fn, class... A> Kernel make_kernel(const char *file, const char *name, int min_arch, bool independent,
                                                  void (*)(A...)) {
    using E = Entry<Fn, A...>;
    return Kernel{file, name, min_arch, independent, {Parameter{std::is_pointer_v<A>, sizeof(A), element_bytes<A>()}...}, sizeof(typename E::Blob),
                  E::pack, E::invoke};
}

struct Registrar {
    Registrar(Kernel k) { kernels().push_back(std::move(k)); }
};

/// Registers kernel NS::NAME of FILE (e.g. "adamw.cu"), present from compute capability MIN_ARCH;
/// EMU_INDEPENDENT_KERNEL for one whose threads never meet (element-wise, a column per thread).
#define EMU_KERNEL(FILE, NS, NAME, MIN_ARCH) \
    static emu::Registrar registrar_##NAME(emu::make_kernel<&NS::NAME>(FILE, #NAME, MIN_ARCH, false, &NS::NAME));
#define EMU_INDEPENDENT_KERNEL(FILE, NS, NAME) \
    static emu::Registrar registrar_##NAME(emu::make_kernel<&NS::NAME>(FILE, #NAME, 0, true, &NS::NAME));

// ---------------------------------------------------------------- running a grid (fibers.cpp)
/// Runs `kernel` over the grid with the packed arguments: blocks one after another, each
/// block's threads as fibers in an order shuffled by `seed`.
void run_grid(const Kernel &kernel, Dim3 grid, Dim3 block, const void *blob, uint64_t seed);

/// The current thread's coordinates (inside a kernel), kept by the scheduler.
struct Coordinates { Dim3 thread, block, block_dim, grid_dim; };
extern Coordinates coordinates;
inline Dim3 thread_index() { return coordinates.thread; }
inline Dim3 block_index() { return coordinates.block; }
inline Dim3 block_dim() { return coordinates.block_dim; }
inline Dim3 grid_dim() { return coordinates.grid_dim; }
/// A device access through `pointer` as a `bytes`-wide type: a fault (named) unless aligned.
void check_aligned(const void *pointer, unsigned bytes, const char *expression);
/// __syncthreads, __syncwarp and the warp shuffles.
void sync_block();
void sync_warp(unsigned mask);
uint64_t shuffle(uint64_t bits, int source_lane, unsigned mask);
unsigned lane_id();
/// The registers each lane hands to mma.sync (kernel_api.h's tc_mma), 32 per warp.
struct Fragments { unsigned a[4], b[2]; };
Fragments *warp_fragments();

// ---------------------------------------------------------------- device memory (device.cpp)
/// The live allocation holding [address, address + bytes), or null.
struct Allocation {
    uint64_t address;            // what cuMemAlloc returned
    size_t bytes;                // what was asked for
    uint64_t pages, page_bytes;  // the pages mapped for it (a guard page follows)
    uint64_t serial;
};
const Allocation *find_allocation(uint64_t address, size_t bytes = 1);
bool in_arena(uint64_t address);
uint64_t allocate(size_t bytes);   // 0 when out of memory
bool release(uint64_t address);
size_t arena_bytes();
size_t used_bytes();

/// Device work: queued on a stream, run (with device memory accessible) when the host waits.
void enqueue(void *stream, std::function<void()> work, const char *what);
void synchronize(void *stream);   // runs that stream's queue
void synchronize_all();
void *make_stream();
void destroy_stream(void *stream);

/// What the device is running, for fault reports.
void set_activity(const char *what);
/// " (block (x,y,z), thread (x,y,z))" of the thread running a kernel, or "".
void describe_running_thread(char *buffer, size_t size);

rt_emulated_cuda_counters &counters();

// ---------------------------------------------------------------- the emulated GPU
struct DeviceSpec {
    int arch = 80;            // compute capability major·10 + minor
    int driver = 13000;       // the driver version reported
    uint64_t seed = 1;        // thread/block order
    size_t memory = size_t(4096) << 20;
    /// The least-aligned bias the heuristic finds a BIAS-epilogue algorithm for (bytes).
    unsigned bias_epilogue_align = 4;
    /// TF32 operands cut to their 10-bit mantissa, as an H200's errors show the tensor cores do
    /// (RETORT_EMULATED_TF32=nearest rounds them instead).
    bool tf32_truncates = true;
    /// A broken stack, to test what Retort does with one: matmuls that compute a wrong result
    /// (every element of D off by one), launches that fail (CUDA_ERROR_LAUNCH_FAILED).
    bool wrong_matmuls = false, failing_launches = false;
};
const DeviceSpec &device_spec();

/// The embedded kernel sources (sources.c), to check NVRTC is given exactly them.
extern "C" int rt_emulated_cuda_source_count(void);
extern "C" const char *rt_emulated_cuda_source_name(int index);
extern "C" const char *rt_emulated_cuda_source_text(int index);

}   // namespace emu
