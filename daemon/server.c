/*
 * server.c - connections and request dispatch (see server.h): accepting,
 * reading, the bounds and timeouts, eviction at the connection limit,
 * replies, and the route table's dispatch.  The inference path (direct
 * answers, leases) is server_infer.c; tailord's other routes are
 * routes.c; what the three share is server_internal.h.
 *
 * A connection is a small state machine on the loop thread: it reads,
 * feeds the parser, and for each complete request either answers at once
 * (metadata, health, metrics, state) or submits an inference job.  Bytes
 * that arrive while a job runs (pipelined requests, or the client's next
 * one) wait in the connection's pending buffer, up to PENDING_MAX, and
 * are fed once its answer is out.  The worker that ran the job writes the
 * answer itself when nothing else is queued on the connection, so a
 * client's round trip does not wait for the loop thread to wake; the loop
 * learns of the job at its next wake-up (see server_infer.c).
 */
#include "server_internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "oip.h"

#define LISTEN_BACKLOG 128
#define PENDING_MAX READ_BUF_BYTES

static void conn_feed(struct conn *c, const char *data, size_t n);
static void idle_restart(struct conn *c);
static void on_idle(uv_timer_t *t);

static int write_backlogged(const struct conn *c) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) > WRITE_BACKLOG_MAX;
}

/* --------------------------------------------------------------- replies */

struct write_req {
  uv_write_t req;
  struct tl_http_buf buf;
  struct conn *c;
};

static void maybe_drained(struct tl_server *s) {
  if (s->draining && s->n_allocated == 0 && s->listener_closed && !s->collect_open &&
      s->drained != NULL) {
    void (*done)(void *) = s->drained;
    s->drained = NULL;
    done(s->drained_ctx);
  }
}

static void on_written(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  struct conn *c = wr->c;
  tl_http_buf_free(&wr->buf);
  free(wr);
  c->writes--;
  if (status < 0 && status != UV_ECANCELED)
    tl_log_debug(&c->srv->env.log, "client write: %s", uv_strerror(status));
  if (status < 0 || (c->close_after_write && c->writes == 0)) {
    tl__conn_close(c);
  } else if (c->backlogged && !write_backlogged(c)) {
    c->backlogged = 0; /* the client reads again: so do we */
    tl__conn_resume(c);
  } else if (c->writes == 0 && c->job == NULL) {
    idle_restart(c);
  }
}

/* Formats one response into out; any thread. */
int tl__format_response(struct tl_http_buf *out, int status, const char *content_type,
                        const void *body, size_t len, int keep_alive, int head_only,
                        const struct tl_http_header *headers, int n_headers, struct tl_error *err) {
  struct tl_http_response r = {
      .status = status,
      .content_type = content_type,
      .body = body,
      .body_len = len,
      .keep_alive = keep_alive,
      .head_only = head_only,
      .headers = headers,
      .n_headers = n_headers,
  };
  int rc = tl_http_response_format(out, &r, err);
  if (rc == 0 && out->len > UINT_MAX)
    rc = tl_fail(err, TL_ERANGE, "a response of %zu bytes", out->len);
  return rc;
}

/* Keeps the write timeout (write_stalled) running while answers are in
 * flight and nothing else holds c's timer. */
static void write_watch(struct conn *c) {
  if (c->writes != 0 && !c->closing && !uv_is_active((const uv_handle_t *)&c->idle))
    uv_timer_start(&c->idle, on_idle, (uint64_t)c->srv->limits.request_timeout_ms, 0);
}

/* Queues buf[from..) on c, taking buf.  keep_alive 0 closes the
 * connection after it. */
void tl__queue_write(struct conn *c, struct tl_http_buf *buf, size_t from, int keep_alive) {
  struct write_req *wr = calloc(1, sizeof *wr);
  if (wr == NULL) {
    tl_log_err(&c->srv->env.log, "cannot send a response: out of memory");
    tl_http_buf_free(buf);
    tl__conn_close(c);
    return;
  }
  wr->buf = *buf;
  *buf = (struct tl_http_buf){0};
  wr->c = c;
  uv_buf_t b = uv_buf_init(wr->buf.data + from, (unsigned)(wr->buf.len - from));
  int e = uv_write(&wr->req, (uv_stream_t *)&c->pipe, &b, 1, on_written);
  if (e != 0) {
    tl_http_buf_free(&wr->buf);
    free(wr);
    tl__conn_close(c);
    return;
  }
  if (c->writes++ == 0)
    c->write_queued = SIZE_MAX;
  write_watch(c);
  if (!keep_alive)
    c->close_after_write = 1;
}

/* Sends one response.  keep_alive 0 closes the connection after it. */
void tl__send_response(struct conn *c, int status, const char *content_type, const void *body,
                       size_t len, int keep_alive, const struct tl_http_header *headers,
                       int n_headers) {
  struct tl_server *s = c->srv;
  if (c->closing)
    return;
  if (s->env.metrics != NULL && status >= 200)
    tl_metrics_request(s->env.metrics, c->route, status);
  if (s->draining)
    keep_alive = 0;
  struct tl_http_buf buf = {0};
  struct tl_error err = {{0}};
  if (tl__format_response(&buf, status, content_type, body, len, keep_alive,
                          c->http.req.method == TL_HTTP_METHOD_HEAD, headers, n_headers,
                          &err) != 0) {
    tl_log_err(&s->env.log, "cannot format a response: %s", err.msg);
    tl_http_buf_free(&buf);
    tl__conn_close(c);
    return;
  }
  tl__queue_write(c, &buf, 0, keep_alive);
}

/* The fallback body when even an error body cannot be built. */
static const char oom_body[] = "{\"error\":\"out of memory\"}";

/* {"error": msg} with status; keep_alive as the request asked. */
void tl__send_error(struct conn *c, int status, const char *msg, int keep_alive) {
  struct tl_oip_body b = {0};
  if (tl_oip_error_body(msg, &b, NULL) != 0)
    tl__send_response(c, status, "application/json", oom_body, sizeof oom_body - 1, keep_alive,
                      NULL, 0);
  else
    tl__send_response(c, status, "application/json", b.data, b.len, keep_alive, NULL, 0);
  tl_oip_body_free(&b);
}

/* The Inference-Header-Content-Length header of an answer with binary
 * tensors; 0 headers for a JSON-only one.  jl holds the value. */
int tl__binary_header(const struct tl_oip_body *b, struct tl_http_header *h, char jl[32]) {
  snprintf(jl, 32, "%zu", b->json_len);
  *h = (struct tl_http_header){"Inference-Header-Content-Length", jl};
  return b->json_len < b->len;
}

void tl__send_body(struct conn *c, int status, struct tl_oip_body *b, int keep_alive) {
  if (b->data == NULL) {
    tl__send_response(c, status >= 400 ? status : 500, "application/json", oom_body,
                      sizeof oom_body - 1, keep_alive, NULL, 0);
    return;
  }
  char jl[32];
  struct tl_http_header h;
  int n = tl__binary_header(b, &h, jl);
  tl__send_response(c, status, b->content_type, b->data, b->len, keep_alive, n ? &h : NULL, n);
}

/* Sends a jansson value (stolen) as a JSON body. */
void tl__send_json(struct conn *c, int status, json_t *v, int keep_alive) {
  char *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(v);
  if (text == NULL) {
    tl__send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  tl__send_response(c, status, "application/json", text, strlen(text), keep_alive, NULL, 0);
  free(text);
}

/* ---------------------------------------------------------- connections */

static void conn_free(uv_handle_t *h) {
  struct conn *c = h->data;
  if (--c->open_handles > 0)
    return;
  struct tl_server *s = c->srv;
  tl_http_conn_free(&c->http);
  free(c->pending);
  free(c);
  s->n_allocated--;
  maybe_drained(s);
}

void tl__conn_close_handles(struct conn *c) {
  uv_close((uv_handle_t *)&c->idle, conn_free);
  uv_close((uv_handle_t *)&c->pipe, conn_free);
}

void tl__conn_close(struct conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  struct tl_server *s = c->srv;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  if (!c->rejected)
    s->n_conns--;
  uv_timer_stop(&c->idle);
  tl__read_stop(c);
  if (c->job != NULL) {
    atomic_store(&c->job->recall, 1);
    int was = DIRECT_OK;
    if (!atomic_compare_exchange_strong(&c->job->direct, &was, DIRECT_NO) && was == DIRECT_TAKEN) {
      /* its worker is writing or wrote: the descriptor stays open until
       * the job is done (job_done closes the handles) */
      c->close_deferred = 1;
      return;
    }
    c->job->conn = NULL; /* the job finishes and is dropped */
    c->job = NULL;
  }
  tl__conn_close_handles(c);
}

/* A stalled request is answered 408 and its connection closed. */
static void close_stalled(struct conn *c, const char *why) {
  char msg[160];
  snprintf(msg, sizeof msg, "the request did not arrive whole within %d ms%s",
           c->srv->limits.request_timeout_ms, why);
  c->route = -1;
  tl__send_error(c, 408, msg, 0);
  tl__read_stop(c);
}

/* The write timeout: a client that has taken none of its answers' bytes
 * for a request timeout is closed (it would hold its connection, the
 * answers' memory and the drain at shutdown for as long as it liked);
 * one that reads, however slowly, is looked at again a request timeout
 * later.  Returns 1 when c was closed. */
static int write_stalled(struct conn *c) {
  const size_t queued = uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
  if (queued > 0 && c->write_queued != SIZE_MAX && queued >= c->write_queued) {
    tl_log_info(&c->srv->env.log,
                "closing a connection that read none of its answer in %d ms (%zu bytes waiting)",
                c->srv->limits.request_timeout_ms, queued);
    tl__conn_close(c);
    return 1;
  }
  c->write_queued = queued;
  uv_timer_start(&c->idle, on_idle, (uint64_t)c->srv->limits.request_timeout_ms, 0);
  return 0;
}

static void on_idle(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->closing)
    return;
  if (c->writes != 0) {
    write_stalled(c);
    return;
  }
  if (c->job != NULL || c->close_after_write)
    return;
  if (c->request_ns != 0) {
    tl_log_debug(&c->srv->env.log, "closing a connection whose request took over %d ms",
                 c->srv->limits.request_timeout_ms);
    close_stalled(c, "");
    return;
  }
  tl_log_debug(&c->srv->env.log, "closing a connection idle for %d ms",
               c->srv->limits.idle_timeout_ms);
  tl__conn_close(c);
}

/* Starts c's timer: the idle timeout between requests; within one, what
 * is left of the request timeout since its start (slow bytes do not
 * extend it). */
static void idle_restart(struct conn *c) {
  if (c->closing)
    return;
  uint64_t ms = (uint64_t)c->srv->limits.idle_timeout_ms;
  if (c->request_ns != 0) {
    uint64_t end = c->request_ns + (uint64_t)c->srv->limits.request_timeout_ms * 1000000u;
    uint64_t now = tl_now_ns();
    ms = end > now ? (end - now + 999999) / 1000000 : 0;
  }
  uv_timer_start(&c->idle, on_idle, ms, 0);
}

/* At the connection limit: the counted connection stalled longest in a
 * request (at least EVICT_MIN_NS, or half the request timeout when that is
 * less), answered 408 and no longer counted, so that a new one can take
 * its place.  A connection between requests, or with one being answered,
 * is never taken.  Returns 1 when one made room.
 *
 * The floor is short: slow senders that reconnect as soon as they are
 * closed keep their connections young, and with floors of 1 s and 10 ms
 * clients arriving among them were still refused (scripts/bench-
 * slowloris: 64 clients, 100 slow senders, 64 connections).  A client on
 * the local socket sends its request within microseconds of connecting,
 * so the one stalled longest is a slow sender; the floor only spares a
 * connection whose request the loop has not read yet. */
#define EVICT_MIN_NS 1000000u

/* At the connection limit, first: connections between requests whose
 * client has already hung up, which the loop has not read the end of yet
 * (a client that opens a connection per request is back with the next
 * one before that).  Closes them; returns how many. */
static int reap_hung_up(struct tl_server *s) {
  tl__collect_answered(s); /* jobs whose worker answered: their connections are free */
  int n = 0;
  for (struct conn *c = s->conns, *next; c != NULL; c = next) {
    next = c->next;
    uv_os_fd_t fd;
    char byte;
    if (c->rejected || c->closing || c->close_after_write || c->job != NULL || c->writes != 0 ||
        c->request_ns != 0 || uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
        recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 0)
      continue;
    tl__conn_close(c);
    n++;
  }
  return n;
}

static int evict_stalled(struct tl_server *s) {
  uint64_t min = (uint64_t)s->limits.request_timeout_ms * 500000u;
  min = min < EVICT_MIN_NS ? min : EVICT_MIN_NS;
  const uint64_t now = tl_now_ns();
  struct conn *victim = NULL;
  for (struct conn *c = s->conns; c != NULL; c = c->next) {
    if (c->rejected || c->closing || c->close_after_write || c->job != NULL || c->writes != 0 ||
        c->request_ns == 0 || now - c->request_ns < min)
      continue;
    if (victim == NULL || c->request_ns < victim->request_ns)
      victim = c;
  }
  if (victim == NULL)
    return 0;
  tl_log_info(&s->env.log,
              "every connection is taken: closing one stalled in its request for %.0f "
              "ms to admit a new one",
              (double)(now - victim->request_ns) / 1e6);
  victim->rejected = 1; /* no longer counted */
  s->n_conns--;
  s->n_evicted++;
  close_stalled(victim, " (closed to make room for another client)");
  return 1;
}

/* Appends data[0..n) to the pending bytes (read while a job runs, or
 * left by a lease's worker). */
int tl__append_pending(struct conn *c, const char *data, size_t n) {
  if (n == 0) /* pending may still be NULL */
    return 0;
  if (n > SIZE_MAX - c->pending_len)
    return TL_ENOMEM;
  if (c->pending_len + n > c->pending_cap) {
    size_t cap = c->pending_cap > 0 ? c->pending_cap : 4096;
    while (cap < c->pending_len + n)
      cap = cap > SIZE_MAX / 2 ? c->pending_len + n : cap * 2;
    char *p = realloc(c->pending, cap);
    if (p == NULL)
      return TL_ENOMEM;
    c->pending = p;
    c->pending_cap = cap;
  }
  memmove(c->pending + c->pending_len, data, n); /* see keep_pending */
  c->pending_len += n;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  struct conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  struct conn *c = st->data;
  if (nread == 0)
    return;
  /* this connection's own job may be one of them */
  tl__collect_answered(c->srv);
  if (c->closing)
    return;
  if (nread < 0) {
    if (nread != UV_EOF)
      tl_log_debug(&c->srv->env.log, "client read: %s", uv_strerror((int)nread));
    c->eof = 1;
    uv_read_stop(st);
    c->reading = 0;
    /* A request in flight is still answered, and so are the whole ones
     * that came after it (a client may pipeline requests and then close
     * its side): tl__conn_resume closes once they are.  Else there is
     * nothing more to do on this connection (a request cut short is
     * dropped). */
    if (c->job == NULL && c->writes == 0)
      tl__conn_close(c);
    else if (c->job == NULL)
      c->close_after_write = 1;
    return;
  }
  if (c->job != NULL) {
    /* behind a request in flight; past PENDING_MAX the socket holds the
     * rest until the job is done */
    if (tl__append_pending(c, buf->base, (size_t)nread) != 0) {
      tl_log_err(&c->srv->env.log, "out of memory keeping pipelined requests");
      c->close_after_write = 1;
      tl__read_stop(c);
    } else if (c->pending_len >= PENDING_MAX) {
      tl__read_stop(c);
    }
    return;
  }
  idle_restart(c);
  conn_feed(c, buf->base, (size_t)nread);
}

void tl__read_start(struct conn *c) {
  if (c->reading || c->eof || c->closing)
    return;
  int e = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (e != 0) {
    tl__conn_close(c);
    return;
  }
  c->reading = 1;
}

void tl__read_stop(struct conn *c) {
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
}

/* Keeps data[0..n) for after the request in flight (data may point into
 * the pending buffer itself: then n fits, nothing is reallocated, and the
 * bytes move down). */
static int keep_pending(struct conn *c, const char *data, size_t n) {
  c->pending_len = 0;
  return tl__append_pending(c, data, n);
}

static void handle_request(struct conn *c);

/* Acts on one parser event of c: answers an error (and stops reading),
 * a 100-continue, or the request.  Returns 1 when feeding must stop here
 * (an error, or the request now waits for a worker). */
int tl__conn_event(struct conn *c, int ev, const struct tl_error *err) {
  if (ev < 0) {
    c->route = -1;
    int status = tl_http_conn_error_status(&c->http);
    tl__send_error(c, status > 0 ? status : 400, err->msg, 0);
    tl__read_stop(c);
    return 1;
  }
  if (ev == TL_HTTP_CONTINUE) {
    tl__send_response(c, 100, NULL, NULL, 0, 1, NULL, 0);
    return 0;
  }
  handle_request(c);
  return c->job != NULL;
}

/* After a request went to a worker: data[0..n) is what came after it.
 * Nothing: the connection is lent to the job when it may be (reading
 * stops); else reading goes on into pending while the job runs, and the
 * next request wakes the loop, which also collects this job. */
void tl__conn_submitted(struct conn *c, const char *data, size_t n) {
  uv_timer_stop(&c->idle);
  write_watch(c);
  /* Lent at submit (tl__route_infer): pending is the worker's now, and empty
   * (a lease needs nothing after the request).  Not even pending_len may
   * be touched: the worker may have written it already. */
  if (atomic_load(&c->job->lease))
    return;
  if (keep_pending(c, data, n) != 0) {
    tl_log_err(&c->srv->env.log, "out of memory keeping pipelined requests");
    c->close_after_write = 1;
  }
}

/* Feeds bytes to the parser and answers each request they complete,
 * until they are used up or a request must wait for a worker. */
static void conn_feed(struct conn *c, const char *data, size_t n) {
  while (n > 0 && !c->closing && !c->close_after_write) {
    if (write_backlogged(c)) {
      /* the client does not read its answers: keep the rest for when it
       * does (on_written), and read no more of it meanwhile */
      if (keep_pending(c, data, n) != 0) {
        tl_log_err(&c->srv->env.log, "out of memory keeping pipelined requests");
        c->close_after_write = 1;
      }
      c->backlogged = 1;
      tl__read_stop(c);
      write_watch(c);
      return;
    }
    size_t used = 0;
    struct tl_error err = {{0}};
    if (c->request_ns == 0)
      c->request_ns = tl_now_ns(); /* these bytes begin a request */
    int ev = tl_http_feed(&c->http, data, n, &used, &err);
    if (ev == TL_HTTP_REQUEST)
      c->request_ns = 0;
    if (ev >= 0) {
      data += used;
      n -= used;
    }
    if (ev == TL_HTTP_NEED_MORE)
      return;
    c->feed_left = n;
    if (tl__conn_event(c, ev, &err)) {
      if (c->job != NULL)
        tl__conn_submitted(c, data, n);
      return;
    }
  }
}

/* After an inference answer: go on with what was read meanwhile. */
void tl__conn_resume(struct conn *c) {
  if (c->closing || c->close_after_write)
    return;
  /* a worker that had the connection may have read part of the next
   * request: its time counts from now */
  if (c->request_ns == 0 && tl_http_conn_mid_request(&c->http))
    c->request_ns = tl_now_ns();
  size_t n = c->pending_len;
  c->pending_len = 0;
  if (n > 0)
    conn_feed(c, c->pending, n);
  if (c->job != NULL || c->closing || c->close_after_write || c->backlogged)
    return;
  if (c->eof) { /* the client sent all it will, and all of it is answered */
    if (c->writes == 0)
      tl__conn_close(c);
    else
      c->close_after_write = 1;
    return;
  }
  idle_restart(c);
  tl__read_start(c);
}

static void on_connection(uv_stream_t *listener, int status) {
  struct tl_server *s = listener->data;
  if (status < 0) {
    tl_log_warn(&s->env.log, "accept: %s", uv_strerror(status));
    return;
  }
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tl_log_err(&s->env.log, "out of memory accepting a connection");
    return;
  }
  c->srv = s;
  c->route = -1;
  s->n_allocated++;
  struct tl_http_limits lim = {s->limits.max_header_bytes, s->limits.max_body_bytes};
  struct tl_error err = {{0}};
  int e = uv_pipe_init(listener->loop, &c->pipe, 0);
  if (e != 0) {
    free(c);
    s->n_allocated--;
    tl_log_err(&s->env.log, "accept: %s", uv_strerror(e));
    return;
  }
  c->pipe.data = c;
  c->open_handles = 1;
  if ((e = uv_timer_init(listener->loop, &c->idle)) != 0) {
    uv_close((uv_handle_t *)&c->pipe, conn_free);
    tl_log_err(&s->env.log, "accept: %s", uv_strerror(e));
    return;
  }
  c->idle.data = c;
  c->open_handles = 2;
  c->next = s->conns;
  if (s->conns != NULL)
    s->conns->prev = c;
  s->conns = c;
  /* (c is on the list, not accepted yet: neither pass takes it) */
  if (!s->draining && s->n_conns >= s->limits.max_connections)
    reap_hung_up(s);
  c->rejected = s->draining || (s->n_conns >= s->limits.max_connections && !evict_stalled(s));
  if (!c->rejected)
    s->n_conns++;
  if ((e = uv_accept(listener, (uv_stream_t *)&c->pipe)) != 0) {
    tl_log_warn(&s->env.log, "accept: %s", uv_strerror(e));
    tl__conn_close(c);
    return;
  }
  if (c->rejected) {
    tl_log_warn(&s->env.log, "refusing a connection: %d open, the limit is %d", s->n_conns,
                s->limits.max_connections);
    char msg[128];
    snprintf(msg, sizeof msg, "too many connections: the limit is %d", s->limits.max_connections);
    tl__send_error(c, 503, msg, 0);
    return;
  }
  if (tl_http_conn_init(&c->http, &lim, &err) != 0) {
    tl_log_err(&s->env.log, "connection: %s", err.msg);
    tl__conn_close(c);
    return;
  }
  c->request_ns = tl_now_ns(); /* its first request's time starts now */
  idle_restart(c);
  tl__read_start(c);
}

/* ------------------------------------------------------------- dispatch */

/* The model of the request, or NULL after answering 404 (unknown) or 503
 * (known to the config, not loaded yet). */
struct tl_rt_model *tl__find_model(struct conn *c, const char *name, int need_frontier,
                                   int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *m = tl_runtime_model(*s->env.current, name);
  char msg[TL_OIP_NAME_MAX + 96];
  if (m == NULL) {
    const struct tl_config *cfg = *s->env.config;
    for (int i = 0; cfg != NULL && i < cfg->n_models; i++)
      if (strcmp(cfg->models[i].name, name) == 0) {
        snprintf(msg, sizeof msg, "model \"%s\" is loading", name);
        tl__send_error(c, 503, msg, keep_alive);
        return NULL;
      }
    snprintf(msg, sizeof msg, "unknown model \"%s\"", name);
    tl__send_error(c, 404, msg, keep_alive);
    return NULL;
  }
  if (need_frontier && m->frontier == NULL) {
    snprintf(msg, sizeof msg, "model \"%s\" has no plans yet", name);
    tl__send_error(c, 503, msg, keep_alive);
    return NULL;
  }
  return m;
}

static void handle_request(struct conn *c) {
  const struct tl_http_request *req = &c->http.req;
  int keep_alive = req->keep_alive;
  struct tl_oip_route_match m;
  struct tl_error err = {{0}};
  c->route = -1;
  int rc = tl_oip_route_match(req->method_name, req->path, &m, &err);
  if (rc == TL_EUNSUPPORTED) {
    struct tl_http_header allow = {"Allow", m.allow};
    struct tl_oip_body b = {0};
    if (tl_oip_error_body(err.msg, &b, NULL) == 0)
      tl__send_response(c, 405, "application/json", b.data, b.len, keep_alive, &allow, 1);
    else
      tl__send_error(c, 500, "out of memory", keep_alive);
    tl_oip_body_free(&b);
    return;
  }
  if (rc != 0) {
    tl__send_error(c, tl_oip_error_status(rc), err.msg, keep_alive);
    return;
  }
  c->route = (int)m.route;
  tl__routes[m.route](c, &m, keep_alive);
}

/* --------------------------------------------------------------- server */

/* Removes a stale socket file at path: one nobody answers on.  A live
 * socket or a file of another kind is an error. */
static int remove_stale(const char *path, struct tl_error *err) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    return tl_fail(err, TL_EIO, "%s: %s", path, strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    return tl_fail(err, TL_EIO, "%s: exists and is not a socket; not removing it", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return tl_fail(err, TL_EIO, "socket: %s", strerror(errno));
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  if (live)
    return tl_fail(err, TL_EIO, "%s: another server is answering on this socket", path);
  if (unlink(path) != 0 && errno != ENOENT)
    return tl_fail(err, TL_EIO, "%s: cannot remove the stale socket: %s", path, strerror(errno));
  return 0;
}

/* The config allows header blocks up to 1 MiB, http-parser no more than
 * TL_HTTP_HEADER_LIMIT_MAX: the larger asks are served with the smaller. */
static void apply_limits(struct tl_server *s, const struct tl_config_limits *limits) {
  s->limits = *limits;
  if (s->limits.max_header_bytes > TL_HTTP_HEADER_LIMIT_MAX) {
    tl_log_warn(&s->env.log, "limits.max_header_bytes %zu is over what the HTTP parser takes: %zu",
                s->limits.max_header_bytes, TL_HTTP_HEADER_LIMIT_MAX);
    s->limits.max_header_bytes = TL_HTTP_HEADER_LIMIT_MAX;
  }
}

static void on_prepare(uv_prepare_t *h) { tl__collect_answered(h->data); }

/* In one pass of the loop the listener's close (and the last
 * connection's) may run before this handle's: the drained callback, which
 * frees the server this handle lives in, waits for this one too. */
static void on_collect_closed(uv_handle_t *h) {
  struct tl_server *s = h->data;
  s->collect_open = 0;
  maybe_drained(s);
}

static void free_on_close(uv_handle_t *h) {
  struct tl_server *s = h->data;
  free(s->path);
  free(s);
}

int tl_server_start(const struct tl_server_env *env, const struct tl_config_socket *sock,
                    const struct tl_config_limits *limits, struct tl_server **out,
                    struct tl_error *err) {
  size_t len = strlen(sock->path);
  if (len == 0 || len >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return tl_fail(err, TL_EINVAL, "%s: a socket path must be 1 to %zu bytes; this one is %zu",
                   sock->path, sizeof(((struct sockaddr_un *)0)->sun_path) - 1, len);
  int rc = remove_stale(sock->path, err);
  if (rc != 0)
    return rc;
  struct tl_server *s = calloc(1, sizeof *s);
  if (s == NULL || (s->path = strdup(sock->path)) == NULL) {
    free(s);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  s->env = *env;
  apply_limits(s, limits);
  int e = uv_pipe_init(env->loop, &s->listener, 0);
  if (e != 0) {
    free(s->path);
    free(s);
    return tl_fail(err, TL_EIO, "%s: %s", sock->path, uv_strerror(e));
  }
  s->listener.data = s;
  if ((e = uv_pipe_bind(&s->listener, sock->path)) != 0) {
    rc = tl_fail(err, TL_EIO, "%s: bind: %s", sock->path, uv_strerror(e));
  } else if (chmod(sock->path, sock->mode) != 0) {
    rc = tl_fail(err, TL_EIO, "%s: chmod %04o: %s", sock->path, sock->mode, strerror(errno));
  } else if ((e = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection)) != 0) {
    rc = tl_fail(err, TL_EIO, "%s: listen: %s", sock->path, uv_strerror(e));
  }
  if (rc != 0) {
    /* s is freed with the handle's close, on the next loop turn */
    unlink(sock->path);
    uv_close((uv_handle_t *)&s->listener, free_on_close);
    return rc;
  }
  s->listening = 1;
  /* an aid, not a need: without it quiet answers are still collected
   * when a worker sleeps or a client sends */
  if (uv_prepare_init(env->loop, &s->collect) == 0) {
    s->collect.data = s;
    s->collect_open = 1;
    s->collecting = uv_prepare_start(&s->collect, on_prepare) == 0;
    if (!s->collecting)
      uv_close((uv_handle_t *)&s->collect, on_collect_closed);
  }
  *out = s;
  return 0;
}

void tl_server_set_limits(struct tl_server *s, const struct tl_config_limits *limits) {
  apply_limits(s, limits);
}

int tl_server_connections(const struct tl_server *s) { return s->n_conns; }

static void on_listener_closed(uv_handle_t *h) {
  struct tl_server *s = h->data;
  s->listener_closed = 1;
  maybe_drained(s);
}

void tl_server_drain(struct tl_server *s, void (*done)(void *ctx), void *ctx) {
  s->draining = 1;
  s->drained = done;
  s->drained_ctx = ctx;
  if (s->collecting) { /* closed with the listener, before s is freed */
    s->collecting = 0;
    uv_close((uv_handle_t *)&s->collect, on_collect_closed);
  }
  if (s->listening) {
    s->listening = 0;
    if (unlink(s->path) != 0 && errno != ENOENT)
      tl_log_warn(&s->env.log, "%s: %s", s->path, strerror(errno));
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  }
  for (struct conn *c = s->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->job == NULL && c->writes == 0) {
      tl__conn_close(c);
    } else {
      c->close_after_write = 1;
      /* an answer not yet written says the connection closes, and a
       * lease ends after the request it is on */
      if (c->job != NULL) {
        int was = DIRECT_OK;
        atomic_compare_exchange_strong(&c->job->direct, &was, DIRECT_NO);
        atomic_store(&c->job->recall, 1);
      }
    }
  }
  maybe_drained(s);
}

void tl_server_free(struct tl_server *s) {
  if (s == NULL)
    return;
  free(s->path);
  free(s);
}
