// embedding.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_embedding {
#include "../../Sources/Kernels/cuda/embedding.cu"
}

EMU_INDEPENDENT_KERNEL("embedding.cu", k_embedding, embedding_forward)
EMU_INDEPENDENT_KERNEL("embedding.cu", k_embedding, embedding_backward_pieces)
EMU_INDEPENDENT_KERNEL("embedding.cu", k_embedding, embedding_backward_segments)
