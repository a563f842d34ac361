/*
 * fuzz_server.c - the daemon's request path, whole and in one process: the
 * socket server (daemon/server*.c, routes.c) with its workers, runtime, controller,
 * metrics and store, serving the tiny test model on a Unix socket in the
 * target's temporary directory, driven by a client on one connection.
 *
 * An input is a script for that client, a sequence of commands; each is a
 * byte (its value modulo 8) and its operands:
 *
 *   REQUEST  flags route extra      appends a well-formed request (below)
 *   RAW      n:u16be bytes[n]       appends bytes as they are (garbage,
 *                                   half requests, another client's idea
 *                                   of HTTP)
 *   SEND     n                      writes the next n bytes of what was
 *                                   appended (0: all of it) - partial reads
 *   WAIT                            writes nothing; lets the server answer
 *                                   until it is quiet
 *   PAUSE    t                      sleeps (t % 16) * 50 microseconds, then WAIT
 *                                   (deadlines, leases, idle connections)
 *   SHUT                            half-closes the connection (the server
 *                                   sees the end of the stream); ends the
 *                                   script
 *   INFER    flags n bytes[n]       a POST .../infer with bytes as its
 *                                   body, a right or wrong Content-Length
 *                                   and Inference-Header-Content-Length
 *   (7 is WAIT too.)
 *
 * REQUEST makes what the fuzzer alone would rarely get right: flags pick
 * 100-continue, chunked framing, Connection: close, HTTP/1.0 and HEAD;
 * route picks one of the daemon's routes for the model or another name;
 * for an inference the body is a valid JSON or binary request for the
 * model's input, with a deadline (parameters.timeout) and subnet picked
 * by extra.  Missing operands read as 0.
 *
 * After the script everything appended is sent, the client closes, and
 * the server must close its end and free the connection within
 * HANG_SECONDS: a connection the server forgets is a bug (a descriptor
 * and memory kept forever).  Every answer is read by the client; answers
 * must each begin with a status line.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "config.h"
#include "controller.h"
#include "error.h"
#include "fuzzutil.h"
#include "metrics.h"
#include "plan.h"
#include "runtime.h"
#include "server.h"
#include "store.h"
#include "workers.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How long the server may take to close a connection its client closed,
 * and to build the model at start. */
#define HANG_SECONDS 5
#define START_SECONDS 120

/* What the client appends before sending; inputs are short (libFuzzer's
 * max_len), so a fixed buffer is room enough for every request they
 * describe. */
#define OUT_MAX (256 * 1024)
/* The largest request body made by REQUEST. */
#define BODY_MAX 16384

enum { CMD_REQUEST, CMD_RAW, CMD_SEND, CMD_WAIT, CMD_PAUSE, CMD_SHUT, CMD_INFER, CMD_WAIT2 };

/* The daemon, as tailord.c puts it together. */
static struct {
  uv_loop_t loop;
  struct tl_config *cfg;
  struct tl_runtime *rt;
  struct tl_store *store;
  struct tl_metrics *metrics;
  struct tl_workers *workers;
  struct tl_rt_builder *builder;
  struct tl_controller *controller;
  struct tl_server *server;
  int failed;
  char failure[TL_ERROR_MAX];
  struct sockaddr_un addr;
  /* the model's input, for valid inference bodies */
  char input_name[256];
  int64_t chw[3];
  /* specs for parameters.subnet and pins: the frontier's first and last */
  char spec_first[TL_RT_SPEC_MAX], spec_last[TL_RT_SPEC_MAX];
} d;

/* ------------------------------------------------------------ set-up */

static void on_log(void *ctx, int priority, const char *msg) {
  (void)ctx;
  if (priority <= TL_LOG_ERR && getenv("FUZZ_SERVER_LOG") != NULL)
    fprintf(stderr, "tailord: %s\n", msg);
}

static void on_builder_event(void *ctx, struct tl_rt_event *ev) {
  (void)ctx;
  switch (ev->type) {
  case TL_RT_EVENT_READY:
    tl_runtime_unref(d.rt);
    d.rt = ev->rt;
    tl_controller_set_runtime(d.controller, d.rt);
    break;
  case TL_RT_EVENT_FRONTIER: /* no calibration data: no search, none come */
    tl_rt_frontier_unref(ev->frontier);
    tl_runtime_unref(ev->rt);
    break;
  case TL_RT_EVENT_FAILED:
    d.failed = 1;
    snprintf(d.failure, sizeof d.failure, "%s", ev->message);
    break;
  }
}

static void write_config(const char *tmp, char *path, size_t size) {
  char text[2048];
  int n = snprintf(text, sizeof text,
                   "socket:\n  path: %s/s.sock\n"
                   "database: %s/cache.db\n"
                   "workers: 2\nthreads: 1\n"
                   "monitor:\n  interval_ms: 50\n"
                   "limits:\n  max_connections: 4\n  max_header_bytes: 2048\n"
                   "  max_body_bytes: 65536\n  idle_timeout_ms: 1000\n  queue_depth: 4\n"
                   "models:\n  - name: tiny\n    path: %s\n"
                   "    budget:\n      latency_p95_ms: 50\n",
                   tmp, tmp, fuzz_source_path("tests/data/models/tiny_cnn.onnx"));
  if (n < 0 || (size_t)n >= sizeof text)
    fuzz_die("%s: the config does not fit", tmp);
  snprintf(path, size, "%s/tailord.yaml", tmp);
  fuzz_write_file(path, text, (size_t)n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  /* as tailord does (tailord.c): a client that hangs up while its answer
   * is written must not end the process */
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
    fuzz_die("signal(SIGPIPE): %s", strerror(errno));
  const char *tmp = fuzz_tmpdir();
  char path[PATH_MAX];
  struct tl_error err;
  write_config(tmp, path, sizeof path);
  if (tl_config_load(path, &d.cfg, &err) != 0)
    fuzz_die("%s", err.msg);
  tl_engine_set_threads(d.cfg->threads);
  struct tl_store_open_report rep;
  if (tl_store_open(d.cfg->database, &d.store, &rep, &err) != 0)
    fuzz_die("%s", err.msg);
  if (uv_loop_init(&d.loop) != 0 || tl_metrics_new(&d.metrics) != 0)
    fuzz_die("cannot make the loop and the metrics");

  struct tl_logger log = {on_log, NULL};
  struct tl_rt_builder_env be = {
      .loop = &d.loop,
      .database = d.cfg->database,
      .device_root = "/",
      .workers = d.cfg->workers,
      .threads = d.cfg->threads,
      .on_event = on_builder_event,
      .log = log,
  };
  struct tl_controller_env ce = {
      .loop = &d.loop, .store = d.store, .metrics = d.metrics, .log = log};
  struct tl_server_env se = {
      .loop = &d.loop,
      .current = &d.rt,
      .config = &d.cfg,
      .controller = NULL, /* set below, once started */
      .metrics = d.metrics,
      .store = d.store,
      .version = "fuzz",
      .log = log,
  };
  if (tl_workers_start(&d.loop, d.cfg->workers, d.cfg->limits.queue_depth, &d.workers, &err) ||
      tl_rt_builder_start(&be, &d.builder, &err) ||
      tl_controller_start(&ce, NULL, d.cfg->monitor.interval_ms, &d.controller, &err))
    fuzz_die("%s", err.msg);
  se.workers = d.workers;
  se.controller = d.controller;
  if (tl_server_start(&se, &d.cfg->socket, &d.cfg->limits, &d.server, &err) != 0 ||
      tl_rt_builder_submit(d.builder, d.cfg, 1, &err) != 0)
    fuzz_die("%s", err.msg);

  /* The server answers from the start (503 while the model loads); the
   * inputs are for a server that serves, so wait for the model. */
  uint64_t until = tl_now_ns() + (uint64_t)START_SECONDS * 1000000000u;
  while (!tl_runtime_ready(d.rt) && !d.failed) {
    if (tl_now_ns() > until)
      fuzz_die("the model is not ready after %d s", START_SECONDS);
    uv_run(&d.loop, UV_RUN_ONCE);
  }
  if (d.failed)
    fuzz_die("the model could not be built: %s", d.failure);
  const struct tl_rt_model *m = &d.rt->models[0];
  snprintf(d.input_name, sizeof d.input_name, "%s", m->input_name);
  memcpy(d.chw, m->in_chw, sizeof d.chw);
  /* two images, as JSON of up to 6 bytes a value, must fit in
   * cmd_request's body */
  if (d.chw[0] * d.chw[1] * d.chw[2] > BODY_MAX / 16)
    fuzz_die("the model's input is too large for the requests made here");
  snprintf(d.spec_first, sizeof d.spec_first, "%s", m->frontier->m[0].text);
  snprintf(d.spec_last, sizeof d.spec_last, "%s", m->frontier->m[m->frontier->n - 1].text);

  d.addr.sun_family = AF_UNIX;
  snprintf(d.addr.sun_path, sizeof d.addr.sun_path, "%s", d.cfg->socket.path);
  /* Nothing is torn down at exit: the daemon's parts stay reachable from
   * d, so LeakSanitizer does not count them, and stopping the workers
   * and the builder would only slow the end of a run. */
  return 0;
}

/* ----------------------------------------------------------- the client */

struct client {
  int fd;
  char out[OUT_MAX]; /* appended, not yet sent: out[sent..len) */
  size_t len, sent;
  int shut;
  uint64_t received;
};

/* Reads what the server sent; 1 if anything came, -1 at its end. */
static int client_read(struct client *c) {
  char buf[65536];
  int any = 0;
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      /* the first bytes, however they come, must be "HTTP/" */
      for (uint64_t i = 0; i < (uint64_t)n && c->received + i < 5; i++)
        if (buf[i] != "HTTP/"[c->received + i])
          fuzz_die("the first answer does not begin with a status line");
      c->received += (uint64_t)n;
      any = 1;
      continue;
    }
    if (n == 0)
      return -1;
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return any;
    if (errno == ECONNRESET)
      return -1;
    fuzz_die("client recv: %s", strerror(errno));
  }
}

/* Blocks until the client has something to read or the loop something
 * to do (its epoll descriptor is readable), or timeout_ms pass.  Polling
 * the loop with sched_yield() instead would give the CPU away for whole
 * time slices on a busy machine. */
static void wait_events(const struct client *c, int timeout_ms) {
  struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                        {.fd = uv_backend_fd(&d.loop), .events = POLLIN}};
  if (poll(p, 2, timeout_ms) < 0 && errno != EINTR)
    fuzz_die("poll: %s", strerror(errno));
}

/* Lets the loop and the workers run until nothing happens for a few
 * rounds: no worker busy, nothing received. */
static void pump(struct client *c) {
  uint64_t until = tl_now_ns() + (uint64_t)HANG_SECONDS * 1000000000u;
  for (int quiet = 0;;) {
    uv_run(&d.loop, UV_RUN_NOWAIT);
    int got = client_read(c);
    if (got < 0)
      return;
    int busy = tl_workers_running(d.workers) + tl_workers_waiting(d.workers) > 0;
    quiet = got > 0 || busy ? 0 : quiet + 1;
    if (quiet == 3)
      return;
    if (tl_now_ns() > until)
      fuzz_die("the server is still busy after %d s", HANG_SECONDS);
    wait_events(c, busy ? 10 : 0);
  }
}

/* Writes up to n more of the appended bytes (all when n is 0). */
static void client_send(struct client *c, size_t n) {
  size_t left = c->len - c->sent;
  if (n == 0 || n > left)
    n = left;
  uint64_t until = tl_now_ns() + (uint64_t)HANG_SECONDS * 1000000000u;
  while (n > 0 && !c->shut) {
    ssize_t w = send(c->fd, c->out + c->sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      c->sent += (size_t)w;
      n -= (size_t)w;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      /* the server reads no more for now (a request in flight): let it
       * answer, then go on */
      pump(c);
      if (tl_now_ns() > until)
        fuzz_die("the server reads nothing for %d s", HANG_SECONDS);
    } else {
      return; /* it closed: what is left cannot go */
    }
  }
  uv_run(&d.loop, UV_RUN_NOWAIT);
}

static void append(struct client *c, const void *p, size_t n) {
  if (n > OUT_MAX - c->len)
    n = OUT_MAX - c->len; /* longer scripts lose their tail */
  memcpy(c->out + c->len, p, n);
  c->len += n;
}

static void appendf(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void appendf(struct client *c, const char *fmt, ...) {
  size_t room = OUT_MAX - c->len;
  if (room == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(c->out + c->len, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    c->len += (size_t)n < room ? (size_t)n : room - 1;
}

/* -------------------------------------------------------------- requests */

/* The script being read. */
struct script {
  const uint8_t *p, *end;
};

static unsigned next(struct script *s) { return s->p < s->end ? *s->p++ : 0; }

/* REQUEST flags: */
#define F_CONTINUE 0x01
#define F_CHUNKED 0x02
#define F_CLOSE 0x04
#define F_HTTP10 0x08
#define F_HEAD 0x10
#define F_BINARY 0x20 /* inference input in the binary extension */
#define F_OTHER_MODEL 0x40
#define F_BATCH 0x80 /* two images */

/* The body of an inference request for the model's input, into buf:
 * JSON, or JSON and the tensor after it (*json_len set). */
static size_t infer_body(char *buf, size_t size, unsigned flags, unsigned extra, long *json_len) {
  const char *const subnets[] = {NULL, d.spec_first, d.spec_last, "r=1 d=9 w=.3"};
  int64_t n = flags & F_BATCH ? 2 : 1;
  int64_t numel = n * d.chw[0] * d.chw[1] * d.chw[2];
  char params[128] = "";
  unsigned timeout = (extra >> 2) & 7; /* 0: none; else 10^(timeout-1) us */
  const char *subnet = subnets[extra & 3];
  long us = 1;
  for (unsigned i = 1; i < timeout; i++)
    us *= 10;
  snprintf(params, sizeof params, "\"parameters\": {%s%ld%s%s%s%s}, ",
           timeout ? "\"timeout\": " : "\"priority\": ", timeout ? us : 0L,
           subnet ? ", \"subnet\": \"" : "", subnet ? subnet : "", subnet ? "\"" : "",
           extra & 0x20 ? ", \"binary_data_output\": true" : "");
  size_t len = (size_t)snprintf(buf, size,
                                "{\"id\": \"%u\", %s\"inputs\": [{\"name\": \"%s\", "
                                "\"shape\": [%lld, %lld, %lld, %lld], \"datatype\": \"FP32\", ",
                                extra, params, d.input_name, (long long)n, (long long)d.chw[0],
                                (long long)d.chw[1], (long long)d.chw[2]);
  if (flags & F_BINARY) {
    len +=
        (size_t)snprintf(buf + len, size - len, "\"parameters\": {\"binary_data_size\": %lld}}]}",
                         (long long)numel * 4);
    *json_len = (long)len;
    memset(buf + len, 0, (size_t)numel * 4);
    return len + (size_t)numel * 4;
  }
  len += (size_t)snprintf(buf + len, size - len, "\"data\": [");
  for (int64_t i = 0; i < numel; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%.2f", i ? "," : "",
                            (double)((i * 37 + extra) % 100) / 50.0 - 1);
  len += (size_t)snprintf(buf + len, size - len, "]}]}");
  *json_len = -1;
  return len;
}

/* Appends a request for target with body (n bytes), framed as flags say;
 * json_len >= 0 sends Inference-Header-Content-Length; length_delta makes
 * Content-Length lie. */
static void append_request(struct client *c, unsigned flags, const char *method, const char *target,
                           const char *body, size_t n, long json_len, int length_delta) {
  appendf(c, "%s %s HTTP/1.%d\r\nHost: fuzz\r\n", method, target, flags & F_HTTP10 ? 0 : 1);
  if (flags & F_CLOSE)
    appendf(c, "Connection: close\r\n");
  else if (flags & F_HTTP10)
    appendf(c, "Connection: keep-alive\r\n");
  if (json_len >= 0)
    appendf(c,
            "Inference-Header-Content-Length: %ld\r\nContent-Type: "
            "application/octet-stream\r\n",
            json_len);
  else if (body != NULL)
    appendf(c, "Content-Type: application/json\r\n");
  if (body == NULL) {
    appendf(c, "\r\n");
    return;
  }
  if (flags & F_CONTINUE)
    appendf(c, "Expect: 100-continue\r\n");
  if (flags & F_CHUNKED && !(flags & F_HTTP10)) {
    appendf(c, "Transfer-Encoding: chunked\r\n\r\n");
    /* in two chunks, the second possibly empty */
    size_t half = n / 2;
    if (half > 0) {
      appendf(c, "%zx\r\n", half);
      append(c, body, half);
      appendf(c, "\r\n");
    }
    if (n - half > 0) {
      appendf(c, "%zx;x=1\r\n", n - half);
      append(c, body + half, n - half);
      appendf(c, "\r\n");
    }
    appendf(c, "0\r\n\r\n");
    return;
  }
  long long length = (long long)n + length_delta;
  appendf(c, "Content-Length: %lld\r\n\r\n", length < 0 ? 0 : length);
  append(c, body, n);
}

static void cmd_request(struct client *c, struct script *s) {
  unsigned flags = next(s), route = next(s), extra = next(s);
  const char *model = flags & F_OTHER_MODEL ? (extra & 1 ? "other" : "t%69ny") : "tiny";
  const char *get = flags & F_HEAD ? "HEAD" : "GET";
  char target[512], body[BODY_MAX];
  long json_len = -1;
  switch (route % 12) {
  case 0: append_request(c, flags, get, "/v2", NULL, 0, -1, 0); break;
  case 1: append_request(c, flags, get, "/v2/health/live", NULL, 0, -1, 0); break;
  case 2: append_request(c, flags, get, "/v2/health/ready", NULL, 0, -1, 0); break;
  case 3:
    snprintf(target, sizeof target, "/v2/models/%s", model);
    append_request(c, flags, get, target, NULL, 0, -1, 0);
    break;
  case 4:
    snprintf(target, sizeof target, "/v2/models/%s/ready", model);
    append_request(c, flags, get, target, NULL, 0, -1, 0);
    break;
  case 5:
  case 6:
  case 7: {
    snprintf(target, sizeof target, "/v2/models/%s/infer", model);
    size_t n = infer_body(body, sizeof body, flags, extra, &json_len);
    append_request(c, flags, "POST", target, body, n, json_len, 0);
    break;
  }
  case 8: append_request(c, flags, get, "/metrics", NULL, 0, -1, 0); break;
  case 9:
    snprintf(target, sizeof target, "/v2/models/%s/%s", model, extra & 1 ? "subnets" : "state");
    append_request(c, flags, get, target, NULL, 0, -1, 0);
    break;
  case 10: {
    char pin[TL_RT_SPEC_MAX + 32];
    const char *spec = extra & 1 ? d.spec_first : d.spec_last;
    if (extra & 4)
      snprintf(pin, sizeof pin, "[%u]", extra);
    else
      snprintf(pin, sizeof pin, "{\"subnet\": \"%s\"}", extra & 2 ? "auto" : spec);
    snprintf(target, sizeof target, "/v2/models/%s/pin", model);
    append_request(c, flags, "POST", target, pin, strlen(pin), -1, 0);
    break;
  }
  default:
    snprintf(target, sizeof target, "/v2/models/%s/events?limit=%d", model, (int)extra - 8);
    append_request(c, flags, get, target, NULL, 0, -1, 0);
    break;
  }
}

/* INFER: the fuzzer's own body, with its lengths right or not. */
static void cmd_infer(struct client *c, struct script *s) {
  unsigned flags = next(s), n = next(s);
  char body[256];
  unsigned k = 0;
  for (; k < n && s->p < s->end; k++)
    body[k] = (char)next(s);
  long json_len = flags & F_BINARY ? (long)(flags & 0x0f) * 8 : -1;
  int delta = flags & F_HEAD ? (flags & F_CLOSE ? -1 : 1) : 0;
  append_request(c, flags & ~(unsigned)F_HEAD, "POST", "/v2/models/tiny/infer", body, k, json_len,
                 delta);
}

static void cmd_raw(struct client *c, struct script *s) {
  size_t n = next(s) << 8;
  n |= next(s);
  size_t left = (size_t)(s->end - s->p);
  if (n > left)
    n = left;
  append(c, s->p, n);
  s->p += n;
}

/* ------------------------------------------------------------ the target */

static int client_connect(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    fuzz_die("socket: %s", strerror(errno));
  /* a connect to a listening Unix socket completes at once or says
   * EAGAIN when the backlog is full, which the loop then empties */
  for (int tries = 0; connect(fd, (struct sockaddr *)&d.addr, sizeof d.addr) != 0; tries++) {
    if ((errno != EAGAIN && errno != EINTR) || tries > 1000)
      fuzz_die("connect %s: %s", d.addr.sun_path, strerror(errno));
    uv_run(&d.loop, UV_RUN_NOWAIT);
  }
  return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct client c;
  c.fd = client_connect();
  c.len = c.sent = 0;
  c.shut = 0;
  c.received = 0;
  struct script s = {data, data + size};
  while (s.p < s.end && !c.shut) {
    switch (next(&s) % 8) {
    case CMD_REQUEST: cmd_request(&c, &s); break;
    case CMD_RAW: cmd_raw(&c, &s); break;
    case CMD_SEND: client_send(&c, next(&s)); break;
    case CMD_PAUSE: {
      struct timespec ts = {0, (long)(next(&s) % 16) * 50000};
      nanosleep(&ts, NULL);
      pump(&c);
      break;
    }
    case CMD_SHUT:
      client_send(&c, 0);
      pump(&c);
      shutdown(c.fd, SHUT_WR);
      c.shut = 1;
      break;
    case CMD_INFER: cmd_infer(&c, &s); break;
    default: pump(&c); break;
    }
  }
  client_send(&c, 0);
  pump(&c);
  close(c.fd);

  /* The server must see the client gone and free the connection. */
  uint64_t until = tl_now_ns() + (uint64_t)HANG_SECONDS * 1000000000u;
  while (tl_server_connections(d.server) > 0) {
    uv_run(&d.loop, UV_RUN_NOWAIT);
    wait_events(&c, 10);
    if (tl_now_ns() > until)
      fuzz_die("the server kept a closed connection for %d s", HANG_SECONDS);
  }
  for (int i = 0; i < 4; i++) /* the close callbacks */
    uv_run(&d.loop, UV_RUN_NOWAIT);
  return 0;
}
