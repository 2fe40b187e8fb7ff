// OpenBLAS, loaded at run time so that Retort chooses its kernels: OpenBLAS built with
// DYNAMIC_ARCH picks a core type once, in its constructor, and old releases mis-detect newer
// CPUs (Debian's 0.3.21 runs Haswell or Prescott kernels on AVX-512 Xeons and EPYCs at a third
// to a half of the speed). We set OPENBLAS_CORETYPE from CPUID before dlopen.
#define _GNU_SOURCE
#include "cbackend.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
static sgemm_fn cblas_sgemm_ptr;
static void (*set_threads_ptr)(int);
static rt_blas_info info;
static pthread_once_t once = PTHREAD_ONCE_INIT;

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

// The instruction set OpenBLAS's x86-64 core `name` needs when this CPU lacks it, else NULL.
static const char *forced_core_lacks(const char *name, const rt_cpu_features *f) {
    // (The Bulldozer family's kernels use AMD's four-operand FMA4, which no Intel CPU has.)
    static const struct { const char *core; int level; } cores[] = {
        {"SkylakeX", 3}, {"Cooperlake", 3}, {"SapphireRapids", 3}, {"Haswell", 2}, {"Zen", 2}, {"Sandybridge", 1},
        {"Bulldozer", 0}, {"Piledriver", 0}, {"Steamroller", 0}, {"Excavator", 0},
    };
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++) {
        if (strcasecmp(name, cores[i].core) != 0) continue;
        switch (cores[i].level) {
        case 3: return f->avx512f ? NULL : "AVX-512";
        case 2: return f->avx2 && f->fma ? NULL : "AVX2 and FMA";
        case 1: return f->avx ? NULL : "AVX";
        default: return f->fma4 ? NULL : "AMD's FMA4";
        }
    }
    return NULL;
}

static void load(void) {
    memset(&info, 0, sizeof info);
    // RETORT_BLAS_CORETYPE forces a core. Otherwise CPUID decides, even over an inherited
    // OPENBLAS_CORETYPE: machine images set it for other programs (this one exports Haswell on
    // AVX-512 hardware), and a silent 2x slowdown is worse than saying we overrode it.
    const char *forced = getenv("RETORT_BLAS_CORETYPE");
    const char *inherited = getenv("OPENBLAS_CORETYPE");
    const char *core = rt_cpu_openblas_coretype();
    // A forced core whose instructions this CPU lacks would stop the process at its first sgemm
    // (SIGILL): CPUID's choice instead, and the cpu line says why.
    const char *lacking = forced && *forced ? forced_core_lacks(forced, rt_cpu_detect()) : NULL;
    if (lacking && *core) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        snprintf(info.coretype_source, sizeof info.coretype_source, "RETORT_BLAS_CORETYPE=%s needs %s, which this CPU lacks: chosen from CPUID",
                 forced, lacking);
        forced = NULL;
    } else if (forced && *forced) {
        setenv("OPENBLAS_CORETYPE", forced, 1);
        snprintf(info.coretype_source, sizeof info.coretype_source, "RETORT_BLAS_CORETYPE=%s", forced);
    } else if (*core) {
        const rt_cpu_features *f = rt_cpu_detect();
        const char *why = f->avx512f ? "AVX-512" : f->avx2 ? "AVX2+FMA" : f->avx ? "AVX" : "SSE";
        if (inherited && *inherited && strcasecmp(inherited, core) != 0)
            snprintf(info.coretype_source, sizeof info.coretype_source,
                     "chosen from CPUID (%s), overriding OPENBLAS_CORETYPE=%s", why, inherited);
        else
            snprintf(info.coretype_source, sizeof info.coretype_source, "chosen from CPUID (%s)", why);
        setenv("OPENBLAS_CORETYPE", core, 1);
    } else {
        snprintf(info.coretype_source, sizeof info.coretype_source, "OpenBLAS's own detection");
    }
    // OpenBLAS's idle workers spin for 2^28 cycles (~0.1 s) after every call. Retort's own
    // kernels run right after each sgemm on the same cores, and the spinning halved their speed
    // (sgemm then fused attention: 13.4 ms instead of 7.0). Spin for the minimum instead.
    if (!getenv("OPENBLAS_THREAD_TIMEOUT")) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    char bundle[600];
    snprintf(bundle, sizeof bundle, "%s/lib", rt_executable_dir());
    const char *explicit_file = getenv("RETORT_OPENBLAS");
    const char *dirs[] = { bundle, NULL };
    const char *names[] = { "libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", NULL };
    void *handle = NULL;
    if (explicit_file && *explicit_file) {
        handle = dlopen(explicit_file, RTLD_NOW | RTLD_LOCAL);
        if (handle) snprintf(info.path, sizeof info.path, "%s", explicit_file);
        else snprintf(info.error, sizeof info.error, "RETORT_OPENBLAS=%s could not be loaded: %s", explicit_file, dlerror());
    } else {
        handle = rt_dlopen_search(names, dirs, 0, info.path, sizeof info.path, info.error, sizeof info.error);
        if (!handle) {
            size_t n = strlen(info.error);
            snprintf(info.error + n, sizeof info.error - n, "; install it with: apt-get install -y libopenblas-dev");
        }
    }
    if (!handle) return;
    cblas_sgemm_ptr = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    set_threads_ptr = (void (*)(int))dlsym(handle, "openblas_set_num_threads");
    char *(*corename)(void) = (char *(*)(void))dlsym(handle, "openblas_get_corename");
    char *(*config)(void) = (char *(*)(void))dlsym(handle, "openblas_get_config");
    int (*threads)(void) = (int (*)(void))dlsym(handle, "openblas_get_num_threads");
    if (!cblas_sgemm_ptr) {
        snprintf(info.error, sizeof info.error, "%s has no cblas_sgemm; install libopenblas-dev", info.path);
        return;
    }
    if (corename) snprintf(info.core, sizeof info.core, "%s", corename());
    // A name this OpenBLAS does not know leaves it to its own detection: say so rather than
    // print the forced name beside kernels it did not choose.
    // (It may also map a name to another core's kernels; either way the line names what runs.)
    if (forced && *forced && info.core[0] && strcasecmp(info.core, forced) != 0)
        snprintf(info.coretype_source, sizeof info.coretype_source,
                 "RETORT_BLAS_CORETYPE=%s, which this OpenBLAS does not run as such: it chose these", forced);
    if (config) {
        snprintf(info.config, sizeof info.config, "%s", config());
        // "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "0.3.21"
        const char *v = strstr(info.config, "OpenBLAS ");
        if (v) sscanf(v + 9, "%31s", info.version);
    }
    info.threads = threads ? threads() : 1;
    info.loaded = 1;
}

const rt_blas_info *rt_blas_load(void) {
    pthread_once(&once, load);
    return &info;
}

void rt_blas_set_threads(int threads) {
    if (rt_blas_load()->loaded && set_threads_ptr && threads > 0) set_threads_ptr(threads);
}

void rt_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm_ptr(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS, trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The same call; "single" because callers set OpenBLAS to one thread around it (rt_blas_set_threads)
// while Retort's pool splits the work (rt_split_gemm): a function pointer the pool can call.
void rt_sgemm_single(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm_ptr(CBLAS_ROW_MAJOR, trans_a ? CBLAS_TRANS : CBLAS_NO_TRANS, trans_b ? CBLAS_TRANS : CBLAS_NO_TRANS,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
