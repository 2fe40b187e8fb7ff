// Running a grid on the CPU. Every CUDA thread of a block is a fiber (its own stack, switched
// by a few instructions of assembly on x86-64, ucontext elsewhere); the block's fibers run on
// one OS thread until each finishes or waits at a collective operation — __syncthreads,
// __syncwarp, a shuffle, an mma — which completes when every thread it needs has arrived. Blocks
// run one after another. Both orders (blocks in the grid, threads in a block) are shuffled per
// launch from a seed, so a kernel that needs a barrier it lacks computes something else here.
// A kernel registered as independent (EMU_INDEPENDENT_KERNEL: its threads never meet) runs its
// threads as plain calls in order, no fibers; a collective operation in it is reported.
// Hardware rules enforced: whole warps for warp operations, every lane of a full-mask warp
// operation still running (a lane that returned early is an error on a GPU too), a barrier
// every live thread of the block reaches (or a deadlock report).
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <new>

#include "emulation.h"

namespace emu {

namespace {

// ---------------------------------------------------------------- context switching
#if defined(__x86_64__)
extern "C" void emu_switch_stack(void **save_sp, void *load_sp);
extern "C" void emu_fiber_entry();
// Saves the callee-saved registers on the current stack, stores its pointer in *save_sp,
// switches to load_sp and restores that stack's registers (System V x86-64).
asm(R"(
    .text
    .globl emu_switch_stack
    .type emu_switch_stack, @function
emu_switch_stack:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch_stack, .-emu_switch_stack
)");
#endif

const size_t stack_bytes = 128 << 10;

struct Fiber {
#if defined(__x86_64__)
    void *sp = nullptr;              // saved stack pointer
#else
    ucontext_t context;              // (a kilobyte: only where there is no assembly switch)
#endif
    char *stack = nullptr;           // mmap'ed, with a guard page below
    Dim3 tid;
    unsigned linear = 0;
    bool done = false, waiting = false;
};

struct Barrier {
    int arrived = 0;
    uint64_t generation = 0;
};

struct Block {
    const Kernel *kernel = nullptr;
    const void *blob = nullptr;
    Dim3 index, dim, grid;
    std::vector<Fiber> fibers;
    std::vector<unsigned> order;    // the shuffled running order
    Fiber *current = nullptr;
    void *scheduler_sp = nullptr;
    ucontext_t scheduler_context;
    Barrier block_barrier;
    std::vector<Barrier> warp_barriers;
    std::vector<uint64_t> slots;    // shuffle values, 2 × 32 per warp
    std::vector<Fragments> fragments;
    unsigned live = 0;              // threads not yet finished
    std::vector<unsigned> warp_live;
} block;

/// Incremented whenever a thread arrives at a barrier, a barrier completes or a thread finishes:
/// a round of the scheduler that leaves it unchanged is a deadlock.
uint64_t epoch = 0;

/// The stacks, made once and reused (a guard page below each catches an overflow).
std::vector<char *> stacks;
char *stack_for(unsigned i) {
    while (stacks.size() <= i) {
        const size_t page = 4096;
        void *p = mmap(nullptr, stack_bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fatal("cannot map a fiber stack");
        mprotect(p, page, PROT_NONE);
        stacks.push_back(static_cast<char *>(p) + page);
    }
    return stacks[i];
}

void run_current_thread() {
    block.kernel->invoke(block.blob);
}

void finish_current();

#if defined(__x86_64__)
extern "C" void emu_fiber_body() {
    run_current_thread();
    finish_current();   // switches away for good
    __builtin_unreachable();
}
asm(R"(
    .text
    .globl emu_fiber_entry
    .type emu_fiber_entry, @function
emu_fiber_entry:
    call emu_fiber_body
    ud2
    .size emu_fiber_entry, .-emu_fiber_entry
)");

void prepare(Fiber &f) {
    // The stack as emu_switch_stack leaves it: six saved registers, then the "return address"
    // emu_fiber_entry; after `ret` the stack pointer is 16-byte aligned, so the entry's `call`
    // enters the body as the ABI wants.
    uintptr_t top = reinterpret_cast<uintptr_t>(f.stack) + stack_bytes;
    top &= ~uintptr_t(15);
    void **sp = reinterpret_cast<void **>(top);
    *--sp = reinterpret_cast<void *>(&emu_fiber_entry);         // popped by ret
    for (int r = 0; r < 6; r++) *--sp = nullptr;                // rbp rbx r12 r13 r14 r15
    f.sp = sp;
}
void switch_to(Fiber &f) { emu_switch_stack(&block.scheduler_sp, f.sp); }
void switch_to_scheduler(Fiber &f) { emu_switch_stack(&f.sp, block.scheduler_sp); }
#else
void trampoline() {
    run_current_thread();
    finish_current();
}
void prepare(Fiber &f) {
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = stack_bytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, trampoline, 0);
}
void switch_to(Fiber &f) { swapcontext(&block.scheduler_context, &f.context); }
void switch_to_scheduler(Fiber &f) { swapcontext(&f.context, &block.scheduler_context); }
#endif

void finish_current() {
    Fiber &f = *block.current;
    f.done = true;
    epoch++;
    block.live--;
    block.warp_live[f.linear / 32]--;
    // A barrier the remaining threads are waiting at may now be complete (an exited thread no
    // longer counts, as on a GPU since Volta).
    if (block.block_barrier.arrived > 0 && block.block_barrier.arrived == (int)block.live) {
        block.block_barrier.arrived = 0;
        block.block_barrier.generation++;
    }
    switch_to_scheduler(f);
}

void yield() { switch_to_scheduler(*block.current); }

/// Waits until `count` threads (the caller included) have arrived at `b`.
void wait(Barrier &b, int count) {
    const uint64_t generation = b.generation;
    epoch++;
    if (++b.arrived >= count) {
        b.arrived = 0;
        b.generation++;
        return;
    }
    block.current->waiting = true;
    while (b.generation == generation) yield();
    block.current->waiting = false;
}

/// Plain mode: an independent-threads kernel's threads run as ordinary calls, no fibers.
bool plain = false;

void check_fiber(const char *operation) {
    if (plain)
        fatal("%s: %s in a kernel registered as having independent threads (EMU_INDEPENDENT_KERNEL): register it with "
              "EMU_KERNEL", block.kernel->name, operation);
}

void check_full_warp(const char *operation, unsigned mask) {
    check_fiber(operation);
    if (mask != 0xffffffffu)
        fatal("%s: %s with mask 0x%08x; the kernels use whole warps (0xffffffff) only", block.kernel->name, operation, mask);
    const unsigned threads = block.dim.x * block.dim.y * block.dim.z;
    if (threads % 32 != 0)
        fatal("%s: %s in a block of %u threads, not whole warps", block.kernel->name, operation, threads);
    const unsigned warp = block.current->linear / 32;
    if (block.warp_live[warp] != 32)
        fatal("%s: %s with a full mask in warp %u of block (%u,%u,%u), but %u of its lanes already returned "
              "(undefined on a GPU)", block.kernel->name, operation, warp, block.index.x, block.index.y, block.index.z,
              32 - block.warp_live[warp]);
}

}   // namespace

void describe_running_thread(char *buffer, size_t size) {
    if (!block.kernel || !block.current) { if (size) buffer[0] = 0; return; }
    const Dim3 b = block.index, t = block.current->tid;
    snprintf(buffer, size, " (block (%u,%u,%u), thread (%u,%u,%u))", b.x, b.y, b.z, t.x, t.y, t.z);
}

Coordinates coordinates;

void check_aligned(const void *pointer, unsigned bytes, const char *expression) {
    if (reinterpret_cast<uintptr_t>(pointer) % bytes == 0) return;
    char where[128];
    describe_running_thread(where, sizeof where);
    fatal("%s: misaligned address: %s = %p read as a %u-byte value%s", block.kernel ? block.kernel->name : "a kernel",
          expression, pointer, bytes, where);
}
unsigned lane_id() { return block.current->linear % 32; }

void sync_block() {
    check_fiber("__syncthreads");
    wait(block.block_barrier, (int)block.live);
}

void sync_warp(unsigned mask) {
    check_full_warp("__syncwarp", mask);
    wait(block.warp_barriers[block.current->linear / 32], 32);
}

uint64_t shuffle(uint64_t bits, int source_lane, unsigned mask) {
    check_full_warp("a warp shuffle", mask);
    // One barrier per shuffle: the slots alternate by the barrier's generation, which every lane
    // of the warp sees the same at the same shuffle; a lane cannot write this half again before
    // every lane has passed the next warp barrier, that is, has read it.
    const unsigned warp = block.current->linear / 32, lane = block.current->linear % 32;
    Barrier &barrier = block.warp_barriers[warp];
    uint64_t *slots = &block.slots[(warp * 2 + (barrier.generation & 1)) * 32];
    slots[lane] = bits;
    wait(barrier, 32);
    return slots[(unsigned)source_lane];
}

Fragments *warp_fragments() {
    check_full_warp("mma.sync", 0xffffffffu);
    return &block.fragments[(block.current->linear / 32) * 32];
}

void run_grid(const Kernel &kernel, Dim3 grid, Dim3 dim, const void *blob, uint64_t seed) {
    const unsigned threads = dim.x * dim.y * dim.z;
    const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
    block.kernel = &kernel;
    block.blob = blob;
    block.dim = coordinates.block_dim = dim;
    block.grid = coordinates.grid_dim = grid;
    block.fibers.resize(threads);
    block.warp_barriers.assign((threads + 31) / 32, Barrier());
    block.slots.assign(((threads + 31) / 32) * 64, 0);
    block.fragments.assign(((threads + 31) / 32) * 32, Fragments());
    // splitmix64 for the orders
    uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    auto next = [&state]() {
        uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    std::vector<uint64_t> block_order(blocks);
    for (uint64_t b = 0; b < blocks; b++) block_order[b] = b;
    for (uint64_t b = blocks; b > 1; b--) std::swap(block_order[b - 1], block_order[next() % b]);
    block.order.resize(threads);
    for (unsigned t = 0; t < threads; t++) block.order[t] = t;
    for (uint64_t linear_block : block_order) {
        block.index = Dim3{unsigned(linear_block % grid.x), unsigned(linear_block / grid.x % grid.y),
                           unsigned(linear_block / (uint64_t(grid.x) * grid.y))};
        block.block_barrier = Barrier();
        for (auto &w : block.warp_barriers) w = Barrier();
        block.live = threads;
        block.warp_live.assign((threads + 31) / 32, 0);
        for (unsigned t = 0; t < threads; t++) block.warp_live[t / 32]++;
        if (!kernel.independent_threads)
            for (unsigned t = threads; t > 1; t--) std::swap(block.order[t - 1], block.order[next() % t]);
        coordinates.block = block.index;
        if (kernel.independent_threads) {   // no fibers: each thread is one call (in order: they never meet)
            plain = true;
            for (unsigned o = 0; o < threads; o++) {
                Fiber &f = block.fibers[o];
                f.linear = o;
                f.tid = coordinates.thread = Dim3{o % dim.x, o / dim.x % dim.y, o / (dim.x * dim.y)};
                block.current = &f;
                kernel.invoke(blob);
            }
            block.current = nullptr;
            plain = false;
            continue;
        }
        for (unsigned t = 0; t < threads; t++) {
            Fiber &f = block.fibers[t];
            f.linear = t;
            f.tid = Dim3{t % dim.x, t / dim.x % dim.y, t / (dim.x * dim.y)};
            f.done = f.waiting = false;
            f.stack = stack_for(t);
            prepare(f);
        }
        for (unsigned unfinished = threads; unfinished > 0;) {
            const uint64_t before = epoch;
            for (unsigned o : block.order) {
                Fiber &f = block.fibers[o];
                if (f.done) continue;
                block.current = &f;
                coordinates.thread = f.tid;
                switch_to(f);
                block.current = nullptr;
                if (f.done) unfinished--;
            }
            if (epoch == before) {
                // Every live thread waits and none of their barriers can complete.
                unsigned at_block = 0;
                for (auto &f : block.fibers) at_block += !f.done && f.waiting;
                fatal("%s: deadlock in block (%u,%u,%u): %u of %u threads are waiting at a barrier or warp operation "
                      "that the others never reach", kernel.name, block.index.x, block.index.y, block.index.z, at_block, threads);
            }
        }
    }
    block.kernel = nullptr;
}

}   // namespace emu
