/*
 * metrics.c - counters, histograms and gauges, and their Prometheus text
 * (see metrics.h).
 *
 * Families are rows of one table: name, type, help and the function that
 * writes their samples.  Per-model series live in a small array found by
 * name; models are few and a reload rarely names new ones, so it only
 * grows.
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "oip.h"
#include "runtime.h"

/* ----------------------------------------------------------------- data */

/* Histogram buckets in seconds: from 100 us (a small CNN) to 10 s. */
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define N_BUCKETS (int)(sizeof buckets / sizeof buckets[0])

struct hist {
  uint64_t counts[N_BUCKETS]; /* not cumulative: bucket i only */
  uint64_t count;
  double sum;
};

/* The statuses the server answers with; anything else counts as "other". */
static const int statuses[] = {200, 400, 404, 405, 413, 414, 431, 500, 503, 505};
#define N_STATUSES (int)(sizeof statuses / sizeof statuses[0])

static const char *const class_names[TL_SWITCH_COUNT] = {
    [TL_SWITCH_START] = "start",         [TL_SWITCH_LATENCY] = "latency",
    [TL_SWITCH_MEMORY] = "memory",       [TL_SWITCH_ACCURACY] = "accuracy",
    [TL_SWITCH_RECOVERED] = "recovered", [TL_SWITCH_PIN] = "pin",
    [TL_SWITCH_FRONTIER] = "frontier",
};

struct model_series {
  char name[TL_CONFIG_NAME_MAX + 1];
  struct hist total, queue, compute;
  uint64_t switches[TL_SWITCH_COUNT];
  uint64_t shed; /* requests answered 503 at once, see server_infer.c */
  int has_gauges;
  struct tl_metrics_model g;   /* g.subnet unused: see subnet */
  char subnet[TL_RT_SPEC_MAX]; /* the active subnet's spec */
};

struct tl_metrics {
  /* [route + 1][status index]; route -1 is "none", status N_STATUSES is
   * "other" */
  uint64_t requests[TL_OIP_ROUTE_COUNT + 1][N_STATUSES + 1];
  int n_models;
  struct model_series *models;
  struct tl_device_state device;
  int has_device;
  struct tl_metrics_server server;
};

const char *tl_switch_class_name(enum tl_switch_class c) {
  return c >= 0 && c < TL_SWITCH_COUNT ? class_names[c] : "other";
}

int tl_metrics_new(struct tl_metrics **out) {
  struct tl_metrics *m = calloc(1, sizeof *m);
  if (m == NULL)
    return TL_ENOMEM;
  *out = m;
  return 0;
}

void tl_metrics_free(struct tl_metrics *m) {
  if (m == NULL)
    return;
  free(m->models);
  free(m);
}

/* The series of model, created if new; NULL when out of memory (the
 * update is then lost, never the daemon). */
static struct model_series *series(struct tl_metrics *m, const char *model) {
  for (int i = 0; i < m->n_models; i++)
    if (strcmp(m->models[i].name, model) == 0)
      return &m->models[i];
  struct model_series *grown = realloc(m->models, (size_t)(m->n_models + 1) * sizeof *grown);
  if (grown == NULL)
    return NULL;
  m->models = grown;
  struct model_series *s = &m->models[m->n_models++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", model);
  return s;
}

/* -------------------------------------------------------------- updates */

void tl_metrics_request(struct tl_metrics *m, int route, int status) {
  int r = route >= 0 && route < TL_OIP_ROUTE_COUNT ? route + 1 : 0;
  int k = N_STATUSES;
  for (int i = 0; i < N_STATUSES; i++)
    if (statuses[i] == status)
      k = i;
  m->requests[r][k]++;
}

static void observe(struct hist *h, double v) {
  if (!(v >= 0))
    v = 0;
  for (int i = 0; i < N_BUCKETS; i++)
    if (v <= buckets[i]) {
      h->counts[i]++;
      break;
    }
  h->count++;
  h->sum += v;
}

void tl_metrics_infer(struct tl_metrics *m, const char *model, double total_s, double queue_s,
                      double compute_s) {
  struct model_series *s = series(m, model);
  if (s == NULL)
    return;
  observe(&s->total, total_s);
  observe(&s->queue, queue_s);
  observe(&s->compute, compute_s);
}

void tl_metrics_switch(struct tl_metrics *m, const char *model, enum tl_switch_class c) {
  struct model_series *s = series(m, model);
  if (s != NULL && c >= 0 && c < TL_SWITCH_COUNT)
    s->switches[c]++;
}

void tl_metrics_shed(struct tl_metrics *m, const char *model) {
  struct model_series *s = series(m, model);
  if (s != NULL)
    s->shed++;
}

void tl_metrics_model_set(struct tl_metrics *m, const char *model,
                          const struct tl_metrics_model *g) {
  struct model_series *s = series(m, model);
  if (s == NULL)
    return;
  s->g = *g;
  snprintf(s->subnet, sizeof s->subnet, "%s", g->subnet != NULL ? g->subnet : "");
  s->g.subnet = NULL; /* the text is s->subnet (the array moves when it grows) */
  s->has_gauges = 1;
}

void tl_metrics_models_clear(struct tl_metrics *m) {
  for (int i = 0; i < m->n_models; i++)
    m->models[i].has_gauges = 0;
}

void tl_metrics_device(struct tl_metrics *m, const struct tl_device_state *s) {
  m->device = *s;
  m->has_device = 1;
}

void tl_metrics_server_set(struct tl_metrics *m, const struct tl_metrics_server *s) {
  m->server = *s;
}

/* ----------------------------------------------------------- exposition */

/* A label value with \, " and newlines escaped as the format wants. */
static void put_label(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"')
      fprintf(f, "\\%c", *v);
    else if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  }
}

static void put_value(FILE *f, double v) {
  if (isnan(v))
    fputs("NaN", f);
  else if (isinf(v))
    fputs(v > 0 ? "+Inf" : "-Inf", f);
  else
    fprintf(f, "%.17g", v);
}

struct family;
typedef void emit_fn(FILE *f, const struct tl_metrics *m, const struct family *fam);

struct family {
  const char *name;
  const char *type;
  const char *help;
  emit_fn *emit;
  /* for the per-model gauges: the value, and whether the model has it */
  double (*value)(const struct tl_metrics_model *g, int *has);
  /* for the histograms: which one */
  size_t hist_offset;
  /* for the device and server gauges */
  double (*global)(const struct tl_metrics *m, int *has);
};

static void emit_requests(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  for (int r = 0; r <= TL_OIP_ROUTE_COUNT; r++)
    for (int k = 0; k <= N_STATUSES; k++) {
      if (m->requests[r][k] == 0)
        continue;
      fprintf(f, "%s{route=\"%s\",code=\"", fam->name,
              r == 0 ? "none" : tl_oip_route_name((enum tl_oip_route)(r - 1)));
      if (k < N_STATUSES)
        fprintf(f, "%d", statuses[k]);
      else
        fputs("other", f);
      fprintf(f, "\"} %llu\n", (unsigned long long)m->requests[r][k]);
    }
}

static void emit_switches(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  for (int i = 0; i < m->n_models; i++)
    for (int c = 0; c < TL_SWITCH_COUNT; c++) {
      if (m->models[i].switches[c] == 0)
        continue;
      fprintf(f, "%s{model=\"", fam->name);
      put_label(f, m->models[i].name);
      fprintf(f, "\",reason=\"%s\"} %llu\n", class_names[c],
              (unsigned long long)m->models[i].switches[c]);
    }
}

static void emit_shed(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  for (int i = 0; i < m->n_models; i++) {
    if (m->models[i].shed == 0)
      continue;
    fprintf(f, "%s{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fprintf(f, "\"} %llu\n", (unsigned long long)m->models[i].shed);
  }
}

static void emit_hist(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  for (int i = 0; i < m->n_models; i++) {
    const struct hist *h = (const struct hist *)((const char *)&m->models[i] + fam->hist_offset);
    if (h->count == 0)
      continue;
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
      cum += h->counts[b];
      fprintf(f, "%s_bucket{model=\"", fam->name);
      put_label(f, m->models[i].name);
      fprintf(f, "\",le=\"%g\"} %llu\n", buckets[b], (unsigned long long)cum);
    }
    fprintf(f, "%s_bucket{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
    fprintf(f, "%s_sum{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fputs("\"} ", f);
    put_value(f, h->sum);
    fprintf(f, "\n%s_count{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fprintf(f, "\"} %llu\n", (unsigned long long)h->count);
  }
}

/* An info family: per model with gauges, `{model="...",<label>="text"} 1`
 * where text(series) is not NULL. */
static void emit_info(FILE *f, const struct tl_metrics *m, const struct family *fam,
                      const char *label, const char *(*text)(const struct model_series *s)) {
  for (int i = 0; i < m->n_models; i++) {
    const char *v = m->models[i].has_gauges ? text(&m->models[i]) : NULL;
    if (v == NULL)
      continue;
    fprintf(f, "%s{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fprintf(f, "\",%s=\"", label);
    put_label(f, v);
    fputs("\"} 1\n", f);
  }
}

static const char *active_text(const struct model_series *s) { return s->subnet; }
static const char *over_text(const struct model_series *s) { return s->g.over; }
static const char *metric_text(const struct model_series *s) { return s->g.accuracy_metric; }

static void emit_active(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  emit_info(f, m, fam, "subnet", active_text);
}

static void emit_over(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  emit_info(f, m, fam, "part", over_text);
}

static void emit_accuracy_metric(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  emit_info(f, m, fam, "metric", metric_text);
}

static void emit_model_gauge(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  for (int i = 0; i < m->n_models; i++) {
    int has = 1;
    if (!m->models[i].has_gauges)
      continue;
    double v = fam->value(&m->models[i].g, &has);
    if (!has)
      continue;
    fprintf(f, "%s{model=\"", fam->name);
    put_label(f, m->models[i].name);
    fputs("\"} ", f);
    put_value(f, v);
    fputc('\n', f);
  }
}

static void emit_global(FILE *f, const struct tl_metrics *m, const struct family *fam) {
  int has = 1;
  double v = fam->global(m, &has);
  if (!has)
    return;
  fprintf(f, "%s ", fam->name);
  put_value(f, v);
  fputc('\n', f);
}

static double g_predicted(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->predicted_latency_s;
}
static double g_lat_budget(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->latency_budget_s;
}
static double g_mem_budget(const struct tl_metrics_model *g, int *has) {
  *has = g->memory_budget_bytes > 0;
  return g->memory_budget_bytes;
}
static double g_min_accuracy(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->min_accuracy;
}
static double g_search_progress(const struct tl_metrics_model *g, int *has) {
  *has = g->search_progress >= 0;
  return g->search_progress;
}
static double g_degraded(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->degraded;
}
static double g_pinned(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->pinned;
}
static double g_correction(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->correction;
}
static double g_served_p95(const struct tl_metrics_model *g, int *has) {
  *has = g->served_p95_s >= 0;
  return g->served_p95_s;
}
static double g_waiting_p95(const struct tl_metrics_model *g, int *has) {
  *has = g->waiting_p95_s >= 0;
  return g->waiting_p95_s;
}
static double g_queue_p95(const struct tl_metrics_model *g, int *has) {
  *has = g->queue_p95_s >= 0;
  return g->queue_p95_s;
}
static double g_cpu_wait(const struct tl_metrics_model *g, int *has) {
  *has = g->cpu_wait_s >= 0;
  return g->cpu_wait_s;
}
static double g_frontier(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->frontier_size;
}
static double g_provisional(const struct tl_metrics_model *g, int *has) {
  (void)has;
  return g->provisional;
}

static double d_freq(const struct tl_metrics *m, int *has) {
  *has = m->has_device && m->device.has_freq;
  return m->device.freq_ratio;
}
static double d_share(const struct tl_metrics *m, int *has) {
  *has = m->has_device && m->device.has_cpu_share;
  return m->device.cpu_share;
}
static double d_mem(const struct tl_metrics *m, int *has) {
  *has = m->has_device && m->device.has_mem_available;
  return (double)m->device.mem_available_bytes;
}
static double d_psi_cpu(const struct tl_metrics *m, int *has) {
  *has = m->has_device && m->device.has_psi_cpu;
  return m->device.psi_cpu_some_avg10 / 100;
}
static double d_psi_mem(const struct tl_metrics *m, int *has) {
  *has = m->has_device && m->device.has_psi_mem;
  return m->device.psi_mem_some_avg10 / 100;
}
static double s_conns(const struct tl_metrics *m, int *has) {
  (void)has;
  return m->server.connections;
}
static double s_evicted(const struct tl_metrics *m, int *has) {
  (void)has;
  return (double)m->server.evicted;
}
static double s_waiting(const struct tl_metrics *m, int *has) {
  (void)has;
  return m->server.queue_waiting;
}
static double s_running(const struct tl_metrics *m, int *has) {
  (void)has;
  return m->server.queue_running;
}
static double s_ready(const struct tl_metrics *m, int *has) {
  (void)has;
  return m->server.ready;
}
static double s_generation(const struct tl_metrics *m, int *has) {
  (void)has;
  return (double)m->server.generation;
}

#define HIST(field) offsetof(struct model_series, field)

static const struct family families[] = {
    {"tailor_requests_total", "counter", "HTTP requests answered, by route and status code.",
     emit_requests, NULL, 0, NULL},
    {"tailor_switches_total", "counter", "Switches of the active subnet, by reason.", emit_switches,
     NULL, 0, NULL},
    {"tailor_shed_total", "counter",
     "Inference requests answered 503 at once: they would have waited past the deadline.",
     emit_shed, NULL, 0, NULL},
    {"tailor_request_duration_seconds", "histogram", "Inference requests from arrival to answer.",
     emit_hist, NULL, HIST(total), NULL},
    {"tailor_queue_duration_seconds", "histogram", "Time inference requests waited for a worker.",
     emit_hist, NULL, HIST(queue), NULL},
    {"tailor_compute_duration_seconds", "histogram",
     "Time inference requests ran their subnet, all images of the batch.", emit_hist, NULL,
     HIST(compute), NULL},
    {"tailor_active_subnet_info", "gauge", "The subnet new requests of a model get.", emit_active,
     NULL, 0, NULL},
    {"tailor_predicted_latency_seconds", "gauge",
     "Predicted latency of the active subnet in the current device state.", emit_model_gauge,
     g_predicted, 0, NULL},
    {"tailor_latency_budget_seconds", "gauge", "The latency budget (p95) of a model.",
     emit_model_gauge, g_lat_budget, 0, NULL},
    {"tailor_memory_budget_bytes", "gauge", "The memory budget of a model.", emit_model_gauge,
     g_mem_budget, 0, NULL},
    {"tailor_min_accuracy_ratio", "gauge",
     "The lowest top-1 accuracy (or agreement, see tailor_accuracy_info) a model may serve.",
     emit_model_gauge, g_min_accuracy, 0, NULL},
    {"tailor_accuracy_info", "gauge",
     "What a model's accuracies are: top-1 on labelled calibration data, or agreement with "
     "its largest subnet on unlabelled data.",
     emit_accuracy_metric, NULL, 0, NULL},
    {"tailor_degraded", "gauge", "1 when no subnet of a model meets its budget.", emit_model_gauge,
     g_degraded, 0, NULL},
    {"tailor_over_budget_info", "gauge",
     "While no subnet meets the latency budget: the part of the latency that is over "
     "(compute, queue or cpu: waiting for a CPU).",
     emit_over, NULL, 0, NULL},
    {"tailor_pinned", "gauge", "1 when a client pinned a model's subnet.", emit_model_gauge,
     g_pinned, 0, NULL},
    {"tailor_latency_correction_ratio", "gauge",
     "Online correction of predicted latency: served / predicted (EWMA).", emit_model_gauge,
     g_correction, 0, NULL},
    {"tailor_served_latency_p95_seconds", "gauge",
     "p95 of the latency served lately (arrival to answer), the controller's feedback.",
     emit_model_gauge, g_served_p95, 0, NULL},
    {"tailor_waiting_p95_seconds", "gauge",
     "p95 of what requests lately spent beyond their predicted compute.", emit_model_gauge,
     g_waiting_p95, 0, NULL},
    {"tailor_queue_p95_seconds", "gauge", "p95 of the wait for a worker, lately.", emit_model_gauge,
     g_queue_p95, 0, NULL},
    {"tailor_cpu_wait_seconds", "gauge",
     "Time our threads waited for a CPU per request over the last interval (schedstat).",
     emit_model_gauge, g_cpu_wait, 0, NULL},
    {"tailor_frontier_subnets", "gauge", "Subnets on a model's frontier.", emit_model_gauge,
     g_frontier, 0, NULL},
    {"tailor_search_progress", "gauge",
     "How far a model's frontier search is, 0 to 1 (its evaluations done); 1 once the frontier "
     "is final.",
     emit_model_gauge, g_search_progress, 0, NULL},
    {"tailor_frontier_provisional", "gauge",
     "1 while a model serves its provisional frontier (search running).", emit_model_gauge,
     g_provisional, 0, NULL},
    {"tailor_device_freq_ratio", "gauge", "Current over maximum CPU frequency.", emit_global, NULL,
     0, d_freq},
    {"tailor_device_cpu_share_ratio", "gauge", "Share of the CPU the workers can expect.",
     emit_global, NULL, 0, d_share},
    {"tailor_device_memory_available_bytes", "gauge", "MemAvailable of the device.", emit_global,
     NULL, 0, d_mem},
    {"tailor_device_cpu_pressure_ratio", "gauge", "CPU pressure stall, some avg10.", emit_global,
     NULL, 0, d_psi_cpu},
    {"tailor_device_memory_pressure_ratio", "gauge", "Memory pressure stall, some avg10.",
     emit_global, NULL, 0, d_psi_mem},
    {"tailor_connections", "gauge", "Open client connections.", emit_global, NULL, 0, s_conns},
    {"tailor_connections_evicted_total", "counter",
     "Connections stalled in a request that were closed (408) to admit a new one at the "
     "connection limit.",
     emit_global, NULL, 0, s_evicted},
    {"tailor_queue_requests", "gauge", "Inference requests waiting for a worker.", emit_global,
     NULL, 0, s_waiting},
    {"tailor_running_requests", "gauge", "Inference requests running on workers.", emit_global,
     NULL, 0, s_running},
    {"tailor_ready", "gauge", "1 when every model has plans to serve.", emit_global, NULL, 0,
     s_ready},
    {"tailor_runtime_generation", "gauge", "Generation of the served models (+1 per reload).",
     emit_global, NULL, 0, s_generation},
};

int tl_metrics_format(const struct tl_metrics *m, char **out, size_t *len) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  if (f == NULL)
    return TL_ENOMEM;
  for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
    const struct family *fam = &families[i];
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, fam->type);
    fam->emit(f, m, fam);
  }
  int failed = ferror(f);
  if (fclose(f) != 0 || failed || buf == NULL) {
    free(buf);
    return TL_ENOMEM;
  }
  *out = buf;
  *len = n;
  return 0;
}
