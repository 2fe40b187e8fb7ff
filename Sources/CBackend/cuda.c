// Run-time loaders for the CUDA driver (libcuda.so.1), NVRTC and cuBLASLt, through our own
// minimal declarations in cbackend.h. Each loader runs once; failures become status strings.
// Search order: $RETORT_CUDA_PATH folders, $CUDA_HOME/lib64, $CUDA_PATH/lib64, $LD_LIBRARY_PATH
// folders, pip's nvidia/*/lib folders, /usr/local/cuda/lib64, then the system loader.
#define _GNU_SOURCE
#include "cbackend.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIRS 32

// Builds the folder list described above into `storage`; returns a NULL-terminated array.
static const char **cuda_dirs(char storage[MAX_DIRS][512], const char *dirs[MAX_DIRS + 1]) {
    int n = 0;
    const char *homes[] = { getenv("CUDA_HOME"), getenv("CUDA_PATH") };
    const char *ld = getenv("LD_LIBRARY_PATH");
    const char *explicit_dirs = getenv("RETORT_CUDA_PATH");
    if (explicit_dirs && *explicit_dirs) {
        char *copy = strdup(explicit_dirs), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d && n < MAX_DIRS - 8; d = strtok_r(NULL, ":", &save))
            snprintf(storage[n++], 512, "%s", d);
        free(copy);
    }
    for (int h = 0; h < 2; h++) {
        if (!homes[h] || !*homes[h]) continue;
        snprintf(storage[n++], 512, "%s/lib64", homes[h]);
        snprintf(storage[n++], 512, "%s/lib", homes[h]);
    }
    if (ld && *ld) {
        char *copy = strdup(ld), *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d && n < MAX_DIRS - 3; d = strtok_r(NULL, ":", &save))
            snprintf(storage[n++], 512, "%s", d);
        free(copy);
    }
    snprintf(storage[n++], 512, "%s/lib", rt_executable_dir());
    snprintf(storage[n++], 512, "/usr/local/cuda/lib64");
    snprintf(storage[n++], 512, "/usr/local/cuda/targets/x86_64-linux/lib");
    for (int i = 0; i < n; i++) dirs[i] = storage[i];
    dirs[n] = NULL;
    return dirs;
}

#define LOAD_SYMBOL(handle, table, field, symbol, error, size)                                  \
    do {                                                                                        \
        *(void **)&(table).field = dlsym(handle, symbol);                                       \
        if (!(table).field) { snprintf(error, size, "%s has no symbol %s", path_of_handle, symbol); return 0; } \
    } while (0)

// ---------------------------------------------------------------- driver
static rt_cuda_info cuda;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;

static int resolve_driver(void *handle, const char *path_of_handle) {
    LOAD_SYMBOL(handle, cuda.fn, cuInit, "cuInit", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDriverGetVersion, "cuDriverGetVersion", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDeviceGetCount, "cuDeviceGetCount", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDeviceGet, "cuDeviceGet", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDeviceGetName, "cuDeviceGetName", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDeviceTotalMem, "cuDeviceTotalMem_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDeviceGetAttribute, "cuDeviceGetAttribute", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuCtxSetCurrent, "cuCtxSetCurrent", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemAlloc, "cuMemAlloc_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemFree, "cuMemFree_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemcpyHtoD, "cuMemcpyHtoD_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemcpyDtoH, "cuMemcpyDtoH_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuStreamCreate, "cuStreamCreate", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuStreamSynchronize, "cuStreamSynchronize", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuModuleLoadData, "cuModuleLoadData", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuModuleGetFunction, "cuModuleGetFunction", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuLaunchKernel, "cuLaunchKernel", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuGetErrorString, "cuGetErrorString", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemGetInfo, "cuMemGetInfo_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemsetD8Async, "cuMemsetD8Async", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemsetD32Async, "cuMemsetD32Async", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuStreamDestroy, "cuStreamDestroy_v2", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuModuleUnload, "cuModuleUnload", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuFuncSetAttribute, "cuFuncSetAttribute", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuCtxGetCurrent, "cuCtxGetCurrent", cuda.error, sizeof cuda.error);
    return 1;
}

static void load_driver(void) {
    memset(&cuda, 0, sizeof cuda);
    // The driver belongs to the system (it must match the kernel module): only the system loader
    // and WSL's folder, never a toolkit's stubs/ folder.
    const char *names[] = { "libcuda.so.1", NULL };
    const char *dirs[] = { "/usr/lib/wsl/lib", NULL };
    void *handle = rt_dlopen_search(names, dirs, 0, cuda.path, sizeof cuda.path, cuda.error, sizeof cuda.error);
    if (!handle) {
        snprintf(cuda.error, sizeof cuda.error, "libcuda.so.1 not found (no NVIDIA driver)");
        return;
    }
    if (!resolve_driver(handle, cuda.path)) return;
    cuda.loaded = 1;
    rt_CUresult r = cuda.fn.cuInit(0);
    if (r != 0) {
        const char *msg = NULL;
        cuda.fn.cuGetErrorString(r, &msg);
        snprintf(cuda.error, sizeof cuda.error, "cuInit failed: %s (error %d)", msg ? msg : "unknown", r);
        return;
    }
    cuda.fn.cuDriverGetVersion(&cuda.driver_version);
    cuda.fn.cuDeviceGetCount(&cuda.device_count);
    if (cuda.device_count < 1) {
        snprintf(cuda.error, sizeof cuda.error, "the driver reports no CUDA device");
        return;
    }
    cuda.usable = 1;
}

const rt_cuda_info *rt_cuda_load(void) {
    pthread_once(&cuda_once, load_driver);
    return &cuda;
}

int rt_cuda_device_info(int ordinal, char *name, size_t name_size, size_t *total_bytes,
                        int *cc_major, int *cc_minor, int *sm_count) {
    const rt_cuda_info *c = rt_cuda_load();
    if (!c->usable || ordinal < 0 || ordinal >= c->device_count) return 1;
    rt_CUdevice device;
    if (c->fn.cuDeviceGet(&device, ordinal)) return 1;
    if (c->fn.cuDeviceGetName(name, (int)name_size, device)) return 1;
    if (c->fn.cuDeviceTotalMem(total_bytes, device)) return 1;
    if (c->fn.cuDeviceGetAttribute(cc_major, RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)) return 1;
    if (c->fn.cuDeviceGetAttribute(cc_minor, RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)) return 1;
    if (c->fn.cuDeviceGetAttribute(sm_count, RT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device)) return 1;
    return 0;
}

int rt_cuda_device_attribute(int ordinal, int attribute) {
    const rt_cuda_info *c = rt_cuda_load();
    rt_CUdevice device;
    int value = 0;
    if (!c->usable || c->fn.cuDeviceGet(&device, ordinal) || c->fn.cuDeviceGetAttribute(&value, attribute, device)) return 0;
    return value;
}

// ---------------------------------------------------------------- NVRTC
static rt_nvrtc_info nvrtc;
static pthread_once_t nvrtc_once = PTHREAD_ONCE_INIT;

static int resolve_nvrtc(void *handle, const char *path_of_handle) {
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcVersion, "nvrtcVersion", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcCreateProgram, "nvrtcCreateProgram", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcCompileProgram, "nvrtcCompileProgram", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcGetProgramLogSize, "nvrtcGetProgramLogSize", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcGetProgramLog, "nvrtcGetProgramLog", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcGetCUBINSize, "nvrtcGetCUBINSize", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcGetCUBIN, "nvrtcGetCUBIN", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcDestroyProgram, "nvrtcDestroyProgram", nvrtc.error, sizeof nvrtc.error);
    LOAD_SYMBOL(handle, nvrtc.fn, nvrtcGetErrorString, "nvrtcGetErrorString", nvrtc.error, sizeof nvrtc.error);
    return 1;
}

static void load_nvrtc(void) {
    memset(&nvrtc, 0, sizeof nvrtc);
    char storage[MAX_DIRS][512];
    const char *dirs[MAX_DIRS + 1];
    const char *names[] = { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", NULL };
    void *handle = rt_dlopen_search(names, cuda_dirs(storage, dirs), 1, nvrtc.path, sizeof nvrtc.path,
                                    nvrtc.error, sizeof nvrtc.error);
    if (!handle) {
        snprintf(nvrtc.error, sizeof nvrtc.error, "libnvrtc not found (pip install nvidia-cuda-nvrtc, or set CUDA_HOME)");
        return;
    }
    if (!resolve_nvrtc(handle, nvrtc.path)) return;
    nvrtc.fn.nvrtcVersion(&nvrtc.major, &nvrtc.minor);
    nvrtc.loaded = 1;
}

const rt_nvrtc_info *rt_nvrtc_load(void) {
    pthread_once(&nvrtc_once, load_nvrtc);
    return &nvrtc;
}

static char *copy_string(const char *text) {
    return strdup(text ? text : "");
}

int rt_nvrtc_compile(const char *source, const char *name, int arch, int num_headers, const char *const *headers,
                     const char *const *header_names, const char *const *extra_options, int num_extra_options,
                     char **cubin, size_t *cubin_size, char **log) {
    *cubin = NULL;
    *cubin_size = 0;
    *log = NULL;
    const rt_nvrtc_info *n = rt_nvrtc_load();
    if (!n->loaded) { *log = copy_string(n->error); return 1; }
    rt_nvrtcProgram prog = NULL;
    rt_nvrtcResult r = n->fn.nvrtcCreateProgram(&prog, source, name, num_headers, headers, header_names);
    if (r) { *log = copy_string(n->fn.nvrtcGetErrorString(r)); return 1; }
    char arch_option[64];
    snprintf(arch_option, sizeof arch_option, "--gpu-architecture=sm_%d", arch);
    const char *options[32];
    int count = 0;
    options[count++] = arch_option;
    options[count++] = "--std=c++17";
    for (int i = 0; i < num_extra_options && count < 32; i++) options[count++] = extra_options[i];
    r = n->fn.nvrtcCompileProgram(prog, count, options);
    size_t log_size = 0;
    n->fn.nvrtcGetProgramLogSize(prog, &log_size);
    if (log_size > 1) {
        *log = malloc(log_size + 1);
        n->fn.nvrtcGetProgramLog(prog, *log);
        (*log)[log_size] = 0;
    }
    if (r) {
        if (!*log) *log = copy_string(n->fn.nvrtcGetErrorString(r));
        n->fn.nvrtcDestroyProgram(&prog);
        return 1;
    }
    n->fn.nvrtcGetCUBINSize(prog, cubin_size);
    *cubin = malloc(*cubin_size ? *cubin_size : 1);
    n->fn.nvrtcGetCUBIN(prog, *cubin);
    n->fn.nvrtcDestroyProgram(&prog);
    return 0;
}

// ---------------------------------------------------------------- cuBLASLt
static rt_cublaslt_info lt;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;

static int resolve_lt(void *handle, const char *path_of_handle) {
    LOAD_SYMBOL(handle, lt.fn, cublasLtGetVersion, "cublasLtGetVersion", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtCreate, "cublasLtCreate", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtDestroy, "cublasLtDestroy", lt.error, sizeof lt.error);
    *(void **)&lt.fn.cublasLtGetStatusString = dlsym(handle, "cublasLtGetStatusString");   // optional (11.4+)
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulDescCreate, "cublasLtMatmulDescCreate", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulDescDestroy, "cublasLtMatmulDescDestroy", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulDescSetAttribute, "cublasLtMatmulDescSetAttribute", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatrixLayoutCreate, "cublasLtMatrixLayoutCreate", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatrixLayoutDestroy, "cublasLtMatrixLayoutDestroy", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatrixLayoutSetAttribute, "cublasLtMatrixLayoutSetAttribute", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulPreferenceCreate, "cublasLtMatmulPreferenceCreate", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulPreferenceDestroy, "cublasLtMatmulPreferenceDestroy", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulPreferenceSetAttribute, "cublasLtMatmulPreferenceSetAttribute", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmulAlgoGetHeuristic, "cublasLtMatmulAlgoGetHeuristic", lt.error, sizeof lt.error);
    LOAD_SYMBOL(handle, lt.fn, cublasLtMatmul, "cublasLtMatmul", lt.error, sizeof lt.error);
    return 1;
}

static void load_lt(void) {
    memset(&lt, 0, sizeof lt);
    char storage[MAX_DIRS][512];
    const char *dirs[MAX_DIRS + 1];
    const char *names[] = { "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so", NULL };
    void *handle = rt_dlopen_search(names, cuda_dirs(storage, dirs), 1, lt.path, sizeof lt.path,
                                    lt.error, sizeof lt.error);
    if (!handle) {
        snprintf(lt.error, sizeof lt.error, "libcublasLt not found (pip install nvidia-cublas, or set CUDA_HOME)");
        return;
    }
    if (!resolve_lt(handle, lt.path)) return;
    lt.version = lt.fn.cublasLtGetVersion();
    lt.loaded = 1;
}

const rt_cublaslt_info *rt_cublaslt_load(void) {
    pthread_once(&lt_once, load_lt);
    return &lt;
}

// ---------------------------------------------------------------- kernel launch
rt_CUresult rt_cuda_launch(rt_CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                           unsigned bz, unsigned shared_bytes, rt_CUstream stream, uint64_t *args, int count) {
    void *params[32];
    if (count > 32) return 1;   // CUDA_ERROR_INVALID_VALUE
    for (int i = 0; i < count; i++) params[i] = &args[i];
    return rt_cuda_load()->fn.cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, shared_bytes, stream, params, NULL);
}

const char *rt_cuda_error_string(rt_CUresult error) {
    const rt_cuda_info *c = rt_cuda_load();
    const char *message = NULL;
    if (c->loaded) c->fn.cuGetErrorString(error, &message);
    return message ? message : "unknown CUDA error";
}
