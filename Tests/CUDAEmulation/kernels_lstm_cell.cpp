// lstm_cell.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_lstm_cell {
#include "../../Sources/Kernels/cuda/lstm_cell.cu"
}

EMU_INDEPENDENT_KERNEL("lstm_cell.cu", k_lstm_cell, lstm_cell_forward)
EMU_INDEPENDENT_KERNEL("lstm_cell.cu", k_lstm_cell, lstm_cell_backward)
