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
    LOAD_SYMBOL(handle, cuda.fn, cuStreamQuery, "cuStreamQuery", cuda.error, sizeof cuda.error);
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
    LOAD_SYMBOL(handle, cuda.fn, cuEventCreate, "cuEventCreate", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuEventRecord, "cuEventRecord", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuStreamWaitEvent, "cuStreamWaitEvent", cuda.error, sizeof cuda.error);
    LOAD_SYMBOL(handle, cuda.fn, cuEventDestroy, "cuEventDestroy_v2", cuda.error, sizeof cuda.error);
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
    *(void **)&nvrtc.fn.nvrtcGetNumSupportedArchs = dlsym(handle, "nvrtcGetNumSupportedArchs");   // 11.2+
    *(void **)&nvrtc.fn.nvrtcGetSupportedArchs = dlsym(handle, "nvrtcGetSupportedArchs");
    *(void **)&nvrtc.fn.nvrtcGetPTXSize = dlsym(handle, "nvrtcGetPTXSize");
    *(void **)&nvrtc.fn.nvrtcGetPTX = dlsym(handle, "nvrtcGetPTX");
    return 1;
}

// The CUDA major version the driver supports (e.g. 12 for 12.4), or 0 when there is no driver
// (NVRTC alone, to compile without a GPU: then any version will do).
static int driver_major(void) {
    const rt_cuda_info *c = rt_cuda_load();
    return c->loaded && c->driver_version > 0 ? c->driver_version / 1000 : 0;
}

// The major version in a soname ("libnvrtc.so.12" → 12, "libnvrtc.so.11.2" → 11), 0 if none.
static int soname_major(const char *name) {
    const char *so = strstr(name, ".so.");
    return so ? atoi(so + 4) : 0;
}

// Loads the first of `names` (versioned sonames, newest first; the last may be unversioned) in
// the usual folder order (each folder tried with every name before the next folder) whose major
// version the driver supports: a library newer than the driver (libnvrtc.so.13 on a 12.x
// driver) produces code or makes calls the driver cannot take. `version_major` reads a loaded
// library's major (for the unversioned name). On failure `error` says what was found and why it
// was refused, or what to install.
static void *load_for_driver(const char *const *names, const char *what, const char *pip_hint,
                             int (*version_major)(void *handle), char *path, size_t path_size, char *error,
                             size_t error_size) {
    char storage[MAX_DIRS][512];
    const char *dirs[MAX_DIRS + 1];
    cuda_dirs(storage, dirs);
    const int supported = driver_major();
    const char *allowed[8], *newer[8];
    int n_allowed = 0, n_newer = 0;
    for (int i = 0; names[i] && i < 7; i++) {
        if (supported > 0 && soname_major(names[i]) > supported) newer[n_newer++] = names[i];
        else allowed[n_allowed++] = names[i];
    }
    allowed[n_allowed] = NULL;
    newer[n_newer] = NULL;
    char found[512], why[256];
    int major = 0;
    void *handle = n_allowed ? rt_dlopen_search(allowed, dirs, 1, found, sizeof found, why, sizeof why) : NULL;
    if (handle && !(supported > 0 && (major = version_major(handle)) > supported)) {
        snprintf(path, path_size, "%s", found);
        return handle;
    }
    // Nothing usable: say what newer library there is, if any (a refused handle is not
    // dlclose'd: a library may not take being unloaded; it is never called).
    if (!handle && n_newer) {
        handle = rt_dlopen_search(newer, dirs, 1, found, sizeof found, why, sizeof why);
        if (handle) major = version_major(handle);
    }
    if (handle)   // CUDA 13's wheels are plain nvidia-*, older ones nvidia-*-cu12 / -cu11
        snprintf(error, error_size, "%s (CUDA %d) was found but the driver supports CUDA %d.%d at most: "
                 "install the CUDA %d %s (pip install %s%s%.0d) or update the driver", found, major, supported,
                 rt_cuda_load()->driver_version % 1000 / 10, supported, what, pip_hint, supported < 13 ? "-cu" : "",
                 supported < 13 ? supported : 0);
    else
        snprintf(error, error_size, "%.*s not found (pip install %s, or set CUDA_HOME)",
                 (int)(strstr(names[0], ".so") ? strstr(names[0], ".so") - names[0] : (long)strlen(names[0])), names[0], pip_hint);
    return NULL;
}

static int nvrtc_major(void *handle) {
    rt_nvrtcResult (*version)(int *, int *);
    *(void **)&version = dlsym(handle, "nvrtcVersion");
    int major = 0, minor = 0;
    if (version) version(&major, &minor);
    return major;
}

// NVRTC loads libnvrtc-builtins.so.<major>.<minor> by name when it compiles; when NVRTC came from
// a folder the system loader does not search (a pip wheel, RETORT_CUDA_PATH), load the builtins
// from that same folder first so that name resolves to them.
static void preload_nvrtc_builtins(const char *nvrtc_path) {
    char name[600];
    const char *slash = strrchr(nvrtc_path, '/');
    if (!slash) return;
    snprintf(name, sizeof name, "%.*s/libnvrtc-builtins.so.%d.%d", (int)(slash - nvrtc_path), nvrtc_path,
             nvrtc.major, nvrtc.minor);
    dlopen(name, RTLD_NOW | RTLD_GLOBAL);   // absent (an emulated or static NVRTC): nothing to do
}

static void load_nvrtc(void) {
    memset(&nvrtc, 0, sizeof nvrtc);
    const char *names[] = { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so", NULL };
    void *handle = load_for_driver(names, "NVRTC", "nvidia-cuda-nvrtc", nvrtc_major, nvrtc.path,
                                   sizeof nvrtc.path, nvrtc.error, sizeof nvrtc.error);
    if (!handle) return;
    if (!resolve_nvrtc(handle, nvrtc.path)) return;
    nvrtc.fn.nvrtcVersion(&nvrtc.major, &nvrtc.minor);
    preload_nvrtc_builtins(nvrtc.path);
    nvrtc.loaded = 1;
}

int rt_nvrtc_supported_archs(int *archs, int capacity) {
    const rt_nvrtc_info *n = rt_nvrtc_load();
    int count = 0;
    if (!n->loaded || !n->fn.nvrtcGetNumSupportedArchs || !n->fn.nvrtcGetSupportedArchs) return 0;
    if (n->fn.nvrtcGetNumSupportedArchs(&count) || count <= 0) return 0;
    int *all = malloc(sizeof(int) * (size_t)count);
    if (!all || n->fn.nvrtcGetSupportedArchs(all)) { free(all); return 0; }
    if (count > capacity) count = capacity;
    memcpy(archs, all, sizeof(int) * (size_t)count);
    free(all);
    return count;
}

const rt_nvrtc_info *rt_nvrtc_load(void) {
    pthread_once(&nvrtc_once, load_nvrtc);
    return &nvrtc;
}

static char *copy_string(const char *text) {
    return strdup(text ? text : "");
}

int rt_nvrtc_compile(const char *source, const char *name, int ptx, int num_headers, const char *const *headers,
                     const char *const *header_names, const char *const *options, int num_options,
                     char **image, size_t *image_size, char **log) {
    *image = NULL;
    *image_size = 0;
    *log = NULL;
    const rt_nvrtc_info *n = rt_nvrtc_load();
    if (!n->loaded) { *log = copy_string(n->error); return 1; }
    if (ptx && (!n->fn.nvrtcGetPTXSize || !n->fn.nvrtcGetPTX)) { *log = copy_string("this NVRTC cannot return PTX"); return 1; }
    rt_nvrtcProgram prog = NULL;
    rt_nvrtcResult r = n->fn.nvrtcCreateProgram(&prog, source, name, num_headers, headers, header_names);
    if (r) { *log = copy_string(n->fn.nvrtcGetErrorString(r)); return 1; }
    r = n->fn.nvrtcCompileProgram(prog, num_options, options);
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
    r = ptx ? n->fn.nvrtcGetPTXSize(prog, image_size) : n->fn.nvrtcGetCUBINSize(prog, image_size);
    if (!r && *image_size > 0) {
        *image = malloc(*image_size);
        r = !*image ? 1 : ptx ? n->fn.nvrtcGetPTX(prog, *image) : n->fn.nvrtcGetCUBIN(prog, *image);
    }
    if (r || *image_size == 0) {   // e.g. a virtual architecture asked for a cubin
        free(*image);
        *image = NULL;
        *image_size = 0;
        free(*log);
        *log = copy_string(r ? n->fn.nvrtcGetErrorString(r) : "NVRTC returned an empty image");
        n->fn.nvrtcDestroyProgram(&prog);
        return 1;
    }
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

static int cublaslt_major(void *handle) {
    size_t (*version)(void);
    *(void **)&version = dlsym(handle, "cublasLtGetVersion");
    return version ? (int)(version() / 10000) : 0;   // e.g. 130100: 13.1.0
}

static void load_lt(void) {
    memset(&lt, 0, sizeof lt);
    const char *names[] = { "libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so", NULL };
    void *handle = load_for_driver(names, "cuBLAS", "nvidia-cublas", cublaslt_major, lt.path, sizeof lt.path,
                                   lt.error, sizeof lt.error);
    if (!handle) return;
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
    void *params[33];
    if (count > 32) return 1;   // CUDA_ERROR_INVALID_VALUE
    for (int i = 0; i < count; i++) params[i] = &args[i];
    // A null after the last argument: the driver reads as many as the kernel declares and never
    // looks at it; the emulated device (Tests/CUDAEmulation) checks the count with it.
    params[count] = NULL;
    return rt_cuda_load()->fn.cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, shared_bytes, stream, params, NULL);
}

const char *rt_cuda_error_string(rt_CUresult error) {
    const rt_cuda_info *c = rt_cuda_load();
    const char *message = NULL;
    if (c->loaded) c->fn.cuGetErrorString(error, &message);
    return message ? message : "unknown CUDA error";
}
