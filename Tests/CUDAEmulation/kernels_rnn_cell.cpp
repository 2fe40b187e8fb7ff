// rnn_cell.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_rnn_cell {
#include "../../Sources/Kernels/cuda/rnn_cell.cu"
}

EMU_INDEPENDENT_KERNEL("rnn_cell.cu", k_rnn_cell, rnn_cell_forward)
EMU_INDEPENDENT_KERNEL("rnn_cell.cu", k_rnn_cell, rnn_cell_backward)
