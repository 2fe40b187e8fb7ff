// The CUDA C kernels of cuda/*.cu, embedded at build time (C23 #embed) for NVRTC to compile at
// run time. Add a kernel file here to ship it; Tests/BackendTests compile every entry.
#include "kernels.h"

static const char gelu_cu[] = {
#embed "cuda/gelu.cu"
    , 0
};
static const char layernorm_cu[] = {
#embed "cuda/layernorm.cu"
    , 0
};

static const rt_cuda_source sources[] = {
    { "gelu.cu", gelu_cu },
    { "layernorm.cu", layernorm_cu },
};
int rt_cuda_source_count(void) { return (int)(sizeof sources / sizeof sources[0]); }
const rt_cuda_source *rt_cuda_source_at(int index) {
    return index >= 0 && index < rt_cuda_source_count() ? &sources[index] : NULL;
}
