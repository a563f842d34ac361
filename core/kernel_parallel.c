/*
 * kernel_parallel.c - the engine's own small thread pool, for splitting
 * one kernel's work over tl_engine_set_threads() threads.  It keeps that
 * count; a plan takes it when it is built and hands it to its steps.
 *
 * Workers are created when a plan is built (tl__parallel_reserve), never
 * on the inference path, and live as long as the process.  A parallel
 * section has n shares; fn(ctx, i, n) computes share i (the kernels split
 * output channels, column blocks or transform positions statically, so
 * results do not depend on which thread runs a share).  The caller and
 * the workers claim shares one at a time from a shared counter, and the
 * caller returns once every share is done.  A worker that the scheduler
 * has not run yet (the CPUs are busy with other processes) therefore
 * costs nothing: the caller takes its shares instead of waiting for it,
 * and a worker that wakes after the section finds nothing left to claim.
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
#include <stdint.h>

#include "clock.h"
#include "internal.h"

#define MAX_WORKERS 63
#define SPIN_NS 200000 /* how long an idle worker polls before sleeping */

/* The section's state in one word, so that a claim is one compare-and-swap
 * that fails once the section is over: generation << 32 | n << 16 | next
 * share to claim. */
#define STATE(gen, n, next) ((uint64_t)(gen) << 32 | (uint64_t)(n) << 16 | (uint64_t)(next))
#define STATE_GEN(s) ((uint32_t)((s) >> 32))
#define STATE_N(s) ((int)(((s) >> 16) & 0xffff))
#define STATE_NEXT(s) ((int)((s)&0xffff))

struct pool {
  pthread_mutex_t dispatch; /* held for a whole section */
  pthread_mutex_t lock;     /* guards sleeping and the condition variable */
  pthread_cond_t wake;
  int n_workers; /* created so far (only grows) */
  pthread_t threads[MAX_WORKERS];
  /* The current section: fn and ctx are written before state announces
   * it, and read only by a thread that has claimed one of its shares. */
  void (*fn)(void *ctx, int i, int n);
  void *ctx;
  _Atomic uint64_t state;
  atomic_int done; /* shares of this section finished */
};

static struct pool pool = {
    .dispatch = PTHREAD_MUTEX_INITIALIZER,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

/* The engine's thread count (tl_engine_set_threads): set before plans
 * are built and run, never while one runs, so it needs no lock. */
static int pool_threads = 1;

/* Claims and runs shares of generation gen until none is left (or the
 * section is over); returns how many this thread ran. */
static int run_shares(uint32_t gen) {
  int ran = 0;
  uint64_t s = atomic_load_explicit(&pool.state, memory_order_acquire);
  while (STATE_GEN(s) == gen && STATE_NEXT(s) < STATE_N(s)) {
    if (!atomic_compare_exchange_weak_explicit(&pool.state, &s, s + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue; /* s now holds the current state */
    pool.fn(pool.ctx, STATE_NEXT(s), STATE_N(s));
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    ran++;
    s = atomic_load_explicit(&pool.state, memory_order_acquire);
  }
  return ran;
}

static void *worker_main(void *arg) {
  (void)arg;
  uint32_t seen = STATE_GEN(atomic_load_explicit(&pool.state, memory_order_acquire));
  for (;;) {
    /* Poll for a new section, then sleep until one is announced. */
    uint32_t gen = STATE_GEN(atomic_load_explicit(&pool.state, memory_order_acquire));
    if (gen == seen) {
      const uint64_t until = tl_now_ns() + SPIN_NS;
      for (int spins = 0; gen == seen; spins++) {
        /* Past a short spin, yield: if the CPUs are oversubscribed the
         * thread we wait for may need this one. */
        if (spins < 2048)
          tl_cpu_relax();
        else
          sched_yield();
        gen = STATE_GEN(atomic_load_explicit(&pool.state, memory_order_acquire));
        if ((spins & 63) == 63 && tl_now_ns() > until)
          break;
      }
      if (gen == seen) {
        pthread_mutex_lock(&pool.lock);
        while ((gen = STATE_GEN(atomic_load_explicit(&pool.state, memory_order_acquire))) == seen)
          pthread_cond_wait(&pool.wake, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
      }
    }
    seen = gen;
    run_shares(gen);
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
    int err = pthread_create(&pool.threads[pool.n_workers], &attr, worker_main, NULL);
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

void tl__parallel_set_threads(int n) { pool_threads = n; }

int tl__parallel_max_threads(void) { return pool_threads; }

int tl__parallel_threads(int want) {
  int n = pool_threads < want ? pool_threads : want;
  const int have = 1 + __atomic_load_n(&pool.n_workers, __ATOMIC_ACQUIRE);
  n = n < have ? n : have;
  return n < 1 ? 1 : n;
}

double tl__chunk_busiest(int64_t units, int n) {
  if (n <= 1 || units <= 1)
    return 1;
  /* the largest of the n pieces has ceil(units / n) units */
  return (double)((units + n - 1) / n) / (double)units;
}

void tl__parallel_run(int n, void (*fn)(void *ctx, int i, int n), void *ctx) {
  if (n < 1)
    n = 1;
  if (n == 1 || n > 0xffff || pool.n_workers == 0 || pthread_mutex_trylock(&pool.dispatch) != 0) {
    /* One share (or more than a claim counts), no workers, or another
     * plan holds the pool: every share here. */
    for (int i = 0; i < n; i++)
      fn(ctx, i, n);
    return;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  uint32_t gen = STATE_GEN(atomic_load_explicit(&pool.state, memory_order_relaxed)) + 1;
  pthread_mutex_lock(&pool.lock);
  atomic_store_explicit(&pool.state, STATE(gen, n, 0), memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
  run_shares(gen);
  /* Only shares a worker claimed and is running are left to wait for. */
  for (int spins = 0; atomic_load_explicit(&pool.done, memory_order_acquire) < n; spins++) {
    if (spins < 2048)
      tl_cpu_relax();
    else
      sched_yield();
  }
  pthread_mutex_unlock(&pool.dispatch);
}
