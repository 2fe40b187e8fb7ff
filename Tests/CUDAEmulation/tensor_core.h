// What the two CPU emulations of the CUDA kernels share (Tests/CUDAEmulation/kernel_api.h and
// Tests/WarpEmulation/emulator.cpp): fp16 conversions as cvt.rn does them, and the arithmetic of
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16} from the PTX ISA's fragment layout (as
// attention_tc.cu documents it). Each emulator publishes the warp's fragments and meets its lanes
// around mma_lane_outputs in its own way.
#pragma once
#include <cstring>

// cvt.rn.f16.f32 and cvt.f32.f16 (common.cuh asks for them under RT_CUDA_EMULATION).
static inline unsigned short rt_f16_bits(float x) {
    const _Float16 h = (_Float16)x;   // round to nearest even
    unsigned short bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
static inline float rt_f16_value(unsigned short bits) {
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return (float)h;
}

/// The low 16 bits of `bits` as a bf16 or fp16 value.
static inline float mma_half_value(unsigned bits, bool bf16) {
    bits &= 0xffffu;
    if (!bf16) return rt_f16_value((unsigned short)bits);
    const unsigned wide = bits << 16;
    float f;
    std::memcpy(&f, &wide, 4);
    return f;
}

/// out[e] = d[e] + (A·B)[row, col] for lane `lane`'s four C elements (c0,c1 at (g, 2t..2t+1),
/// c2,c3 at (g+8, 2t..2t+1)), A and B read from the 32 lanes' fragments `lanes[i].a[4]`, `.b[2]`.
template <bool BF16, class Lane> static inline void mma_lane_outputs(float out[4], const float d[4], const Lane *lanes, unsigned lane) {
    auto A = [&](int row, int kk) {   // a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)
        const int owner = 4 * (row % 8) + (kk % 8) / 2, reg = (row >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0);
        return mma_half_value(lanes[owner].a[reg] >> (16 * (kk & 1)), BF16);
    };
    auto B = [&](int kk, int col) {   // b0 (2t.., g), b1 (2t+8.., g)
        const int owner = 4 * col + (kk % 8) / 2, reg = kk >= 8 ? 1 : 0;
        return mma_half_value(lanes[owner].b[reg] >> (16 * (kk & 1)), BF16);
    };
    const int g = (int)lane >> 2, t = (int)lane & 3;
    for (int e = 0; e < 4; e++) {
        const int row = g + (e < 2 ? 0 : 8), col = 2 * t + (e & 1);
        float sum = 0.0f;
        for (int kk = 0; kk < 16; kk++) sum += A(row, kk) * B(kk, col);
        out[e] = d[e] + sum;
    }
}
