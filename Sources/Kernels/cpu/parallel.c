// A small persistent thread pool for the CPU kernels. The calling thread takes part; workers
// spin briefly after a job (kernels come in quick succession) and then sleep on a condition
// variable. A job is published as one 64-bit word: generation (high 24 bits) and next chunk
// (low 40 bits), claimed with compare-and-swap, so a late worker can never run a chunk of a
// job other than the one whose task it read.
#define _GNU_SOURCE
#include "kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 256
#define SCRATCH_SLOTS 16
#define CHUNK_BITS 40
#define CHUNK_MASK ((1ull << CHUNK_BITS) - 1)
#define SPIN_ROUNDS 20000

static struct {
    pthread_once_t once;
    pthread_mutex_t job_lock;     // one job at a time
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    int threads;                  // including the caller
    int requested;
    _Atomic uint64_t state;       // generation << 40 | next chunk
    _Atomic int64_t completed;    // chunks finished in the current job
    rt_task task;
    void *ctx;
    int64_t n, grain, chunks;
    void *scratch[MAX_THREADS][SCRATCH_SLOTS];
    size_t scratch_size[MAX_THREADS][SCRATCH_SLOTS];
} pool = { .once = PTHREAD_ONCE_INIT, .job_lock = PTHREAD_MUTEX_INITIALIZER,
           .sleep_lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static _Thread_local int inside_pool;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Claims and runs chunks of generation `generation` until none are left.
static void run_chunks(uint64_t generation, int thread) {
    for (;;) {
        uint64_t s = atomic_load(&pool.state);
        if ((s >> CHUNK_BITS) != generation) return;
        uint64_t chunk = s & CHUNK_MASK;
        if ((int64_t)chunk >= pool.chunks) return;
        if (!atomic_compare_exchange_weak(&pool.state, &s, s + 1)) continue;
        int64_t begin = (int64_t)chunk * pool.grain;
        int64_t end = begin + pool.grain < pool.n ? begin + pool.grain : pool.n;
        pool.task(pool.ctx, begin, end, thread);
        atomic_fetch_add(&pool.completed, 1);
    }
}

static void *worker(void *arg) {
    int thread = (int)(intptr_t)arg;
    inside_pool = 1;
    uint64_t seen = atomic_load(&pool.state) >> CHUNK_BITS;
    for (;;) {
        uint64_t generation;
        int spins = 0;
        while ((generation = atomic_load(&pool.state) >> CHUNK_BITS) == seen) {
            // Spin (kernels come in quick succession) but yield often: OpenBLAS's threads run
            // sgemm on the same cores between our kernels, and a busy spinner would slow them.
            if (++spins < SPIN_ROUNDS) { if (spins % 16 == 0) sched_yield(); else cpu_relax(); continue; }
            pthread_mutex_lock(&pool.sleep_lock);
            while ((generation = atomic_load(&pool.state) >> CHUNK_BITS) == seen)
                pthread_cond_wait(&pool.wake, &pool.sleep_lock);
            pthread_mutex_unlock(&pool.sleep_lock);
            break;
        }
        seen = generation;
        run_chunks(generation, thread);
    }
    return NULL;
}

static void start(void) {
    int threads = pool.requested;
    const char *env = getenv("RETORT_NUM_THREADS");
    if (threads <= 0 && env && atoi(env) > 0) threads = atoi(env);
    if (threads <= 0) {
        cpu_set_t set;
        threads = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    }
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    pool.threads = threads;
    for (int t = 1; t < threads; t++) {
        pthread_t id;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&id, &attr, worker, (void *)(intptr_t)t) != 0) { pool.threads = t; break; }
        pthread_attr_destroy(&attr);
    }
}

int rt_num_threads(void) {
    pthread_once(&pool.once, start);
    return pool.threads;
}

void rt_set_num_threads(int threads) {
    pool.requested = threads;
}

void rt_parallel_for(int64_t n, int64_t grain, rt_task task, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    if (inside_pool) { task(ctx, 0, n, 0); return; }   // nested: run inline
    pthread_once(&pool.once, start);
    pthread_mutex_lock(&pool.job_lock);
    if (chunks == 1 || pool.threads == 1) {
        inside_pool = 1;
        for (int64_t c = 0; c < chunks; c++) {
            int64_t begin = c * grain, end = begin + grain < n ? begin + grain : n;
            task(ctx, begin, end, 0);
        }
        inside_pool = 0;
        pthread_mutex_unlock(&pool.job_lock);
        return;
    }
    // Close the previous job first: a straggler that loaded its state (all chunks claimed) may
    // still be about to compare against pool.chunks and CAS. With the state closed, its CAS fails
    // whatever it reads below; without this it could claim a chunk past the old job's end once
    // pool.chunks grew, and run a finished job's task (seen as a crash in a long training run).
    uint64_t previous = atomic_load(&pool.state) >> CHUNK_BITS;
    atomic_store(&pool.state, (previous << CHUNK_BITS) | CHUNK_MASK);
    pool.task = task;
    pool.ctx = ctx;
    pool.n = n;
    pool.grain = grain;
    pool.chunks = chunks;
    atomic_store(&pool.completed, 0);
    uint64_t generation = (previous + 1) & ((1ull << (64 - CHUNK_BITS)) - 1);
    pthread_mutex_lock(&pool.sleep_lock);
    atomic_store(&pool.state, generation << CHUNK_BITS);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.sleep_lock);
    inside_pool = 1;
    run_chunks(generation, 0);
    inside_pool = 0;
    while (atomic_load(&pool.completed) < chunks) cpu_relax();
    pthread_mutex_unlock(&pool.job_lock);
}

void *rt_thread_scratch(int thread, int slot, size_t bytes) {
    if (thread < 0 || thread >= MAX_THREADS || slot < 0 || slot >= SCRATCH_SLOTS) return NULL;
    if (pool.scratch_size[thread][slot] < bytes) {
        free(pool.scratch[thread][slot]);
        size_t size = (bytes + 63) / 64 * 64;
        pool.scratch[thread][slot] = aligned_alloc(64, size);
        pool.scratch_size[thread][slot] = pool.scratch[thread][slot] ? size : 0;
    }
    return pool.scratch[thread][slot];
}

// ------------------------------------------------------------------ instruction-set level
static _Atomic int cpu_level;   // 0 until first asked

int rt_cpu_level_supported(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return 4;
    if (__builtin_cpu_supports("x86-64-v3")) return 3;
#endif
    return 1;
}

int rt_set_cpu_level(int level) {
    int best = rt_cpu_level_supported();
    level = level >= 4 ? 4 : level >= 3 ? 3 : 1;
    if (level > best) level = best;
    atomic_store(&cpu_level, level);
    return level;
}

int rt_cpu_level(void) {
    int level = atomic_load_explicit(&cpu_level, memory_order_relaxed);
    if (level) return level;
    const char *env = getenv("RETORT_CPU_LEVEL");
    return rt_set_cpu_level(env && atoi(env) > 0 ? atoi(env) : 4);
}
