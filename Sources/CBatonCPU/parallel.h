/* A small persistent thread pool for the CPU kernels. */
#ifndef BATON_PARALLEL_H
#define BATON_PARALLEL_H
#include <stdint.h>

/* Calls body(ctx, begin, end) on disjoint ranges covering [0, count), one range per thread.
 * Ranges are contiguous and split evenly; counts below min_per_thread*2 run on the caller. */
typedef void (*parallel_body)(void *ctx, int64_t begin, int64_t end);
void parallel_for(int64_t count, int64_t min_per_thread, parallel_body body, void *ctx);

#endif
