/*
 * server.h - tailord's Unix socket server: HTTP/1.1 keep-alive
 * connections, the Open Inference Protocol v2 routes and tailord's own
 * (metrics, subnets, state, pin, events).
 *
 * The server is the only part of the daemon that touches sockets or HTTP.
 * Per connection it feeds what it reads to an incremental parser
 * (http.h), answers each request in order, and hands inference requests
 * to the workers (workers.h): while one is in flight, what the connection
 * reads waits until its answer is out, so responses leave in request
 * order.  Every bound comes
 * from the config: open connections (one more is answered 503 and
 * closed), header and body size (431, 413), idle time of a keep-alive
 * connection, and the queue of inference requests (503 when full).  Every
 * error is a JSON body {"error": "..."} with its status; nothing a client
 * sends can stop the daemon.
 *
 * Loop thread only, but for two things (server_infer.c): the worker that ran an
 * inference request writes the answer to the connection's socket itself
 * when the loop allowed it at submit ("direct answers"), and a client
 * that sends its next request as soon as it has an answer, alone in
 * flight, gets its connection lent to that worker, which reads and serves
 * the next inference requests there itself for up to 10 ms ("leases").
 * Connection structs own their libuv handles and are freed in the
 * handles' close callbacks; an inference request in flight keeps a
 * pointer to its connection that the connection clears when it closes
 * first, and a connection whose answer a worker is writing, or that is
 * lent, keeps its descriptor open until that job is done.
 */
#ifndef TL_SERVER_H
#define TL_SERVER_H

#include <uv.h>

#include "config.h"
#include "controller.h"
#include "error.h"
#include "metrics.h"
#include "runtime.h"
#include "store.h"
#include "workers.h"

struct tl_server_env {
  uv_loop_t *loop;
  /* The generation served (NULL until the first is built) and the config
   * in force: read (never changed) at each request, owned by the caller. */
  struct tl_runtime **current;
  struct tl_config **config;
  struct tl_workers *workers;
  struct tl_controller *controller;
  struct tl_metrics *metrics;
  struct tl_store *store; /* the loop's connection, for switch events; may be NULL */
  const char *version;    /* for GET /v2 */
  struct tl_logger log;
};

struct tl_server;

/* Binds the socket at sock->path (whose length must fit a Unix socket
 * address; a stale socket file there is removed, but not one a live
 * server answers on, nor a file of another kind), sets its mode and
 * listens.  env is copied.  Returns 0 or TL_EINVAL/TL_EIO/TL_ENOMEM with a
 * sentence naming the path. */
int tl_server_start(const struct tl_server_env *env, const struct tl_config_socket *sock,
                    const struct tl_config_limits *limits, struct tl_server **out,
                    struct tl_error *err);

/* New bounds; connections opened from now on get the new header and body
 * limits and idle time. */
void tl_server_set_limits(struct tl_server *s, const struct tl_config_limits *limits);

/* Open client connections. */
int tl_server_connections(const struct tl_server *s);

/* Stops accepting (closes and removes the socket), closes idle
 * connections, lets those with a request in flight answer it and close,
 * and calls done(ctx) once every connection is closed.  Then free the
 * server with tl_server_free(). */
void tl_server_drain(struct tl_server *s, void (*done)(void *ctx), void *ctx);

/* Frees a drained server. */
void tl_server_free(struct tl_server *s);

#endif
