// cuBLASLt for the emulated device: matmul descriptors, matrix layouts and preferences as NVIDIA
// documents them (column-major; operation flags; leading dimensions; strided batches; the BIAS
// epilogue; 32F and 32F_FAST_TF32 compute; 32F, 16F and 16BF operands), a heuristic that checks
// the problem and records the alignments and workspace its algorithm relies on, and a reference
// matmul (double accumulation) that refuses — NOT_SUPPORTED, as the real library — operands less
// aligned than the algorithm was chosen for. A BIAS epilogue chosen while the descriptor's bias
// pointer was still null is taken to assume a 256-byte-aligned bias (the conservative reading:
// the library assumes 256 for every pointer it was told nothing about). With
// RETORT_EMULATED_BIAS_ALIGN=N the heuristic finds no algorithm for a bias less than N-byte
// aligned, as a library version without such kernels would.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <vector>

#include "emulation.h"

// cublasLtMatmulAlgo_t and cublasLtMatmulHeuristicResult_t, as laid out in cublasLt.h.
struct rt_cublasLtMatmulAlgoLayout { uint64_t data[8]; };
struct rt_cublasLtMatmulHeuristicResultLayout {
    rt_cublasLtMatmulAlgoLayout algo;
    size_t workspaceSize;
    int state;
    float wavesCount;
    int reserved[4];
};

namespace {

enum : int { SUCCESS = 0, NOT_INITIALIZED = 1, ALLOC_FAILED = 3, INVALID_VALUE = 7, ARCH_MISMATCH = 8, EXECUTION_FAILED = 13,
             INTERNAL_ERROR = 14, NOT_SUPPORTED = 15 };
enum : int { R_32F = 0, R_16F = 2, R_16BF = 14, COMPUTE_32F = 68, COMPUTE_32F_FAST_TF32 = 77 };
enum : int { EPILOGUE_DEFAULT = 1, EPILOGUE_BIAS = 4 };

struct Handle { int unused = 0; };

struct MatmulDesc {
    int compute, scale;
    int transa = 0, transb = 0;
    unsigned epilogue = EPILOGUE_DEFAULT;
    uint64_t bias = 0;
};

struct Layout {
    int type;
    uint64_t rows, cols;
    int64_t ld;
    int batch = 1;
    int64_t stride = 0;
    size_t element() const { return type == R_32F ? 4 : 2; }
    /// Bytes from the first element to the last of every batch.
    size_t span() const { return (uint64_t(batch - 1) * uint64_t(stride) + uint64_t(ld) * (cols - 1) + rows) * element(); }
};

struct Preference {
    uint64_t workspace = 0;
    unsigned align[4] = {256, 256, 256, 256};   // A, B, C, D: what the caller promises
};

/// What a heuristic result stands for.
struct Algorithm {
    unsigned align[4];
    unsigned bias_align;
    size_t workspace;
};
std::vector<Algorithm> algorithms;

unsigned alignment_of(uint64_t address) {
    unsigned a = 256;
    while (a > 1 && address % a != 0) a /= 2;
    return a;
}

float read(const char *base, int type, size_t index, bool tf32) {
    if (type == R_32F) {
        float v;
        std::memcpy(&v, base + index * 4, 4);
        if (tf32) {   // to the 10-bit mantissa of TF32: cut, or nearest (RETORT_EMULATED_TF32=nearest)
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            const uint32_t half = emu::device_spec().tf32_truncates ? 0 : 0x1000u;
            if ((bits & 0x7f800000u) != 0x7f800000u) bits = (bits + half) & ~0x1fffu;
            std::memcpy(&v, &bits, 4);
        }
        return v;
    }
    uint16_t h;
    std::memcpy(&h, base + index * 2, 2);
    if (type == R_16BF) {
        const uint32_t bits = uint32_t(h) << 16;
        float v;
        std::memcpy(&v, &bits, 4);
        return v;
    }
    _Float16 f;
    std::memcpy(&f, &h, 2);
    return float(f);
}

/// Checks a matmul problem: op(A) [m,k], op(B) [k,n], C and D [m,n] (column-major).
int check_problem(const MatmulDesc &d, const Layout &a, const Layout &b, const Layout &c, const Layout &dl, const char *who) {
    const uint64_t m = dl.rows, n = dl.cols;
    const uint64_t am = d.transa ? a.cols : a.rows, ak = d.transa ? a.rows : a.cols;
    const uint64_t bk = d.transb ? b.cols : b.rows, bn = d.transb ? b.rows : b.cols;
    if (am != m || bn != n || ak != bk || c.rows != m || c.cols != n) {
        emu::report("%s: op(A) is %llux%llu, op(B) %llux%llu, C %llux%llu, D %llux%llu: the shapes do not chain", who,
                    (unsigned long long)am, (unsigned long long)ak, (unsigned long long)bk, (unsigned long long)bn,
                    (unsigned long long)c.rows, (unsigned long long)c.cols, (unsigned long long)m, (unsigned long long)n);
        return INVALID_VALUE;
    }
    if (a.type != b.type || c.type != R_32F || dl.type != R_32F) {
        emu::report("%s: A and B must share a type and C, D be 32F (got %d, %d, %d, %d)", who, a.type, b.type, c.type, dl.type);
        return NOT_SUPPORTED;
    }
    if (d.compute == COMPUTE_32F_FAST_TF32 && a.type != R_32F) {
        emu::report("%s: TF32 compute needs 32F operands", who);
        return NOT_SUPPORTED;
    }
    if (a.batch != b.batch || a.batch != c.batch || c.batch != dl.batch) {
        emu::report("%s: batch counts differ (%d, %d, %d, %d)", who, a.batch, b.batch, c.batch, dl.batch);
        return INVALID_VALUE;
    }
    if (d.epilogue != EPILOGUE_DEFAULT && d.epilogue != EPILOGUE_BIAS) {
        emu::report("%s: epilogue %u is not emulated", who, d.epilogue);
        return NOT_SUPPORTED;
    }
    if (d.epilogue == EPILOGUE_BIAS && dl.batch > 1) {
        emu::report("%s: the BIAS epilogue on a batched matmul is not emulated", who);
        return NOT_SUPPORTED;
    }
    return SUCCESS;
}

bool device_span(const void *pointer, const Layout &l, const char *what) {
    const uint64_t address = reinterpret_cast<uint64_t>(pointer);
    if (emu::find_allocation(address, l.span())) return true;
    emu::report("cublasLtMatmul: %s at 0x%llx (%zu bytes spanned) is not inside one device allocation", what,
                (unsigned long long)address, l.span());
    return false;
}

}   // namespace

extern "C" {

size_t cublasLtGetVersion(void) { return 130100; }

int cublasLtCreate(void **handle) {
    *handle = new Handle();
    return SUCCESS;
}

int cublasLtDestroy(void *handle) {
    delete static_cast<Handle *>(handle);
    return SUCCESS;
}

const char *cublasLtGetStatusString(int status) {
    switch (status) {
    case SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
    }
}

int cublasLtMatmulDescCreate(void **desc, int compute, int scale) {
    if ((compute != COMPUTE_32F && compute != COMPUTE_32F_FAST_TF32) || scale != R_32F) {
        emu::report("cublasLtMatmulDescCreate: compute type %d with scale type %d is not emulated", compute, scale);
        return NOT_SUPPORTED;
    }
    *desc = new MatmulDesc{compute, scale};
    return SUCCESS;
}

int cublasLtMatmulDescDestroy(void *desc) {
    delete static_cast<MatmulDesc *>(desc);
    return SUCCESS;
}

int cublasLtMatmulDescSetAttribute(void *desc, int attribute, const void *buffer, size_t size) {
    MatmulDesc &d = *static_cast<MatmulDesc *>(desc);
    switch (attribute) {
    case 3: if (size != 4) return INVALID_VALUE; std::memcpy(&d.transa, buffer, 4); return d.transa == 0 || d.transa == 1 ? SUCCESS : INVALID_VALUE;
    case 4: if (size != 4) return INVALID_VALUE; std::memcpy(&d.transb, buffer, 4); return d.transb == 0 || d.transb == 1 ? SUCCESS : INVALID_VALUE;
    case 7: if (size != 4) return INVALID_VALUE; std::memcpy(&d.epilogue, buffer, 4); return SUCCESS;
    case 8: if (size != 8) return INVALID_VALUE; std::memcpy(&d.bias, buffer, 8); return SUCCESS;
    default:
        emu::report("cublasLtMatmulDescSetAttribute: attribute %d is not emulated", attribute);
        return INVALID_VALUE;
    }
}

int cublasLtMatrixLayoutCreate(void **layout, int type, uint64_t rows, uint64_t cols, int64_t ld) {
    if (type != R_32F && type != R_16F && type != R_16BF) return NOT_SUPPORTED;
    if (rows == 0 || cols == 0 || ld < int64_t(rows)) {
        emu::report("cublasLtMatrixLayoutCreate: %llu rows, %llu columns, leading dimension %lld (column-major: at least the rows)",
                    (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
        return INVALID_VALUE;
    }
    *layout = new Layout{type, rows, cols, ld};
    return SUCCESS;
}

int cublasLtMatrixLayoutDestroy(void *layout) {
    delete static_cast<Layout *>(layout);
    return SUCCESS;
}

int cublasLtMatrixLayoutSetAttribute(void *layout, int attribute, const void *buffer, size_t size) {
    Layout &l = *static_cast<Layout *>(layout);
    if (attribute == 5 && size == 4) { std::memcpy(&l.batch, buffer, 4); return l.batch >= 1 ? SUCCESS : INVALID_VALUE; }
    if (attribute == 6 && size == 8) { std::memcpy(&l.stride, buffer, 8); return SUCCESS; }
    emu::report("cublasLtMatrixLayoutSetAttribute: attribute %d (%zu bytes) is not emulated", attribute, size);
    return INVALID_VALUE;
}

int cublasLtMatmulPreferenceCreate(void **preference) {
    *preference = new Preference();
    return SUCCESS;
}

int cublasLtMatmulPreferenceDestroy(void *preference) {
    delete static_cast<Preference *>(preference);
    return SUCCESS;
}

int cublasLtMatmulPreferenceSetAttribute(void *preference, int attribute, const void *buffer, size_t size) {
    Preference &p = *static_cast<Preference *>(preference);
    if (attribute == 1 && size == 8) { std::memcpy(&p.workspace, buffer, 8); return SUCCESS; }
    if (attribute >= 5 && attribute <= 8 && size == 4) { std::memcpy(&p.align[attribute - 5], buffer, 4); return SUCCESS; }
    emu::report("cublasLtMatmulPreferenceSetAttribute: attribute %d (%zu bytes) is not emulated", attribute, size);
    return INVALID_VALUE;
}

int cublasLtMatmulAlgoGetHeuristic(void *handle, void *desc, void *a, void *b, void *c, void *d, void *preference,
                                   int requested, rt_cublasLtMatmulHeuristicResultLayout results[], int *returned) {
    if (!handle || requested < 1) return INVALID_VALUE;
    const MatmulDesc &md = *static_cast<MatmulDesc *>(desc);
    const Layout &la = *static_cast<Layout *>(a), &lb = *static_cast<Layout *>(b), &lc = *static_cast<Layout *>(c),
                 &ld = *static_cast<Layout *>(d);
    const Preference &p = *static_cast<Preference *>(preference);
    if (const int r = check_problem(md, la, lb, lc, ld, "cublasLtMatmulAlgoGetHeuristic")) { *returned = 0; return r; }
    Algorithm algo;
    for (int i = 0; i < 4; i++) algo.align[i] = p.align[i];
    algo.bias_align = md.epilogue == EPILOGUE_BIAS ? (md.bias ? alignment_of(md.bias) : 256) : 1;
    if (md.epilogue == EPILOGUE_BIAS && algo.bias_align < emu::device_spec().bias_epilogue_align) {
        *returned = 0;   // as the library does when none of its kernels takes the problem
        emu::counters().refusals++;
        return NOT_SUPPORTED;
    }
    const uint64_t k = md.transa ? la.rows : la.cols;
    algo.workspace = k >= 2048 && p.workspace >= (1 << 20) ? (1 << 20) : 0;   // split-k for long products, if allowed
    algorithms.push_back(algo);
    results[0] = rt_cublasLtMatmulHeuristicResultLayout{};
    results[0].algo.data[0] = algorithms.size();   // 1-based: 0 is no algorithm
    results[0].workspaceSize = algo.workspace;
    results[0].state = SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return SUCCESS;
}

/// columns[c·m + i] = Σ_p a[i + p·m] · b[p + c·k] for c < width ≤ 4, in double: the reference
/// product of the operands as the kernel was given them (a m×k, b k×width, column-major).
/// Compiled for AVX-512, AVX2 and the baseline; four columns share each load of `a`.
__attribute__((target_clones("avx512f", "avx2", "default")))
static void accumulate_columns(double *columns, const float *a, const float *b, uint64_t m, uint64_t k, uint64_t width) {
    std::fill(columns, columns + 4 * m, 0.0);
    double *c0 = columns, *c1 = columns + m, *c2 = columns + 2 * m, *c3 = columns + 3 * m;
    for (uint64_t p = 0; p < k; p++) {
        const float *ap = a + p * m;
        const double b0 = b[p], b1 = width > 1 ? b[p + k] : 0, b2 = width > 2 ? b[p + 2 * k] : 0, b3 = width > 3 ? b[p + 3 * k] : 0;
        for (uint64_t i = 0; i < m; i++) {
            const double x = ap[i];
            c0[i] += x * b0; c1[i] += x * b1; c2[i] += x * b2; c3[i] += x * b3;
        }
    }
}

int cublasLtMatmul(void *handle, void *desc, const void *alpha, const void *A, void *a, const void *B, void *b, const void *beta,
                   const void *C, void *c, void *D, void *d, const rt_cublasLtMatmulAlgoLayout *algo, void *workspace,
                   size_t workspace_bytes, void *stream) {
    if (!handle || !algo || algo->data[0] == 0 || algo->data[0] > algorithms.size()) return INVALID_VALUE;
    const Algorithm chosen = algorithms[algo->data[0] - 1];
    const MatmulDesc md = *static_cast<MatmulDesc *>(desc);
    const Layout la = *static_cast<Layout *>(a), lb = *static_cast<Layout *>(b), lc = *static_cast<Layout *>(c),
                 ld = *static_cast<Layout *>(d);
    if (const int r = check_problem(md, la, lb, lc, ld, "cublasLtMatmul")) return r;
    const void *operands[4] = {A, B, C, D};
    const char *names[4] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; i++) {
        const unsigned actual = alignment_of(reinterpret_cast<uint64_t>(operands[i]));
        if (actual < chosen.align[i]) {
            emu::report("cublasLtMatmul: %s is %u-byte aligned, the algorithm was chosen for %u", names[i], actual, chosen.align[i]);
            emu::counters().refusals++;
            return NOT_SUPPORTED;
        }
    }
    if (!device_span(A, la, "A") || !device_span(B, lb, "B") || !device_span(C, lc, "C") || !device_span(D, ld, "D")) return INVALID_VALUE;
    if (md.epilogue == EPILOGUE_BIAS) {
        if (!md.bias || !emu::find_allocation(md.bias, ld.rows * 4)) {
            emu::report("cublasLtMatmul: the BIAS epilogue's pointer 0x%llx is not %llu floats of device memory",
                        (unsigned long long)md.bias, (unsigned long long)ld.rows);
            return INVALID_VALUE;
        }
        if (alignment_of(md.bias) < chosen.bias_align) {
            emu::report("cublasLtMatmul: the bias is %u-byte aligned, the algorithm was chosen for %u (the descriptor's bias "
                        "pointer at heuristic time%s)", alignment_of(md.bias), chosen.bias_align,
                        chosen.bias_align == 256 ? " was null" : "");
            emu::counters().refusals++;
            return NOT_SUPPORTED;
        }
    }
    if (chosen.workspace > 0 && (workspace_bytes < chosen.workspace ||
                                 !emu::find_allocation(reinterpret_cast<uint64_t>(workspace), chosen.workspace))) {
        emu::report("cublasLtMatmul: the algorithm needs %zu bytes of workspace, given %zu at %p", chosen.workspace,
                    workspace_bytes, workspace);
        return INVALID_VALUE;
    }
    float alpha_value, beta_value;
    std::memcpy(&alpha_value, alpha, 4);
    std::memcpy(&beta_value, beta, 4);
    emu::counters().matmuls++;
    const float wrong = emu::device_spec().wrong_matmuls ? 1.0f : 0.0f;   // RETORT_EMULATED_BROKEN=matmul
    emu::enqueue(stream, [=] {
        const bool tf32 = md.compute == COMPUTE_32F_FAST_TF32;
        const uint64_t m = ld.rows, n = ld.cols, k = md.transa ? la.rows : la.cols;
        std::vector<float> opA(m * k), opB(k * n);
        std::vector<double> column(4 * m);
        for (int batch = 0; batch < ld.batch; batch++) {
            const char *pa = static_cast<const char *>(A) + uint64_t(batch) * la.stride * la.element();
            const char *pb = static_cast<const char *>(B) + uint64_t(batch) * lb.stride * lb.element();
            const float *pc = static_cast<const float *>(C) + uint64_t(batch) * lc.stride;
            float *pd = static_cast<float *>(D) + uint64_t(batch) * ld.stride;
            for (uint64_t p = 0; p < k; p++)
                for (uint64_t i = 0; i < m; i++)
                    opA[i + p * m] = read(pa, la.type, md.transa ? p + i * la.ld : i + p * la.ld, tf32);
            for (uint64_t j = 0; j < n; j++)
                for (uint64_t p = 0; p < k; p++)
                    opB[p + j * k] = read(pb, lb.type, md.transb ? j + p * lb.ld : p + j * lb.ld, tf32);
            const float *bias = md.epilogue == EPILOGUE_BIAS ? reinterpret_cast<const float *>(md.bias) : nullptr;
            for (uint64_t j0 = 0; j0 < n; j0 += 4) {
                const uint64_t width = std::min<uint64_t>(4, n - j0);
                accumulate_columns(column.data(), opA.data(), &opB[j0 * k], m, k, width);
                for (uint64_t j = j0; j < j0 + width; j++)
                    for (uint64_t i = 0; i < m; i++) {
                        double v = double(alpha_value) * column[(j - j0) * m + i];
                        if (beta_value != 0) v += double(beta_value) * pc[i + j * lc.ld];   // beta 0: C is not read
                        if (bias) v += bias[i];
                        pd[i + j * ld.ld] = float(v) + wrong;
                    }
            }
        }
    }, "a cuBLASLt matmul");
    return SUCCESS;
}

}   // extern "C"
