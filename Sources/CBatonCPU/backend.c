/* The CPU backend's table: contexts (a thread pool each), memory (aligned host memory), and the
 * kernels of this folder. The twin of Kernels/backend.cu. */
#include "kernels.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 256

static baton_status cpu_create_context(const baton_context_options *options, baton_context **context, char *message,
                                       size_t message_size) {
    *context = NULL;
    int threads = options->threads;
    if (threads < 1) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    baton_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(message, message_size, "cannot allocate a CPU context");
        return BATON_ERROR_OUT_OF_MEMORY;
    }
    if (threads > 1) {
        ctx->pool = thread_pool_create(threads);
        if (!ctx->pool) {
            free(ctx);
            snprintf(message, message_size, "cannot start %d threads", threads);
            return BATON_ERROR_DEVICE;
        }
    }
    ctx->threads = threads;
    char blas[96];
    baton_cpu_blas(blas, sizeof blas);
    snprintf(ctx->description, sizeof ctx->description, "%d thread%s, %s", threads, threads == 1 ? "" : "s", blas);
    /* OpenBLAS stays single-threaded: its own threads spin (sched_yield) between calls and steal
     * the cores from the pool; the kernels split sgemm work across the pool instead. The same
     * for every context, so setting it here changes no other device. */
    openblas_set_num_threads(1);
    *context = ctx;
    return BATON_OK;
}

static void cpu_destroy_context(baton_context *ctx) {
    if (!ctx) return;
    thread_pool_destroy(ctx->pool);
    free(ctx->rounded);
    free(ctx->wide);
    free(ctx);
}

static const char *cpu_describe(baton_context *ctx) { return ctx->description; }

/* "OpenBLAS 0.3.21 Haswell": the library's version from its build configuration and the core
 * whose kernels it picked at load time (OPENBLAS_CORETYPE overrides the CPU's own). The sgemm
 * bits follow from the core: AVX2 and AVX-512 kernels sum in other orders. */
void baton_cpu_blas(char *line, size_t size) {
    const char *config = openblas_get_config(); /* "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell MAX_THREADS=64" */
    char version[32];
    if (!config || sscanf(config, "OpenBLAS %31s", version) != 1) snprintf(version, sizeof version, "?");
    const char *core = openblas_get_corename();
    snprintf(line, size, "OpenBLAS %s %s", version, core ? core : "(unknown core)");
}

/* CPU ops do not fail. */
static baton_status cpu_take_error(baton_context *ctx, const char **message) {
    (void)ctx;
    *message = NULL;
    return BATON_OK;
}

static baton_status cpu_alloc(baton_context *ctx, void **pointer, size_t bytes) {
    (void)ctx;
    /* 64-byte alignment for vector loads; at least one byte so empty tensors have a pointer. */
    if (bytes == 0) bytes = 1;
    if (posix_memalign(pointer, 64, bytes) != 0) {
        *pointer = NULL;
        return BATON_ERROR_OUT_OF_MEMORY;
    }
    memset(*pointer, 0, bytes);
    return BATON_OK;
}

static baton_status cpu_release(baton_context *ctx, void *pointer) {
    (void)ctx;
    free(pointer);
    return BATON_OK;
}

static baton_status cpu_copy(baton_context *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes) memmove(dst, src, bytes);
    return BATON_OK;
}
#define cpu_copy_to_device cpu_copy
#define cpu_copy_to_host   cpu_copy
#define cpu_copy_on_device cpu_copy
/* The CPU's device memory is host memory. */
#define cpu_alloc_host   cpu_alloc
#define cpu_release_host cpu_release

static baton_status cpu_synchronize(baton_context *ctx) {
    (void)ctx;
    return BATON_OK;
}

static baton_status cpu_set_precision(baton_context *ctx, int precision) {
    if (precision < BATON_PRECISION_FP32 || precision > BATON_PRECISION_BF16) return BATON_ERROR_DEVICE;
    ctx->precision = precision;
    return BATON_OK;
}

/* Every precision; attention always keeps the scores (no flash kernels), whatever the context's
 * attention option. */
static uint32_t cpu_capabilities(baton_context *ctx) {
    (void)ctx;
    return BATON_CAPABILITY_PRECISION(BATON_PRECISION_FP32) | BATON_CAPABILITY_PRECISION(BATON_PRECISION_TF32) |
           BATON_CAPABILITY_PRECISION(BATON_PRECISION_BF16);
}

static const baton_backend_table table = BATON_BACKEND_TABLE("cpu", 1, cpu);

const baton_backend_table *baton_cpu_get_table(void) { return &table; }
