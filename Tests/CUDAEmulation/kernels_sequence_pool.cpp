// sequence_pool.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_sequence_pool {
#include "../../Sources/Kernels/cuda/sequence_pool.cu"
}

EMU_INDEPENDENT_KERNEL("sequence_pool.cu", k_sequence_pool, sequence_pool_forward)
EMU_INDEPENDENT_KERNEL("sequence_pool.cu", k_sequence_pool, sequence_pool_backward)
