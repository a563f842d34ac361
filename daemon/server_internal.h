/*
 * server_internal.h - what server.c (connections, dispatch),
 * server_infer.c (the inference path) and routes.c (the other routes)
 * share: the connection, job and server structs and the functions one
 * calls in another.  Private to daemon/; server.h is the API.
 */
#ifndef TL_SERVER_INTERNAL_H
#define TL_SERVER_INTERNAL_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "oip.h"
#include "server.h"

#define READ_BUF_BYTES 65536
/* A leased connection (see below): how long its worker waits for the
 * next request, and how long one lease lasts at most before the
 * connection goes back to the loop (which then admits with fresh state:
 * a reloaded config, a new frontier, the controller's factors). */
#define LEASE_WAIT_NS 150000
#define LEASE_NS 10000000
/* Bytes of answers a connection may have waiting to be written (its
 * client is not reading them) before the server stops reading its next
 * requests, until they are written.  Without the bound, a client that
 * pipelines requests and never reads makes the daemon hold every answer
 * (20 000 requests grew it by 14 MiB).  One answer larger than this is
 * still written whole: the bound is checked between requests. */
#define WRITE_BACKLOG_MAX (256 * 1024)

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
  size_t write_queued;   /* bytes queued for it at the last look of the
                            write timeout (SIZE_MAX: none yet) */
  int reading;           /* uv_read_start in effect */
  int eof;               /* the peer sent no more */
  int backlogged;        /* reading stopped until its answers drain below
                            WRITE_BACKLOG_MAX; on_written resumes it */
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

typedef void route_fn(struct conn *c, const struct tl_oip_route_match *m, int keep_alive);

/* ------------------------------------------------- server.c: replies */

int tl__format_response(struct tl_http_buf *out, int status, const char *content_type,
                        const void *body, size_t len, int keep_alive, int head_only,
                        const struct tl_http_header *headers, int n_headers, struct tl_error *err);
void tl__queue_write(struct conn *c, struct tl_http_buf *buf, size_t from, int keep_alive);
void tl__send_response(struct conn *c, int status, const char *content_type, const void *body,
                       size_t len, int keep_alive, const struct tl_http_header *headers,
                       int n_headers);
void tl__send_error(struct conn *c, int status, const char *msg, int keep_alive);
int tl__binary_header(const struct tl_oip_body *b, struct tl_http_header *h, char jl[32]);
void tl__send_body(struct conn *c, int status, struct tl_oip_body *b, int keep_alive);
void tl__send_json(struct conn *c, int status, json_t *v, int keep_alive);

/* --------------------------------------------- server.c: connections */

void tl__conn_close_handles(struct conn *c);
void tl__conn_close(struct conn *c);
int tl__append_pending(struct conn *c, const char *data, size_t n);
void tl__read_start(struct conn *c);
void tl__read_stop(struct conn *c);
int tl__conn_event(struct conn *c, int ev, const struct tl_error *err);
void tl__conn_submitted(struct conn *c, const char *data, size_t n);
void tl__conn_resume(struct conn *c);

/* ------------------------------------------------ server.c: dispatch */

struct tl_rt_model *tl__find_model(struct conn *c, const char *name, int need_frontier,
                                   int keep_alive);

/* ------------------------------------------------------ server_infer.c */

void tl__route_infer(struct conn *c, const struct tl_oip_route_match *m, int keep_alive);
void tl__collect_answered(struct tl_server *s);
void tl__settle(struct tl_server *s);

/* ------------------------------------------------------------ routes.c */

/* Every route's handler, by route (tl__route_infer's too). */
extern route_fn *const tl__routes[TL_OIP_ROUTE_COUNT];

#endif
