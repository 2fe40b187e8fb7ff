// Runs CUDA kernel sources on the CPU under a warp emulator (see emulator.cpp), so kernels that
// need a GPU to run at all can still be checked against the CPU backend by the test suite.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// attention_tc.cu's kernels (half = 0: bf16, 1: fp16; HS 32 or 64), launched as the CUDA backend
// launches them (k, v, dk, dv [B,T,NKV·HS]; causal ≠ 0: keys j ≤ i). Returns 0, or −1 for an
// unsupported head size.
int rt_emulated_attention_tc_forward(int half, float *out, float *lse, const float *q, const float *k, const float *v,
                                     const int32_t *mask, const float *bias, int B, int T, int NH, int NKV, int HS,
                                     int causal, float scale, float dropout, uint64_t seed);
// dq, dk, dv overwritten; dbias accumulated; D: [B·NH·T] scratch.
int rt_emulated_attention_tc_backward(int half, float *dq, float *dk, float *dv, float *dbias, float *D,
                                      const float *dout, const float *out, const float *lse, const float *q,
                                      const float *k, const float *v, const int32_t *mask, const float *bias, int B,
                                      int T, int NH, int NKV, int HS, int causal, float scale, float dropout,
                                      uint64_t seed);

#ifdef __cplusplus
}
#endif
