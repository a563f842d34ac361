/*
 * profile.h - profiling: the op table of a SuperNet's space, measured.
 *
 * Profiling times each distinct signature of a SuperNet's space once,
 * inside whole plans run the way serving runs them (same threads, warm
 * caches, the neighbours a step really has), and keeps the medians in an
 * op table (op_table.h).
 *
 * The functions that take a SuperNet only read it (see supernet.h for its
 * threading).
 */
#ifndef TL_PROFILE_H
#define TL_PROFILE_H

#include <stdatomic.h>
#include <stdint.h>

#include "error.h"
#include "op_table.h"
#include "supernet.h"

struct tl_profile_options {
  int warmup;  /* untimed runs per plan before timing; 0 means 1 */
  int repeats; /* timed runs per plan and pass, medians taken; 0 means 3 */
  /* Passes over the plans, some time apart; a signature's value is the
   * fastest of its per-plan medians over all passes (disturbances only
   * slow steps down).  0 means 2. */
  int passes;
  /* After the plans that cover every width at every resolution, random
   * subnets are planned (not run) until this many in a row bring no new
   * signature; 0 means 20. */
  int patience;
  uint64_t seed; /* for those random subnets; 0 means a fixed default */
  /* Called after each plan is timed (may be NULL): plans timed so far,
   * signatures measured, and the plans to time in all. */
  void (*progress)(void *ctx, int plans, int signatures, int planned);
  void *ctx;
  /* May be NULL.  Once it reads nonzero, profiling stops before its next
   * plan (built or timed) with TL_ECANCELED, adding nothing to the table. */
  const atomic_int *stop;
};

struct tl_profile_report {
  int plans;          /* plans timed */
  int runs;           /* runs of them, warm-up included */
  int new_signatures; /* entries added to the table */
  double seconds;     /* wall time of the whole profile */
};

/* Times every signature of sn's space that t lacks, with the engine's
 * current thread count, and adds them (and the overhead, when plans were
 * timed) to t.  Signatures already in t are not measured
 * again, so a table loaded from a cache is completed, not redone.  rep
 * may be NULL.  Errors: plan building (TL_ENOMEM, ...) with a sentence. */
int tl_latency_profile(const struct tl_supernet *sn, const struct tl_profile_options *opts,
                       struct tl_op_table *t, struct tl_profile_report *rep, struct tl_error *err);

#endif
