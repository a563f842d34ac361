/*
 * search.h - on-device search for the frontier of subnets worth serving.
 *
 * The space is too large to measure (resnet50 has ~10^20 subnets), so the
 * search narrows it in steps that each cost more per subnet and see fewer:
 *
 *  1. an accuracy estimate that needs no training (AutoTailor): the
 *     largest subnet's accuracy minus the sum of one-at-a-time drops, each
 *     measured once by shrinking a single dimension (one resolution, one
 *     stage's depth or width) of the largest, after BN recalibration;
 *  2. every subnet of the space (or, when it is too large, a sample) gets
 *     its predicted latency; a few subnets of each resolution are measured
 *     on a subset of the calibration data (after BN recalibration) and the
 *     estimate is fitted to them per resolution (a subnet that sees fewer
 *     pixels loses less by shrinking); then those near the estimated
 *     Pareto front, spread over the latency range, are measured too;
 *  3. twice, the unmeasured neighbours (one step in one dimension) of the
 *     measured Pareto front are measured, since the estimate misses how
 *     particular dimensions interact;
 *  4. the finalists (the measured front, and the subnets just below it
 *     that the subset's noise cannot tell from it) are recalibrated and
 *     measured on all the calibration data; their Pareto front in
 *     predicted latency and accuracy, cut to at most k subnets spread
 *     over the range, is the frontier.
 *
 * The caller caches the result (store.h): a search is done once per model,
 * calibration data, space and device.  Runs on the calling thread and
 * opts->threads - 1 threads of its own, each evaluating whole subnets
 * (the engine's own thread pool, tl_engine_set_threads(), goes to
 * whichever of them finds it free).
 */
#ifndef TL_SEARCH_H
#define TL_SEARCH_H

#include <stdatomic.h>
#include <stdint.h>

#include "calib.h"
#include "error.h"
#include "latency.h"
#include "supernet.h"

/* The search's algorithm, in the cache's key of a frontier: bumped when a
 * change would find other frontiers, so that a cached one is not taken
 * for what the new search would find. */
#define TL_SEARCH_VERSION 3

/* A member of the frontier a search finds: see frontier.h. */
struct tl_frontier_member;

struct tl_search_options {
  int k;                  /* frontier size; 0 means 16 */
  int64_t est_images;     /* images for the accuracy of steps 1-3; 0 = 2000 */
  int64_t recalib_images; /* images for BN recalibration in steps 1-3; 0 = 500 */
  int64_t final_recalib;  /* images for the frontier's recalibration; 0 = 2000 */
  int candidates;         /* subnets measured in step 2; 0 means 4 * k */
  int finalists;          /* subnets measured in step 4; 0 means k + k / 2 */
  int max_enumerate;      /* spaces larger than this are sampled; 0 = 20000 */
  int batch;              /* images per run; 0 means 100 */
  int threads;            /* subnets evaluated at once; 0 means 1 (the
                           * frontier does not depend on it) */
  uint64_t seed;          /* for sampling; 0 means a fixed default */
  /* Seconds the search may take; 0: no limit.  It is anytime: at the
   * limit it measures nothing more, and the frontier is the best front
   * measured so far (on the subset, when the last step had not begun:
   * see tl_search_report.complete).  Part of the cache's key. */
  double time_budget_s;
  /* Progress (may be NULL): phase ("estimate", "predict", "measure",
   * "refine", "frontier"), work done and the phase's total, and the
   * fraction of the whole search's evaluations done (0..1). */
  void (*progress)(void *ctx, const char *phase, int done, int total, double overall);
  /* May be NULL: each better frontier as the search finds it, before the
   * last step (the measured front so far, accuracies on the subset,
   * statistics recalibrated on recalib_images).  The callee owns f and
   * frees it with tl_frontier_free(); called on the search's thread. */
  void (*partial)(void *ctx, struct tl_frontier_member *f, int n);
  void *ctx;
  /* May be NULL.  Once it reads nonzero (another thread sets it), the
   * search stops with TL_ECANCELED before its next batch of images
   * (recalibration or accuracy) or its next 256 latency predictions. */
  const atomic_int *stop;
};

struct tl_search_report {
  int evaluated; /* subnet evaluations on calibration data, all steps */
  int predicted; /* subnets whose latency was predicted */
  double space_size;
  double seconds;
  int complete;   /* 0: the time budget ended it before all its steps */
  int64_t images; /* calibration images the frontier's accuracies were
                   * measured on: all of them, or est_images when cut short */
  int partials;   /* frontiers given to opts->partial */
};

/* Searches sn's space with latencies from t (profiled: see latency.h) and
 * accuracies on calib (agreements when it has no labels).  On success *out is a malloc'd array of
 * *n members (1 <= *n <= k) by increasing predicted latency, each more accurate than the one
 * before; free it with tl_frontier_free().  rep may be NULL. */
int tl_search(const struct tl_supernet *sn, const struct tl_op_table *t,
              const struct tl_calib *calib, const struct tl_search_options *opts,
              struct tl_frontier_member **out, int *n, struct tl_search_report *rep,
              struct tl_error *err);

#endif
