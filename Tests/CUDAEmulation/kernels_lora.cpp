// lora.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_lora {
#include "../../Sources/Kernels/cuda/lora.cu"
}

EMU_KERNEL("lora.cu", k_lora, lora_forward, 0)
EMU_KERNEL("lora.cu", k_lora, lora_backward_rows, 0)
