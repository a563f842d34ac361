/*
 * metrics.h - tailord's Prometheus metrics, served as text on GET /metrics.
 *
 * Names start with tailor_ and use base units (seconds, bytes); counters
 * end in _total.  What is kept here:
 *   tailor_requests_total{route,code}        answered HTTP requests
 *   tailor_switches_total{model,reason}      active subnet switches by class
 *   tailor_shed_total{model}                 requests answered 503 at once
 *   tailor_request_duration_seconds{model}   histograms of inference
 *   tailor_queue_duration_seconds{model}     requests: arrival to answer,
 *   tailor_compute_duration_seconds{model}   time waiting, time running
 * and gauges set by their owners: per model the active subnet
 * (tailor_active_subnet_info{model,subnet} 1), its predicted latency under
 * the current state, the budgets, the degraded and pinned flags (and
 * while degraded, tailor_over_budget_info{model,part} 1), the online
 * correction factor, the frontier's size, the controller's feedback
 * (tailor_served_latency_p95_seconds, tailor_waiting_p95_seconds,
 * tailor_queue_p95_seconds, tailor_cpu_wait_seconds); the device state (CPU
 * frequency ratio, CPU share, available memory); the server's connections,
 * queue and readiness.
 *
 * The metric families are a table in metrics.c; the output lists them in
 * that order.  A struct tl_metrics is the loop thread's alone: every
 * update and the formatting happen there.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "monitor.h"

struct tl_metrics;

/* A new, empty set in *out; TL_ENOMEM on failure. */
int tl_metrics_new(struct tl_metrics **out);
void tl_metrics_free(struct tl_metrics *m);

/* One answered HTTP request: route is an enum tl_oip_route, or -1 when
 * the request matched none (or could not be parsed). */
void tl_metrics_request(struct tl_metrics *m, int route, int status);

/* One inference request of model that ran: seconds from arrival to
 * answer, waiting in the queue, running the plan. */
void tl_metrics_infer(struct tl_metrics *m, const char *model, double total_s, double queue_s,
                      double compute_s);

/* Reason classes of switches (the label values of
 * tailor_switches_total). */
enum tl_switch_class {
  TL_SWITCH_START,     /* the first choice for a frontier */
  TL_SWITCH_LATENCY,   /* the latency budget was at risk */
  TL_SWITCH_MEMORY,    /* the memory budget was exceeded */
  TL_SWITCH_ACCURACY,  /* below the accuracy floor */
  TL_SWITCH_RECOVERED, /* a more accurate subnet fit long enough */
  TL_SWITCH_PIN,       /* pinned or unpinned by a client */
  TL_SWITCH_FRONTIER,  /* a new frontier replaced the old one */
  TL_SWITCH_COUNT
};

/* "start", "latency", ...; never NULL. */
const char *tl_switch_class_name(enum tl_switch_class c);

void tl_metrics_switch(struct tl_metrics *m, const char *model, enum tl_switch_class c);

/* Counts a request of model shed by the server (answered 503 at once). */
void tl_metrics_shed(struct tl_metrics *m, const char *model);

/* The gauges of one model. */
struct tl_metrics_model {
  const char *subnet;         /* the active member's spec; copied */
  double predicted_latency_s; /* its latency under the current state */
  double latency_budget_s;
  double memory_budget_bytes; /* 0: no memory budget */
  double min_accuracy;
  int degraded;
  int pinned;
  double correction;
  int frontier_size;
  int provisional;
  /* Feedback (negative: too few requests lately to say) */
  double served_p95_s;  /* measured p95, arrival to answer */
  double waiting_p95_s; /* p95 of served latency beyond predicted compute */
  double queue_p95_s;   /* p95 of the wait for a worker */
  double cpu_wait_s;    /* our threads' wait for a CPU per request */
  /* While degraded, the part of the latency that is over: a static
   * string, "compute", "queue" or "cpu"; NULL when not degraded or not
   * for latency. */
  const char *over;
  /* What the frontier's accuracies are, a static string: "top-1", or
   * "agreement" (no labels); NULL: not said. */
  const char *accuracy_metric;
  /* The frontier search's progress, 0..1 (1: the frontier is final);
   * negative: no search (no calibration data). */
  double search_progress;
};

/* Sets model's gauges (the model's series are created on first use). */
void tl_metrics_model_set(struct tl_metrics *m, const char *model,
                          const struct tl_metrics_model *g);

/* Forgets every model's gauges (not its counters), for a new generation
 * whose models set theirs again. */
void tl_metrics_models_clear(struct tl_metrics *m);

/* The device gauges from a sample; unknown fields are left out. */
void tl_metrics_device(struct tl_metrics *m, const struct tl_device_state *s);

struct tl_metrics_server {
  int connections;
  uint64_t evicted; /* stalled connections closed to admit others */
  int queue_waiting;
  int queue_running;
  int ready;
  uint64_t generation;
};

void tl_metrics_server_set(struct tl_metrics *m, const struct tl_metrics_server *s);

/* The exposition text (version 0.0.4) in *out (malloc'd, the caller
 * frees it) of *len bytes.  Returns 0 or TL_ENOMEM. */
int tl_metrics_format(const struct tl_metrics *m, char **out, size_t *len);

#endif
