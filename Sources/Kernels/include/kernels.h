// Kernels: Retort's hand-written compute kernels.
//   cpu/*.c   — the CPU kernels (this header), parallel over rows/heads/columns on a pthread pool,
//               vectorised with AVX-512 / AVX2 / baseline clones picked at load time.
//   cuda/*.cu — CUDA C kernels, embedded as strings (rt_cuda_sources) and compiled by NVRTC.
// Conventions: outputs first, then inputs, then sizes. Row-major. Dimension letters: B batch,
// T sequence, C channels, NH heads, HS head size (C = NH·HS), R LoRA rank, N rows, V classes.
// Input gradients are overwritten unless a comment says "accumulates"; parameter gradients
// (dweight, dbias, dword, dA, dB, …) always accumulate.
#pragma once
#include <stddef.h>
#include <stdint.h>

// ------------------------------------------------------------------ thread pool (cpu/parallel.c)
typedef void (*rt_task)(void *ctx, int64_t begin, int64_t end, int thread);
// Runs task over [0, n) in chunks of `grain` items on the pool (the caller takes part). Chunk
// boundaries depend only on n and grain, so results never depend on the thread count.
void rt_parallel_for(int64_t n, int64_t grain, rt_task task, void *ctx);
int rt_num_threads(void);
void rt_set_num_threads(int threads);   // before first use; default: CPUs we may run on, or $RETORT_NUM_THREADS
// Runs task(ctx, lane, lane + 1, thread) for each of `lanes` independent lanes at once: the pool's
// threads split into min(lanes, threads) teams, each led by one thread that runs its lanes in
// turn; the rt_parallel_for calls a lane makes run on its team's threads alone. (Nested in a pool
// job, or on one thread: the lanes run one after another.) For work too fine-grained to split
// well, such as a recurrent layer's directions, step by step.
void rt_parallel_teams(int lanes, rt_task task, void *ctx);
// Threads an rt_parallel_for called here would use: the pool's, a team's, or 1 inside a chunk.
int rt_current_threads(void);
// A lane's team size inside rt_parallel_teams (its leader's thread), else 0.
int rt_lane_threads(void);
// A grow-only, 64-byte aligned scratch buffer owned by pool thread `thread` (slot 0..15). It
// allocates only when a larger size than ever before is asked for.
void *rt_thread_scratch(int thread, int slot, size_t bytes);
// The same for the thread calling a kernel (outside its parallel chunks): thread 0's slots for a
// caller, a lane leader's own where the caller leads a team (rt_parallel_teams).
void *rt_caller_scratch(int slot, size_t bytes);

// Instruction-set level of the CPU kernels: 4 = x86-64-v4 (AVX-512), 3 = x86-64-v3 (AVX2+FMA),
// 1 = baseline. Default: the best this CPU supports, capped by $RETORT_CPU_LEVEL.
int rt_cpu_level(void);
int rt_cpu_level_supported(void);
// Sets the level (capped at what the CPU supports) and returns the level in effect.
int rt_set_cpu_level(int level);

// ------------------------------------------------------------------ memory (cpu/memory.c)
void rt_fill(float *x, int64_t n, float value);
void rt_scale(float *x, int64_t n, float factor);                       // x *= factor
void rt_axpy(float *y, const float *x, int64_t n, float alpha);          // y += alpha·x
void rt_sum_squares(float *out, const float *x, int64_t n);              // out[0] = Σ x² (double accumulation)
void rt_cast_f32_to_bf16(uint16_t *out, const float *x, int64_t n);      // round to nearest even
void rt_cast_bf16_to_f32(float *out, const uint16_t *x, int64_t n);
void rt_cast_f32_to_f16(uint16_t *out, const float *x, int64_t n);
void rt_cast_f16_to_f32(float *out, const uint16_t *x, int64_t n);

// ------------------------------------------------------------------ small-M GEMM (cpu/split_gemm.c)
// A row-major BLAS sgemm entry (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
// called single-threaded on column blocks of C from the pool (or from a lane's team).
typedef void (*rt_sgemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
void rt_split_gemm(rt_sgemm_fn gemm, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc);

// ------------------------------------------------------------------ weight-row GEMM (cpu/rows_gemm.c)
// C[M,N] (row stride ldc) = alpha·A·Wᵀ + beta·C for A[M,K] (row stride lda) and a weight W[N,K]
// (row stride ldw) read in place, no packing: the few-row products of inference and recurrent
// steps. beta 0 ignores C's old values.
void rt_sgemm_rows(float *C, int ldc, const float *A, int lda, const float *W, int ldw, int M, int N, int K, float alpha,
                   float beta);

// ------------------------------------------------------------------ packed-weight GEMM (cpu/packed_gemm.c)
// A weight multiplied many times by a few rows (a recurrent layer's W_hh, every step): packed once
// into panels of 16 output channels ([K][16] each, 0 past N; rt_packed_weight_count floats) from
// W [N,K] (trans 0, C = A·Wᵀ) or W [K,N] (trans 1, C = A·W), rows ldw apart; then
// C[M,N] (row stride ldc) = (A[M,K]·op(W) + beta·C) + bias per product (beta 0 ignores C's old
// values; bias [N] or NULL, added as each tile is stored).
int64_t rt_packed_weight_count(int N, int K);
void rt_pack_weight(float *P, const float *W, int ldw, int N, int K, int trans);
void rt_sgemm_packed(float *C, int ldc, const float *A, int lda, const float *P, const float *bias, int M, int N, int K, float beta);

// ------------------------------------------------------------------ int8 linear (cpu/int8_linear.c)
// Symmetric int8 in [−127, 127]: q[M, ldq] (columns K … ldq−1 zero), scale[M] = max|x[m,:]|/127,
// q = round-half-even(x·127/max|x|) — per row of activations, or per output channel of a weight.
void rt_quantize_rows_i8(int8_t *q, float *scale, const float *x, int64_t M, int K, int ldx, int ldq);
// x[M,K] = q[m,k]·scale[m] (the values a quantized row stands for).
void rt_dequantize_rows_i8(float *x, const int8_t *q, const float *scale, int64_t M, int K);
// W[N,K] int8 re-laid for rt_int8_linear (wp: rt_int8_packed_bytes(N, K) bytes; wsum: 16·⌈N/16⌉ int32).
int64_t rt_int8_packed_bytes(int N, int K);
void rt_int8_pack_weight(int8_t *wp, int32_t *wsum, const int8_t *W, int N, int K);
// y[M,N] (row stride ldy) = fma(float(Σ_k q[m,k]·W[n,k])·scale[m], wscale[n], bias[n]), the rows of
// x[M, ldx] quantized by rt_quantize_rows_i8 first; bias may be NULL. Exact int32 sums on every path.
void rt_int8_linear(float *y, int ldy, const float *x, int ldx, int M, int K, const int8_t *wp, const float *wscale,
                    const int32_t *wsum, const float *bias, int N);
// Weight-only int8: y[M,N] = fma(Σ_k x[m,k]·W[n,k] in fp32, wscale[n], bias[n]) at a few rows, past
// them Σ_k x[m,k]·(W[n,k]·wscale[n]) + bias[n] (the dequantized weight's product); W[N,K] int8 as stored.
void rt_int8_weight_linear(float *y, int ldy, const float *x, int ldx, int M, int K, const int8_t *W, const float *wscale,
                           const float *bias, int N);
// The path rt_int8_linear takes here: "avx512-vnni", "avx2" or "portable".
const char *rt_int8_path(void);

// ------------------------------------------------------------------ bias (cpu/bias.c)
void rt_bias_add(float *out, const float *bias, int64_t N, int C);       // out[N,C] += bias[C]
void rt_bias_backward(float *dbias, const float *dout, int64_t N, int C); // dbias[C] += Σ_n dout[n,:]

// ------------------------------------------------------------------ embedding (cpu/embedding.c)
// out[BT,C] = word[ids] + position[positions] + type[types] (types/type may be NULL).
// Ids outside [0, V) (positions outside [0, P), types outside [0, TT)) contribute zeros.
void rt_embedding_forward(float *out, const int32_t *ids, const int32_t *positions, const int32_t *types,
                          const float *word, const float *position, const float *type,
                          int64_t BT, int C, int V, int P, int TT);
// dword[V,C], dposition[P,C], dtype[TT,C] accumulate the rows of dout[BT,C], except rows whose
// id is word_pad (position is position_pad): torch's padding_idx, whose row never trains; −1: none.
void rt_embedding_backward(float *dword, float *dposition, float *dtype, const float *dout,
                           const int32_t *ids, const int32_t *positions, const int32_t *types,
                           int64_t BT, int C, int V, int P, int TT, int word_pad, int position_pad);

// ------------------------------------------------------------------ layer norm (cpu/layernorm.c)
// out[N,C] = (x − mean)·rstd·weight + bias; saves mean[N], rstd[N].
void rt_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                          const float *bias, int64_t N, int C, float eps);
void rt_layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                           const float *weight, const float *mean, const float *rstd, int64_t N, int C);

// ------------------------------------------------------------------ RMSNorm (cpu/rmsnorm.c)
// out[N,C] = x·rstd·weight, rstd[n] = 1/√(mean x² + eps) saved; backward overwrites dx and
// accumulates dweight (when not NULL).
void rt_rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int64_t N, int C, float eps);
void rt_rmsnorm_backward(float *dx, float *dweight, const float *dout, const float *x, const float *weight,
                         const float *rstd, int64_t N, int C);

// ------------------------------------------------------------------ decoding attention (cpu/decode_attention.c)
// One query per sequence against a KV cache [B, Tmax, NKV·HS], the first lengths[b] keys, GQA heads.
void rt_decode_attention(float *out, const float *q, const float *k_cache, const float *v_cache, const int32_t *lengths,
                         int B, int NH, int NKV, int HS, int Tmax, float scale);

// ------------------------------------------------------------------ RoPE (cpu/rope.c)
// Rotates each (i, i + HS/2) pair of every head by positions[r]·inv_freq[i]·sign (sign −1: backward).
void rt_rope(float *out, const float *x, const int32_t *positions, const float *inv_freq, int64_t BT, int NH, int HS, float sign);

// ------------------------------------------------------------------ SwiGLU (cpu/swiglu.c)
// out = silu(gate)·up; backward overwrites dgate and dup.
void rt_swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void rt_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

// ------------------------------------------------------------------ GELU (cpu/gelu.c)
// erf form (BERT), or tanh_form ≠ 0: GPT-2's tanh approximation ("gelu_new").
void rt_gelu_forward(float *out, const float *x, int64_t n, int tanh_form);
void rt_gelu_backward(float *dx, const float *dout, const float *x, int64_t n, int tanh_form);

// ------------------------------------------------------------------ tanh (cpu/tanh.c)
void rt_tanh_forward(float *out, const float *x, int64_t n);
void rt_tanh_backward(float *dx, const float *dout, const float *out, int64_t n);   // from the output

// ------------------------------------------------------------------ recurrent cells (cpu/lstm_cell.c, gru_cell.c, rnn_cell.c)
// One time step t of a recurrent layer over B sequences of hidden size H (torch's gate orders:
// LSTM i,f,g,o; GRU r,z,n); sequence b is valid for t < lengths[b]: a padded step carries the state
// and outputs 0. xg, hg [B,G·H]: the input's and the previous state's pre-activations (biases in);
// y: the output h, rows ldy apart. Backward overwrites dxg (dhg: GRU's gradient through hg),
// dhprev (the direct part; the caller adds dxg·W_hh, or dhg·W_hh) and dcprev. Details per file.
void rt_lstm_cell_forward(float *h, float *c, float *y, float *gates, const float *xg, const float *hg, const float *hprev,
                          const float *cprev, const int32_t *lengths, int64_t t, int B, int H, int64_t ldy);
void rt_lstm_cell_backward(float *dxg, float *dhprev, float *dcprev, const float *dy, const float *dh, const float *dc,
                           const float *gates, const float *c, const float *cprev, const int32_t *lengths, int64_t t, int B, int H,
                           int64_t ldy);
void rt_gru_cell_forward(float *h, float *y, float *saved, const float *xg, const float *hg, const float *hprev,
                         const int32_t *lengths, int64_t t, int B, int H, int64_t ldy);
void rt_gru_cell_backward(float *dxg, float *dhg, float *dhprev, const float *dy, const float *dh, const float *saved,
                          const float *hprev, const int32_t *lengths, int64_t t, int B, int H, int64_t ldy);
void rt_rnn_cell_forward(float *h, float *y, const float *xg, const float *hg, const float *hprev, const int32_t *lengths,
                         int64_t t, int B, int H, int64_t ldy);
void rt_rnn_cell_backward(float *dxg, float *dhprev, const float *dy, const float *dh, const float *h, const int32_t *lengths,
                          int64_t t, int B, int H, int64_t ldy);

// ------------------------------------------------------------------ sequence pooling (cpu/sequence_pool.c)
// out[B,C] from time-major y[T,B,C] over each sequence's lengths[b] steps: mode 0 mean, 1 max
// (argmax[B,C] saved), 2 last (columns < split: step len−1; columns ≥ split: step 0). Backward
// overwrites dy.
void rt_sequence_pool_forward(float *out, int32_t *argmax, const float *y, const int32_t *lengths, int T, int B, int C, int mode,
                              int split);
void rt_sequence_pool_backward(float *dy, const float *dout, const int32_t *argmax, const int32_t *lengths, int T, int B, int C,
                               int mode, int split);

// ------------------------------------------------------------------ dropout (cpu/dropout.c)
// out = x·keep/(1 − p), keep = rt_dropout_keep(seed, offset + i, p); also the backward (same seed).
void rt_dropout(float *out, const float *x, int64_t n, float p, uint64_t seed, uint64_t offset);

// ------------------------------------------------------------------ masked softmax (cpu/softmax.c)
// The unfused attention path. probs[B,NH,T,T] = softmax over keys j with mask[b,j] ≠ 0 of
// scores + bias[h] (mask, bias may be NULL); a row with no valid key is all zeros. lse[B,NH,T]
// (may be NULL): the log-sum-exp of each row over its valid keys (+inf when it has none).
void rt_masked_softmax_forward(float *probs, float *lse, const float *scores, const int32_t *mask, const float *bias,
                               int B, int NH, int T, int causal);
// scores[B,NH,T,T] += bias[h], then 0 at keys j with mask[b,j] = 0, in place (mask, bias may be NULL).
// causal ≠ 0 (both): keys j > i are masked too.
void rt_masked_scores(float *scores, const int32_t *mask, const float *bias, int B, int NH, int T, int causal);
// dscores[rows,T] = probs ⊙ (dprobs − Σ_j probs·dprobs)
void rt_masked_softmax_backward(float *dscores, const float *dprobs, const float *probs, int64_t rows, int T);

// ------------------------------------------------------------------ fused attention (cpu/attention.c)
// q, out: [B,T,NH·HS] (head h in columns h·HS…); k, v: [B,T,NKV·HS], query head h reads key/value
// head h/(NH/NKV) (grouped-query attention; NKV = NH: multi-head). mask: [B,T] key mask (1 keep,
// 0 pad) or NULL. bias: [NH,T,T] additive (e.g. MPNet's relative position bias) or NULL.
// causal ≠ 0: query i sees keys j ≤ i only.
// out = softmax(scale·q·kᵀ + bias, keys masked)·v. lse[B,NH,T]: log-sum-exp per query row, saved
// for backward (+inf where a row has no valid key; such rows output zeros).
// scores (optional, [B,NH,T,T]): the pre-softmax scores scale·q·kᵀ + bias, 0 at masked keys
// (TinyBERT's attention-distillation target).
// dropout > 0 drops attention probabilities (training; inverted, mask from
// rt_dropout_keep(seed, ((b·NH + h)·T + i)·T + j)); lse stays that of the undropped softmax.
void rt_attention_forward(float *out, float *lse, float *scores, const float *q, const float *k, const float *v,
                          const int32_t *mask, const float *bias, int B, int T, int NH, int NKV, int HS, int causal,
                          float scale, float dropout, uint64_t seed);
// TinyBERT's attention-score distillation target: another model's pre-softmax scores for the same
// batch, mask and heads, scale·q·kᵀ + bias (0 at masked keys), from its q, k [B,T,NH·HS] and
// bias [NH,T,T] (or NULL). weight scales the gradient a backward adds: weight·(S − S_target).
typedef struct {
    const float *q, *k, *bias;
    int HS;
    float scale, weight;
} rt_score_target;
// dq, dk, dv overwritten (dk, dv [B,T,NKV·HS]); dbias [NH,T,T] accumulates (may be NULL). dscores (optional,
// [B,NH,T,T]) is a gradient flowing into the pre-softmax scores from a distillation loss;
// target (optional) adds target->weight·(S − S_target), recomputed tile by tile.
void rt_attention_backward(float *dq, float *dk, float *dv, float *dbias, const float *dout, const float *dscores,
                           const rt_score_target *target, const float *out, const float *lse, const float *q,
                           const float *k, const float *v, const int32_t *mask, const float *bias, int B, int T,
                           int NH, int NKV, int HS, int causal, float scale, float dropout, uint64_t seed);
// loss[0] = mean over [B,NH,T,T] of (S − S_target)², S = scale·q·kᵀ + bias (0 at masked keys),
// tile by tile (cpu/attention_score_loss.c); target->weight is not used.
void rt_attention_score_loss(float *loss, const float *q, const float *k, const int32_t *mask, const float *bias,
                             const rt_score_target *target, int B, int T, int NH, int HS, float scale);

// ------------------------------------------------------------------ LoRA branch (cpu/lora.c)
// y[N,Out] += scale·(drop(x)·Aᵀ)·Bᵀ, with A [R,In], B [Out,R]; xa[N,R] = drop(x)·Aᵀ is saved.
// drop(x) is inverted dropout with probability p, mask = rt_dropout_keep(seed, n·In + i).
void rt_lora_forward(float *y, float *xa, const float *x, const float *A, const float *B,
                     int64_t N, int In, int Out, int R, float scale, float p, uint64_t seed);
// dx[N,In] accumulates (the base layer's input gradient is already there); dA, dB accumulate.
void rt_lora_backward(float *dx, float *dA, float *dB, const float *dy, const float *x, const float *xa,
                      const float *A, const float *B, int64_t N, int In, int Out, int R,
                      float scale, float p, uint64_t seed);
// Counter-based dropout mask shared by CPU and CUDA: 1 when element `index` is kept.
int rt_dropout_keep(uint64_t seed, uint64_t index, float p);

// ------------------------------------------------------------------ losses (cpu/losses.c)
// Each writes a scalar mean loss to loss[0] and, when the gradient pointer is not NULL, the
// gradient of grad_scale·loss (overwriting it).
// Cross-entropy over rows whose label is in [0, V) (others are ignored: loss and gradient 0).
void rt_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *labels,
                      int64_t N, int V, float grad_scale);
// Soft cross-entropy at temperature T: mean over rows of −Σ_j softmax(teacher/T)_j·log softmax(logits/T)_j.
void rt_soft_cross_entropy(float *loss, float *dlogits, const float *logits, const float *teacher,
                           int64_t N, int V, float temperature, float grad_scale);
// Mean squared error over n elements: Σ (a − b)² / n.
void rt_mse(float *loss, float *da, const float *a, const float *b, int64_t n, float grad_scale);
// Mean over rows of 1 − cos(a_n, b_n), a and b [N,C].
void rt_cosine(float *loss, float *da, const float *a, const float *b, int64_t N, int C, float grad_scale);

// ------------------------------------------------------------------ AdamW (cpu/adamw.c)
// Decoupled weight decay and bias correction (step counts from 1), as torch.optim.AdamW:
// p −= lr·(wd·p + m̂/(√v̂ + eps)). Hyper-parameters in double: coefficients such as 1 − β2 are
// formed in double and rounded once, as torch does.
void rt_adamw(float *params, const float *grads, float *m, float *v, int64_t n, double lr, double beta1,
              double beta2, double eps, double weight_decay, int64_t step);

// ------------------------------------------------------------------ CUDA C sources (cuda_sources.c)
typedef struct { const char *name; const char *source; } rt_cuda_source;
int rt_cuda_source_count(void);
const rt_cuda_source *rt_cuda_source_at(int index);   // NULL when out of range
const rt_cuda_source *rt_cuda_common_header(void);    // cuda/common.cuh, #included by every kernel
