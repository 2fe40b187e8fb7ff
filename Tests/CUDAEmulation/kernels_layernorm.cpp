// layernorm.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_layernorm {
#include "../../Sources/Kernels/cuda/layernorm.cu"
}

EMU_KERNEL("layernorm.cu", k_layernorm, layernorm_forward, 0)
EMU_KERNEL("layernorm.cu", k_layernorm, layernorm_backward_input, 0)
EMU_KERNEL("layernorm.cu", k_layernorm, layernorm_backward_partials, 0)
