/*
 * routes.c - tailord's routes besides inference (see server.h): server
 * and model metadata, health, metrics, and tailord's own subnets, state,
 * pin and events, each answered at once on the loop thread with a JSON
 * (or Prometheus text) body; and the route table that dispatch reads.
 */
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

static void route_server_metadata(struct conn *c, const struct tl_oip_route_match *m,
                                  int keep_alive) {
  (void)m;
  static const char *const ext[] = {"binary_tensor_data", "schedule_policy", "tailor_adaptive"};
  const struct tl_config *cfg = *c->srv->env.config;
  int n = cfg != NULL ? cfg->n_models : 0;
  const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
  if (names == NULL) {
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  for (int i = 0; i < n; i++)
    names[i] = cfg->models[i].name;
  struct tl_oip_server_meta meta = {"tailor", c->srv->env.version, ext, 3, names, n};
  struct tl_oip_body b = {0};
  struct tl_error err = {{0}};
  if (tl_oip_server_metadata(&meta, &b, &err) != 0)
    tl__send_error(c, 500, err.msg, keep_alive);
  else
    tl__send_body(c, 200, &b, keep_alive);
  tl_oip_body_free(&b);
  free(names);
}

static void route_live(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  tl__send_json(c, 200, json_pack("{s:b}", "live", 1), keep_alive);
}

/* Health per the protocol: 200 means true, a 4xx false. */
static void route_ready(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  int ready = tl_runtime_ready(*c->srv->env.current);
  tl__send_json(c, ready ? 200 : 400, json_pack("{s:b}", "ready", ready), keep_alive);
}

static void route_model_ready(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_rt_model *model = tl_runtime_model(*c->srv->env.current, m->model);
  if (model == NULL) {
    tl__find_model(c, m->model, 0, keep_alive); /* answers 404 or 503 */
    return;
  }
  int ready = model->frontier != NULL;
  tl__send_json(c, ready ? 200 : 400, json_pack("{s:s,s:b}", "name", m->model, "ready", ready),
                keep_alive);
}

static void route_model_metadata(struct conn *c, const struct tl_oip_route_match *m,
                                 int keep_alive) {
  struct tl_rt_model *model = tl__find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  struct tl_oip_tensor_meta in = {model->input_name, TL_DTYPE_FLOAT32, {0}};
  in.shape.ndim = 4;
  in.shape.dims[0] = -1;
  for (int d = 0; d < 3; d++)
    in.shape.dims[d + 1] = model->in_chw[d];
  struct tl_oip_tensor_meta *outs = calloc((size_t)model->n_outputs, sizeof *outs);
  if (outs == NULL) {
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  for (int i = 0; i < model->n_outputs; i++) {
    outs[i].name = model->output_names[i];
    outs[i].dtype = TL_DTYPE_FLOAT32;
    outs[i].shape = model->output_shapes[i];
    outs[i].shape.dims[0] = -1;
  }
  static const char *const versions[] = {"1"};
  struct tl_oip_model_meta meta = {model->cfg.name, versions, 1, NULL, &in, 1, outs,
                                   model->n_outputs};
  struct tl_oip_body b = {0};
  struct tl_error err = {{0}};
  if (tl_oip_model_metadata(&meta, &b, &err) != 0)
    tl__send_error(c, 500, err.msg, keep_alive);
  else
    tl__send_body(c, 200, &b, keep_alive);
  tl_oip_body_free(&b);
  free(outs);
}

static void route_metrics(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  struct tl_server *s = c->srv;
  tl__settle(s);
  if (s->env.metrics == NULL) {
    tl__send_error(c, 404, "no metrics", keep_alive);
    return;
  }
  struct tl_runtime *rt = *s->env.current;
  struct tl_metrics_server ms = {
      .connections = s->n_conns,
      .evicted = s->n_evicted,
      .queue_waiting = tl_workers_waiting(s->env.workers),
      .queue_running = tl_workers_running(s->env.workers),
      .ready = tl_runtime_ready(rt),
      .generation = rt != NULL ? rt->generation : 0,
  };
  tl_metrics_server_set(s->env.metrics, &ms);
  char *text = NULL;
  size_t len = 0;
  if (tl_metrics_format(s->env.metrics, &text, &len) != 0) {
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  tl__send_response(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, keep_alive, NULL,
                    0);
  free(text);
}

/* A number, or null when unknown (negative). */
static json_t *maybe_real(double v) { return v >= 0 ? json_real(v) : json_null(); }

static void route_subnets(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_rt_model *model = tl__find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  const struct tl_rt_frontier *f = model->frontier;
  int active = atomic_load(&model->ctl.active);
  json_t *list = json_array();
  json_t *root = json_pack("{s:s,s:b,s:b,s:s,s:b,s:s}", "model", model->cfg.name, "provisional",
                           f->provisional, "partial", f->partial, "active", f->m[active].text,
                           "pinned", model->ctl.pinned, "accuracy_metric", model->accuracy_metric);
  int ok = list != NULL && root != NULL;
  for (int i = 0; i < f->n && ok; i++) {
    const struct tl_rt_member *mm = &f->m[i];
    json_t *e = json_pack("{s:s,s:f,s:f,s:f,s:o,s:b,s:b}", "subnet", mm->text, "predicted_ms",
                          mm->predicted_ms, "scaled_ms", tl_controller_scaled_ms(model, i),
                          "predicted_mib", mm->predicted_mib, "accuracy", maybe_real(mm->accuracy),
                          "active", i == active, "fits", tl_controller_fits(model, i, NULL, 0));
    ok = e != NULL && json_array_append_new(list, e) == 0;
  }
  if (!ok || json_object_set_new(root, "subnets", list) != 0) {
    if (ok)
      list = NULL; /* set_new took it even on failure */
    json_decref(list);
    json_decref(root);
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  tl__send_json(c, 200, root, keep_alive);
}

static void route_state(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  tl__settle(s);
  struct tl_rt_model *model = tl__find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  const struct tl_rt_frontier *f = model->frontier;
  const struct tl_rt_control *ctl = &model->ctl;
  int active = atomic_load(&ctl->active);
  char dev[TL_DEVICE_STATE_JSON_MAX];
  tl_device_state_format(tl_controller_device(s->env.controller), dev, sizeof dev);
  json_t *device = json_loads(dev, 0, NULL);
  const struct tl_config_budget *b = &model->cfg.budget;
  json_t *root =
      json_pack("{s:s,s:I,s:s,s:f,s:f,s:b,s:b,s:s,s:f,s:{s:f,s:f,s:f},s:{s:f,s:i,s:f,s:s,s:f,s:i},"
                "s:{s:i,s:b,s:b},s:o}",
                "model", model->cfg.name, "generation", (json_int_t)(*s->env.current)->generation,
                "active", f->m[active].text, "predicted_ms", f->m[active].predicted_ms, "scaled_ms",
                tl_controller_scaled_ms(model, active), "degraded", ctl->degraded, "pinned",
                ctl->pinned, "reason", ctl->reason, "correction", ctl->correction, "scale",
                "freq_ratio", ctl->scale.freq_ratio > 0 ? ctl->scale.freq_ratio : 1.0, "cpu_share",
                ctl->scale.cpu_share > 0 ? ctl->scale.cpu_share : 1.0, "correction",
                ctl->scale.correction > 0 ? ctl->scale.correction : 1.0, "budget", "latency_p95_ms",
                b->latency_p95_ms, "memory_mib", b->memory_mib, "min_accuracy", b->min_accuracy,
                "accuracy_metric", model->accuracy_metric, "margin", b->margin, "hysteresis_ms",
                b->hysteresis_ms, "frontier", "size", f->n, "provisional", f->provisional,
                "partial", f->partial, "device", device != NULL ? device : json_object());
  json_t *load =
      json_pack("{s:f,s:f,s:o}", "rate_per_s", ctl->rate, "overhead_ms", ctl->overhead_ms,
                "quota_cores", ctl->quota_cores > 0 ? json_real(ctl->quota_cores) : json_null());
  /* What clients saw lately (null with too few requests to say), and
   * while degraded, what is over the budget and what would help. */
  const struct tl_rt_feedback *fb = &ctl->fb;
  const int seen = fb->samples >= TL_RT_FEEDBACK_MIN;
  json_t *feedback =
      json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o}", "samples", fb->samples, "served_p95_ms",
                seen ? json_real(fb->latency_p95_ms) : json_null(), "waiting_p95_ms",
                seen ? json_real(fb->excess_p95_ms) : json_null(), "queue_p95_ms",
                seen ? json_real(fb->queue_p95_ms) : json_null(), "cpu_wait_ms",
                fb->cpu_wait_ms >= 0 ? json_real(fb->cpu_wait_ms) : json_null(), "over",
                fb->over_part != NULL ? json_string(fb->over_part) : json_null(), "help",
                fb->over[0] ? json_string(fb->over) : json_null());
  if (root == NULL) {
    json_decref(load); /* set_new below takes them, even on failure */
    json_decref(feedback);
  }
  if (root == NULL || json_object_set_new(root, "load", load) != 0 ||
      json_object_set_new(root, "feedback", feedback) != 0) {
    json_decref(root);
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  tl__send_json(c, 200, root, keep_alive);
}

static void route_pin(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *model = tl__find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  const struct tl_http_request *req = &c->http.req;
  json_error_t je;
  json_t *root = req->body_len > 0 ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
  const char *text = json_string_value(json_object_get(root, "subnet"));
  if (text == NULL) {
    json_decref(root);
    tl__send_error(c, 400,
                   "the body must be a JSON object {\"subnet\": \"<spec of a frontier member>\"} "
                   "or {\"subnet\": \"auto\"}",
                   keep_alive);
    return;
  }
  struct tl_error err = {{0}};
  int rc = tl_controller_pin(s->env.controller, model, text, &err);
  json_decref(root);
  if (rc != 0) {
    tl__send_error(c, rc == TL_EBUSY ? 503 : 400, err.msg, keep_alive);
    return;
  }
  int active = atomic_load(&model->ctl.active);
  tl__send_json(c, 200,
                json_pack("{s:s,s:s,s:b}", "model", model->cfg.name, "active",
                          model->frontier->m[active].text, "pinned", model->ctl.pinned),
                keep_alive);
}

/* Events listed when the query names no limit, and the most it may name. */
#define EVENTS_DEFAULT 20
#define EVENTS_MAX 1000

/* The limit of "limit=N" (the only query the events route takes): 0 and
 * N set, or -1 after answering 400. */
static int events_limit(struct conn *c, int keep_alive, int64_t *limit) {
  const char *q = c->http.req.query;
  *limit = EVENTS_DEFAULT;
  if (q[0] == '\0')
    return 0;
  char *end = NULL;
  long long v = 0;
  if (strncmp(q, "limit=", 6) == 0 && q[6] >= '0' && q[6] <= '9') {
    errno = 0;
    v = strtoll(q + 6, &end, 10);
  }
  if (end == NULL || *end != '\0' || errno != 0 || v < 1 || v > EVENTS_MAX) {
    char msg[96];
    snprintf(msg, sizeof msg, "the query must be limit=N with N from 1 to %d", EVENTS_MAX);
    tl__send_error(c, 400, msg, keep_alive);
    return -1;
  }
  *limit = v;
  return 0;
}

/* One stored switch event as JSON; its device state is parsed back, and
 * kept as text if it is not JSON. */
static json_t *event_json(const struct tl_switch_event *e) {
  json_t *state = NULL;
  if (e->state != NULL) {
    state = json_loads(e->state, 0, NULL);
    if (state == NULL)
      state = json_string(e->state);
  }
  return json_pack("{s:I,s:I,s:o,s:s,s:s,s:o}", "id", (json_int_t)e->id, "time_ms",
                   (json_int_t)e->time_ms, "from",
                   e->from_spec != NULL ? json_string(e->from_spec) : json_null(), "to", e->to_spec,
                   "reason", e->reason, "state", state != NULL ? state : json_null());
}

static void route_events(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *model = tl__find_model(c, m->model, 0, keep_alive);
  int64_t limit = 0;
  if (model == NULL || events_limit(c, keep_alive, &limit) != 0)
    return;
  if (s->env.store == NULL) {
    tl__send_error(c, 503, "switch events are not stored: the cache could not be opened",
                   keep_alive);
    return;
  }
  struct tl_switch_event *ev = NULL;
  size_t n = 0;
  struct tl_error err = {{0}};
  if (tl_store_event_last(s->env.store, model->cfg.name, limit, &ev, &n, &err) != 0) {
    tl_log_warn(&s->env.log, "%s", err.msg);
    tl__send_error(c, 500, "cannot read the switch events from the cache", keep_alive);
    return;
  }
  json_t *list = json_array();
  int ok = list != NULL;
  for (size_t i = 0; i < n && ok; i++) {
    json_t *e = event_json(&ev[i]);
    ok = e != NULL && json_array_append_new(list, e) == 0;
  }
  free(ev);
  json_t *root = ok ? json_pack("{s:s,s:o}", "model", model->cfg.name, "events", list) : NULL;
  if (root == NULL) {
    if (!ok)
      json_decref(list);
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  tl__send_json(c, 200, root, keep_alive);
}

route_fn *const tl__routes[TL_OIP_ROUTE_COUNT] = {
    [TL_OIP_ROUTE_SERVER_METADATA] = route_server_metadata,
    [TL_OIP_ROUTE_HEALTH_LIVE] = route_live,
    [TL_OIP_ROUTE_HEALTH_READY] = route_ready,
    [TL_OIP_ROUTE_MODEL_METADATA] = route_model_metadata,
    [TL_OIP_ROUTE_MODEL_READY] = route_model_ready,
    [TL_OIP_ROUTE_MODEL_INFER] = tl__route_infer,
    [TL_OIP_ROUTE_METRICS] = route_metrics,
    [TL_OIP_ROUTE_MODEL_SUBNETS] = route_subnets,
    [TL_OIP_ROUTE_MODEL_STATE] = route_state,
    [TL_OIP_ROUTE_MODEL_PIN] = route_pin,
    [TL_OIP_ROUTE_MODEL_EVENTS] = route_events,
};
