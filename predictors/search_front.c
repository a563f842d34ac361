/*
 * search_front.c - the measured front of a search: the Pareto front of
 * what was measured, thinned to k over the latency range, and the
 * frontiers given before the last (see search_internal.h).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "frontier.h"
#include "hash.h"
#include "search_internal.h"

int tl__search_cmp_cand_ms(const void *a, const void *b) {
  double x = ((const struct cand *)a)->ms, y = ((const struct cand *)b)->ms;
  return (x > y) - (x < y);
}

/* -------------------------------------------------- the measured front */

/* Pareto front in (ms, acc) of c[0..n) sorted by ms, into front; returns
 * its size. */
int tl__search_pareto(const struct cand *c, int n, struct cand *front) {
  int m = 0;
  double best = -1;
  for (int i = 0; i < n; i++) {
    if (c[i].acc <= best)
      continue;
    /* an equally fast one that is more accurate replaces the last */
    if (m > 0 && c[i].ms <= front[m - 1].ms)
      m--;
    front[m++] = c[i];
    best = c[i].acc;
  }
  return m;
}

/* At most k of front[0..m) (sorted by ms), spread over the log-latency
 * range: the fastest and the most accurate always, then one at a time the
 * one nearest the middle of the widest gap between those kept that has
 * any inside, so that no stretch of the range is left bare while others
 * are crowded.  Returns the count, or -1 when out of memory. */
int tl__search_thin(struct cand *front, int m, int k) {
  if (m <= k)
    return m;
  char *keep = calloc((size_t)m, 1);
  if (keep == NULL)
    return -1;
  keep[m - 1] = 1;
  int n = 1;
  if (k >= 2)
    keep[0] = 1, n = 2;
  while (n < k) {
    int pick = -1;
    double widest = -1;
    for (int a = 0, b = 1; b < m; b++) {
      if (!keep[b])
        continue;
      double lo = log(front[a].ms), hi = log(front[b].ms);
      if (b - a > 1 && hi - lo > widest) {
        widest = hi - lo;
        pick = a + 1;
        for (int i = a + 2; i < b; i++)
          if (fabs(log(front[i].ms) - (lo + hi) / 2) < fabs(log(front[pick].ms) - (lo + hi) / 2))
            pick = i;
      }
      a = b;
    }
    if (pick < 0)
      break;
    keep[pick] = 1;
    n++;
  }
  n = 0;
  for (int i = 0; i < m; i++)
    if (keep[i])
      front[n++] = front[i];
  free(keep);
  return n;
}

/* The measured front of s->seen (sorted by ms) into front; returns its
 * size, or -1 when out of memory. */
int tl__search_seen_front(struct search *s, struct cand *front) {
  struct cand *c = malloc((size_t)(s->n_seen > 0 ? s->n_seen : 1) * sizeof *c);
  if (c == NULL)
    return -1;
  memcpy(c, s->seen, (size_t)s->n_seen * sizeof *c);
  qsort(c, (size_t)s->n_seen, sizeof *c, tl__search_cmp_cand_ms);
  int n = tl__search_pareto(c, s->n_seen, front);
  free(c);
  return n;
}

/* ------------------------------------------ frontiers before the last */

/* A copy of statistics (NULL for NULL). */
static int stats_dup(const struct tl_supernet *sn, const struct tl_bn_stats *src,
                     struct tl_bn_stats **out, struct tl_error *err) {
  *out = NULL;
  if (src == NULL)
    return 0;
  void *blob = NULL;
  size_t len = 0;
  int rc = tl_bn_stats_serialize(sn, src, &blob, &len, err);
  if (rc == 0)
    rc = tl_bn_stats_deserialize(sn, blob, len, out, err);
  free(blob);
  return rc;
}

/* The measured front of s->seen cut to k, as members with copies of
 * their statistics (accuracies on the subset).  *key gets a hash of the
 * members' subnets. */
int tl__search_front_members(struct search *s, struct tl_frontier_member **out, int *n_out,
                             uint64_t *key, struct tl_error *err) {
  struct cand *front = malloc((size_t)(s->n_seen > 0 ? s->n_seen : 1) * sizeof *front);
  int n = front != NULL ? tl__search_seen_front(s, front) : -1;
  if (n >= 0)
    n = tl__search_thin(front, n, s->o.k);
  struct tl_frontier_member *f = n > 0 ? calloc((size_t)n, sizeof *f) : NULL;
  if (n < 0 || (n > 0 && f == NULL)) {
    free(front);
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  }
  uint64_t h = TL_HASH_INIT;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    f[i] = (struct tl_frontier_member){.spec = front[i].spec,
                                       .predicted_ms = front[i].ms,
                                       .predicted_mib = front[i].mib,
                                       .accuracy = front[i].acc};
    rc = stats_dup(s->sn, front[i].bn, &f[i].bn, err);
    h = tl_hash_bytes(h, &front[i].key, sizeof front[i].key);
  }
  free(front);
  if (rc != 0) {
    tl_frontier_free(f, n);
    return rc;
  }
  *out = f;
  *n_out = n;
  *key = h;
  return 0;
}

/* Gives opts->partial the measured front when it changed since the last
 * one given (more measurements only ever improve it). */
int tl__search_give_partial(struct search *s, uint64_t *last, struct tl_error *err) {
  if (s->o.partial == NULL || atomic_load(&s->timed_out) ||
      (s->o.stop != NULL && atomic_load(s->o.stop) != 0))
    return 0; /* (a stopped search ends at its next evaluation) */
  struct tl_frontier_member *f = NULL;
  int n = 0;
  uint64_t key = 0;
  int rc = tl__search_front_members(s, &f, &n, &key, err);
  if (rc != 0 || n == 0 || key == *last) {
    tl_frontier_free(f, n);
    return rc;
  }
  *last = key;
  s->rep.partials++;
  s->o.partial(s->o.ctx, f, n);
  return 0;
}
