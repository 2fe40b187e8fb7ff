// Fused embedding: word + position + token type.
//   out, dout: [BT,C]; ids, positions, types: [BT] int32 (types may be NULL);
//   word [V,C], position [P,C], type [TT,C] (type may be NULL). Ids outside a table add zeros.
// forward: grid-stride over BT·C.
// backward: one thread per column c (launch ≥ C threads) walking all BT rows in order, so the
//   scatter-add into the tables is race-free and deterministic; rows whose id is word_pad
//   (position_pad) add nothing to that table (torch's padding_idx; −1: none).
// CPU reference: Sources/Kernels/cpu/embedding.c.
#include "common.cuh"

extern "C" __global__ void embedding_forward(float *out, const int *ids, const int *positions, const int *types,
                                             const float *word, const float *position, const float *type,
                                             long long BT, int C, int V, int P, int TT) {
    RT_GRID_STRIDE(i, BT * C) {
        const long long row = i / C;
        const int c = (int)(i % C);
        float sum = 0.0f;
        int id = ids[row];
        if (id >= 0 && id < V) sum += word[(long long)id * C + c];
        int pos = positions[row];
        if (pos >= 0 && pos < P) sum += position[(long long)pos * C + c];
        if (types && type) {
            int t = types[row];
            if (t >= 0 && t < TT) sum += type[(long long)t * C + c];
        }
        out[i] = sum;
    }
}

extern "C" __global__ void embedding_backward(float *dword, float *dposition, float *dtype, const float *dout,
                                              const int *ids, const int *positions, const int *types,
                                              long long BT, int C, int V, int P, int TT, int word_pad, int position_pad) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (long long row = 0; row < BT; row++) {
        const float d = dout[row * C + c];
        int id = ids[row];
        if (id >= 0 && id < V && id != word_pad) dword[(long long)id * C + c] += d;
        int pos = positions[row];
        if (dposition && pos >= 0 && pos < P && pos != position_pad) dposition[(long long)pos * C + c] += d;
        if (types && dtype) {
            int t = types[row];
            if (t >= 0 && t < TT) dtype[(long long)t * C + c] += d;
        }
    }
}
