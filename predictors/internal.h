/*
 * internal.h - what the latency files of predictors/ share and nothing
 * outside the folder sees: building a subnet's plan as serving runs it,
 * timing a plan, and the covering plans of a space.  Profiling
 * (profile.c), prediction (latency.c) and the proxy transfer (transfer.c)
 * use them; profile.c defines them.  Names with two underscores (tl__)
 * are internal to the library.
 */
#ifndef TL_PREDICTORS_INTERNAL_H
#define TL_PREDICTORS_INTERNAL_H

#include <stdint.h>

#include "error.h"
#include "plan.h"
#include "supernet.h"

/* The longest step signature any of them writes, with its NUL. */
#define SIG_MAX 1024

/* The median of v[0..n), n > 0; sorts v. */
double tl__median(double *v, int n);

struct tl__plan_timing {
  int steps;
  double *step_us; /* (steps) medians; the caller frees it */
  double whole_us; /* median of untimed whole runs */
};

/* Times plan: warm-up runs, then `repeats` runs with per-step timing
 * (medians per step), then `whole` plain runs (their median, for the
 * per-step overhead; 0 when whole is 0).  TL_ENOMEM on failure. */
int tl__time_plan(struct tl_plan *plan, int warmup, int repeats, int whole,
                  struct tl__plan_timing *out);

/* Runs plan until it runs at the speed it serves at (see profile.c). */
void tl__warm_up(struct tl_plan *plan);

/* Covering spec i of the space (see profile.c), with *seed for the
 * depths; returns 0 past the last. */
int tl__covering_spec(const struct tl_supernet_info *info, int i, uint64_t *seed,
                      struct tl_subnet_spec *spec);

/* spec's plan at batch 1, as serving builds it. */
int tl__build_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   struct tl_plan **plan, struct tl_error *err);

#endif
