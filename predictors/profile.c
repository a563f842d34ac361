/*
 * profile.c - profiling: the op table of a SuperNet's space measured
 * inside whole plans (see profile.h), and the timing of a plan that the
 * proxy transfer uses too.
 *
 * The invariant that makes predictions add up: a signature's median is
 * measured inside a whole plan run the way serving runs it, never in a
 * loop of its own, so its caches and neighbours are the ones it has when
 * it serves.  What a whole run costs beyond the sum of its steps is
 * measured on the same plans and spread over the steps as the overhead.
 */
#include "profile.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"
#include "plan.h"

/* ============================================================ timing */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double tl__median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Fills the plan's float inputs with fixed values in [0, 1). */
static void fill_inputs(struct tl_plan *plan) {
  uint32_t x = 12345;
  for (int i = 0; i < tl_plan_n_inputs(plan); i++) {
    struct tl_tensor *in = tl_plan_input(plan, i);
    if (in->dtype != TL_DTYPE_FLOAT32)
      continue;
    float *d = in->data;
    int64_t n = tl_shape_numel(&in->shape);
    for (int64_t k = 0; k < n; k++) {
      x = x * 1664525u + 1013904223u;
      d[k] = (float)(x >> 8) / 16777216.0f;
    }
  }
}

/* Times plan (see internal.h). */
int tl__time_plan(struct tl_plan *plan, int warmup, int repeats, int whole,
                  struct tl__plan_timing *out) {
  int ns = tl_plan_n_steps(plan);
  int nw = whole > 0 ? whole : 1;
  double *runs = calloc((size_t)ns * (size_t)repeats + 1, sizeof *runs);
  double *col = malloc((size_t)(repeats > ns ? repeats : ns) * sizeof *col + 1);
  double *wt = malloc((size_t)nw * sizeof *wt);
  double *med = malloc((size_t)(ns ? ns : 1) * sizeof *med);
  if (runs == NULL || col == NULL || wt == NULL || med == NULL) {
    free(runs), free(col), free(wt), free(med);
    return TL_ENOMEM;
  }
  fill_inputs(plan);
  for (int r = 0; r < warmup; r++)
    tl_plan_run(plan);
  for (int r = 0; r < repeats; r++)
    tl_plan_run_timed(plan, runs + (size_t)r * (size_t)ns);
  for (int r = 0; r < whole; r++) {
    double t0 = tl_now_s();
    tl_plan_run(plan);
    wt[r] = (tl_now_s() - t0) * 1e6;
  }
  for (int s = 0; s < ns; s++) {
    for (int r = 0; r < repeats; r++)
      col[r] = runs[(size_t)r * (size_t)ns + (size_t)s];
    med[s] = tl__median(col, repeats);
  }
  out->steps = ns;
  out->step_us = med;
  out->whole_us = whole > 0 ? tl__median(wt, whole) : 0;
  free(runs), free(col), free(wt);
  return 0;
}

/* Runs plan a few times, and with more than one thread for at least
 * WARM_S, before anything is timed.  A process runs its first inferences
 * slowly (caches, code not paged in yet), and with threads the cores that
 * slept take up to a scheduler tick to wake until they have been busy a
 * while. */
#define WARM_S 0.05
void tl__warm_up(struct tl_plan *plan) {
  fill_inputs(plan);
  double t0 = tl_now_s();
  const double warm_s = tl_engine_threads() > 1 ? WARM_S : 0;
  for (int r = 0; r < 3 || tl_now_s() - t0 < warm_s; r++)
    tl_plan_run(plan);
}

/* ========================================================== profiling */

/* Covering spec i (0 <= i < n_widths * n_res): at resolution i / n_widths,
 * stage s takes width (i + s) mod n_widths, so the n_widths plans of one
 * resolution give every stage every width (a Latin square), and depths
 * are random but at least 1 where a stage has blocks.  Widths and depths
 * mixed like this give each step neighbours like a random subnet's, so
 * the caches it sees when timed are like the ones it sees when served
 * (plans of all-largest layers would time weight-bound steps slow).
 * Returns 0 past the last. */
int tl__covering_spec(const struct tl_supernet_info *info, int i, uint64_t *seed,
                      struct tl_subnet_spec *spec) {
  int nw = info->n_widths, nr = info->n_res;
  if (i >= nw * nr)
    return 0;
  memset(spec, 0, sizeof *spec);
  spec->res = info->res[nr - 1 - i / nw]; /* largest first: warms the caches up */
  for (int s = 0; s < info->n_stages; s++) {
    *seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
    int b = info->blocks[s];
    spec->depth[s] = b > 0 ? 1 + (int)((*seed >> 33) % (uint64_t)b) : 0;
    spec->width[s] = info->width_groups[s] > 0 ? (i + s) % nw : nw - 1;
  }
  return 1;
}

int tl__build_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   struct tl_plan **plan, struct tl_error *err) {
  struct tl_subnet_plan_options po = {.batch = 1};
  return tl_subnet_plan(sn, spec, &po, plan, err);
}

/* Samples of one signature: its median in each plan that timed it. */
struct samples {
  double *v;
  int n, cap;
};

static int samples_add(struct samples *s, double x) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 4;
    double *v = realloc(s->v, (size_t)cap * sizeof *v);
    if (v == NULL)
      return TL_ENOMEM;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = x;
  return 0;
}

struct profile {
  struct tl_op_table *index; /* signature -> k into samples */
  struct samples *samples;
  int cap;
  double *overheads;
  int n_over, cap_over;
};

static void profile_free(struct profile *p) {
  for (int k = 0; p->index && k < tl_op_table_count(p->index); k++)
    free(p->samples[k].v);
  free(p->samples);
  free(p->overheads);
  tl_op_table_free(p->index);
}

/* Adds the sample x of sig; *fresh is set when sig had none. */
static int profile_add(struct profile *p, const char *sig, double x, int *fresh) {
  double kd;
  *fresh = 0;
  if (!tl_op_table_get(p->index, sig, &kd)) {
    int k = tl_op_table_count(p->index);
    if (k == p->cap) {
      int cap = p->cap ? 2 * p->cap : 64;
      struct samples *sm = realloc(p->samples, (size_t)cap * sizeof *sm);
      if (sm == NULL)
        return TL_ENOMEM;
      memset(sm + p->cap, 0, (size_t)(cap - p->cap) * sizeof *sm);
      p->samples = sm;
      p->cap = cap;
    }
    if (tl_op_table_set(p->index, sig, k) != 0)
      return TL_ENOMEM;
    kd = k;
    *fresh = 1;
  }
  return samples_add(&p->samples[(int)kd], x);
}

static int profile_add_overhead(struct profile *p, double us) {
  if (p->n_over == p->cap_over) {
    int cap = p->cap_over ? 2 * p->cap_over : 32;
    double *v = realloc(p->overheads, (size_t)cap * sizeof *v);
    if (v == NULL)
      return TL_ENOMEM;
    p->overheads = v;
    p->cap_over = cap;
  }
  p->overheads[p->n_over++] = us;
  return 0;
}

int tl_latency_profile(const struct tl_supernet *sn, const struct tl_profile_options *opts,
                       struct tl_op_table *t, struct tl_profile_report *rep, struct tl_error *err) {
  /* -- options and state -- */
  struct tl_profile_options o = opts ? *opts : (struct tl_profile_options){0};
  if (o.warmup <= 0)
    o.warmup = 1;
  if (o.repeats <= 0)
    o.repeats = 3;
  if (o.passes <= 0)
    o.passes = 2;
  if (o.patience <= 0)
    o.patience = 20;
  uint64_t seed = o.seed ? o.seed : 0x7a11035eedull;
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  int ncover = info.n_widths * info.n_res;

  struct tl_profile_report r = {0};
  struct profile prof = {0};
  struct tl_op_table *seen = NULL;
  struct tl_subnet_spec *list = NULL;
  int n_list = 0, cap_list = 0;
  double t0 = tl_now_s();
  char sig[SIG_MAX];
  struct tl_plan *plan = NULL;
  struct tl__plan_timing pt = {0};
  int *order = NULL;
  int rc = tl_op_table_new(&prof.index);
  if (rc == 0)
    rc = tl_op_table_new(&seen);
  if (rc != 0)
    goto nomem;

  /* -- phase 1: the plans to time -- */
  /* Which plans to time: the covering ones, then random subnets (planned,
   * not run) while they still bring signatures nobody has timed. */
  for (int i = 0, misses = 0; misses < o.patience; i++) {
    struct tl_subnet_spec spec;
    if (!tl__covering_spec(&info, i, &seed, &spec)) {
      if (i > ncover + 100 * o.patience)
        break; /* a space this varied cannot be covered this way */
      tl_subnet_random(sn, &seed, &spec);
    }
    if (o.stop != NULL && atomic_load(o.stop) != 0) {
      rc = tl_fail(err, TL_ECANCELED, "profiling was stopped");
      goto fail;
    }
    rc = tl__build_plan(sn, &spec, &plan, err);
    if (rc != 0)
      goto fail;
    int fresh = 0;
    for (int st = 0; st < tl_plan_n_steps(plan); st++) {
      double us;
      if (tl_plan_step_signature(plan, st, sig, sizeof sig) != 0) {
        rc = tl_fail(err, TL_ERANGE, "step %d: signature longer than %d bytes", st, SIG_MAX);
        goto fail;
      }
      if (tl_op_table_get(t, sig, &us) || tl_op_table_get(seen, sig, &us))
        continue;
      if (tl_op_table_set(seen, sig, 1) != 0)
        goto nomem;
      fresh++;
    }
    tl_plan_free(plan);
    plan = NULL;
    if (fresh == 0) {
      misses += i >= ncover;
      continue;
    }
    misses = 0;
    if (n_list == cap_list) {
      cap_list = cap_list ? 2 * cap_list : 32;
      struct tl_subnet_spec *l = realloc(list, (size_t)cap_list * sizeof *l);
      if (l == NULL)
        goto nomem;
      list = l;
    }
    list[n_list++] = spec;
  }

  /* -- phase 2: timing, in passes -- */
  /* Time them in passes some time apart.  Other work on the machine (on
   * a VM, the host's too) comes in bursts and only ever slows a step
   * down, so a signature's value is the fastest of its per-plan medians:
   * the latency of the device when it is not disturbed, which the
   * daemon's state scaling and online correction then adjust. */
  order = malloc((size_t)(n_list + 1) * sizeof *order);
  if (order == NULL)
    goto nomem;
  for (int pass = 0; pass < o.passes; pass++) {
    /* Each pass in its own order, so that a slow spell of the machine
     * does not fall on the same plans (the same resolution) twice. */
    for (int i = 0; i < n_list; i++)
      order[i] = i;
    for (int i = n_list - 1; pass > 0 && i > 0; i--) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      int j = (int)((seed >> 33) % (uint64_t)(i + 1)), tmp = order[i];
      order[i] = order[j];
      order[j] = tmp;
    }
    for (int oi = 0; oi < n_list; oi++) {
      const int i = order[oi];
      if (o.stop != NULL && atomic_load(o.stop) != 0) {
        rc = tl_fail(err, TL_ECANCELED, "profiling was stopped");
        goto fail;
      }
      rc = tl__build_plan(sn, &list[i], &plan, err);
      if (rc != 0)
        goto fail;
      if (pass == 0 && oi == 0)
        tl__warm_up(plan);
      /* a few whole runs on the first plans measure the overhead */
      int whole = pass == 0 && oi < 6 ? 2 : 0;
      if (tl__time_plan(plan, o.warmup, o.repeats, whole, &pt) != 0)
        goto nomem;
      double sum = 0;
      for (int st = 0; st < pt.steps; st++) {
        double us;
        sum += pt.step_us[st];
        tl_plan_step_signature(plan, st, sig, sizeof sig);
        if (tl_op_table_get(t, sig, &us))
          continue;
        int fresh;
        if (profile_add(&prof, sig, pt.step_us[st], &fresh) != 0)
          goto nomem;
      }
      if (whole > 0 && pt.steps > 0 &&
          profile_add_overhead(&prof, (pt.whole_us - sum) / pt.steps) != 0)
        goto nomem;
      free(pt.step_us);
      pt.step_us = NULL;
      tl_plan_free(plan);
      plan = NULL;
      r.plans++;
      r.runs += o.warmup + o.repeats + whole;
      if (o.progress)
        o.progress(o.ctx, r.plans, tl_op_table_count(prof.index), n_list * o.passes);
    }
  }
  /* -- phase 3: the fastest median of each signature into t -- */
  for (int k = 0; k < tl_op_table_count(prof.index); k++) {
    const char *ks;
    double kd;
    tl_op_table_entry(prof.index, k, &ks, &kd);
    struct samples *sm = &prof.samples[(int)kd];
    double best = sm->v[0];
    for (int j = 1; j < sm->n; j++)
      best = sm->v[j] < best ? sm->v[j] : best;
    if (tl_op_table_set(t, ks, best) != 0)
      goto nomem;
    r.new_signatures++;
  }
  if (prof.n_over > 0)
    tl_op_table_set_overhead_us(t, tl__median(prof.overheads, prof.n_over));
  r.seconds = tl_now_s() - t0;
  if (rep)
    *rep = r;
  profile_free(&prof);
  tl_op_table_free(seen);
  free(list);
  free(order);
  return 0;

nomem:
  rc = tl_fail(err, TL_ENOMEM, "profiling: out of memory");
fail:
  free(pt.step_us);
  tl_plan_free(plan);
  profile_free(&prof);
  tl_op_table_free(seen);
  free(list);
  free(order);
  return rc;
}
