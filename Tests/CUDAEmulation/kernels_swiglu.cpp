// swiglu.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_swiglu {
#include "../../Sources/Kernels/cuda/swiglu.cu"
}

EMU_INDEPENDENT_KERNEL("swiglu.cu", k_swiglu, swiglu_forward)
EMU_INDEPENDENT_KERNEL("swiglu.cu", k_swiglu, swiglu_backward)
