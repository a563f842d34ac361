/*
 * server_infer.c - the inference route and its cross-thread fast path
 * (see server.h): shedding, submitting a request to the workers, the
 * worker writing its answer itself ("direct answers"), connections lent
 * to a worker ("leases"), and the loop's side when a job is done.
 *
 * Who may touch a connection from which thread (who writes an answer,
 * who reads a lent connection) is written at the DIRECT_* states in
 * server_internal.h.
 */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "server_internal.h"

#define SETTLE_NS 5000000

/* Worker thread: formats j's answer into j->out.  0, or -1 when it
 * cannot (the loop formats it again and reports why). */
static int format_answer(struct infer_job *j) {
  struct tl_oip_body *b = &j->req.resp;
  if (b->data == NULL)
    return -1;
  char jl[32];
  struct tl_http_header h;
  int n = tl__binary_header(b, &h, jl);
  struct tl_error err = {{0}};
  if (tl__format_response(&j->out, j->req.status, b->content_type, b->data, b->len, j->keep_alive,
                          0, n ? &h : NULL, n, &err) != 0) {
    tl_http_buf_free(&j->out);
    return -1;
  }
  return 0;
}

/* Worker thread, holding the connection (DIRECT_TAKEN): sends j->out.
 * What the socket does not take at once (a full buffer) and any error
 * are left to job_done on the loop thread. */
static void send_answer(struct infer_job *j) {
  atomic_fetch_add(&j->srv->answering, 1);
  j->counted = 1;
  while (j->sent < j->out.len) {
    ssize_t k = send(j->fd, j->out.data + j->sent, j->out.len - j->sent, MSG_NOSIGNAL);
    if (k > 0) {
      j->sent += (size_t)k;
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else {
      j->send_errno = k < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? errno : 0;
      break;
    }
  }
  j->answered_ns = tl_now_ns();
  /* all sent: the loop has nothing urgent left to do for this job */
  j->work.quiet = j->sent == j->out.len;
}

/* Worker thread: writes the answer to the client when the loop allowed
 * it. */
static void answer_direct(struct infer_job *j) {
  if (atomic_load(&j->direct) != DIRECT_OK || format_answer(j) != 0)
    return;
  int was = DIRECT_OK;
  if (!atomic_compare_exchange_strong(&j->direct, &was, DIRECT_TAKEN))
    return; /* the loop closed or drained the connection meanwhile */
  send_answer(j);
}

/* Worker thread: waits up to LEASE_WAIT_NS for bytes on the leased
 * connection, while the queue stays empty and the loop does not recall
 * it.  Returns the bytes read into c->rbuf, 0 when none came (or the
 * lease must end), -1 at the end of the stream or on an error. */
static ssize_t lease_read(struct infer_job *j, struct conn *c) {
  const uint64_t until = tl_now_ns() + LEASE_WAIT_NS;
  for (int i = 0;; i++) {
    if (tl_workers_queued(j->srv->env.workers) > 0 || atomic_load(&j->srv->in_flight) > 1 ||
        atomic_load(&j->recall))
      return 0;
    ssize_t n = recv(j->fd, c->rbuf, sizeof c->rbuf, MSG_DONTWAIT);
    if (n > 0)
      return n;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
      return -1;
    /* the client may be waiting for this CPU (the scheduler often puts
     * a task woken by our answer here): let it run */
    sched_yield();
    if ((i & 15) == 15 && tl_now_ns() > until)
      return 0;
  }
}

static void acct_done(struct tl_work *w);

/* Worker thread: hands the request j just answered to the loop for its
 * accounting, and admits the next one (complete in c->http) in its
 * place, for the same model.  -1 when out of memory (j is unchanged). */
static int lease_next(struct infer_job *j, struct conn *c) {
  struct acct *a = calloc(1, sizeof *a);
  if (a == NULL)
    return -1;
  a->work.done = acct_done;
  a->work.quiet = 1;
  a->srv = j->srv;
  a->req = j->req;
  a->answered_ns = j->answered_ns;

  /* the next one, with the previous one's runtime, frontier and
   * controller factors (a lease is short); the active member is read
   * anew.  The references are taken before the previous request goes to
   * the loop, which may release it at once. */
  size_t len = 0;
  char *body = tl_http_take_body(&c->http, &len);
  tl_rt_request_admit_after(&j->req, &a->req, body, len, c->http.req.inference_header_length,
                            tl_now_ns());
  tl_workers_finish(j->srv->env.workers, &a->work);
  j->keep_alive = c->http.req.keep_alive;
  tl_http_buf_free(&j->out);
  j->sent = 0;
  j->send_errno = 0;
  j->counted = 0; /* the acct holds the count of the one before */
  return 0;
}

/* Worker thread: serves requests on the leased connection until the
 * lease ends (see "Leases" above). */
static void lease_run(struct infer_job *j, int worker) {
  struct conn *c = j->conn;
  const uint64_t end = tl_now_ns() + LEASE_NS;
  while (j->work.quiet && j->keep_alive && tl_now_ns() < end) {
    ssize_t n = lease_read(j, c);
    if (n < 0) {
      j->eof = 1;
      return;
    }
    if (n == 0)
      return;
    /* feed what came, as conn_feed does; the bytes after an event the
     * worker does not act on go to the loop in pending */
    const char *data = c->rbuf;
    size_t left = (size_t)n;
    int ev = TL_HTTP_NEED_MORE;
    while (left > 0) {
      size_t used = 0;
      ev = tl_http_feed(&c->http, data, left, &used, &j->ev_err);
      if (ev < 0)
        break;
      data += used;
      left -= used;
      if (ev != TL_HTTP_NEED_MORE)
        break;
    }
    if (ev == TL_HTTP_NEED_MORE)
      continue; /* part of a request: the parser keeps it */
    struct tl_oip_route_match m;
    struct tl_error err = {{0}};
    int same = ev == TL_HTTP_REQUEST && left == 0 &&
               tl_oip_route_match(c->http.req.method_name, c->http.req.path, &m, &err) == 0 &&
               m.route == TL_OIP_ROUTE_MODEL_INFER &&
               strcmp(m.model, j->req.model->cfg.name) == 0 && !atomic_load(&j->recall);
    if (!same || lease_next(j, c) != 0) {
      j->has_event = 1;
      j->event = ev;
      if (ev >= 0 && left > 0 && tl__append_pending(c, data, left) != 0)
        j->eof = 1; /* cannot keep them: the loop closes the connection */
      return;
    }
    tl_rt_request_run(&j->req, worker);
    if (format_answer(j) != 0)
      return; /* the loop writes this one (out is empty) */
    send_answer(j);
  }
}

static void job_run(struct tl_work *w, int worker) {
  struct infer_job *j = (struct infer_job *)w;
  tl_rt_request_run(&j->req, worker);
  answer_direct(j);
  if (atomic_load(&j->direct) == DIRECT_TAKEN && atomic_load(&j->lease)) {
    lease_run(j, worker);
    j->work.quiet = 0; /* the loop takes the connection back now */
  }
}

/* Loop thread: what a request that ran tells the metrics and the
 * controller, whether or not its client is still there; answered_ns is
 * when its answer went out. */
static void account(struct tl_server *s, const struct tl_rt_request *r, uint64_t answered_ns) {
  if (r->picked_ns > 0 && answered_ns > r->picked_ns) {
    const double ms = (double)(answered_ns - r->picked_ns) / 1e6;
    s->service_ms = s->service_ms > 0 ? 0.9 * s->service_ms + 0.1 * ms : ms;
  }
  if (r->member >= 0 && s->env.metrics != NULL)
    tl_metrics_infer(s->env.metrics, r->model->cfg.name,
                     (double)(answered_ns - r->arrival_ns) / 1e9,
                     (double)(r->start_ns - r->arrival_ns) / 1e9, (double)r->compute_ns / 1e9);
  if (s->env.controller != NULL)
    tl_controller_observe(s->env.controller, r, answered_ns);
}

/* Loop thread: a request served on a leased connection. */
static void acct_done(struct tl_work *w) {
  struct acct *a = (struct acct *)w;
  struct tl_server *s = a->srv;
  atomic_fetch_sub(&s->answering, 1);
  if (s->env.metrics != NULL)
    tl_metrics_request(s->env.metrics, TL_OIP_ROUTE_MODEL_INFER, a->req.status);
  account(s, &a->req, a->answered_ns);
  tl_rt_request_release(&a->req);
  free(a);
}

/* Loop thread: a lease is over; take up what the worker left. */
static void lease_end(struct conn *c, struct infer_job *j) {
  if (j->eof) {
    c->eof = 1;
    c->close_after_write = 1;
    return;
  }
  if (j->has_event && !c->closing && !c->close_after_write) {
    size_t n = c->pending_len;
    c->pending_len = 0;
    /* the event first, then the bytes after it, as conn_feed would */
    c->feed_left = n;
    if (tl__conn_event(c, j->event, &j->ev_err)) {
      if (c->job != NULL)
        tl__conn_submitted(c, c->pending, n);
      return;
    }
    c->pending_len = n;
  }
}

/* Loop thread: what is left of an answer its worker wrote itself. */
static void finish_direct(struct conn *c, struct infer_job *j) {
  struct tl_server *s = c->srv;
  if (j->send_errno != 0) {
    if (s->env.metrics != NULL)
      tl_metrics_request(s->env.metrics, c->route, j->req.status);
    tl_log_debug(&s->env.log, "client write: %s", strerror(j->send_errno));
    tl__conn_close(c);
    return;
  }
  int keep_alive = j->keep_alive && !s->draining;
  if (j->out.len == 0) {
    /* a request of the lease whose answer the worker could not format */
    c->route = TL_OIP_ROUTE_MODEL_INFER;
    tl__send_body(c, j->req.status, &j->req.resp, keep_alive);
  } else {
    if (s->env.metrics != NULL)
      tl_metrics_request(s->env.metrics, c->route, j->req.status);
    if (j->sent < j->out.len)
      tl__queue_write(c, &j->out, j->sent, keep_alive); /* on_written closes if it must */
    else if (!keep_alive)
      c->close_after_write = 1;
  }
  if (atomic_load(&j->lease)) {
    lease_end(c, j);
    if (c->job != NULL) /* what came next went to a worker, maybe on a new lease */
      return;
  }
  if (c->close_after_write && c->writes == 0) {
    tl__conn_close(c);
    return;
  }
  tl__conn_resume(c);
}

/* Loop thread: the answer of an inference job. */
static void job_done(struct tl_work *w) {
  struct infer_job *j = (struct infer_job *)w;
  struct conn *c = j->conn;
  struct tl_server *s = j->srv;
  struct tl_rt_request *r = &j->req;
  int direct = atomic_load(&j->direct) == DIRECT_TAKEN;
  uint64_t now = j->counted ? j->answered_ns : tl_now_ns();
  if (j->counted)
    atomic_fetch_sub(&s->answering, 1);
  account(s, r, now);
  atomic_fetch_sub(&s->in_flight, 1);
  if (c != NULL) {
    c->job = NULL;
    c->answered_ns = now;
    if (c->close_deferred)
      tl__conn_close_handles(c);
    else if (direct)
      finish_direct(c, j);
    else {
      tl__send_body(c, r->status, &r->resp, j->keep_alive);
      tl__conn_resume(c);
    }
  }
  tl_http_buf_free(&j->out);
  tl_rt_request_release(r);
  free(j);
}

/* Load shedding: 1 (and the answer's sentence in why) when a request of
 * model arriving now would not be answered by its deadline: the requests
 * already waiting, spread over the workers, each take about the time a
 * worker spent on the last ones.  Answering 503 at once frees the
 * client's connection; queueing it would hold the connection and the
 * queue for an answer nobody wants (under a CPU quota, the queue only
 * grows).  Loop thread. */
static int must_shed(struct tl_server *s, const struct tl_rt_model *model, char *why, size_t size) {
  const struct tl_config_budget *b = &model->cfg.budget;
  const double deadline = b->deadline_ms > 0 ? b->deadline_ms : 10 * b->latency_p95_ms;
  const int workers = (*s->env.config)->workers > 0 ? (*s->env.config)->workers : 1;
  const int ahead = tl_workers_waiting(s->env.workers);
  if (s->service_ms <= 0 || ahead == 0)
    return 0;
  const double wait = ((double)ahead / workers + 1) * s->service_ms;
  if (wait <= deadline)
    return 0;
  snprintf(why, size,
           "shed: %d requests wait for %d workers, about %.0f ms, past the deadline of %.0f ms: "
           "try again later",
           ahead, workers, wait, deadline);
  return 1;
}

void tl__route_infer(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *model = tl__find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  char why[256];
  if (must_shed(s, model, why, sizeof why)) {
    if (s->env.metrics != NULL)
      tl_metrics_shed(s->env.metrics, model->cfg.name);
    tl__send_error(c, 503, why, keep_alive);
    return;
  }
  struct infer_job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  size_t len = 0;
  int64_t json_len = c->http.req.inference_header_length;
  char *body = tl_http_take_body(&c->http, &len);
  tl_rt_request_admit(&j->req, *s->env.current, model, body, len, json_len, tl_now_ns());
  j->work.run = job_run;
  j->work.done = job_done;
  j->srv = s;
  j->conn = c;
  j->keep_alive = keep_alive && !s->draining;
  /* The worker may answer by itself when nothing is queued before it. */
  uv_os_fd_t fd;
  int direct = uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0 &&
               c->http.req.method != TL_HTTP_METHOD_HEAD &&
               uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0;
  j->fd = direct ? fd : -1;
  atomic_init(&j->direct, direct ? DIRECT_OK : DIRECT_NO);
  /* a lease for a client that sends its next request as soon as it has
   * an answer: then a worker waiting for it saves the loop's wake-up; a
   * client that pauses would only make it spin */
  const uint64_t now = j->req.arrival_ns;
  const int lease = direct && j->keep_alive && atomic_load(&s->in_flight) == 0 &&
                    c->feed_left == 0 && c->answered_ns != 0 &&
                    now - c->answered_ns < LEASE_WAIT_NS;
  if (lease) { /* before the worker can look */
    tl__read_stop(c);
    atomic_init(&j->lease, 1);
  }
  int rc = tl_workers_submit(s->env.workers, &j->work);
  if (rc != 0) {
    tl_rt_request_release(&j->req);
    free(j);
    if (lease)
      tl__read_start(c);
    tl__send_error(c, 503,
                   rc == TL_EBUSY ? "the inference queue is full: try again later"
                                  : "the server is shutting down",
                   keep_alive);
    return;
  }
  atomic_fetch_add(&s->in_flight, 1);
  c->job = j;
}

/* Runs the done of every job whose answer a worker already wrote, if
 * any: the loop then sees what its clients may already know. */
void tl__collect_answered(struct tl_server *s) {
  if (atomic_load(&s->answering) > 0)
    tl_workers_collect(s->env.workers);
}

/* Brings the loop up to date with every answer already written, so that
 * a client that got its answer and then asks for metrics or state sees
 * it counted.  A worker hands its job back within a microsecond of its
 * write unless it is preempted: the wait is capped at SETTLE_NS. */
void tl__settle(struct tl_server *s) {
  uint64_t until = 0;
  while (atomic_load(&s->answering) > 0) {
    tl__collect_answered(s);
    if (atomic_load(&s->answering) == 0)
      break;
    uint64_t now = tl_now_ns();
    if (until == 0)
      until = now + SETTLE_NS;
    else if (now > until)
      break;
    sched_yield();
  }
}
