// rmsnorm.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_rmsnorm {
#include "../../Sources/Kernels/cuda/rmsnorm.cu"
}

EMU_KERNEL("rmsnorm.cu", k_rmsnorm, rmsnorm_forward, 0)
EMU_KERNEL("rmsnorm.cu", k_rmsnorm, rmsnorm_backward_input, 0)
EMU_KERNEL("rmsnorm.cu", k_rmsnorm, rmsnorm_backward_partials, 0)
