// softmax.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_softmax {
#include "../../Sources/Kernels/cuda/softmax.cu"
}

EMU_KERNEL("softmax.cu", k_softmax, masked_softmax_forward, 0)
EMU_KERNEL("softmax.cu", k_softmax, masked_scores, 0)
EMU_KERNEL("softmax.cu", k_softmax, masked_softmax_backward, 0)
