// The CUDA C kernels of cuda/*.cu, embedded at build time (C23 #embed) for NVRTC to compile at
// run time, and the header they share (cuda/common.cuh, handed to NVRTC as an in-memory
// include). Add a kernel file here to ship it; Tests/BackendTests compile every entry.
#include "kernels.h"

static const char common_cuh[] = {
#embed "cuda/common.cuh"
    , 0
};
static const char adamw_cu[] = {
#embed "cuda/adamw.cu"
    , 0
};
static const char attention_cu[] = {
#embed "cuda/attention.cu"
    , 0
};
static const char attention_tc_cu[] = {
#embed "cuda/attention_tc.cu"
    , 0
};
static const char bias_cu[] = {
#embed "cuda/bias.cu"
    , 0
};
static const char decode_attention_cu[] = {
#embed "cuda/decode_attention.cu"
    , 0
};
static const char dropout_cu[] = {
#embed "cuda/dropout.cu"
    , 0
};
static const char embedding_cu[] = {
#embed "cuda/embedding.cu"
    , 0
};
static const char gelu_cu[] = {
#embed "cuda/gelu.cu"
    , 0
};
static const char int8_linear_cu[] = {
#embed "cuda/int8_linear.cu"
    , 0
};
static const char layernorm_cu[] = {
#embed "cuda/layernorm.cu"
    , 0
};
static const char lora_cu[] = {
#embed "cuda/lora.cu"
    , 0
};
static const char losses_cu[] = {
#embed "cuda/losses.cu"
    , 0
};
static const char memory_cu[] = {
#embed "cuda/memory.cu"
    , 0
};
static const char rope_cu[] = {
#embed "cuda/rope.cu"
    , 0
};
static const char rmsnorm_cu[] = {
#embed "cuda/rmsnorm.cu"
    , 0
};
static const char softmax_cu[] = {
#embed "cuda/softmax.cu"
    , 0
};
static const char swiglu_cu[] = {
#embed "cuda/swiglu.cu"
    , 0
};
static const char tanh_cu[] = {
#embed "cuda/tanh.cu"
    , 0
};

static const char gru_cell_cu[] = {
#embed "cuda/gru_cell.cu"
    , 0
};
static const char lstm_cell_cu[] = {
#embed "cuda/lstm_cell.cu"
    , 0
};
static const char rnn_cell_cu[] = {
#embed "cuda/rnn_cell.cu"
    , 0
};
static const char sequence_pool_cu[] = {
#embed "cuda/sequence_pool.cu"
    , 0
};

static const rt_cuda_source sources[] = {
    { "adamw.cu", adamw_cu },
    { "attention.cu", attention_cu },
    { "attention_tc.cu", attention_tc_cu },
    { "bias.cu", bias_cu },
    { "decode_attention.cu", decode_attention_cu },
    { "dropout.cu", dropout_cu },
    { "embedding.cu", embedding_cu },
    { "gelu.cu", gelu_cu },
    { "int8_linear.cu", int8_linear_cu },
    { "layernorm.cu", layernorm_cu },
    { "lora.cu", lora_cu },
    { "losses.cu", losses_cu },
    { "memory.cu", memory_cu },
    { "rmsnorm.cu", rmsnorm_cu },
    { "rope.cu", rope_cu },
    { "softmax.cu", softmax_cu },
    { "swiglu.cu", swiglu_cu },
    { "tanh.cu", tanh_cu },
    { "gru_cell.cu", gru_cell_cu },
    { "lstm_cell.cu", lstm_cell_cu },
    { "rnn_cell.cu", rnn_cell_cu },
    { "sequence_pool.cu", sequence_pool_cu },
};
int rt_cuda_source_count(void) { return (int)(sizeof sources / sizeof sources[0]); }
const rt_cuda_source *rt_cuda_source_at(int index) {
    return index >= 0 && index < rt_cuda_source_count() ? &sources[index] : NULL;
}
const rt_cuda_source *rt_cuda_common_header(void) {
    static const rt_cuda_source header = { "common.cuh", common_cuh };
    return &header;
}
