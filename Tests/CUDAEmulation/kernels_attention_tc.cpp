// attention_tc.cu compiled for the emulated device (kernel_api.h: the CUDA dialect on the CPU).
#include "kernel_api.h"

namespace k_attention_tc {
#include "../../Sources/Kernels/cuda/attention_tc.cu"
}

EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_forward_bf16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_query_bf16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_key_bf16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_forward_bf16_hs64, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_query_bf16_hs64, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_key_bf16_hs64, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_forward_f16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_query_f16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_key_f16_hs32, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_forward_f16_hs64, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_query_f16_hs64, 80)
EMU_KERNEL("attention_tc.cu", k_attention_tc, attention_tc_backward_key_f16_hs64, 80)
