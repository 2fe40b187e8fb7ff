// Open MPI, loaded at run time: a process started by `mpirun` joins its job; any other process
// never touches MPI, so the binary runs where Open MPI is not installed. Our own declarations
// follow Open MPI's ABI (libmpi.so.40): handles are pointers to its predefined objects
// (ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum, …), requests are pointers, and
// MPI_STATUS_IGNORE is NULL. MPICH and its derivatives use integer handles and are refused.
//
// The small collectives are non-blocking (MPI_Iallreduce, MPI_Ibcast) and completed by polling
// MPI_Test, so that the caller can bound its wait (a rank that died or hangs); the gradient sums
// are blocking MPI_Allreduce calls (Open MPI's fastest) on a thread whose wait the caller bounds.
#define _GNU_SOURCE
#include "cbackend.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void *mpi_handle;   // MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Errhandler

static struct {
    int (*init_thread)(int *, char ***, int, int *);
    int (*initialized)(int *);
    int (*finalized)(int *);
    int (*finalize)(void);
    int (*comm_rank)(mpi_handle, int *);
    int (*comm_size)(mpi_handle, int *);
    int (*comm_set_errhandler)(mpi_handle, mpi_handle);
    int (*allreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle);
    int (*iallreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle, mpi_handle *);
    int (*ibcast)(void *, int, mpi_handle, int, mpi_handle, mpi_handle *);
    int (*test)(mpi_handle *, int *, void *);
    int (*cancel)(mpi_handle *);
    int (*abort)(mpi_handle, int);
    int (*error_string)(int, char *, int *);
    int (*get_library_version)(char *, int *);
    mpi_handle comm_world, float_type, double_type, byte_type, op_sum, op_max, op_min, errors_return;
} mpi;

static rt_mpi_info info;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    memset(&info, 0, sizeof info);
    const char *explicit_file = getenv("RETORT_MPI");
    const char *names[] = { "libmpi.so.40", "libmpi.so", NULL };
    void *handle = NULL;
    // RTLD_GLOBAL: Open MPI's components (mca_*.so), which it dlopens itself, resolve their
    // symbols against libmpi; loaded RTLD_LOCAL they fail with "undefined symbol".
    if (explicit_file && *explicit_file) {
        handle = dlopen(explicit_file, RTLD_NOW | RTLD_GLOBAL);
        if (!handle) { snprintf(info.error, sizeof info.error, "RETORT_MPI=%s could not be loaded: %s", explicit_file, dlerror()); return; }
        snprintf(info.path, sizeof info.path, "%s", explicit_file);
    } else {
        for (int i = 0; names[i] && !handle; i++) {
            handle = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
            if (handle) snprintf(info.path, sizeof info.path, "%s", names[i]);
        }
        if (!handle) {
            snprintf(info.error, sizeof info.error,
                     "Open MPI's libmpi.so.40 not found (Debian: apt-get install libopenmpi-dev openmpi-bin; or RETORT_MPI=/path/to/libmpi.so)");
            return;
        }
    }
    if (!dlsym(handle, "ompi_mpi_comm_world")) {
        snprintf(info.error, sizeof info.error, "%s is not Open MPI (no ompi_mpi_comm_world): Retort speaks Open MPI's ABI only", info.path);
        return;
    }
#define SYM(field, name) do { *(void **)&mpi.field = dlsym(handle, name); \
        if (!mpi.field) { snprintf(info.error, sizeof info.error, "%s: no symbol %s", info.path, name); return; } } while (0)
    SYM(init_thread, "MPI_Init_thread"); SYM(initialized, "MPI_Initialized"); SYM(finalized, "MPI_Finalized");
    SYM(finalize, "MPI_Finalize"); SYM(comm_rank, "MPI_Comm_rank"); SYM(comm_size, "MPI_Comm_size");
    SYM(comm_set_errhandler, "MPI_Comm_set_errhandler"); SYM(allreduce, "MPI_Allreduce"); SYM(iallreduce, "MPI_Iallreduce"); SYM(ibcast, "MPI_Ibcast");
    SYM(test, "MPI_Test"); SYM(cancel, "MPI_Cancel"); SYM(abort, "MPI_Abort"); SYM(error_string, "MPI_Error_string");
    SYM(get_library_version, "MPI_Get_library_version");
    SYM(comm_world, "ompi_mpi_comm_world"); SYM(float_type, "ompi_mpi_float"); SYM(double_type, "ompi_mpi_double");
    SYM(byte_type, "ompi_mpi_byte"); SYM(op_sum, "ompi_mpi_op_sum"); SYM(op_max, "ompi_mpi_op_max");
    SYM(op_min, "ompi_mpi_op_min"); SYM(errors_return, "ompi_mpi_errors_return");
#undef SYM
    int length = 0;
    char version[1024];   // MPI_MAX_LIBRARY_VERSION_STRING is 256 in Open MPI
    if (mpi.get_library_version(version, &length) == 0) {
        char *newline = strchr(version, '\n');
        if (newline) *newline = 0;
        char *comma = strchr(version, ',');
        if (comma) *comma = 0;
        snprintf(info.version, sizeof info.version, "%s", version);
    }
    info.loaded = 1;
}

const rt_mpi_info *rt_mpi_load(void) {
    pthread_once(&once, load);
    return &info;
}

static int error_text(int code, char *error, size_t error_size) {
    if (code == 0 || !error || !error_size) return code;
    char text[512];
    int length = 0;
    if (mpi.error_string && mpi.error_string(code, text, &length) == 0) snprintf(error, error_size, "%s", text);
    else snprintf(error, error_size, "MPI error %d", code);
    return code;
}

int rt_mpi_init(int *rank, int *size, int *serialized, char *error, size_t error_size) {
    if (!rt_mpi_load()->loaded) { snprintf(error, error_size, "%s", info.error); return -1; }
    int provided = 0, code;
    // SERIALIZED: the training thread and the gradient thread call MPI, never at once.
    if ((code = mpi.init_thread(NULL, NULL, 2 /* MPI_THREAD_SERIALIZED */, &provided))) return error_text(code, error, error_size);
    *serialized = provided >= 2;
    // Errors come back as codes (and then one-line messages), not as Open MPI's abort.
    if ((code = mpi.comm_set_errhandler(mpi.comm_world, mpi.errors_return))) return error_text(code, error, error_size);
    if ((code = mpi.comm_rank(mpi.comm_world, rank))) return error_text(code, error, error_size);
    if ((code = mpi.comm_size(mpi.comm_world, size))) return error_text(code, error, error_size);
    return 0;
}

static mpi_handle op_of(int op) { return op == RT_MPI_MAX ? mpi.op_max : op == RT_MPI_MIN ? mpi.op_min : mpi.op_sum; }

int rt_mpi_iallreduce_f32(float *values, int count, int op, void **request, char *error, size_t error_size) {
    return error_text(mpi.iallreduce((void *)1 /* MPI_IN_PLACE */, values, count, mpi.float_type, op_of(op), mpi.comm_world, request),
                      error, error_size);
}

int rt_mpi_allreduce_f32(float *values, int count, char *error, size_t error_size) {
    return error_text(mpi.allreduce((void *)1, values, count, mpi.float_type, mpi.op_sum, mpi.comm_world), error, error_size);
}

int rt_mpi_iallreduce_f64(double *values, int count, int op, void **request, char *error, size_t error_size) {
    return error_text(mpi.iallreduce((void *)1, values, count, mpi.double_type, op_of(op), mpi.comm_world, request), error, error_size);
}

int rt_mpi_ibcast(void *bytes, int count, int root, void **request, char *error, size_t error_size) {
    return error_text(mpi.ibcast(bytes, count, mpi.byte_type, root, mpi.comm_world, request), error, error_size);
}

int rt_mpi_test(void **request, int *done, char *error, size_t error_size) {
    return error_text(mpi.test(request, done, NULL /* MPI_STATUS_IGNORE */), error, error_size);
}

void rt_mpi_abort(int code) {
    if (info.loaded) mpi.abort(mpi.comm_world, code);
    _exit(code);
}

void rt_mpi_finalize(void) {
    int initialized = 0, finalized = 0;
    if (!info.loaded || mpi.initialized(&initialized) || !initialized || mpi.finalized(&finalized) || finalized) return;
    mpi.finalize();
}
