// memory.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_memory {
#include "../../Sources/Kernels/cuda/memory.cu"
}

EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, fill_f32)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, scale_f32)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, axpy_f32)
EMU_KERNEL("memory.cu", k_memory, sum_squares_partial, 0)
EMU_KERNEL("memory.cu", k_memory, sum_finish, 0)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, column_sum_finish)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, cast_f32_to_bf16)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, cast_bf16_to_f32)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, cast_f32_to_f16)
EMU_INDEPENDENT_KERNEL("memory.cu", k_memory, cast_f16_to_f32)
