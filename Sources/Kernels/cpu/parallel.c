// A small persistent thread pool for the CPU kernels. The calling thread takes part; workers
// spin briefly after a job (kernels come in quick succession) and then sleep on a condition
// variable. A job is published as one 64-bit word: generation (high 24 bits) and next chunk
// (low 40 bits), claimed with compare-and-swap, so a late worker can never run a chunk of a
// job other than the one whose task it read. Teams (rt_parallel_teams) split the threads for
// a few lanes of work at once; their members spin (yielding) for as long as their lane runs.
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

// One job at a time on a set of threads: the whole pool's, or a team's (rt_parallel_teams).
typedef struct {
    _Atomic uint64_t state;       // generation << 40 | next chunk
    _Atomic int64_t completed;    // chunks finished in the current job
    _Atomic int64_t chunks;       // read by stragglers while the next job is published (relaxed)
    rt_task task;
    void *ctx;
    int64_t n, grain;
} job_slot;

// A team: a leader running one lane's work, and the members that serve its jobs until it is done.
typedef struct {
    _Alignas(64) job_slot job;    // a cache line of its own: teams do not disturb each other's spinners
    _Atomic int done;
    int threads;                  // leader and members
} team_t;

static struct {
    pthread_once_t once;
    pthread_mutex_t job_lock;     // one pool job at a time
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    int threads;                  // including the caller
    int requested;
    job_slot job;
    void *scratch[MAX_THREADS][SCRATCH_SLOTS];
    size_t scratch_size[MAX_THREADS][SCRATCH_SLOTS];
    // rt_parallel_teams' job: its lanes, and the teams that run them
    team_t teams[MAX_THREADS];
    int team_count, lanes;
    rt_task lane_task;
    void *lane_ctx;
} pool = { .once = PTHREAD_ONCE_INIT, .job_lock = PTHREAD_MUTEX_INITIALIZER,
           .sleep_lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static _Thread_local int inside_pool;      // in a chunk: nested jobs run inline
static _Thread_local int my_thread;        // this thread's index (0: callers), for its scratch
static _Thread_local team_t *my_team;      // set while this thread leads a team's lane

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Claims and runs chunks of generation `generation` of `job` until none are left.
static void run_chunks(job_slot *job, uint64_t generation) {
    for (;;) {
        uint64_t s = atomic_load(&job->state);
        if ((s >> CHUNK_BITS) != generation) return;
        uint64_t chunk = s & CHUNK_MASK;
        if ((int64_t)chunk >= atomic_load_explicit(&job->chunks, memory_order_relaxed)) return;
        if (!atomic_compare_exchange_weak(&job->state, &s, s + 1)) continue;
        int64_t begin = (int64_t)chunk * job->grain;
        int64_t end = begin + job->grain < job->n ? begin + job->grain : job->n;
        job->task(job->ctx, begin, end, my_thread);
        atomic_fetch_add(&job->completed, 1);
    }
}

// Publishes a job of `chunks` chunks on `job` and returns its generation. The previous job is
// closed first: a straggler that loaded its state (all chunks claimed) may still be about to
// compare against job->chunks and CAS. With the state closed, its CAS fails whatever it reads
// below; without this it could claim a chunk past the old job's end once job->chunks grew, and
// run a finished job's task (seen as a crash in a long training run).
static uint64_t publish(job_slot *job, int64_t n, int64_t grain, int64_t chunks, rt_task task, void *ctx, int wake) {
    uint64_t previous = atomic_load(&job->state) >> CHUNK_BITS;
    atomic_store(&job->state, (previous << CHUNK_BITS) | CHUNK_MASK);
    job->task = task;
    job->ctx = ctx;
    job->n = n;
    job->grain = grain;
    atomic_store_explicit(&job->chunks, chunks, memory_order_relaxed);
    atomic_store(&job->completed, 0);
    uint64_t generation = (previous + 1) & ((1ull << (64 - CHUNK_BITS)) - 1);
    if (wake) pthread_mutex_lock(&pool.sleep_lock);
    atomic_store(&job->state, generation << CHUNK_BITS);
    if (wake) {
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
    return generation;
}

// Runs a published job's chunks with the other threads, then waits for theirs.
static void join(job_slot *job, uint64_t generation) {
    const int outer = inside_pool;
    inside_pool = 1;
    run_chunks(job, generation);
    inside_pool = outer;
    // Yield now and then, like the workers: with more threads than CPUs the ones still running
    // chunks may need this core.
    const int64_t chunks = atomic_load_explicit(&job->chunks, memory_order_relaxed);
    for (int spins = 1; atomic_load(&job->completed) < chunks; spins++) {
        if (spins % 16 == 0) sched_yield(); else cpu_relax();
    }
}

static void *worker(void *arg) {
    my_thread = (int)(intptr_t)arg;
    inside_pool = 1;
    uint64_t seen = atomic_load(&pool.job.state) >> CHUNK_BITS;
    for (;;) {
        uint64_t generation;
        int spins = 0;
        while ((generation = atomic_load(&pool.job.state) >> CHUNK_BITS) == seen) {
            // Spin (kernels come in quick succession) but yield often: OpenBLAS's threads run
            // sgemm on the same cores between our kernels, and a busy spinner would slow them.
            if (++spins < SPIN_ROUNDS) { if (spins % 16 == 0) sched_yield(); else cpu_relax(); continue; }
            pthread_mutex_lock(&pool.sleep_lock);
            while ((generation = atomic_load(&pool.job.state) >> CHUNK_BITS) == seen)
                pthread_cond_wait(&pool.wake, &pool.sleep_lock);
            pthread_mutex_unlock(&pool.sleep_lock);
            break;
        }
        seen = generation;
        run_chunks(&pool.job, generation);
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

int rt_lane_threads(void) {
    return my_team && !inside_pool ? my_team->threads : 0;
}

int rt_current_threads(void) {
    if (inside_pool) return 1;
    if (my_team) return my_team->threads;
    return rt_num_threads();
}

void rt_set_num_threads(int threads) {
    pool.requested = threads;
}

// The chunks one after another on this thread (nested calls inside them run inline too).
static void run_inline(int64_t n, int64_t grain, int64_t chunks, rt_task task, void *ctx) {
    const int outer = inside_pool;
    inside_pool = 1;
    for (int64_t c = 0; c < chunks; c++) {
        int64_t begin = c * grain, end = begin + grain < n ? begin + grain : n;
        task(ctx, begin, end, my_thread);
    }
    inside_pool = outer;
}

void rt_parallel_for(int64_t n, int64_t grain, rt_task task, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    if (inside_pool || (my_team && (my_team->threads == 1 || chunks == 1))) {   // nested, or a lone lane
        run_inline(n, grain, chunks, task, ctx);
        return;
    }
    if (my_team) {   // a lane's job, on its team
        join(&my_team->job, publish(&my_team->job, n, grain, chunks, task, ctx, 0));
        return;
    }
    pthread_once(&pool.once, start);
    pthread_mutex_lock(&pool.job_lock);
    if (chunks == 1 || pool.threads == 1) {
        run_inline(n, grain, chunks, task, ctx);
        pthread_mutex_unlock(&pool.job_lock);
        return;
    }
    join(&pool.job, publish(&pool.job, n, grain, chunks, task, ctx, 1));
    pthread_mutex_unlock(&pool.job_lock);
}

// Chunk c of the teams' pool job: c < team_count leads team c (its lanes c, c + team_count, …);
// a higher c joins team (c − team_count) mod team_count and runs its jobs until its leader is done.
static void team_task(void *ctx, int64_t begin, int64_t end, int thread) {
    (void)ctx; (void)thread;
    for (int64_t c = begin; c < end; c++) {
        const int k = (int)(c % pool.team_count);
        team_t *team = &pool.teams[k];
        if (c < pool.team_count) {
            my_team = team;
            inside_pool = 0;
            for (int lane = k; lane < pool.lanes; lane += pool.team_count) pool.lane_task(pool.lane_ctx, lane, lane + 1, my_thread);
            inside_pool = 1;
            my_team = NULL;
            atomic_store(&team->done, 1);
            continue;
        }
        uint64_t seen = atomic_load(&team->job.state) >> CHUNK_BITS;
        int spins = 0;
        while (!atomic_load(&team->done)) {
            uint64_t generation = atomic_load(&team->job.state) >> CHUNK_BITS;
            if (generation == seen) { if (++spins % 16 == 0) sched_yield(); else cpu_relax(); continue; }
            seen = generation;
            run_chunks(&team->job, generation);
        }
    }
}

void rt_parallel_teams(int lanes, rt_task task, void *ctx) {
    if (lanes <= 0) return;
    pthread_once(&pool.once, start);
    if (inside_pool || my_team || lanes == 1 || pool.threads == 1) {   // one after another, each with what this thread has
        for (int lane = 0; lane < lanes; lane++) task(ctx, lane, lane + 1, my_thread);
        return;
    }
    pthread_mutex_lock(&pool.job_lock);
    const int teams = lanes < pool.threads ? lanes : pool.threads;
    pool.team_count = teams;
    pool.lanes = lanes;
    pool.lane_task = task;
    pool.lane_ctx = ctx;
    for (int k = 0; k < teams; k++) {
        team_t *team = &pool.teams[k];
        atomic_store(&team->done, 0);
        team->threads = pool.threads / teams + (k < pool.threads % teams);
    }
    join(&pool.job, publish(&pool.job, pool.threads, 1, pool.threads, team_task, NULL, 1));
    pthread_mutex_unlock(&pool.job_lock);
}

void *rt_caller_scratch(int slot, size_t bytes) {
    return rt_thread_scratch(my_thread, slot, bytes);
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
