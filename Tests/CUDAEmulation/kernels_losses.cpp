// losses.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_losses {
#include "../../Sources/Kernels/cuda/losses.cu"
}

EMU_KERNEL("losses.cu", k_losses, count_valid_labels, 0)
EMU_KERNEL("losses.cu", k_losses, cross_entropy_rows, 0)
EMU_KERNEL("losses.cu", k_losses, soft_cross_entropy_rows, 0)
EMU_KERNEL("losses.cu", k_losses, mse_partial, 0)
EMU_KERNEL("losses.cu", k_losses, cosine_rows, 0)
EMU_KERNEL("losses.cu", k_losses, mean_finish, 0)
EMU_KERNEL("losses.cu", k_losses, mean_finish_double, 0)
