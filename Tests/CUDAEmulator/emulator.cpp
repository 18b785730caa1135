// The CUDA emulator's runtime: blocks of fibers for kernels, a registry of "device" allocations,
// the runtime's error rules, and cuBLAS on OpenBLAS. See README.md beside this file.
#include <cblas.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "baton_gelu.h"
#include "baton_rounding.h"
#include "cublasLt.h"
#include "cublas_v2.h"

namespace baton_emulator {

ThreadState *current_thread = nullptr;
dim3 block_index, block_dim, grid_dim;

void check_wmma_access(const void *pointer, unsigned ldm, size_t element_bytes, const char *call) {
    if ((uintptr_t)pointer % 32 == 0 && (ldm * element_bytes) % 16 == 0) return;
    fprintf(stderr, "cuda emulator: %s: %s (a GPU says \"misaligned address\"): pointer %p, ldm %u\n", call,
            (uintptr_t)pointer % 32 ? "the pointer is not 256-bit aligned"
                                    : "the leading dimension is not a multiple of 16 bytes",
            pointer, ldm);
    abort();
}

namespace {

cudaError_t last_error = cudaSuccess;
// What went wrong, in more words than a CUDA error code: cudaGetErrorString adds it to the
// code's own string, so Baton's one-line error names the kernel and the broken rule.
cudaError_t detail_error = cudaSuccess;
std::string detail;

// BATON_EMULATOR_TRACE=1: one line on stderr for each kernel launch, cuBLAS call and
// device-to-host copy, so a test can see which kernels a step runs (a fused op that quietly fell
// back shows) and where the host waits for the device.
void trace(const char *what, const char *name) {
    static const bool enabled = getenv("BATON_EMULATOR_TRACE") && *getenv("BATON_EMULATOR_TRACE") == '1';
    if (enabled) fprintf(stderr, "cuda emulator trace: %s %s\n", what, name);
}

void fail(cudaError_t error, const std::string &message) {
    if (last_error != cudaSuccess) return;
    last_error = detail_error = error;
    detail = message;
}

// MARK: fibers
//
// A fiber is a stack and a saved stack pointer. On x86-64 the switch is a few instructions
// (the callee-saved registers; MXCSR and the x87 control word are left alone, since nothing here
// changes them); elsewhere it is ucontext's swapcontext, correct but a system call per switch.

constexpr size_t STACK_BYTES = 256 * 1024;
constexpr size_t GUARD_BYTES = 4096;

#if defined(__x86_64__) && !defined(BATON_EMULATOR_UCONTEXT)
#define BATON_EMULATOR_FAST_SWITCH 1
extern "C" void baton_emulator_switch(void **save_sp, void *load_sp);
asm(R"(
    .text
    .globl baton_emulator_switch
    .hidden baton_emulator_switch
    .type baton_emulator_switch, @function
baton_emulator_switch:
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
    .size baton_emulator_switch, .-baton_emulator_switch
)");
struct Context {
    void *sp = nullptr;
};
#else
struct Context {
    ucontext_t context;
};
#endif

enum class Wait { none, block, warp };

struct Fiber {
    ThreadState state;
    Context context;
    char *stack = nullptr; // GUARD_BYTES of PROT_NONE below STACK_BYTES of stack
    bool done = false;
    Wait wait = Wait::none;
    unsigned long wait_generation = 0;
    unsigned barriers = 0; // __syncthreads passed
};

struct Warp {
    int arrived = 0;
    unsigned long generation = 0;
    uint64_t slots[32];
};

// The block in flight: its fibers, barriers and warps. One at a time (see __shared__).
struct Block {
    std::vector<Fiber> fibers;
    std::vector<Warp> warps;
    Context scheduler;
    const std::function<void()> *body = nullptr;
    Fiber *running = nullptr;
    unsigned threads = 0; // fibers[0..<threads] are this block's; the vector is a pool
    unsigned live = 0;    // fibers not yet done
    int block_arrived = 0;
    unsigned long block_generation = 0;
    bool progress = false;
};

Block block;
unsigned long block_serial = 0; // counts blocks run, across launches

void switch_to(Context &save, Context &load) {
#ifdef BATON_EMULATOR_FAST_SWITCH
    baton_emulator_switch(&save.sp, load.sp);
#else
    swapcontext(&save.context, &load.context);
#endif
}

void yield_to_scheduler() { switch_to(block.running->context, block.scheduler); }

// Where every fiber starts: runs the kernel body for its thread, then hands control back for good.
void fiber_entry() {
    (*block.body)();
    block.running->done = true;
    switch_to(block.running->context, block.scheduler);
    abort(); // a finished fiber is never resumed
}

// Sets f up so that switching to it enters fiber_entry on its own stack.
void prepare(Fiber &f) {
    char *top = f.stack + GUARD_BYTES + STACK_BYTES;
#ifdef BATON_EMULATOR_FAST_SWITCH
    // What baton_emulator_switch pops: r15..rbp, then the "return address" fiber_entry, which
    // is entered with rsp = 8 mod 16 as after a call.
    uint64_t *sp = reinterpret_cast<uint64_t *>(top) - 8;
    for (int i = 0; i < 6; i++) sp[i] = 0;
    sp[6] = reinterpret_cast<uint64_t>(&fiber_entry);
    sp[7] = 0; // fiber_entry never returns
    f.context.sp = sp;
#else
    getcontext(&f.context.context);
    f.context.context.uc_stack.ss_sp = f.stack + GUARD_BYTES;
    f.context.context.uc_stack.ss_size = STACK_BYTES;
    f.context.context.uc_link = nullptr;
    makecontext(&f.context.context, fiber_entry, 0);
    (void)top;
#endif
}

unsigned linear_thread(const dim3 &t) { return t.x + block_dim.x * (t.y + block_dim.y * t.z); }

// Waits until the barrier's generation moves on; the scheduler runs the other fibers meanwhile.
void wait_for(Wait kind, unsigned long generation) {
    Fiber &self = *block.running;
    self.wait = kind;
    self.wait_generation = generation;
    while (true) {
        yield_to_scheduler();
        unsigned long now = kind == Wait::block ? block.block_generation
                                                : block.warps[linear_thread(self.state.thread_index) / 32].generation;
        if (now != generation) break;
    }
    self.wait = Wait::none;
}

bool still_waiting(const Fiber &f) {
    switch (f.wait) {
    case Wait::none: return false;
    case Wait::block: return block.block_generation == f.wait_generation;
    case Wait::warp: return block.warps[linear_thread(f.state.thread_index) / 32].generation == f.wait_generation;
    }
    return false;
}

// __syncthreads counts the threads that have not exited, as current GPUs do.
void release_block_barrier_if_complete() {
    if (block.block_arrived > 0 && (unsigned)block.block_arrived == block.live) {
        block.block_arrived = 0;
        block.block_generation++;
        block.progress = true;
    }
}

std::string describe_deadlock(const char *kernel) {
    int at_block = 0, at_warp = 0, exited = 0;
    for (unsigned i = 0; i < block.threads; i++) {
        const Fiber &f = block.fibers[i];
        if (f.done)
            exited++;
        else if (f.wait == Wait::block)
            at_block++;
        else if (f.wait == Wait::warp)
            at_warp++;
    }
    char line[256];
    snprintf(line, sizeof line,
             "%s: block (%u,%u,%u) can never finish: %d threads wait at __syncthreads, %d in a warp shuffle whose "
             "other lanes exited or never got there, %d exited",
             kernel, block_index.x, block_index.y, block_index.z, at_block, at_warp, exited);
    return line;
}

bool run_block(const char *kernel, unsigned threads) {
    if (block.fibers.size() < threads) {
        size_t old = block.fibers.size();
        block.fibers.resize(threads);
        for (size_t i = old; i < threads; i++) {
            void *memory = mmap(nullptr, GUARD_BYTES + STACK_BYTES, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (memory == MAP_FAILED) {
                perror("cuda emulator: mmap");
                abort();
            }
            mprotect(memory, GUARD_BYTES, PROT_NONE);
            block.fibers[i].stack = static_cast<char *>(memory);
        }
    }
    block.warps.assign((threads + 31) / 32, Warp());
    block.threads = block.live = threads;
    block_serial++;
    block.block_arrived = 0;
    for (unsigned i = 0; i < threads; i++) {
        Fiber &f = block.fibers[i];
        f.state.thread_index = dim3(i % block_dim.x, (i / block_dim.x) % block_dim.y, i / (block_dim.x * block_dim.y));
        f.done = false;
        f.wait = Wait::none;
        f.barriers = 0;
        prepare(f);
    }
    while (block.live > 0) {
        block.progress = false;
        for (unsigned i = 0; i < threads; i++) {
            Fiber &f = block.fibers[i];
            if (f.done || still_waiting(f)) continue;
            block.running = &f;
            current_thread = &f.state;
            switch_to(block.scheduler, f.context);
            if (f.done) {
                block.live--;
                block.progress = true;
                release_block_barrier_if_complete();
            }
        }
        if (!block.progress) {
            fail(cudaErrorLaunchFailure, describe_deadlock(kernel));
            return false;
        }
    }
    // A GPU lets exited threads count as arrived, so a barrier in divergent code may appear to
    // work; CUDA calls it undefined, and so does this check.
    for (unsigned i = 1; i < threads; i++) {
        if (block.fibers[i].barriers != block.fibers[0].barriers) {
            char line[256];
            snprintf(line, sizeof line,
                     "%s: block (%u,%u,%u): threads 0 and %u passed %u and %u __syncthreads (a barrier in divergent "
                     "code)",
                     kernel, block_index.x, block_index.y, block_index.z, i, block.fibers[0].barriers,
                     block.fibers[i].barriers);
            fail(cudaErrorLaunchFailure, line);
            return false;
        }
    }
    return true;
}

} // namespace

void sync_block() {
    unsigned long generation = block.block_generation;
    block.block_arrived++;
    block.progress = true;
    release_block_barrier_if_complete();
    if (block.block_generation == generation) wait_for(Wait::block, generation);
    block.running->barriers++;
}

namespace {
std::map<void *, unsigned long> poisoned_in_block; // shared array -> the block that last poisoned it
} // namespace

void poison_shared(void *array, size_t bytes) {
    unsigned long &last = poisoned_in_block[array];
    if (last == block_serial) return;
    last = block_serial;
    memset(array, 0x7f, bytes); // 3.4e38 as a float, 1.4e306 as a double: a NaN would slip through fmaxf
}

unsigned lane_id() { return linear_thread(current_thread->thread_index) % 32; }

uint64_t exchange_in_warp(unsigned mask, uint64_t mine, int source) {
    unsigned thread = linear_thread(current_thread->thread_index), lane = thread % 32;
    Warp &warp = block.warps[thread / 32];
    if (!(mask >> lane & 1)) fail(cudaErrorLaunchFailure, "a warp shuffle from a lane outside its own mask");
    int members = __builtin_popcount(mask);
    // Arrive, exchange, and leave together: two barriers over the lanes of the mask.
    warp.slots[lane] = mine;
    for (int phase = 0; phase < 2; phase++) {
        unsigned long generation = warp.generation;
        block.progress = true;
        if (++warp.arrived == members) {
            warp.arrived = 0;
            warp.generation++;
        } else {
            wait_for(Wait::warp, generation);
        }
        if (phase == 0) mine = source >= 0 && source < 32 && (mask >> source & 1) ? warp.slots[source] : mine;
    }
    return mine;
}

// MARK: device memory
//
// Each allocation gets its own pages, ending exactly at an inaccessible guard page (and with one
// before it), so a kernel that reads or writes past either end of its buffer, or touches freed
// memory, faults at once, as a GPU reports an illegal address; the fault handler names the kernel.

namespace {
std::mutex memory_lock;
struct Allocation {
    size_t bytes;
    char *mapping; // guard page, data pages, guard page
    size_t mapping_bytes;
    int device; // current when it was allocated
};
// The calling thread's current device (cudaSetDevice), 0 until set, as in CUDA.
thread_local int current_device = 0;
std::map<uintptr_t, size_t> pinned;          // cudaMallocHost's buffers by start
std::map<uintptr_t, Allocation> allocations; // by start
size_t page_bytes() { return (size_t)sysconf(_SC_PAGE_SIZE); }

// The allocation that starts at or below p, or allocations.end(); memory_lock held.
std::map<uintptr_t, Allocation>::const_iterator allocation_below(uintptr_t p) {
    auto it = allocations.upper_bound(p);
    return it == allocations.begin() ? allocations.cend() : std::prev(it);
}

// Whether [pointer, pointer + bytes) lies inside one allocation.
bool on_device(const void *pointer, size_t bytes) {
    std::lock_guard<std::mutex> guard(memory_lock);
    uintptr_t p = reinterpret_cast<uintptr_t>(pointer);
    auto it = allocation_below(p);
    return it != allocations.cend() && p + bytes <= it->first + it->second.bytes;
}

// The device of the allocation holding pointer, or -1 (host memory).
int device_of(const void *pointer) {
    std::lock_guard<std::mutex> guard(memory_lock);
    uintptr_t p = reinterpret_cast<uintptr_t>(pointer);
    auto it = allocation_below(p);
    return it != allocations.cend() && p < it->first + (it->second.bytes ? it->second.bytes : 1) ? it->second.device
                                                                                                 : -1;
}

bool is_pinned(const void *pointer, size_t bytes) {
    std::lock_guard<std::mutex> guard(memory_lock);
    uintptr_t p = reinterpret_cast<uintptr_t>(pointer);
    auto it = pinned.upper_bound(p);
    if (it == pinned.begin()) return false;
    --it;
    return p >= it->first && p + bytes <= it->first + it->second;
}

const char *running_kernel = nullptr;
struct sigaction previous_segv;
char alternate_stack[64 * 1024];

void on_fault(int signal, siginfo_t *info, void *context) {
    if (running_kernel) {
        char line[512];
        int n = snprintf(
                line, sizeof line,
                "cuda emulator: illegal memory access in %s, block (%u,%u,%u), thread (%u,%u,%u), address %p "
                "(outside every live allocation; a GPU would say \"an illegal memory access was encountered\")\n",
                running_kernel, block_index.x, block_index.y, block_index.z,
                current_thread ? current_thread->thread_index.x : 0,
                current_thread ? current_thread->thread_index.y : 0,
                current_thread ? current_thread->thread_index.z : 0, info->si_addr);
        if (n > 0) {
            ssize_t ignored = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            (void)ignored;
        }
    }
    // Hand the fault on (to Swift's crash reporter, or the default: a core dump).
    sigaction(signal, &previous_segv, nullptr);
    (void)context;
}

void install_fault_handler() {
    static bool installed = false;
    if (installed) return;
    installed = true;
    stack_t stack = {};
    stack.ss_sp = alternate_stack;
    stack.ss_size = sizeof alternate_stack;
    sigaltstack(&stack, nullptr); // a fiber's stack may be what overflowed
    struct sigaction action = {};
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous_segv);
}
} // namespace

bool on_current_device(const char *kernel, const void *pointer) {
    int device = device_of(pointer);
    if (device < 0 || device == current_device) return true;
    char line[256];
    snprintf(line, sizeof line, "%s: launched on device %d with a pointer into device %d's memory", kernel,
             current_device, device);
    fail(cudaErrorIllegalAddress, line);
    return false;
}

void run_grid(const char *kernel, dim3 grid, dim3 blocks, size_t shared_bytes, const std::function<void()> &body) {
    trace("launch", kernel);
    unsigned long long threads = (unsigned long long)blocks.x * blocks.y * blocks.z;
    // The limits of every GPU Baton targets (compute capability 8.0 and later).
    bool valid = grid.x >= 1 && grid.x <= 2147483647u && grid.y >= 1 && grid.y <= 65535 && grid.z >= 1 &&
                 grid.z <= 65535 && blocks.x >= 1 && blocks.x <= 1024 && blocks.y >= 1 && blocks.y <= 1024 &&
                 blocks.z >= 1 && blocks.z <= 64 && threads <= 1024 && shared_bytes <= 48 * 1024;
    if (!valid) {
        char line[256];
        snprintf(line, sizeof line,
                 "%s: invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u), %zu bytes shared", kernel,
                 grid.x, grid.y, grid.z, blocks.x, blocks.y, blocks.z, shared_bytes);
        fail(cudaErrorInvalidConfiguration, line);
        return;
    }
    install_fault_handler();
    running_kernel = kernel;
    grid_dim = grid;
    block_dim = blocks;
    block.body = &body;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                block_index = dim3(x, y, z);
                if (!run_block(kernel, (unsigned)threads)) z = grid.z, y = grid.y, x = grid.x; // stop the grid
            }
    current_thread = nullptr;
    running_kernel = nullptr;
}

} // namespace baton_emulator

using namespace baton_emulator;

// One emulated GPU, or $BATON_EMULATOR_GPUS of them (all the same host memory), so ranks of a job
// under mpirun can each open "their" GPU.
static int emulated_devices() {
    const char *text = getenv("BATON_EMULATOR_GPUS");
    int count = text ? atoi(text) : 1;
    return count >= 1 && count <= 64 ? count : 1;
}

cudaError_t cudaGetDeviceCount(int *count) {
    *count = emulated_devices();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= emulated_devices()) return cudaErrorInvalidDevice;
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    if (!device) return cudaErrorInvalidValue;
    *device = current_device;
    return cudaSuccess;
}

// Which emulated device an allocation is on (-1: none), for tests that open two contexts through a
// loaded backend library (whose other symbols are hidden).
extern "C" __attribute__((visibility("default"))) int baton_emulator_device_of(const void *pointer) {
    return device_of(pointer);
}

// Every launch runs to its end before it returns: the stream is always idle.
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *properties, int device) {
    if (device < 0 || device >= emulated_devices()) return cudaErrorInvalidDevice;
    memset(properties, 0, sizeof *properties);
    snprintf(properties->name, sizeof properties->name, "CUDA emulator on the CPU (not a GPU)");
    properties->totalGlobalMem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGE_SIZE);
    // 9.0 (an H100's), or $BATON_EMULATOR_COMPUTE_CAPABILITY ("7.5": a card without bf16 tensor
    // cores), so a test can see what Baton does on an older GPU.
    const char *capability = getenv("BATON_EMULATOR_COMPUTE_CAPABILITY");
    properties->major = 9;
    properties->minor = 0;
    if (capability && sscanf(capability, "%d.%d", &properties->major, &properties->minor) != 2) {
        properties->major = 9;
        properties->minor = 0;
    }
    properties->multiProcessorCount = 1;
    properties->warpSize = 32;
    properties->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

// The emulator speaks CUDA 13.0's runtime API and cuBLAS 13.0's (what the GPU host has).
cudaError_t cudaRuntimeGetVersion(int *version) {
    if (!version) return cudaErrorInvalidValue;
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **pointer, size_t bytes) {
    if (!pointer) return cudaErrorInvalidValue;
    size_t page = page_bytes(), used = (bytes + 3) / 4 * 4; // 4-byte aligned (8 for a buffer of doubles)
    size_t data = (used + page - 1) / page * page, total = data + 2 * page;
    void *mapping = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) return cudaErrorMemoryAllocation;
    char *base = static_cast<char *>(mapping);
    if (data > 0 && mprotect(base + page, data, PROT_READ | PROT_WRITE) != 0) {
        munmap(mapping, total);
        return cudaErrorMemoryAllocation;
    }
    char *start = base + page + data - used;
    memset(start, 0xff, used); // as a GPU's fresh memory, not zeros: reading it before writing shows (NaN)
    std::lock_guard<std::mutex> guard(memory_lock);
    allocations[reinterpret_cast<uintptr_t>(start)] = Allocation{bytes, base, total, current_device};
    *pointer = start;
    return cudaSuccess;
}

cudaError_t cudaFree(void *pointer) {
    if (!pointer) return cudaSuccess;
    Allocation allocation;
    {
        std::lock_guard<std::mutex> guard(memory_lock);
        auto it = allocations.find(reinterpret_cast<uintptr_t>(pointer));
        if (it == allocations.end()) return cudaErrorInvalidDevicePointer;
        allocation = it->second;
        allocations.erase(it);
    }
    munmap(allocation.mapping, allocation.mapping_bytes); // later use of it faults
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (bytes == 0) return cudaSuccess;
    // From pageable memory a GPU waits for the stream first: traced, so a test can see where.
    if (kind == cudaMemcpyHostToDevice) trace("memcpy", "host to device (pageable: waits for the stream)");
    bool dst_device = on_device(dst, bytes), src_device = on_device(src, bytes);
    bool valid = false;
    switch (kind) {
    case cudaMemcpyHostToDevice: valid = dst_device && !on_device(src, 1); break;
    case cudaMemcpyDeviceToHost: valid = src_device && !on_device(dst, 1); break;
    case cudaMemcpyDeviceToDevice: valid = dst_device && src_device; break;
    case cudaMemcpyHostToHost: valid = !on_device(dst, 1) && !on_device(src, 1); break;
    case cudaMemcpyDefault: valid = true; break;
    }
    if (!valid) return cudaErrorInvalidValue;
    // A device-to-host copy is where the host waits for the GPU: traced, so a test can count them.
    if (kind == cudaMemcpyDeviceToHost) trace("memcpy", "device to host");
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *pointer, int value, size_t bytes) {
    if (bytes && !on_device(pointer, bytes)) return cudaErrorInvalidValue;
    memset(pointer, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **pointer, size_t bytes) {
    if (!pointer) return cudaErrorInvalidValue;
    void *memory = malloc(bytes > 0 ? bytes : 1);
    if (!memory) return cudaErrorMemoryAllocation;
    std::lock_guard<std::mutex> guard(memory_lock);
    pinned[reinterpret_cast<uintptr_t>(memory)] = bytes > 0 ? bytes : 1;
    *pointer = memory;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *pointer) {
    if (!pointer) return cudaSuccess;
    {
        std::lock_guard<std::mutex> guard(memory_lock);
        auto it = pinned.find(reinterpret_cast<uintptr_t>(pointer));
        if (it == pinned.end()) return cudaErrorInvalidValue;
        pinned.erase(it);
    }
    free(pointer);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    if (bytes == 0) return cudaSuccess;
    const void *host = kind == cudaMemcpyHostToDevice ? src : kind == cudaMemcpyDeviceToHost ? dst : nullptr;
    if (host && !is_pinned(host, bytes)) {
        fail(cudaErrorInvalidValue,
             "cudaMemcpyAsync with pageable host memory: a GPU does it synchronously (pin it: cudaMallocHost)");
        return cudaErrorInvalidValue;
    }
    if (kind == cudaMemcpyHostToDevice) trace("memcpy", "host to device (pinned, async)");
    if (kind == cudaMemcpyDeviceToHost) trace("memcpy", "device to host (pinned, async)");
    // cudaMemcpy's rules, without its trace.
    bool dst_device = on_device(dst, bytes), src_device = on_device(src, bytes);
    bool valid = kind == cudaMemcpyHostToDevice   ? dst_device && !on_device(src, 1)
                 : kind == cudaMemcpyDeviceToHost ? src_device && !on_device(dst, 1)
                 : kind == cudaMemcpyDeviceToDevice
                         ? dst_device && src_device
                         : kind == cudaMemcpyDefault || (!on_device(dst, 1) && !on_device(src, 1));
    if (!valid) return cudaErrorInvalidValue;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

// An event belongs to the device current at its creation; recording it while another is current is
// an error, as on a GPU. Everything is done when it is recorded here.
struct baton_emulator_event {
    int device;
};

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned) {
    if (!event) return cudaErrorInvalidValue;
    *event = new baton_emulator_event{current_device};
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
    if (!event) return cudaErrorInvalidResourceHandle;
    if (event->device != current_device) {
        char line[128];
        snprintf(line, sizeof line, "cudaEventRecord: an event of device %d recorded on device %d's stream",
                 event->device, current_device);
        fail(cudaErrorInvalidResourceHandle, line);
        return cudaErrorInvalidResourceHandle;
    }
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) { return event ? cudaSuccess : cudaErrorInvalidResourceHandle; }
cudaError_t cudaEventQuery(cudaEvent_t event) { return event ? cudaSuccess : cudaErrorInvalidResourceHandle; }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
    delete event;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; } // kernels run to completion at launch

cudaError_t cudaGetLastError(void) {
    cudaError_t error = last_error;
    last_error = cudaSuccess;
    return error;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

namespace {
const char *plain_error_string(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorSystemDriverMismatch: return "system has unsupported display driver / cuda driver combination";
    case cudaErrorCompatNotSupportedOnDevice: return "forward compatibility was attempted on non supported HW";
    }
    return "unknown error";
}
} // namespace

const char *cudaGetErrorString(cudaError_t error) {
    static std::string message;
    if (error != detail_error || detail.empty()) return plain_error_string(error);
    message = std::string(plain_error_string(error)) + " (cuda emulator: " + detail + ")";
    return message.c_str();
}

// MARK: cuBLAS

struct baton_emulator_cublas {
    cublasMath_t math = CUBLAS_DEFAULT_MATH;
    int device = current_device; // a handle works on the device current at its creation
};

namespace {
// A cuBLAS or cuBLASLt handle used while another device is current: refused, named on stderr.
bool handle_on_current_device(int device, const char *call) {
    if (device == current_device) return true;
    fprintf(stderr, "cuda emulator: %s: a handle created on device %d used while device %d is current\n", call, device,
            current_device);
    return false;
}
} // namespace

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    *handle = new baton_emulator_cublas();
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion(cublasHandle_t handle, int *version) {
    if (!handle || !version) return CUBLAS_STATUS_INVALID_VALUE;
    *version = 130000;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t) {
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t bytes) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    return bytes == 0 || on_device(workspace, bytes) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

namespace {
// Elements a column-major rows x columns matrix with leading dimension ld spans.
long long span(int rows, int columns, int ld) {
    return rows == 0 || columns == 0 ? 0 : (long long)ld * (columns - 1) + rows;
}

// cuBLAS's argument rules for C[m,n] = op(A) op(B), plus: every matrix inside one device
// allocation, the scalars on the host (the default pointer mode).
cublasStatus_t check_gemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                          int k, const float *alpha, const void *A, int lda, long long strideA, const void *B, int ldb,
                          long long strideB, const float *beta, const void *C, int ldc, long long strideC, int batches,
                          long long ab_bytes = sizeof(float), long long c_bytes = sizeof(float)) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    if (m < 0 || n < 0 || k < 0 || batches < 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (on_device(alpha, 1) || on_device(beta, 1)) return CUBLAS_STATUS_INVALID_VALUE;
    auto extent = [&](long long one, long long stride, long long bytes) {
        return one == 0 ? 0 : (stride * (batches - 1) + one) * bytes;
    };
    long long a = extent(span(ta ? k : m, ta ? m : k, lda), strideA, ab_bytes),
              b = extent(span(tb ? n : k, tb ? k : n, ldb), strideB, ab_bytes);
    long long c = extent(span(m, n, ldc), strideC, c_bytes);
    if ((a && !on_device(A, a)) || (b && !on_device(B, b)) || (c && !on_device(C, c))) {
        fprintf(stderr, "cuda emulator: cublasSgemm: a matrix reaches outside its device allocation\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}
} // namespace

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                         int m, int n, int k, const float *alpha, const float *A, int lda,
                                         long long strideA, const float *B, int ldb, long long strideB,
                                         const float *beta, float *C, int ldc, long long strideC, int batchCount) {
    cublasStatus_t status = check_gemm(handle, transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta,
                                       C, ldc, strideC, batchCount);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (!handle_on_current_device(handle->device, "cublasSgemm")) return CUBLAS_STATUS_EXECUTION_FAILED;
    trace("cublas", "cublasSgemm");
    if (handle->math == CUBLAS_TENSOR_OP_MATH || handle->math == CUBLAS_TF32_TENSOR_OP_MATH) {
        fprintf(stderr, "cuda emulator: TF32 math is not emulated; Baton's fp32 path asks for CUBLAS_DEFAULT_MATH\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    for (int i = 0; i < batchCount; i++)
        cblas_sgemm(CblasColMajor, transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A + i * strideA, lda,
                    B + i * strideB, ldb, *beta, C + i * strideC, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
    return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

namespace {
// Column-major C = alpha op(A) op(B) + beta C on OpenBLAS, the inputs first rounded as the compute
// type says: FAST_16BF and FAST_TF32 round copies of A and B to bfloat16 or TF32 (to nearest
// even, as the CPU backend's twin does); the sums are float32.
void rounded_sgemm(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc, cublasComputeType_t computeType) {
    int dropped = computeType == CUBLAS_COMPUTE_32F_FAST_16BF   ? 16
                  : computeType == CUBLAS_COMPUTE_32F_FAST_TF32 ? 13
                                                                : 0;
    bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    std::vector<float> ra, rb;
    if (dropped) {
        // Round copies of the spans the product reads.
        ra.assign(a, a + span(ta ? k : m, ta ? m : k, lda));
        rb.assign(b, b + span(tb ? n : k, tb ? k : n, ldb));
        for (float &x : ra) x = __uint_as_float(baton_round_float_bits(__float_as_uint(x), dropped));
        for (float &x : rb) x = __uint_as_float(baton_round_float_bits(__float_as_uint(x), dropped));
        a = ra.data();
        b = rb.data();
    }
    cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
                b, ldb, beta, c, ldc);
}

// bf16 matrices (CUDA_R_16BF: their bits) as float32, exactly, and float32 results stored as bf16,
// rounded to nearest even: the CPU backend's rule (baton_rounding.h).
std::vector<float> widen(const void *p, long long count) {
    std::vector<float> wide(count);
    const uint16_t *bits = static_cast<const uint16_t *>(p);
    for (long long i = 0; i < count; i++) wide[i] = __uint_as_float(baton_float_bits_from_bf16(bits[i]));
    return wide;
}
void narrow(void *p, const float *wide, long long count) {
    uint16_t *bits = static_cast<uint16_t *>(p);
    for (long long i = 0; i < count; i++) bits[i] = baton_bf16_from_float_bits(__float_as_uint(wide[i]));
}
} // namespace

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t) {
    // float32 matrices (any float compute type), or bf16 A and B summed in float32 into a bf16 or float32 C.
    bool bf16 = Atype == CUDA_R_16BF;
    if (Atype != Btype || (Atype != CUDA_R_32F && !bf16) || (Ctype != CUDA_R_32F && !(bf16 && Ctype == CUDA_R_16BF)) ||
        (bf16 && computeType != CUBLAS_COMPUTE_32F)) {
        fprintf(stderr,
                "cuda emulator: cublasGemmEx emulates float32 matrices, or bf16 ones with CUBLAS_COMPUTE_32F\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    long long ab_bytes = bf16 ? 2 : 4, c_bytes = Ctype == CUDA_R_16BF ? 2 : 4;
    cublasStatus_t status = check_gemm(handle, transa, transb, m, n, k, static_cast<const float *>(alpha), A, lda, 0, B,
                                       ldb, 0, static_cast<const float *>(beta), C, ldc, 0, 1, ab_bytes, c_bytes);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (!handle_on_current_device(handle->device, "cublasGemmEx")) return CUBLAS_STATUS_EXECUTION_FAILED;
    trace("cublas", bf16 ? "cublasGemmEx bf16" : "cublasGemmEx");
    bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    float alpha_value = *static_cast<const float *>(alpha), beta_value = *static_cast<const float *>(beta);
    if (!bf16) {
        rounded_sgemm(transa, transb, m, n, k, alpha_value, static_cast<const float *>(A), lda,
                      static_cast<const float *>(B), ldb, beta_value, static_cast<float *>(C), ldc, computeType);
        return CUBLAS_STATUS_SUCCESS;
    }
    std::vector<float> a = widen(A, span(ta ? k : m, ta ? m : k, lda)), b = widen(B, span(tb ? n : k, tb ? k : n, ldb));
    long long c_count = span(m, n, ldc);
    if (Ctype == CUDA_R_32F) {
        rounded_sgemm(transa, transb, m, n, k, alpha_value, a.data(), lda, b.data(), ldb, beta_value,
                      static_cast<float *>(C), ldc, computeType);
        return CUBLAS_STATUS_SUCCESS;
    }
    std::vector<float> c = beta_value == 0.0f ? std::vector<float>(c_count) : widen(C, c_count);
    rounded_sgemm(transa, transb, m, n, k, alpha_value, a.data(), lda, b.data(), ldb, beta_value, c.data(), ldc,
                  computeType);
    narrow(C, c.data(), c_count);
    return CUBLAS_STATUS_SUCCESS;
}

// MARK: cuBLASLt

struct baton_emulator_cublaslt {
    int device = current_device;
};
struct baton_emulator_lt_desc {
    cublasComputeType_t compute;
    cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr; // of D's type, as aux
    void *aux = nullptr;
    int64_t aux_ld = 0;
};
struct baton_emulator_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct baton_emulator_lt_preference {
    uint64_t workspace = 0;
    uint32_t alignment[4] = {256, 256, 256, 256}; // A, B, C, D: what the caller promises (cuBLASLt's default)
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t *handle) {
    *handle = new baton_emulator_cublaslt();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *desc, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
    if (scaleType != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *desc = new baton_emulator_lt_desc{computeType};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                                              const void *buffer, size_t bytes) {
    // Each attribute's own size, as cuBLASLt checks it.
    auto take = [&](void *field, size_t size) {
        if (bytes != size) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(field, buffer, size);
        return CUBLAS_STATUS_SUCCESS;
    };
    switch (attribute) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return take(&desc->transa, sizeof(int32_t));
    case CUBLASLT_MATMUL_DESC_TRANSB: return take(&desc->transb, sizeof(int32_t));
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return take(&desc->epilogue, sizeof(uint32_t));
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return take(&desc->bias, sizeof(void *));
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return take(&desc->aux, sizeof(void *));
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return take(&desc->aux_ld, sizeof(int64_t));
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *layout, cudaDataType_t type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (ld < (int64_t)std::max<uint64_t>(1, rows)) return CUBLAS_STATUS_INVALID_VALUE;
    *layout = new baton_emulator_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *preference) {
    *preference = new baton_emulator_lt_preference();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t preference) {
    delete preference;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t preference,
                                                    cublasLtMatmulPreferenceAttributes_t attribute, const void *buffer,
                                                    size_t bytes) {
    if (attribute == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (bytes != sizeof(uint64_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&preference->workspace, buffer, bytes);
        return CUBLAS_STATUS_SUCCESS;
    }
    int which = (int)attribute - (int)CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
    if (which < 0 || which > 3 || bytes != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&preference->alignment[which], buffer, bytes);
    return CUBLAS_STATUS_SUCCESS;
}

namespace {
bool has_aux(cublasLtEpilogue_t epilogue) {
    return epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS || epilogue == CUBLASLT_EPILOGUE_DGELU;
}

// cuBLASLt's rules for the shapes and epilogues Baton uses (the rest: not supported).
cublasStatus_t check_lt(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                        cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d) {
    if (!desc || !a || !b || !c || !d) return CUBLAS_STATUS_NOT_INITIALIZED;
    // One type for every matrix: float32 (any float compute type), or bf16 summed in float32.
    if (a->type != d->type || b->type != d->type || c->type != d->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (d->type != CUDA_R_32F && !(d->type == CUDA_R_16BF && desc->compute == CUBLAS_COMPUTE_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    bool ta = desc->transa != CUBLAS_OP_N, tb = desc->transb != CUBLAS_OP_N;
    uint64_t m = d->rows, n = d->cols, k = ta ? a->rows : a->cols;
    if ((ta ? a->cols : a->rows) != m || (tb ? b->cols : b->rows) != k || (tb ? b->rows : b->cols) != n)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (c->rows != m || c->cols != n) return CUBLAS_STATUS_INVALID_VALUE;
    switch (desc->epilogue) {
    case CUBLASLT_EPILOGUE_DEFAULT:
    case CUBLASLT_EPILOGUE_BIAS:
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
    case CUBLASLT_EPILOGUE_DGELU: break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (desc->epilogue & CUBLASLT_EPILOGUE_BIAS && !desc->bias) return CUBLAS_STATUS_INVALID_VALUE;
    if (has_aux(desc->epilogue) && (!desc->aux || desc->aux_ld % 8 != 0 || desc->aux_ld < (int64_t)m))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}
} // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                              cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                              cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                              cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                              int *returnAlgoCount) {
    *returnAlgoCount = 0;
    if (!handle || !preference) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requestedAlgoCount < 1) return CUBLAS_STATUS_INVALID_VALUE;
    cublasStatus_t status = check_lt(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    trace("cublas", "cublasLtMatmulAlgoGetHeuristic");
    heuristicResultsArray[0] = cublasLtMatmulHeuristicResult_t{};
    heuristicResultsArray[0].state = CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < 4; i++)
        heuristicResultsArray[0].algo.data[i] = preference->alignment[i]; // what the algorithm may assume
    *returnAlgoCount = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspaceSizeInBytes, cudaStream_t) {
    if (!handle || !algo) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!handle_on_current_device(handle->device, "cublasLtMatmul")) return CUBLAS_STATUS_EXECUTION_FAILED;
    cublasStatus_t status = check_lt(desc, Adesc, Bdesc, Cdesc, Ddesc);
    if (status != CUBLAS_STATUS_SUCCESS) return status;
    if (C != D || Cdesc->ld != Ddesc->ld) {
        fprintf(stderr, "cuda emulator: cublasLtMatmul emulates C == D only\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (on_device(alpha, 1) || on_device(beta, 1) ||
        (workspaceSizeInBytes && !on_device(workspace, workspaceSizeInBytes)))
        return CUBLAS_STATUS_INVALID_VALUE;
    const void *pointers[4] = {A, B, C, D};
    for (int i = 0; i < 4; i++)
        if ((uintptr_t)pointers[i] % algo->data[i] != 0)
            return CUBLAS_STATUS_NOT_SUPPORTED; // less aligned than the algorithm assumes
    bool ta = desc->transa != CUBLAS_OP_N;
    int m = (int)Ddesc->rows, n = (int)Ddesc->cols, k = (int)(ta ? Adesc->rows : Adesc->cols);
    bool bf16 = Ddesc->type == CUDA_R_16BF;
    long long element = bf16 ? 2 : 4;
    auto inside = [&](const void *p, int rows, int cols, int64_t ld) {
        long long elements = span(rows, cols, (int)ld);
        return elements == 0 || on_device(p, elements * element);
    };
    bool aux = has_aux(desc->epilogue);
    if (!inside(A, (int)Adesc->rows, (int)Adesc->cols, Adesc->ld) ||
        !inside(B, (int)Bdesc->rows, (int)Bdesc->cols, Bdesc->ld) || !inside(D, m, n, Ddesc->ld) ||
        (aux && !inside(desc->aux, m, n, desc->aux_ld)) ||
        (desc->epilogue & CUBLASLT_EPILOGUE_BIAS && !on_device(desc->bias, m * element))) {
        fprintf(stderr, "cuda emulator: cublasLtMatmul: a matrix or vector reaches outside its device allocation\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    trace("cublas", desc->epilogue == CUBLASLT_EPILOGUE_BIAS            ? "cublasLtMatmul BIAS"
                    : desc->epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ? "cublasLtMatmul GELU_AUX_BIAS"
                    : desc->epilogue == CUBLASLT_EPILOGUE_DGELU         ? "cublasLtMatmul DGELU"
                                                                        : "cublasLtMatmul");
    // bf16: the matrices widened to float32 (exactly), the sums and the epilogue in float32, then
    // D (and GELU's auxiliary output) stored rounded to nearest even, once.
    std::vector<float> wide_a, wide_b, wide_d, wide_bias, wide_aux;
    const float *a = static_cast<const float *>(A), *b = static_cast<const float *>(B),
                *bias = static_cast<const float *>(desc->bias);
    float *d = static_cast<float *>(D), *aux_values = static_cast<float *>(desc->aux);
    long long d_count = span(m, n, (int)Ddesc->ld), aux_count = aux ? span(m, n, (int)desc->aux_ld) : 0;
    if (bf16) {
        wide_a = widen(A, span((int)Adesc->rows, (int)Adesc->cols, (int)Adesc->ld));
        wide_b = widen(B, span((int)Bdesc->rows, (int)Bdesc->cols, (int)Bdesc->ld));
        wide_d = *static_cast<const float *>(beta) == 0.0f ? std::vector<float>(d_count) : widen(D, d_count);
        if (desc->epilogue & CUBLASLT_EPILOGUE_BIAS) wide_bias = widen(desc->bias, m);
        if (aux) wide_aux = widen(desc->aux, aux_count);
        a = wide_a.data();
        b = wide_b.data();
        d = wide_d.data();
        bias = wide_bias.data();
        aux_values = wide_aux.data();
    }
    rounded_sgemm(desc->transa, desc->transb, m, n, k, *static_cast<const float *>(alpha), a, (int)Adesc->ld, b,
                  (int)Bdesc->ld, *static_cast<const float *>(beta), d, (int)Ddesc->ld, desc->compute);
    // The epilogue, element by element in float32, as the CPU backend's separate ops compute it.
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float &x = d[i + (long long)j * Ddesc->ld];
            switch (desc->epilogue) {
            case CUBLASLT_EPILOGUE_BIAS: x += bias[i]; break;
            case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
                x += bias[i];
                aux_values[i + j * desc->aux_ld] = x;
                x = baton_gelu(x);
                break;
            case CUBLASLT_EPILOGUE_DGELU: x = baton_gelu_backward(aux_values[i + j * desc->aux_ld], x); break;
            default: break;
            }
        }
    }
    if (bf16) {
        narrow(D, d, d_count);
        if (desc->epilogue == CUBLASLT_EPILOGUE_GELU_AUX_BIAS) narrow(desc->aux, aux_values, aux_count);
    }
    return CUBLAS_STATUS_SUCCESS;
}
