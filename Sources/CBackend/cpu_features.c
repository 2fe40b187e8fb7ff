// CPU feature detection (CPUID + XGETBV) and the OpenBLAS core type it implies.
#define _GNU_SOURCE
#include "cbackend.h"
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static rt_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long read_xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void detect(void) {
    memset(&features, 0, sizeof features);
    cpu_set_t set;
    features.logical_cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                                          : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (features.logical_cpus < 1) features.logical_cpus = 1;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    unsigned brand[12] = {0};
    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002u + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
        memcpy(features.brand, brand, 48);
        features.brand[48] = 0;
        // Trim the padding some vendors put around the name.
        char *s = features.brand;
        while (*s == ' ') s++;
        memmove(features.brand, s, strlen(s) + 1);
        for (size_t n = strlen(features.brand); n && features.brand[n - 1] == ' '; n--) features.brand[n - 1] = 0;
    }
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state saved by the OS
    int zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0; // opmask + ZMM state
    features.avx = avx && ymm_state;
    features.fma = fma && ymm_state;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        features.avx2 = ((b >> 5) & 1) && ymm_state;
        features.avx512f = ((b >> 16) & 1) && zmm_state;
        features.avx512dq = ((b >> 17) & 1) && zmm_state;
        features.avx512bw = ((b >> 30) & 1) && zmm_state;
        features.avx512vl = ((b >> 31) & 1) && zmm_state;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) features.avx512_bf16 = ((a >> 5) & 1) && zmm_state;
    if (__get_cpuid(0x80000001u, &a, &b, &c, &d)) features.fma4 = ((c >> 16) & 1) && ymm_state;   // AMD's Bulldozer family
#else
    strcpy(features.brand, "non-x86 CPU");
#endif
}

const rt_cpu_features *rt_cpu_detect(void) {
    pthread_once(&features_once, detect);
    return &features;
}

const char *rt_cpu_openblas_coretype(void) {
#if defined(__x86_64__)
    const rt_cpu_features *f = rt_cpu_detect();
    if (f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl) return "SkylakeX";
    if (f->avx2 && f->fma) return "Haswell";
    if (f->avx) return "Sandybridge";
    return "Prescott";
#else
    return "";
#endif
}
