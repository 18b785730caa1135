// backend.cu — the library's one exported symbol, the function table; contexts (one per opened
// GPU), memory, and error reporting. The twin of Sources/CBatonCPU/backend.c.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "common.cuh"

namespace {

// What a CUDA error means to the caller: a driver that is missing or too old, no device, no
// memory, or anything else.
baton_status classify(cudaError_t status) {
    switch (status) {
    case cudaSuccess: return BATON_OK;
    case cudaErrorInsufficientDriver:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice: return BATON_ERROR_NO_DRIVER;
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice: return BATON_ERROR_NO_DEVICE;
    case cudaErrorMemoryAllocation: return BATON_ERROR_OUT_OF_MEMORY;
    default: return BATON_ERROR_DEVICE;
    }
}

void record(baton_context *ctx, baton_status status, const char *op, const char *message) {
    if (ctx->error != BATON_OK) return; // the first failure is the one that explains the rest
    ctx->error = status;
    ctx->message = std::string(op) + ": " + message;
}

baton_status check(baton_context *ctx, cudaError_t status, const char *op) {
    if (status == cudaSuccess) return BATON_OK;
    record(ctx, classify(status), op, cudaGetErrorString(status));
    return ctx->error;
}

const char *cublas_message(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}
} // namespace

void record_cuda_error(baton_context *ctx, cudaError_t status, const char *op) { check(ctx, status, op); }

void record_cublas_error(baton_context *ctx, cublasStatus_t status, const char *op) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    record(ctx, status == CUBLAS_STATUS_ALLOC_FAILED ? BATON_ERROR_OUT_OF_MEMORY : BATON_ERROR_DEVICE, op,
           cublas_message(status));
}

static void backend_destroy_context(baton_context *ctx);

// Makes the context's GPU the calling thread's current device: CUDA keeps one current device per
// host thread, and every launch, allocation, copy, event and cuBLAS call goes to it, so two
// contexts of one process (two Devices, or a Device and the NCCL communicator, which sets its own)
// would otherwise run each other's work on the wrong GPU. Called at every entry that touches the
// GPU; when the device is already current it is one cudaGetDevice (a thread-local read).
static bool select_device(baton_context *ctx) {
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current == ctx->device_index) return true;
    return check(ctx, cudaSetDevice(ctx->device_index), "select device") == BATON_OK;
}

// Opens the device and everything the ops share: the cuBLAS handle with a fixed workspace and no
// TF32 (the same GPU gives the same bits), and the reductions' scratch.
static baton_status open_device(baton_context *ctx, int device_index) {
    int count = 0;
    if (check(ctx, cudaGetDeviceCount(&count), "init")) return ctx->error;
    if (count <= device_index) {
        record(ctx, BATON_ERROR_NO_DEVICE, "init", count == 0 ? "no CUDA device" : "no CUDA device at that index");
        return ctx->error;
    }
    if (!select_device(ctx)) return ctx->error;
    cudaDeviceProp properties;
    if (check(ctx, cudaGetDeviceProperties(&properties, device_index), "init")) return ctx->error;
    ctx->compute_major = properties.major;
    record_cublas_error(ctx, cublasCreate(&ctx->cublas), "init: cublasCreate");
    if (ctx->error) return ctx->error;
    // Everything cuBLAS's bits depend on (its own conditions: the same version, architecture and
    // SM count), so a checkpoint records it and a resume elsewhere can say its bits will differ.
    int runtime = 0, cublas = 0;
    if (check(ctx, cudaRuntimeGetVersion(&runtime), "init")) return ctx->error;
    record_cublas_error(ctx, cublasGetVersion(ctx->cublas, &cublas), "init: cublasGetVersion");
    if (ctx->error) return ctx->error;
    char line[sizeof properties.name + 160];
    snprintf(line, sizeof line, "%s, %.1f GiB, compute capability %d.%d, %d SMs, CUDA runtime %d.%d, cuBLAS %d.%d.%d",
             properties.name, properties.totalGlobalMem / 1073741824.0, properties.major, properties.minor,
             properties.multiProcessorCount, runtime / 1000, runtime % 1000 / 10, cublas / 10000, cublas % 10000 / 100,
             cublas % 100);
    ctx->description = line;
    record_cublas_error(ctx, cublasLtCreate(&ctx->cublaslt), "init: cublasLtCreate");
    if (ctx->error) return ctx->error;
    if (check(ctx, cudaMalloc(&ctx->cublas_workspace, CUBLAS_WORKSPACE_BYTES), "init")) return ctx->error;
    record_cublas_error(ctx, cublasSetWorkspace(ctx->cublas, ctx->cublas_workspace, CUBLAS_WORKSPACE_BYTES),
                        "init: cublasSetWorkspace");
    // CUBLAS_DEFAULT_MATH never lowers float32 precision (TF32 needs CUBLAS_TF32_TENSOR_OP_MATH):
    // true fp32, as PyTorch with TF32 off, and not the slower PEDANTIC mode meant for debugging.
    record_cublas_error(ctx, cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH), "init: cublasSetMathMode");
    if (check(ctx, cudaMalloc(&ctx->norm_partials, NORM_BLOCKS * sizeof(double)), "init")) return ctx->error;
    check(ctx, cudaMalloc(&ctx->column_partials, COLUMN_PARTIALS * sizeof(float)), "init");
    return ctx->error;
}

static baton_status backend_create_context(const baton_context_options *options, baton_context **context, char *message,
                                           size_t message_size) {
    *context = nullptr;
    baton_context *ctx = new (std::nothrow) baton_context();
    if (!ctx) {
        snprintf(message, message_size, "cannot allocate a CUDA context");
        return BATON_ERROR_OUT_OF_MEMORY;
    }
    ctx->device_index = options->device_index;
    ctx->attention = options->attention;
    baton_status status = open_device(ctx, options->device_index);
    if (status != BATON_OK) {
        snprintf(message, message_size, "%s", ctx->message.c_str());
        backend_destroy_context(ctx);
        return status;
    }
    *context = ctx;
    return BATON_OK;
}

static void backend_destroy_context(baton_context *ctx) {
    if (!ctx) return;
    select_device(ctx);
    for (StagingSlot &slot : ctx->staging) {
        if (slot.pending) cudaEventSynchronize(slot.done);
        if (slot.done) cudaEventDestroy(slot.done);
        cudaFreeHost(slot.host);
    }
    if (ctx->cublas) cublasDestroy(ctx->cublas);
    destroy_lt_plans(ctx);
    if (ctx->cublaslt) cublasLtDestroy(ctx->cublaslt);
    cudaFree(ctx->cublas_workspace);
    cudaFree(ctx->norm_partials);
    cudaFree(ctx->column_partials);
    cudaFree(ctx->wide);
    delete ctx;
}

static const char *backend_describe(baton_context *ctx) { return ctx->description.c_str(); }

static baton_status backend_take_error(baton_context *ctx, const char **message) {
    baton_status status = ctx->error;
    if (status == BATON_OK) {
        *message = nullptr;
        return BATON_OK;
    }
    ctx->taken = ctx->message;
    ctx->error = BATON_OK;
    ctx->message.clear();
    *message = ctx->taken.c_str();
    return status;
}

// Memory functions return the status and also record it, so take_error gives the detail. Each
// selects the context's device first (select_device).
static baton_status backend_alloc(baton_context *ctx, void **pointer, size_t bytes) {
    if (!select_device(ctx)) return ctx->error;
    if (check(ctx, cudaMalloc(pointer, bytes > 0 ? bytes : 1), "alloc")) return ctx->error;
    return check(ctx, cudaMemset(*pointer, 0, bytes > 0 ? bytes : 1), "alloc"); // new memory reads as zeros
}
static baton_status backend_release(baton_context *ctx, void *pointer) {
    if (!select_device(ctx)) return ctx->error;
    return check(ctx, cudaFree(pointer), "release");
}
// Pinned host memory, or plain memory where the driver cannot pin that much (a later copy is then
// slower, not wrong). A 64-byte header before the bytes handed out says which, so release_host
// frees each as it was made.
constexpr size_t HOST_HEADER_BYTES = 64;
enum HostKind : uint32_t { HOST_PINNED = 0x50494e44, HOST_PLAIN = 0x504c4e20 };
static baton_status backend_alloc_host(baton_context *ctx, void **pointer, size_t bytes) {
    if (!select_device(ctx)) return ctx->error;
    void *base = nullptr;
    HostKind kind = HOST_PINNED;
    if (cudaMallocHost(&base, bytes + HOST_HEADER_BYTES) != cudaSuccess) {
        cudaGetLastError();
        kind = HOST_PLAIN;
        if (posix_memalign(&base, HOST_HEADER_BYTES, bytes + HOST_HEADER_BYTES) != 0) {
            record(ctx, BATON_ERROR_OUT_OF_MEMORY, "alloc_host", "out of host memory");
            return ctx->error;
        }
    }
    memset(base, 0, bytes + HOST_HEADER_BYTES);
    memcpy(base, &kind, sizeof kind);
    *pointer = static_cast<char *>(base) + HOST_HEADER_BYTES;
    return BATON_OK;
}
static baton_status backend_release_host(baton_context *ctx, void *pointer) {
    void *base = static_cast<char *>(pointer) - HOST_HEADER_BYTES;
    HostKind kind;
    memcpy(&kind, base, sizeof kind);
    if (kind == HOST_PLAIN) {
        free(base);
        return BATON_OK;
    }
    if (!select_device(ctx)) return ctx->error;
    return check(ctx, cudaFreeHost(base), "release_host");
}
// Uploads up to STAGING_MAX_BYTES (a micro-batch's tokens, targets and embedding buckets; small
// parameters) go through pinned staging: the bytes are copied into the next slot of a ring of
// pinned host buffers and cudaMemcpyAsync'd from there on the context's stream (the legacy
// default stream every kernel here runs on, so the copy is ordered before the ops that read it).
// A copy from pageable memory would wait for every queued kernel first (CUDA stages it through a
// driver buffer synchronously), draining the launch queue at every micro-batch. The caller may
// reuse its buffer as soon as this returns (the bytes are in the slot); a slot is written again
// only after the event recorded behind its last copy has completed, STAGING_SLOTS uploads later,
// so the host runs at most that far ahead of the copies. Larger uploads (weights, checkpoints)
// stay plain cudaMemcpy, as does any upload if pinned memory cannot be had.
static baton_status backend_copy_to_device(baton_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!select_device(ctx)) return ctx->error;
    if (bytes == 0 || bytes > STAGING_MAX_BYTES)
        return check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy_to_device");
    StagingSlot &slot = ctx->staging[ctx->staging_next];
    ctx->staging_next = (ctx->staging_next + 1) % STAGING_SLOTS;
    if (slot.pending) {
        if (check(ctx, cudaEventSynchronize(slot.done), "copy_to_device: staging")) return ctx->error;
        slot.pending = false;
    }
    if (slot.capacity < bytes) {
        cudaFreeHost(slot.host);
        slot.host = nullptr;
        slot.capacity = 0;
        size_t capacity = (bytes + STAGING_GRAIN - 1) / STAGING_GRAIN * STAGING_GRAIN;
        if (cudaMallocHost(&slot.host, capacity) != cudaSuccess) {
            slot.host = nullptr;
            cudaGetLastError(); // no pinned memory to be had: the plain copy, which works without it
            return check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy_to_device");
        }
        slot.capacity = capacity;
    }
    if (!slot.done &&
        check(ctx, cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming), "copy_to_device: staging"))
        return ctx->error;
    memcpy(slot.host, src, bytes);
    if (check(ctx, cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, 0), "copy_to_device"))
        return ctx->error;
    if (check(ctx, cudaEventRecord(slot.done, 0), "copy_to_device: staging")) return ctx->error;
    slot.pending = true;
    return BATON_OK;
}
static baton_status backend_copy_to_host(baton_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!select_device(ctx)) return ctx->error;
    return check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy_to_host");
}
static baton_status backend_copy_on_device(baton_context *ctx, void *dst, const void *src, size_t bytes) {
    if (!select_device(ctx)) return ctx->error;
    return check(ctx, cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy_on_device");
}
static baton_status backend_synchronize(baton_context *ctx) {
    if (!select_device(ctx)) return ctx->error;
    return check(ctx, cudaDeviceSynchronize(), "synchronize");
}

static baton_status backend_set_precision(baton_context *ctx, int precision) {
    if (precision < BATON_PRECISION_FP32 || precision > BATON_PRECISION_BF16) {
        record(ctx, BATON_ERROR_DEVICE, "set_precision", "no such precision");
        return ctx->error;
    }
    // bf16 activations go to bf16 tensor cores (cuBLAS and the flash kernels): sm_80 and newer.
    if (precision == BATON_PRECISION_BF16 && ctx->compute_major < 8) {
        std::string why = "bf16 needs a GPU of compute capability 8.0 or newer (this one: " + ctx->description +
                          "); use --precision fp32 or tf32";
        record(ctx, BATON_ERROR_DEVICE, "set_precision", why.c_str());
        return ctx->error;
    }
    ctx->precision = precision;
    return BATON_OK;
}

// Every precision on sm_80 and newer (bf16 tensor cores), fp32 and tf32 below; flash attention
// always (attention.cu: for heads of up to 64 channels).
static uint32_t backend_capabilities(baton_context *ctx) {
    uint32_t bits = BATON_CAPABILITY_PRECISION(BATON_PRECISION_FP32) |
                    BATON_CAPABILITY_PRECISION(BATON_PRECISION_TF32) | BATON_CAPABILITY_FLASH_ATTENTION;
    if (ctx->compute_major >= 8) bits |= BATON_CAPABILITY_PRECISION(BATON_PRECISION_BF16);
    return bits;
}

// Every op enters through OnContextDevice<op>::call, which selects the context's device first
// (select_device) and skips the op, the failure recorded, when that fails.
template <auto Op> struct OnContextDevice;
template <class... Arguments, void (*Op)(baton_context *, Arguments...)> struct OnContextDevice<Op> {
    static void call(baton_context *ctx, Arguments... arguments) {
        if (select_device(ctx)) Op(ctx, arguments...);
    }
};
#undef BATON_TABLE_ENTRY
#define BATON_TABLE_ENTRY(name) .name = OnContextDevice<&name>::call,
static const baton_backend_table table = BATON_BACKEND_TABLE("cuda", 0, backend);

extern "C" __attribute__((visibility("default"))) const baton_backend_table *baton_backend_get_table(void) {
    return &table;
}
