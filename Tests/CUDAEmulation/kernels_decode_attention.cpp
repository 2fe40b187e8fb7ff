// decode_attention.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_decode_attention {
#include "../../Sources/Kernels/cuda/decode_attention.cu"
}

EMU_KERNEL("decode_attention.cu", k_decode_attention, decode_attention, 0)
EMU_KERNEL("decode_attention.cu", k_decode_attention, decode_attention_merge, 0)
