// Fused embedding: word + position + token type.
//   out, dout: [BT,C]; ids, positions, types: [BT] int32; word [V,C], position [P,C], type [TT,C].
// Backward: rows whose id equals word_pad (position id equals position_pad) add nothing to that
// table (torch's nn.Embedding padding_idx); −1 for none.
// Forward: parallel over rows. Backward: parallel over column blocks (every thread walks all
// rows for its own columns), so the scatter-add into the tables is race-free and deterministic.
#include "common.h"

typedef struct {
    float *out, *dword, *dposition, *dtype;
    const float *dout, *word, *position, *type;
    const int32_t *ids, *positions, *types;
    int64_t BT; int C, V, P, TT, word_pad, position_pad;
} embedding_args;

static inline const float *row_or_null(const float *table, const int32_t *index, int64_t i, int limit, int C) {
    if (!table || !index) return NULL;
    int32_t id = index[i];
    return id >= 0 && id < limit ? table + (int64_t)id * C : NULL;
}

RT_TASK(forward_task) {
    embedding_args *a = ctx;
    for (int64_t i = b; i < e; i++) {
        float *out = a->out + i * a->C;
        const float *w = row_or_null(a->word, a->ids, i, a->V, a->C);
        const float *p = row_or_null(a->position, a->positions, i, a->P, a->C);
        const float *t = row_or_null(a->type, a->types, i, a->TT, a->C);
        for (int c = 0; c < a->C; c++) out[c] = (w ? w[c] : 0.0f) + (p ? p[c] : 0.0f) + (t ? t[c] : 0.0f);
    }
}

void rt_embedding_forward(float *out, const int32_t *ids, const int32_t *positions, const int32_t *types,
                          const float *word, const float *position, const float *type,
                          int64_t BT, int C, int V, int P, int TT) {
    embedding_args a = { .out = out, .ids = ids, .positions = positions, .types = types, .word = word,
                         .position = position, .type = type, .BT = BT, .C = C, .V = V, .P = P, .TT = TT };
    rt_parallel_for(BT, 16, forward_task, &a);
}

#define COLUMN_BLOCK 64
RT_TASK(backward_task) {
    embedding_args *a = ctx;
    int c0 = (int)b * COLUMN_BLOCK, c1 = (int)e * COLUMN_BLOCK < a->C ? (int)e * COLUMN_BLOCK : a->C;
    for (int64_t i = 0; i < a->BT; i++) {
        const float *d = a->dout + i * a->C;
        float *w = a->ids[i] == a->word_pad ? NULL : (float *)row_or_null(a->dword, a->ids, i, a->V, a->C);
        float *p = a->positions[i] == a->position_pad ? NULL : (float *)row_or_null(a->dposition, a->positions, i, a->P, a->C);
        float *t = (float *)row_or_null(a->dtype, a->types, i, a->TT, a->C);
        if (w) for (int c = c0; c < c1; c++) w[c] += d[c];
        if (p) for (int c = c0; c < c1; c++) p[c] += d[c];
        if (t) for (int c = c0; c < c1; c++) t[c] += d[c];
    }
}

void rt_embedding_backward(float *dword, float *dposition, float *dtype, const float *dout,
                           const int32_t *ids, const int32_t *positions, const int32_t *types,
                           int64_t BT, int C, int V, int P, int TT, int word_pad, int position_pad) {
    embedding_args a = { .dword = dword, .dposition = dposition, .dtype = dtype, .dout = dout, .ids = ids,
                         .positions = positions, .types = types, .BT = BT, .C = C, .V = V, .P = P, .TT = TT,
                         .word_pad = word_pad, .position_pad = position_pad };
    rt_parallel_for((C + COLUMN_BLOCK - 1) / COLUMN_BLOCK, 1, backward_task, &a);
}
