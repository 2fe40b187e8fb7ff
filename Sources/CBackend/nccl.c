// NCCL, loaded at run time by a data-parallel rank on CUDA: libnccl.so.2 from the executable's
// lib/ folder, RETORT_CUDA_PATH, pip's nvidia/*/lib folders (the nvidia-nccl-cu12/-cu13 wheels)
// or the system. Our own declarations of the few entry points Retort calls (nccl.h's types:
// ncclComm_t a pointer, ncclUniqueId 128 bytes by value, ncclResult_t an int, ncclFloat32 = 7,
// ncclSum = 0; the stream is the driver's CUstream).
#define _GNU_SOURCE
#include "cbackend.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char internal[RT_NCCL_UNIQUE_ID_BYTES]; } nccl_unique_id;

static struct {
    int (*get_version)(int *);
    int (*get_unique_id)(nccl_unique_id *);
    int (*comm_init_rank)(void **, int, nccl_unique_id, int);
    int (*comm_destroy)(void *);
    int (*comm_abort)(void *);
    int (*all_reduce)(const void *, void *, size_t, int, int, void *, rt_CUstream);
    int (*group_start)(void);
    int (*group_end)(void);
    const char *(*error_string)(int);
} nccl;

static rt_nccl_info info;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    memset(&info, 0, sizeof info);
    char bundle[600];
    snprintf(bundle, sizeof bundle, "%s/lib", rt_executable_dir());
    const char *extra = getenv("RETORT_CUDA_PATH");
    char first_extra[512] = "";
    if (extra && *extra) {   // its first folder (the search takes a list of plain folders)
        snprintf(first_extra, sizeof first_extra, "%s", extra);
        char *colon = strchr(first_extra, ':');
        if (colon) *colon = 0;
    }
    const char *dirs[] = { bundle, first_extra, NULL };
    const char *names[] = { "libnccl.so.2", "libnccl.so", NULL };
    void *handle = rt_dlopen_search(names, dirs, 1, info.path, sizeof info.path, info.error, sizeof info.error);
    if (!handle) return;
#define SYM(field, name) do { *(void **)&nccl.field = dlsym(handle, name); \
        if (!nccl.field) { snprintf(info.error, sizeof info.error, "%s has no symbol %s", info.path, name); return; } } while (0)
    SYM(get_version, "ncclGetVersion"); SYM(get_unique_id, "ncclGetUniqueId"); SYM(comm_init_rank, "ncclCommInitRank");
    SYM(comm_destroy, "ncclCommDestroy"); SYM(comm_abort, "ncclCommAbort"); SYM(all_reduce, "ncclAllReduce");
    SYM(group_start, "ncclGroupStart"); SYM(group_end, "ncclGroupEnd"); SYM(error_string, "ncclGetErrorString");
#undef SYM
    nccl.get_version(&info.version);
    info.loaded = 1;
}

const rt_nccl_info *rt_nccl_load(void) {
    pthread_once(&once, load);
    return &info;
}

const char *rt_nccl_error_string(int result) {
    return info.loaded ? nccl.error_string(result) : "NCCL is not loaded";
}

int rt_nccl_unique_id(void *id) {
    nccl_unique_id unique;
    int r = nccl.get_unique_id(&unique);
    memcpy(id, unique.internal, RT_NCCL_UNIQUE_ID_BYTES);
    return r;
}

int rt_nccl_comm_init_rank(void **comm, int ranks, const void *id, int rank) {
    nccl_unique_id unique;
    memcpy(unique.internal, id, RT_NCCL_UNIQUE_ID_BYTES);
    return nccl.comm_init_rank(comm, ranks, unique, rank);
}

int rt_nccl_comm_destroy(void *comm) { return nccl.comm_destroy(comm); }
int rt_nccl_comm_abort(void *comm) { return nccl.comm_abort(comm); }
int rt_nccl_group_start(void) { return nccl.group_start(); }
int rt_nccl_group_end(void) { return nccl.group_end(); }

int rt_nccl_all_reduce_sum_f32(rt_CUdeviceptr values, size_t count, void *comm, rt_CUstream stream) {
    void *pointer = (void *)(uintptr_t)values;
    return nccl.all_reduce(pointer, pointer, count, 7 /* ncclFloat32 */, 0 /* ncclSum */, comm, stream);
}
