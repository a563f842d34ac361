/*
 * controller.h - the adaptation loop: each monitor interval, sample the
 * device, predict every frontier member's latency under that state, and
 * choose the member new requests get.
 *
 * A member's predicted latency under the state is its base prediction
 * scaled (tl_latency_scale) by the CPU frequency ratio, the CPU share the
 * other processes' load leaves us (cpu_share_load) and an online
 * correction factor, the EWMA of served over predicted compute.
 *
 * That is compute only.  What clients see also holds the time a request
 * waits: for a worker (a queue, when requests come faster than they are
 * served), for a CPU (other processes at ordinary weight, which the
 * device state hardly shows), in the socket.  So the controller closes
 * the loop on the latency served: each answered request is replayed as
 * if another member had served it (its compute, and for a slower member
 * its wait for a worker, scaled by the two members' predicted compute;
 * the rest as it was), and a member's latency is the p95 of those over
 * the requests of the last two intervals (at least TL_RT_FEEDBACK_MIN;
 * else the prediction alone): tl_controller_p95_ms.  Waiting that grows
 * thus moves the model down within two intervals, and up again (after
 * the hysteresis) once it has gone, without climbing to a member whose
 * own longer waits would send it back.
 *
 * A CPU quota on our cgroup does not slow a request down; it bounds the
 * CPU time per second the service may use, and past it the kernel stops
 * all our threads until the next period, so every request waiting then is
 * late.  It is therefore a bound on throughput: the CPU a member would
 * use at the requests' current rate,
 *   demand = rate x (scaled latency x engine threads + overhead),
 * where overhead is the CPU each request costs outside its plan run (the
 * process's CPU time per request less its plan's scaled latency x
 * threads, measured each tick: the loop, the workers' parsing, answers
 * and polling), plus the other models' demand, must stay within the
 * quota.  A member fits when
 *   scaled latency x (1 + margin) <= budget.latency_p95_ms,
 *   demand <= quota cores x (1 - margin) (when there is a quota),
 *   predicted_mib <= budget.memory_mib (when there is a memory budget),
 *   accuracy >= budget.min_accuracy (when its accuracy is known).
 * The choice is the most accurate member that fits.  When the active one
 * no longer fits the controller moves at once; it moves to a more
 * accurate one only when that one fits with twice the margin (so that it
 * is not at the edge it would fall back from) and only after that choice
 * has held for budget.hysteresis_ms;
 * when nothing fits it serves the fastest and marks the model degraded,
 * and says which part of the latency is over and what would help:
 * compute (the fastest member alone misses: a larger budget or a smaller
 * model), waiting for a CPU (our threads' run-queue delay per request,
 * from schedstat: raise CPUWeight=) or queueing (the wait for a worker:
 * fewer requests).  Every switch is logged, counted in the metrics
 * (tailor_switches_total) and appended to the store's events with its
 * reason and the device state as JSON; every change of the degraded flag
 * is logged, appended to the events and shown by the tailor_degraded and
 * tailor_over_budget_info gauges.
 *
 * Loop thread only: the controller runs on a uv_timer and writes the
 * models' control state (runtime.h), which the loop alone reads but for
 * the atomic active index.
 */
#ifndef TL_CONTROLLER_H
#define TL_CONTROLLER_H

#include <stddef.h>
#include <uv.h>

#include "error.h"
#include "metrics.h"
#include "monitor.h"
#include "runtime.h"
#include "store.h"

struct tl_controller_env {
  uv_loop_t *loop;
  struct tl_store *store;     /* switch events; NULL: not stored */
  struct tl_metrics *metrics; /* may be NULL */
  struct tl_logger log;
  /* Called after a switch or a change of the degraded flag (may be NULL),
   * e.g. to update the service status. */
  void (*changed)(void *ctx);
  void *ctx;
};

struct tl_controller;

/* Starts the controller's timer: every interval_ms it samples mon (the
 * caller's; it must outlive the controller or be replaced first).
 * Returns 0, TL_ENOMEM or TL_EINTERNAL with a sentence. */
int tl_controller_start(const struct tl_controller_env *env, struct tl_monitor *mon,
                        int interval_ms, struct tl_controller **out, struct tl_error *err);

/* Replaces the monitor and the interval (after a reload). */
void tl_controller_configure(struct tl_controller *c, struct tl_monitor *mon, int interval_ms);

/* The generation now served (borrowed: the caller holds a reference and
 * calls this again before dropping it; NULL for none).  Every model with a
 * frontier gets its first choice at once; the correction factor of a
 * model of the same name and file in the previous generation carries
 * over, and so does its pin when the pinned subnet is on the new
 * frontier (else the pin is released, with a warning). */
void tl_controller_set_runtime(struct tl_controller *c, struct tl_runtime *rt);

/* Model m's frontier was replaced (m->frontier is the new one, old the
 * previous, still alive): choose at once on the new one.  A pin on a
 * subnet that is on the new frontier stays. */
void tl_controller_frontier_swapped(struct tl_controller *c, struct tl_rt_model *m,
                                    const struct tl_rt_frontier *old);

/* Pins model m to the frontier member spelt text, or releases the pin
 * when text is "auto".  Returns 0, or TL_EINVAL/TL_ENOENT (not a spec,
 * not on the frontier) or TL_EBUSY (no frontier yet) with a sentence. */
int tl_controller_pin(struct tl_controller *c, struct tl_rt_model *m, const char *text,
                      struct tl_error *err);

/* Feeds a served request, whose answer went out at answered_ns, into its
 * model's correction factor and feedback window. */
void tl_controller_observe(struct tl_controller *c, const struct tl_rt_request *req,
                           uint64_t answered_ns);

/* Member i of m's frontier as clients would see it now, in ms: the p95
 * of the requests lately answered, replayed as if member i had served
 * them (no margin); its scaled compute when too few were answered. */
double tl_controller_p95_ms(const struct tl_rt_model *m, int i);

/* Member i of m's frontier under m's last factors, in ms (no margin). */
double tl_controller_scaled_ms(const struct tl_rt_model *m, int i);

/* 1 if member i of m's frontier fits its budget under m's last factors;
 * else 0 with why it does not (may be NULL). */
int tl_controller_fits(const struct tl_rt_model *m, int i, char *why, size_t size);

/* The last device sample (all unknown before the first). */
const struct tl_device_state *tl_controller_device(const struct tl_controller *c);

/* Stops the timer and closes its handle; c is freed in the close
 * callback (run the loop after). */
void tl_controller_stop(struct tl_controller *c);

#endif
