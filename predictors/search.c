/*
 * search.c - the frontier search (see search.h for the steps).
 *
 * Invariant of the result: members sorted by predicted latency, each
 * strictly more accurate (on the calibration data) than every faster one;
 * a subnet that is slower and no more accurate than another is never kept.
 */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cand {
  struct tl_subnet_spec spec;
  double ms;   /* predicted latency */
  double mib;  /* predicted memory */
  double est;  /* estimated accuracy (step 1's additive model) */
  double acc;  /* measured on the subset (step 3), or -1 */
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
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(struct search *s, const char *phase, int done, int total) {
  if (s->o.progress)
    s->o.progress(s->o.ctx, phase, done, total);
}

/* Accuracy of spec after recalibrating on `recalib` images, measured on
 * the last `images` images of the calibration data.  *bn_out (may be
 * NULL) keeps the statistics. */
static int measure(struct search *s, const struct tl_subnet_spec *spec, int64_t recalib,
                   int64_t images, double *acc, struct tl_bn_stats **bn_out,
                   struct tl_error *err) {
  struct tl_bn_stats *bn = NULL;
  int64_t n = s->calib->n;
  if (images <= 0 || images > n)
    images = n;
  int rc = tl_subnet_recalibrate(s->sn, spec, s->calib, recalib, s->o.batch, &bn, err);
  if (rc == 0)
    rc = tl_subnet_accuracy(s->sn, spec, bn, s->calib, n - images, images, s->o.batch, acc, err);
  s->rep.evaluated++;
  if (rc == 0 && bn_out != NULL)
    *bn_out = bn;
  else
    tl_bn_stats_free(bn);
  return rc;
}

/* ------------------------------------------------- step 1: the estimate */

static int width_choices(const struct search *s, int stage) {
  return s->info.width_groups[stage] > 0 ? s->info.n_widths : 1;
}

static int estimate_drops(struct search *s, struct tl_error *err) {
  struct tl_subnet_spec big, spec;
  tl_subnet_largest(s->sn, &big);
  int total = s->info.n_res;
  for (int st = 0; st < s->info.n_stages; st++)
    total += s->info.blocks[st] + width_choices(s, st) - 1;
  int done = 0;
  int rc = measure(s, &big, s->o.recalib_images, s->o.est_images, &s->base, NULL, err);
  progress(s, "estimate", ++done, total);
  for (int r = 0; r + 1 < s->info.n_res && rc == 0; r++) {
    spec = big;
    spec.res = s->info.res[r];
    double a;
    rc = measure(s, &spec, s->o.recalib_images, s->o.est_images, &a, NULL, err);
    s->res_drop[r] = s->base - a;
    progress(s, "estimate", ++done, total);
  }
  for (int st = 0; st < s->info.n_stages && rc == 0; st++) {
    for (int d = 0; d < s->info.blocks[st] && rc == 0; d++) {
      spec = big;
      spec.depth[st] = d;
      double a;
      rc = measure(s, &spec, s->o.recalib_images, s->o.est_images, &a, NULL, err);
      s->depth_drop[st][d] = s->base - a;
      progress(s, "estimate", ++done, total);
    }
    for (int w = 0; w + 1 < width_choices(s, st) && rc == 0; w++) {
      spec = big;
      spec.width[st] = w;
      double a;
      rc = measure(s, &spec, s->o.recalib_images, s->o.est_images, &a, NULL, err);
      s->width_drop[st][w] = s->base - a;
      progress(s, "estimate", ++done, total);
    }
  }
  return rc;
}

static double estimate(const struct search *s, const struct tl_subnet_spec *spec) {
  double a = s->base;
  int nr = s->info.n_res;
  for (int r = 0; r + 1 < nr; r++)
    if (spec->res == s->info.res[r])
      a -= s->res_drop[r];
  for (int st = 0; st < s->info.n_stages; st++) {
    if (spec->depth[st] < s->info.blocks[st])
      a -= s->depth_drop[st][spec->depth[st]];
    if (spec->width[st] + 1 < width_choices(s, st))
      a -= s->width_drop[st][spec->width[st]];
  }
  return a;
}

/* ------------------------------------------- step 2: predict and filter */

/* The i-th subnet of the space in mixed radix: resolution, then per stage
 * depth and width. */
static void nth_spec(const struct search *s, double i, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  double q = i;
  int r = (int)fmod(q, s->info.n_res);
  q = floor(q / s->info.n_res);
  spec->res = s->info.res[r];
  for (int st = 0; st < s->info.n_stages; st++) {
    int nd = s->info.blocks[st] + 1, nw = width_choices(s, st);
    spec->depth[st] = (int)fmod(q, nd);
    q = floor(q / nd);
    int w = (int)fmod(q, nw);
    q = floor(q / nw);
    spec->width[st] = nw == 1 ? s->info.n_widths - 1 : w;
  }
}

static int cmp_cand_ms(const void *a, const void *b) {
  double x = ((const struct cand *)a)->ms, y = ((const struct cand *)b)->ms;
  return (x > y) - (x < y);
}

static int predict_pool(struct search *s, struct cand **out, int *n_out, struct tl_error *err) {
  double space = s->info.space_size;
  int enumerate = space <= s->o.max_enumerate;
  int n = enumerate ? (int)space : s->o.max_enumerate;
  struct cand *c = malloc((size_t)(n + 2) * sizeof *c);
  if (c == NULL)
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  uint64_t seed = s->o.seed ? s->o.seed : 0x5ea7c4ull;
  int m = 0, rc = 0;
  for (int i = 0; i < n + 2 && rc == 0; i++) {
    struct tl_subnet_spec spec;
    if (i == n)
      tl_subnet_largest(s->sn, &spec);
    else if (i == n + 1)
      tl_subnet_smallest(s->sn, &spec);
    else if (enumerate)
      nth_spec(s, i, &spec);
    else
      tl_subnet_random(s->sn, &seed, &spec);
    if (!enumerate || i < n) {
      struct tl_prediction p;
      rc = tl_latency_predict(s->sn, s->t, &spec, &p, err);
      if (rc != 0)
        break;
      c[m] = (struct cand){spec, p.latency_ms, p.mem_mib, estimate(s, &spec), -1};
      m++;
      s->rep.predicted++;
    }
    if (i % 256 == 0)
      progress(s, "predict", i, n);
  }
  progress(s, "predict", n, n);
  if (rc != 0) {
    free(c);
    return rc;
  }
  qsort(c, (size_t)m, sizeof *c, cmp_cand_ms);
  *out = c;
  *n_out = m;
  return 0;
}

/* Keeps want candidates near the estimated front: walking up in latency,
 * those within margin of the best estimate so far; then one per slice of
 * the log-latency range (the best estimate in it), the extremes first. */
static int pick_candidates(const struct cand *c, int n, int want, double margin,
                           struct cand *out) {
  int m = 0;
  double best = -1;
  struct cand *near = malloc((size_t)n * sizeof *near);
  if (near == NULL)
    return -1;
  for (int i = 0; i < n; i++) {
    if (c[i].est >= best - margin)
      near[m++] = c[i];
    if (c[i].est > best)
      best = c[i].est;
  }
  if (m <= want) {
    memcpy(out, near, (size_t)m * sizeof *out);
    free(near);
    return m;
  }
  double lo = log(near[0].ms > 1e-6 ? near[0].ms : 1e-6);
  double hi = log(near[m - 1].ms > 1e-6 ? near[m - 1].ms : 1e-6);
  int k = 0;
  for (int b = 0; b < want; b++) {
    double a0 = lo + (hi - lo) * b / want, a1 = lo + (hi - lo) * (b + 1) / want;
    int pick = -1;
    for (int i = 0; i < m; i++) {
      double x = log(near[i].ms > 1e-6 ? near[i].ms : 1e-6);
      if (x < a0 || (x >= a1 && b + 1 < want))
        continue;
      if (pick < 0 || near[i].est > near[pick].est)
        pick = i;
    }
    if (pick >= 0)
      out[k++] = near[pick];
  }
  free(near);
  return k;
}

/* ------------------------------------------------ step 3: the frontier */

/* Pareto front in (ms, acc) of c[0..n) sorted by ms, into front; returns
 * its size. */
static int pareto(const struct cand *c, int n, struct cand *front) {
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

/* At most k of front[0..m), spread over the log-latency range, the
 * fastest and the most accurate always kept. */
static int thin(struct cand *front, int m, int k) {
  if (m <= k)
    return m;
  struct cand *keep = malloc((size_t)k * sizeof *keep);
  if (keep == NULL)
    return -1;
  double lo = log(front[0].ms), hi = log(front[m - 1].ms);
  int n = 0, last = -1;
  for (int j = 0; j < k; j++) {
    double target = lo + (hi - lo) * j / (k - 1);
    int best = -1;
    for (int i = last + 1; i < m; i++) {
      /* leave room for the slots still to fill */
      if (m - i < k - j)
        break;
      if (best < 0 || fabs(log(front[i].ms) - target) < fabs(log(front[best].ms) - target))
        best = i;
    }
    if (j == k - 1)
      best = m - 1;
    if (best < 0)
      break;
    keep[n++] = front[best];
    last = best;
  }
  memcpy(front, keep, (size_t)n * sizeof *keep);
  free(keep);
  return n;
}

/* ------------------------------------------- step 3b: local refinement */

/* Subnets one step from spec in one dimension (a resolution, or one
 * stage's depth or width, up or down), into out; returns how many. */
static int neighbours(const struct search *s, const struct tl_subnet_spec *spec,
                      struct tl_subnet_spec *out) {
  int n = 0, ri = 0;
  for (int r = 0; r < s->info.n_res; r++)
    if (s->info.res[r] == spec->res)
      ri = r;
  for (int d = -1; d <= 1; d += 2)
    if (ri + d >= 0 && ri + d < s->info.n_res) {
      out[n] = *spec;
      out[n++].res = s->info.res[ri + d];
    }
  for (int st = 0; st < s->info.n_stages; st++)
    for (int d = -1; d <= 1; d += 2) {
      int depth = spec->depth[st] + d, width = spec->width[st] + d;
      if (depth >= 0 && depth <= s->info.blocks[st]) {
        out[n] = *spec;
        out[n++].depth[st] = depth;
      }
      if (width_choices(s, st) > 1 && width >= 0 && width < s->info.n_widths) {
        out[n] = *spec;
        out[n++].width[st] = width;
      }
    }
  return n;
}

static int cmp_cand_est_desc(const void *a, const void *b) {
  double x = ((const struct cand *)a)->est, y = ((const struct cand *)b)->est;
  return (x < y) - (x > y);
}

/* The estimate steers step 3 but misses interactions between dimensions
 * (a lower resolution costs less accuracy in a shallower subnet, ...).
 * One round: the unmeasured neighbours of the measured front, within its
 * latency range, best estimates first, up to budget of them measured and
 * added to pick (which has room for them). */
static int refine(struct search *s, struct cand *pick, int *n_pick, int budget,
                  struct cand *front, struct tl_error *err) {
  qsort(pick, (size_t)*n_pick, sizeof *pick, cmp_cand_ms);
  int nf = pareto(pick, *n_pick, front);
  if (nf == 0)
    return 0;
  double lo = front[0].ms, hi = front[nf - 1].ms;
  int cap = nf * (2 + 4 * s->info.n_stages);
  struct cand *next = malloc((size_t)cap * sizeof *next);
  struct tl_subnet_spec *nb = malloc((size_t)(2 + 4 * s->info.n_stages) * sizeof *nb);
  if (next == NULL || nb == NULL) {
    free(next);
    free(nb);
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  }
  int n = 0, rc = 0;
  for (int i = 0; i < nf && rc == 0; i++) {
    int k = neighbours(s, &front[i].spec, nb);
    for (int j = 0; j < k && rc == 0; j++) {
      uint64_t key = tl_subnet_key(s->sn, &nb[j]);
      int known = 0;
      for (int q = 0; q < *n_pick && !known; q++)
        known = tl_subnet_key(s->sn, &pick[q].spec) == key;
      for (int q = 0; q < n && !known; q++)
        known = tl_subnet_key(s->sn, &next[q].spec) == key;
      if (known)
        continue;
      struct tl_prediction p;
      rc = tl_latency_predict(s->sn, s->t, &nb[j], &p, err);
      s->rep.predicted++;
      if (rc == 0 && p.latency_ms >= lo && p.latency_ms <= hi)
        next[n++] = (struct cand){nb[j], p.latency_ms, p.mem_mib, estimate(s, &nb[j]), -1};
    }
  }
  qsort(next, (size_t)n, sizeof *next, cmp_cand_est_desc);
  for (int i = 0; i < n && i < budget && rc == 0; i++) {
    rc = measure(s, &next[i].spec, s->o.recalib_images, s->o.est_images, &next[i].acc, NULL,
                 err);
    pick[(*n_pick)++] = next[i];
    progress(s, "refine", i + 1, n < budget ? n : budget);
  }
  free(next);
  free(nb);
  return rc;
}

void tl_frontier_free(struct tl_frontier_member *f, int n) {
  if (f == NULL)
    return;
  for (int i = 0; i < n; i++)
    tl_bn_stats_free(f[i].bn);
  free(f);
}

int tl_search(const struct tl_supernet *sn, const struct tl_op_table *t,
              const struct tl_calib *calib, const struct tl_search_options *opts,
              struct tl_frontier_member **out, int *n_out, struct tl_search_report *rep,
              struct tl_error *err) {
  struct search *s = calloc(1, sizeof *s);
  if (s == NULL)
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  double t0 = now_s();
  s->sn = sn;
  s->t = t;
  s->calib = calib;
  s->o = opts ? *opts : (struct tl_search_options){0};
  if (s->o.k <= 0)
    s->o.k = 16;
  if (s->o.est_images <= 0)
    s->o.est_images = 2000;
  if (s->o.recalib_images <= 0)
    s->o.recalib_images = 500;
  if (s->o.final_recalib <= 0)
    s->o.final_recalib = 2000;
  if (s->o.candidates <= 0)
    s->o.candidates = 4 * s->o.k;
  if (s->o.max_enumerate <= 0)
    s->o.max_enumerate = 20000;
  if (s->o.batch <= 0)
    s->o.batch = 100;
  tl_supernet_info(sn, &s->info);
  s->rep.space_size = s->info.space_size;

  struct cand *pool = NULL, *pick = NULL, *front = NULL;
  struct tl_frontier_member *f = NULL;
  int n_pool = 0, n_pick = 0, n_front = 0;
  int rc = estimate_drops(s, err);
  if (rc == 0)
    rc = predict_pool(s, &pool, &n_pool, err);
  if (rc != 0)
    goto fail;
  const int rounds = 2, budget = s->o.k; /* step 3b */
  const int room = s->o.candidates + rounds * budget;
  pick = malloc((size_t)room * sizeof *pick);
  front = malloc((size_t)room * sizeof *front);
  if (pick == NULL || front == NULL)
    goto nomem;
  n_pick = pick_candidates(pool, n_pool, s->o.candidates, 0.02, pick);
  if (n_pick < 0)
    goto nomem;
  for (int i = 0; i < n_pick && rc == 0; i++) {
    rc = measure(s, &pick[i].spec, s->o.recalib_images, s->o.est_images, &pick[i].acc, NULL, err);
    progress(s, "measure", i + 1, n_pick);
  }
  for (int r = 0; r < rounds && rc == 0; r++)
    rc = refine(s, pick, &n_pick, budget, front, err);
  if (rc != 0)
    goto fail;
  qsort(pick, (size_t)n_pick, sizeof *pick, cmp_cand_ms);
  n_front = thin(front, pareto(pick, n_pick, front), s->o.k);
  if (n_front < 0)
    goto nomem;

  /* Step 4: the frontier on all the calibration data.  Recalibrated on
   * more images, accuracies can reorder: keep it a strict front. */
  f = calloc((size_t)n_front, sizeof *f);
  if (f == NULL)
    goto nomem;
  int n = 0;
  double best = -1;
  for (int i = 0; i < n_front && rc == 0; i++) {
    struct tl_frontier_member m = {front[i].spec, front[i].ms, front[i].mib, 0, NULL};
    rc = measure(s, &m.spec, s->o.final_recalib, calib->n, &m.accuracy, &m.bn, err);
    progress(s, "frontier", i + 1, n_front);
    if (rc != 0)
      break;
    if (m.accuracy <= best) {
      tl_bn_stats_free(m.bn);
      continue;
    }
    best = m.accuracy;
    f[n++] = m;
  }
  if (rc != 0) {
    tl_frontier_free(f, n);
    goto fail;
  }
  s->rep.seconds = now_s() - t0;
  if (rep)
    *rep = s->rep;
  *out = f;
  *n_out = n;
  free(pool);
  free(pick);
  free(front);
  free(s);
  return 0;

nomem:
  rc = tl_fail(err, TL_ENOMEM, "search: out of memory");
fail:
  free(pool);
  free(pick);
  free(front);
  free(s);
  return rc;
}
