/*
 * runtime.c - generations of served models, their frontiers with plans,
 * the inference of one request, and the builder that makes generations
 * off the loop thread (see runtime.h).
 *
 * The invariant: whatever a request was admitted with (generation,
 * frontier, member) stays alive and unchanged until the request is
 * released, whatever the loop swaps in meanwhile.
 */
#include "runtime.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "device.h"
#include "frontier.h"
#include "onnx.h"
#include "profile.h"
#include "search.h"
#include "store.h"

/* ------------------------------------------------------------- helpers */

static char *dup_or_null(const char *s, int *failed) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *failed = 1;
  return d;
}

static void model_cfg_free(struct tl_config_model *c) {
  free(c->name);
  free(c->path);
  free(c->calibration.x);
  free(c->calibration.y);
  memset(c, 0, sizeof *c);
}

/* A deep copy of src into *dst; TL_ENOMEM leaves *dst zeroed. */
static int model_cfg_copy(struct tl_config_model *dst, const struct tl_config_model *src) {
  int failed = 0;
  *dst = *src;
  dst->name = dup_or_null(src->name, &failed);
  dst->path = dup_or_null(src->path, &failed);
  dst->calibration.x = dup_or_null(src->calibration.x, &failed);
  dst->calibration.y = dup_or_null(src->calibration.y, &failed);
  if (failed) {
    model_cfg_free(dst);
    return TL_ENOMEM;
  }
  return 0;
}

/* ------------------------------------------------------------ frontier */

struct tl_rt_frontier *tl_rt_frontier_ref(struct tl_rt_frontier *f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

static void frontier_free(struct tl_rt_frontier *f) {
  for (int i = 0; i < f->n; i++) {
    struct tl_rt_member *m = &f->m[i];
    if (m->plans != NULL)
      for (int w = 0; w < f->n_workers; w++)
        tl_plan_free(m->plans[w]);
    free(m->plans);
    tl_bn_stats_free(m->bn);
  }
  free(f->m);
  free(f);
}

void tl_rt_frontier_unref(struct tl_rt_frontier *f) {
  if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    frontier_free(f);
}

int tl_rt_more_accurate(const struct tl_rt_frontier *f, int a, int b) {
  double x = f->m[a].accuracy, y = f->m[b].accuracy;
  if (x >= 0 && y >= 0 && x != y)
    return x > y;
  return a > b;
}

int tl_rt_frontier_find(const struct tl_rt_frontier *f, const struct tl_supernet *sn,
                        const char *text, struct tl_error *err) {
  struct tl_subnet_spec spec;
  if (tl_subnet_parse(sn, text, &spec, err) != 0)
    return TL_EINVAL;
  uint64_t key = tl_subnet_key(sn, &spec);
  for (int i = 0; i < f->n; i++)
    if (f->m[i].key == key)
      return i;
  char canon[TL_RT_SPEC_MAX];
  return tl_fail(err, TL_ENOENT, "subnet \"%s\" is not on the frontier (GET .../subnets lists it)",
                 tl_subnet_format(sn, &spec, canon, sizeof canon));
}

/* Checks the outputs of a model's first plan and records their names and
 * one-image shapes in m. */
static int record_outputs(struct tl_rt_model *m, const struct tl_plan *plan, struct tl_error *err) {
  int n = tl_plan_n_outputs(plan);
  if (n < 1 || n > TL_OIP_TENSORS_MAX)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: the model has %d outputs; tailord serves 1 to %d",
                   m->cfg.path, n, TL_OIP_TENSORS_MAX);
  for (int i = 0; i < n; i++) {
    const struct tl_tensor *t = tl_plan_output(plan, i);
    char s[64];
    if (t->dtype != TL_DTYPE_FLOAT32)
      return tl_fail(err, TL_EUNSUPPORTED, "%s: output \"%s\" is %s; tailord serves float32",
                     m->cfg.path, tl_plan_output_name(plan, i), tl_dtype_name(t->dtype));
    if (t->shape.ndim < 1 || t->shape.dims[0] != 1)
      return tl_fail(err, TL_EUNSUPPORTED,
                     "%s: output \"%s\" has shape %s; tailord needs a leading batch "
                     "dimension of 1",
                     m->cfg.path, tl_plan_output_name(plan, i),
                     tl_shape_str(&t->shape, s, sizeof s));
  }
  m->output_names = calloc((size_t)n, sizeof *m->output_names);
  m->output_shapes = calloc((size_t)n, sizeof *m->output_shapes);
  if (m->output_names == NULL || m->output_shapes == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  m->n_outputs = n;
  for (int i = 0; i < n; i++) {
    m->output_shapes[i] = tl_plan_output(plan, i)->shape;
    if ((m->output_names[i] = strdup(tl_plan_output_name(plan, i))) == NULL)
      return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  return 0;
}

/* A frontier of model m from members src[0..n) (their bn is taken: set
 * to NULL in src), with plans for every worker. */
static int frontier_build(struct tl_rt_model *m, struct tl_frontier_member *src, int n,
                          int provisional, int partial, int n_workers, struct tl_rt_frontier **out,
                          struct tl_error *err) {
  struct tl_rt_frontier *f = calloc(1, sizeof *f);
  if (f == NULL || (f->m = calloc((size_t)n, sizeof *f->m)) == NULL) {
    free(f);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  atomic_init(&f->refs, 1);
  f->provisional = provisional;
  f->partial = partial;
  f->n_workers = n_workers;
  f->n = n;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    struct tl_rt_member *mm = &f->m[i];
    mm->spec = src[i].spec;
    tl_subnet_format(m->sn, &mm->spec, mm->text, sizeof mm->text);
    mm->key = tl_subnet_key(m->sn, &mm->spec);
    mm->predicted_ms = src[i].predicted_ms;
    mm->predicted_mib = src[i].predicted_mib;
    mm->accuracy = src[i].accuracy;
    mm->bn = src[i].bn;
    src[i].bn = NULL;
    if ((mm->plans = calloc((size_t)n_workers, sizeof *mm->plans)) == NULL) {
      rc = tl_fail(err, TL_ENOMEM, "out of memory");
      break;
    }
    struct tl_subnet_plan_options po = {.batch = 1, .bn = mm->bn};
    for (int w = 0; w < n_workers && rc == 0; w++) {
      rc = tl_subnet_plan(m->sn, &mm->spec, &po, &mm->plans[w], err);
      if (rc == 0 && m->output_names == NULL)
        rc = record_outputs(m, mm->plans[w], err);
    }
  }
  if (rc != 0) {
    frontier_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

/* ---------------------------------------------------------- generations */

struct tl_runtime *tl_runtime_ref(struct tl_runtime *rt) {
  atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
  return rt;
}

static void model_free(struct tl_rt_model *m) {
  tl_rt_frontier_unref(m->frontier); /* plans first: they borrow the graph */
  m->frontier = NULL;
  tl_supernet_free(m->sn);
  tl_graph_free(m->g);
  if (m->has_calib)
    tl_calib_free(&m->calib);
  free(m->input_name);
  for (int i = 0; i < m->n_outputs && m->output_names != NULL; i++)
    free(m->output_names[i]);
  free(m->output_names);
  free(m->output_shapes);
  model_cfg_free(&m->cfg);
}

static void runtime_free(struct tl_runtime *rt) {
  for (int i = 0; i < rt->n_models; i++)
    model_free(&rt->models[i]);
  free(rt->models);
  free(rt);
}

void tl_runtime_unref(struct tl_runtime *rt) {
  if (rt != NULL && atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
    runtime_free(rt);
}

struct tl_rt_model *tl_runtime_model(struct tl_runtime *rt, const char *name) {
  if (rt == NULL)
    return NULL;
  for (int i = 0; i < rt->n_models; i++)
    if (strcmp(rt->models[i].cfg.name, name) == 0)
      return &rt->models[i];
  return NULL;
}

int tl_runtime_ready(const struct tl_runtime *rt) {
  if (rt == NULL)
    return 0;
  for (int i = 0; i < rt->n_models; i++)
    if (rt->models[i].frontier == NULL)
      return 0;
  return 1;
}

/* ------------------------------------------------------------ requests */

/* What both admissions share: the references, the active member and the
 * body; the caller sets pinned and scale. */
static void admit(struct tl_rt_request *req, struct tl_runtime *rt, struct tl_rt_model *model,
                  struct tl_rt_frontier *frontier, char *body, size_t len, int64_t json_len,
                  uint64_t arrival_ns) {
  memset(req, 0, sizeof *req);
  req->rt = tl_runtime_ref(rt);
  req->model = model;
  req->frontier = tl_rt_frontier_ref(frontier);
  int active = atomic_load_explicit(&model->ctl.active, memory_order_acquire);
  req->active = active >= 0 && active < req->frontier->n ? active : req->frontier->n - 1;
  req->arrival_ns = arrival_ns;
  req->body = body;
  req->body_len = len;
  req->json_len = json_len;
  req->status = 500;
  req->member = -1;
}

void tl_rt_request_admit(struct tl_rt_request *req, struct tl_runtime *rt,
                         struct tl_rt_model *model, char *body, size_t len, int64_t json_len,
                         uint64_t arrival_ns) {
  admit(req, rt, model, model->frontier, body, len, json_len, arrival_ns);
  req->pinned = model->ctl.pinned;
  req->scale = model->ctl.scale;
  req->scale.correction = model->ctl.correction;
}

void tl_rt_request_admit_after(struct tl_rt_request *req, const struct tl_rt_request *prev,
                               char *body, size_t len, int64_t json_len, uint64_t arrival_ns) {
  admit(req, prev->rt, prev->model, prev->frontier, body, len, json_len, arrival_ns);
  req->pinned = prev->pinned;
  req->scale = prev->scale;
}

void tl_rt_request_release(struct tl_rt_request *req) {
  free(req->body);
  req->body = NULL;
  tl_oip_body_free(&req->resp);
  tl_rt_frontier_unref(req->frontier);
  req->frontier = NULL;
  tl_runtime_unref(req->rt);
  req->rt = NULL;
}

/* Ends req with an error: its status and {"error": msg}. */
static void request_fail(struct tl_rt_request *req, int code, const char *msg) {
  req->status = tl_oip_error_status(code);
  tl_oip_body_free(&req->resp);
  if (tl_oip_error_body(msg, &req->resp, NULL) != 0)
    memset(&req->resp, 0, sizeof req->resp); /* the server sends a fixed body */
}

static void shape_text(const struct tl_shape *s, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->ndim && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%s%lld", i ? "," : "[", (long long)s->dims[i]);
    used += n > 0 ? (size_t)n : 0;
  }
  if (used < size)
    snprintf(buf + used, size - used, s->ndim ? "]" : "[]");
}

/* Checks the request's one input against the model; on success *x is it
 * and *images the batch. */
static int check_input(const struct tl_rt_model *m, const struct tl_oip_request *in,
                       const struct tl_oip_input **x, int64_t *images, struct tl_error *err) {
  if (in->n_inputs != 1)
    return tl_fail(err, TL_EFORMAT, "model \"%s\" takes one input, \"%s\"; the request has %d",
                   m->cfg.name, m->input_name, in->n_inputs);
  const struct tl_oip_input *t = &in->inputs[0];
  if (strcmp(t->name, m->input_name) != 0)
    return tl_fail(err, TL_EFORMAT, "model \"%s\" has no input \"%s\"; its input is \"%s\"",
                   m->cfg.name, t->name, m->input_name);
  if (t->dtype != TL_DTYPE_FLOAT32 && t->dtype != TL_DTYPE_UINT8)
    return tl_fail(err, TL_EDTYPE,
                   "input \"%s\" is %s; model \"%s\" takes FP32, or UINT8 pixels it scales "
                   "by %g",
                   t->name, tl_oip_dtype_name(t->dtype), m->cfg.name, m->cfg.calibration.scale);
  int ok = t->shape.ndim == 4 && t->shape.dims[0] >= 1;
  for (int d = 1; d < 4 && ok; d++)
    ok = t->shape.dims[d] == m->in_chw[d - 1];
  if (!ok) {
    char s[128];
    shape_text(&t->shape, s, sizeof s);
    return tl_fail(err, TL_ESHAPE,
                   "input \"%s\" has shape %s; model \"%s\" takes [N,%lld,%lld,%lld] with N >= 1 "
                   "images",
                   t->name, s, m->cfg.name, (long long)m->in_chw[0], (long long)m->in_chw[1],
                   (long long)m->in_chw[2]);
  }
  *x = t;
  *images = t->shape.dims[0];
  return 0;
}

/* The outputs to send: indices into the model's outputs, in the order
 * the request named them (all of them when it named none). */
static int pick_outputs(const struct tl_rt_model *m, const struct tl_oip_request *in, int *which,
                        int *n, struct tl_error *err) {
  if (in->n_outputs == 0) {
    for (int i = 0; i < m->n_outputs; i++)
      which[i] = i;
    *n = m->n_outputs;
    return 0;
  }
  for (int k = 0; k < in->n_outputs; k++) {
    int found = -1;
    for (int i = 0; i < m->n_outputs && found < 0; i++)
      if (strcmp(in->outputs[k].name, m->output_names[i]) == 0)
        found = i;
    if (found < 0)
      return tl_fail(err, TL_EFORMAT, "model \"%s\" has no output \"%s\"; its first is \"%s\"",
                     m->cfg.name, in->outputs[k].name, m->output_names[0]);
    which[k] = found;
  }
  *n = in->n_outputs;
  return 0;
}

/* When a request with parameters.timeout of timeout_us must be answered:
 * UINT64_MAX for no deadline (0, or one too far to count in ns). */
static uint64_t deadline_ns(const struct tl_rt_request *req, int64_t timeout_us) {
  if (timeout_us <= 0 || (uint64_t)timeout_us > (UINT64_MAX - req->arrival_ns) / 1000u)
    return UINT64_MAX;
  return req->arrival_ns + (uint64_t)timeout_us * 1000u;
}

/* The member to run: see tl_rt_request_run(). */
static int pick_member(struct tl_rt_request *req, const struct tl_oip_request *in, int64_t images,
                       uint64_t now, struct tl_error *err) {
  const struct tl_rt_frontier *f = req->frontier;
  if (in->subnet != NULL)
    return tl_rt_frontier_find(f, req->model->sn, in->subnet, err);
  uint64_t deadline = deadline_ns(req, in->timeout_us);
  if (deadline == UINT64_MAX || req->pinned)
    return req->active;
  /* Deadline: the most accurate member, no more accurate than the one
   * admitted, whose predicted time for the whole batch fits in what is
   * left (the queue wait is already spent).  None: the fastest. */
  double left_ms = (double)(deadline - now) / 1e6;
  for (int i = req->active; i > 0; i--)
    if (tl_latency_scale(f->m[i].predicted_ms, &req->scale) * (double)images <= left_ms)
      return i;
  return 0;
}

/* Fault injection (tests): a wait every request makes before its worker
 * starts it, in µs; 0 in service. */
static atomic_long inject_delay_us;

void tl_rt_inject_delay(long us) { atomic_store(&inject_delay_us, us > 0 ? us : 0); }

void tl_rt_request_run(struct tl_rt_request *req, int worker) {
  struct tl_rt_model *m = req->model;
  struct tl_oip_request in = {0};
  struct tl_error err = {{0}};
  float **outs = NULL;
  int which[TL_OIP_TENSORS_MAX], n_out = 0;
  req->picked_ns = tl_now_ns();
  const long delay_us = atomic_load(&inject_delay_us);
  if (delay_us > 0) {
    struct timespec ts = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  req->start_ns = tl_now_ns();

  int rc = tl_oip_parse_infer(req->body, req->body_len, req->json_len, &in, &err);
  const struct tl_oip_input *x = NULL;
  int64_t images = 0;
  if (rc == 0)
    rc = check_input(m, &in, &x, &images, &err);
  if (rc == 0)
    rc = pick_outputs(m, &in, which, &n_out, &err);
  if (rc != 0) {
    request_fail(req, rc, err.msg);
    goto done;
  }
  uint64_t now = tl_now_ns();
  if (now >= deadline_ns(req, in.timeout_us)) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "the request's deadline (timeout %lld us) passed after %.0f us in the queue, "
             "before it could run",
             (long long)in.timeout_us, (double)(now - req->arrival_ns) / 1e3);
    request_fail(req, TL_EBUSY, msg);
    goto done;
  }
  int mi = pick_member(req, &in, images, now, &err);
  if (mi < 0) { /* parameters.subnet names no frontier member: the client's error */
    request_fail(req, TL_EFORMAT, err.msg);
    goto done;
  }
  struct tl_plan *plan = req->frontier->m[mi].plans[worker];

  /* Output buffers for the whole batch; the plan's own hold one image. */
  outs = calloc((size_t)m->n_outputs, sizeof *outs);
  if (outs == NULL) {
    request_fail(req, TL_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < m->n_outputs; i++) {
    int64_t per = tl_shape_numel(&m->output_shapes[i]);
    if (per <= 0 || images > INT64_MAX / per || (uint64_t)(images * per) > SIZE_MAX / 4 ||
        (outs[i] = malloc((size_t)(images * per) * sizeof(float))) == NULL) {
      request_fail(req, TL_ENOMEM, "out of memory for the outputs");
      goto done;
    }
  }

  struct tl_tensor *pin = tl_plan_input(plan, 0);
  float *dst = pin->data;
  size_t chw = (size_t)(m->in_chw[0] * m->in_chw[1] * m->in_chw[2]);
  float scale = (float)m->cfg.calibration.scale;
  uint64_t t0 = tl_now_ns();
  for (int64_t k = 0; k < images; k++) {
    if (x->dtype == TL_DTYPE_FLOAT32) {
      memcpy(dst, (const float *)x->data + (size_t)k * chw, chw * sizeof(float));
    } else {
      const uint8_t *p = (const uint8_t *)x->data + (size_t)k * chw;
      for (size_t j = 0; j < chw; j++)
        dst[j] = (float)p[j] * scale;
    }
    tl_plan_run(plan);
    for (int i = 0; i < m->n_outputs; i++) {
      size_t per = (size_t)tl_shape_numel(&m->output_shapes[i]);
      memcpy(outs[i] + (size_t)k * per, tl_plan_output(plan, i)->data, per * sizeof(float));
    }
  }
  req->compute_ns = tl_now_ns() - t0;
  req->member = mi;
  req->images = images;

  struct tl_oip_output o[TL_OIP_TENSORS_MAX];
  for (int k = 0; k < n_out; k++) {
    int i = which[k];
    o[k].name = m->output_names[i];
    o[k].shape = m->output_shapes[i];
    o[k].shape.dims[0] = images;
    o[k].data = outs[i];
    o[k].binary = tl_oip_output_binary(&in, m->output_names[i]);
  }
  struct tl_oip_response r = {.model_name = m->cfg.name,
                              .id = in.id,
                              .subnet = req->frontier->m[mi].text,
                              .n_outputs = n_out,
                              .outputs = o};
  rc = tl_oip_response_build(&r, &req->resp, &err);
  if (rc != 0)
    request_fail(req, rc == TL_ERANGE ? TL_EINTERNAL : rc, err.msg);
  else
    req->status = 200;

done:
  if (outs != NULL)
    for (int i = 0; i < m->n_outputs; i++)
      free(outs[i]);
  free(outs);
  tl_oip_request_free(&in);
  /* The body is no longer needed: let it go before the response waits
   * for the loop. */
  free(req->body);
  req->body = NULL;
  req->end_ns = tl_now_ns();
}

/* -------------------------------------------------------------- builder */

struct job {
  uint64_t generation;
  int n_models;
  struct tl_config_model *models; /* deep copies */
  struct job *next;
};

struct tl_rt_builder {
  struct tl_rt_builder_env env; /* database and device_root: our copies */
  uv_async_t async;
  pthread_t thread;
  int thread_started;

  pthread_mutex_t lock; /* guards everything below */
  pthread_cond_t cond;
  struct job *jobs, *jobs_tail;
  struct tl_rt_event *events, *events_tail;
  int stop;
  int running;       /* a job (or its searches) is being worked on */
  atomic_int cancel; /* set with stop: a search running stops early */

  /* the builder thread's alone */
  struct tl_store *st;
  int64_t device_id;
};

static void job_free(struct job *j) {
  if (j == NULL)
    return;
  for (int i = 0; i < j->n_models; i++)
    model_cfg_free(&j->models[i]);
  free(j->models);
  free(j);
}

static void event_free(struct tl_rt_event *ev) {
  tl_rt_frontier_unref(ev->frontier);
  tl_runtime_unref(ev->rt);
  free(ev);
}

/* Queues ev for the loop.  The loop frees it. */
static void post(struct tl_rt_builder *b, struct tl_rt_event *ev) {
  pthread_mutex_lock(&b->lock);
  ev->next = NULL;
  if (b->events_tail != NULL)
    b->events_tail->next = ev;
  else
    b->events = ev;
  b->events_tail = ev;
  pthread_mutex_unlock(&b->lock);
  uv_async_send(&b->async);
}

static void post_failed(struct tl_rt_builder *b, uint64_t generation, const char *msg) {
  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_log_err(&b->env.log, "generation %llu failed (%s) and out of memory to say so",
               (unsigned long long)generation, msg);
    return;
  }
  ev->type = TL_RT_EVENT_FAILED;
  ev->generation = generation;
  snprintf(ev->message, sizeof ev->message, "%s", msg);
  post(b, ev);
}

/* Runs on the loop thread when events were posted (coalesced). */
static void on_async(uv_async_t *h) {
  struct tl_rt_builder *b = h->data;
  pthread_mutex_lock(&b->lock);
  struct tl_rt_event *ev = b->events;
  b->events = b->events_tail = NULL;
  pthread_mutex_unlock(&b->lock);
  while (ev != NULL) {
    struct tl_rt_event *next = ev->next;
    b->env.on_event(b->env.ctx, ev);
    ev->rt = NULL;
    ev->frontier = NULL;
    event_free(ev);
    ev = next;
  }
}

/* Loads model m's graph, SuperNet and calibration data, and checks its
 * input. */
static int model_load(struct tl_rt_model *m, struct tl_error *err) {
  m->accuracy_metric = "top-1";
  int rc = tl_onnx_load(m->cfg.path, &m->g, err);
  if (rc != 0)
    return rc;
  const struct tl_graph *g = m->g;
  if (g->n_inputs != 1)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: tailord serves models with one input; this one has %d", m->cfg.path,
                   g->n_inputs);
  const struct tl_value *v = &g->values[g->inputs[0]];
  if (v->dtype != TL_DTYPE_FLOAT32 && v->dtype != TL_DTYPE_UNDEFINED)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: input \"%s\" is %s; tailord serves float32 models",
                   m->cfg.path, v->name, tl_dtype_name(v->dtype));
  if (v->shape.ndim != 4 || v->shape.dims[1] <= 0 || v->shape.dims[2] <= 0 || v->shape.dims[3] <= 0)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: input \"%s\" is not an image batch N x C x H x W with known C, H, W",
                   m->cfg.path, v->name);
  for (int d = 0; d < 3; d++)
    m->in_chw[d] = v->shape.dims[d + 1];
  if ((m->input_name = strdup(v->name)) == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");

  /* The config's space, as tailorctl's --widths and --res-steps:
   * resolutions from 50 % to 100 % of the native side in resolution_steps
   * steps (0: the native side only), so that both share cached
   * frontiers. */
  struct tl_supernet_options so = {0};
  so.n_widths = m->cfg.space.widths.n;
  for (int i = 0; i < so.n_widths; i++)
    so.widths[i] = (float)m->cfg.space.widths.v[i];
  if (m->cfg.space.resolution_steps == 0) {
    so.n_res = 1;
    so.res[0] = 1.f;
  } else {
    so.res_steps = m->cfg.space.resolution_steps;
  }
  if ((rc = tl_supernet_build(m->g, &so, &m->sn, err)) != 0)
    return rc;

  if (m->cfg.calibration.x != NULL) {
    rc = tl_calib_load(m->cfg.calibration.x, m->cfg.calibration.y, (float)m->cfg.calibration.scale,
                       &m->calib, err);
    if (rc != 0)
      return rc;
    m->has_calib = 1;
    m->accuracy_metric = tl_calib_metric(&m->calib);
    const struct tl_shape *s = &m->calib.x.shape;
    if (s->ndim != 4 || s->dims[1] != m->in_chw[0] || s->dims[2] != m->in_chw[1] ||
        s->dims[3] != m->in_chw[2]) {
      char a[64];
      return tl_fail(err, TL_ESHAPE,
                     "%s: calibration images are %s but model %s takes N x %lld x %lld x %lld",
                     m->cfg.calibration.x, tl_shape_str(s, a, sizeof a), m->cfg.path,
                     (long long)m->in_chw[0], (long long)m->in_chw[1], (long long)m->in_chw[2]);
    }
  }
  return 0;
}

/* The search options of m's config. */
static struct tl_search_options search_options(const struct tl_rt_model *m) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return (struct tl_search_options){
      .k = m->cfg.search.k,
      .est_images = m->cfg.search.images,
      .recalib_images = m->cfg.search.images < 500 ? m->cfg.search.images : 500,
      .candidates = m->cfg.search.candidates,
      .time_budget_s = m->cfg.search.time_budget_s,
      .threads = m->cfg.search.threads > 0 ? m->cfg.search.threads
                 : cpus > 0                ? (int)(cpus < 64 ? cpus : 64)
                                           : 1,
  };
}

/* 1 if the cache holds a frontier for m on this device. */
static int frontier_cached(struct tl_rt_builder *b, struct tl_rt_model *m) {
  if (!m->has_calib)
    return 0;
  int n = 0;
  struct tl_error err = {{0}};
  struct tl_search_options so = search_options(m);
  int rc = tl_frontier_cached(m->sn, m->g, b->st, b->device_id, &m->calib, &so, &n, &err);
  if (rc != 0)
    tl_log_warn(&b->env.log, "%s: reading the cached frontier: %s", m->cfg.name, err.msg);
  return rc == 0 && n > 0;
}

/* A search's progress in the log: each phase as it starts, and where it
 * is every SEARCH_LOG_S seconds; in the model's search_permille always.
 * With rt, each partial frontier goes to the loop as it comes. */
#define SEARCH_LOG_S 15
struct search_progress {
  struct tl_rt_builder *b;
  struct tl_rt_model *m;
  struct tl_runtime *rt; /* NULL: partial frontiers are not served */
  int index;             /* m's in rt */
  const char *phase;
  uint64_t next_log_ns;
};

static void on_search_progress(void *ctx, const char *phase, int done, int total, double overall) {
  struct search_progress *p = ctx;
  atomic_store(&p->m->search_permille, (int)(overall * 999)); /* 1000 once final */
  uint64_t now = uv_hrtime();
  int new_phase = p->phase == NULL || strcmp(p->phase, phase) != 0;
  if (!new_phase && now < p->next_log_ns)
    return;
  p->phase = phase;
  p->next_log_ns = now + (uint64_t)SEARCH_LOG_S * 1000000000u;
  tl_log_info(&p->b->env.log, "%s: search %.0f %% done: %s %d/%d", p->m->cfg.name, 100 * overall,
              phase, done, total);
}

static void post_frontier(struct tl_rt_builder *b, struct tl_runtime *rt, int index,
                          struct tl_rt_frontier *f);

/* A better frontier found on the way: served at once. */
static void on_search_partial(void *ctx, struct tl_frontier_member *f, int n) {
  struct search_progress *p = ctx;
  struct tl_rt_frontier *rf = NULL;
  struct tl_error err = {{0}};
  if (atomic_load(&p->b->cancel) != 0) { /* stopping: no plans to build now */
    tl_frontier_free(f, n);
    return;
  }
  if (p->rt != NULL && frontier_build(p->m, f, n, 0, 1, p->b->env.workers, &rf, &err) == 0) {
    tl_log_info(&p->b->env.log, "%s: the search found a better frontier of %d subnets on the way",
                p->m->cfg.name, n);
    post_frontier(p->b, p->rt, p->index, rf);
  } else if (p->rt != NULL) {
    tl_log_warn(&p->b->env.log, "%s: a partial frontier was not served: %s", p->m->cfg.name,
                err.msg);
  }
  tl_frontier_free(f, n);
}

/* The frontier from the cache, or after a search (tl_frontier_obtain);
 * when rt is given, m is its model `index` and partial frontiers are
 * served while the search runs. */
static int frontier_obtain(struct tl_rt_builder *b, struct tl_rt_model *m, struct tl_runtime *rt,
                           int index, struct tl_rt_frontier **out, struct tl_error *err) {
  struct search_progress progress = {.b = b, .m = m, .rt = rt, .index = index};
  struct tl_search_options so = search_options(m);
  so.progress = on_search_progress;
  so.partial = on_search_partial;
  so.ctx = &progress;
  so.stop = &b->cancel;
  struct tl_frontier_member *f = NULL;
  int n = 0;
  struct tl_frontier_report rep;
  int rc = tl_frontier_obtain(m->sn, m->g, b->st, b->device_id, &m->calib, &so, NULL, NULL, &f, &n,
                              &rep, err);
  if (rc != 0)
    return rc;
  if (rep.cached)
    tl_log_info(&b->env.log, "%s: frontier of %d subnets from the cache (%.1f ms)", m->cfg.name, n,
                rep.load_ms);
  else
    tl_log_info(&b->env.log,
                "%s: frontier of %d subnets searched in %.1f s (%d evaluations, %d op signatures "
                "profiled%s)",
                m->cfg.name, n, rep.search_s, rep.evaluated, rep.profiled_signatures,
                rep.complete ? "" : "; cut short by search.time_budget_s");
  rc = frontier_build(m, f, n, 0, 0, b->env.workers, out, err);
  if (rc == 0)
    atomic_store(&m->search_permille, 1000);
  tl_frontier_free(f, n);
  return rc;
}

/* The provisional frontier {smallest, largest}: their latencies predicted
 * from the device's op table, completed by profiling what it lacks, and
 * the smallest recalibrated when there is calibration data. */
static int frontier_provisional(struct tl_rt_builder *b, struct tl_rt_model *m,
                                struct tl_rt_frontier **out, struct tl_error *err) {
  struct tl_op_table *t = NULL;
  struct tl_frontier_member two[2];
  memset(two, 0, sizeof two);
  if (tl_op_table_new(&t) != 0)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  int loaded = 0;
  struct tl_profile_report rep = {0};
  struct tl_error werr = {{0}};
  if (tl_latency_load(b->st, b->device_id, t, &loaded, &werr) != 0)
    tl_log_warn(&b->env.log, "%s: the cache's op latencies cannot be read (%s): profiling all",
                m->cfg.name, werr.msg);
  int rc = tl_latency_profile(m->sn, NULL, t, &rep, err);
  if (rc == 0 && rep.new_signatures > 0) {
    tl_log_info(&b->env.log, "%s: profiled %d op signatures in %.2f s (%d plans)", m->cfg.name,
                rep.new_signatures, rep.seconds, rep.plans);
    if (tl_latency_save(b->st, b->device_id, t, 11, &werr) != 0)
      tl_log_warn(&b->env.log, "%s: keeping the op latencies in the cache: %s", m->cfg.name,
                  werr.msg);
  }
  tl_subnet_smallest(m->sn, &two[0].spec);
  tl_subnet_largest(m->sn, &two[1].spec);
  for (int i = 0; i < 2 && rc == 0; i++) {
    struct tl_prediction p;
    rc = tl_latency_predict(m->sn, t, &two[i].spec, &p, err);
    two[i].predicted_ms = p.latency_ms;
    two[i].predicted_mib = p.mem_mib;
    two[i].accuracy = -1;
  }
  tl_op_table_free(t);
  /* The smallest subnet with the model's own BatchNorm statistics (the
   * largest's) answers little better than chance: recalibrate it on a
   * few calibration batches first, which takes well under a second. */
  if (rc == 0 && m->has_calib) {
    int64_t images = m->calib.n < 500 ? m->calib.n : 500;
    int batch = images < 100 ? (int)images : 100;
    rc = tl_subnet_recalibrate(m->sn, &two[0].spec, &m->calib, images, batch, &b->cancel,
                               &two[0].bn, err);
  }
  if (rc == 0)
    rc = frontier_build(m, two, 2, 1, 0, b->env.workers, out, err);
  tl_bn_stats_free(two[0].bn); /* NULL when frontier_build took it */
  return rc;
}

struct search_ctx {
  struct tl_rt_builder *b;
  struct tl_runtime *rt;
};

/* Hands frontier f of model `index` of rt to the loop (which takes f). */
static void post_frontier(struct tl_rt_builder *b, struct tl_runtime *rt, int index,
                          struct tl_rt_frontier *f) {
  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_rt_frontier_unref(f);
    tl_log_err(&b->env.log, "%s: out of memory publishing the frontier",
               rt->models[index].cfg.name);
    return;
  }
  ev->type = TL_RT_EVENT_FRONTIER;
  ev->generation = rt->generation;
  ev->rt = tl_runtime_ref(rt);
  ev->model = index;
  ev->frontier = f;
  post(b, ev);
}

/* The searches of a generation, on a thread of their own at low priority
 * so that serving goes first. */
static void *search_main(void *arg) {
  struct search_ctx *sc = arg;
  struct tl_rt_builder *b = sc->b;
  if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) != 0)
    tl_log_debug(&b->env.log, "search thread: setpriority: %s", strerror(errno));
  for (int i = 0; i < sc->rt->n_models; i++) {
    struct tl_rt_model *m = &sc->rt->models[i];
    if (!m->needs_search)
      continue;
    pthread_mutex_lock(&b->lock);
    int stop = b->stop;
    pthread_mutex_unlock(&b->lock);
    if (stop)
      break;
    tl_log_info(&b->env.log, "%s: searching the frontier in the background", m->cfg.name);
    struct tl_error err = {{0}};
    struct tl_rt_frontier *f = NULL;
    int rc = frontier_obtain(b, m, sc->rt, i, &f, &err);
    if (rc == TL_ECANCELED) {
      tl_log_info(&b->env.log, "%s: frontier search stopped; it starts again next time",
                  m->cfg.name);
      break;
    }
    if (rc != 0) {
      tl_log_err(&b->env.log, "%s: the frontier search failed, serving the frontier it has: %s",
                 m->cfg.name, err.msg);
      continue;
    }
    post_frontier(b, sc->rt, i, f);
  }
  return NULL;
}

/* Builds the generation of job j, publishes it and runs its searches. */
static void run_job(struct tl_rt_builder *b, struct job *j) {
  struct tl_error err = {{0}};
  struct tl_runtime *rt = calloc(1, sizeof *rt);
  if (rt == NULL || (rt->models = calloc((size_t)j->n_models, sizeof *rt->models)) == NULL) {
    free(rt);
    post_failed(b, j->generation, "out of memory");
    return;
  }
  atomic_init(&rt->refs, 1);
  rt->generation = j->generation;
  rt->n_workers = b->env.workers;
  rt->n_models = j->n_models;
  for (int i = 0; i < j->n_models; i++) {
    /* take the job's copy */
    rt->models[i].cfg = j->models[i];
    memset(&j->models[i], 0, sizeof j->models[i]);
    rt->models[i].ctl.correction = 1;
  }

  int rc = 0;
  for (int i = 0; i < rt->n_models && rc == 0; i++) {
    struct tl_rt_model *m = &rt->models[i];
    double t0 = (double)tl_now_ns();
    rc = model_load(m, &err);
    if (rc == 0 && frontier_cached(b, m)) {
      rc = frontier_obtain(b, m, NULL, i, &m->frontier, &err);
    } else if (rc == 0) {
      rc = frontier_provisional(b, m, &m->frontier, &err);
      m->needs_search = m->has_calib;
      atomic_store(&m->search_permille, m->has_calib ? 0 : -1); /* -1: no search */
      if (rc == 0 && !m->has_calib)
        tl_log_warn(&b->env.log,
                    "%s: no calibration data, so no search: serving the smallest and largest "
                    "subnets only",
                    m->cfg.name);
    }
    if (rc != 0) {
      char msg[TL_ERROR_MAX + 80];
      snprintf(msg, sizeof msg, "model \"%s\": %s", m->cfg.name, err.msg);
      post_failed(b, j->generation, msg);
      tl_runtime_unref(rt);
      return;
    }
    tl_log_info(&b->env.log, "%s: %s frontier of %d subnets with plans for %d workers in %.0f ms",
                m->cfg.name, m->frontier->provisional ? "provisional" : "cached", m->frontier->n,
                b->env.workers, ((double)tl_now_ns() - t0) / 1e6);
  }

  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_runtime_unref(rt);
    post_failed(b, j->generation, "out of memory");
    return;
  }
  ev->type = TL_RT_EVENT_READY;
  ev->generation = j->generation;
  ev->rt = tl_runtime_ref(rt); /* the loop's; ours is kept for the searches */
  post(b, ev);

  int searches = 0;
  for (int i = 0; i < rt->n_models; i++)
    searches += rt->models[i].needs_search;
  if (searches > 0) {
    struct search_ctx sc = {b, rt};
    pthread_t t;
    int e = pthread_create(&t, NULL, search_main, &sc);
    if (e != 0)
      tl_log_err(&b->env.log, "cannot start the search thread: %s", strerror(e));
    else
      pthread_join(t, NULL);
  }
  tl_runtime_unref(rt);
}

static void *builder_main(void *arg) {
  struct tl_rt_builder *b = arg;
  for (;;) {
    pthread_mutex_lock(&b->lock);
    while (!b->stop && b->jobs == NULL)
      pthread_cond_wait(&b->cond, &b->lock);
    if (b->stop) {
      pthread_mutex_unlock(&b->lock);
      break;
    }
    struct job *j = b->jobs;
    b->jobs = j->next;
    if (b->jobs == NULL)
      b->jobs_tail = NULL;
    b->running = 1;
    pthread_mutex_unlock(&b->lock);

    struct tl_error err = {{0}};
    int rc = 0;
    if (b->st == NULL) {
      struct tl_device_fp fp;
      rc = tl_store_open(b->env.database, &b->st, NULL, &err);
      if (rc == 0)
        rc = tl_device_fingerprint(b->env.device_root, b->env.threads, &fp, &err);
      if (rc == 0)
        rc = tl_store_device(b->st, &fp, &b->device_id, &err);
      if (rc != 0) {
        tl_store_close(b->st);
        b->st = NULL;
      }
    }
    if (rc != 0)
      post_failed(b, j->generation, err.msg);
    else
      run_job(b, j);
    job_free(j);

    pthread_mutex_lock(&b->lock);
    b->running = 0;
    pthread_cond_broadcast(&b->cond); /* tl_rt_builder_stop may wait for this */
    pthread_mutex_unlock(&b->lock);
  }
  return NULL;
}

static void builder_closed(uv_handle_t *h) {
  struct tl_rt_builder *b = h->data;
  pthread_cond_destroy(&b->cond);
  pthread_mutex_destroy(&b->lock);
  free((char *)b->env.database);
  free((char *)b->env.device_root);
  free(b);
}

int tl_rt_builder_start(const struct tl_rt_builder_env *env, struct tl_rt_builder **out,
                        struct tl_error *err) {
  struct tl_rt_builder *b = calloc(1, sizeof *b);
  if (b == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  b->env = *env;
  b->env.database = strdup(env->database);
  b->env.device_root = strdup(env->device_root);
  if (b->env.database == NULL || b->env.device_root == NULL) {
    free((char *)b->env.database);
    free((char *)b->env.device_root);
    free(b);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  int e = pthread_mutex_init(&b->lock, NULL);
  if (e == 0 && (e = pthread_cond_init(&b->cond, NULL)) != 0)
    pthread_mutex_destroy(&b->lock);
  int uerr = e == 0 ? uv_async_init(env->loop, &b->async, on_async) : 0;
  if (e != 0 || uerr != 0) {
    if (e == 0) {
      pthread_cond_destroy(&b->cond);
      pthread_mutex_destroy(&b->lock);
    }
    free((char *)b->env.database);
    free((char *)b->env.device_root);
    free(b);
    return tl_fail(err, TL_EINTERNAL, "builder: %s", e ? strerror(e) : uv_strerror(uerr));
  }
  b->async.data = b;
  /* The thread (and the engine's pool threads it starts) take no
   * signals: the loop handles them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  e = pthread_create(&b->thread, NULL, builder_main, b);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    /* b is freed when the loop has closed the handle */
    uv_close((uv_handle_t *)&b->async, builder_closed);
    return tl_fail(err, TL_EINTERNAL, "cannot start the builder thread: %s", strerror(e));
  }
  pthread_setname_np(b->thread, "tailord-build");
  b->thread_started = 1;
  *out = b;
  return 0;
}

int tl_rt_builder_submit(struct tl_rt_builder *b, const struct tl_config *cfg, uint64_t generation,
                         struct tl_error *err) {
  struct job *j = calloc(1, sizeof *j);
  if (j == NULL || (j->models = calloc((size_t)cfg->n_models, sizeof *j->models)) == NULL) {
    free(j);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  j->generation = generation;
  for (int i = 0; i < cfg->n_models; i++) {
    if (model_cfg_copy(&j->models[i], &cfg->models[i]) != 0) {
      job_free(j);
      return tl_fail(err, TL_ENOMEM, "out of memory");
    }
    j->n_models = i + 1;
  }
  pthread_mutex_lock(&b->lock);
  if (b->stop) {
    pthread_mutex_unlock(&b->lock);
    job_free(j);
    return tl_fail(err, TL_EINVAL, "the builder is stopping");
  }
  if (b->jobs_tail != NULL)
    b->jobs_tail->next = j;
  else
    b->jobs = j;
  b->jobs_tail = j;
  pthread_cond_signal(&b->cond);
  pthread_mutex_unlock(&b->lock);
  return 0;
}

int tl_rt_builder_stop(struct tl_rt_builder *b) {
  atomic_store(&b->cancel, 1);
  pthread_mutex_lock(&b->lock);
  b->stop = 1;
  struct job *j = b->jobs;
  b->jobs = b->jobs_tail = NULL;
  pthread_cond_broadcast(&b->cond);
  /* A job that just posted its last event is finishing its bookkeeping,
   * and a search stops at its next batch of images (one batch of the
   * largest subnet can take seconds on a slow box under a sanitizer):
   * give them a moment. */
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  while (b->running && pthread_cond_timedwait(&b->cond, &b->lock, &until) == 0)
    ;
  int running = b->running;
  pthread_mutex_unlock(&b->lock);
  while (j != NULL) {
    struct job *next = j->next;
    job_free(j);
    j = next;
  }
  if (running)
    return TL_EBUSY;
  if (b->thread_started)
    pthread_join(b->thread, NULL);
  struct tl_rt_event *ev = b->events;
  b->events = b->events_tail = NULL;
  while (ev != NULL) {
    struct tl_rt_event *next = ev->next;
    event_free(ev);
    ev = next;
  }
  tl_store_close(b->st);
  b->st = NULL;
  uv_close((uv_handle_t *)&b->async, builder_closed);
  return 0;
}
