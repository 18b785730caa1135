// The CUDA emulator's cuda_fp16.h: nothing. nccl.h includes it for its half-precision data type
// names, which the emulated NCCL (nccl_over_mpi.cpp) does not use.
#pragma once
