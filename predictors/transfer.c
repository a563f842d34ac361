/*
 * transfer.c - proxy transfer: an op table made elsewhere mapped to this
 * device from a few anchors measured here (see transfer.h).
 */
#include "transfer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"
#include "plan.h"

/* ===================================================== proxy transfer */

/* Length of sig without its trailing " tN" (thread count). */
static size_t sig_base_len(const char *sig) {
  const char *p = strrchr(sig, ' ');
  if (p == NULL || p[1] != 't')
    return strlen(sig);
  for (const char *q = p + 2; *q; q++)
    if (*q < '0' || *q > '9')
      return strlen(sig);
  return (size_t)(p - sig);
}

/* sig with its thread count replaced by the engine's current one. */
static int sig_here(const char *sig, char *buf, size_t len) {
  size_t base = sig_base_len(sig);
  int n = snprintf(buf, len, "%.*s t%d", (int)base, sig, tl_engine_threads());
  return n > 0 && (size_t)n < len ? 0 : TL_ERANGE;
}

/* The thread count sig was timed at (its " tN"), or 0 without one. */
static int sig_threads(const char *sig) {
  size_t b = sig_base_len(sig);
  return sig[b] == ' ' ? atoi(sig + b + 2) : 0;
}

/* How long a transfer's anchor passes go on, at least, with threads. */
#define TRANSFER_SPREAD_S 1.0

/* The two groups a transfer fits apart: steps whose kernels split their
 * work the same way here as there (elementwise ops, convs with too few
 * channels to divide, everything when the thread counts are equal), and
 * steps whose split changes.  One curve through both would take the
 * cheap elementwise steps, which gain nothing from a second thread, as
 * the shape of the convs, which nearly halve. */
enum { GROUP_SAME, GROUP_SPLIT, N_GROUPS };

/* A signature of this space, with src's time for it. */
struct cand {
  const char *src_sig; /* src's entry */
  double x;            /* src's median */
  double r;            /* busiest share here / there: 1/r is the ideal speed-up */
  int group;
  int plan; /* the first plan (index into specs) that holds it */
  double y; /* measured here (anchors only); < 0 until then */
};

/* Keys an op table by sig without its thread count. */
static int table_set_base(struct tl_op_table *t, const char *sig, double v) {
  char key[SIG_MAX];
  snprintf(key, sizeof key, "%.*s", (int)sig_base_len(sig), sig);
  return tl_op_table_set(t, key, v);
}

static int table_get_base(const struct tl_op_table *t, const char *sig, double *v) {
  char key[SIG_MAX];
  snprintf(key, sizeof key, "%.*s", (int)sig_base_len(sig), sig);
  return tl_op_table_get(t, key, v);
}

/* base signature -> the busiest share of its step, over every plan of
 * specs built at `threads` threads (the engine's count is restored). */
static int busiest_at(const struct tl_supernet *sn, const struct tl_subnet_spec *specs, int nspecs,
                      int threads, struct tl_op_table *out, struct tl_error *err) {
  const int here = tl_engine_threads();
  tl_engine_set_threads(threads);
  int rc = 0;
  char sig[SIG_MAX];
  for (int p = 0; p < nspecs && rc == 0; p++) {
    struct tl_plan *plan = NULL;
    if ((rc = tl__build_plan(sn, &specs[p], &plan, err)) != 0)
      break;
    for (int s = 0; s < tl_plan_n_steps(plan) && rc == 0; s++) {
      struct tl_step_info si;
      tl_plan_step_info(plan, s, &si);
      tl_plan_step_signature(plan, s, sig, sizeof sig);
      if ((rc = table_set_base(out, sig, si.busiest)) != 0)
        rc = tl_fail(err, rc, "proxy transfer: out of memory");
    }
    tl_plan_free(plan);
  }
  tl_engine_set_threads(here);
  return rc;
}

/* Fits y = scale * z^exponent through the anchors of one group (pick[n],
 * n <= 64), by least squares in logs; a pure ratio (the median) when
 * there are fewer than two anchors or the slope is not a sane positive
 * one. */
static void fit_group(const struct cand *c, const int *pick, int n, int group,
                      struct tl_transfer_fit *fit) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0, ratios[64];
  int k = 0;
  for (int i = 0; i < n; i++) {
    const struct cand *a = &c[pick[i]];
    if (a->group != group || a->y < 0)
      continue;
    double z = a->x * a->r;
    double lx = log(z > 1e-3 ? z : 1e-3), ly = log(a->y > 1e-3 ? a->y : 1e-3);
    sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly;
    ratios[k++] = exp(ly - lx);
  }
  fit->anchors = k;
  fit->scale = 1;
  fit->exponent = 1;
  if (k == 0)
    return;
  double det = k * sxx - sx * sx;
  double b = k >= 2 && det > 1e-9 ? (k * sxy - sx * sy) / det : 0;
  if (b > 0.05 && b <= 20) {
    fit->exponent = b;
    fit->scale = exp((sy - b * sx) / k);
  } else {
    fit->scale = tl__median(ratios, k);
  }
}

/* How many of `anchors` each group gets: at least one (two, for a fit
 * with a slope, when it has them) per group that has signatures, the rest
 * by the share of the time the group takes here. */
static void share_anchors(const int *n, const double *t, int anchors, int *k) {
  if (n[GROUP_SPLIT] == 0 || n[GROUP_SAME] == 0) {
    int g = n[GROUP_SPLIT] > 0 ? GROUP_SPLIT : GROUP_SAME;
    k[g] = anchors < n[g] ? anchors : n[g];
    k[!g] = 0;
    return;
  }
  double total = t[GROUP_SAME] + t[GROUP_SPLIT];
  int ks = (int)lround(anchors * (total > 0 ? t[GROUP_SPLIT] / total : 0.5));
  int hi = anchors - 1, lo = n[GROUP_SPLIT] < 2 ? n[GROUP_SPLIT] : 2;
  if (lo > hi)
    lo = hi;
  ks = ks < lo ? lo : ks > hi ? hi : ks;
  if (ks > n[GROUP_SPLIT])
    ks = n[GROUP_SPLIT];
  if (anchors - ks > n[GROUP_SAME]) /* too few of the others: give the rest back */
    ks = anchors - n[GROUP_SAME] < n[GROUP_SPLIT] ? anchors - n[GROUP_SAME] : n[GROUP_SPLIT];
  k[GROUP_SPLIT] = ks;
  k[GROUP_SAME] = anchors - ks < n[GROUP_SAME] ? anchors - ks : n[GROUP_SAME];
}

static int cmp_cand_x(const void *a, const void *b, void *ctx) {
  const struct cand *c = ctx;
  double x = c[*(const int *)a].x, y = c[*(const int *)b].x;
  return (x > y) - (x < y);
}

int tl_latency_transfer(const struct tl_supernet *sn, const struct tl_op_table *src, int anchors,
                        const struct tl_profile_options *opts, struct tl_op_table *dst,
                        struct tl_transfer_report *rep, struct tl_error *err) {
  /* -- options, and the thread count src was timed at -- */
  struct tl_profile_options o = opts ? *opts : (struct tl_profile_options){0};
  if (o.warmup <= 0)
    o.warmup = 2;
  if (o.repeats <= 0)
    o.repeats = 3;
  if (o.passes <= 0)
    o.passes = 2;
  int ns_src = tl_op_table_count(src);
  if (anchors < 2)
    return tl_fail(err, TL_EINVAL, "proxy transfer needs at least 2 anchors, not %d", anchors);
  if (anchors > 64)
    return tl_fail(err, TL_EINVAL, "proxy transfer takes at most 64 anchors, not %d", anchors);
  if (ns_src < anchors)
    return tl_fail(err, TL_EINVAL, "the other table has %d entries, fewer than %d anchors", ns_src,
                   anchors);
  double t0 = tl_now_s();
  struct tl_transfer_report r = {0};
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  const int here_threads = tl_engine_threads();
  int there_threads = 0;
  for (int e = 0; e < ns_src && there_threads == 0; e++) {
    const char *ss;
    double x;
    tl_op_table_entry(src, e, &ss, &x);
    there_threads = sig_threads(ss);
  }
  if (there_threads <= 0)
    there_threads = here_threads;

  /* -- phase 1: the candidates, every signature of the space in src -- */
  /* Every plan the profile would build: the largest and smallest subnets
   * (the two ends of the latency range, and the plans most anchors are
   * found in), then the covering plans, so that every signature of the
   * space has its group. */
  struct cand *cand = NULL;
  int ncand = 0, cap = 0, rc = 0, pick[64], npick = 0;
  double *overheads = NULL;
  struct tl_op_table *seen = NULL, *by_base = NULL, *busy_there = NULL;
  struct tl_subnet_spec *specs = malloc((size_t)(2 + info.n_widths * info.n_res) * sizeof *specs);
  if (specs == NULL || tl_op_table_new(&seen) != 0 || tl_op_table_new(&by_base) != 0 ||
      tl_op_table_new(&busy_there) != 0) {
    rc = tl_fail(err, TL_ENOMEM, "proxy transfer: out of memory");
    goto fail;
  }
  int nspecs = 0;
  tl_subnet_largest(sn, &specs[nspecs++]);
  tl_subnet_smallest(sn, &specs[nspecs++]);
  uint64_t cseed = 0x7a11035eedull;
  for (int i = 0; tl__covering_spec(&info, i, &cseed, &specs[nspecs]); i++)
    nspecs++;
  for (int e = 0; e < ns_src && rc == 0; e++) {
    const char *ss;
    double x;
    tl_op_table_entry(src, e, &ss, &x);
    if (table_set_base(by_base, ss, e) != 0)
      rc = tl_fail(err, TL_ENOMEM, "proxy transfer: out of memory");
  }
  /* How the kernels split each step there, when that differs from one
   * thread and from here. */
  if (rc == 0 && there_threads != here_threads && there_threads > 1)
    rc = busiest_at(sn, specs, nspecs, there_threads, busy_there, err);
  if (rc != 0)
    goto fail;

  char sig[SIG_MAX], here[SIG_MAX];
  for (int p = 0; p < nspecs; p++) {
    struct tl_plan *plan = NULL;
    if ((rc = tl__build_plan(sn, &specs[p], &plan, err)) != 0)
      goto fail;
    for (int s = 0; s < tl_plan_n_steps(plan) && rc == 0; s++) {
      double v, idx;
      tl_plan_step_signature(plan, s, here, sizeof here);
      if (tl_op_table_get(seen, here, &v) || !table_get_base(by_base, here, &idx))
        continue;
      struct tl_step_info si;
      tl_plan_step_info(plan, s, &si);
      double there = si.busiest; /* at equal thread counts, the same split */
      if (there_threads != here_threads && !table_get_base(busy_there, here, &there))
        there = 1; /* one thread there (or a step never planned there) */
      if (ncand == cap) {
        cap = cap ? 2 * cap : 64;
        struct cand *g = realloc(cand, (size_t)cap * sizeof *g);
        if (g == NULL) {
          rc = TL_ENOMEM;
          break;
        }
        cand = g;
      }
      const char *ss;
      double x;
      tl_op_table_entry(src, (int)idx, &ss, &x);
      double ratio = there > 0 ? si.busiest / there : 1;
      cand[ncand] =
          (struct cand){ss, x, ratio, fabs(ratio - 1) > 0.02 ? GROUP_SPLIT : GROUP_SAME, p, -1};
      rc = tl_op_table_set(seen, here, ncand++);
    }
    tl_plan_free(plan);
    if (rc != 0) {
      rc = tl_fail(err, rc, "proxy transfer: out of memory");
      goto fail;
    }
  }
  if (ncand < anchors) {
    rc = tl_fail(err, TL_EINVAL,
                 "the other table shares only %d signatures with this model's plans: "
                 "is it a profile of another model?",
                 ncand);
    goto fail;
  }

  /* -- phase 2: the anchors -- */
  /* Anchors per group, each group's at even quantiles of src's times,
   * ends included. */
  int n_g[N_GROUPS] = {0}, k_g[N_GROUPS];
  double t_g[N_GROUPS] = {0};
  for (int i = 0; i < ncand; i++) {
    n_g[cand[i].group]++;
    t_g[cand[i].group] += cand[i].x * cand[i].r;
  }
  share_anchors(n_g, t_g, anchors, k_g);
  int *order = malloc((size_t)ncand * sizeof *order);
  if (order == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "proxy transfer: out of memory");
    goto fail;
  }
  /* From as few plans as give each group twice the anchors it needs
   * (every plan measured is one more to warm up and time). */
  int last_plan = 1;
  for (;; last_plan++) {
    int have[N_GROUPS] = {0};
    for (int i = 0; i < ncand; i++)
      if (cand[i].plan <= last_plan)
        have[cand[i].group]++;
    if (last_plan >= nspecs - 1 ||
        (have[GROUP_SAME] >= 2 * k_g[GROUP_SAME] && have[GROUP_SPLIT] >= 2 * k_g[GROUP_SPLIT]))
      break;
  }
  for (int g = 0; g < N_GROUPS; g++) {
    int n = 0;
    for (int i = 0; i < ncand; i++)
      if (cand[i].group == g && cand[i].plan <= last_plan)
        order[n++] = i;
    if (n < k_g[g]) /* the groups' signatures are all needed */
      for (int i = n = 0; i < ncand; i++)
        if (cand[i].group == g)
          order[n++] = i;
    qsort_r(order, (size_t)n, sizeof *order, cmp_cand_x, cand);
    for (int a = 0; a < k_g[g]; a++)
      pick[npick++] = order[k_g[g] == 1 ? n / 2 : (int)lround((double)a * (n - 1) / (k_g[g] - 1))];
  }
  free(order);

  /* -- phase 3: the anchors measured here -- */
  /* Measure them here: each plan that holds an anchor, in o.passes
   * passes; an anchor keeps the fastest of its medians, as profiling
   * does (so both tables estimate the undisturbed device). */
  int plans_used[64], n_plans = 0;
  for (int a = 0; a < npick; a++) {
    int dup = 0;
    for (int j = 0; j < n_plans; j++)
      dup |= plans_used[j] == cand[pick[a]].plan;
    if (!dup)
      plans_used[n_plans++] = cand[pick[a]].plan;
  }
  overheads = malloc((size_t)(n_plans * o.passes * 16 + 1) * sizeof *overheads);
  int n_over = 0;
  if (overheads == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "proxy transfer: out of memory");
    goto fail;
  }
  /* With threads, passes go on for TRANSFER_SPREAD_S at least: a second
   * thread here sometimes runs no faster than one for a while (a VM whose
   * vCPUs share a host core), and the fastest of passes spread over time
   * is what the undisturbed device does. */
  const double spread_s = here_threads > 1 ? TRANSFER_SPREAD_S : 0;
  const int max_passes = o.passes * 16;
  for (int pass = 0;
       rc == 0 && pass < max_passes && (pass < o.passes || tl_now_s() - t0 < spread_s); pass++) {
    for (int j = 0; j < n_plans && rc == 0; j++) {
      struct tl_plan *plan = NULL;
      if ((rc = tl__build_plan(sn, &specs[plans_used[j]], &plan, err)) != 0)
        break;
      tl__warm_up(plan); /* each: a plan built after a pause starts slow */
      struct tl__plan_timing pt;
      rc = tl__time_plan(plan, o.warmup, o.repeats, 2, &pt);
      if (rc != 0) {
        tl_plan_free(plan);
        rc = tl_fail(err, rc, "proxy transfer: out of memory");
        break;
      }
      double sum = 0;
      for (int st = 0; st < pt.steps; st++) {
        double idx;
        sum += pt.step_us[st];
        tl_plan_step_signature(plan, st, here, sizeof here);
        if (!tl_op_table_get(seen, here, &idx))
          continue;
        for (int a = 0; a < npick; a++) {
          struct cand *c = &cand[pick[a]];
          if (pick[a] == (int)idx && (c->y < 0 || pt.step_us[st] < c->y))
            c->y = pt.step_us[st];
        }
      }
      if (pt.steps > 0)
        overheads[n_over++] = (pt.whole_us - sum) / pt.steps;
      free(pt.step_us);
      tl_plan_free(plan);
      r.plans++;
      if (o.progress)
        o.progress(o.ctx, r.plans, npick, n_plans * (pass + 1 > o.passes ? pass + 1 : o.passes));
    }
  }
  if (rc != 0)
    goto fail;

  /* -- phase 4: the fits, and src mapped through them -- */
  for (int g = 0; g < N_GROUPS; g++)
    fit_group(cand, pick, npick, g, &r.fit[g]);

  /* Every src entry mapped: by its group's curve at its ideal time here
   * (x * r); one this space's plans never hold keeps its split. */
  for (int e = 0; e < ns_src && rc == 0; e++) {
    const char *ss;
    double x, idx;
    tl_op_table_entry(src, e, &ss, &x);
    if (sig_here(ss, sig, sizeof sig) != 0)
      continue;
    int g = GROUP_SAME;
    double ratio = 1, y = -1;
    if (tl_op_table_get(seen, sig, &idx)) {
      const struct cand *c = &cand[(int)idx];
      g = c->group;
      ratio = c->r;
      y = c->y; /* anchors keep what was measured */
    }
    if (r.fit[g].anchors == 0)
      g = !g;
    if (y < 0) {
      double z = x * ratio;
      y = r.fit[g].scale * pow(z > 1e-3 ? z : 1e-3, r.fit[g].exponent);
    }
    rc = tl_op_table_set(dst, sig, y > 0 ? y : 0);
  }
  if (n_over > 0)
    tl_op_table_set_overhead_us(dst, tl__median(overheads, n_over));
  if (rc != 0) {
    rc = tl_fail(err, rc, "proxy transfer: out of memory");
    goto fail;
  }
  r.anchors = npick;
  r.seconds = tl_now_s() - t0;
  if (rep)
    *rep = r;
fail:
  free(overheads);
  free(cand);
  free(specs);
  tl_op_table_free(seen);
  tl_op_table_free(by_base);
  tl_op_table_free(busy_there);
  return rc;
}
