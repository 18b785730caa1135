// The CUDA emulator's own checks: it must compute what a GPU computes for correct kernels, and
// refuse, loudly, what a GPU would refuse or what would be undefined on one. Built and run by
// scripts/setup/build-cuda-emulator --check; prints one line per check and "N passed, N failed".
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "baton_backend.h"
#include "baton_rounding.h"
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static int passed = 0, failed = 0;

static void expect(bool condition, const char *what) {
    printf("%s  %s\n", condition ? "pass" : "FAIL", what);
    (condition ? passed : failed)++;
}

static std::string last_error_string() { return cudaGetErrorString(cudaGetLastError()); }

__global__ void block_sum_kernel(float *out, const float *in, int n) {
    __shared__ float partial[1024];
    partial[threadIdx.x] = threadIdx.x < (unsigned)n ? in[threadIdx.x] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < (unsigned)stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

__global__ void shuffle_kernel(int *out) {
    int lane = threadIdx.x % 32;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffff, lane * 10, 1) + __shfl_down_sync(0xffffffff, lane, 3) * 1000;
}

__global__ void divergent_barrier_kernel(float *out) {
    if (threadIdx.x % 2 == 0) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void early_exit_shuffle_kernel(float *out) {
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffff, 1.0f, 1);
}

// Reads a neighbour's slot with no __syncthreads between the write and the read: a race.
__global__ void missing_barrier_kernel(float *out) {
    __shared__ float slots[64];
    slots[threadIdx.x] = 1.0f;
    out[blockIdx.x * 64 + threadIdx.x] = slots[(threadIdx.x + 1) % 64];
}

__global__ void write_one_past_kernel(float *out, int n) { out[n + threadIdx.x] = 1.0f; }

__global__ void read_kernel(float *out, const float *in) { out[threadIdx.x] = in[threadIdx.x]; }

// Two contexts of the backend library built beside this program (libbaton_cuda.so: the real
// Kernels/*.cu on this emulator), on two emulated GPUs, used in turn as two Devices of one process
// use them: each one's memory, launches, cuBLAS handles and copies must stay on its own GPU
// whichever context was opened or used last (the emulator refuses a launch handed another
// device's memory, and a cuBLAS handle used on another device).
static void two_devices_of_one_process() {
    char self[4096] = {};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    std::string library = std::string(self, n > 0 ? (size_t)n : 0);
    library = library.substr(0, library.rfind('/') + 1) + "libbaton_cuda.so";
    setenv("BATON_EMULATOR_GPUS", "2", 1);
    void *handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    auto get_table = handle ? (baton_backend_get_table_fn *)dlsym(handle, "baton_backend_get_table") : nullptr;
    auto device_of = handle ? (int (*)(const void *))dlsym(handle, "baton_emulator_device_of") : nullptr;
    if (!get_table || !device_of) {
        expect(false, ("two devices: cannot load " + library).c_str());
        return;
    }
    const baton_backend_table *t = get_table();
    baton_context *ctx[2] = {};
    float *x[2] = {}, *y[2] = {};
    const int n_values = 64;
    bool opened = true, each_on_its_own = true, errors_clear = true;
    char message[256];
    auto clear = [&](baton_context *c) {
        const char *detail = nullptr;
        if (t->take_error(c, &detail) == BATON_OK) return true;
        printf("      %s\n", detail ? detail : "?");
        return false;
    };
    // Opened and allocated in turn: device 0's context opens, allocates; then device 1's.
    for (int d = 0; d < 2; d++) {
        baton_context_options options = {};
        options.device_index = d;
        opened = opened && t->create_context(&options, &ctx[d], message, sizeof message) == BATON_OK;
        if (!opened) {
            printf("      %s\n", message);
            break;
        }
        opened = t->alloc(ctx[d], (void **)&x[d], n_values * 4) == BATON_OK &&
                 t->alloc(ctx[d], (void **)&y[d], n_values * n_values * 4) == BATON_OK;
    }
    if (!opened) {
        expect(false, "two devices: two contexts open");
        return;
    }
    // Device 0's context used after device 1's was opened (device 1 current): its allocation, an
    // op, an upload from a buffer overwritten at once, a cuBLAS matmul and a download.
    void *late = nullptr;
    t->alloc(ctx[0], &late, 16);
    each_on_its_own = device_of(late) == 0;
    std::vector<float> values(n_values), back(n_values);
    for (int round = 0; round < 2; round++) {
        for (int d = 0; d < 2; d++) {
            t->fill(ctx[d], y[d], 0.5f * (d + 1), (int64_t)n_values * n_values);
            for (int i = 0; i < n_values; i++) values[i] = (float)(i + 100 * d + 1000 * round);
            t->copy_to_device(ctx[d], x[d], values.data(), n_values * 4);
            for (int i = 0; i < n_values; i++) values[i] = -1.0f; // the caller's buffer reused at once
            t->matmul(ctx[d], y[d], x[d], x[d], n_values, n_values, 1, 0, 1,
                      0); // y = x xᵀ (1 x 64 by 64 x 1 is fine too)
            errors_clear = clear(ctx[d]) && errors_clear;
        }
        for (int d = 0; d < 2; d++) {
            t->copy_to_host(ctx[d], back.data(), x[d], n_values * 4);
            for (int i = 0; i < n_values; i++)
                each_on_its_own = each_on_its_own && back[i] == (float)(i + 100 * d + 1000 * round);
            errors_clear = clear(ctx[d]) && errors_clear;
        }
    }
    for (int d = 0; d < 2; d++) each_on_its_own = each_on_its_own && device_of(x[d]) == d && device_of(y[d]) == d;
    expect(errors_clear, "two devices: ops, uploads and cuBLAS of two contexts, used in turn, run without an error");
    expect(each_on_its_own,
           "two devices: each context's memory is on its own GPU and holds its own values (pinned uploads)");
    t->release(ctx[0], late);
    for (int d = 0; d < 2; d++) {
        t->release(ctx[d], x[d]);
        t->release(ctx[d], y[d]);
        t->destroy_context(ctx[d]);
    }
    unsetenv("BATON_EMULATOR_GPUS");
}

int main() {
    float *device = nullptr, *other = nullptr;
    cudaMalloc(&device, 4096 * sizeof(float));
    cudaMalloc(&other, 4096 * sizeof(float));

    // Fresh memory is not zero: read before written, it is NaN.
    std::vector<float> host(4096);
    cudaMemcpy(host.data(), device, 16, cudaMemcpyDeviceToHost);
    expect(std::isnan(host[0]), "fresh device memory reads as NaN");

    // A correct block reduction with barriers gives the sum.
    for (int i = 0; i < 1000; i++) host[i] = (float)(i % 7);
    cudaMemcpy(other, host.data(), 1000 * sizeof(float), cudaMemcpyHostToDevice);
    block_sum_kernel<<<1, 1024>>>(device, other, 1000);
    float sum = 0;
    cudaMemcpy(&sum, device, 4, cudaMemcpyDeviceToHost);
    double expected = 0;
    for (int i = 0; i < 1000; i++) expected += i % 7;
    expect(cudaGetLastError() == cudaSuccess && sum == (float)expected,
           "a shared-memory tree reduction with __syncthreads sums right");

    // Shuffles move values between lanes as on a GPU (down past the warp's end keeps one's own).
    int *lanes = nullptr;
    cudaMalloc(&lanes, 64 * sizeof(int));
    shuffle_kernel<<<1, 64>>>(lanes);
    std::vector<int> got(64);
    cudaMemcpy(got.data(), lanes, 64 * sizeof(int), cudaMemcpyDeviceToHost);
    bool shuffles_right = true;
    for (int t = 0; t < 64; t++) {
        int lane = t % 32, down = lane + 3 < 32 ? lane + 3 : lane;
        shuffles_right = shuffles_right && got[t] == (lane ^ 1) * 10 + down * 1000;
    }
    expect(shuffles_right, "__shfl_xor_sync and __shfl_down_sync give each lane its partner's value");

    // Shared memory starts each block as garbage, not as the last block's values, so the race
    // above reads garbage in the second block too.
    missing_barrier_kernel<<<2, 64>>>(device);
    cudaMemcpy(host.data(), device, 128 * sizeof(float), cudaMemcpyDeviceToHost);
    expect(host[0] != 1.0f && host[64] != 1.0f,
           "a shared-memory read before the writer ran sees garbage in every block");

    // What a GPU refuses.
    block_sum_kernel<<<0, 256>>>(device, other, 10);
    expect(last_error_string().find("invalid configuration") != std::string::npos,
           "a grid of zero blocks is an invalid configuration");
    block_sum_kernel<<<1, 2048>>>(device, other, 10);
    expect(last_error_string().find("invalid configuration") != std::string::npos,
           "a block of 2048 threads is an invalid configuration");
    block_sum_kernel<<<dim3(1, 70000), 32>>>(device, other, 10);
    expect(last_error_string().find("invalid configuration") != std::string::npos,
           "gridDim.y past 65535 is an invalid configuration");

    // What is undefined on a GPU (it may hang or give garbage): named, not run to a wrong answer.
    divergent_barrier_kernel<<<1, 64>>>(device);
    expect(last_error_string().find("divergent code") != std::string::npos,
           "__syncthreads reached by half the block (the rest exit) is reported");
    early_exit_shuffle_kernel<<<1, 32>>>(device);
    expect(last_error_string().find("warp shuffle") != std::string::npos,
           "a full-mask shuffle after a lane exited is reported");

    // The runtime's and cuBLAS's argument rules.
    expect(cudaMemcpy(host.data(), device, 16, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
           "cudaMemcpy in the wrong direction is refused");
    expect(cudaMemcpy(device, host.data(), 4097 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
           "cudaMemcpy past the end of an allocation is refused");
    cublasHandle_t handle;
    cublasCreate(&handle);
    const float one = 1, zero = 0;
    expect(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, device, 4, other, 8, &zero, device + 2048, 8) ==
                   CUBLAS_STATUS_INVALID_VALUE,
           "cublasSgemm with lda < m is CUBLAS_STATUS_INVALID_VALUE");
    expect(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 64, 64, 64, &one, device + 4000, 64, other, 64, &zero, device,
                       64) == CUBLAS_STATUS_INVALID_VALUE,
           "cublasSgemm reading past an allocation is refused");
    // A correct one, against a naive column-major product, transposes included.
    std::vector<float> a(6 * 4), b(4 * 5), c(6 * 5);
    for (size_t i = 0; i < a.size(); i++) a[i] = (float)((i * 7) % 5) - 2;
    for (size_t i = 0; i < b.size(); i++) b[i] = (float)((i * 3) % 7) - 3;
    cudaMemcpy(device, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(other, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
    // C[6,5] = A^T B^T with A stored as 4x6 (lda 4) and B stored as 5x4 (ldb 5).
    cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_T, 6, 5, 4, &one, device, 4, other, 5, &zero, device + 1024, 6);
    cudaMemcpy(c.data(), device + 1024, c.size() * 4, cudaMemcpyDeviceToHost);
    bool gemm_right = true;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) {
            float s = 0;
            for (int l = 0; l < 4; l++) s += a[l + i * 4] * b[j + l * 5];
            gemm_right = gemm_right && c[i + j * 6] == s;
        }
    expect(gemm_right, "cublasSgemm with both operands transposed matches a naive product");

    // bf16 matrices (their bits) summed in float32 into a bf16 C: each element the naive float32
    // sum of the widened products, rounded to nearest even once.
    std::vector<uint16_t> a16(a.size()), b16(b.size()), c16(c.size());
    auto widened = [](uint16_t bits) { return __uint_as_float(baton_float_bits_from_bf16(bits)); };
    for (size_t i = 0; i < a.size(); i++) a16[i] = baton_bf16_from_float_bits(__float_as_uint(a[i] * 0.37f));
    for (size_t i = 0; i < b.size(); i++) b16[i] = baton_bf16_from_float_bits(__float_as_uint(b[i] * 1.13f));
    cudaMemcpy(device, a16.data(), a16.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(other, b16.data(), b16.size() * 2, cudaMemcpyHostToDevice);
    cublasStatus_t bf16_status =
            cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_T, 6, 5, 4, &one, device, CUDA_R_16BF, 4, other, CUDA_R_16BF, 5,
                         &zero, device + 1024, CUDA_R_16BF, 6, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaMemcpy(c16.data(), device + 1024, c16.size() * 2, cudaMemcpyDeviceToHost);
    bool bf16_right = bf16_status == CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) {
            float s = 0;
            for (int l = 0; l < 4; l++) s += widened(a16[l + i * 4]) * widened(b16[j + l * 5]);
            bf16_right = bf16_right && c16[i + j * 6] == baton_bf16_from_float_bits(__float_as_uint(s));
        }
    expect(bf16_right, "cublasGemmEx on bf16 matrices sums in float32 and stores C rounded to bfloat16");

    // cuBLASLt's heuristic assumes 256-byte aligned matrices unless the preference says less: a
    // matrix 8 bytes off is refused (NOT_SUPPORTED), and taken once the preference says 8.
    auto lt_status = [&](const float *matrix, uint32_t alignment) {
        cublasLtHandle_t lt;
        cublasLtMatmulDesc_t desc;
        cublasLtMatrixLayout_t layout;
        cublasLtMatmulPreference_t preference;
        cublasLtCreate(&lt);
        cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
        cublasLtMatrixLayoutCreate(&layout, CUDA_R_32F, 4, 4, 4);
        cublasLtMatmulPreferenceCreate(&preference);
        cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &alignment,
                                             sizeof alignment);
        cublasLtMatmulHeuristicResult_t heuristic;
        int found = 0;
        cublasLtMatmulAlgoGetHeuristic(lt, desc, layout, layout, layout, layout, preference, 1, &heuristic, &found);
        cublasStatus_t status = cublasLtMatmul(lt, desc, &one, matrix, layout, other, layout, &zero, device + 2048,
                                               layout, device + 2048, layout, &heuristic.algo, nullptr, 0, 0);
        cublasLtMatmulPreferenceDestroy(preference);
        cublasLtMatrixLayoutDestroy(layout);
        cublasLtMatmulDescDestroy(desc);
        cublasLtDestroy(lt);
        return status;
    };
    expect(lt_status(device + 2, 256) == CUBLAS_STATUS_NOT_SUPPORTED &&
                   lt_status(device + 2, 8) == CUBLAS_STATUS_SUCCESS,
           "cublasLtMatmul refuses a matrix less aligned than the preference promised, and takes it when told");

    // Out of bounds and after free: the process dies at the access, naming the kernel.
    auto dies_naming = [](void (*body)(float *, float *), float *x, float *y, const char *what) {
        int pipe_ends[2];
        if (pipe(pipe_ends) != 0) return false;
        pid_t child = fork();
        if (child == 0) {
            dup2(pipe_ends[1], 2);
            body(x, y);
            _exit(0);
        }
        close(pipe_ends[1]);
        char text[1024] = {};
        ssize_t n = read(pipe_ends[0], text, sizeof text - 1);
        (void)n;
        close(pipe_ends[0]);
        int status = 0;
        waitpid(child, &status, 0);
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV && strstr(text, what) != nullptr;
    };
    expect(dies_naming([](float *x, float *) { write_one_past_kernel<<<1, 1>>>(x, 4096); }, device, other,
                       "illegal memory access in write_one_past_kernel"),
           "writing one float past an allocation faults and names the kernel");
    expect(dies_naming(
                   [](float *x, float *y) {
                       cudaFree(y);
                       read_kernel<<<1, 32>>>(x, y);
                   },
                   device, other, "illegal memory access in read_kernel"),
           "reading freed memory faults and names the kernel");

    // A launch handed another GPU's memory, and an async copy from pageable memory, are refused.
    setenv("BATON_EMULATOR_GPUS", "2", 1);
    cudaSetDevice(1);
    block_sum_kernel<<<1, 32>>>(device, other, 10);
    expect(last_error_string().find("device 0's memory") != std::string::npos,
           "a kernel launched on device 1 with device 0's memory is an illegal address");
    expect(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, device, 8, other, 8, &zero, device + 2048, 8) ==
                   CUBLAS_STATUS_EXECUTION_FAILED,
           "a cuBLAS handle of device 0 used while device 1 is current is refused");
    cudaSetDevice(0);
    unsetenv("BATON_EMULATOR_GPUS");
    expect(cudaMemcpyAsync(device, host.data(), 16, cudaMemcpyHostToDevice, 0) == cudaErrorInvalidValue,
           "cudaMemcpyAsync from pageable host memory is refused (a GPU would quietly wait)");
    cudaGetLastError();
    float *staged = nullptr;
    cudaMallocHost(&staged, 16);
    staged[0] = 42;
    float copied = 0;
    expect(cudaMemcpyAsync(device, staged, 16, cudaMemcpyHostToDevice, 0) == cudaSuccess &&
                   cudaMemcpy(&copied, device, 4, cudaMemcpyDeviceToHost) == cudaSuccess && copied == 42,
           "cudaMemcpyAsync from pinned host memory copies");
    cudaFreeHost(staged);
    two_devices_of_one_process();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
