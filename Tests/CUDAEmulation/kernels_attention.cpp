// attention.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_attention {
#include "../../Sources/Kernels/cuda/attention.cu"
}

EMU_KERNEL("attention.cu", k_attention, attention_forward, 0)
EMU_KERNEL("attention.cu", k_attention, attention_backward_query, 0)
EMU_KERNEL("attention.cu", k_attention, attention_backward_key, 0)
EMU_KERNEL("attention.cu", k_attention, attention_score_loss_rows, 0)
