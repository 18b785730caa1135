#include "parallel.h"
#include "include/baton_cpu.h"

#include <cblas.h>
#include <pthread.h>
#include <unistd.h>

/* Workers wait for a new generation, run their slice, and count down `pending`. The caller runs
 * slice 0 itself. One job at a time: `submit_lock` serialises callers from different threads. */
#define MAX_THREADS 256

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
static int thread_count = 0;  /* 0: not configured yet */
static int workers_started = 0;
static uint64_t generation = 0;
static int pending = 0;
static parallel_body job_body;
static void *job_ctx;
static int64_t job_count;
static int job_slices;
static _Thread_local int inside_worker = 0;

static void slice_bounds(int slice, int64_t *begin, int64_t *end) {
    int64_t per = job_count / job_slices, extra = job_count % job_slices;
    *begin = slice * per + (slice < extra ? slice : extra);
    *end = *begin + per + (slice < extra ? 1 : 0);
}

static void *worker_main(void *arg) {
    int slice = (int)(intptr_t)arg;
    inside_worker = 1;
    uint64_t seen = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (generation == seen) pthread_cond_wait(&work_ready, &lock);
        seen = generation;
        int run = slice < job_slices;
        pthread_mutex_unlock(&lock);
        if (run) {
            int64_t begin, end;
            slice_bounds(slice, &begin, &end);
            if (begin < end) job_body(job_ctx, begin, end);
        }
        pthread_mutex_lock(&lock);
        if (--pending == 0) pthread_cond_signal(&work_done);
    }
    return NULL;
}

void baton_cpu_set_threads(int n) {
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&submit_lock);
    pthread_mutex_lock(&lock);
    /* Workers are never stopped: growing starts more, shrinking leaves extras idle. */
    while (workers_started < n - 1) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, worker_main, (void *)(intptr_t)(workers_started + 1)) != 0) break;
        workers_started++;
    }
    thread_count = workers_started + 1 < n ? workers_started + 1 : n;
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&submit_lock);
    /* OpenBLAS stays single-threaded: its own threads spin (sched_yield) between calls and steal
     * the cores from this pool; the kernels split sgemm work across the pool instead. */
    openblas_set_num_threads(1);
}

int baton_cpu_threads(void) {
    if (thread_count == 0) baton_cpu_set_threads(0);
    return thread_count;
}

void parallel_for(int64_t count, int64_t min_per_thread, parallel_body body, void *ctx) {
    if (count <= 0) return;
    int threads = baton_cpu_threads();
    if (min_per_thread < 1) min_per_thread = 1;
    int64_t useful = count / min_per_thread;
    int slices = useful < threads ? (int)useful : threads;
    if (slices <= 1 || inside_worker) {
        body(ctx, 0, count);
        return;
    }
    pthread_mutex_lock(&submit_lock);
    pthread_mutex_lock(&lock);
    job_body = body;
    job_ctx = ctx;
    job_count = count;
    job_slices = slices;
    pending = workers_started;
    generation++;
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&lock);

    int64_t begin, end;
    slice_bounds(0, &begin, &end);
    inside_worker = 1;
    body(ctx, begin, end);
    inside_worker = 0;

    pthread_mutex_lock(&lock);
    while (pending > 0) pthread_cond_wait(&work_done, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&submit_lock);
}
