/*
 * latency.h - the learning-free latency and memory predictor.
 *
 * A subnet's plan is a list of steps, each a fused kernel (conv + BN +
 * activation + residual add is one step).  Every step has a signature
 * (tl_plan_step_signature: kind, shapes, kernel geometry, threads) and
 * steps with equal signatures take equal time on one device.  Profiling
 * times each distinct signature of a SuperNet's space once, inside whole
 * plans run the way serving runs them (same threads, warm caches, the
 * neighbours a step really has), and keeps the medians in an op table.  A
 * subnet's latency is then predicted without running it: the sum of its
 * steps' medians plus a per-step overhead, scaled by the device's state.
 *
 * Proxy transfer (latency ranks are monotone across devices): a table
 * made elsewhere, or under other conditions, is mapped to this one from a
 * few anchor signatures measured here, by a least-squares fit of
 * log here = log a + b log (there * r), where r is how much less of the
 * step's work its busiest thread does here than there (the planner knows:
 * a conv split over two threads here and run on one there has r = 1/2).
 * Steps whose split does not change and steps whose split does are fitted
 * apart.
 *
 * Memory is analytic: the weights the subnet reads, its plan's arena and
 * scratch, and the request's input and output buffers.
 *
 * An op table is plain memory, owned by its creator; the functions that
 * take a SuperNet only read it (see supernet.h for its threading).
 */
#ifndef TL_LATENCY_H
#define TL_LATENCY_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#include "error.h"
#include "store.h"
#include "supernet.h"

/* ----------------------------------------------------------- op tables */

struct tl_op_table;

/* A new empty table in *out.  TL_ENOMEM on failure. */
int tl_op_table_new(struct tl_op_table **out);

/* Frees the table; NULL is allowed. */
void tl_op_table_free(struct tl_op_table *t);

/* Sets the median time of signature sig (copied) to us microseconds,
 * replacing an earlier value.  TL_ENOMEM or TL_EINVAL (us not finite or
 * negative, empty sig). */
int tl_op_table_set(struct tl_op_table *t, const char *sig, double us);

/* Looks sig up: 1 and *us when present, 0 when not. */
int tl_op_table_get(const struct tl_op_table *t, const char *sig, double *us);

/* Entries in insertion order: 0 <= i < tl_op_table_count(t).  The
 * signature stays valid until the table is freed. */
int tl_op_table_count(const struct tl_op_table *t);
void tl_op_table_entry(const struct tl_op_table *t, int i, const char **sig, double *us);

/* The per-step overhead added to every step of a prediction (what a whole
 * run costs beyond the sum of its steps' medians; may be negative, as
 * timing each step costs a little too). */
double tl_op_table_overhead_us(const struct tl_op_table *t);
void tl_op_table_set_overhead_us(struct tl_op_table *t, double us);

/* Adds every latency the store holds for device_id to t, the per-step
 * overhead included.  *loaded (may be NULL) gets the number of entries. */
int tl_latency_load(struct tl_store *st, int64_t device_id, struct tl_op_table *t, int *loaded,
                    struct tl_error *err);

/* Stores every entry of t, and its overhead, for device_id in one
 * transaction; runs is the number of timed runs behind each median. */
int tl_latency_save(struct tl_store *st, int64_t device_id, const struct tl_op_table *t,
                    int64_t runs, struct tl_error *err);

/* ----------------------------------------------------------- profiling */

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

/* ---------------------------------------------------------- prediction */

struct tl_prediction {
  double latency_ms;    /* sum of step medians + overhead, unscaled */
  double mem_mib;       /* weights + arena + scratch + request buffers */
  int64_t weight_bytes; /* weights the subnet reads */
  int64_t arena_bytes;  /* activations and the kernels' scratch */
  int64_t io_bytes;     /* one request's input and output tensors */
  int steps;
};

/* Predicts spec's latency and memory from t by building its plan (not
 * running it).  A step whose signature t lacks is TL_ENOENT, with a
 * sentence naming it (profile first). */
int tl_latency_predict(const struct tl_supernet *sn, const struct tl_op_table *t,
                       const struct tl_subnet_spec *spec, struct tl_prediction *out,
                       struct tl_error *err);

/* The device's state as the daemon sees it.  A field <= 0 is unknown and
 * taken as 1. */
struct tl_device_scale {
  double freq_ratio; /* current / maximum CPU frequency */
  double cpu_share;  /* share of our cores left to us (quota, other load) */
  double correction; /* online factor: served latency / predicted */
};

/* base_ms under state s: base / freq_ratio / cpu_share * correction, each
 * factor clamped to [0.05, 20] so one bad reading cannot run away. */
double tl_latency_scale(double base_ms, const struct tl_device_scale *s);

/* ------------------------------------------------------ proxy transfer */

/* One group's map: here = scale * (there * r)^exponent (us), where r is
 * the busiest share of the step's work here over there (tl_step_info's
 * busiest: 1/2 for a step split evenly over two threads here and run on
 * one there). */
struct tl_transfer_fit {
  int anchors; /* of the group; 0: the group has no signature */
  double scale;
  double exponent;
};

struct tl_transfer_report {
  int anchors; /* anchor signatures measured here */
  int plans;   /* plans run to measure them */
  /* [0] steps whose kernels split their work the same way here as there,
   * [1] steps whose split changes (a thread count's change) */
  struct tl_transfer_fit fit[2];
  double seconds;
};

/* Fills dst with src mapped to this device and thread count: measures
 * `anchors` (2 to 64) signatures here, found in as few plans as possible,
 * and fits the map from them in two groups: steps whose kernels split
 * their work differently here than there (from the planner, tl_step_info's
 * busiest, at both thread counts), and the others.  Each group gets at
 * least one anchor (two when it can), the rest go by the share of the
 * time the group takes, spread over the group's range of src's times.
 * src's signatures may carry another thread count (" tN" at their end);
 * dst's carry the engine's current one.  Changes the engine's thread
 * count while it plans at src's, so call it where nothing else plans or
 * runs. */
int tl_latency_transfer(const struct tl_supernet *sn, const struct tl_op_table *src, int anchors,
                        const struct tl_profile_options *opts, struct tl_op_table *dst,
                        struct tl_transfer_report *rep, struct tl_error *err);

#endif
