// int8_linear.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_int8_linear {
#include "../../Sources/Kernels/cuda/int8_linear.cu"
}

EMU_KERNEL("int8_linear.cu", k_int8_linear, int8_quantize_rows, 0)
EMU_KERNEL("int8_linear.cu", k_int8_linear, int8_linear, 0)
EMU_KERNEL("int8_linear.cu", k_int8_linear, int8_weight_linear, 0)
