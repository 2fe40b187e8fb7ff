// bias.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_bias {
#include "../../Sources/Kernels/cuda/bias.cu"
}

EMU_INDEPENDENT_KERNEL("bias.cu", k_bias, bias_add)
EMU_KERNEL("bias.cu", k_bias, bias_backward_partials, 0)
