/*
 * search_internal.h - what the files of the search share and nothing else
 * sees: its candidates, its state, and the measured front (search_front.c)
 * that the steps of search.c grow.  Only search.c and search_front.c
 * include it.  Names with two underscores (tl__) are internal to the
 * library.
 */
#ifndef TL_SEARCH_INTERNAL_H
#define TL_SEARCH_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "calib.h"
#include "error.h"
#include "frontier.h"
#include "latency.h"
#include "search.h"
#include "supernet.h"

struct cand {
  struct tl_subnet_spec spec;
  uint64_t key;
  double ms;              /* predicted latency */
  double mib;             /* predicted memory */
  int ri;                 /* index of its resolution in info.res */
  double drop;            /* sum of its depth and width drops measured in step 1 */
  double est;             /* estimated accuracy */
  double acc;             /* measured on the subset (or, for finalists, on all), or -1 */
  int fit;                /* its measurement may be fitted (see fit_estimate) */
  struct tl_bn_stats *bn; /* statistics of its last measurement: owned by
                           * s->seen for the subset's, by fin for all */
};

struct search {
  const struct tl_supernet *sn;
  const struct tl_op_table *t;
  const struct tl_calib *calib;
  struct tl_search_options o;
  struct tl_supernet_info info;
  struct tl_search_report rep;
  /* step 1: drops[dimension][choice] of accuracy from the largest */
  double base;
  double res_drop[TL_SN_MAX_CHOICES];
  double depth_drop[TL_SN_MAX_STAGES][TL_SN_MAX_CHOICES];
  double width_drop[TL_SN_MAX_STAGES][TL_SN_MAX_CHOICES];
  /* the estimate at resolution info.res[r]: fit_a[r] - fit_b[r] * drop */
  double fit_a[TL_SN_MAX_CHOICES];
  double fit_b[TL_SN_MAX_CHOICES];
  /* every subnet measured on the subset, in the order measured */
  struct cand *seen;
  int n_seen, cap_seen;
  /* time: the budget's end (tl_now_s(); 0: none), and whether it came */
  double deadline;
  atomic_int timed_out;
  int planned;         /* evaluations the whole search expects, for progress */
  double best_partial; /* area under the last partial frontier given */
};

/* qsort's order of candidates by predicted latency. */
int tl__search_cmp_cand_ms(const void *a, const void *b);

/* Pareto front in (ms, acc) of c[0..n) sorted by ms, into front; returns
 * its size. */
int tl__search_pareto(const struct cand *c, int n, struct cand *front);

/* At most k of front[0..m) (sorted by ms), spread over the log-latency
 * range (see search_front.c).  Returns the count, or -1 when out of
 * memory. */
int tl__search_thin(struct cand *front, int m, int k);

/* The measured front of s->seen (sorted by ms) into front; returns its
 * size, or -1 when out of memory. */
int tl__search_seen_front(struct search *s, struct cand *front);

/* The measured front of s->seen cut to k, as members with copies of
 * their statistics (accuracies on the subset).  *key gets a hash of the
 * members' subnets. */
int tl__search_front_members(struct search *s, struct tl_frontier_member **out, int *n_out,
                             uint64_t *key, struct tl_error *err);

/* Gives opts->partial the measured front when it changed since the last
 * one given (more measurements only ever improve it). */
int tl__search_give_partial(struct search *s, uint64_t *last, struct tl_error *err);

#endif
