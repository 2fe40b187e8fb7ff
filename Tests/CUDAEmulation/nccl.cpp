// NCCL for the emulated device (test support): the entry points Retort calls, implemented over
// the MPI job the calling process belongs to — linked into a test's emulator folder as
// libnccl.so.2, so that data-parallel ranks on `--device cuda` take Retort's NCCL path
// (Sources/Backend/NCCL.swift) end to end: the unique id from rank 0 over MPI, one communicator
// per rank, all-reduces queued on the stream inside a group, the wait on cuStreamQuery (which
// here completes them at once: its timeout path is not exercised).
// An all-reduce runs when its stream runs (when the host waits), as a blocking MPI_Allreduce on
// the device memory, which in the emulator is the process's own. MPI is found in the process
// (Retort loads Open MPI with RTLD_GLOBAL), never linked. Arguments are checked as NCCL would
// (a wrong type, operation or communicator is ncclInvalidArgument).
#include "emulation.h"
#include <dlfcn.h>
#include <algorithm>
#include <climits>
#include <cstring>

namespace {

constexpr int success = 0, system_error = 2, invalid_argument = 4, invalid_usage = 5;
constexpr char magic[] = "retort-emulated-nccl";

struct Communicator {
    int ranks, rank;
    uint32_t check;
};
constexpr uint32_t live = 0x6e63636c;

struct MPI {
    int (*allreduce)(const void *, void *, int, void *, void *, void *) = nullptr;
    void *comm_world = nullptr, *float_type = nullptr, *op_sum = nullptr;
    bool found() const { return allreduce && comm_world && float_type && op_sum; }
};

MPI &mpi() {
    static MPI m = [] {
        MPI found;
        *(void **)&found.allreduce = dlsym(RTLD_DEFAULT, "MPI_Allreduce");
        found.comm_world = dlsym(RTLD_DEFAULT, "ompi_mpi_comm_world");
        found.float_type = dlsym(RTLD_DEFAULT, "ompi_mpi_float");
        found.op_sum = dlsym(RTLD_DEFAULT, "ompi_mpi_op_sum");
        return found;
    }();
    return m;
}

int group_depth = 0;

}   // namespace

extern "C" {

typedef struct { char internal[128]; } ncclUniqueId;

int ncclGetVersion(int *version) {
    if (!version) return invalid_argument;
    *version = 22703;   // the API of NCCL 2.27.3
    return success;
}

const char *ncclGetErrorString(int result) {
    switch (result) {
    case success: return "no error";
    case system_error: return "emulated NCCL: no MPI in this process";
    case invalid_argument: return "emulated NCCL: invalid argument";
    case invalid_usage: return "emulated NCCL: invalid usage";
    default: return "emulated NCCL: unknown error";
    }
}

int ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return invalid_argument;
    std::memset(id->internal, 0, sizeof id->internal);
    std::memcpy(id->internal, magic, sizeof magic);
    return success;
}

int ncclCommInitRank(void **comm, int ranks, ncclUniqueId id, int rank) {
    if (!comm || ranks < 1 || rank < 0 || rank >= ranks || std::memcmp(id.internal, magic, sizeof magic) != 0) return invalid_argument;
    if (!mpi().found()) return system_error;
    *comm = new Communicator{ranks, rank, live};
    return success;
}

int ncclCommDestroy(void *comm) {
    auto *c = static_cast<Communicator *>(comm);
    if (!c || c->check != live) return invalid_argument;
    c->check = 0;
    delete c;
    return success;
}

int ncclCommAbort(void *comm) { return ncclCommDestroy(comm); }

int ncclGroupStart(void) {
    group_depth++;
    return success;
}

int ncclGroupEnd(void) {
    if (group_depth == 0) return invalid_usage;
    group_depth--;
    return success;
}

int ncclAllReduce(const void *send, void *receive, size_t count, int type, int op, void *comm, void *stream) {
    auto *c = static_cast<Communicator *>(comm);
    if (!c || c->check != live || type != 7 /* ncclFloat32 */ || op != 0 /* ncclSum */ || !receive) return invalid_argument;
    const auto address = reinterpret_cast<uint64_t>(receive);
    if (!emu::find_allocation(address, count * sizeof(float)) || (send && !emu::find_allocation(reinterpret_cast<uint64_t>(send), count * sizeof(float)))) {
        emu::report("ncclAllReduce on %zu floats at 0x%llx, not inside one device allocation", count, (unsigned long long)address);
        return invalid_argument;
    }
    emu::enqueue(stream, [send, receive, count] {
        const MPI &m = mpi();
        for (size_t start = 0; start < count; start += INT_MAX / 2) {
            const int n = static_cast<int>(std::min<size_t>(INT_MAX / 2, count - start));
            float *out = static_cast<float *>(receive) + start;
            const void *in = send == receive ? reinterpret_cast<const void *>(1) /* MPI_IN_PLACE */ : static_cast<const float *>(send) + start;
            m.allreduce(in, out, n, m.float_type, m.op_sum, m.comm_world);
        }
    }, "an NCCL all-reduce");
    return success;
}

}   // extern "C"
