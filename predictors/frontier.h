/*
 * frontier.h - the frontier of a model on this device, from the cache
 * when it can be and from a search when it must.
 *
 * A frontier is keyed by the model (its file's hash), the device (the
 * store's device id: CPU, cores, BLAS, threads), the calibration data
 * (a hash of its images, labels and scale), the search space (its
 * width and resolution choices) and the search (TL_SEARCH_VERSION and
 * the options that change its result: k, images, candidates, finalists).  tl_frontier_obtain()
 * loads it with its members' BatchNorm statistics when the cache has all of that, and otherwise
 * completes the device's latency table (profiling only the signatures the cache lacks), searches,
 * and stores the frontier, the members' accuracies and their statistics.  A restart with the same
 * inputs therefore profiles nothing and evaluates nothing.
 */
#ifndef TL_FRONTIER_H
#define TL_FRONTIER_H

#include <stdint.h>

#include "calib.h"
#include "error.h"
#include "latency.h"
#include "profile.h"
#include "search.h"
#include "store.h"
#include "supernet.h"

struct tl_frontier_member {
  struct tl_subnet_spec spec;
  double predicted_ms;
  double predicted_mib;
  double accuracy;        /* top-1 on all the calibration data, recalibrated (on
                           * the search's subset when its time budget cut it
                           * short, tl_search_report.complete 0) */
  struct tl_bn_stats *bn; /* its recalibrated statistics; owned */
};

/* Frees the n members of f and their statistics; NULL is allowed. */
void tl_frontier_free(struct tl_frontier_member *f, int n);

struct tl_frontier_report {
  int cached;              /* 1: loaded, nothing measured */
  int profiled_signatures; /* latency table entries measured now */
  int evaluated;           /* subnet evaluations on calibration data */
  double load_ms;          /* looking the frontier up (and loading it) */
  double search_s;         /* profiling and searching; 0 when cached */
  int complete;            /* 0: the search's time budget cut it short
                              (a cached frontier: 1) */
  /* "" when the cache keeps all that was measured; else why it could not
   * (a full or read-only disk...): what was measured is returned all
   * the same, and is measured again next time. */
  char not_cached[TL_ERROR_MAX];
};

/* The key texts: 16 hex digits of the calibration data's FNV-1a 64, and
 * the canonical text of sn's choices ("w=0.25,0.5,0.75,1 r=14,18,..."). */
void tl_frontier_calib_hash(const struct tl_calib *c, char out[17]);
void tl_frontier_space_text(const struct tl_supernet *sn, char *buf, size_t size);

/* Sets *n to the number of members of the frontier the cache holds for
 * these inputs and search options (0: none, a search is due), without
 * loading it. */
int tl_frontier_cached(const struct tl_supernet *sn, const struct tl_graph *g, struct tl_store *st,
                       int64_t device_id, const struct tl_calib *calib,
                       const struct tl_search_options *search, int *n, struct tl_error *err);

/* Loads or makes the frontier of sn (whose graph is g) for device_id of
 * st on calib (see the file comment).  t, when not NULL, receives the
 * latency table used (loaded and completed) and stays the caller's;
 * profile (may be NULL) is used for what must be profiled.  On success
 * *out holds *n members (free with tl_frontier_free()).  rep may be
 * NULL.  Errors come from reading the store, the engine or the search; a
 * cached entry that cannot be used (statistics missing or not matching
 * the model) is searched again, not an error.  Writing the store is not
 * a reason to lose a search: when the cache cannot keep the latencies
 * profiled or the frontier found, they are returned all the same and
 * rep->not_cached says why. */
int tl_frontier_obtain(const struct tl_supernet *sn, const struct tl_graph *g, struct tl_store *st,
                       int64_t device_id, const struct tl_calib *calib,
                       const struct tl_search_options *search,
                       const struct tl_profile_options *profile, struct tl_op_table *t,
                       struct tl_frontier_member **out, int *n, struct tl_frontier_report *rep,
                       struct tl_error *err);

#endif
