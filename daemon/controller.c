/*
 * controller.c - choosing the active subnet of every model from the device
 * state and the budget (see controller.h).
 */
#include "controller.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/* Weight of one served request in the correction factor's EWMA: about
 * the last 20 requests count. */
#define CORRECTION_ALPHA 0.05
/* One request's served / predicted is clamped to this range first, so a
 * single stall (a page fault, a preemption) cannot swing the factor. */
#define CORRECTION_SAMPLE_MIN 0.2
#define CORRECTION_SAMPLE_MAX 5.0

/* Weight of one interval's request rate in its EWMA. */
#define RATE_ALPHA 0.5
/* Weight of one interval's CPU per request (outside plan runs) in its
 * EWMA, and the most one interval may say (a stall of the loop thread is
 * not a cost of requests). */
#define OVERHEAD_ALPHA 0.2
#define OVERHEAD_MAX_MS 2.0
/* Moving up takes this many times the budget's margin as headroom. */
#define UP_HEADROOM 2.0
/* Feedback: the served latency of the requests answered in the last
 * FEEDBACK_INTERVALS monitor intervals counts once there are at least
 * TL_RT_FEEDBACK_MIN of them; fewer say too little about a p95.  When
 * requests pause, the last TL_RT_FEEDBACK_MIN stand for what the next
 * ones will see, for FEEDBACK_MAX_AGE_MS; past that the prediction stands
 * alone. */
#define FEEDBACK_INTERVALS 2
#define FEEDBACK_MAX_AGE_MS 30000

struct tl_controller {
  uv_timer_t timer;
  struct tl_controller_env env;
  struct tl_monitor *mon;
  int interval_ms;
  struct tl_runtime *rt; /* borrowed */
  struct tl_device_state state;
  /* the requests' cost in CPU, for a quota */
  uint64_t last_tick_ns;
  double last_cpu_ms;  /* the process's CPU time at the last tick */
  int64_t tick_served; /* requests of every model since then */
  double overhead_ms;  /* EWMA of the CPU per request beyond its plan; 0 until seen */
  /* our threads' wait for a CPU (schedstat), at the last tick */
  bool had_run_delay;
  uint64_t last_run_delay_ns;
  double cpu_wait_ms; /* per request over the last interval; -1 unknown */
};

/* CPU time of the whole process (loop, workers, engine threads), in ms;
 * -1 if unknown. */
static double process_cpu_ms(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
    return -1;
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double factor(bool known, double v) { return known && v > 0 ? v : 0; }

const struct tl_device_state *tl_controller_device(const struct tl_controller *c) {
  return &c->state;
}

double tl_controller_scaled_ms(const struct tl_rt_model *m, int i) {
  return tl_latency_scale(m->frontier->m[i].predicted_ms, &m->ctl.scale);
}

/* Cores model m would use with member i active at its current rate. */
static double demand(const struct tl_rt_model *m, int i, double overhead_ms) {
  return m->ctl.rate * (tl_controller_scaled_ms(m, i) * tl_engine_threads() + overhead_ms) / 1e3;
}

static int cmp_float(const void *a, const void *b) {
  const float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The 95th percentile of v[0..n), n > 0 (sorts v). */
static double p95(float *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_float);
  int k = (int)ceil(0.95 * n) - 1;
  return v[k < 0 ? 0 : k];
}

/* Member i's p95 latency as clients would see it now.  Each request of
 * the feedback window is replayed as if member i had served it: its
 * compute (with whatever stretched it: a CPU held by others, a slower
 * clock) scales by member i's predicted compute over the one that ran;
 * its wait for a worker scales the same way for a slower member (the
 * requests ahead of it would have taken longer too) and stays as it was
 * for a faster one (a wait that a stall caused does not shrink); the rest
 * (parsing, the answer, the socket) stays.  The p95 of those; with too
 * few requests in the window, the predicted compute alone. */
double tl_controller_p95_ms(const struct tl_rt_model *m, int i) {
  const struct tl_rt_feedback *fb = &m->ctl.fb;
  if (fb->samples < TL_RT_FEEDBACK_MIN)
    return tl_controller_scaled_ms(m, i);
  struct tl_device_scale s = m->ctl.scale;
  s.correction = 1;
  const double p = tl_latency_scale(m->frontier->m[i].predicted_ms, &s);
  float v[TL_RT_FEEDBACK_MAX];
  for (int k = 0; k < fb->samples; k++) {
    const struct tl_rt_sample *x = &fb->win[k];
    const double ratio = x->predicted_ms > 0 ? p / x->predicted_ms : 1;
    const double rest = fmax(0, x->latency_ms - x->wait_ms - x->compute_ms);
    v[k] = (float)(rest + x->wait_ms * fmax(1, ratio) + x->compute_ms * ratio);
  }
  return p95(v, fb->samples);
}

/* Why member i does not fit: 0 it fits, else the switch class, with the
 * sentence in why. */
static int misfit_with(const struct tl_rt_model *m, int i, double headroom, char *why,
                       size_t size) {
  const struct tl_rt_member *mm = &m->frontier->m[i];
  const struct tl_config_budget *b = &m->cfg.budget;
  const struct tl_device_scale *s = &m->ctl.scale;
  /* (a quota bound of quota x (1 - margin) must stay above zero) */
  const double margin = fmin(b->margin * headroom, 0.95);
  double predicted = tl_controller_p95_ms(m, i) * (1 + margin);
  if (predicted > b->latency_p95_ms) {
    if (why != NULL)
      snprintf(why, size,
               "latency budget at risk: predicted %.3g ms > %g ms (freq ratio %.2f, cpu share "
               "%.2f, correction %.2f, waiting %.3g ms at p95, margin %g)",
               predicted, b->latency_p95_ms, s->freq_ratio > 0 ? s->freq_ratio : 1,
               s->cpu_share > 0 ? s->cpu_share : 1, s->correction > 0 ? s->correction : 1,
               m->ctl.fb.excess_p95_ms, margin);
    return TL_SWITCH_LATENCY;
  }
  if (m->ctl.quota_cores > 0) {
    double cores = m->ctl.demand_others + demand(m, i, m->ctl.overhead_ms);
    if (cores > m->ctl.quota_cores * (1 - margin)) {
      if (why != NULL)
        snprintf(why, size,
                 "CPU quota at risk: %.0f requests/s would use %.3g cores > %.3g of the quota "
                 "(margin %g)",
                 m->ctl.rate, cores, m->ctl.quota_cores * (1 - margin), margin);
      return TL_SWITCH_LATENCY;
    }
  }
  if (b->memory_mib > 0 && mm->predicted_mib > b->memory_mib) {
    if (why != NULL)
      snprintf(why, size, "memory budget exceeded: predicted %.3g MiB > %d MiB", mm->predicted_mib,
               b->memory_mib);
    return TL_SWITCH_MEMORY;
  }
  if (mm->accuracy >= 0 && mm->accuracy < b->min_accuracy) {
    if (why != NULL)
      snprintf(why, size, "accuracy %.4g below the floor %g", mm->accuracy, b->min_accuracy);
    return TL_SWITCH_ACCURACY;
  }
  return 0;
}

static int misfit(const struct tl_rt_model *m, int i, char *why, size_t size) {
  return misfit_with(m, i, 1, why, size);
}

int tl_controller_fits(const struct tl_rt_model *m, int i, char *why, size_t size) {
  if (why != NULL && size > 0)
    why[0] = '\0';
  return misfit(m, i, why, size) == 0;
}

/* The most accurate member that fits with headroom x the margin, or -1. */
static int best_fit(const struct tl_rt_model *m, double headroom) {
  const struct tl_rt_frontier *f = m->frontier;
  int best = -1;
  for (int i = 0; i < f->n; i++)
    if (misfit_with(m, i, headroom, NULL, 0) == 0 && (best < 0 || tl_rt_more_accurate(f, i, best)))
      best = i;
  return best;
}

/* The fastest member (the first, as frontiers are sorted; checked
 * anyway). */
static int fastest(const struct tl_rt_frontier *f) {
  int k = 0;
  for (int i = 1; i < f->n; i++)
    if (f->m[i].predicted_ms < f->m[k].predicted_ms)
      k = i;
  return k;
}

static void publish_gauges(struct tl_controller *c, const struct tl_rt_model *m) {
  if (c->env.metrics == NULL || m->frontier == NULL)
    return;
  int a = atomic_load(&m->ctl.active);
  const struct tl_config_budget *b = &m->cfg.budget;
  const int seen = m->ctl.fb.samples >= TL_RT_FEEDBACK_MIN;
  struct tl_metrics_model g = {
      .subnet = m->frontier->m[a].text,
      .predicted_latency_s = tl_controller_scaled_ms(m, a) / 1e3,
      .latency_budget_s = b->latency_p95_ms / 1e3,
      .memory_budget_bytes = (double)b->memory_mib * 1048576.0,
      .min_accuracy = b->min_accuracy,
      .degraded = m->ctl.degraded,
      .pinned = m->ctl.pinned,
      .correction = m->ctl.correction,
      .frontier_size = m->frontier->n,
      .provisional = m->frontier->provisional,
      .served_p95_s = seen ? m->ctl.fb.latency_p95_ms / 1e3 : -1,
      .waiting_p95_s = seen ? m->ctl.fb.excess_p95_ms / 1e3 : -1,
      .queue_p95_s = seen ? m->ctl.fb.queue_p95_ms / 1e3 : -1,
      .cpu_wait_s = m->ctl.fb.cpu_wait_ms >= 0 ? m->ctl.fb.cpu_wait_ms / 1e3 : -1,
      .over = m->ctl.degraded ? m->ctl.fb.over_part : NULL,
      .accuracy_metric = m->accuracy_metric,
      .search_progress = atomic_load(&m->search_permille) / 1000.0,
  };
  tl_metrics_model_set(c->env.metrics, m->cfg.name, &g);
}

/* Appends an event for model m to the store: a switch from `from` to
 * to_text, or (from equal to to_text) a change of state while serving it. */
static void store_event(struct tl_controller *c, const struct tl_rt_model *m, const char *from,
                        const char *to_text, const char *reason) {
  if (c->env.store != NULL) {
    char state[TL_DEVICE_STATE_JSON_MAX];
    tl_device_state_format(&c->state, state, sizeof state);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tl_switch_event ev = {
        .time_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
        .model = m->cfg.name,
        .from_spec = from,
        .to_spec = to_text,
        .reason = reason,
        .state = state,
    };
    struct tl_error err = {{0}};
    if (tl_store_event_append(c->env.store, &ev, NULL, &err) != 0)
      tl_log_warn(&c->env.log, "%s: storing the switch event: %s", m->cfg.name, err.msg);
  }
}

/* Makes member `to` active with reason, and records the switch. */
static void switch_to(struct tl_controller *c, struct tl_rt_model *m, const char *from, int to,
                      enum tl_switch_class cls, const char *reason) {
  atomic_store_explicit(&m->ctl.active, to, memory_order_release);
  snprintf(m->ctl.reason, sizeof m->ctl.reason, "%s", reason);
  const char *to_text = m->frontier->m[to].text;
  if (from != NULL && strcmp(from, to_text) == 0)
    return; /* the same subnet in a new generation or frontier: no switch */
  tl_log_notice(&c->env.log, "%s: %s%s%s: %s", m->cfg.name, from != NULL ? from : "",
                from != NULL ? " -> " : "serving ", to_text, reason);
  if (c->env.metrics != NULL)
    tl_metrics_switch(c->env.metrics, m->cfg.name, cls);
  store_event(c, m, from, to_text, reason);
  if (c->env.changed != NULL)
    c->env.changed(c->env.ctx);
}

/* ------------------------------------------------------------ feedback */

/* What the requests of m answered in the last FEEDBACK_INTERVALS
 * intervals saw, or the last TL_RT_FEEDBACK_MIN of them (see struct
 * tl_rt_feedback), into the window. */
static void update_feedback(const struct tl_controller *c, struct tl_rt_model *m, uint64_t now) {
  struct tl_rt_feedback *fb = &m->ctl.fb;
  const uint64_t window = (uint64_t)FEEDBACK_INTERVALS * (uint64_t)c->interval_ms * 1000000u;
  const uint64_t max_age = (uint64_t)FEEDBACK_MAX_AGE_MS * 1000000u;
  float ex[TL_RT_FEEDBACK_MAX], q[TL_RT_FEEDBACK_MAX], lat[TL_RT_FEEDBACK_MAX];
  int n = 0;
  /* newest first, from the one before head */
  for (int k = 0; k < fb->n; k++) {
    const struct tl_rt_sample *x =
        &fb->ring[(fb->head - 1 - k + 2 * TL_RT_FEEDBACK_MAX) % TL_RT_FEEDBACK_MAX];
    if (x->at_ns + window < now && (n >= TL_RT_FEEDBACK_MIN || x->at_ns + max_age < now))
      break;
    fb->win[n] = *x;
    ex[n] = x->excess_ms;
    q[n] = x->queue_ms;
    lat[n] = x->latency_ms;
    n++;
  }
  fb->samples = n;
  fb->cpu_wait_ms = c->cpu_wait_ms;
  if (n < TL_RT_FEEDBACK_MIN) {
    fb->excess_p95_ms = fb->latency_p95_ms = fb->queue_p95_ms = 0;
    return;
  }
  fb->excess_p95_ms = fmax(0, p95(ex, n));
  fb->queue_p95_ms = fmax(0, p95(q, n));
  fb->latency_p95_ms = p95(lat, n);
}

/* When nothing fits the latency budget: which part of the fastest
 * member's latency is over, and what would help, into fb->over. */
static void explain_over(struct tl_rt_model *m, int fast) {
  struct tl_rt_feedback *fb = &m->ctl.fb;
  const struct tl_config_budget *b = &m->cfg.budget;
  const double compute = tl_controller_scaled_ms(m, fast);
  const double cpu = fb->cpu_wait_ms > 0 ? fb->cpu_wait_ms : 0;
  if (compute * (1 + b->margin) > b->latency_p95_ms) {
    fb->over_part = "compute";
    snprintf(fb->over, sizeof fb->over,
             "compute: the fastest subnet computes in %.3g ms, over the %g ms budget: a "
             "larger budget or a smaller model",
             compute, b->latency_p95_ms);
  } else if (cpu >= fb->queue_p95_ms) {
    fb->over_part = "cpu";
    snprintf(fb->over, sizeof fb->over,
             "waiting for a CPU: %.3g ms per request (other processes hold the CPUs; "
             "%.3g ms waited beyond compute at p95): raise the service's CPUWeight= or "
             "lower the other load",
             cpu, fb->excess_p95_ms);
  } else {
    fb->over_part = "queue";
    snprintf(fb->over, sizeof fb->over,
             "queueing: requests waited %.3g ms for a worker at p95 at %.0f requests/s: "
             "fewer requests, or more workers",
             fb->queue_p95_ms, m->ctl.rate);
  }
}

/* One decision for model m at time now.  first_cls/first_reason are used
 * when the model has no choice yet for its frontier (start, new frontier). */
static void decide(struct tl_controller *c, struct tl_rt_model *m, uint64_t now,
                   const char *from_old, enum tl_switch_class first_cls, const char *first_reason) {
  struct tl_rt_control *ctl = &m->ctl;
  const struct tl_rt_frontier *f = m->frontier;
  if (f == NULL)
    return;
  ctl->scale.freq_ratio = factor(c->state.has_freq, c->state.freq_ratio);
  /* a quota is a bound on throughput, not a slowdown: see misfit() */
  ctl->scale.cpu_share = factor(c->state.has_cpu_share, c->state.cpu_share_load);
  ctl->scale.correction = ctl->correction;
  ctl->quota_cores = c->state.has_cgroup_cpu && !c->state.cgroup_cpu_unlimited
                         ? fmax(c->state.cgroup_cpu_quota_cores, 1e-3)
                         : 0;
  ctl->overhead_ms = c->overhead_ms;
  update_feedback(c, m, now);
  int was_degraded = ctl->degraded;
  int best = best_fit(m, 1);
  int choice = best >= 0 ? best : fastest(f);
  char why[256], reason[512];

  if (!ctl->decided) {
    ctl->decided = 1;
    ctl->better_since_ns = 0;
    if (ctl->pinned) {
      ctl->degraded = misfit(m, atomic_load(&ctl->active), NULL, 0) != 0;
    } else {
      ctl->degraded = best < 0;
      snprintf(reason, sizeof reason, "%s%s", first_reason,
               best < 0 ? "; no subnet meets the budget: the fastest, degraded"
                        : ": the most accurate subnet that meets the budget");
      switch_to(c, m, from_old, choice, first_cls, reason);
    }
    publish_gauges(c, m);
    return;
  }

  int active = atomic_load(&ctl->active);
  if (ctl->pinned) {
    /* a pin is obeyed; the flag still tells whether it meets the budget */
    ctl->degraded = misfit(m, active, NULL, 0) != 0;
  } else {
    int cls = misfit(m, active, why, sizeof why);
    if (cls != 0) {
      /* Down (or sideways, for memory and accuracy): at once, to the best
       * that fits, or the fastest when none does. */
      ctl->better_since_ns = 0;
      if (choice != active) {
        snprintf(reason, sizeof reason, "%s%s", why,
                 best < 0 ? "; no subnet meets the budget: the fastest, degraded" : "");
        switch_to(c, m, f->m[active].text, choice, (enum tl_switch_class)cls, reason);
        active = choice;
      }
      ctl->degraded = best < 0;
    } else if ((best = best_fit(m, UP_HEADROOM)) >= 0 && best != active &&
               tl_rt_more_accurate(f, best, active)) {
      /* Up: only to a member that fits with UP_HEADROOM times the margin
       * (one just inside the bound would go down again at the next
       * wobble of the rate or the correction), and only once that has
       * held since an earlier sample for the hysteresis (so a brief lull
       * does not cause a flap).  The clock starts at the first sample
       * that saw it. */
      ctl->degraded = 0;
      if (ctl->better_since_ns == 0)
        ctl->better_since_ns = now;
      if (now - ctl->better_since_ns >= (uint64_t)m->cfg.budget.hysteresis_ms * 1000000u) {
        snprintf(reason, sizeof reason, "resources recovered for %llu ms",
                 (unsigned long long)((now - ctl->better_since_ns) / 1000000u));
        switch_to(c, m, f->m[active].text, best, TL_SWITCH_RECOVERED, reason);
        ctl->better_since_ns = 0;
      }
    } else {
      ctl->better_since_ns = 0;
      ctl->degraded = 0;
    }
  }
  if (ctl->degraded) {
    explain_over(m, fastest(f));
  } else {
    ctl->fb.over[0] = '\0';
    ctl->fb.over_part = NULL;
  }
  if (ctl->degraded != was_degraded) {
    const char *now_serving = f->m[atomic_load(&ctl->active)].text;
    char line[512];
    if (ctl->degraded)
      snprintf(line, sizeof line, "degraded: no subnet meets the budget; %s", ctl->fb.over);
    else
      snprintf(line, sizeof line, "no longer degraded: %s meets the budget", now_serving);
    tl_log(&c->env.log, ctl->degraded ? TL_LOG_WARN : TL_LOG_NOTICE, "%s: %s", m->cfg.name, line);
    store_event(c, m, now_serving, now_serving, line);
    if (c->env.changed != NULL)
      c->env.changed(c->env.ctx);
  }
  publish_gauges(c, m);
}

/* Each model's request rate over the last interval, the CPU each request
 * costs beyond its plan run, and for each model the cores the others use.
 * That overhead is the process's CPU time over the interval less what the
 * active members' plans account for, per request: it holds the loop's
 * work, the workers' parsing, answers and polling, and anything else the
 * process spends (a search in the background), all of which a quota
 * counts. */
static void measure_load(struct tl_controller *c, uint64_t now) {
  double cpu = process_cpu_ms();
  double dt = (double)(now - c->last_tick_ns) / 1e9;
  /* our threads' wait for a CPU per request served since the last tick */
  c->cpu_wait_ms = -1;
  if (c->state.has_run_delay && c->had_run_delay && c->tick_served > 0)
    c->cpu_wait_ms =
        c->state.run_delay_ns > c->last_run_delay_ns
            ? (double)(c->state.run_delay_ns - c->last_run_delay_ns) / 1e6 / (double)c->tick_served
            : 0;
  c->had_run_delay = c->state.has_run_delay;
  c->last_run_delay_ns = c->state.run_delay_ns;
  if (c->last_tick_ns != 0 && dt > 0) {
    double plans_ms = 0;
    for (int i = 0; i < c->rt->n_models; i++) {
      struct tl_rt_model *m = &c->rt->models[i];
      struct tl_rt_control *ctl = &m->ctl;
      if (m->frontier != NULL)
        plans_ms += (double)ctl->tick_served *
                    tl_controller_scaled_ms(m, atomic_load(&ctl->active)) * tl_engine_threads();
      ctl->rate = (1 - RATE_ALPHA) * ctl->rate + RATE_ALPHA * (double)ctl->tick_served / dt;
      ctl->tick_served = 0;
    }
    if (c->tick_served > 0 && cpu >= 0 && c->last_cpu_ms >= 0) {
      double o = (cpu - c->last_cpu_ms - plans_ms) / (double)c->tick_served;
      o = fmin(OVERHEAD_MAX_MS, fmax(0, o));
      c->overhead_ms =
          c->overhead_ms > 0 ? (1 - OVERHEAD_ALPHA) * c->overhead_ms + OVERHEAD_ALPHA * o : o;
    }
  }
  c->last_tick_ns = now;
  c->last_cpu_ms = cpu;
  c->tick_served = 0;
  double total = 0;
  for (int i = 0; i < c->rt->n_models; i++) {
    const struct tl_rt_model *m = &c->rt->models[i];
    if (m->frontier != NULL)
      total += demand(m, atomic_load(&m->ctl.active), c->overhead_ms);
  }
  for (int i = 0; i < c->rt->n_models; i++) {
    struct tl_rt_model *m = &c->rt->models[i];
    double own = m->frontier != NULL ? demand(m, atomic_load(&m->ctl.active), c->overhead_ms) : 0;
    m->ctl.demand_others = fmax(0, total - own);
  }
}

static void on_tick(uv_timer_t *t) {
  struct tl_controller *c = t->data;
  if (c->mon != NULL) {
    tl_monitor_sample(c->mon, &c->state);
    if (c->env.metrics != NULL)
      tl_metrics_device(c->env.metrics, &c->state);
  }
  if (c->rt == NULL)
    return;
  uint64_t now = tl_now_ns();
  measure_load(c, now);
  for (int i = 0; i < c->rt->n_models; i++)
    decide(c, &c->rt->models[i], now, NULL, TL_SWITCH_START, "start");
}

static void on_closed(uv_handle_t *h) { free(h->data); }

int tl_controller_start(const struct tl_controller_env *env, struct tl_monitor *mon,
                        int interval_ms, struct tl_controller **out, struct tl_error *err) {
  struct tl_controller *c = calloc(1, sizeof *c);
  if (c == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  c->env = *env;
  c->mon = mon;
  c->interval_ms = interval_ms;
  int e = uv_timer_init(env->loop, &c->timer);
  if (e != 0) {
    free(c);
    return tl_fail(err, TL_EINTERNAL, "controller timer: %s", uv_strerror(e));
  }
  c->timer.data = c;
  if ((e = uv_timer_start(&c->timer, on_tick, 0, (uint64_t)interval_ms)) != 0) {
    uv_close((uv_handle_t *)&c->timer, on_closed);
    return tl_fail(err, TL_EINTERNAL, "controller timer: %s", uv_strerror(e));
  }
  *out = c;
  return 0;
}

void tl_controller_configure(struct tl_controller *c, struct tl_monitor *mon, int interval_ms) {
  c->mon = mon;
  if (interval_ms != c->interval_ms) {
    c->interval_ms = interval_ms;
    uv_timer_set_repeat(&c->timer, (uint64_t)interval_ms);
    uv_timer_again(&c->timer);
  }
}

/* The index of the member of f whose spec has key, or -1. */
static int member_with_key(const struct tl_rt_frontier *f, uint64_t key) {
  for (int i = 0; f != NULL && i < f->n; i++)
    if (f->m[i].key == key)
      return i;
  return -1;
}

/* A pin on prev (the model of the same name in the generation before)
 * holds in m when m serves the same file and the pinned subnet is on m's
 * frontier: an operator's pin is not undone by a reload (a SIGHUP, an
 * edit of the config).  Else it is released, with a word in the log. */
static void keep_pin(struct tl_controller *c, struct tl_rt_model *m,
                     const struct tl_rt_model *prev) {
  if (prev == NULL || !prev->ctl.pinned || prev->frontier == NULL)
    return;
  const struct tl_rt_member *pinned = &prev->frontier->m[atomic_load(&prev->ctl.active)];
  int keep = prev->g->hash == m->g->hash ? member_with_key(m->frontier, pinned->key) : -1;
  if (keep < 0) {
    tl_log_warn(&c->env.log,
                "%s: the pinned subnet %s is not on the reloaded model's frontier: "
                "unpinned",
                m->cfg.name, pinned->text);
    return;
  }
  m->ctl.pinned = 1;
  atomic_store(&m->ctl.active, keep);
  snprintf(m->ctl.reason, sizeof m->ctl.reason, "%s", prev->ctl.reason);
}

void tl_controller_set_runtime(struct tl_controller *c, struct tl_runtime *rt) {
  struct tl_runtime *old = c->rt;
  c->rt = rt;
  if (c->env.metrics != NULL)
    tl_metrics_models_clear(c->env.metrics);
  if (rt == NULL)
    return;
  uint64_t now = tl_now_ns();
  for (int i = 0; i < rt->n_models; i++) {
    struct tl_rt_model *m = &rt->models[i];
    struct tl_rt_model *prev = tl_runtime_model(old, m->cfg.name);
    const char *from = NULL;
    if (prev != NULL && prev->g->hash == m->g->hash) {
      m->ctl.correction = prev->ctl.correction;
      m->ctl.observed = prev->ctl.observed;
      m->ctl.rate = prev->ctl.rate;
    }
    if (prev != NULL && prev->frontier != NULL)
      from = prev->frontier->m[atomic_load(&prev->ctl.active)].text;
    keep_pin(c, m, prev);
    decide(c, m, now, from, TL_SWITCH_START, old != NULL ? "reload" : "start");
  }
}

void tl_controller_frontier_swapped(struct tl_controller *c, struct tl_rt_model *m,
                                    const struct tl_rt_frontier *old) {
  const char *from = NULL;
  if (old != NULL) {
    int a = atomic_load(&m->ctl.active);
    from = a >= 0 && a < old->n ? old->m[a].text : NULL;
    if (m->ctl.pinned) {
      int keep = from != NULL ? member_with_key(m->frontier, old->m[a].key) : -1;
      if (keep >= 0) {
        atomic_store(&m->ctl.active, keep);
      } else {
        m->ctl.pinned = 0;
        tl_log_warn(&c->env.log, "%s: the pinned subnet %s is not on the new frontier: unpinned",
                    m->cfg.name, from != NULL ? from : "?");
      }
    }
  }
  if (!m->ctl.pinned)
    atomic_store(&m->ctl.active, 0);
  m->ctl.decided = 0;
  char reason[128];
  snprintf(reason, sizeof reason, "new %sfrontier of %d subnets",
           m->frontier->provisional ? "provisional " : "", m->frontier->n);
  decide(c, m, tl_now_ns(), from, TL_SWITCH_FRONTIER, reason);
}

int tl_controller_pin(struct tl_controller *c, struct tl_rt_model *m, const char *text,
                      struct tl_error *err) {
  if (m->frontier == NULL)
    return tl_fail(err, TL_EBUSY, "model \"%s\" has no frontier yet", m->cfg.name);
  struct tl_rt_frontier *f = m->frontier;
  int active = atomic_load(&m->ctl.active);
  if (strcmp(text, "auto") == 0) {
    if (!m->ctl.pinned)
      return 0;
    m->ctl.pinned = 0;
    m->ctl.better_since_ns = 0;
    /* choose again from scratch, as at a start */
    m->ctl.decided = 0;
    decide(c, m, tl_now_ns(), f->m[active].text, TL_SWITCH_PIN, "pin released");
    return 0;
  }
  int i = tl_rt_frontier_find(f, m->sn, text, err);
  if (i < 0)
    return i;
  m->ctl.pinned = 1;
  m->ctl.better_since_ns = 0;
  if (i != active || !m->ctl.decided) {
    switch_to(c, m, m->ctl.decided ? f->m[active].text : NULL, i, TL_SWITCH_PIN,
              "pinned by a client");
  }
  m->ctl.decided = 1;
  m->ctl.degraded = misfit(m, i, NULL, 0) != 0;
  publish_gauges(c, m);
  return 0;
}

void tl_controller_observe(struct tl_controller *c, const struct tl_rt_request *req,
                           uint64_t answered_ns) {
  if (req->member < 0 || req->images <= 0 || req->status != 200)
    return;
  struct tl_rt_model *m = req->model;
  m->ctl.tick_served += req->images;
  c->tick_served += req->images;
  struct tl_device_scale s = req->scale;
  s.correction = 1;
  double predicted = tl_latency_scale(req->frontier->m[req->member].predicted_ms, &s);
  double served = (double)req->compute_ns / 1e6 / req->images;
  if (!(predicted > 0) || !(served > 0))
    return;
  /* What the client saw, per image, beyond the compute predicted now */
  struct tl_rt_feedback *fb = &m->ctl.fb;
  const double latency =
      answered_ns > req->arrival_ns ? (double)(answered_ns - req->arrival_ns) / 1e6 : 0;
  const double queue =
      req->start_ns > req->arrival_ns ? (double)(req->start_ns - req->arrival_ns) / 1e6 : 0;
  fb->ring[fb->head] = (struct tl_rt_sample){
      .at_ns = answered_ns,
      .excess_ms = (float)(latency / (double)req->images - predicted * m->ctl.correction),
      .queue_ms = (float)queue,
      .latency_ms = (float)(latency / (double)req->images),
      .wait_ms = (float)(queue / (double)req->images),
      .compute_ms = (float)served,
      .predicted_ms = (float)predicted,
  };
  fb->head = (fb->head + 1) % TL_RT_FEEDBACK_MAX;
  if (fb->n < TL_RT_FEEDBACK_MAX)
    fb->n++;
  double r = served / predicted;
  r = fmin(CORRECTION_SAMPLE_MAX, fmax(CORRECTION_SAMPLE_MIN, r));
  /* from 1, so the first requests (cold caches) move it only a little */
  m->ctl.correction = (1 - CORRECTION_ALPHA) * m->ctl.correction + CORRECTION_ALPHA * r;
  m->ctl.observed++;
}

void tl_controller_stop(struct tl_controller *c) {
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_closed);
}
