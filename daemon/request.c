/*
 * request.c - one inference request (see runtime.h): admitted on the loop
 * thread with references on its generation and frontier, run on a worker
 * (parse, check, pick the member, run its plan per image, build the
 * answer), and released.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "runtime.h"

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

  /* parse and check the request, pick the member */
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

  /* run the member's plan once per image */
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

  /* the answer */
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
