// An emulated CUDA device for tests: libcuda's driver API, NVRTC and cuBLASLt, implemented on the
// CPU, so that the unmodified CUDABackend runs every op and model on machines without a GPU.
// Built as libRetortEmulatedCUDA.so; a test links it into a folder as libcuda.so.1,
// libnvrtc.so.13 and libcublasLt.so.13 and points LD_LIBRARY_PATH there (the driver is found
// only by the system loader; NVRTC and cuBLASLt are searched there too).
// What it proves and what it cannot: docs/BACKEND.md, "The emulated CUDA device".
//
// Environment (all optional):
//   RETORT_EMULATED_ARCH      compute capability of the device, e.g. 80 (default), 75, 90
//   RETORT_EMULATED_DRIVER    the driver version it reports, e.g. 12040 (default 13000)
//   RETORT_EMULATED_SEED      seed of the per-launch thread and block order (default 1)
//   RETORT_EMULATED_MEMORY    device memory in MiB (default 4096)
//   RETORT_EMULATED_BIAS_ALIGN no BIAS-epilogue algorithm for a bias less aligned (bytes; default 4)
//   RETORT_EMULATED_COUNTERS  print the counters to stderr at exit when set
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Work the host asked of the device since the process started (or the last reset).
typedef struct {
    uint64_t launches;            // cuLaunchKernel
    uint64_t matmuls;             // cublasLtMatmul
    uint64_t copies_to_device;    // cuMemcpyHtoD(Async)
    uint64_t copies_to_host;      // cuMemcpyDtoH(Async)
    uint64_t copies_on_device;    // cuMemcpyDtoDAsync
    uint64_t memsets;             // cuMemsetD8/D32Async
    uint64_t synchronizations;    // host waits: cuStreamSynchronize and blocking copies
    uint64_t allocations;         // cuMemAlloc
    uint64_t refusals;            // cuBLASLt NOT_SUPPORTED for an alignment (heuristic or matmul)
} rt_emulated_cuda_counters;

const rt_emulated_cuda_counters *rt_emulated_cuda_counters_get(void);
void rt_emulated_cuda_counters_reset(void);

#ifdef __cplusplus
}
#endif
