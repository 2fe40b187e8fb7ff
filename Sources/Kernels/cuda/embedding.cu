// Fused embedding: word + position + token type.
//   out, dout: [BT,C]; ids, positions, types: [BT] int32 (types may be NULL);
//   word [V,C], position [P,C], type [TT,C] (type may be NULL). Ids outside a table add zeros.
// forward: grid-stride over BT·C.
// backward: two stages over the host's plan of the batch (Sources/Backend/EmbeddingSegments.swift:
//   the token rows of each touched (table, row) segment in order, cut into pieces of ≤ 32 rows;
//   rows a table ignores — padding_idx, ids out of range — are in no segment). Fixed summation
//   order, no atomics: deterministic. plan: rows [R] | piece_start [P+1] | piece_segment [P] |
//   piece_slot [P] | segment_table [U] | segment_row [U] | multi [M] | multi_slot_start [M+1].
//   embedding_backward_pieces: a piece's sum over its rows, added into the table row when it is
//     its segment's only piece (slot −1), else written to partials[slot, C].
//   embedding_backward_segments: each multi-piece segment adds its slots, in order, into its row.
//   Both: blockDim 128 over columns, gridDim (⌈C/128⌉, ≤ 65535) striding over pieces / segments.
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

struct embedding_plan {
    const int *rows, *piece_start, *piece_segment, *piece_slot, *segment_table, *segment_row, *multi, *multi_slot_start;
};

__device__ static embedding_plan unpack_plan(const int *plan, int R, int P, int U, int M) {
    embedding_plan p;
    p.rows = plan;
    p.piece_start = p.rows + R;
    p.piece_segment = p.piece_start + P + 1;
    p.piece_slot = p.piece_segment + P;
    p.segment_table = p.piece_slot + P;
    p.segment_row = p.segment_table + U;
    p.multi = p.segment_row + U;
    p.multi_slot_start = p.multi + M;
    return p;
}

__device__ static float *table_row(float *dword, float *dposition, float *dtype, int table, int row, int C) {
    float *t = table == 0 ? dword : table == 1 ? dposition : dtype;
    return t ? t + (long long)row * C : nullptr;
}

extern "C" __global__ void embedding_backward_pieces(float *dword, float *dposition, float *dtype, float *partials,
                                                     const float *dout, const int *plan, int R, int P, int U, int M, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const embedding_plan p = unpack_plan(plan, R, P, U, M);
    for (int piece = blockIdx.y; piece < P; piece += gridDim.y) {
        float sum = 0.0f;
        for (int i = p.piece_start[piece]; i < p.piece_start[piece + 1]; i++) sum += dout[(long long)p.rows[i] * C + c];
        const int slot = p.piece_slot[piece];
        if (slot >= 0) {
            partials[(long long)slot * C + c] = sum;
        } else {
            const int u = p.piece_segment[piece];
            float *row = table_row(dword, dposition, dtype, p.segment_table[u], p.segment_row[u], C);
            if (row) row[c] += sum;
        }
    }
}

extern "C" __global__ void embedding_backward_segments(float *dword, float *dposition, float *dtype, const float *partials,
                                                       const int *plan, int R, int P, int U, int M, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const embedding_plan p = unpack_plan(plan, R, P, U, M);
    for (int m = blockIdx.y; m < M; m += gridDim.y) {
        float sum = 0.0f;
        for (int slot = p.multi_slot_start[m]; slot < p.multi_slot_start[m + 1]; slot++) sum += partials[(long long)slot * C + c];
        const int u = p.multi[m];
        float *row = table_row(dword, dposition, dtype, p.segment_table[u], p.segment_row[u], C);
        if (row) row[c] += sum;
    }
}
