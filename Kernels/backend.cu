// backend.cu — the library's one exported symbol, the function table; device set-up, memory,
// and error reporting.
#include <cstdio>
#include <cstring>
#include <string>

#include "common.cuh"

namespace {
std::string pending_error;  // first failure since the last take_error
std::string taken_error;    // storage for the string handed out
std::string description;
cublasHandle_t handle = nullptr;
void *cublas_workspace = nullptr;
double *partials = nullptr;
float *columns = nullptr;
constexpr size_t CUBLAS_WORKSPACE_BYTES = 32u << 20;

void record(const char *op, const char *message) {
    if (pending_error.empty()) pending_error = std::string(op) + ": " + message;
}

int check(cudaError_t status, const char *op) {
    if (status == cudaSuccess) return 0;
    record(op, cudaGetErrorString(status));
    return 1;
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
}  // namespace

void record_cuda_error(cudaError_t status, const char *op) { check(status, op); }

void record_cublas_error(cublasStatus_t status, const char *op) {
    if (status != CUBLAS_STATUS_SUCCESS) record(op, cublas_message(status));
}

cublasHandle_t cublas_handle() { return handle; }
double *norm_partials() { return partials; }
float *column_partials() { return columns; }

static int backend_init(int device_index) {
    int count = 0;
    if (check(cudaGetDeviceCount(&count), "init")) return 1;
    if (count <= device_index) {
        record("init", "no CUDA device");
        return 1;
    }
    if (check(cudaSetDevice(device_index), "init")) return 1;
    cudaDeviceProp properties;
    if (check(cudaGetDeviceProperties(&properties, device_index), "init")) return 1;
    char line[sizeof properties.name + 64];
    snprintf(line, sizeof line, "%s, %.1f GiB, compute capability %d.%d", properties.name,
             properties.totalGlobalMem / 1073741824.0, properties.major, properties.minor);
    description = line;
    cublasStatus_t status = cublasCreate(&handle);
    if (status != CUBLAS_STATUS_SUCCESS) { record("init: cublasCreate", cublas_message(status)); return 1; }
    // One stream (the default), a fixed workspace and no TF32: the same GPU gives the same bits.
    if (check(cudaMalloc(&cublas_workspace, CUBLAS_WORKSPACE_BYTES), "init")) return 1;
    record_cublas_error(cublasSetWorkspace(handle, cublas_workspace, CUBLAS_WORKSPACE_BYTES), "init: cublasSetWorkspace");
    // CUBLAS_DEFAULT_MATH never lowers float32 precision (TF32 needs CUBLAS_TF32_TENSOR_OP_MATH):
    // true fp32, as PyTorch with TF32 off, and not the slower PEDANTIC mode meant for debugging.
    record_cublas_error(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "init: cublasSetMathMode");
    if (check(cudaMalloc(&partials, NORM_BLOCKS * sizeof(double)), "init")) return 1;
    if (check(cudaMalloc(&columns, COLUMN_PARTIALS * sizeof(float)), "init")) return 1;
    return pending_error.empty() ? 0 : 1;
}

static const char *backend_describe(void) { return description.c_str(); }

static const char *backend_take_error(void) {
    if (pending_error.empty()) return nullptr;
    taken_error = pending_error;
    pending_error.clear();
    return taken_error.c_str();
}

static int backend_alloc(void **pointer, size_t bytes) { return check(cudaMalloc(pointer, bytes > 0 ? bytes : 1), "alloc"); }
static int backend_release(void *pointer) { return check(cudaFree(pointer), "release"); }
static int backend_copy_to_device(void *dst, const void *src, size_t bytes) {
    return check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy_to_device");
}
static int backend_copy_to_host(void *dst, const void *src, size_t bytes) {
    return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy_to_host");
}
static int backend_copy_on_device(void *dst, const void *src, size_t bytes) {
    return check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy_on_device");
}
static int backend_synchronize(void) { return check(cudaDeviceSynchronize(), "synchronize"); }

static const baton_backend_table table = {
    BATON_BACKEND_ABI_VERSION,
    "cuda",
    backend_init,
    backend_describe,
    backend_take_error,
    backend_alloc,
    backend_release,
    backend_copy_to_device,
    backend_copy_to_host,
    backend_copy_on_device,
    backend_synchronize,
    encoder_forward,
    encoder_backward,
    layernorm_forward,
    layernorm_backward,
    matmul,
    bias_forward,
    bias_backward,
    attention_forward,
    attention_backward,
    gelu_forward,
    gelu_backward,
    residual_forward,
    softmax_crossentropy,
    adamw_update,
    global_norm_squared,
    fill,
};

extern "C" __attribute__((visibility("default"))) const baton_backend_table *baton_backend_get_table(void) { return &table; }
