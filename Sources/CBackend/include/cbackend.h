// CBackend: run-time loaders. Nothing here needs CUDA or OpenBLAS headers or libraries at build
// time: every library is found and dlopen'ed at run time through our own minimal declarations,
// and every failure becomes a status string (never a crash).
#pragma once
#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------- library search (libsearch.c)
// Tries each directory of `dirs` (NULL-terminated, may be NULL) with each name, then each pip
// folder <site-packages>/nvidia/*/lib when `pip_nvidia` is set, then the plain names through the
// system loader. On success returns the handle and writes the path; on failure writes what was
// tried into `error`.
void *rt_dlopen_search(const char *const *names, const char *const *dirs, int pip_nvidia,
                       char *path, size_t path_size, char *error, size_t error_size);
// Directory of the running executable (for bundles that carry their libraries in ./lib).
const char *rt_executable_dir(void);

// ---------------------------------------------------------------- CPU (cpu_features.c)
typedef struct {
    char brand[64];        // CPUID brand string
    int avx, avx2, fma, avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16, fma4; // usable (CPU + OS)
    int logical_cpus;      // CPUs this process may run on
} rt_cpu_features;
const rt_cpu_features *rt_cpu_detect(void);
// Best OpenBLAS DYNAMIC_ARCH core for this CPU ("SkylakeX", "Haswell", "Sandybridge", "Nehalem",
// "Prescott"), or "" on non-x86 machines.
const char *rt_cpu_openblas_coretype(void);

// ---------------------------------------------------------------- OpenBLAS (openblas.c)
typedef struct {
    int loaded;              // 1 when sgemm is usable
    char path[512];          // the library that was loaded
    char version[32];        // "0.3.21"
    char config[256];        // openblas_get_config()
    char core[64];           // openblas_get_corename(): the kernels it runs
    char coretype_source[160];// how the core was chosen, e.g. "chosen from CPUID (AVX-512)"
    int threads;
    char error[768];
} rt_blas_info;
// Loads OpenBLAS once (thread-safe): $RETORT_OPENBLAS, <executable dir>/lib, then the system
// loader. Before loading it sets OPENBLAS_CORETYPE from CPUID (or to $RETORT_BLAS_CORETYPE when
// set), because OpenBLAS picks its kernels when it initialises and mis-detects CPUs newer than
// itself (0.3.21 runs Haswell or Prescott kernels on AVX-512 machines).
const rt_blas_info *rt_blas_load(void);
void rt_blas_set_threads(int threads);
// Row-major sgemm on the calling thread only (OpenBLAS's own threads stay asleep).
void rt_sgemm_single(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);
// Row-major C[M,N] = alpha·op(A)·op(B) + beta·C. Requires rt_blas_load()->loaded.
void rt_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

// ---------------------------------------------------------------- CUDA (cuda.c)
// Our own declarations of the few CUDA types we use. scripts/check-cuda-headers compiles
// Tests/HeaderCheck/cuda_declarations.c with RT_CUDA_REAL_TYPES defined, so every prototype
// below is compared against the real cuda.h / nvrtc.h / cublasLt.h exactly, and asserts that
// these stand-ins have the real types' sizes and that every enum value matches.
#ifndef RT_CUDA_REAL_TYPES
typedef int rt_CUresult;           // CUresult (enum)
typedef int rt_CUdevice;           // CUdevice
typedef struct rt_CUctx *rt_CUcontext;
typedef struct rt_CUmod *rt_CUmodule;
typedef struct rt_CUfunc *rt_CUfunction;
typedef struct rt_CUstream *rt_CUstream;
typedef struct rt_CUevt *rt_CUevent;
typedef unsigned long long rt_CUdeviceptr;
typedef int rt_CUdevice_attribute;
typedef int rt_CUfunction_attribute;
typedef int rt_nvrtcResult;
typedef struct rt_nvrtcProg *rt_nvrtcProgram;
typedef int rt_cublasStatus;
typedef struct rt_cublasLtContext *rt_cublasLtHandle;
typedef struct rt_cublasLtMatmulDescOpaque *rt_cublasLtMatmulDesc;
typedef struct rt_cublasLtMatrixLayoutOpaque *rt_cublasLtMatrixLayout;
typedef struct rt_cublasLtMatmulPreferenceOpaque *rt_cublasLtMatmulPreference;
typedef int rt_cublasComputeType;
typedef int rt_cudaDataType;
typedef int rt_cublasLtMatmulDescAttribute;
typedef int rt_cublasLtMatrixLayoutAttribute;
typedef int rt_cublasLtMatmulPreferenceAttribute;
typedef struct rt_CUstream *rt_cudaStream;   // cudaStream_t is CUstream
#endif
enum { RT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,
       RT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
       RT_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36,          // kHz
       RT_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37,    // bits
       RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
       RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
       RT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
       RT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
       RT_CUDA_ERROR_OUT_OF_MEMORY = 2,
       RT_CUDA_ERROR_NOT_READY = 600,
       RT_CU_STREAM_NON_BLOCKING = 1,
       RT_CU_EVENT_DISABLE_TIMING = 2 };

typedef struct {
    rt_CUresult (*cuInit)(unsigned flags);
    rt_CUresult (*cuDriverGetVersion)(int *version);
    rt_CUresult (*cuDeviceGetCount)(int *count);
    rt_CUresult (*cuDeviceGet)(rt_CUdevice *device, int ordinal);
    rt_CUresult (*cuDeviceGetName)(char *name, int len, rt_CUdevice device);
    rt_CUresult (*cuDeviceTotalMem)(size_t *bytes, rt_CUdevice device);              // _v2
    rt_CUresult (*cuDeviceGetAttribute)(int *value, rt_CUdevice_attribute attribute, rt_CUdevice device);
    rt_CUresult (*cuDevicePrimaryCtxRetain)(rt_CUcontext *ctx, rt_CUdevice device);
    rt_CUresult (*cuDevicePrimaryCtxRelease)(rt_CUdevice device);                   // _v2
    rt_CUresult (*cuCtxSetCurrent)(rt_CUcontext ctx);
    rt_CUresult (*cuMemAlloc)(rt_CUdeviceptr *ptr, size_t bytes);                   // _v2
    rt_CUresult (*cuMemFree)(rt_CUdeviceptr ptr);                                   // _v2
    rt_CUresult (*cuMemcpyHtoD)(rt_CUdeviceptr dst, const void *src, size_t bytes); // _v2
    rt_CUresult (*cuMemcpyDtoH)(void *dst, rt_CUdeviceptr src, size_t bytes);       // _v2
    rt_CUresult (*cuStreamCreate)(rt_CUstream *stream, unsigned flags);
    rt_CUresult (*cuStreamSynchronize)(rt_CUstream stream);
    rt_CUresult (*cuStreamQuery)(rt_CUstream stream);   // 0: done; 600 (CUDA_ERROR_NOT_READY): still running
    rt_CUresult (*cuModuleLoadData)(rt_CUmodule *module, const void *image);
    rt_CUresult (*cuModuleGetFunction)(rt_CUfunction *fn, rt_CUmodule module, const char *name);
    rt_CUresult (*cuLaunchKernel)(rt_CUfunction fn, unsigned gx, unsigned gy, unsigned gz,
                                  unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes,
                                  rt_CUstream stream, void **params, void **extra);
    rt_CUresult (*cuGetErrorString)(rt_CUresult error, const char **message);
    rt_CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);           // _v2
    rt_CUresult (*cuMemsetD8Async)(rt_CUdeviceptr dst, unsigned char value, size_t count, rt_CUstream stream);
    rt_CUresult (*cuMemsetD32Async)(rt_CUdeviceptr dst, unsigned int value, size_t count, rt_CUstream stream);
    rt_CUresult (*cuMemcpyHtoDAsync)(rt_CUdeviceptr dst, const void *src, size_t bytes, rt_CUstream stream); // _v2
    rt_CUresult (*cuMemcpyDtoHAsync)(void *dst, rt_CUdeviceptr src, size_t bytes, rt_CUstream stream);       // _v2
    rt_CUresult (*cuMemcpyDtoDAsync)(rt_CUdeviceptr dst, rt_CUdeviceptr src, size_t bytes, rt_CUstream stream); // _v2
    rt_CUresult (*cuStreamDestroy)(rt_CUstream stream);                             // _v2
    rt_CUresult (*cuModuleUnload)(rt_CUmodule module);
    rt_CUresult (*cuFuncSetAttribute)(rt_CUfunction fn, rt_CUfunction_attribute attribute, int value);
    rt_CUresult (*cuCtxGetCurrent)(rt_CUcontext *ctx);
    // Events order a second stream after work queued on the first (NCCL's sums after a layer's
    // backward)
    rt_CUresult (*cuEventCreate)(rt_CUevent *event, unsigned flags);
    rt_CUresult (*cuEventRecord)(rt_CUevent event, rt_CUstream stream);
    rt_CUresult (*cuStreamWaitEvent)(rt_CUstream stream, rt_CUevent event, unsigned flags);
    rt_CUresult (*cuEventDestroy)(rt_CUevent event);                               // _v2
} rt_cuda_driver;

typedef struct {
    int loaded;          // libcuda.so.1 opened and every symbol found
    int usable;          // cuInit succeeded and at least one device exists
    int driver_version;  // e.g. 12040
    int device_count;
    char path[512];
    char error[768];     // why not loaded / not usable
    rt_cuda_driver fn;
} rt_cuda_info;
const rt_cuda_info *rt_cuda_load(void);
// Name, memory and compute capability of device `ordinal`; 0 on success.
int rt_cuda_device_info(int ordinal, char *name, size_t name_size, size_t *total_bytes,
                        int *cc_major, int *cc_minor, int *sm_count);
// One cuDeviceGetAttribute value of device `ordinal` (0 when it cannot be read).
int rt_cuda_device_attribute(int ordinal, int attribute);

// ---------------------------------------------------------------- NVRTC (cuda.c)
typedef struct {
    rt_nvrtcResult (*nvrtcVersion)(int *major, int *minor);
    rt_nvrtcResult (*nvrtcCreateProgram)(rt_nvrtcProgram *prog, const char *source, const char *name,
                                         int num_headers, const char *const *headers,
                                         const char *const *include_names);
    rt_nvrtcResult (*nvrtcCompileProgram)(rt_nvrtcProgram prog, int num_options, const char *const *options);
    rt_nvrtcResult (*nvrtcGetProgramLogSize)(rt_nvrtcProgram prog, size_t *size);
    rt_nvrtcResult (*nvrtcGetProgramLog)(rt_nvrtcProgram prog, char *log);
    rt_nvrtcResult (*nvrtcGetCUBINSize)(rt_nvrtcProgram prog, size_t *size);
    rt_nvrtcResult (*nvrtcGetCUBIN)(rt_nvrtcProgram prog, char *cubin);
    rt_nvrtcResult (*nvrtcDestroyProgram)(rt_nvrtcProgram *prog);
    const char *(*nvrtcGetErrorString)(rt_nvrtcResult result);
    // Optional (NULL when this NVRTC lacks them): the architectures it compiles for, and PTX.
    rt_nvrtcResult (*nvrtcGetNumSupportedArchs)(int *num_archs);
    rt_nvrtcResult (*nvrtcGetSupportedArchs)(int *archs);
    rt_nvrtcResult (*nvrtcGetPTXSize)(rt_nvrtcProgram prog, size_t *size);
    rt_nvrtcResult (*nvrtcGetPTX)(rt_nvrtcProgram prog, char *ptx);
} rt_nvrtc_api;

typedef struct {
    int loaded;
    int major, minor;
    char path[512];
    char error[1024];
    rt_nvrtc_api fn;
} rt_nvrtc_info;
const rt_nvrtc_info *rt_nvrtc_load(void);

// Compiles one CUDA C source with exactly `options` (the target among them:
// --gpu-architecture=sm_XY for a cubin, compute_XY for PTX, as `ptx` says), with `num_headers`
// in-memory headers (contents, include names) it may #include. Returns 0 on success with a
// malloc'ed image in *image (caller frees; PTX is NUL-terminated); otherwise non-zero with the
// compiler log (or the reason) in a malloc'ed *log. *log is set on success too when the
// compiler printed warnings.
int rt_nvrtc_compile(const char *source, const char *name, int ptx, int num_headers, const char *const *headers,
                     const char *const *header_names, const char *const *options, int num_options,
                     char **image, size_t *image_size, char **log);

// The compute capabilities (e.g. 75, 80, 90) this NVRTC compiles for, ascending, into `archs`;
// returns how many (at most `capacity`), or 0 when it cannot say (an NVRTC before 11.2).
int rt_nvrtc_supported_archs(int *archs, int capacity);

// ---------------------------------------------------------------- cuBLASLt (cuda.c)
enum { RT_CUBLAS_COMPUTE_32F = 68, RT_CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
       RT_CUDA_R_32F = 0, RT_CUDA_R_16F = 2, RT_CUDA_R_16BF = 14,
       RT_CUBLAS_OP_N = 0, RT_CUBLAS_OP_T = 1,
       RT_CUBLASLT_MATMUL_DESC_TRANSA = 3, RT_CUBLASLT_MATMUL_DESC_TRANSB = 4,
       RT_CUBLASLT_MATMUL_DESC_EPILOGUE = 7, RT_CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
       RT_CUBLASLT_EPILOGUE_DEFAULT = 1, RT_CUBLASLT_EPILOGUE_BIAS = 4,
       RT_CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, RT_CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
       RT_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
       RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5, RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
       RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7, RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8 };
typedef struct { uint64_t data[8]; } rt_cublasLtMatmulAlgoLayout;   // cublasLtMatmulAlgo_t
typedef struct {                                                    // cublasLtMatmulHeuristicResult_t
    rt_cublasLtMatmulAlgoLayout algo;
    size_t workspaceSize;
    int state;              // cublasStatus_t
    float wavesCount;
    int reserved[4];
} rt_cublasLtMatmulHeuristicResultLayout;
#ifndef RT_CUDA_REAL_TYPES
typedef rt_cublasLtMatmulAlgoLayout rt_cublasLtMatmulAlgo;
typedef rt_cublasLtMatmulHeuristicResultLayout rt_cublasLtMatmulHeuristicResult;
#endif

typedef struct {
    size_t (*cublasLtGetVersion)(void);
    rt_cublasStatus (*cublasLtCreate)(rt_cublasLtHandle *handle);
    rt_cublasStatus (*cublasLtDestroy)(rt_cublasLtHandle handle);
    const char *(*cublasLtGetStatusString)(rt_cublasStatus status);
    rt_cublasStatus (*cublasLtMatmulDescCreate)(rt_cublasLtMatmulDesc *desc, rt_cublasComputeType compute,
                                                rt_cudaDataType scale_type);
    rt_cublasStatus (*cublasLtMatmulDescDestroy)(rt_cublasLtMatmulDesc desc);
    rt_cublasStatus (*cublasLtMatmulDescSetAttribute)(rt_cublasLtMatmulDesc desc, rt_cublasLtMatmulDescAttribute attr,
                                                      const void *buf, size_t size);
    rt_cublasStatus (*cublasLtMatrixLayoutCreate)(rt_cublasLtMatrixLayout *layout, rt_cudaDataType type,
                                                  uint64_t rows, uint64_t cols, int64_t ld);
    rt_cublasStatus (*cublasLtMatrixLayoutDestroy)(rt_cublasLtMatrixLayout layout);
    rt_cublasStatus (*cublasLtMatrixLayoutSetAttribute)(rt_cublasLtMatrixLayout layout,
                                                        rt_cublasLtMatrixLayoutAttribute attr, const void *buf, size_t size);
    rt_cublasStatus (*cublasLtMatmulPreferenceCreate)(rt_cublasLtMatmulPreference *pref);
    rt_cublasStatus (*cublasLtMatmulPreferenceDestroy)(rt_cublasLtMatmulPreference pref);
    rt_cublasStatus (*cublasLtMatmulPreferenceSetAttribute)(rt_cublasLtMatmulPreference pref,
                                                            rt_cublasLtMatmulPreferenceAttribute attr, const void *buf,
                                                            size_t size);
    rt_cublasStatus (*cublasLtMatmulAlgoGetHeuristic)(rt_cublasLtHandle handle, rt_cublasLtMatmulDesc op,
                                                      rt_cublasLtMatrixLayout a, rt_cublasLtMatrixLayout b,
                                                      rt_cublasLtMatrixLayout c, rt_cublasLtMatrixLayout d,
                                                      rt_cublasLtMatmulPreference pref, int requested,
                                                      rt_cublasLtMatmulHeuristicResult results[], int *returned);
    rt_cublasStatus (*cublasLtMatmul)(rt_cublasLtHandle handle, rt_cublasLtMatmulDesc op, const void *alpha,
                                      const void *A, rt_cublasLtMatrixLayout a, const void *B, rt_cublasLtMatrixLayout b,
                                      const void *beta, const void *C, rt_cublasLtMatrixLayout c, void *D,
                                      rt_cublasLtMatrixLayout d, const rt_cublasLtMatmulAlgo *algo, void *workspace,
                                      size_t workspace_bytes, rt_cudaStream stream);
} rt_cublaslt_api;
typedef struct {
    int loaded;
    size_t version;      // e.g. 120903
    char path[512];
    char error[768];
    rt_cublaslt_api fn;
} rt_cublaslt_info;
const rt_cublaslt_info *rt_cublaslt_load(void);

// ---------------------------------------------------------------- kernel launch (cuda.c)
// Launches `fn` with `count` arguments, each stored little-endian in the low bytes of one 64-bit
// slot (a pointer, an int, a float's bits…): the slot's address is the parameter's address.
rt_CUresult rt_cuda_launch(rt_CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                           unsigned bz, unsigned shared_bytes, rt_CUstream stream, uint64_t *args, int count);
// The driver's message for an error code ("out of memory"), never NULL.
const char *rt_cuda_error_string(rt_CUresult error);

// ---------------------------------------------------------------- Open MPI (mpi.c)
// Loaded (RTLD_GLOBAL) only by a process that mpirun started. Open MPI's ABI only.
typedef struct {
    int loaded;
    char path[512];
    char version[256];       // "Open MPI v4.1.4"
    char error[512];
} rt_mpi_info;
enum { RT_MPI_SUM = 0, RT_MPI_MAX = 1, RT_MPI_MIN = 2 };
const rt_mpi_info *rt_mpi_load(void);
// MPI_Init_thread (asking for MPI_THREAD_SERIALIZED; `serialized` says whether it was given) and
// this process's rank and the job's size; errors are returned (MPI_ERRORS_RETURN), each nonzero
// return with its text in `error`.
int rt_mpi_init(int *rank, int *size, int *serialized, char *error, size_t error_size);
// Blocking in-place sum (MPI_Allreduce: Open MPI's tuned algorithms, faster than the
// non-blocking ones), for the gradient thread.
int rt_mpi_allreduce_f32(float *values, int count, char *error, size_t error_size);
// In-place non-blocking all-reduces over MPI_COMM_WORLD (op: RT_MPI_SUM/MAX/MIN) and a broadcast
// of bytes from `root`; complete each `request` with rt_mpi_test.
int rt_mpi_iallreduce_f32(float *values, int count, int op, void **request, char *error, size_t error_size);
int rt_mpi_iallreduce_f64(double *values, int count, int op, void **request, char *error, size_t error_size);
int rt_mpi_ibcast(void *bytes, int count, int root, void **request, char *error, size_t error_size);
int rt_mpi_test(void **request, int *done, char *error, size_t error_size);
// Ends every rank of the job (MPI_Abort), then this process.
void rt_mpi_abort(int code);
void rt_mpi_finalize(void);

// ---------------------------------------------------------------- NCCL (nccl.c)
// Loaded by a data-parallel rank on CUDA (libnccl.so.2: bundle, RETORT_CUDA_PATH, pip's
// nvidia/*/lib, the system). Every int return is an ncclResult_t (0: success).
#define RT_NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    int loaded;
    int version;             // ncclGetVersion: 22703 for 2.27.3
    char path[512];
    char error[1024];
} rt_nccl_info;
const rt_nccl_info *rt_nccl_load(void);
const char *rt_nccl_error_string(int result);
int rt_nccl_unique_id(void *id);                                       // id: RT_NCCL_UNIQUE_ID_BYTES
int rt_nccl_comm_init_rank(void **comm, int ranks, const void *id, int rank);
int rt_nccl_comm_destroy(void *comm);
int rt_nccl_comm_abort(void *comm);
int rt_nccl_group_start(void);
int rt_nccl_group_end(void);
// In-place sum of `count` floats at device address `values` over the communicator, queued on `stream`.
int rt_nccl_all_reduce_sum_f32(rt_CUdeviceptr values, size_t count, void *comm, rt_CUstream stream);
