// Tensor-core flash attention, forward and backward: bf16 or fp16 operands, fp32 accumulation
// (mma.sync m16n8k16, sm_80 and later; the file is empty below sm_80). The same semantics and
// arguments as attention.cu's fp32 kernels, without the optional `scores` output and the
// score-gradient inputs (the backend takes attention.cu when those are asked for):
//   q, out, dq, dout: [B,T,NH·HS]; k, v, dk, dv: [B,T,NKV·HS] (query head h reads key/value head
//   h/(NH/NKV)); fp32 in memory, rounded to bf16/fp16 as they are staged in shared memory; S, P,
//   O, dP, dS and the gradients accumulate in fp32 registers. causal ≠ 0: query i sees keys j ≤ i.
//   mask: [B,T] key mask (0 = padded key) or NULL      bias, dbias: [NH,T,T] or NULL
//   lse: [B,NH,T] (+inf: no valid key; the row outputs zeros)    D: [B,NH,T], D_i = dout_i·out_i
//   dropout on the probabilities: inverted, mask rt_keep(key(seed), ((b·NH+h)·T+i)·T+j)
//   HS = 32 or 64 (one kernel each), any T.
// Launch: 128 threads (4 warps) per block; a block owns 64 rows of one (b,h) — queries for
// forward and backward_query (grid B·NH·⌈T/64⌉) — or of one (b,g), keys of a key/value head for
// backward_key, which loops over the query heads sharing it (grid B·NKV·⌈T/64⌉); each warp owns
// 16. Causal blocks stop at (or, for keys, start at) their own diagonal tile.
// The other side streams through shared memory 64 rows at a time. S = Q·Kᵀ is accumulated in
// registers in the mma C layout, which is also the A layout of the next product, so P (and dS)
// go from one mma to the next without touching shared memory (the FlashAttention-2 scheme).
// backward_query writes dq, D (read by backward_key) and dbias (atomics over the batch);
// backward_key writes dk and dv. CPU reference: Sources/Kernels/cpu/attention.c; the source is
// also run on the CPU under a warp emulator (Tests/WarpEmulation) by the test suite.
//
// mma.m16n8k16 fragments (PTX ISA), lane = 4·g + t: A (16×16, row-major) a0 = (g, 2t..2t+1),
// a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..); B (16×8, k×n) b0 = (2t..2t+1, g),
// b1 = (2t+8.., g); C (16×8) c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..2t+1). Each 32-bit
// register holds two 16-bit values, the lower column (or k) in the low half.
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800

#define TC_ROWS 64   // rows per block (4 warps × 16)
#define TC_PAD 8     // 16-bit elements of padding per shared row: fragment loads are conflict-free

#ifndef RT_CUDA_EMULATION
// d += a·b over one 16×8×16 tile.
template <bool BF16>
__device__ __forceinline__ void tc_mma(float d[4], const unsigned a[4], const unsigned b[2]) {
    if (BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// fp32 → bf16 (round to nearest even, NaN kept) or fp16 (cvt.rn) bits.
template <bool BF16>
__device__ __forceinline__ unsigned short tc_bits(float x) {
    if (!BF16) return rt_f16_bits(x);
    unsigned bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (unsigned short)(bits >> 16);
}

template <bool BF16>
__device__ __forceinline__ unsigned tc_pack(float lo, float hi) {
    return (unsigned)tc_bits<BF16>(lo) | ((unsigned)tc_bits<BF16>(hi) << 16);
}

// Two consecutive 16-bit elements of a shared row as one register.
// Two adjacent 16-bit elements as one 32-bit register: `p` must be 4-byte aligned (the shared
// arrays are __align__(16), their rows and the fragment offsets even).
__device__ __forceinline__ unsigned tc_pair(const unsigned short *p) {
    RT_CHECK_ALIGNED(p, 4);
    return *(const unsigned *)p;
}

// Rows [r0, r0+64) of a head (fp32 [T, C] from `head`) into shared memory as 16-bit values:
// `rows` [64][HS+PAD] (row-major) and/or `cols` [HS][64+PAD] (transposed); rows ≥ T are zeros.
template <int HS, bool BF16>
__device__ __forceinline__ void tc_stage(unsigned short (*rows)[HS + TC_PAD], unsigned short (*cols)[TC_ROWS + TC_PAD],
                                         const float *x, long long head, int r0, int T, int C) {
    for (int e = threadIdx.x; e < TC_ROWS * HS; e += blockDim.x) {
        const int r = e / HS, d = e % HS;
        const unsigned short bits = tc_bits<BF16>(r0 + r < T ? x[head + (long long)(r0 + r) * C + d] : 0.0f);
        if (rows) rows[r][d] = bits;
        if (cols) cols[d][r] = bits;
    }
}

// A fragments of the warp's 16 rows (from row-major staged rows) over the HS/16 k-chunks.
template <int HS>
__device__ __forceinline__ void tc_load_a(unsigned a[HS / 16][4], const unsigned short (*rows)[HS + TC_PAD], int r0,
                                          int g, int t) {
    for (int kc = 0; kc < HS / 16; kc++) {
        a[kc][0] = tc_pair(&rows[r0 + g][kc * 16 + 2 * t]);
        a[kc][1] = tc_pair(&rows[r0 + g + 8][kc * 16 + 2 * t]);
        a[kc][2] = tc_pair(&rows[r0 + g][kc * 16 + 8 + 2 * t]);
        a[kc][3] = tc_pair(&rows[r0 + g + 8][kc * 16 + 8 + 2 * t]);
    }
}

// acc[16 × 64] = A[16 × HS] · Bᵀ where B's 64 rows are staged row-major [64][HS+PAD].
template <int HS, bool BF16>
__device__ __forceinline__ void tc_rows_times_staged(float acc[8][4], const unsigned a[HS / 16][4],
                                                     const unsigned short (*rows)[HS + TC_PAD], int g, int t) {
    for (int nt = 0; nt < 8; nt++) {
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
        for (int kc = 0; kc < HS / 16; kc++) {
            const unsigned b[2] = {tc_pair(&rows[nt * 8 + g][kc * 16 + 2 * t]),
                                   tc_pair(&rows[nt * 8 + g][kc * 16 + 8 + 2 * t])};
            tc_mma<BF16>(acc[nt], a[kc], b);
        }
    }
}

// acc[16 × HS] += W[16 × 64] · M[64 × HS]: W in the C layout (from tc_rows_times_staged), M staged
// transposed [HS][64+PAD].
template <int HS, bool BF16>
__device__ __forceinline__ void tc_weights_times_staged(float acc[HS / 8][4], const float w[8][4],
                                                        const unsigned short (*cols)[TC_ROWS + TC_PAD], int g, int t) {
    for (int kc = 0; kc < 4; kc++) {
        const unsigned a[4] = {tc_pack<BF16>(w[2 * kc][0], w[2 * kc][1]), tc_pack<BF16>(w[2 * kc][2], w[2 * kc][3]),
                               tc_pack<BF16>(w[2 * kc + 1][0], w[2 * kc + 1][1]),
                               tc_pack<BF16>(w[2 * kc + 1][2], w[2 * kc + 1][3])};
        for (int nt = 0; nt < HS / 8; nt++) {
            const unsigned b[2] = {tc_pair(&cols[nt * 8 + g][kc * 16 + 2 * t]),
                                   tc_pair(&cols[nt * 8 + g][kc * 16 + 8 + 2 * t])};
            tc_mma<BF16>(acc[nt], a, b);
        }
    }
}

// Σ over the 4 lanes sharing a fragment row (lanes 4g … 4g+3).
__device__ __forceinline__ float tc_row_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float tc_row_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

// Where a block works: (b, h) = bh, its first row r0, and the head's offset in [B,T,C] tensors
// (C = heads·HS: query heads, or key/value heads for backward_key).
struct tc_block {
    int bh, r0, b, h, C;
    long long head;
};
template <int HS>
__device__ __forceinline__ tc_block tc_place(int T, int NH) {
    const int tiles = (T + TC_ROWS - 1) / TC_ROWS;
    tc_block p;
    p.bh = blockIdx.x / tiles;
    p.r0 = blockIdx.x % tiles * TC_ROWS;
    p.b = p.bh / NH;
    p.h = p.bh % NH;
    p.C = NH * HS;
    p.head = (long long)p.b * T * p.C + (long long)p.h * HS;
    return p;
}

// The offset of query head h's key/value head in [B,T,NKV·HS] tensors.
template <int HS>
__device__ __forceinline__ long long tc_kv_head(int b, int h, int T, int NH, int NKV) {
    return (long long)b * T * NKV * HS + (long long)(h / (NH / NKV)) * HS;
}

// The warp's A fragments of x's block rows [p.r0, p.r0+64), staged through `rows`.
template <int HS, bool BF16>
__device__ __forceinline__ void tc_block_fragments(unsigned a[HS / 16][4], unsigned short (*rows)[HS + TC_PAD], const float *x,
                                                   const tc_block &p, int T, int rw, int g, int t) {
    tc_stage<HS, BF16>(rows, nullptr, x, p.head, p.r0, T, p.C);
    __syncthreads();
    tc_load_a<HS>(a, rows, rw, g, t);
}

template <int HS>
__device__ __forceinline__ void tc_zero(float acc[HS / 8][4]) {
    for (int nt = 0; nt < HS / 8; nt++)
        for (int e = 0; e < 4; e++) acc[nt][e] = 0.0f;
}

// Writes acc[16 × HS] (C layout) · factor into rows [row0, row0+16) of a head, rows < T only.
template <int HS>
__device__ __forceinline__ void tc_store(float *x, const float acc[HS / 8][4], float factor0, float factor1,
                                         long long head, int row0, int T, int C, int g, int t) {
    for (int nt = 0; nt < HS / 8; nt++)
        for (int e = 0; e < 4; e++) {
            const int r = row0 + g + (e < 2 ? 0 : 8), d = nt * 8 + 2 * t + (e & 1);
            if (r < T) x[head + (long long)r * C + d] = acc[nt][e] * (e < 2 ? factor0 : factor1);
        }
}

template <int HS, bool BF16>
__device__ void tc_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                                     const int *mask, const float *bias, int B, int T, int NH, int NKV, int causal,
                                     float scale, float dropout, unsigned long long seed) {
    __shared__ __align__(16) unsigned short qs[TC_ROWS][HS + TC_PAD], ks[TC_ROWS][HS + TC_PAD];
    __shared__ __align__(16) unsigned short vts[HS][TC_ROWS + TC_PAD];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const tc_block p = tc_place<HS>(T, NH);
    const int bh = p.bh, i0 = p.r0, b = p.b, h = p.h, C = p.C;
    const long long head = p.head, kvhead = tc_kv_head<HS>(b, h, T, NH, NKV);
    const int CK = NKV * HS, keys = causal && i0 + TC_ROWS < T ? i0 + TC_ROWS : T;
    const int rw = warp * 16, ia = i0 + rw + g, ib = ia + 8;   // this thread's two query rows
    unsigned qa[HS / 16][4];
    tc_block_fragments<HS, BF16>(qa, qs, q, p, T, rw, g, t);
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
    float o[HS / 8][4], m[2] = {-RT_INF, -RT_INF}, l[2] = {0.0f, 0.0f};
    tc_zero<HS>(o);
    for (int j0 = 0; j0 < keys; j0 += TC_ROWS) {
        __syncthreads();   // the previous tile has been read
        tc_stage<HS, BF16>(ks, nullptr, k, kvhead, j0, T, CK);
        tc_stage<HS, BF16>(nullptr, vts, v, kvhead, j0, T, CK);
        __syncthreads();
        float s[8][4];
        tc_rows_times_staged<HS, BF16>(s, qa, ks, g, t);
        float tile_max[2] = {-RT_INF, -RT_INF};
        for (int nt = 0; nt < 8; nt++)
            for (int e = 0; e < 4; e++) {
                const int i = e < 2 ? ia : ib, j = j0 + nt * 8 + 2 * t + (e & 1);
                const bool valid = i < T && j < T && (!causal || j <= i) && (!mask || mask[(long long)b * T + j]);
                float x = scale * s[nt][e];
                if (bias && valid) x += bias[((long long)h * T + i) * T + j];
                s[nt][e] = valid ? x : -RT_INF;
                tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
            }
        float m_new[2], correction[2];
        for (int r = 0; r < 2; r++) {
            m_new[r] = fmaxf(m[r], tc_row_max(tile_max[r]));
            correction[r] = m_new[r] == -RT_INF ? 1.0f : expf(m[r] - m_new[r]);
            l[r] *= correction[r];   // a partial sum per lane; the row's lanes are summed at the end
            m[r] = m_new[r];
        }
        for (int nt = 0; nt < 8; nt++)
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, i = r ? ib : ia, j = j0 + nt * 8 + 2 * t + (e & 1);
                float p = s[nt][e] == -RT_INF ? 0.0f : expf(s[nt][e] - m_new[r]);
                l[r] += p;
                if (dropout > 0.0f && p != 0.0f)
                    p *= rt_keep(key, ((unsigned long long)bh * T + i) * T + j, dropout) ? keep_scale : 0.0f;
                s[nt][e] = p;
            }
        for (int nt = 0; nt < HS / 8; nt++) {
            o[nt][0] *= correction[0]; o[nt][1] *= correction[0];
            o[nt][2] *= correction[1]; o[nt][3] *= correction[1];
        }
        tc_weights_times_staged<HS, BF16>(o, s, vts, g, t);
    }
    const float la = tc_row_sum(l[0]), lb = tc_row_sum(l[1]);
    tc_store<HS>(out, o, la > 0.0f ? 1.0f / la : 0.0f, lb > 0.0f ? 1.0f / lb : 0.0f, head, i0 + rw, T, C, g, t);
    if (t == 0) {
        if (ia < T) lse[(long long)bh * T + ia] = la > 0.0f ? m[0] + logf(la) : RT_INF;
        if (ib < T) lse[(long long)bh * T + ib] = lb > 0.0f ? m[1] + logf(lb) : RT_INF;
    }
}

// s (a C-layout tile of Q·Kᵀ without the scale, rows ra/rb, columns c0 + 8·nt + 0/1) ← P, recomputed
// from lse: exp(scale·s + bias − lse_i), 0 where the query is past T, the key is padded or the row
// has no valid key. TRANSPOSED: the tile's rows are keys and its columns queries (backward_key).
// Ls holds lse of queries [i0, i0+64).
template <bool TRANSPOSED>
__device__ __forceinline__ void tc_probabilities(float s[8][4], int ra, int rb, int c0, const float *Ls, int i0,
                                                 const int *mask, const float *bias, int b, int h, int T, int causal,
                                                 float scale) {
    for (int nt = 0; nt < 8; nt++)
        for (int e = 0; e < 4; e++) {
            const int r = e < 2 ? ra : rb, c = c0 + nt * 8 + (e & 1);
            const int i = TRANSPOSED ? c : r, j = TRANSPOSED ? r : c;
            float P = 0.0f;
            if (i < T && j < T && (!causal || j <= i) && (!mask || mask[(long long)b * T + j])) {
                const float L = Ls[i - i0];
                if (L != RT_INF) {
                    float x = scale * s[nt][e];
                    if (bias) x += bias[((long long)h * T + i) * T + j];
                    P = expf(x - L);
                }
            }
            s[nt][e] = P;
        }
}

template <int HS, bool BF16>
__device__ void tc_attention_backward_query(float *dq, float *dbias, float *D, const float *dout, const float *out,
                                            const float *lse, const float *q, const float *k, const float *v,
                                            const int *mask, const float *bias, int B, int T, int NH, int NKV,
                                            int causal, float scale, float dropout, unsigned long long seed) {
    __shared__ __align__(16) unsigned short ks[TC_ROWS][HS + TC_PAD], vs[TC_ROWS][HS + TC_PAD];
    __shared__ __align__(16) unsigned short kts[HS][TC_ROWS + TC_PAD];
    __shared__ float Ls[TC_ROWS], Ds[TC_ROWS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const tc_block p = tc_place<HS>(T, NH);
    const int bh = p.bh, i0 = p.r0, b = p.b, h = p.h, C = p.C;
    const long long head = p.head, kvhead = tc_kv_head<HS>(b, h, T, NH, NKV);
    const int CK = NKV * HS, keys = causal && i0 + TC_ROWS < T ? i0 + TC_ROWS : T;
    const int rw = warp * 16, ia = i0 + rw + g, ib = ia + 8;
    // D_i = dout_i·out_i in fp32, one warp per row; lse of the block's rows.
    for (int r = warp; r < TC_ROWS; r += 4) {
        const int i = i0 + r;
        float x = 0.0f;
        if (i < T)
            for (int d = lane; d < HS; d += 32) x += dout[head + (long long)i * C + d] * out[head + (long long)i * C + d];
        x = warp_sum(x);
        if (lane == 0) {
            Ds[r] = x;
            Ls[r] = i < T ? lse[(long long)bh * T + i] : RT_INF;
            if (i < T) D[(long long)bh * T + i] = x;
        }
    }
    // Q and dout fragments (staged through ks and vs).
    unsigned qa[HS / 16][4], da[HS / 16][4];
    tc_block_fragments<HS, BF16>(qa, ks, q, p, T, rw, g, t);
    tc_block_fragments<HS, BF16>(da, vs, dout, p, T, rw, g, t);
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
    const float Da = Ds[rw + g], Db = Ds[rw + g + 8];
    float acc[HS / 8][4];
    tc_zero<HS>(acc);
    for (int j0 = 0; j0 < keys; j0 += TC_ROWS) {
        __syncthreads();
        tc_stage<HS, BF16>(ks, kts, k, kvhead, j0, T, CK);
        tc_stage<HS, BF16>(vs, nullptr, v, kvhead, j0, T, CK);
        __syncthreads();
        float s[8][4], dp[8][4];
        tc_rows_times_staged<HS, BF16>(s, qa, ks, g, t);
        tc_rows_times_staged<HS, BF16>(dp, da, vs, g, t);
        tc_probabilities<false>(s, ia, ib, j0 + 2 * t, Ls, i0, mask, bias, b, h, T, causal, scale);
        for (int nt = 0; nt < 8; nt++)
            for (int e = 0; e < 4; e++) {
                const int i = e < 2 ? ia : ib, j = j0 + nt * 8 + 2 * t + (e & 1);
                float dP = dp[nt][e];
                if (dropout > 0.0f && s[nt][e] != 0.0f)
                    dP *= rt_keep(key, ((unsigned long long)bh * T + i) * T + j, dropout) ? keep_scale : 0.0f;
                const float ds = s[nt][e] * (dP - (e < 2 ? Da : Db));
                if (dbias && s[nt][e] != 0.0f) atomicAdd(&dbias[((long long)h * T + i) * T + j], ds);
                s[nt][e] = ds;
            }
        tc_weights_times_staged<HS, BF16>(acc, s, kts, g, t);
    }
    tc_store<HS>(dq, acc, scale, scale, head, i0 + rw, T, C, g, t);
}

// A block owns 64 key rows of key/value head g of batch item b; the query heads sharing it
// stream their queries past (from the block's diagonal tile on, when causal).
template <int HS, bool BF16>
__device__ void tc_attention_backward_key(float *dk, float *dv, const float *dout, const float *lse, const float *D,
                                          const float *q, const float *k, const float *v, const int *mask,
                                          const float *bias, int B, int T, int NH, int NKV, int causal, float scale,
                                          float dropout, unsigned long long seed) {
    __shared__ __align__(16) unsigned short qs[TC_ROWS][HS + TC_PAD], dos[TC_ROWS][HS + TC_PAD];
    __shared__ __align__(16) unsigned short qts[HS][TC_ROWS + TC_PAD], dots[HS][TC_ROWS + TC_PAD];
    __shared__ float Ls[TC_ROWS], Ds[TC_ROWS];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    const tc_block p = tc_place<HS>(T, NKV);   // p.h: the key/value head, p.head and p.C in k-shaped tensors
    const int j0 = p.r0, b = p.b, kvh = p.h, CK = p.C, C = NH * HS, G = NH / NKV;
    const long long kvhead = p.head;
    const int rw = warp * 16, ja = j0 + rw + g, jb = ja + 8;   // this thread's two key rows
    // K and V fragments (staged through qs and dos).
    unsigned ka[HS / 16][4], va[HS / 16][4];
    tc_block_fragments<HS, BF16>(ka, qs, k, p, T, rw, g, t);
    tc_block_fragments<HS, BF16>(va, dos, v, p, T, rw, g, t);
    const unsigned key = rt_dropout_key(seed);
    const float keep_scale = dropout > 0.0f ? 1.0f / (1.0f - dropout) : 1.0f;
    float dka[HS / 8][4], dva[HS / 8][4];
    tc_zero<HS>(dka);
    tc_zero<HS>(dva);
    for (int h = kvh * G; h < (kvh + 1) * G; h++) {
        const long long head = (long long)b * T * C + (long long)h * HS, bh = (long long)b * NH + h;
        for (int i0 = causal ? j0 : 0; i0 < T; i0 += TC_ROWS) {
            __syncthreads();
            tc_stage<HS, BF16>(qs, qts, q, head, i0, T, C);
            tc_stage<HS, BF16>(dos, dots, dout, head, i0, T, C);
            for (int r = threadIdx.x; r < TC_ROWS; r += blockDim.x) {
                const int i = i0 + r;
                Ls[r] = i < T ? lse[bh * T + i] : RT_INF;
                Ds[r] = i < T ? D[bh * T + i] : 0.0f;
            }
            __syncthreads();
            float s[8][4], dp[8][4];   // transposed tiles: rows are keys, columns queries
            tc_rows_times_staged<HS, BF16>(s, ka, qs, g, t);
            tc_rows_times_staged<HS, BF16>(dp, va, dos, g, t);
            tc_probabilities<true>(s, ja, jb, i0 + 2 * t, Ls, i0, mask, bias, b, h, T, causal, scale);
            for (int nt = 0; nt < 8; nt++)
                for (int e = 0; e < 4; e++) {
                    const int ii = nt * 8 + 2 * t + (e & 1), i = i0 + ii, j = e < 2 ? ja : jb;
                    const float P = s[nt][e];
                    float keep = 1.0f;
                    if (dropout > 0.0f && P != 0.0f)
                        keep = rt_keep(key, ((unsigned long long)bh * T + i) * T + j, dropout) ? keep_scale : 0.0f;
                    s[nt][e] = P * keep;                          // dropped P: dv += Pᵀ·dout
                    dp[nt][e] = P * (dp[nt][e] * keep - Ds[ii]);  // dS: dk += dSᵀ·q
                }
            tc_weights_times_staged<HS, BF16>(dva, s, dots, g, t);
            tc_weights_times_staged<HS, BF16>(dka, dp, qts, g, t);
        }
    }
    tc_store<HS>(dk, dka, scale, scale, kvhead, j0 + rw, T, CK, g, t);
    tc_store<HS>(dv, dva, 1.0f, 1.0f, kvhead, j0 + rw, T, CK, g, t);
}

// The launchable kernels: attention_tc_{forward,backward_query,backward_key}_{bf16,f16}_hs{32,64}.
#define TC_KERNELS(SUFFIX, HS, BF16)                                                                                   \
    extern "C" __global__ void __launch_bounds__(128) attention_tc_forward_##SUFFIX(                                  \
        float *out, float *lse, const float *q, const float *k, const float *v, const int *mask, const float *bias,    \
        int B, int T, int NH, int NKV, int causal, float scale, float dropout, unsigned long long seed) {               \
        tc_attention_forward<HS, BF16>(out, lse, q, k, v, mask, bias, B, T, NH, NKV, causal, scale, dropout, seed);    \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128) attention_tc_backward_query_##SUFFIX(                           \
        float *dq, float *dbias, float *D, const float *dout, const float *out, const float *lse, const float *q,      \
        const float *k, const float *v, const int *mask, const float *bias, int B, int T, int NH, int NKV,             \
        int causal, float scale, float dropout, unsigned long long seed) {                                             \
        tc_attention_backward_query<HS, BF16>(dq, dbias, D, dout, out, lse, q, k, v, mask, bias, B, T, NH, NKV,        \
                                              causal, scale, dropout, seed);                                          \
    }                                                                                                                  \
    extern "C" __global__ void __launch_bounds__(128) attention_tc_backward_key_##SUFFIX(                             \
        float *dk, float *dv, const float *dout, const float *lse, const float *D, const float *q, const float *k,     \
        const float *v, const int *mask, const float *bias, int B, int T, int NH, int NKV, int causal, float scale,    \
        float dropout, unsigned long long seed) {                                                                      \
        tc_attention_backward_key<HS, BF16>(dk, dv, dout, lse, D, q, k, v, mask, bias, B, T, NH, NKV, causal, scale,   \
                                            dropout, seed);                                                            \
    }

TC_KERNELS(bf16_hs32, 32, true)
TC_KERNELS(bf16_hs64, 64, true)
TC_KERNELS(f16_hs32, 32, false)
TC_KERNELS(f16_hs64, 64, false)

#endif
