/*
 * search.c - the frontier search (see search.h for the steps).
 *
 * Invariant of the result: members sorted by predicted latency, each
 * strictly more accurate (on the calibration data) than every faster one;
 * a subnet that is slower and no more accurate than another is never kept.
 *
 * Every subnet measured on the subset is kept in one list (`seen`): it is
 * what the estimate is fitted to, what refinement grows from, and where
 * the finalists come from; nothing is measured twice on the subset.
 *
 * Each step decides what to measure before measuring any of it, so the
 * measurements of a step are independent and run on o.threads threads at
 * once (eval_all); what a step measures never depends on how they were
 * spread, so the frontier is the same for any number of threads.
 *
 * The measured front (Pareto front, thinning to k, the frontiers given
 * before the last) is in search_front.c; the two share the candidates
 * and the search's state through search_internal.h.
 */
#include "search.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "frontier.h"
#include "search_internal.h"

/* Progress of a phase; `evaluated` counts this phase's evaluations done
 * so far beyond s->rep.evaluated. */
static void progress(struct search *s, const char *phase, int done, int total, int evaluated) {
  if (s->o.progress == NULL)
    return;
  double overall = s->planned > 0 ? (double)(s->rep.evaluated + evaluated) / s->planned : 0;
  s->o.progress(s->o.ctx, phase, done, total, overall < 1 ? overall : 1);
}

/* Accuracy of spec after recalibrating on `recalib` images, measured on
 * the last `images` images of the calibration data.  *bn_out (may be
 * NULL) keeps the statistics. */
static int measure(struct search *s, const struct tl_subnet_spec *spec, int64_t recalib,
                   int64_t images, double *acc, struct tl_bn_stats **bn_out, struct tl_error *err) {
  if (s->o.stop != NULL && atomic_load(s->o.stop) != 0)
    return tl_fail(err, TL_ECANCELED, "the search was stopped");
  struct tl_bn_stats *bn = NULL;
  int64_t n = s->calib->n;
  if (images <= 0 || images > n)
    images = n;
  int rc = tl_subnet_recalibrate(s->sn, spec, s->calib, recalib, s->o.batch, s->o.stop, &bn, err);
  if (rc == 0 && s->o.stop != NULL && atomic_load(s->o.stop) != 0)
    rc = tl_fail(err, TL_ECANCELED, "the search was stopped");
  if (rc == 0)
    rc = tl_subnet_accuracy(s->sn, spec, bn, s->calib, n - images, images, s->o.batch, s->o.stop,
                            acc, err);
  if (rc == 0 && bn_out != NULL)
    *bn_out = bn;
  else
    tl_bn_stats_free(bn);
  return rc;
}

/* One evaluation of a step: spec recalibrated on `recalib` images and
 * measured on the last `images` (as measure()). */
struct eval {
  struct tl_subnet_spec spec;
  int64_t recalib, images;
  int keep_bn;            /* keep the statistics in bn */
  double acc;             /* out */
  struct tl_bn_stats *bn; /* out, when keep_bn */
  int skipped;            /* out: the time budget came first */
  int rc;
  struct tl_error err;
};

#define MAX_EVAL_THREADS 64

struct eval_run {
  struct search *s;
  struct eval *ev;
  int n;
  atomic_int next; /* the next evaluation to claim */
  atomic_int done;
};

/* Claims and runs evaluations until none is left; returns how many this
 * thread ran.  With report, this thread tells progress under phase. */
static int eval_claim(struct eval_run *r, const char *phase, int report) {
  int ran = 0;
  for (int i; (i = atomic_fetch_add(&r->next, 1)) < r->n; ran++) {
    struct eval *e = &r->ev[i];
    if (r->s->deadline > 0 && tl_now_s() >= r->s->deadline) {
      atomic_store(&r->s->timed_out, 1);
      e->skipped = 1;
    } else {
      e->rc = measure(r->s, &e->spec, e->recalib, e->images, &e->acc, e->keep_bn ? &e->bn : NULL,
                      &e->err);
    }
    int done = atomic_fetch_add(&r->done, 1) + 1;
    if (report)
      progress(r->s, phase, done, r->n, done);
  }
  return ran;
}

static void *eval_thread(void *arg) {
  eval_claim(arg, NULL, 0);
  return NULL;
}

/* Runs ev[0..n) on up to s->o.threads threads, this one included (fewer
 * when a thread cannot be started: the others take its share); past the
 * deadline, the rest are skipped.  Returns the first failure in ev's
 * order; the statistics of evaluations that succeeded stay in ev for the
 * caller to free. */
static int eval_all(struct search *s, struct eval *ev, int n, const char *phase,
                    struct tl_error *err) {
  struct eval_run r = {.s = s, .ev = ev, .n = n};
  atomic_init(&r.next, 0);
  atomic_init(&r.done, 0);
  pthread_t th[MAX_EVAL_THREADS];
  int extra = s->o.threads - 1;
  extra = extra > n - 1 ? n - 1 : extra;
  extra = extra > MAX_EVAL_THREADS ? MAX_EVAL_THREADS : extra;
  int started = 0;
  while (started < extra && pthread_create(&th[started], NULL, eval_thread, &r) == 0)
    started++;
  eval_claim(&r, phase, 1);
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  int ran = 0;
  for (int i = 0; i < n; i++)
    ran += !ev[i].skipped;
  if (n > 0)
    progress(s, phase, n, n, ran);
  s->rep.evaluated += ran;
  for (int i = 0; i < n; i++) {
    if (ev[i].rc != 0) {
      *err = ev[i].err;
      return ev[i].rc;
    }
  }
  return 0;
}

/* c's evaluation on the subset, into e. */
static void subset_eval(const struct search *s, const struct cand *c, struct eval *e) {
  *e = (struct eval){
      .spec = c->spec, .recalib = s->o.recalib_images, .images = s->o.est_images, .keep_bn = 1};
}

/* ------------------------------------------------- step 1: the estimate */

static int width_choices(const struct search *s, int stage) {
  return s->info.width_groups[stage] > 0 ? s->info.n_widths : 1;
}

static int res_index(const struct search *s, int res) {
  for (int r = 0; r < s->info.n_res; r++)
    if (s->info.res[r] == res)
      return r;
  return s->info.n_res - 1;
}

/* What spec's depths and widths cost the largest subnet: the sum of the
 * one-at-a-time drops (AutoTailor's estimate, without the resolution). */
static double arch_drop(const struct search *s, const struct tl_subnet_spec *spec) {
  double d = 0;
  for (int st = 0; st < s->info.n_stages; st++) {
    if (spec->depth[st] < s->info.blocks[st])
      d += s->depth_drop[st][spec->depth[st]];
    if (spec->width[st] + 1 < width_choices(s, st))
      d += s->width_drop[st][spec->width[st]];
  }
  return d;
}

static double estimate(const struct search *s, const struct cand *c) {
  return s->fit_a[c->ri] - s->fit_b[c->ri] * c->drop;
}

/* A candidate for spec, with its predicted latency and its estimate. */
static int make_cand(struct search *s, const struct tl_subnet_spec *spec, struct cand *c,
                     struct tl_error *err) {
  struct tl_prediction p;
  int rc = tl_latency_predict(s->sn, s->t, spec, &p, err);
  s->rep.predicted++;
  if (rc != 0)
    return rc;
  *c = (struct cand){.spec = *spec,
                     .key = tl_subnet_key(s->sn, spec),
                     .ms = p.latency_ms,
                     .mib = p.mem_mib,
                     .ri = res_index(s, spec->res),
                     .drop = arch_drop(s, spec),
                     .acc = -1,
                     .fit = 1};
  c->est = estimate(s, c);
  return 0;
}

static int is_seen(const struct search *s, uint64_t key) {
  for (int i = 0; i < s->n_seen; i++)
    if (s->seen[i].key == key)
      return 1;
  return 0;
}

/* Measures on the subset every candidate of c[0..n) not yet seen (once
 * each), under phase, and adds them to s->seen in c's order (tl_search
 * sized it for every measurement it makes). */
static int measure_all(struct search *s, const struct cand *c, int n, const char *phase,
                       struct tl_error *err) {
  struct eval *ev = malloc((size_t)(n > 0 ? n : 1) * sizeof *ev);
  int *from = malloc((size_t)(n > 0 ? n : 1) * sizeof *from);
  if (ev == NULL || from == NULL) {
    free(ev);
    free(from);
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    int dup = is_seen(s, c[i].key);
    for (int j = 0; j < m && !dup; j++)
      dup = c[from[j]].key == c[i].key;
    if (dup)
      continue;
    subset_eval(s, &c[i], &ev[m]);
    from[m++] = i;
  }
  int rc = eval_all(s, ev, m, phase, err);
  for (int j = 0; j < m; j++) {
    if (rc != 0 || ev[j].skipped) {
      tl_bn_stats_free(ev[j].bn);
      continue;
    }
    assert(s->n_seen < s->cap_seen);
    s->seen[s->n_seen] = c[from[j]];
    s->seen[s->n_seen].acc = ev[j].acc;
    s->seen[s->n_seen++].bn = ev[j].bn;
  }
  free(ev);
  free(from);
  return rc;
}

/* Step 1: the largest subnet, it at each lower resolution, and it with
 * each stage's depth or width shrunk to each choice, all on the subset. */
static int estimate_drops(struct search *s, struct tl_error *err) {
  struct tl_subnet_spec big;
  tl_subnet_largest(s->sn, &big);
  int total = s->info.n_res;
  for (int st = 0; st < s->info.n_stages; st++)
    total += s->info.blocks[st] + width_choices(s, st) - 1;
  struct cand *probe = malloc((size_t)total * sizeof *probe);
  if (probe == NULL)
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  int n = 0, rc = 0;
  for (int r = s->info.n_res - 1; r >= 0 && rc == 0; r--) { /* the largest first */
    struct tl_subnet_spec spec = big;
    spec.res = s->info.res[r];
    rc = make_cand(s, &spec, &probe[n++], err);
  }
  const int n_whole = n; /* the largest at each resolution */
  for (int st = 0; st < s->info.n_stages && rc == 0; st++) {
    for (int d = 0; d < s->info.blocks[st] && rc == 0; d++) {
      struct tl_subnet_spec spec = big;
      spec.depth[st] = d;
      rc = make_cand(s, &spec, &probe[n++], err);
    }
    for (int w = 0; w + 1 < width_choices(s, st) && rc == 0; w++) {
      struct tl_subnet_spec spec = big;
      spec.width[st] = w;
      rc = make_cand(s, &spec, &probe[n++], err);
    }
  }
  const int first = s->n_seen;
  if (rc == 0)
    rc = measure_all(s, probe, n, "estimate", err);
  free(probe);
  if (rc != 0)
    return rc;
  if (s->n_seen - first < n)
    return 0; /* the time budget came first: no estimate, the probes are all there is */
  /* The probes are all distinct, so seen[first + i] is probe i. */
  const struct cand *p = s->seen + first;
  s->base = p[0].acc;
  int i = 1;
  for (int r = s->info.n_res - 2; r >= 0; r--)
    s->res_drop[r] = s->base - p[i++].acc;
  for (int st = 0; st < s->info.n_stages; st++) {
    for (int d = 0; d < s->info.blocks[st]; d++)
      s->depth_drop[st][d] = s->base - p[i++].acc;
    for (int w = 0; w + 1 < width_choices(s, st); w++)
      s->width_drop[st][w] = s->base - p[i++].acc;
  }
  /* Now that the drops are known, the probes' own.  A probe's measurement
   * defines its own drop, so only those whose drop is zero by definition
   * (the largest at each resolution) are fitted to. */
  for (int k = first; k < s->n_seen; k++) {
    struct cand *c = &s->seen[k];
    c->drop = arch_drop(s, &c->spec);
    c->fit = k - first < n_whole;
  }
  return 0;
}

/* Drops measured on the largest subnet overstate what the same depths and
 * widths cost at a lower resolution (a subnet that already sees less loses
 * less by shrinking), and drops do not quite add up.  So the estimate at
 * each resolution is a line in the summed drop, fitted by least squares
 * to the subnets of that resolution measured so far; with fewer than two
 * distinct drops it is the plain sum (slope 1) through their mean. */
static void fit_estimate(struct search *s) {
  for (int r = 0; r < s->info.n_res; r++) {
    double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < s->n_seen; i++) {
      const struct cand *c = &s->seen[i];
      if (!c->fit || c->ri != r)
        continue;
      n++;
      sx += c->drop;
      sy += c->acc;
      sxx += c->drop * c->drop;
      sxy += c->drop * c->acc;
    }
    double b = 1, a;
    if (n == 0) { /* not measured: the plain additive estimate */
      s->fit_a[r] = s->base - (r + 1 < s->info.n_res ? s->res_drop[r] : 0);
      s->fit_b[r] = 1;
      continue;
    }
    double vxx = sxx / n - (sx / n) * (sx / n), vxy = sxy / n - (sx / n) * (sy / n);
    if (n >= 2 && vxx > 1e-8) {
      b = -vxy / vxx;
      /* noise can tilt a line through a few points: keep it sane */
      b = b < 0 ? 0 : b > 2 ? 2 : b;
    }
    a = sy / n + b * sx / n;
    s->fit_a[r] = a;
    s->fit_b[r] = b;
  }
  for (int i = 0; i < s->n_seen; i++)
    s->seen[i].est = estimate(s, &s->seen[i]);
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
      rc = make_cand(s, &spec, &c[m], err);
      if (rc != 0)
        break;
      m++;
    }
    if (i % 256 == 0) {
      progress(s, "predict", i, n, 0);
      if (s->o.stop != NULL && atomic_load(s->o.stop) != 0)
        rc = tl_fail(err, TL_ECANCELED, "the search was stopped");
    }
  }
  progress(s, "predict", n, n, 0);
  if (rc != 0) {
    free(c);
    return rc;
  }
  qsort(c, (size_t)m, sizeof *c, tl__search_cmp_cand_ms);
  *out = c;
  *n_out = m;
  return 0;
}

/* Up to want unmeasured candidates near the estimated front of c[0..n)
 * (sorted by ms), or of its subnets at resolution index only_ri when that
 * is >= 0: walking up in latency, those within margin of the best
 * estimate so far; then one per slice of the log-latency range (the best
 * estimate in it).  Returns how many, or -1 when out of memory. */
static int pick_candidates(const struct search *s, const struct cand *c, int n, int want,
                           double margin, int only_ri, struct cand *out) {
  int m = 0;
  double best = -1;
  struct cand *near = malloc((size_t)(n > 0 ? n : 1) * sizeof *near);
  if (near == NULL)
    return -1;
  for (int i = 0; i < n; i++) {
    if (only_ri >= 0 && c[i].ri != only_ri)
      continue;
    if (c[i].est >= best - margin && !is_seen(s, c[i].key))
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

/* -------------------------------------------- step 3: local refinement */

/* Subnets one step from spec in one dimension (a resolution, or one
 * stage's depth or width, up or down), into out; returns how many. */
static int neighbours(const struct search *s, const struct tl_subnet_spec *spec,
                      struct tl_subnet_spec *out) {
  int n = 0, ri = res_index(s, spec->res);
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

/* Even fitted, the estimate misses how particular dimensions interact.
 * One round: the unmeasured neighbours of the measured front, within its
 * latency range, best estimates first, up to budget of them measured. */
static int refine(struct search *s, int budget, struct tl_error *err) {
  struct cand *front = malloc((size_t)s->n_seen * sizeof *front);
  int nb_max = 2 + 4 * s->info.n_stages;
  struct tl_subnet_spec *nb = malloc((size_t)nb_max * sizeof *nb);
  int nf = front && nb ? tl__search_seen_front(s, front) : -1;
  struct cand *next = nf > 0 ? malloc((size_t)nf * (size_t)nb_max * sizeof *next) : NULL;
  if (nf < 0 || (nf > 0 && next == NULL)) {
    free(front);
    free(nb);
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  }
  int n = 0, rc = 0;
  double lo = nf ? front[0].ms : 0, hi = nf ? front[nf - 1].ms : 0;
  for (int i = 0; i < nf && rc == 0; i++) {
    int k = neighbours(s, &front[i].spec, nb);
    for (int j = 0; j < k && rc == 0; j++) {
      struct cand c;
      rc = make_cand(s, &nb[j], &c, err);
      if (rc != 0 || c.ms < lo || c.ms > hi || is_seen(s, c.key))
        continue;
      int dup = 0;
      for (int q = 0; q < n && !dup; q++)
        dup = next[q].key == c.key;
      if (!dup)
        next[n++] = c;
    }
  }
  qsort(next, (size_t)n, sizeof *next, cmp_cand_est_desc);
  if (rc == 0)
    rc = measure_all(s, next, n < budget ? n : budget, "refine", err);
  free(next);
  free(front);
  free(nb);
  return rc;
}

/* ------------------------------------------------ step 4: the finalists */

/* Up to want subnets of s->seen worth measuring on all the data, sorted by
 * ms: the measured front cut to k as the frontier would be; then, while
 * there is room, one more per interval between consecutive ones (the
 * closest below the front in it).  On a subset, subnets within about half
 * a point of each other cannot be told apart, so the one that looks best
 * at a latency is not always the best there. */
static int pick_finalists(struct search *s, int k, int want, double margin, struct cand *out) {
  int nf = tl__search_seen_front(s, out);
  if (nf < 0)
    return -1;
  nf = tl__search_thin(out, nf, k < want ? k : want);
  struct cand *c = nf >= 0 ? malloc((size_t)s->n_seen * sizeof *c) : NULL;
  int *alt = nf >= 0 ? malloc((size_t)(nf > 0 ? nf : 1) * sizeof *alt) : NULL;
  if (c == NULL || alt == NULL) {
    free(c);
    free(alt);
    return -1;
  }
  memcpy(c, s->seen, (size_t)s->n_seen * sizeof *c);
  qsort(c, (size_t)s->n_seen, sizeof *c, tl__search_cmp_cand_ms);
  /* c[i].est becomes its gap to the most accurate at its latency or
   * below; alt[j] the one with the smallest gap in (out[j-1], out[j]] */
  for (int j = 0; j < nf; j++)
    alt[j] = -1;
  double best = -1;
  for (int i = 0, j = 0; i < s->n_seen; i++) {
    best = c[i].acc > best ? c[i].acc : best;
    c[i].est = best - c[i].acc;
    while (j < nf && c[i].ms > out[j].ms)
      j++;
    int in = 0;
    for (int q = 0; q < nf && !in; q++)
      in = out[q].key == c[i].key;
    if (j < nf && !in && c[i].est <= margin && (alt[j] < 0 || c[i].est < c[alt[j]].est))
      alt[j] = i;
  }
  int m = nf;
  while (m < want) { /* the smallest gaps first */
    int pick = -1;
    for (int j = 0; j < nf; j++)
      if (alt[j] >= 0 && (pick < 0 || c[alt[j]].est < c[alt[pick]].est))
        pick = j;
    if (pick < 0)
      break;
    out[m++] = c[alt[pick]];
    alt[pick] = -1;
  }
  free(c);
  free(alt);
  qsort(out, (size_t)m, sizeof *out, tl__search_cmp_cand_ms);
  return m;
}

int tl_search(const struct tl_supernet *sn, const struct tl_op_table *t,
              const struct tl_calib *calib, const struct tl_search_options *opts,
              struct tl_frontier_member **out, int *n_out, struct tl_search_report *rep,
              struct tl_error *err) {
  struct search *s = calloc(1, sizeof *s);
  if (s == NULL)
    return tl_fail(err, TL_ENOMEM, "search: out of memory");
  double t0 = tl_now_s();
  s->sn = sn;
  s->t = t;
  s->calib = calib;
  /* -- labels, options, and room for what is measured -- */
  /* Without labels, the largest subnet's answers are the labels, here
   * for this search only (the caller's data stays as it was). */
  struct tl_calib agree = *calib;
  agree.labels = NULL;
  if (calib->agreement && calib->labels == NULL) {
    int rc = tl_calib_agreement_labels(sn, &agree, opts && opts->batch > 0 ? opts->batch : 100,
                                       opts ? opts->stop : NULL, err);
    if (rc != 0) {
      free(s);
      return rc;
    }
    s->calib = &agree;
  }
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
  if (s->o.finalists <= 0)
    s->o.finalists = s->o.k + s->o.k / 2;
  if (s->o.max_enumerate <= 0)
    s->o.max_enumerate = 20000;
  if (s->o.batch <= 0)
    s->o.batch = 100;
  if (s->o.threads <= 0)
    s->o.threads = 1;
  tl_supernet_info(sn, &s->info);
  s->rep.space_size = s->info.space_size;

  const int rounds = 2, budget = (s->o.k + 1) / 2; /* step 3 */
  /* subnets per resolution to fit the estimate to, out of the candidates */
  int per_res = s->o.candidates / s->info.n_res;
  per_res = per_res < 1 ? 1 : per_res > 3 ? 3 : per_res;
  int probes = s->info.n_res;
  for (int st = 0; st < s->info.n_stages; st++)
    probes += s->info.blocks[st] + width_choices(s, st) - 1;
  s->cap_seen = probes + s->o.candidates + per_res * s->info.n_res + rounds * budget;
  s->seen = malloc((size_t)s->cap_seen * sizeof *s->seen);
  s->planned = s->cap_seen + s->o.finalists;
  if (s->o.time_budget_s > 0)
    s->deadline = t0 + s->o.time_budget_s;
  s->rep.complete = 1;
  s->rep.images = calib->n;
  struct cand *pool = NULL, *pick = NULL, *fin = NULL;
  struct tl_frontier_member *f = NULL;
  int n_pool = 0, n_pick = 0, n_fin = 0, n_front = 0, rc = 0;
  uint64_t last_partial = 0;
  if (s->seen == NULL)
    goto nomem;
  /* -- step 1: the estimate, and the pool of predicted subnets -- */
  rc = estimate_drops(s, err);
  if (rc == 0 && atomic_load(&s->timed_out))
    goto cut_short;
  if (rc == 0) {
    fit_estimate(s);
    rc = predict_pool(s, &pool, &n_pool, err);
  }
  if (rc != 0)
    goto done;
  int room = s->o.candidates > per_res * s->info.n_res ? s->o.candidates : per_res * s->info.n_res;
  pick = malloc((size_t)room * sizeof *pick);
  fin = malloc((size_t)(s->cap_seen > s->o.finalists ? s->cap_seen : s->o.finalists) * sizeof *fin);
  if (pick == NULL || fin == NULL)
    goto nomem;

  /* -- step 2: candidates measured -- */
  /* Step 2: a few subnets of each resolution along its own estimated
   * front, for the estimate's fit; then, with the fitted estimate, the
   * candidates near the front of the whole space. */
  n_pick = 0;
  for (int r = 0; r < s->info.n_res; r++) {
    int m = pick_candidates(s, pool, n_pool, per_res, 0.02, r, pick + n_pick);
    if (m < 0)
      goto nomem;
    n_pick += m;
  }
  rc = measure_all(s, pick, n_pick, "measure", err);
  if (rc != 0)
    goto done;
  int budget_left = s->o.candidates - n_pick;
  fit_estimate(s);
  for (int i = 0; i < n_pool; i++)
    pool[i].est = estimate(s, &pool[i]);
  if (budget_left > 0) {
    n_pick = pick_candidates(s, pool, n_pool, budget_left, 0.02, -1, pick);
    if (n_pick < 0)
      goto nomem;
    rc = measure_all(s, pick, n_pick, "measure", err);
  }
  if (rc == 0)
    rc = tl__search_give_partial(s, &last_partial, err);
  /* -- step 3: local refinement -- */
  for (int r = 0; r < rounds && rc == 0 && !atomic_load(&s->timed_out); r++) {
    fit_estimate(s);
    rc = refine(s, budget, err);
    if (rc == 0)
      rc = tl__search_give_partial(s, &last_partial, err);
  }
  if (rc != 0)
    goto done;
  if (atomic_load(&s->timed_out))
    goto cut_short;

  /* -- step 4: the finalists, and the frontier -- */
  /* Step 4: the finalists recalibrated and measured on all the
   * calibration data; their front, cut to k, is the frontier. */
  n_fin = pick_finalists(s, s->o.k, s->o.finalists, 0.005, fin);
  if (n_fin < 0)
    goto nomem;
  for (int i = 0; i < n_fin; i++)
    fin[i].bn = NULL; /* the copies' statistics are s->seen's */
  struct eval *ev = malloc((size_t)(n_fin > 0 ? n_fin : 1) * sizeof *ev);
  if (ev == NULL)
    goto nomem;
  for (int i = 0; i < n_fin; i++)
    ev[i] = (struct eval){
        .spec = fin[i].spec, .recalib = s->o.final_recalib, .images = calib->n, .keep_bn = 1};
  rc = eval_all(s, ev, n_fin, "frontier", err);
  for (int i = 0; i < n_fin; i++) {
    fin[i].acc = ev[i].acc;
    fin[i].bn = ev[i].bn; /* NULL where it failed; freed below either way */
  }
  free(ev);
  if (rc != 0)
    goto done;
  if (atomic_load(&s->timed_out))
    goto cut_short; /* some finalists unmeasured: the subset's front, all alike */
  struct cand *front = malloc((size_t)(n_fin > 0 ? n_fin : 1) * sizeof *front);
  if (front == NULL)
    goto nomem;
  n_front = tl__search_thin(front, tl__search_pareto(fin, n_fin, front), s->o.k);
  assert(n_front != 0); /* there is always a finalist, and the front of one is it */
  f = n_front > 0 ? calloc((size_t)n_front, sizeof *f) : NULL;
  if (f == NULL) {
    free(front);
    goto nomem;
  }
  for (int i = 0; i < n_front; i++) {
    f[i] = (struct tl_frontier_member){.spec = front[i].spec,
                                       .predicted_ms = front[i].ms,
                                       .predicted_mib = front[i].mib,
                                       .accuracy = front[i].acc,
                                       .bn = front[i].bn};
    for (int j = 0; j < n_fin; j++)
      if (fin[j].bn == front[i].bn)
        fin[j].bn = NULL; /* now the member's */
  }
  free(front);
  goto found;

/* -- the end: the frontier, or the front measured so far -- */
cut_short: /* the time budget came: the front measured on the subset */
  s->rep.complete = 0;
  s->rep.images = s->o.est_images < calib->n ? s->o.est_images : calib->n; /* as measure() */
  {
    uint64_t key;
    if ((rc = tl__search_front_members(s, &f, &n_front, &key, err)) != 0)
      goto done;
  }
  if (n_front == 0) {
    rc = tl_fail(err, TL_ETIMEDOUT,
                 "search: the time budget of %g s ended it before any subnet was measured",
                 s->o.time_budget_s);
    goto done;
  }
found:
  if (s->o.progress != NULL) /* fewer evaluations than planned may have done */
    s->o.progress(s->o.ctx, "frontier", n_front, n_front, 1.0);
  s->rep.seconds = tl_now_s() - t0;
  if (rep)
    *rep = s->rep;
  *out = f;
  *n_out = n_front;
  goto done;

nomem:
  rc = tl_fail(err, TL_ENOMEM, "search: out of memory");
done: /* on success and on failure: what the search made for itself */
  for (int i = 0; fin != NULL && i < n_fin; i++)
    tl_bn_stats_free(fin[i].bn);
  for (int i = 0; s->seen != NULL && i < s->n_seen; i++)
    tl_bn_stats_free(s->seen[i].bn);
  free(pool);
  free(pick);
  free(fin);
  free(s->seen);
  free(s);
  free(agree.labels);
  return rc;
}
