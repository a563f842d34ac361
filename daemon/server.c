/*
 * server.c - connections, request dispatch and the route handlers (see
 * server.h).
 *
 * A connection is a small state machine on the loop thread: it reads,
 * feeds the parser, and for each complete request either answers at once
 * (metadata, health, metrics, state) or submits an inference job.  Bytes
 * that arrive while a job runs (pipelined requests, or the client's next
 * one) wait in the connection's pending buffer, up to PENDING_MAX, and
 * are fed once its answer is out.  The worker that ran the job writes the
 * answer itself when nothing else is queued on the connection, so a
 * client's round trip does not wait for the loop thread to wake; the loop
 * learns of the job at its next wake-up (see direct answers below).
 */
#include "server.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <sched.h>
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

#define READ_BUF_BYTES 65536
#define LISTEN_BACKLOG 128
#define SETTLE_NS 5000000
#define PENDING_MAX READ_BUF_BYTES
/* A leased connection (see below): how long its worker waits for the
 * next request, and how long one lease lasts at most before the
 * connection goes back to the loop (which then admits with fresh state:
 * a reloaded config, a new frontier, the controller's factors). */
#define LEASE_WAIT_NS 150000
#define LEASE_NS 10000000

struct conn;

/* Who writes an inference answer.  The worker that ran the request
 * writes it to the socket itself when the loop allowed that at submit
 * (nothing else queued on the connection): the client then need not wait
 * for the loop thread to wake.  The loop takes the permission back when it
 * closes or drains the connection first; once the worker holds it, the
 * connection's descriptor stays open until the job is done, so the worker
 * never writes to a descriptor that was closed and reused.
 *
 * Leases.  When a request was the last bytes read on a keep-alive
 * connection, came within LEASE_WAIT_NS of the answer before it, and is
 * the only inference in flight, the loop stops reading the connection
 * and lends it to the job: after writing the answer, the worker reads the
 * connection itself for up to LEASE_WAIT_NS, and serves the next request
 * there when it is an infer for the same model, without the loop (whose
 * wake-up would otherwise be on every round trip).  Each request so
 * served goes to the loop for its accounting only (struct acct).
 * Anything else that arrives (another route, 100-continue, a parse error,
 * pipelined bytes, the end of the stream), another job queued or in
 * flight, the loop's recall (close, drain) or LEASE_NS ends the lease,
 * and the job goes back to the loop with what the worker read and did
 * not use.  While lent, the connection's parser, read buffer and pending
 * bytes are the worker's; the loop touches none of them until the job's
 * done. */
enum {
  DIRECT_NO,   /* the loop writes the answer */
  DIRECT_OK,   /* the worker may write it */
  DIRECT_TAKEN /* the worker wrote it, or tried: see sent and send_errno */
};

/* An inference request between submit and answer. */
struct infer_job {
  struct tl_work work; /* first: the workers hand this back */
  struct tl_rt_request req;
  struct tl_server *srv;
  struct conn *conn; /* NULL once the connection closed first */
  int keep_alive;
  atomic_int direct;      /* DIRECT_* */
  int fd;                 /* the connection's, for a direct answer */
  struct tl_http_buf out; /* the formatted answer, when the worker wrote */
  size_t sent;            /* bytes of out the worker wrote */
  int send_errno;         /* why the worker's write stopped short; 0 none */
  uint64_t answered_ns;   /* when the worker's write returned */
  int counted;            /* its answer is counted in the server's answering */
  atomic_int lease;       /* 1: lent; the loop stopped reading it */
  atomic_int recall;      /* 1: the loop wants it back at the next request */
  /* When the lease ended on something for the loop: a parser event the
   * worker did not act on (TL_HTTP_REQUEST, TL_HTTP_CONTINUE, or < 0 with
   * ev_err), or the end of the stream. */
  int has_event, event, eof;
  struct tl_error ev_err;
};

/* A request served on a leased connection, for the loop's accounting. */
struct acct {
  struct tl_work work; /* first */
  struct tl_server *srv;
  struct tl_rt_request req;
  uint64_t answered_ns;
};

struct conn {
  uv_pipe_t pipe;
  uv_timer_t idle;
  struct tl_server *srv;
  struct conn *prev, *next;
  int open_handles;      /* freed when both handles are closed */
  int closing;           /* uv_close called */
  int close_after_write; /* close once the writes in flight are done */
  int writes;            /* writes in flight */
  int reading;           /* uv_read_start in effect */
  int eof;               /* the peer sent no more */
  int rejected;          /* not counted: refused over max_connections (503), or
                            taken to make room (408); closes after the answer */
  int route;             /* of the request being answered, for metrics; -1 none */
  struct infer_job *job; /* in flight; what is read meanwhile waits in pending */
  int close_deferred;    /* closing, its handles wait for the job's worker */
  uint64_t answered_ns;  /* when its last inference answer went out; 0 none */
  uint64_t request_ns;   /* when the request being read began (its first
                            byte, or the connection); 0: between requests */
  size_t feed_left;      /* bytes read after the request being handled */
  struct tl_http_conn http;
  char *pending; /* bytes read after the request in flight */
  size_t pending_len, pending_cap;
  char rbuf[READ_BUF_BYTES];
};

struct tl_server {
  struct tl_server_env env;
  uv_pipe_t listener;
  char *path;
  struct tl_config_limits limits;
  struct conn *conns; /* counted ones and rejected ones, all open */
  int n_conns;        /* counted: not rejected */
  uint64_t n_evicted; /* stalled connections closed to admit others */
  int n_allocated;    /* connection structs not yet freed */
  int listening;
  int draining;
  int listener_closed;
  /* Jobs whose worker started writing the answer and whose done has not
   * run yet: a client may know of them before the loop does. */
  atomic_int answering;
  /* Inference jobs submitted and not done (a lease's requests count as
   * its one job): a lease is for a connection whose job is the only one,
   * and ends when another comes (then the loop is awake anyway, and a
   * worker waiting on one client would only take CPU from the others). */
  atomic_int in_flight;
  /* Before each poll of the loop: collects quiet answers, so that the
   * controller and the metrics hear of them within a monitor interval
   * even while every worker stays busy (a worker wakes the loop for them
   * only when it sleeps) */
  uv_prepare_t collect;
  int collecting;
  int collect_open; /* its handle is not closed yet: s is not freed before */
  /* Load shedding: EWMA of the time a worker spends on one inference
   * request (pickup to answer), in ms; 0 until one is seen. */
  double service_ms;
  void (*drained)(void *ctx);
  void *drained_ctx;
};

static void conn_close(struct conn *c);
static void read_stop(struct conn *c);
static void conn_feed(struct conn *c, const char *data, size_t n);
static void idle_restart(struct conn *c);

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
    tl__log(&c->srv->env.log, 7, "client write: %s", uv_strerror(status));
  if (status < 0 || (c->close_after_write && c->writes == 0))
    conn_close(c);
  else if (c->writes == 0 && c->job == NULL)
    idle_restart(c);
}

/* Formats one response into out; any thread. */
static int format_response(struct tl_http_buf *out, int status, const char *content_type,
                           const void *body, size_t len, int keep_alive, int head_only,
                           const struct tl_http_header *headers, int n_headers,
                           struct tl_error *err) {
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

/* Queues buf[from..) on c, taking buf.  keep_alive 0 closes the
 * connection after it. */
static void queue_write(struct conn *c, struct tl_http_buf *buf, size_t from, int keep_alive) {
  struct write_req *wr = calloc(1, sizeof *wr);
  if (wr == NULL) {
    tl__log(&c->srv->env.log, 3, "cannot send a response: out of memory");
    tl_http_buf_free(buf);
    conn_close(c);
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
    conn_close(c);
    return;
  }
  c->writes++;
  if (!keep_alive)
    c->close_after_write = 1;
}

/* Sends one response.  keep_alive 0 closes the connection after it. */
static void send_response(struct conn *c, int status, const char *content_type, const void *body,
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
  if (format_response(&buf, status, content_type, body, len, keep_alive,
                      c->http.req.method == TL_HTTP_METHOD_HEAD, headers, n_headers, &err) != 0) {
    tl__log(&s->env.log, 3, "cannot format a response: %s", err.msg);
    tl_http_buf_free(&buf);
    conn_close(c);
    return;
  }
  queue_write(c, &buf, 0, keep_alive);
}

/* The fallback body when even an error body cannot be built. */
static const char oom_body[] = "{\"error\":\"out of memory\"}";

/* {"error": msg} with status; keep_alive as the request asked. */
static void send_error(struct conn *c, int status, const char *msg, int keep_alive) {
  struct tl_oip_body b = {0};
  if (tl_oip_error_body(msg, &b, NULL) != 0)
    send_response(c, status, "application/json", oom_body, sizeof oom_body - 1, keep_alive, NULL,
                  0);
  else
    send_response(c, status, "application/json", b.data, b.len, keep_alive, NULL, 0);
  tl_oip_body_free(&b);
}

/* The Inference-Header-Content-Length header of an answer with binary
 * tensors; 0 headers for a JSON-only one.  jl holds the value. */
static int binary_header(const struct tl_oip_body *b, struct tl_http_header *h, char jl[32]) {
  snprintf(jl, 32, "%zu", b->json_len);
  *h = (struct tl_http_header){"Inference-Header-Content-Length", jl};
  return b->json_len < b->len;
}

static void send_body(struct conn *c, int status, struct tl_oip_body *b, int keep_alive) {
  if (b->data == NULL) {
    send_response(c, status >= 400 ? status : 500, "application/json", oom_body,
                  sizeof oom_body - 1, keep_alive, NULL, 0);
    return;
  }
  char jl[32];
  struct tl_http_header h;
  int n = binary_header(b, &h, jl);
  send_response(c, status, b->content_type, b->data, b->len, keep_alive, n ? &h : NULL, n);
}

/* Sends a jansson value (stolen) as a JSON body. */
static void send_json(struct conn *c, int status, json_t *v, int keep_alive) {
  char *text = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(v);
  if (text == NULL) {
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  send_response(c, status, "application/json", text, strlen(text), keep_alive, NULL, 0);
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

static void conn_close_handles(struct conn *c) {
  uv_close((uv_handle_t *)&c->idle, conn_free);
  uv_close((uv_handle_t *)&c->pipe, conn_free);
}

static void conn_close(struct conn *c) {
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
  read_stop(c);
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
  conn_close_handles(c);
}

/* A stalled request is answered 408 and its connection closed. */
static void close_stalled(struct conn *c, const char *why) {
  char msg[160];
  snprintf(msg, sizeof msg, "the request did not arrive whole within %d ms%s",
           c->srv->limits.request_timeout_ms, why);
  c->route = -1;
  send_error(c, 408, msg, 0);
  read_stop(c);
}

static void on_idle(uv_timer_t *t) {
  struct conn *c = t->data;
  if (c->job != NULL || c->writes != 0 || c->closing || c->close_after_write)
    return;
  if (c->request_ns != 0) {
    tl__log(&c->srv->env.log, 7, "closing a connection whose request took over %d ms",
            c->srv->limits.request_timeout_ms);
    close_stalled(c, "");
    return;
  }
  tl__log(&c->srv->env.log, 7, "closing a connection idle for %d ms",
          c->srv->limits.idle_timeout_ms);
  conn_close(c);
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
static void collect_answered(struct tl_server *s);

static int reap_hung_up(struct tl_server *s) {
  collect_answered(s); /* jobs whose worker answered: their connections are free */
  int n = 0;
  for (struct conn *c = s->conns, *next; c != NULL; c = next) {
    next = c->next;
    uv_os_fd_t fd;
    char byte;
    if (c->rejected || c->closing || c->close_after_write || c->job != NULL || c->writes != 0 ||
        c->request_ns != 0 || uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
        recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) != 0)
      continue;
    conn_close(c);
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
  tl__log(&s->env.log, 6,
          "every connection is taken: closing one stalled in its request for %.0f "
          "ms to admit a new one",
          (double)(now - victim->request_ns) / 1e6);
  victim->rejected = 1; /* no longer counted */
  s->n_conns--;
  s->n_evicted++;
  close_stalled(victim, " (closed to make room for another client)");
  return 1;
}

/* Runs the done of every job whose answer a worker already wrote, if
 * any: the loop then sees what its clients may already know. */
static void collect_answered(struct tl_server *s) {
  if (atomic_load(&s->answering) > 0)
    tl_workers_collect(s->env.workers);
}

/* Appends data[0..n) to the pending bytes (read while a job runs, or
 * left by a lease's worker). */
static int append_pending(struct conn *c, const char *data, size_t n) {
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
  collect_answered(c->srv);
  if (c->closing)
    return;
  if (nread < 0) {
    if (nread != UV_EOF)
      tl__log(&c->srv->env.log, 7, "client read: %s", uv_strerror((int)nread));
    c->eof = 1;
    uv_read_stop(st);
    c->reading = 0;
    /* A request in flight is still answered; else there is nothing more
     * to do on this connection (a request cut short is dropped). */
    if (c->job == NULL && c->writes == 0)
      conn_close(c);
    else
      c->close_after_write = 1;
    return;
  }
  if (c->job != NULL) {
    /* behind a request in flight; past PENDING_MAX the socket holds the
     * rest until the job is done */
    if (append_pending(c, buf->base, (size_t)nread) != 0) {
      tl__log(&c->srv->env.log, 3, "out of memory keeping pipelined requests");
      c->close_after_write = 1;
      read_stop(c);
    } else if (c->pending_len >= PENDING_MAX) {
      read_stop(c);
    }
    return;
  }
  idle_restart(c);
  conn_feed(c, buf->base, (size_t)nread);
}

static void read_start(struct conn *c) {
  if (c->reading || c->eof || c->closing)
    return;
  int e = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (e != 0) {
    conn_close(c);
    return;
  }
  c->reading = 1;
}

static void read_stop(struct conn *c) {
  if (c->reading)
    uv_read_stop((uv_stream_t *)&c->pipe);
  c->reading = 0;
}

/* Keeps data[0..n) for after the request in flight (data may point into
 * the pending buffer itself: then n fits, nothing is reallocated, and the
 * bytes move down). */
static int keep_pending(struct conn *c, const char *data, size_t n) {
  c->pending_len = 0;
  return append_pending(c, data, n);
}

static void handle_request(struct conn *c);

/* Acts on one parser event of c: answers an error (and stops reading),
 * a 100-continue, or the request.  Returns 1 when feeding must stop here
 * (an error, or the request now waits for a worker). */
static int conn_event(struct conn *c, int ev, const struct tl_error *err) {
  if (ev < 0) {
    c->route = -1;
    int status = tl_http_conn_error_status(&c->http);
    send_error(c, status > 0 ? status : 400, err->msg, 0);
    read_stop(c);
    return 1;
  }
  if (ev == TL_HTTP_CONTINUE) {
    send_response(c, 100, NULL, NULL, 0, 1, NULL, 0);
    return 0;
  }
  handle_request(c);
  return c->job != NULL;
}

/* After a request went to a worker: data[0..n) is what came after it.
 * Nothing: the connection is lent to the job when it may be (reading
 * stops); else reading goes on into pending while the job runs, and the
 * next request wakes the loop, which also collects this job. */
static void conn_submitted(struct conn *c, const char *data, size_t n) {
  uv_timer_stop(&c->idle);
  /* Lent at submit (route_infer): pending is the worker's now, and empty
   * (a lease needs nothing after the request).  Not even pending_len may
   * be touched: the worker may have written it already. */
  if (atomic_load(&c->job->lease))
    return;
  if (keep_pending(c, data, n) != 0) {
    tl__log(&c->srv->env.log, 3, "out of memory keeping pipelined requests");
    c->close_after_write = 1;
  }
}

/* Feeds bytes to the parser and answers each request they complete,
 * until they are used up or a request must wait for a worker. */
static void conn_feed(struct conn *c, const char *data, size_t n) {
  while (n > 0 && !c->closing && !c->close_after_write) {
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
    if (conn_event(c, ev, &err)) {
      if (c->job != NULL)
        conn_submitted(c, data, n);
      return;
    }
  }
}

/* After an inference answer: go on with what was read meanwhile. */
static void conn_resume(struct conn *c) {
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
  if (c->job == NULL && !c->closing && !c->close_after_write) {
    idle_restart(c);
    read_start(c);
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  struct tl_server *s = listener->data;
  if (status < 0) {
    tl__log(&s->env.log, 4, "accept: %s", uv_strerror(status));
    return;
  }
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) {
    tl__log(&s->env.log, 3, "out of memory accepting a connection");
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
    tl__log(&s->env.log, 3, "accept: %s", uv_strerror(e));
    return;
  }
  c->pipe.data = c;
  c->open_handles = 1;
  if ((e = uv_timer_init(listener->loop, &c->idle)) != 0) {
    uv_close((uv_handle_t *)&c->pipe, conn_free);
    tl__log(&s->env.log, 3, "accept: %s", uv_strerror(e));
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
    tl__log(&s->env.log, 4, "accept: %s", uv_strerror(e));
    conn_close(c);
    return;
  }
  if (c->rejected) {
    tl__log(&s->env.log, 4, "refusing a connection: %d open, the limit is %d", s->n_conns,
            s->limits.max_connections);
    char msg[128];
    snprintf(msg, sizeof msg, "too many connections: the limit is %d", s->limits.max_connections);
    send_error(c, 503, msg, 0);
    return;
  }
  if (tl_http_conn_init(&c->http, &lim, &err) != 0) {
    tl__log(&s->env.log, 3, "connection: %s", err.msg);
    conn_close(c);
    return;
  }
  c->request_ns = tl_now_ns(); /* its first request's time starts now */
  idle_restart(c);
  read_start(c);
}

/* --------------------------------------------------------------- routes */

typedef void route_fn(struct conn *c, const struct tl_oip_route_match *m, int keep_alive);

/* The model of the request, or NULL after answering 404 (unknown) or 503
 * (known to the config, not loaded yet). */
static struct tl_rt_model *find_model(struct conn *c, const char *name, int need_frontier,
                                      int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *m = tl_runtime_model(*s->env.current, name);
  char msg[TL_OIP_NAME_MAX + 96];
  if (m == NULL) {
    const struct tl_config *cfg = *s->env.config;
    for (int i = 0; cfg != NULL && i < cfg->n_models; i++)
      if (strcmp(cfg->models[i].name, name) == 0) {
        snprintf(msg, sizeof msg, "model \"%s\" is loading", name);
        send_error(c, 503, msg, keep_alive);
        return NULL;
      }
    snprintf(msg, sizeof msg, "unknown model \"%s\"", name);
    send_error(c, 404, msg, keep_alive);
    return NULL;
  }
  if (need_frontier && m->frontier == NULL) {
    snprintf(msg, sizeof msg, "model \"%s\" has no plans yet", name);
    send_error(c, 503, msg, keep_alive);
    return NULL;
  }
  return m;
}

static void route_server_metadata(struct conn *c, const struct tl_oip_route_match *m,
                                  int keep_alive) {
  (void)m;
  static const char *const ext[] = {"binary_tensor_data", "schedule_policy", "tailor_adaptive"};
  const struct tl_config *cfg = *c->srv->env.config;
  int n = cfg != NULL ? cfg->n_models : 0;
  const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
  if (names == NULL) {
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  for (int i = 0; i < n; i++)
    names[i] = cfg->models[i].name;
  struct tl_oip_server_meta meta = {"tailor", c->srv->env.version, ext, 3, names, n};
  struct tl_oip_body b = {0};
  struct tl_error err = {{0}};
  if (tl_oip_server_metadata(&meta, &b, &err) != 0)
    send_error(c, 500, err.msg, keep_alive);
  else
    send_body(c, 200, &b, keep_alive);
  tl_oip_body_free(&b);
  free(names);
}

static void route_live(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  send_json(c, 200, json_pack("{s:b}", "live", 1), keep_alive);
}

/* Health per the protocol: 200 means true, a 4xx false. */
static void route_ready(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  int ready = tl_runtime_ready(*c->srv->env.current);
  send_json(c, ready ? 200 : 400, json_pack("{s:b}", "ready", ready), keep_alive);
}

static void route_model_ready(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_rt_model *model = tl_runtime_model(*c->srv->env.current, m->model);
  if (model == NULL) {
    find_model(c, m->model, 0, keep_alive); /* answers 404 or 503 */
    return;
  }
  int ready = model->frontier != NULL;
  send_json(c, ready ? 200 : 400, json_pack("{s:s,s:b}", "name", m->model, "ready", ready),
            keep_alive);
}

static void route_model_metadata(struct conn *c, const struct tl_oip_route_match *m,
                                 int keep_alive) {
  struct tl_rt_model *model = find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  struct tl_oip_tensor_meta in = {model->input_name, TL_DTYPE_FLOAT32, {0}};
  in.shape.ndim = 4;
  in.shape.dims[0] = -1;
  for (int d = 0; d < 3; d++)
    in.shape.dims[d + 1] = model->in_chw[d];
  struct tl_oip_tensor_meta *outs = calloc((size_t)model->n_outputs, sizeof *outs);
  if (outs == NULL) {
    send_error(c, 500, "out of memory", keep_alive);
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
    send_error(c, 500, err.msg, keep_alive);
  else
    send_body(c, 200, &b, keep_alive);
  tl_oip_body_free(&b);
  free(outs);
}

/* Worker thread: formats j's answer into j->out.  0, or -1 when it
 * cannot (the loop formats it again and reports why). */
static int format_answer(struct infer_job *j) {
  struct tl_oip_body *b = &j->req.resp;
  if (b->data == NULL)
    return -1;
  char jl[32];
  struct tl_http_header h;
  int n = binary_header(b, &h, jl);
  struct tl_error err = {{0}};
  if (format_response(&j->out, j->req.status, b->content_type, b->data, b->len, j->keep_alive, 0,
                      n ? &h : NULL, n, &err) != 0) {
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
      if (ev >= 0 && left > 0 && append_pending(c, data, left) != 0)
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
    if (conn_event(c, j->event, &j->ev_err)) {
      if (c->job != NULL)
        conn_submitted(c, c->pending, n);
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
    tl__log(&s->env.log, 7, "client write: %s", strerror(j->send_errno));
    conn_close(c);
    return;
  }
  int keep_alive = j->keep_alive && !s->draining;
  if (j->out.len == 0) {
    /* a request of the lease whose answer the worker could not format */
    c->route = TL_OIP_ROUTE_MODEL_INFER;
    send_body(c, j->req.status, &j->req.resp, keep_alive);
  } else {
    if (s->env.metrics != NULL)
      tl_metrics_request(s->env.metrics, c->route, j->req.status);
    if (j->sent < j->out.len)
      queue_write(c, &j->out, j->sent, keep_alive); /* on_written closes if it must */
    else if (!keep_alive)
      c->close_after_write = 1;
  }
  if (atomic_load(&j->lease)) {
    lease_end(c, j);
    if (c->job != NULL) /* what came next went to a worker, maybe on a new lease */
      return;
  }
  if (c->close_after_write && c->writes == 0) {
    conn_close(c);
    return;
  }
  conn_resume(c);
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
      conn_close_handles(c);
    else if (direct)
      finish_direct(c, j);
    else {
      send_body(c, r->status, &r->resp, j->keep_alive);
      conn_resume(c);
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

static void route_infer(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *model = find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  char why[256];
  if (must_shed(s, model, why, sizeof why)) {
    if (s->env.metrics != NULL)
      tl_metrics_shed(s->env.metrics, model->cfg.name);
    send_error(c, 503, why, keep_alive);
    return;
  }
  struct infer_job *j = calloc(1, sizeof *j);
  if (j == NULL) {
    send_error(c, 500, "out of memory", keep_alive);
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
    read_stop(c);
    atomic_init(&j->lease, 1);
  }
  int rc = tl_workers_submit(s->env.workers, &j->work);
  if (rc != 0) {
    tl_rt_request_release(&j->req);
    free(j);
    if (lease)
      read_start(c);
    send_error(c, 503,
               rc == TL_EBUSY ? "the inference queue is full: try again later"
                              : "the server is shutting down",
               keep_alive);
    return;
  }
  atomic_fetch_add(&s->in_flight, 1);
  c->job = j;
}

/* Brings the loop up to date with every answer already written, so that
 * a client that got its answer and then asks for metrics or state sees
 * it counted.  A worker hands its job back within a microsecond of its
 * write unless it is preempted: the wait is capped at SETTLE_NS. */
static void settle(struct tl_server *s) {
  uint64_t until = 0;
  while (atomic_load(&s->answering) > 0) {
    collect_answered(s);
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

static void route_metrics(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  (void)m;
  struct tl_server *s = c->srv;
  settle(s);
  if (s->env.metrics == NULL) {
    send_error(c, 404, "no metrics", keep_alive);
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
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  send_response(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, keep_alive, NULL, 0);
  free(text);
}

/* A number, or null when unknown (negative). */
static json_t *maybe_real(double v) { return v >= 0 ? json_real(v) : json_null(); }

static void route_subnets(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_rt_model *model = find_model(c, m->model, 1, keep_alive);
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
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  send_json(c, 200, root, keep_alive);
}

static void route_state(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  settle(s);
  struct tl_rt_model *model = find_model(c, m->model, 1, keep_alive);
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
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  send_json(c, 200, root, keep_alive);
}

static void route_pin(struct conn *c, const struct tl_oip_route_match *m, int keep_alive) {
  struct tl_server *s = c->srv;
  struct tl_rt_model *model = find_model(c, m->model, 1, keep_alive);
  if (model == NULL)
    return;
  const struct tl_http_request *req = &c->http.req;
  json_error_t je;
  json_t *root = req->body_len > 0 ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
  const char *text = json_string_value(json_object_get(root, "subnet"));
  if (text == NULL) {
    json_decref(root);
    send_error(c, 400,
               "the body must be a JSON object {\"subnet\": \"<spec of a frontier member>\"} "
               "or {\"subnet\": \"auto\"}",
               keep_alive);
    return;
  }
  struct tl_error err = {{0}};
  int rc = tl_controller_pin(s->env.controller, model, text, &err);
  json_decref(root);
  if (rc != 0) {
    send_error(c, rc == TL_EBUSY ? 503 : 400, err.msg, keep_alive);
    return;
  }
  int active = atomic_load(&model->ctl.active);
  send_json(c, 200,
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
    send_error(c, 400, msg, keep_alive);
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
  struct tl_rt_model *model = find_model(c, m->model, 0, keep_alive);
  int64_t limit = 0;
  if (model == NULL || events_limit(c, keep_alive, &limit) != 0)
    return;
  if (s->env.store == NULL) {
    send_error(c, 503, "switch events are not stored: the cache could not be opened", keep_alive);
    return;
  }
  struct tl_switch_event *ev = NULL;
  size_t n = 0;
  struct tl_error err = {{0}};
  if (tl_store_event_last(s->env.store, model->cfg.name, limit, &ev, &n, &err) != 0) {
    tl__log(&s->env.log, 4, "%s", err.msg);
    send_error(c, 500, "cannot read the switch events from the cache", keep_alive);
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
    send_error(c, 500, "out of memory", keep_alive);
    return;
  }
  send_json(c, 200, root, keep_alive);
}

static route_fn *const routes[TL_OIP_ROUTE_COUNT] = {
    [TL_OIP_ROUTE_SERVER_METADATA] = route_server_metadata,
    [TL_OIP_ROUTE_HEALTH_LIVE] = route_live,
    [TL_OIP_ROUTE_HEALTH_READY] = route_ready,
    [TL_OIP_ROUTE_MODEL_METADATA] = route_model_metadata,
    [TL_OIP_ROUTE_MODEL_READY] = route_model_ready,
    [TL_OIP_ROUTE_MODEL_INFER] = route_infer,
    [TL_OIP_ROUTE_METRICS] = route_metrics,
    [TL_OIP_ROUTE_MODEL_SUBNETS] = route_subnets,
    [TL_OIP_ROUTE_MODEL_STATE] = route_state,
    [TL_OIP_ROUTE_MODEL_PIN] = route_pin,
    [TL_OIP_ROUTE_MODEL_EVENTS] = route_events,
};

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
      send_response(c, 405, "application/json", b.data, b.len, keep_alive, &allow, 1);
    else
      send_error(c, 500, "out of memory", keep_alive);
    tl_oip_body_free(&b);
    return;
  }
  if (rc != 0) {
    send_error(c, tl_oip_error_status(rc), err.msg, keep_alive);
    return;
  }
  c->route = (int)m.route;
  routes[m.route](c, &m, keep_alive);
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
    tl__log(&s->env.log, 4, "limits.max_header_bytes %zu is over what the HTTP parser takes: %zu",
            s->limits.max_header_bytes, TL_HTTP_HEADER_LIMIT_MAX);
    s->limits.max_header_bytes = TL_HTTP_HEADER_LIMIT_MAX;
  }
}

static void on_prepare(uv_prepare_t *h) { collect_answered(h->data); }

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
      tl__log(&s->env.log, 4, "%s: %s", s->path, strerror(errno));
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  }
  for (struct conn *c = s->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->job == NULL && c->writes == 0) {
      conn_close(c);
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
