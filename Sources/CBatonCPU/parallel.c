/* A thread pool per CPU context: workers wait for a new generation, run their share of the
 * pieces, and count down `pending`; the caller runs share 0 itself. One job at a time per pool
 * (`submit_lock` serialises callers from different threads). */
#include "kernels.h"

#include <pthread.h>
#include <stdlib.h>

struct thread_pool {
    pthread_mutex_t submit_lock, lock;
    pthread_cond_t work_ready, work_done;
    int threads; /* including the caller */
    pthread_t *workers;
    int started;
    int stopping;
    uint64_t generation;
    int pending;
    parallel_body body;
    void *arg;
    int64_t count, grain, pieces;
    int shares;
};

/* Share s of the pieces, as an item range: contiguous, and only its owner depends on the thread
 * count, never where a piece starts or ends. */
static void share_bounds(const thread_pool *pool, int share, int64_t *begin, int64_t *end) {
    int64_t first = pool->pieces * share / pool->shares, last = pool->pieces * (share + 1) / pool->shares;
    *begin = first * pool->grain;
    *end = last * pool->grain < pool->count ? last * pool->grain : pool->count;
}

typedef struct {
    thread_pool *pool;
    int share;
} worker_start;

static void *worker_main(void *p) {
    worker_start start = *(worker_start *)p;
    free(p);
    thread_pool *pool = start.pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->generation == seen && !pool->stopping) pthread_cond_wait(&pool->work_ready, &pool->lock);
        if (pool->stopping) break;
        seen = pool->generation;
        int run = start.share < pool->shares;
        pthread_mutex_unlock(&pool->lock);
        if (run) {
            int64_t begin, end;
            share_bounds(pool, start.share, &begin, &end);
            if (begin < end) pool->body(pool->arg, begin, end);
        }
        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0) pthread_cond_signal(&pool->work_done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

thread_pool *thread_pool_create(int threads) {
    thread_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pthread_mutex_init(&pool->submit_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work_ready, NULL);
    pthread_cond_init(&pool->work_done, NULL);
    pool->workers = calloc((size_t)threads, sizeof(pthread_t));
    if (!pool->workers) {
        free(pool);
        return NULL;
    }
    for (int share = 1; share < threads; share++) {
        worker_start *start = malloc(sizeof *start);
        if (!start) break;
        *start = (worker_start){pool, share};
        if (pthread_create(&pool->workers[pool->started], NULL, worker_main, start) != 0) {
            free(start);
            break;
        }
        pool->started++;
    }
    pool->threads = pool->started + 1;
    if (pool->threads < threads) {
        thread_pool_destroy(pool);
        return NULL;
    } /* all or nothing */
    return pool;
}

void thread_pool_destroy(thread_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->started; i++) pthread_join(pool->workers[i], NULL);
    free(pool->workers);
    pthread_cond_destroy(&pool->work_ready);
    pthread_cond_destroy(&pool->work_done);
    pthread_mutex_destroy(&pool->lock);
    pthread_mutex_destroy(&pool->submit_lock);
    free(pool);
}

void parallel_for(baton_context *ctx, int64_t count, int64_t grain, parallel_body body, void *arg) {
    if (count <= 0) return;
    if (grain < 1) grain = 1;
    int64_t pieces = (count + grain - 1) / grain;
    thread_pool *pool = ctx->pool;
    if (!pool || pieces <= 1) {
        body(arg, 0, count);
        return;
    }
    pthread_mutex_lock(&pool->submit_lock);
    pthread_mutex_lock(&pool->lock);
    pool->body = body;
    pool->arg = arg;
    pool->count = count;
    pool->grain = grain;
    pool->pieces = pieces;
    pool->shares = pieces < pool->threads ? (int)pieces : pool->threads;
    pool->pending = pool->started;
    pool->generation++;
    pthread_cond_broadcast(&pool->work_ready);
    pthread_mutex_unlock(&pool->lock);

    int64_t begin, end;
    share_bounds(pool, 0, &begin, &end);
    body(arg, begin, end);

    pthread_mutex_lock(&pool->lock);
    while (pool->pending > 0) pthread_cond_wait(&pool->work_done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    pthread_mutex_unlock(&pool->submit_lock);
}
