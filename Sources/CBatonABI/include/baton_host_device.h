/* baton_host_device.h — BATON_HOST_DEVICE marks a small inline function that the CPU backend, the
 * CUDA kernels (nvcc: __host__ __device__) and the CUDA emulator all compile from one source. */
#ifndef BATON_HOST_DEVICE_H
#define BATON_HOST_DEVICE_H

#ifdef __CUDACC__
#define BATON_HOST_DEVICE __host__ __device__
#else
#define BATON_HOST_DEVICE
#endif

#endif
