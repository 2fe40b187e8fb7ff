// tanh.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_tanh {
#include "../../Sources/Kernels/cuda/tanh.cu"
}

EMU_INDEPENDENT_KERNEL("tanh.cu", k_tanh, tanh_forward)
EMU_INDEPENDENT_KERNEL("tanh.cu", k_tanh, tanh_backward)
