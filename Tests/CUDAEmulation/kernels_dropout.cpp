// dropout.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_dropout {
#include "../../Sources/Kernels/cuda/dropout.cu"
}

EMU_INDEPENDENT_KERNEL("dropout.cu", k_dropout, dropout_f32)
