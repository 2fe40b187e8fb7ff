// Element-wise memory ops: fill, scale, axpy, sum of squares (for gradient norms), dtype casts.
// Shapes: flat [n].
#include "common.h"

#define GRAIN 32768

typedef struct { float *x; const float *src; float value; double *partials; } flat_args;

RT_TASK(fill_task) {
    flat_args *a = ctx;
    for (int64_t i = b; i < e; i++) a->x[i] = a->value;
}
void rt_fill(float *x, int64_t n, float value) {
    flat_args a = { .x = x, .value = value };
    rt_parallel_for(n, GRAIN, fill_task, &a);
}

RT_TASK(scale_task) {
    flat_args *a = ctx;
    for (int64_t i = b; i < e; i++) a->x[i] *= a->value;
}
void rt_scale(float *x, int64_t n, float factor) {
    flat_args a = { .x = x, .value = factor };
    rt_parallel_for(n, GRAIN, scale_task, &a);
}

RT_TASK(axpy_task) {
    flat_args *a = ctx;
    for (int64_t i = b; i < e; i++) a->x[i] += a->value * a->src[i];
}
void rt_axpy(float *y, const float *x, int64_t n, float alpha) {
    flat_args a = { .x = y, .src = x, .value = alpha };
    rt_parallel_for(n, GRAIN, axpy_task, &a);
}

RT_TASK(squares_task) {
    flat_args *a = ctx;
    // Float lanes within a 1024-element block, double across blocks.
    double total = 0;
    for (int64_t i = b; i < e; i += 1024) {
        int64_t stop = i + 1024 < e ? i + 1024 : e;
        float lanes[16] = {0};
        int64_t j = i;
        for (; j + 16 <= stop; j += 16)
            for (int l = 0; l < 16; l++) lanes[l] += a->src[j + l] * a->src[j + l];
        for (; j < stop; j++) lanes[0] += a->src[j] * a->src[j];
        for (int l = 0; l < 16; l++) total += lanes[l];
    }
    a->partials[b / GRAIN] = total;
}
void rt_sum_squares(float *out, const float *x, int64_t n) {
    // Partials per fixed chunk, summed in order: the result does not depend on the thread count.
    double partials[1024], total = 0;
    const int64_t segment = (int64_t)GRAIN * 1024;
    for (int64_t start = 0; start < n; start += segment) {
        int64_t len = n - start < segment ? n - start : segment;
        flat_args a = { .src = x + start, .partials = partials };
        rt_parallel_for(len, GRAIN, squares_task, &a);
        for (int64_t c = 0; c < (len + GRAIN - 1) / GRAIN; c++) total += partials[c];
    }
    out[0] = (float)total;
}

void rt_cast_f32_to_bf16(uint16_t *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        if ((bits & 0x7fffffffu) > 0x7f800000u) { out[i] = (uint16_t)((bits >> 16) | 0x40); continue; } // NaN stays NaN
        bits += 0x7fffu + ((bits >> 16) & 1u);
        out[i] = (uint16_t)(bits >> 16);
    }
}
void rt_cast_bf16_to_f32(float *out, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)x[i] << 16;
        memcpy(&out[i], &bits, 4);
    }
}
void rt_cast_f32_to_f16(uint16_t *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        _Float16 h = (_Float16)x[i];
        memcpy(&out[i], &h, 2);
    }
}
void rt_cast_f16_to_f32(float *out, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        _Float16 h;
        memcpy(&h, &x[i], 2);
        out[i] = (float)h;
    }
}
