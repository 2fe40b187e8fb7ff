// gru_cell.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_gru_cell {
#include "../../Sources/Kernels/cuda/gru_cell.cu"
}

EMU_INDEPENDENT_KERNEL("gru_cell.cu", k_gru_cell, gru_cell_forward)
EMU_INDEPENDENT_KERNEL("gru_cell.cu", k_gru_cell, gru_cell_backward)
