/*
 * kernel_parallel.c - the engine's own small thread pool, for splitting
 * one kernel's work over tl_engine_set_threads() threads.
 *
 * Workers are created when a plan is built (tl__parallel_reserve), never
 * on the inference path, and live as long as the process.  A parallel
 * section hands every worker the same function and context; each call
 * gets its index i of n and picks its own share of the work (the kernels
 * split output channels, column blocks or transform positions statically,
 * which keeps results independent of timing).  The caller runs share 0
 * and waits for the rest.
 *
 * Between sections, workers spin for a short while (inference runs many
 * sections back to back) and then sleep on a condition variable.
 *
 * Threading: the pool is the one structure here shared by threads.  One
 * section runs at a time; a caller that finds the pool busy (another
 * plan running on another thread) runs all shares itself.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "internal.h"

#define MAX_WORKERS 63
#define SPIN_NS 200000 /* how long an idle worker polls before sleeping */

struct pool {
  pthread_mutex_t dispatch; /* held for a whole section */
  pthread_mutex_t lock;     /* guards sleeping and the condition variable */
  pthread_cond_t wake;
  int n_workers;            /* created so far (only grows) */
  pthread_t threads[MAX_WORKERS];
  unsigned start_generation[MAX_WORKERS]; /* the generation a worker starts after */
  /* The current section: written before generation is bumped. */
  void (*fn)(void *ctx, int i, int n);
  void *ctx;
  int n;
  atomic_uint generation;
  atomic_int pending;       /* workers that have not finished this section */
};

static struct pool pool = {
    .dispatch = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *worker_main(void *arg) {
  const int index = (int)(intptr_t)arg; /* share index: workers are 1.. */
  /* Not the generation now: a section may have begun since the worker was
   * created, and the worker owes it an acknowledgement. */
  unsigned seen = pool.start_generation[index - 1];
  for (;;) {
    /* Poll for a new section, then sleep until one is announced. */
    unsigned gen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    if (gen == seen) {
      const int64_t until = now_ns() + SPIN_NS;
      for (int spins = 0; gen == seen; spins++) {
        /* Past a short spin, yield: if the CPUs are oversubscribed the
         * thread we wait for may need this one. */
        if (spins < 2048)
          cpu_relax();
        else
          sched_yield();
        gen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        if ((spins & 63) == 63 && now_ns() > until)
          break;
      }
      if (gen == seen) {
        pthread_mutex_lock(&pool.lock);
        while ((gen = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen)
          pthread_cond_wait(&pool.wake, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
      }
    }
    seen = gen;
    /* Every worker acknowledges every section (those without a share
     * too), so that none still reads fn, ctx or n when the next one is
     * being set up. */
    if (index < pool.n)
      pool.fn(pool.ctx, index, pool.n);
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
  }
  return NULL;
}

int tl__parallel_reserve(int n) {
  if (n > MAX_WORKERS + 1)
    n = MAX_WORKERS + 1;
  pthread_mutex_lock(&pool.dispatch);
  int rc = 0;
  while (pool.n_workers < n - 1) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pool.start_generation[pool.n_workers] =
        atomic_load_explicit(&pool.generation, memory_order_acquire);
    int err = pthread_create(&pool.threads[pool.n_workers], &attr, worker_main,
                             (void *)(intptr_t)(pool.n_workers + 1));
    pthread_attr_destroy(&attr);
    if (err != 0) {
      rc = TL_ENOMEM; /* fewer threads: sections just use fewer */
      break;
    }
    pool.n_workers++;
  }
  pthread_mutex_unlock(&pool.dispatch);
  return rc;
}

int tl__parallel_threads(int want) {
  int n = tl__threads < want ? tl__threads : want;
  const int have = 1 + __atomic_load_n(&pool.n_workers, __ATOMIC_ACQUIRE);
  n = n < have ? n : have;
  return n < 1 ? 1 : n;
}

void tl__parallel_run(int n, void (*fn)(void *ctx, int i, int n), void *ctx) {
  if (n < 1)
    n = 1;
  if (n == 1 || pthread_mutex_trylock(&pool.dispatch) != 0) {
    /* One thread, or another plan holds the pool: do every share here. */
    for (int i = 0; i < n; i++)
      fn(ctx, i, n);
    return;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  pool.n = n; /* shares past the workers' are the caller's, below */
  atomic_store_explicit(&pool.pending, pool.n_workers, memory_order_relaxed);
  pthread_mutex_lock(&pool.lock);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  fn(ctx, 0, n);
  for (int i = pool.n_workers + 1; i < n; i++)
    fn(ctx, i, n);
  for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; spins++) {
    if (spins < 2048)
      cpu_relax();
    else
      sched_yield();
  }
  pthread_mutex_unlock(&pool.dispatch);
}
