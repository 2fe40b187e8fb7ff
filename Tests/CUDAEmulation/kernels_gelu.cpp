// gelu.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_gelu {
#include "../../Sources/Kernels/cuda/gelu.cu"
}

EMU_INDEPENDENT_KERNEL("gelu.cu", k_gelu, gelu_forward)
EMU_INDEPENDENT_KERNEL("gelu.cu", k_gelu, gelu_backward)
