// Flat memory ops. x, y, out: [n].
//   fill: x = value       scale: x *= factor       axpy: y += alpha·x
//   sum_squares_partial / sum_finish: out[0] = Σ x² in double, as fixed per-block partials summed
//     in order (launch sum_squares_partial with exactly SUM_BLOCKS blocks of 256 threads, then
//     sum_finish with one block of 256): the result does not depend on the device.
//   column_sum_finish: the second stage of the column reductions (bias_backward_partials,
//     layernorm_backward_partials): partials [slices, width]; column j's sum over the slices, in
//     order, is added to first[j] (j < C) or second[j − C] (j ≥ C); a null output is skipped.
//     One thread per column (launch ≥ width threads).
//   cast_*: f32 ↔ bf16 (round to nearest even, NaN stays NaN) and f32 ↔ f16 (cvt.rn), bits in ushort.
// Grid-stride loops elsewhere: any launch size works. CPU reference: Sources/Kernels/cpu/memory.c.
#include "common.cuh"

extern "C" __global__ void fill_f32(float *x, long long n, float value) {
    RT_GRID_STRIDE(i, n) x[i] = value;
}

extern "C" __global__ void scale_f32(float *x, long long n, float factor) {
    RT_GRID_STRIDE(i, n) x[i] *= factor;
}

extern "C" __global__ void axpy_f32(float *y, const float *x, long long n, float alpha) {
    RT_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// partials[blockIdx.x] = Σ x² over this block's grid-stride share.
extern "C" __global__ void sum_squares_partial(double *partials, const float *x, long long n) {
    double s = 0;
    RT_GRID_STRIDE(i, n) { double v = x[i]; s += v * v; }
    s = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// out[0] = (float) Σ partials[0 … count) (one block).
extern "C" __global__ void sum_finish(float *out, const double *partials, int count) {
    double s = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
    s = block_sum_double(s);
    if (threadIdx.x == 0) out[0] = (float)s;
}

extern "C" __global__ void column_sum_finish(float *first, float *second, const float *partials, int slices, int C, int width) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= width) return;
    float s = 0.0f;
    for (int k = 0; k < slices; k++) s += partials[(long long)k * width + j];
    float *out = j < C ? (first ? first + j : nullptr) : (second ? second + (j - C) : nullptr);
    if (out) *out += s;
}

extern "C" __global__ void cast_f32_to_bf16(unsigned short *out, const float *x, long long n) {
    RT_GRID_STRIDE(i, n) {
        unsigned bits = __float_as_uint(x[i]);
        if ((bits & 0x7fffffffu) > 0x7f800000u) { out[i] = (unsigned short)((bits >> 16) | 0x40); continue; }
        bits += 0x7fffu + ((bits >> 16) & 1u);
        out[i] = (unsigned short)(bits >> 16);
    }
}

extern "C" __global__ void cast_bf16_to_f32(float *out, const unsigned short *x, long long n) {
    RT_GRID_STRIDE(i, n) out[i] = __uint_as_float((unsigned)x[i] << 16);
}

extern "C" __global__ void cast_f32_to_f16(unsigned short *out, const float *x, long long n) {
    RT_GRID_STRIDE(i, n) out[i] = rt_f16_bits(x[i]);
}

extern "C" __global__ void cast_f16_to_f32(float *out, const unsigned short *x, long long n) {
    RT_GRID_STRIDE(i, n) out[i] = rt_f16_value(x[i]);
}
