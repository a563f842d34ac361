/*
 * latency.c - op tables, profiling, prediction and proxy transfer (see
 * latency.h).
 *
 * The invariant that makes predictions add up: a signature's median is
 * measured inside a whole plan run the way serving runs it, never in a
 * loop of its own, so its caches and neighbours are the ones it has when
 * it serves.  What a whole run costs beyond the sum of its steps is
 * measured on the same plans and spread over the steps as the overhead.
 */
#include "latency.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calib.h"
#include "clock.h"
#include "hash.h"
#include "plan.h"

#define SIG_MAX 1024

/* ================================================================ table */

struct op_entry {
  char *sig;
  double us;
};

struct tl_op_table {
  struct op_entry *e; /* (cap) in insertion order */
  int n, cap;
  int *slots; /* (nslots) open addressing: index into e, or -1 */
  int nslots; /* a power of two, > 2 * n */
  double overhead_us;
};

static int find_slot(const struct tl_op_table *t, const char *sig) {
  unsigned mask = (unsigned)t->nslots - 1;
  for (unsigned i = (unsigned)tl_hash_str(sig) & mask;; i = (i + 1) & mask) {
    if (t->slots[i] < 0 || strcmp(t->e[t->slots[i]].sig, sig) == 0)
      return (int)i;
  }
}

int tl_op_table_new(struct tl_op_table **out) {
  struct tl_op_table *t = calloc(1, sizeof *t);
  if (t == NULL)
    return TL_ENOMEM;
  t->nslots = 64;
  t->slots = malloc((size_t)t->nslots * sizeof *t->slots);
  if (t->slots == NULL) {
    free(t);
    return TL_ENOMEM;
  }
  memset(t->slots, 0xff, (size_t)t->nslots * sizeof *t->slots);
  *out = t;
  return 0;
}

void tl_op_table_free(struct tl_op_table *t) {
  if (t == NULL)
    return;
  for (int i = 0; i < t->n; i++)
    free(t->e[i].sig);
  free(t->e);
  free(t->slots);
  free(t);
}

static int grow_slots(struct tl_op_table *t) {
  int nslots = t->nslots * 2;
  int *slots = malloc((size_t)nslots * sizeof *slots);
  if (slots == NULL)
    return TL_ENOMEM;
  memset(slots, 0xff, (size_t)nslots * sizeof *slots);
  free(t->slots);
  t->slots = slots;
  t->nslots = nslots;
  for (int i = 0; i < t->n; i++)
    t->slots[find_slot(t, t->e[i].sig)] = i;
  return 0;
}

int tl_op_table_set(struct tl_op_table *t, const char *sig, double us) {
  if (sig == NULL || sig[0] == '\0' || !isfinite(us) || us < 0)
    return TL_EINVAL;
  int slot = find_slot(t, sig);
  if (t->slots[slot] >= 0) {
    t->e[t->slots[slot]].us = us;
    return 0;
  }
  if (2 * (t->n + 1) >= t->nslots) {
    if (grow_slots(t) != 0)
      return TL_ENOMEM;
    slot = find_slot(t, sig);
  }
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    struct op_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
    if (e == NULL)
      return TL_ENOMEM;
    t->e = e;
    t->cap = cap;
  }
  char *copy = strdup(sig);
  if (copy == NULL)
    return TL_ENOMEM;
  t->e[t->n] = (struct op_entry){copy, us};
  t->slots[slot] = t->n++;
  return 0;
}

int tl_op_table_get(const struct tl_op_table *t, const char *sig, double *us) {
  int slot = find_slot(t, sig);
  if (t->slots[slot] < 0)
    return 0;
  *us = t->e[t->slots[slot]].us;
  return 1;
}

int tl_op_table_count(const struct tl_op_table *t) { return t->n; }

void tl_op_table_entry(const struct tl_op_table *t, int i, const char **sig, double *us) {
  assert(i >= 0 && i < t->n);
  *sig = t->e[i].sig;
  *us = t->e[i].us;
}

double tl_op_table_overhead_us(const struct tl_op_table *t) { return t->overhead_us; }
void tl_op_table_set_overhead_us(struct tl_op_table *t, double us) { t->overhead_us = us; }

/* The row that holds the per-step overhead in the store: no step's
 * signature starts with a parenthesis.  Stored shifted by OVERHEAD_BIAS
 * because a latency row cannot be negative and the overhead can. */
#define OVERHEAD_SIG "(per-step overhead)"
#define OVERHEAD_BIAS 1000.0

struct load_ctx {
  struct tl_op_table *t;
  int n;
};

static int load_row(void *ctx, const struct tl_op_latency *row) {
  struct load_ctx *c = ctx;
  if (strcmp(row->signature, OVERHEAD_SIG) == 0) {
    tl_op_table_set_overhead_us(c->t, row->median_us - OVERHEAD_BIAS);
    return 0;
  }
  if (tl_op_table_set(c->t, row->signature, row->median_us) != 0)
    return TL_ENOMEM;
  c->n++;
  return 0;
}

int tl_latency_load(struct tl_store *st, int64_t device_id, struct tl_op_table *t, int *loaded,
                    struct tl_error *err) {
  struct load_ctx c = {t, 0};
  int rc = tl_store_op_foreach(st, device_id, load_row, &c, err);
  if (rc == TL_ENOMEM)
    return tl_fail(err, rc, "loading latencies: out of memory");
  if (rc == 0 && loaded != NULL)
    *loaded = c.n;
  return rc;
}

int tl_latency_save(struct tl_store *st, int64_t device_id, const struct tl_op_table *t,
                    int64_t runs, struct tl_error *err) {
  size_t n = (size_t)t->n + 1;
  struct tl_op_latency *rows = malloc(n * sizeof *rows);
  if (rows == NULL)
    return tl_fail(err, TL_ENOMEM, "saving latencies: out of memory");
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < t->n; i++)
    rows[i] = (struct tl_op_latency){t->e[i].sig, t->e[i].us, runs, now};
  double over = t->overhead_us + OVERHEAD_BIAS;
  rows[t->n] = (struct tl_op_latency){OVERHEAD_SIG, over > 0 ? over : 0, runs, now};
  int rc = tl_store_op_put_batch(st, device_id, rows, n, err);
  free(rows);
  return rc;
}

/* ============================================================ timing */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
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

struct plan_timing {
  int steps;
  double *step_us; /* (steps) medians */
  double whole_us; /* median of untimed whole runs */
};

/* Times plan: warm-up runs, then `repeats` runs with per-step timing
 * (medians per step), then `whole` plain runs (their median, for the
 * per-step overhead; 0 when whole is 0). */
static int time_plan(struct tl_plan *plan, int warmup, int repeats, int whole,
                     struct plan_timing *out) {
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
    med[s] = median(col, repeats);
  }
  out->steps = ns;
  out->step_us = med;
  out->whole_us = whole > 0 ? median(wt, whole) : 0;
  free(runs), free(col), free(wt);
  return 0;
}

/* Runs plan a few times, and with more than one thread for at least
 * WARM_S, before anything is timed.  A process runs its first inferences
 * slowly (caches, code not paged in yet), and with threads the cores that
 * slept take up to a scheduler tick to wake until they have been busy a
 * while. */
#define WARM_S 0.05
static void warm_up(struct tl_plan *plan) {
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
static int covering_spec(const struct tl_supernet_info *info, int i, uint64_t *seed,
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

static int build_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
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
  struct plan_timing pt = {0};
  int *order = NULL;
  int rc = tl_op_table_new(&prof.index);
  if (rc == 0)
    rc = tl_op_table_new(&seen);
  if (rc != 0)
    goto nomem;

  /* Which plans to time: the covering ones, then random subnets (planned,
   * not run) while they still bring signatures nobody has timed. */
  for (int i = 0, misses = 0; misses < o.patience; i++) {
    struct tl_subnet_spec spec;
    if (!covering_spec(&info, i, &seed, &spec)) {
      if (i > ncover + 100 * o.patience)
        break; /* a space this varied cannot be covered this way */
      tl_subnet_random(sn, &seed, &spec);
    }
    if (o.stop != NULL && atomic_load(o.stop) != 0) {
      rc = tl_fail(err, TL_ECANCELED, "profiling was stopped");
      goto fail;
    }
    rc = build_plan(sn, &spec, &plan, err);
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
      rc = build_plan(sn, &list[i], &plan, err);
      if (rc != 0)
        goto fail;
      if (pass == 0 && oi == 0)
        warm_up(plan);
      /* a few whole runs on the first plans measure the overhead */
      int whole = pass == 0 && oi < 6 ? 2 : 0;
      if (time_plan(plan, o.warmup, o.repeats, whole, &pt) != 0)
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
    tl_op_table_set_overhead_us(t, median(prof.overheads, prof.n_over));
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

/* ========================================================= prediction */

int tl_latency_predict(const struct tl_supernet *sn, const struct tl_op_table *t,
                       const struct tl_subnet_spec *spec, struct tl_prediction *out,
                       struct tl_error *err) {
  struct tl_plan *plan = NULL;
  int rc = build_plan(sn, spec, &plan, err);
  if (rc != 0)
    return rc;
  char sig[SIG_MAX];
  double sum = 0;
  int ns = tl_plan_n_steps(plan);
  for (int s = 0; s < ns; s++) {
    double us;
    if (tl_plan_step_signature(plan, s, sig, sizeof sig) != 0 || !tl_op_table_get(t, sig, &us)) {
      rc = tl_fail(err, TL_ENOENT, "no latency measured for step %d (%s): profile the model first",
                   s, sig);
      tl_plan_free(plan);
      return rc;
    }
    sum += us;
  }
  int64_t macs, params;
  rc = tl_subnet_cost(sn, spec, &macs, &params, err);
  if (rc != 0) {
    tl_plan_free(plan);
    return rc;
  }
  int64_t io = 0;
  for (int i = 0; i < tl_plan_n_inputs(plan); i++) {
    struct tl_tensor *in = tl_plan_input(plan, i);
    io += tl_shape_numel(&in->shape) * (int64_t)tl_dtype_size(in->dtype);
  }
  for (int i = 0; i < tl_plan_n_outputs(plan); i++) {
    const struct tl_tensor *o = tl_plan_output(plan, i);
    io += tl_shape_numel(&o->shape) * (int64_t)tl_dtype_size(o->dtype);
  }
  out->steps = ns;
  out->latency_ms = (sum + ns * tl_op_table_overhead_us(t)) / 1e3;
  out->weight_bytes = params * (int64_t)sizeof(float);
  out->arena_bytes = (int64_t)(tl_plan_arena_bytes(plan) + tl_plan_scratch_bytes(plan));
  out->io_bytes = io;
  out->mem_mib = (double)(out->weight_bytes + out->arena_bytes + out->io_bytes) / (1 << 20);
  tl_plan_free(plan);
  return 0;
}

static double clamp_factor(double f) {
  if (!(f > 0))
    return 1;
  return f < 0.05 ? 0.05 : f > 20 ? 20 : f;
}

double tl_latency_scale(double base_ms, const struct tl_device_scale *s) {
  if (s == NULL)
    return base_ms;
  return base_ms / clamp_factor(s->freq_ratio) / clamp_factor(s->cpu_share) *
         clamp_factor(s->correction);
}

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
    if ((rc = build_plan(sn, &specs[p], &plan, err)) != 0)
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
    fit->scale = median(ratios, k);
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
  for (int i = 0; covering_spec(&info, i, &cseed, &specs[nspecs]); i++)
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
    if ((rc = build_plan(sn, &specs[p], &plan, err)) != 0)
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
      if ((rc = build_plan(sn, &specs[plans_used[j]], &plan, err)) != 0)
        break;
      warm_up(plan); /* each: a plan built after a pause starts slow */
      struct plan_timing pt;
      rc = time_plan(plan, o.warmup, o.repeats, 2, &pt);
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
    tl_op_table_set_overhead_us(dst, median(overheads, n_over));
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
