// The emulated device's memory and streams.
// Memory: its own range of the address space (reserved at start, never where malloc puts host
// data), each allocation on its own pages, ending flush against a guard page that is never
// accessible, so an access past its end faults. Allocations are inaccessible (PROT_NONE) except
// while the device works — running a stream's queue — so host code that dereferences a device
// pointer faults too. A fault is reported with what the device was running (kernel, block,
// thread) or, outside device work, as a host access; then the process ends.
// Streams: work is queued and runs only when the host waits for it (cuStreamSynchronize, a
// blocking copy), in order; a host that reads a result without waiting reads stale memory.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <string>

#include "emulation.h"

namespace emu {

// ---------------------------------------------------------------- reporting
static void vreport(const char *format, va_list args) {
    char text[1024];
    vsnprintf(text, sizeof text, format, args);
    fprintf(stderr, "emulated CUDA: %s\n", text);
}

void report(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vreport(format, args);
    va_end(args);
}

void fatal(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vreport(format, args);
    va_end(args);
    fflush(stderr);
    _exit(134);
}

// ---------------------------------------------------------------- the device
const DeviceSpec &device_spec() {
    static const DeviceSpec spec = [] {
        DeviceSpec s;
        if (const char *a = getenv("RETORT_EMULATED_ARCH")) s.arch = atoi(a);
        if (const char *d = getenv("RETORT_EMULATED_DRIVER")) s.driver = atoi(d);
        if (const char *e = getenv("RETORT_EMULATED_SEED")) s.seed = strtoull(e, nullptr, 10);
        if (const char *m = getenv("RETORT_EMULATED_MEMORY")) s.memory = size_t(strtoull(m, nullptr, 10)) << 20;
        if (const char *b = getenv("RETORT_EMULATED_BIAS_ALIGN")) s.bias_epilogue_align = unsigned(atoi(b));
        if (const char *t = getenv("RETORT_EMULATED_TF32")) {
            if (strcmp(t, "truncate") != 0 && strcmp(t, "nearest") != 0) fatal("RETORT_EMULATED_TF32=%s: use nearest or truncate", t);
            s.tf32_truncates = strcmp(t, "truncate") == 0;
        }
        if (const char *broken = getenv("RETORT_EMULATED_BROKEN")) {
            s.wrong_matmuls = strcmp(broken, "matmul") == 0;
            s.failing_launches = strcmp(broken, "launch") == 0;
            if (!s.wrong_matmuls && !s.failing_launches) fatal("RETORT_EMULATED_BROKEN=%s: use matmul or launch", broken);
        }
        return s;
    }();
    return spec;
}

std::vector<Kernel> &kernels() {
    static std::vector<Kernel> registered;   // filled by the kernels_*.cpp registrars when the library loads
    return registered;
}

rt_emulated_cuda_counters &counters() {
    static rt_emulated_cuda_counters c{};
    return c;
}

namespace {

const uint64_t page = 4096;

struct Arena {
    char *base = nullptr;
    uint64_t pages = 0;
    std::map<uint64_t, uint64_t> free_runs;        // first page → page count
    std::map<uint64_t, Allocation> live;           // first page → allocation
    size_t used = 0;
    uint64_t serial = 0;
    bool device_mode = false;
    const char *activity = "nothing";
};

std::recursive_mutex lock;
struct sigaction previous_segv, previous_bus;

void on_fault(int signal, siginfo_t *info, void *context);

Arena &arena() {
    static Arena *a = [] {
        auto *a = new Arena();
        a->pages = device_spec().memory / page + 1024;   // room for guard pages
        void *p = mmap(nullptr, a->pages * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fatal("cannot reserve %zu MiB of address space for device memory", device_spec().memory >> 20);
        a->base = static_cast<char *>(p);
        a->free_runs[0] = a->pages;
        struct sigaction action {};
        action.sa_sigaction = on_fault;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, &previous_segv);
        sigaction(SIGBUS, &action, &previous_bus);
        // A fiber that overflows its stack faults on its guard page: the handler needs a stack of its own.
        static char alternate[64 << 10];
        stack_t ss{};
        ss.ss_sp = alternate;
        ss.ss_size = sizeof alternate;
        sigaltstack(&ss, nullptr);
        return a;
    }();
    return *a;
}

void protect(const Allocation &a, int mode) {
    char *start = arena().base + a.pages * page;
    if (mprotect(start, a.page_bytes, mode) != 0) fatal("mprotect failed on allocation #%llu", (unsigned long long)a.serial);
}

void enter_device() {
    Arena &a = arena();
    if (a.device_mode) return;
    for (auto &entry : a.live) protect(entry.second, PROT_READ | PROT_WRITE);
    a.device_mode = true;
}

void exit_device() {
    Arena &a = arena();
    if (!a.device_mode) return;
    for (auto &entry : a.live) protect(entry.second, PROT_NONE);
    a.device_mode = false;
    a.activity = "nothing";
}

// Async-signal-safe enough: formatting into a stack buffer and write(2).
void on_fault(int signal, siginfo_t *info, void *context) {
    Arena &a = arena();
    const uint64_t address = reinterpret_cast<uint64_t>(info->si_addr);
    const uint64_t start = reinterpret_cast<uint64_t>(a.base), end = start + a.pages * page;
    char text[1024];
    int n;
    if (address >= start && address < end) {
        const Allocation *nearest = nullptr;
        for (auto &entry : a.live) {   // the allocation just before the address (an overrun of it)
            if (entry.second.address <= address) nearest = &entry.second;
        }
        char where[256] = "";
        if (nearest) {
            if (address < nearest->address + nearest->bytes)
                snprintf(where, sizeof where, "inside allocation #%llu (%zu bytes at 0x%llx)", (unsigned long long)nearest->serial,
                         nearest->bytes, (unsigned long long)nearest->address);
            else
                snprintf(where, sizeof where, "%llu bytes past the end of allocation #%llu (%zu bytes at 0x%llx)",
                         (unsigned long long)(address - nearest->address - nearest->bytes + 1), (unsigned long long)nearest->serial,
                         nearest->bytes, (unsigned long long)nearest->address);
        } else {
            snprintf(where, sizeof where, "outside every allocation");
        }
        char thread[128];
        describe_running_thread(thread, sizeof thread);
        if (a.device_mode)
            n = snprintf(text, sizeof text, "emulated CUDA: device memory fault at 0x%llx, %s, while running %s%s\n",
                         (unsigned long long)address, where, a.activity, thread);
        else
            n = snprintf(text, sizeof text, "emulated CUDA: host code touched device memory at 0x%llx (%s): a device pointer "
                         "dereferenced on the host, or a result read without a copy\n", (unsigned long long)address, where);
        if (n > 0) (void)!write(2, text, size_t(n) < sizeof text ? size_t(n) : sizeof text - 1);
        _exit(139);
    }
    if (a.device_mode) {
        char thread[128];
        describe_running_thread(thread, sizeof thread);
        n = snprintf(text, sizeof text, "emulated CUDA: memory fault at 0x%llx (not device memory: a host pointer or a stack "
                     "overflow?) while running %s%s\n", (unsigned long long)address, a.activity, thread);
        if (n > 0) (void)!write(2, text, size_t(n) < sizeof text ? size_t(n) : sizeof text - 1);
        _exit(139);
    }
    // Not ours: let the previous handler (or the default action) have it.
    struct sigaction &previous = signal == SIGBUS ? previous_bus : previous_segv;
    if (previous.sa_flags & SA_SIGINFO) { previous.sa_sigaction(signal, info, context); return; }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) { previous.sa_handler(signal); return; }
    ::signal(signal, SIG_DFL);
    raise(signal);
}

struct Stream {
    std::deque<std::pair<std::function<void()>, std::string>> queue;
};
Stream default_stream;
std::vector<Stream *> streams{&default_stream};

Stream &stream_of(void *s) { return s ? *static_cast<Stream *>(s) : default_stream; }

}   // namespace

void set_activity(const char *what) { arena().activity = what; }

bool in_arena(uint64_t address) {
    Arena &a = arena();
    const uint64_t start = reinterpret_cast<uint64_t>(a.base);
    return address >= start && address < start + a.pages * page;
}

const Allocation *find_allocation(uint64_t address, size_t bytes) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    Arena &a = arena();
    if (!in_arena(address)) return nullptr;
    const uint64_t first = (address - reinterpret_cast<uint64_t>(a.base)) / page;
    auto it = a.live.upper_bound(first);
    if (it == a.live.begin()) return nullptr;
    --it;
    const Allocation &found = it->second;
    if (address < found.address || address + bytes > found.address + found.bytes) return nullptr;
    return &found;
}

uint64_t allocate(size_t bytes) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    Arena &a = arena();
    const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;   // cuMemAlloc aligns to 256 bytes
    const uint64_t data_pages = (rounded + page - 1) / page, pages = data_pages + 1;   // + a guard page
    for (auto it = a.free_runs.begin(); it != a.free_runs.end(); ++it) {
        if (it->second < pages) continue;
        const uint64_t first = it->first, count = it->second;
        a.free_runs.erase(it);
        if (count > pages) a.free_runs[first + pages] = count - pages;
        Allocation alloc;
        alloc.pages = first;
        alloc.page_bytes = data_pages * page;
        alloc.bytes = bytes;
        // Flush against the guard page: the first byte past the (256-rounded) end faults.
        alloc.address = reinterpret_cast<uint64_t>(a.base) + first * page + data_pages * page - rounded;
        alloc.serial = ++a.serial;
        a.live[first] = alloc;
        a.used += bytes;
        if (a.device_mode) protect(alloc, PROT_READ | PROT_WRITE);
        counters().allocations++;
        return alloc.address;
    }
    return 0;
}

bool release(uint64_t address) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    Arena &a = arena();
    for (auto it = a.live.begin(); it != a.live.end(); ++it) {
        if (it->second.address != address) continue;
        const Allocation alloc = it->second;
        protect(alloc, PROT_NONE);
        madvise(a.base + alloc.pages * page, alloc.page_bytes, MADV_DONTNEED);
        a.live.erase(it);
        a.used -= alloc.bytes;
        uint64_t first = alloc.pages, count = alloc.page_bytes / page + 1;
        auto next = a.free_runs.lower_bound(first);
        if (next != a.free_runs.end() && next->first == first + count) { count += next->second; a.free_runs.erase(next); }
        auto before = a.free_runs.lower_bound(first);
        if (before != a.free_runs.begin()) {
            --before;
            if (before->first + before->second == first) { first = before->first; count += before->second; a.free_runs.erase(before); }
        }
        a.free_runs[first] = count;
        return true;
    }
    return false;
}

size_t arena_bytes() { return device_spec().memory; }
size_t used_bytes() { return arena().used; }

void *make_stream() {
    std::lock_guard<std::recursive_mutex> guard(lock);
    streams.push_back(new Stream());
    return streams.back();
}

void destroy_stream(void *stream) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    synchronize(stream);
    streams.erase(std::remove(streams.begin(), streams.end(), static_cast<Stream *>(stream)), streams.end());
    delete static_cast<Stream *>(stream);
}

void enqueue(void *stream, std::function<void()> work, const char *what) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    stream_of(stream).queue.emplace_back(std::move(work), what);
}

void synchronize(void *stream) {
    std::lock_guard<std::recursive_mutex> guard(lock);
    Stream &s = stream_of(stream);
    if (s.queue.empty()) return;
    enter_device();
    while (!s.queue.empty()) {
        auto work = std::move(s.queue.front());
        s.queue.pop_front();
        set_activity(work.second.c_str());
        work.first();
    }
    exit_device();
}

void synchronize_all() {
    std::lock_guard<std::recursive_mutex> guard(lock);
    for (Stream *s : streams) synchronize(s == &default_stream ? nullptr : s);
}

}   // namespace emu

extern "C" const rt_emulated_cuda_counters *rt_emulated_cuda_counters_get(void) { return &emu::counters(); }
extern "C" void rt_emulated_cuda_counters_reset(void) { emu::counters() = rt_emulated_cuda_counters{}; }
