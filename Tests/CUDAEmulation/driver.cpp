// The CUDA driver API, as much of it as CBackend resolves (Sources/CBackend/cuda.c), over the
// emulated device. Argument checks a GPU's driver makes (or whose absence would corrupt memory on
// one) return its error codes and say why on stderr: launch dimensions and shared memory beyond
// the hardware's limits, an argument list that does not match the kernel's parameters, a pointer
// parameter that is not device memory or not aligned for its type, copies outside an allocation,
// calls without a current context.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "emulation.h"

namespace {

using CUresult = int;
enum : int {
    SUCCESS = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_INITIALIZED = 3, INVALID_DEVICE = 101, INVALID_IMAGE = 200,
    INVALID_CONTEXT = 201, NO_BINARY_FOR_GPU = 209, INVALID_HANDLE = 400, NOT_FOUND = 500, LAUNCH_OUT_OF_RESOURCES = 701,
    LAUNCH_FAILED = 719,
};

bool initialised = false;
thread_local void *current_context = nullptr;
char primary_context;   // its address is the context handle

struct Module {
    std::string file;
    int arch;
};

struct Function {
    const emu::Kernel *kernel;
    int max_dynamic_shared = 0;
};

const int static_shared_limit = 48 << 10;

int shared_optin_limit() {
    const int arch = emu::device_spec().arch;
    return arch >= 90 ? 227 << 10 : arch >= 80 ? 163 << 10 : arch >= 75 ? 64 << 10 : 48 << 10;
}

/// A context must be current on the calling thread for everything but device queries.
bool has_context() {
    if (current_context) return true;
    emu::report("a driver call without a current context (cuCtxSetCurrent first)");
    return false;
}

/// [address, address + bytes) inside one live allocation?
bool device_range(uint64_t address, size_t bytes, const char *what) {
    if (bytes == 0) return true;
    if (emu::find_allocation(address, bytes)) return true;
    emu::report("%s: 0x%llx…+%zu is not inside one device allocation", what, (unsigned long long)address, bytes);
    return false;
}

void print_counters() {
    const rt_emulated_cuda_counters &c = emu::counters();
    fprintf(stderr, "emulated CUDA counters: %llu launches, %llu matmuls, %llu copies to the device, %llu to the host, "
                    "%llu on the device, %llu memsets, %llu synchronizations, %llu allocations, %llu cuBLASLt refusals\n",
            (unsigned long long)c.launches, (unsigned long long)c.matmuls, (unsigned long long)c.copies_to_device,
            (unsigned long long)c.copies_to_host, (unsigned long long)c.copies_on_device, (unsigned long long)c.memsets,
            (unsigned long long)c.synchronizations, (unsigned long long)c.allocations, (unsigned long long)c.refusals);
}

}   // namespace

extern "C" {

CUresult cuInit(unsigned flags) {
    if (flags != 0) return INVALID_VALUE;
    if (!initialised && getenv("RETORT_EMULATED_COUNTERS")) atexit(print_counters);
    initialised = true;
    return SUCCESS;
}

CUresult cuDriverGetVersion(int *version) {
    if (!version) return INVALID_VALUE;
    *version = emu::device_spec().driver;
    return SUCCESS;
}

// RETORT_EMULATED_DEVICES=N: the driver reports N devices, each this process's one emulated
// device (for data-parallel ranks, each a process of its own, that take cuda:local_rank).
static int device_count() {
    static const int count = [] {
        const char *text = getenv("RETORT_EMULATED_DEVICES");
        return text && atoi(text) > 0 ? atoi(text) : 1;
    }();
    return count;
}

static bool valid_device(int device) { return device >= 0 && device < device_count(); }

CUresult cuDeviceGetCount(int *count) {
    if (!initialised) return NOT_INITIALIZED;
    *count = device_count();
    return SUCCESS;
}

CUresult cuDeviceGet(int *device, int ordinal) {
    if (!initialised) return NOT_INITIALIZED;
    if (!valid_device(ordinal)) return INVALID_DEVICE;
    *device = ordinal;
    return SUCCESS;
}

CUresult cuDeviceGetName(char *name, int length, int device) {
    if (!valid_device(device)) return INVALID_DEVICE;
    snprintf(name, size_t(length), "Retort emulated CUDA device (sm_%d)", emu::device_spec().arch);
    return SUCCESS;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, int device) {
    if (!valid_device(device)) return INVALID_DEVICE;
    *bytes = emu::arena_bytes();
    return SUCCESS;
}

CUresult cuDeviceGetAttribute(int *value, int attribute, int device) {
    if (!valid_device(device)) return INVALID_DEVICE;
    const int arch = emu::device_spec().arch;
    switch (attribute) {
    case 8: *value = static_shared_limit; break;                 // MAX_SHARED_MEMORY_PER_BLOCK
    case 16: *value = 4; break;                                  // MULTIPROCESSOR_COUNT
    case 36: *value = 1000000; break;                            // MEMORY_CLOCK_RATE (kHz)
    case 37: *value = 256; break;                                // GLOBAL_MEMORY_BUS_WIDTH (bits)
    case 75: *value = arch / 10; break;                          // COMPUTE_CAPABILITY_MAJOR
    case 76: *value = arch % 10; break;                          // COMPUTE_CAPABILITY_MINOR
    case 97: *value = shared_optin_limit(); break;               // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
    default: return INVALID_VALUE;
    }
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(void **context, int device) {
    if (!initialised) return NOT_INITIALIZED;
    if (!valid_device(device)) return INVALID_DEVICE;
    *context = &primary_context;
    return SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(int device) { return valid_device(device) ? SUCCESS : INVALID_DEVICE; }

CUresult cuCtxSetCurrent(void *context) {
    if (context && context != &primary_context) return INVALID_CONTEXT;
    current_context = context;
    return SUCCESS;
}

CUresult cuCtxGetCurrent(void **context) {
    *context = current_context;
    return SUCCESS;
}

CUresult cuMemAlloc_v2(unsigned long long *pointer, size_t bytes) {
    if (!has_context()) return INVALID_CONTEXT;
    if (bytes == 0) return INVALID_VALUE;
    const uint64_t address = emu::allocate(bytes);
    if (!address) return OUT_OF_MEMORY;
    *pointer = address;
    return SUCCESS;
}

CUresult cuMemFree_v2(unsigned long long pointer) {
    if (!has_context()) return INVALID_CONTEXT;
    emu::synchronize_all();   // as the real one: work queued on the memory finishes first
    if (!emu::release(pointer)) {
        emu::report("cuMemFree of 0x%llx, which is not the start of a live allocation", pointer);
        return INVALID_VALUE;
    }
    return SUCCESS;
}

CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes) {
    if (!has_context()) return INVALID_CONTEXT;
    *total_bytes = emu::arena_bytes();
    *free_bytes = emu::arena_bytes() - emu::used_bytes();
    return SUCCESS;
}

CUresult cuStreamCreate(void **stream, unsigned flags) {
    if (!has_context()) return INVALID_CONTEXT;
    (void)flags;
    *stream = emu::make_stream();
    return SUCCESS;
}

CUresult cuStreamDestroy_v2(void *stream) {
    if (!stream) return INVALID_HANDLE;
    emu::destroy_stream(stream);
    return SUCCESS;
}

CUresult cuStreamSynchronize(void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    emu::counters().synchronizations++;
    emu::synchronize(stream);
    return SUCCESS;
}

// Queued work runs when the host waits, so a query is a wait (the stream is then done).
CUresult cuStreamQuery(void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    emu::counters().synchronizations++;
    emu::synchronize(stream);
    return SUCCESS;
}

// Events: the emulated device runs a stream's queue when the host waits, so a stream told to
// wait for an event runs the recorded stream's queue first, there and then (as a GPU may have
// finished it by then; later work on it may run early, which no ordering forbids).
struct Event {
    void *stream = nullptr;
    bool recorded = false;
};

CUresult cuEventCreate(void **event, unsigned flags) {
    if (!has_context()) return INVALID_CONTEXT;
    (void)flags;
    *event = new Event();
    return SUCCESS;
}

CUresult cuEventRecord(void *event, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!event) return INVALID_HANDLE;
    *static_cast<Event *>(event) = Event{stream, true};
    return SUCCESS;
}

CUresult cuStreamWaitEvent(void *stream, void *event, unsigned flags) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!event || flags != 0) return INVALID_VALUE;
    (void)stream;
    const Event &e = *static_cast<Event *>(event);
    if (e.recorded) emu::synchronize(e.stream);
    return SUCCESS;
}

CUresult cuEventDestroy_v2(void *event) {
    if (!event) return INVALID_HANDLE;
    delete static_cast<Event *>(event);
    return SUCCESS;
}

// ---------------------------------------------------------------- copies and fills

CUresult cuMemcpyHtoDAsync_v2(unsigned long long dst, const void *src, size_t bytes, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!device_range(dst, bytes, "cuMemcpyHtoDAsync destination")) return INVALID_VALUE;
    // From pageable host memory the driver stages the bytes before returning: taken now.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char *>(src), static_cast<const char *>(src) + bytes);
    emu::counters().copies_to_device++;
    emu::enqueue(stream, [dst, staged] { std::memcpy(reinterpret_cast<void *>(dst), staged->data(), staged->size()); }, "a host-to-device copy");
    return SUCCESS;
}

CUresult cuMemcpyDtoHAsync_v2(void *dst, unsigned long long src, size_t bytes, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!device_range(src, bytes, "cuMemcpyDtoHAsync source")) return INVALID_VALUE;
    emu::counters().copies_to_host++;
    // Written when the stream runs: the host must wait (cuStreamSynchronize) before reading.
    emu::enqueue(stream, [dst, src, bytes] { std::memcpy(dst, reinterpret_cast<const void *>(src), bytes); }, "a device-to-host copy");
    return SUCCESS;
}

CUresult cuMemcpyDtoDAsync_v2(unsigned long long dst, unsigned long long src, size_t bytes, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!device_range(dst, bytes, "cuMemcpyDtoDAsync destination") || !device_range(src, bytes, "cuMemcpyDtoDAsync source"))
        return INVALID_VALUE;
    emu::counters().copies_on_device++;
    emu::enqueue(stream, [dst, src, bytes] { std::memmove(reinterpret_cast<void *>(dst), reinterpret_cast<const void *>(src), bytes); },
                 "a device-to-device copy");
    return SUCCESS;
}

// The blocking copies go through the legacy default stream, which first waits for the work
// queued on every blocking stream (streams made with flags 0, as Retort's): drained before the
// copy, so an upload lands after earlier kernels and a download sees their results.
CUresult cuMemcpyHtoD_v2(unsigned long long dst, const void *src, size_t bytes) {
    if (has_context()) emu::synchronize_all();
    const CUresult r = cuMemcpyHtoDAsync_v2(dst, src, bytes, nullptr);
    if (r == SUCCESS) { emu::counters().synchronizations++; emu::synchronize_all(); }
    return r;
}

CUresult cuMemcpyDtoH_v2(void *dst, unsigned long long src, size_t bytes) {
    if (has_context()) emu::synchronize_all();
    const CUresult r = cuMemcpyDtoHAsync_v2(dst, src, bytes, nullptr);
    if (r == SUCCESS) { emu::counters().synchronizations++; emu::synchronize_all(); }
    return r;
}

CUresult cuMemsetD8Async(unsigned long long dst, unsigned char value, size_t count, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!device_range(dst, count, "cuMemsetD8Async")) return INVALID_VALUE;
    emu::counters().memsets++;
    emu::enqueue(stream, [dst, value, count] { std::memset(reinterpret_cast<void *>(dst), value, count); }, "a memset");
    return SUCCESS;
}

CUresult cuMemsetD32Async(unsigned long long dst, unsigned value, size_t count, void *stream) {
    if (!has_context()) return INVALID_CONTEXT;
    if (dst % 4 != 0) { emu::report("cuMemsetD32Async: 0x%llx is not 4-byte aligned", dst); return INVALID_VALUE; }
    if (!device_range(dst, count * 4, "cuMemsetD32Async")) return INVALID_VALUE;
    emu::counters().memsets++;
    emu::enqueue(stream, [dst, value, count] {
        unsigned *p = reinterpret_cast<unsigned *>(dst);
        for (size_t i = 0; i < count; i++) p[i] = value;
    }, "a memset");
    return SUCCESS;
}

// ---------------------------------------------------------------- modules and launches

CUresult cuModuleLoadData(void **module, const void *image) {
    if (!has_context()) return INVALID_CONTEXT;
    // The emulated NVRTC's images: "RETORT-EMULATED-CUBIN\n<file>\n<arch>\n" (or -PTX). A cubin
    // runs on its own major architecture at the same or a higher minor (sm_86 code on sm_89, not
    // on sm_90); PTX is compiled by the driver for any device of its capability or newer.
    const char *text = static_cast<const char *>(image);
    const char cubin[] = "RETORT-EMULATED-CUBIN\n", ptx[] = "RETORT-EMULATED-PTX\n";
    const bool is_ptx = strncmp(text, ptx, sizeof ptx - 1) == 0;
    if (!is_ptx && strncmp(text, cubin, sizeof cubin - 1) != 0) return INVALID_IMAGE;
    const char *file = text + (is_ptx ? sizeof ptx : sizeof cubin) - 1, *newline = strchr(file, '\n');
    if (!newline) return INVALID_IMAGE;
    const int arch = atoi(newline + 1), device = emu::device_spec().arch;
    if (is_ptx ? arch > device : arch / 10 != device / 10 || arch > device) {
        emu::report("cuModuleLoadData: %s for %s_%d on an sm_%d device", is_ptx ? "PTX" : "a cubin", is_ptx ? "compute" : "sm",
                    arch, device);
        return NO_BINARY_FOR_GPU;
    }
    *module = new Module{std::string(file, newline), arch};
    return SUCCESS;
}

CUresult cuModuleUnload(void *module) {
    if (!module) return INVALID_HANDLE;
    emu::synchronize_all();
    delete static_cast<Module *>(module);
    return SUCCESS;
}

CUresult cuModuleGetFunction(void **function, void *module, const char *name) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!module) return INVALID_HANDLE;
    const Module &m = *static_cast<Module *>(module);
    for (const emu::Kernel &k : emu::kernels()) {
        if (m.file == k.file && strcmp(name, k.name) == 0 && k.min_arch <= m.arch) {
            *function = new Function{&k};
            return SUCCESS;
        }
    }
    return NOT_FOUND;
}

CUresult cuFuncSetAttribute(void *function, int attribute, int value) {
    if (!function) return INVALID_HANDLE;
    if (attribute != 8) return INVALID_VALUE;   // MAX_DYNAMIC_SHARED_SIZE_BYTES
    if (value < 0 || value > shared_optin_limit()) return INVALID_VALUE;
    static_cast<Function *>(function)->max_dynamic_shared = value;
    return SUCCESS;
}

CUresult cuLaunchKernel(void *function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, void *stream, void **params, void **extra) {
    if (!has_context()) return INVALID_CONTEXT;
    if (!function) return INVALID_HANDLE;
    const Function &f = *static_cast<Function *>(function);
    const emu::Kernel &k = *f.kernel;
    if (emu::device_spec().failing_launches) return LAUNCH_FAILED;   // RETORT_EMULATED_BROKEN=launch
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gy > 65535 || gz > 65535 || gx > 0x7fffffffu) {
        emu::report("%s: grid (%u,%u,%u) block (%u,%u,%u): empty, or y/z beyond 65535", k.name, gx, gy, gz, bx, by, bz);
        return INVALID_VALUE;
    }
    if (bx > 1024 || by > 1024 || bz > 64 || uint64_t(bx) * by * bz > 1024) {
        emu::report("%s: a block of (%u,%u,%u) threads; at most 1024 (x, y ≤ 1024, z ≤ 64)", k.name, bx, by, bz);
        return INVALID_VALUE;
    }
    if (int(shared_bytes) > std::max(f.max_dynamic_shared, static_shared_limit)) {
        emu::report("%s: %u bytes of dynamic shared memory without the attribute that allows more than %d", k.name,
                    shared_bytes, static_shared_limit);
        return INVALID_VALUE;
    }
    if (extra) { emu::report("%s: kernel arguments through `extra` are not emulated", k.name); return INVALID_VALUE; }
    const size_t n = k.parameters.size();
    for (size_t i = 0; i < n; i++) {
        if (!params || !params[i]) {
            emu::report("%s: %zu arguments for %zu parameters", k.name, i, n);
            return INVALID_VALUE;
        }
    }
    if (params[n]) {   // CBackend's launches end their list with a null
        emu::report("%s: more arguments than its %zu parameters", k.name, n);
        return INVALID_VALUE;
    }
    for (size_t i = 0; i < n; i++) {
        const emu::Parameter &p = k.parameters[i];
        if (!p.pointer) continue;
        uint64_t address;
        std::memcpy(&address, params[i], 8);
        if (address == 0) continue;
        if (!emu::find_allocation(address)) {
            emu::report("%s: argument %zu (a pointer) is 0x%llx, which is not device memory%s", k.name, i,
                        (unsigned long long)address, emu::in_arena(address) ? " (freed, or past an allocation)" : " (a host pointer, or not a pointer)");
            return INVALID_VALUE;
        }
        if (p.element_bytes > 1 && address % p.element_bytes != 0) {
            emu::report("%s: argument %zu (0x%llx) is not aligned to its %zu-byte elements", k.name, i,
                        (unsigned long long)address, p.element_bytes);
            return INVALID_VALUE;
        }
    }
    auto blob = std::shared_ptr<char[]>(new char[k.blob_bytes + 16]);   // aligned by hand below
    char *aligned = reinterpret_cast<char *>((reinterpret_cast<uintptr_t>(blob.get()) + 15) & ~uintptr_t(15));
    k.pack(aligned, params);
    const uint64_t seed = emu::device_spec().seed * 1000003 + emu::counters().launches;
    emu::counters().launches++;
    const emu::Dim3 grid{gx, gy, gz}, block{bx, by, bz};
    const emu::Kernel *kernel = &k;
    auto activity = std::make_shared<std::string>(std::string("kernel ") + k.name + " (" + k.file + ")");
    emu::enqueue(stream, [kernel, grid, block, blob, aligned, seed, activity] {
        emu::set_activity(activity->c_str());
        emu::run_grid(*kernel, grid, block, aligned, seed);
    }, activity->c_str());
    return SUCCESS;
}

CUresult cuGetErrorString(CUresult error, const char **message) {
    switch (error) {
    case SUCCESS: *message = "no error"; break;
    case INVALID_VALUE: *message = "invalid argument"; break;
    case OUT_OF_MEMORY: *message = "out of memory"; break;
    case NOT_INITIALIZED: *message = "initialization error"; break;
    case INVALID_DEVICE: *message = "invalid device ordinal"; break;
    case INVALID_IMAGE: *message = "device kernel image is invalid"; break;
    case INVALID_CONTEXT: *message = "invalid device context"; break;
    case NO_BINARY_FOR_GPU: *message = "no kernel image is available for execution on the device"; break;
    case INVALID_HANDLE: *message = "invalid resource handle"; break;
    case NOT_FOUND: *message = "named symbol not found"; break;
    case LAUNCH_OUT_OF_RESOURCES: *message = "too many resources requested for launch"; break;
    case LAUNCH_FAILED: *message = "unspecified launch failure"; break;
    default: *message = nullptr; return INVALID_VALUE;
    }
    return SUCCESS;
}

}   // extern "C"
