// The kernel sources the emulated device was built from, for its NVRTC to compare with what it
// is asked to compile (the same files Sources/Kernels/cuda_sources.c embeds into Retort).
#include <stddef.h>

static const char common_cuh[] = {
#embed "../../Sources/Kernels/cuda/common.cuh"
    , 0 };
static const char adamw_cu[] = {
#embed "../../Sources/Kernels/cuda/adamw.cu"
    , 0 };
static const char attention_cu[] = {
#embed "../../Sources/Kernels/cuda/attention.cu"
    , 0 };
static const char attention_tc_cu[] = {
#embed "../../Sources/Kernels/cuda/attention_tc.cu"
    , 0 };
static const char bias_cu[] = {
#embed "../../Sources/Kernels/cuda/bias.cu"
    , 0 };
static const char decode_attention_cu[] = {
#embed "../../Sources/Kernels/cuda/decode_attention.cu"
    , 0 };
static const char dropout_cu[] = {
#embed "../../Sources/Kernels/cuda/dropout.cu"
    , 0 };
static const char embedding_cu[] = {
#embed "../../Sources/Kernels/cuda/embedding.cu"
    , 0 };
static const char gelu_cu[] = {
#embed "../../Sources/Kernels/cuda/gelu.cu"
    , 0 };
static const char int8_linear_cu[] = {
#embed "../../Sources/Kernels/cuda/int8_linear.cu"
    , 0 };
static const char layernorm_cu[] = {
#embed "../../Sources/Kernels/cuda/layernorm.cu"
    , 0 };
static const char lora_cu[] = {
#embed "../../Sources/Kernels/cuda/lora.cu"
    , 0 };
static const char losses_cu[] = {
#embed "../../Sources/Kernels/cuda/losses.cu"
    , 0 };
static const char memory_cu[] = {
#embed "../../Sources/Kernels/cuda/memory.cu"
    , 0 };
static const char rope_cu[] = {
#embed "../../Sources/Kernels/cuda/rope.cu"
    , 0 };
static const char rmsnorm_cu[] = {
#embed "../../Sources/Kernels/cuda/rmsnorm.cu"
    , 0 };
static const char softmax_cu[] = {
#embed "../../Sources/Kernels/cuda/softmax.cu"
    , 0 };
static const char swiglu_cu[] = {
#embed "../../Sources/Kernels/cuda/swiglu.cu"
    , 0 };
static const char tanh_cu[] = {
#embed "../../Sources/Kernels/cuda/tanh.cu"
    , 0 };

static const char gru_cell_cu[] = {
#embed "../../Sources/Kernels/cuda/gru_cell.cu"
    , 0 };
static const char lstm_cell_cu[] = {
#embed "../../Sources/Kernels/cuda/lstm_cell.cu"
    , 0 };
static const char rnn_cell_cu[] = {
#embed "../../Sources/Kernels/cuda/rnn_cell.cu"
    , 0 };
static const char sequence_pool_cu[] = {
#embed "../../Sources/Kernels/cuda/sequence_pool.cu"
    , 0 };

static const struct { const char *name, *text; } sources[] = {
    {"common.cuh", common_cuh}, {"adamw.cu", adamw_cu}, {"attention.cu", attention_cu}, {"attention_tc.cu", attention_tc_cu},
    {"bias.cu", bias_cu}, {"decode_attention.cu", decode_attention_cu}, {"dropout.cu", dropout_cu}, {"embedding.cu", embedding_cu}, {"gelu.cu", gelu_cu},
    {"int8_linear.cu", int8_linear_cu}, {"layernorm.cu", layernorm_cu}, {"lora.cu", lora_cu}, {"losses.cu", losses_cu}, {"memory.cu", memory_cu},
    {"rmsnorm.cu", rmsnorm_cu}, {"rope.cu", rope_cu}, {"softmax.cu", softmax_cu}, {"swiglu.cu", swiglu_cu},
    {"tanh.cu", tanh_cu}, {"gru_cell.cu", gru_cell_cu}, {"lstm_cell.cu", lstm_cell_cu}, {"rnn_cell.cu", rnn_cell_cu}, {"sequence_pool.cu", sequence_pool_cu},
};

int rt_emulated_cuda_source_count(void) { return (int)(sizeof sources / sizeof sources[0]); }
const char *rt_emulated_cuda_source_name(int i) { return sources[i].name; }
const char *rt_emulated_cuda_source_text(int i) { return sources[i].text; }
