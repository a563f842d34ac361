/*
 * workers.c - worker threads, the bounded queue and the completion queue
 * (see workers.h).
 */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* A worker that finished an item polls the queue this long before it
 * sleeps, when the last item came within that time of the one before:
 * on an idle machine waking a sleeping thread costs some 20 us, which
 * back-to-back requests would pay each time.  Items further apart than
 * this never make a worker spin (a CPU quota counts spinning too). */
#define SPIN_NS 150000

struct tl_workers {
  uv_async_t async; /* wakes the loop to drain `finished` */
  int n;
  pthread_t *threads; /* (n) */
  int started;        /* threads created */

  pthread_mutex_t lock;                /* guards everything below */
  pthread_cond_t cond;                 /* work queued, or stopping */
  struct tl_work *head, *tail;         /* waiting, FIFO */
  struct tl_work *finished, *fin_tail; /* run, done not yet called */
  int waiting;
  int running;
  int depth;
  int stopping;
  int unnotified;    /* quiet items finished since the loop was last woken */
  atomic_int queued; /* = waiting, for polling without the lock */
};

/* Polls for a queued item until SPIN_NS from now.  Called without the
 * lock; a stop is seen at the next sleep. */
static void spin_for_work(struct tl_workers *ws) {
  const uint64_t until = tl_now_ns() + SPIN_NS;
  for (int i = 0; atomic_load_explicit(&ws->queued, memory_order_acquire) == 0; i++) {
    tl_cpu_relax();
    if ((i & 63) == 63 && tl_now_ns() > until)
      return;
  }
}

/* Puts w on the completion queue; with the lock held. */
static void finish_locked(struct tl_workers *ws, struct tl_work *w) {
  w->next = NULL;
  if (ws->fin_tail != NULL)
    ws->fin_tail->next = w;
  else
    ws->finished = w;
  ws->fin_tail = w;
}

struct worker_arg {
  struct tl_workers *ws;
  int index;
};

static void *worker_main(void *p) {
  struct worker_arg *a = p;
  struct tl_workers *ws = a->ws;
  int index = a->index;
  free(a);
  uint64_t finished_ns = 0, gap_ns = UINT64_MAX; /* since the last item */
  pthread_mutex_lock(&ws->lock);
  for (;;) {
    if (ws->head == NULL && !ws->stopping && gap_ns < SPIN_NS) {
      pthread_mutex_unlock(&ws->lock);
      spin_for_work(ws);
      pthread_mutex_lock(&ws->lock);
    }
    if (ws->head == NULL && ws->unnotified) {
      /* about to sleep: the loop hears of the quiet items now */
      ws->unnotified = 0;
      pthread_mutex_unlock(&ws->lock);
      uv_async_send(&ws->async);
      pthread_mutex_lock(&ws->lock);
    }
    while (ws->head == NULL && !ws->stopping)
      pthread_cond_wait(&ws->cond, &ws->lock);
    if (ws->head == NULL) /* stopping, and the queue is empty */
      break;
    struct tl_work *w = ws->head;
    ws->head = w->next;
    if (ws->head == NULL)
      ws->tail = NULL;
    ws->waiting--;
    atomic_store_explicit(&ws->queued, ws->waiting, memory_order_relaxed);
    ws->running++;
    pthread_mutex_unlock(&ws->lock);
    uint64_t t = tl_now_ns();
    gap_ns = finished_ns != 0 ? t - finished_ns : UINT64_MAX;

    w->run(w, index);
    finished_ns = tl_now_ns();

    pthread_mutex_lock(&ws->lock);
    ws->running--;
    finish_locked(ws, w);
    if (w->quiet) {
      ws->unnotified = 1;
      continue;
    }
    pthread_mutex_unlock(&ws->lock);
    uv_async_send(&ws->async);
    pthread_mutex_lock(&ws->lock);
  }
  pthread_mutex_unlock(&ws->lock);
  return NULL;
}

/* The loop's side: every finished item's done, in completion order. */
static void drain(struct tl_workers *ws) {
  pthread_mutex_lock(&ws->lock);
  struct tl_work *w = ws->finished;
  ws->finished = ws->fin_tail = NULL;
  ws->unnotified = 0;
  pthread_mutex_unlock(&ws->lock);
  while (w != NULL) {
    struct tl_work *next = w->next;
    w->done(w);
    w = next;
  }
}

static void on_async(uv_async_t *h) { drain(h->data); }

void tl_workers_collect(struct tl_workers *ws) { drain(ws); }

int tl_workers_queued(struct tl_workers *ws) {
  return atomic_load_explicit(&ws->queued, memory_order_acquire);
}

void tl_workers_finish(struct tl_workers *ws, struct tl_work *w) {
  pthread_mutex_lock(&ws->lock);
  finish_locked(ws, w);
  if (w->quiet)
    ws->unnotified = 1;
  pthread_mutex_unlock(&ws->lock);
  if (!w->quiet)
    uv_async_send(&ws->async);
}

static void ws_free(struct tl_workers *ws) {
  pthread_cond_destroy(&ws->cond);
  pthread_mutex_destroy(&ws->lock);
  free(ws->threads);
  free(ws);
}

static void on_closed(uv_handle_t *h) { ws_free(h->data); }

/* Stops and joins the threads started so far (the queue must be empty or
 * the workers finish it first). */
static void join_all(struct tl_workers *ws) {
  pthread_mutex_lock(&ws->lock);
  ws->stopping = 1;
  pthread_cond_broadcast(&ws->cond);
  pthread_mutex_unlock(&ws->lock);
  for (int i = 0; i < ws->started; i++)
    pthread_join(ws->threads[i], NULL);
  ws->started = 0;
}

int tl_workers_start(uv_loop_t *loop, int n, int depth, struct tl_workers **out,
                     struct tl_error *err) {
  if (n < 1 || depth < 1)
    return tl_fail(err, TL_EINVAL, "workers: need at least one thread and one queue slot");
  struct tl_workers *ws = calloc(1, sizeof *ws);
  if (ws == NULL || (ws->threads = calloc((size_t)n, sizeof *ws->threads)) == NULL) {
    free(ws);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  ws->n = n;
  ws->depth = depth;
  int e = pthread_mutex_init(&ws->lock, NULL);
  if (e != 0) {
    free(ws->threads);
    free(ws);
    return tl_fail(err, TL_EINTERNAL, "workers: %s", strerror(e));
  }
  if ((e = pthread_cond_init(&ws->cond, NULL)) != 0) {
    pthread_mutex_destroy(&ws->lock);
    free(ws->threads);
    free(ws);
    return tl_fail(err, TL_EINTERNAL, "workers: %s", strerror(e));
  }
  int uerr = uv_async_init(loop, &ws->async, on_async);
  if (uerr != 0) {
    ws_free(ws);
    return tl_fail(err, TL_EINTERNAL, "workers: %s", uv_strerror(uerr));
  }
  ws->async.data = ws;

  /* Workers take no signals (the loop's signal handling gets them all),
   * and the engine's pool threads they may start inherit that. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int i = 0; i < n && e == 0; i++) {
    struct worker_arg *a = malloc(sizeof *a);
    if (a == NULL) {
      e = ENOMEM;
      break;
    }
    a->ws = ws;
    a->index = i;
    e = pthread_create(&ws->threads[i], NULL, worker_main, a);
    if (e != 0) {
      free(a);
      break;
    }
    char name[16];
    snprintf(name, sizeof name, "tailord-w%d", i);
    pthread_setname_np(ws->threads[i], name);
    ws->started++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    join_all(ws);
    uv_close((uv_handle_t *)&ws->async, on_closed);
    return tl_fail(err, e == ENOMEM ? TL_ENOMEM : TL_EINTERNAL,
                   "cannot start %d worker threads: %s", n, strerror(e));
  }
  *out = ws;
  return 0;
}

int tl_workers_submit(struct tl_workers *ws, struct tl_work *w) {
  pthread_mutex_lock(&ws->lock);
  int rc = 0;
  if (ws->stopping)
    rc = TL_EINVAL;
  else if (ws->waiting >= ws->depth)
    rc = TL_EBUSY;
  if (rc == 0) {
    w->next = NULL;
    if (ws->tail != NULL)
      ws->tail->next = w;
    else
      ws->head = w;
    ws->tail = w;
    ws->waiting++;
    atomic_store_explicit(&ws->queued, ws->waiting, memory_order_release);
    pthread_cond_signal(&ws->cond);
  }
  pthread_mutex_unlock(&ws->lock);
  return rc;
}

void tl_workers_set_depth(struct tl_workers *ws, int depth) {
  pthread_mutex_lock(&ws->lock);
  ws->depth = depth < 1 ? 1 : depth;
  pthread_mutex_unlock(&ws->lock);
}

int tl_workers_waiting(struct tl_workers *ws) {
  pthread_mutex_lock(&ws->lock);
  int n = ws->waiting;
  pthread_mutex_unlock(&ws->lock);
  return n;
}

int tl_workers_running(struct tl_workers *ws) {
  pthread_mutex_lock(&ws->lock);
  int n = ws->running;
  pthread_mutex_unlock(&ws->lock);
  return n;
}

void tl_workers_stop(struct tl_workers *ws) {
  join_all(ws);
  drain(ws);
  uv_close((uv_handle_t *)&ws->async, on_closed);
}
