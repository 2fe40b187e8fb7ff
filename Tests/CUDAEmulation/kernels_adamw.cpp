// adamw.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_adamw {
#include "../../Sources/Kernels/cuda/adamw.cu"
}

EMU_INDEPENDENT_KERNEL("adamw.cu", k_adamw, adamw_step)
