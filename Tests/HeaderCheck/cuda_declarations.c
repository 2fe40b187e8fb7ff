// CBackend declares the CUDA driver, NVRTC and cuBLASLt functions it loads itself (no CUDA
// headers at build time). This file holds those declarations against the real headers (from the
// PyPI nvidia-* wheels, see scripts/check-cuda-headers): it swaps our stand-in types for the
// real ones, then every function-pointer field must have exactly the real prototype, every enum
// value must match, and the stand-ins must have the real types' sizes. It is only compiled
// (-fsyntax-only): a mismatch is a compile error naming the field.
#include <stddef.h>
#include <cuda.h>
#include <nvrtc.h>
#include <cublasLt.h>

// ---- the stand-ins (cbackend.h, default mode) have the real types' sizes and signedness
_Static_assert(sizeof(int) == sizeof(CUresult) && sizeof(int) == sizeof(CUdevice), "CUresult/CUdevice size");
_Static_assert(sizeof(int) == sizeof(CUdevice_attribute) && sizeof(int) == sizeof(CUfunction_attribute), "attribute enums");
_Static_assert(sizeof(unsigned long long) == sizeof(CUdeviceptr) && (CUdeviceptr)-1 > 0, "CUdeviceptr");
_Static_assert(sizeof(int) == sizeof(nvrtcResult) && sizeof(int) == sizeof(cublasStatus_t), "status enums");
_Static_assert(sizeof(int) == sizeof(cublasComputeType_t) && sizeof(int) == sizeof(cudaDataType), "type enums");
_Static_assert(sizeof(int) == sizeof(cublasLtMatmulDescAttributes_t), "desc attribute enum");
_Static_assert(sizeof(int) == sizeof(cublasLtMatrixLayoutAttribute_t), "layout attribute enum");
_Static_assert(sizeof(int) == sizeof(cublasLtMatmulPreferenceAttributes_t), "preference attribute enum");
_Static_assert(__builtin_types_compatible_p(cudaStream_t, CUstream), "cudaStream_t is CUstream");

// ---- our declarations, in terms of the real types
#define RT_CUDA_REAL_TYPES
typedef CUresult rt_CUresult;
typedef CUdevice rt_CUdevice;
typedef CUcontext rt_CUcontext;
typedef CUmodule rt_CUmodule;
typedef CUfunction rt_CUfunction;
typedef CUstream rt_CUstream;
typedef CUevent rt_CUevent;
typedef CUdeviceptr rt_CUdeviceptr;
typedef CUdevice_attribute rt_CUdevice_attribute;
typedef CUfunction_attribute rt_CUfunction_attribute;
typedef nvrtcResult rt_nvrtcResult;
typedef nvrtcProgram rt_nvrtcProgram;
typedef cublasStatus_t rt_cublasStatus;
typedef cublasLtHandle_t rt_cublasLtHandle;
typedef cublasLtMatmulDesc_t rt_cublasLtMatmulDesc;
typedef cublasLtMatrixLayout_t rt_cublasLtMatrixLayout;
typedef cublasLtMatmulPreference_t rt_cublasLtMatmulPreference;
typedef cublasComputeType_t rt_cublasComputeType;
typedef cudaDataType rt_cudaDataType;
typedef cublasLtMatmulDescAttributes_t rt_cublasLtMatmulDescAttribute;
typedef cublasLtMatrixLayoutAttribute_t rt_cublasLtMatrixLayoutAttribute;
typedef cublasLtMatmulPreferenceAttributes_t rt_cublasLtMatmulPreferenceAttribute;
typedef cudaStream_t rt_cudaStream;
typedef cublasLtMatmulAlgo_t rt_cublasLtMatmulAlgo;
typedef cublasLtMatmulHeuristicResult_t rt_cublasLtMatmulHeuristicResult;
#include "cbackend.h"

#define SAME(table, field, real)                                                                  \
    _Static_assert(__builtin_types_compatible_p(__typeof__(((table *)0)->field), __typeof__(&real)), \
                   #table "." #field " does not match " #real)

SAME(rt_cuda_driver, cuInit, cuInit);
SAME(rt_cuda_driver, cuDriverGetVersion, cuDriverGetVersion);
SAME(rt_cuda_driver, cuDeviceGetCount, cuDeviceGetCount);
SAME(rt_cuda_driver, cuDeviceGet, cuDeviceGet);
SAME(rt_cuda_driver, cuDeviceGetName, cuDeviceGetName);
SAME(rt_cuda_driver, cuDeviceTotalMem, cuDeviceTotalMem_v2);
SAME(rt_cuda_driver, cuDeviceGetAttribute, cuDeviceGetAttribute);
SAME(rt_cuda_driver, cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain);
SAME(rt_cuda_driver, cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2);
SAME(rt_cuda_driver, cuCtxSetCurrent, cuCtxSetCurrent);
SAME(rt_cuda_driver, cuCtxGetCurrent, cuCtxGetCurrent);
SAME(rt_cuda_driver, cuMemAlloc, cuMemAlloc_v2);
SAME(rt_cuda_driver, cuMemFree, cuMemFree_v2);
SAME(rt_cuda_driver, cuMemGetInfo, cuMemGetInfo_v2);
SAME(rt_cuda_driver, cuMemcpyHtoD, cuMemcpyHtoD_v2);
SAME(rt_cuda_driver, cuMemcpyDtoH, cuMemcpyDtoH_v2);
SAME(rt_cuda_driver, cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2);
SAME(rt_cuda_driver, cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2);
SAME(rt_cuda_driver, cuMemcpyDtoDAsync, cuMemcpyDtoDAsync_v2);
SAME(rt_cuda_driver, cuMemsetD8Async, cuMemsetD8Async);
SAME(rt_cuda_driver, cuMemsetD32Async, cuMemsetD32Async);
SAME(rt_cuda_driver, cuStreamCreate, cuStreamCreate);
SAME(rt_cuda_driver, cuStreamDestroy, cuStreamDestroy_v2);
SAME(rt_cuda_driver, cuStreamSynchronize, cuStreamSynchronize);
SAME(rt_cuda_driver, cuStreamQuery, cuStreamQuery);
SAME(rt_cuda_driver, cuModuleLoadData, cuModuleLoadData);
SAME(rt_cuda_driver, cuModuleUnload, cuModuleUnload);
SAME(rt_cuda_driver, cuModuleGetFunction, cuModuleGetFunction);
SAME(rt_cuda_driver, cuFuncSetAttribute, cuFuncSetAttribute);
SAME(rt_cuda_driver, cuLaunchKernel, cuLaunchKernel);
SAME(rt_cuda_driver, cuGetErrorString, cuGetErrorString);
SAME(rt_cuda_driver, cuEventCreate, cuEventCreate);
SAME(rt_cuda_driver, cuEventRecord, cuEventRecord);
SAME(rt_cuda_driver, cuStreamWaitEvent, cuStreamWaitEvent);
SAME(rt_cuda_driver, cuEventDestroy, cuEventDestroy_v2);

SAME(rt_nvrtc_api, nvrtcVersion, nvrtcVersion);
SAME(rt_nvrtc_api, nvrtcCreateProgram, nvrtcCreateProgram);
SAME(rt_nvrtc_api, nvrtcCompileProgram, nvrtcCompileProgram);
SAME(rt_nvrtc_api, nvrtcGetProgramLogSize, nvrtcGetProgramLogSize);
SAME(rt_nvrtc_api, nvrtcGetProgramLog, nvrtcGetProgramLog);
SAME(rt_nvrtc_api, nvrtcGetCUBINSize, nvrtcGetCUBINSize);
SAME(rt_nvrtc_api, nvrtcGetCUBIN, nvrtcGetCUBIN);
SAME(rt_nvrtc_api, nvrtcDestroyProgram, nvrtcDestroyProgram);
SAME(rt_nvrtc_api, nvrtcGetErrorString, nvrtcGetErrorString);
SAME(rt_nvrtc_api, nvrtcGetNumSupportedArchs, nvrtcGetNumSupportedArchs);
SAME(rt_nvrtc_api, nvrtcGetSupportedArchs, nvrtcGetSupportedArchs);
SAME(rt_nvrtc_api, nvrtcGetPTXSize, nvrtcGetPTXSize);
SAME(rt_nvrtc_api, nvrtcGetPTX, nvrtcGetPTX);

SAME(rt_cublaslt_api, cublasLtGetVersion, cublasLtGetVersion);
SAME(rt_cublaslt_api, cublasLtCreate, cublasLtCreate);
SAME(rt_cublaslt_api, cublasLtDestroy, cublasLtDestroy);
SAME(rt_cublaslt_api, cublasLtGetStatusString, cublasLtGetStatusString);
SAME(rt_cublaslt_api, cublasLtMatmulDescCreate, cublasLtMatmulDescCreate);
SAME(rt_cublaslt_api, cublasLtMatmulDescDestroy, cublasLtMatmulDescDestroy);
SAME(rt_cublaslt_api, cublasLtMatmulDescSetAttribute, cublasLtMatmulDescSetAttribute);
SAME(rt_cublaslt_api, cublasLtMatrixLayoutCreate, cublasLtMatrixLayoutCreate);
SAME(rt_cublaslt_api, cublasLtMatrixLayoutDestroy, cublasLtMatrixLayoutDestroy);
SAME(rt_cublaslt_api, cublasLtMatrixLayoutSetAttribute, cublasLtMatrixLayoutSetAttribute);
SAME(rt_cublaslt_api, cublasLtMatmulPreferenceCreate, cublasLtMatmulPreferenceCreate);
SAME(rt_cublaslt_api, cublasLtMatmulPreferenceDestroy, cublasLtMatmulPreferenceDestroy);
SAME(rt_cublaslt_api, cublasLtMatmulPreferenceSetAttribute, cublasLtMatmulPreferenceSetAttribute);
SAME(rt_cublaslt_api, cublasLtMatmulAlgoGetHeuristic, cublasLtMatmulAlgoGetHeuristic);
SAME(rt_cublaslt_api, cublasLtMatmul, cublasLtMatmul);

// ---- the structs we lay out ourselves
_Static_assert(sizeof(rt_cublasLtMatmulAlgoLayout) == sizeof(cublasLtMatmulAlgo_t), "algo size");
_Static_assert(sizeof(rt_cublasLtMatmulHeuristicResultLayout) == sizeof(cublasLtMatmulHeuristicResult_t), "heuristic size");
#define SAME_OFFSET(field)                                                                          \
    _Static_assert(offsetof(rt_cublasLtMatmulHeuristicResultLayout, field) ==                        \
                   offsetof(cublasLtMatmulHeuristicResult_t, field), "heuristic result ." #field " offset")
SAME_OFFSET(algo);
SAME_OFFSET(workspaceSize);
SAME_OFFSET(state);
SAME_OFFSET(wavesCount);

// ---- enum values
#define SAME_VALUE(ours, real) _Static_assert((long)(ours) == (long)(real), #ours " is not " #real)
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
SAME_VALUE(RT_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
SAME_VALUE(RT_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
SAME_VALUE(RT_CUDA_ERROR_OUT_OF_MEMORY, CUDA_ERROR_OUT_OF_MEMORY);
SAME_VALUE(RT_CUDA_ERROR_NOT_READY, CUDA_ERROR_NOT_READY);
SAME_VALUE(RT_CU_STREAM_NON_BLOCKING, CU_STREAM_NON_BLOCKING);
SAME_VALUE(RT_CU_EVENT_DISABLE_TIMING, CU_EVENT_DISABLE_TIMING);
SAME_VALUE(RT_CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32F);
SAME_VALUE(RT_CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_COMPUTE_32F_FAST_TF32);
SAME_VALUE(RT_CUDA_R_32F, CUDA_R_32F);
SAME_VALUE(RT_CUDA_R_16F, CUDA_R_16F);
SAME_VALUE(RT_CUDA_R_16BF, CUDA_R_16BF);
SAME_VALUE(RT_CUBLAS_OP_N, CUBLAS_OP_N);
SAME_VALUE(RT_CUBLAS_OP_T, CUBLAS_OP_T);
SAME_VALUE(RT_CUBLASLT_MATMUL_DESC_TRANSA, CUBLASLT_MATMUL_DESC_TRANSA);
SAME_VALUE(RT_CUBLASLT_MATMUL_DESC_TRANSB, CUBLASLT_MATMUL_DESC_TRANSB);
SAME_VALUE(RT_CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_MATMUL_DESC_EPILOGUE);
SAME_VALUE(RT_CUBLASLT_MATMUL_DESC_BIAS_POINTER, CUBLASLT_MATMUL_DESC_BIAS_POINTER);
SAME_VALUE(RT_CUBLASLT_EPILOGUE_DEFAULT, CUBLASLT_EPILOGUE_DEFAULT);
SAME_VALUE(RT_CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_BIAS);
SAME_VALUE(RT_CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT);
SAME_VALUE(RT_CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET);
SAME_VALUE(RT_CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
SAME_VALUE(RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
SAME_VALUE(RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
SAME_VALUE(RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
SAME_VALUE(RT_CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
