// rope.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_rope {
#include "../../Sources/Kernels/cuda/rope.cu"
}

EMU_INDEPENDENT_KERNEL("rope.cu", k_rope, rope)
