/*
 * workers.h - the inference worker threads and their bounded queue.
 *
 * Inference never runs on the loop thread, and not on libuv's shared
 * threadpool either (it also serves uv_fs_*, and a long inference there
 * would stall the file system work of the whole loop): a fixed set of
 * threads of our own takes work items from one bounded FIFO queue.  When a
 * worker has run an item it puts it on a completion queue and wakes the
 * loop with uv_async_send(); wake-ups coalesce, so the loop's callback
 * drains the whole completion queue each time and calls each item's done
 * function there.  Items marked quiet wake the loop later (see
 * tl_work.quiet).
 *
 * A worker whose last item came right after the one before (within
 * SPIN_NS) polls the queue briefly before it sleeps: waking a sleeping
 * thread costs some 20 us on an idle machine, which back-to-back requests
 * would otherwise pay each time; requests further apart never make it
 * spin.
 *
 * Shared between threads: the two queues and the counters, under one
 * mutex.  A work item belongs to the submitter until submit, to the
 * workers until done is called, and to the submitter again in done.
 */
#ifndef TL_WORKERS_H
#define TL_WORKERS_H

#include <stdint.h>
#include <uv.h>

#include "error.h"

struct tl_work {
  /* On worker thread number `worker` (0 <= worker < n). */
  void (*run)(struct tl_work *w, int worker);
  /* On the loop thread, after run. */
  void (*done)(struct tl_work *w);
  /* Set by run when the item's client already has its answer: the loop
   * is then not woken for this item at once but when the worker next
   * sleeps, or at the loop's next tl_workers_collect(), whichever comes
   * first.  Back-to-back requests thus cost the loop one wake-up each
   * (the next request's), not two. */
  int quiet;
  struct tl_work *next; /* private */
};

struct tl_workers;

/* Starts n worker threads (named "tailord-wN", every signal blocked) with
 * a queue of at most depth waiting items, wakes on loop.  Returns 0, or
 * TL_ENOMEM/TL_EINTERNAL with a sentence; *out is untouched on failure. */
int tl_workers_start(uv_loop_t *loop, int n, int depth, struct tl_workers **out,
                     struct tl_error *err);

/* Queues w.  Returns 0, TL_EBUSY when depth items are already waiting
 * (the caller answers 503), or TL_EINVAL once stopping.  Loop thread. */
int tl_workers_submit(struct tl_workers *ws, struct tl_work *w);

/* Changes the queue bound (items already queued stay).  Loop thread. */
void tl_workers_set_depth(struct tl_workers *ws, int depth);

/* Items waiting for a worker, and items being run now. */
int tl_workers_waiting(struct tl_workers *ws);
int tl_workers_running(struct tl_workers *ws);

/* Items waiting for a worker, read without the lock: for a worker that
 * must not keep the pool busy with other work while items wait.  Any
 * thread. */
int tl_workers_queued(struct tl_workers *ws);

/* From within an item's run: hands another item w (never submitted) to
 * the loop as if it had been run, for its done; w->quiet as for any
 * item.  Worker threads only. */
void tl_workers_finish(struct tl_workers *ws, struct tl_work *w);

/* Calls done, now, for every item finished so far (the loop's wake-up
 * would do it a moment later).  For a reader that must see the effects
 * of what its clients already know finished.  Loop thread. */
void tl_workers_collect(struct tl_workers *ws);

/* Stops the pool: the workers finish every queued item, then exit and are
 * joined; the done callbacks of everything finished are called, and the
 * loop handle is closed (ws is freed in its close callback, so run the
 * loop after).  Blocks the loop thread until the queue is empty: call it
 * when nothing more is submitted.  Loop thread. */
void tl_workers_stop(struct tl_workers *ws);

#endif
