/*
 * ctl_socket.c - tailorctl's commands that talk to a running tailord over
 * its Unix socket (HTTP/1.1, Open Inference Protocol v2 and tailord's own
 * routes):
 *
 *   status   is the daemon ready; per model the subnet serving, why, its
 *            prediction against the budget, and the device state
 *   subnets  the frontier: each member's prediction, accuracy and fit
 *   events   the last switches of the active subnet, with their reasons
 *   pin      fixes the subnet served (a frontier member) or gives the
 *            choice back to the controller ("auto")
 *   infer    sends images from a .npy file: once (prints the top-5), or
 *            as a load (--runs, --clients, --rate) with a latency summary
 *            and a per-request trace (--trace); in the binary extension
 *            on keep-alive connections, or as JSON tensors
 *            (--json-requests) and a connection per request
 *            (--connection-per-request), as simple clients send them
 *
 * The socket is --socket, else $TAILOR_SOCKET, else tailord's default;
 * the model is --model, else the one model the daemon serves.
 */
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "error.h"
#include "npy.h"

#define DEFAULT_SOCKET "/run/tailord/tailord.sock"

/* ---------------------------------------------------------- connection */

/* One keep-alive connection and the response being read on it. */
struct conn {
  const char *path;
  int fd; /* -1 when closed */
  http_parser parser;
  /* the response */
  int done;
  int keep_alive;
  char *body;
  size_t len, cap;
  size_t json_len;    /* Inference-Header-Content-Length, or len */
  int header_is_ihcl; /* the header being read is that one */
  char ihcl[32];
  size_t ihcl_len;
  int has_ihcl;
};

/* What an exchange gave: a status and a body, or a failure to reach the
 * daemon (status 0, msg says why). */
struct reply {
  int status;
  int refused;      /* status 0 because the connection could not be opened */
  const char *body; /* the connection's buffer: valid until its next use */
  size_t len, json_len;
  char msg[256];
};

static int on_header_field(http_parser *p, const char *at, size_t n) {
  struct conn *c = p->data;
  c->header_is_ihcl = n == strlen("Inference-Header-Content-Length") &&
                      strncasecmp(at, "Inference-Header-Content-Length", n) == 0;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->header_is_ihcl) {
    if (c->ihcl_len + n >= sizeof c->ihcl)
      return 1;
    memcpy(c->ihcl + c->ihcl_len, at, n);
    c->ihcl_len += n;
    c->ihcl[c->ihcl_len] = '\0';
    c->has_ihcl = 1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  struct conn *c = p->data;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n + 1)
      cap *= 2;
    char *b = realloc(c->body, cap);
    if (b == NULL)
      return 1;
    c->body = b;
    c->cap = cap;
  }
  memcpy(c->body + c->len, at, n);
  c->len += n;
  c->body[c->len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *p) {
  struct conn *c = p->data;
  c->done = 1;
  c->keep_alive = http_should_keep_alive(p);
  http_parser_pause(p, 1); /* nothing follows a response we did not ask for */
  return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_close(struct conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

static int conn_open(struct conn *c, char *msg, size_t size) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(c->path) >= sizeof a.sun_path) {
    snprintf(msg, size, "socket path %s is longer than %zu bytes", c->path, sizeof a.sun_path - 1);
    return -1;
  }
  strcpy(a.sun_path, c->path);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    snprintf(msg, size, "socket: %s", strerror(errno));
    return -1;
  }
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    conn_close(c);
    snprintf(msg, size, "cannot connect to tailord at %s: %s%s", c->path, strerror(e),
             e == ENOENT || e == ECONNREFUSED
                 ? " (is tailord running? --socket or $TAILOR_SOCKET names another socket)"
                 : "");
    return -1;
  }
  return 0;
}

static int send_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* One request and its response on c, (re)connecting when needed.  A
 * connection the daemon closed between two requests is opened again once;
 * any other failure closes it and sets r->status 0 and r->msg. */
static void exchange(struct conn *c, const char *method, const char *target,
                     const char *content_type, const char *extra_header, const void *body, size_t n,
                     struct reply *r) {
  memset(r, 0, sizeof *r);
  for (int attempt = 0; attempt < 2; attempt++) {
    int reused = c->fd >= 0;
    if (!reused && conn_open(c, r->msg, sizeof r->msg) != 0) {
      r->refused = 1;
      return;
    }
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: tailord\r\nContent-Type: %s\r\n%s"
                      "Content-Length: %zu\r\n\r\n",
                      method, target, content_type, extra_header, n);
    if (hl < 0 || (size_t)hl >= sizeof head) {
      snprintf(r->msg, sizeof r->msg, "request target %s is too long", target);
      return;
    }
    if (send_all(c->fd, head, (size_t)hl) != 0 || (n > 0 && send_all(c->fd, body, n) != 0)) {
      conn_close(c);
      if (reused)
        continue; /* the daemon closed an idle connection: once more */
      snprintf(r->msg, sizeof r->msg, "sending to %s: %s", c->path, strerror(errno));
      return;
    }
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    c->done = 0;
    c->len = 0;
    c->ihcl_len = 0;
    c->has_ihcl = 0;
    size_t got = 0;
    char buf[65536];
    while (!c->done) {
      ssize_t k = recv(c->fd, buf, sizeof buf, 0);
      if (k < 0 && errno == EINTR)
        continue;
      if (k < 0) {
        snprintf(r->msg, sizeof r->msg, "reading from %s: %s", c->path, strerror(errno));
        conn_close(c);
        return;
      }
      size_t used = http_parser_execute(&c->parser, &settings, buf, (size_t)k);
      got += (size_t)k;
      if (k == 0 && !c->done) {
        conn_close(c);
        if (reused && got == 0)
          break; /* closed before answering: an idle close raced us */
        snprintf(r->msg, sizeof r->msg, "tailord closed the connection before answering");
        return;
      }
      if (!c->done && used != (size_t)k) {
        snprintf(r->msg, sizeof r->msg, "bad response from tailord: %s",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        conn_close(c);
        return;
      }
    }
    if (!c->done)
      continue;
    if (!c->keep_alive)
      conn_close(c);
    r->status = c->parser.status_code;
    r->body = c->body != NULL ? c->body : "";
    r->len = c->len;
    r->json_len = c->len;
    if (c->has_ihcl) {
      char *end;
      unsigned long long v = strtoull(c->ihcl, &end, 10);
      if (*end == '\0' && v <= c->len)
        r->json_len = (size_t)v;
    }
    return;
  }
  snprintf(r->msg, sizeof r->msg, "tailord at %s keeps closing the connection", c->path);
}

static void conn_free(struct conn *c) {
  conn_close(c);
  free(c->body);
  c->body = NULL;
}

/* ------------------------------------------------------- common options */

struct target {
  struct conn conn;
  const char *model; /* --model, or the daemon's only one (malloc'd then) */
  char *model_owned;
};

static const char *default_socket(void) {
  const char *s = getenv("TAILOR_SOCKET");
  return s != NULL && s[0] != '\0' ? s : DEFAULT_SOCKET;
}

/* The JSON body of a 2xx reply; any other outcome dies with the daemon's
 * own error message. */
static json_t *expect_json(const struct reply *r, const char *what) {
  if (r->status == 0)
    die("%s", r->msg);
  json_error_t je;
  json_t *v = json_loadb(r->body, r->json_len, 0, &je);
  if (r->status < 200 || r->status > 299) {
    const char *e = json_string_value(json_object_get(v, "error"));
    char msg[512];
    snprintf(msg, sizeof msg, "%s", e != NULL ? e : "(no error message)");
    json_decref(v);
    die("%s: tailord answered %d: %s", what, r->status, msg);
  }
  if (v == NULL)
    die("%s: tailord's answer is not JSON: %s", what, je.text);
  return v;
}

static json_t *get(struct target *t, const char *path, const char *what) {
  struct reply r;
  exchange(&t->conn, "GET", path, "application/json", "", NULL, 0, &r);
  return expect_json(&r, what);
}

/* Sets t->model: as given, or the only model served. */
static void resolve_model(struct target *t) {
  if (t->model != NULL)
    return;
  json_t *meta = get(t, "/v2", "server metadata");
  json_t *models = json_object_get(meta, "models");
  size_t n = json_array_size(models);
  if (n != 1) {
    char names[1024] = "";
    for (size_t i = 0; i < n; i++) {
      const char *s = json_string_value(json_array_get(models, i));
      size_t used = strlen(names);
      snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", s ? s : "?");
    }
    json_decref(meta);
    die("tailord serves %zu models%s%s%s: name one with --model", n, n ? " (" : "", names,
        n ? ")" : "");
  }
  t->model_owned = strdup(json_string_value(json_array_get(models, 0)));
  json_decref(meta);
  if (t->model_owned == NULL)
    die("out of memory");
  t->model = t->model_owned;
}

static void target_free(struct target *t) {
  conn_free(&t->conn);
  free(t->model_owned);
}

/* "/v2/models/<model><suffix>" */
static void model_path(const struct target *t, const char *suffix, char *buf, size_t size) {
  if ((size_t)snprintf(buf, size, "/v2/models/%s%s", t->model, suffix) >= size)
    die("model name \"%s\" is too long", t->model);
}

static void print_json(json_t *v) {
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
  if (s == NULL)
    die("out of memory");
  puts(s);
  free(s);
}

/* Options every socket command takes; returns getopt's character or -1. */
#define COMMON_OPTS                                                                                \
  {"socket", required_argument, NULL, 'S'}, {"model", required_argument, NULL, 'm'},               \
      {"json", no_argument, NULL, 'j'}, {                                                          \
    "help", no_argument, NULL, 'h'                                                                 \
  }

static void target_init(struct target *t) {
  memset(t, 0, sizeof *t);
  t->conn.fd = -1;
  t->conn.path = default_socket();
}

/* Handles a common option; 0 if c was one, 1 if not. */
static int common_opt(struct target *t, int c, int *as_json) {
  switch (c) {
  case 'S': t->conn.path = optarg; return 0;
  case 'm': t->model = optarg; return 0;
  case 'j': *as_json = 1; return 0;
  case 'h': usage(stdout); exit(0);
  default: return 1;
  }
}

/* The options of a command with nothing but the common ones and
 * n_operands operands.  Returns 0, or EXIT_USAGE after printing usage. */
static int parse_plain(int argc, char **argv, struct target *t, int *as_json, int n_operands) {
  static const struct option opts[] = {COMMON_OPTS, {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "S:m:jh", opts, NULL)) != -1)
    if (common_opt(t, c, as_json) != 0) {
      usage(stderr);
      return EXIT_USAGE;
    }
  if (argc - optind != n_operands) {
    usage(stderr);
    return EXIT_USAGE;
  }
  return 0;
}

static double num(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *str(json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s != NULL ? s : "?";
}

/* -------------------------------------------------------------- status */

int cmd_status(int argc, char **argv) {
  struct target t;
  target_init(&t);
  int as_json = 0;
  if (parse_plain(argc, argv, &t, &as_json, 0) != 0)
    return EXIT_USAGE;
  json_t *meta = get(&t, "/v2", "server metadata");
  struct reply r;
  exchange(&t.conn, "GET", "/v2/health/ready", "application/json", "", NULL, 0, &r);
  if (r.status == 0)
    die("%s", r.msg);
  int ready = r.status == 200;
  json_t *all = json_object();
  json_t *states = json_array();
  if (all == NULL || states == NULL)
    die("out of memory");
  json_object_set_new(all, "server", json_string(str(meta, "name")));
  json_object_set_new(all, "version", json_string(str(meta, "version")));
  json_object_set_new(all, "socket", json_string(t.conn.path));
  json_object_set_new(all, "ready", json_boolean(ready));
  json_t *models = json_object_get(meta, "models");
  for (size_t i = 0; i < json_array_size(models); i++) {
    const char *name = json_string_value(json_array_get(models, i));
    if (name == NULL || (t.model != NULL && strcmp(name, t.model) != 0))
      continue;
    char path[256];
    struct target one = t;
    one.model = name;
    model_path(&one, "/state", path, sizeof path);
    exchange(&t.conn, "GET", path, "application/json", "", NULL, 0, &r);
    if (r.status == 503) { /* still loading: say so, keep going */
      json_array_append_new(states, json_pack("{s:s,s:b}", "model", name, "loading", 1));
      continue;
    }
    json_array_append_new(states, expect_json(&r, path));
  }
  if (t.model != NULL && json_array_size(states) == 0) {
    json_decref(states);
    json_decref(all);
    json_decref(meta);
    die("tailord serves no model \"%s\"", t.model);
  }
  json_object_set_new(all, "models", states);
  json_decref(meta);

  if (as_json) {
    print_json(all);
  } else {
    printf("%s %s on %s: %s\n", str(all, "server"), str(all, "version"), t.conn.path,
           ready ? "ready" : "not ready");
    for (size_t i = 0; i < json_array_size(states); i++) {
      json_t *s = json_array_get(states, i);
      if (json_is_true(json_object_get(s, "loading"))) {
        printf("%s: loading\n", str(s, "model"));
        continue;
      }
      json_t *b = json_object_get(s, "budget");
      json_t *f = json_object_get(s, "frontier");
      json_t *sc = json_object_get(s, "scale");
      json_t *dev = json_object_get(s, "device");
      const char *how = json_is_true(json_object_get(s, "pinned"))     ? "pinned"
                        : json_is_true(json_object_get(s, "degraded")) ? "degraded: nothing fits"
                                                                       : "adaptive";
      printf("%s: %s (%s)\n", str(s, "model"), str(s, "active"), how);
      printf("  why:       %s\n", str(s, "reason"));
      printf("  latency:   %.3f ms predicted now (%.3f ms on an idle device); "
             "budget p95 %.3g ms, margin %.0f %%\n",
             num(s, "scaled_ms"), num(s, "predicted_ms"), num(b, "latency_p95_ms"),
             100.0 * num(b, "margin"));
      json_t *fb = json_object_get(s, "feedback");
      double served = num(fb, "served_p95_ms");
      if (!isnan(served))
        printf("  served:    %.3f ms at p95 lately, %.3f ms of it waiting (queue %.3f ms at "
               "p95)\n",
               served, num(fb, "waiting_p95_ms"), num(fb, "queue_p95_ms"));
      const char *help = json_string_value(json_object_get(fb, "help"));
      if (help != NULL)
        printf("  over:      %s\n", help);
      printf("  frontier:  %lld subnets%s%s\n", (long long)num(f, "size"),
             json_is_true(json_object_get(f, "provisional")) ? " (provisional: searching)" : "",
             json_is_true(json_object_get(f, "partial")) ? " (partial: searching on)" : "");
      printf("  device:    frequency x%.2f, CPU share x%.2f, correction x%.2f",
             num(sc, "freq_ratio"), num(sc, "cpu_share"), num(sc, "correction"));
      double avail = num(dev, "mem_available_bytes");
      if (!isnan(avail))
        printf(", %.0f MiB available", avail / (1024.0 * 1024.0));
      double load = num(dev, "load1");
      if (!isnan(load))
        printf(", load %.2f", load);
      putchar('\n');
    }
  }
  json_decref(all);
  target_free(&t);
  return 0;
}

/* ------------------------------------------------------------- subnets */

int cmd_subnets(int argc, char **argv) {
  struct target t;
  target_init(&t);
  int as_json = 0;
  if (parse_plain(argc, argv, &t, &as_json, 0) != 0)
    return EXIT_USAGE;
  resolve_model(&t);
  char path[256];
  model_path(&t, "/subnets", path, sizeof path);
  json_t *v = get(&t, path, path);
  if (as_json) {
    print_json(v);
  } else {
    json_t *list = json_object_get(v, "subnets");
    printf("%s: %zu subnets%s%s%s\n", str(v, "model"), json_array_size(list),
           json_is_true(json_object_get(v, "provisional")) ? ", provisional (searching)" : "",
           json_is_true(json_object_get(v, "partial")) ? ", partial (searching on)" : "",
           json_is_true(json_object_get(v, "pinned")) ? ", pinned" : "");
    const char *metric = str(v, "accuracy_metric");
    printf("  %-34s %10s %10s %9s %9s  %s\n", "subnet", "pred. ms", "now ms", "MiB",
           strcmp(metric, "agreement") == 0 ? "agreement" : "accuracy", "fits");
    for (size_t i = 0; i < json_array_size(list); i++) {
      json_t *e = json_array_get(list, i);
      double acc = num(e, "accuracy");
      char accs[16] = "-";
      if (!isnan(acc))
        snprintf(accs, sizeof accs, "%.2f %%", 100.0 * acc);
      printf("%c %-34s %10.4f %10.4f %9.2f %9s  %s\n",
             json_is_true(json_object_get(e, "active")) ? '*' : ' ', str(e, "subnet"),
             num(e, "predicted_ms"), num(e, "scaled_ms"), num(e, "predicted_mib"), accs,
             json_is_true(json_object_get(e, "fits")) ? "yes" : "no");
    }
  }
  json_decref(v);
  target_free(&t);
  return 0;
}

/* -------------------------------------------------------------- events */

int cmd_events(int argc, char **argv) {
  static const struct option opts[] = {
      COMMON_OPTS, {"limit", required_argument, NULL, 'n'}, {NULL, 0, NULL, 0}};
  struct target t;
  target_init(&t);
  int as_json = 0, c;
  long limit = 20;
  while ((c = getopt_long(argc, argv, "S:m:jhn:", opts, NULL)) != -1) {
    if (c == 'n')
      limit = parse_count("--limit", optarg, 1, 1000);
    else if (common_opt(&t, c, &as_json) != 0) {
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return EXIT_USAGE;
  }
  resolve_model(&t);
  char path[256], suffix[32];
  snprintf(suffix, sizeof suffix, "/events?limit=%ld", limit);
  model_path(&t, suffix, path, sizeof path);
  json_t *v = get(&t, path, path);
  if (as_json) {
    print_json(v);
  } else {
    json_t *list = json_object_get(v, "events");
    if (json_array_size(list) == 0)
      printf("%s: no switches yet\n", str(v, "model"));
    /* oldest first, as a log reads */
    for (size_t k = json_array_size(list); k-- > 0;) {
      json_t *e = json_array_get(list, k);
      double ms = num(e, "time_ms");
      time_t sec = (time_t)(ms / 1000.0);
      struct tm tm;
      char when[32] = "?";
      if (!isnan(ms) && localtime_r(&sec, &tm) != NULL)
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
      const char *from = json_string_value(json_object_get(e, "from"));
      printf("%s.%03d  %s -> %s  (%s)\n", when, isnan(ms) ? 0 : (int)fmod(ms, 1000.0),
             from != NULL ? from : "(none)", str(e, "to"), str(e, "reason"));
    }
  }
  json_decref(v);
  target_free(&t);
  return 0;
}

/* ----------------------------------------------------------------- pin */

int cmd_pin(int argc, char **argv) {
  struct target t;
  target_init(&t);
  int as_json = 0;
  if (parse_plain(argc, argv, &t, &as_json, 1) != 0)
    return EXIT_USAGE;
  resolve_model(&t);
  char path[256];
  model_path(&t, "/pin", path, sizeof path);
  json_t *req = json_pack("{s:s}", "subnet", argv[optind]);
  char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  if (body == NULL)
    die("out of memory");
  struct reply r;
  exchange(&t.conn, "POST", path, "application/json", "", body, strlen(body), &r);
  free(body);
  json_t *v = expect_json(&r, "pin");
  if (as_json)
    print_json(v);
  else
    printf("%s: %s (%s)\n", str(v, "model"), str(v, "active"),
           json_is_true(json_object_get(v, "pinned")) ? "pinned" : "adaptive");
  json_decref(v);
  target_free(&t);
  return 0;
}

/* --------------------------------------------------------------- infer */

/* The load: what every client thread shares. */
struct load {
  const char *sock;
  char path[256];
  /* requests: request i sends image i % n_images */
  const char *head; /* binary: the request's JSON header; JSON: the body
                     * up to the input's data, "[" excluded */
  size_t head_len;
  const char *tail;           /* JSON: the body after the data's "]" */
  int json_requests;          /* JSON tensors, not the binary extension */
  int connection_per_request; /* close the connection after each answer */
  const float *images;
  size_t image_len; /* floats per image */
  long n_images;
  long runs;
  double rate; /* requests per second, 0: as fast as answered */
  double start_ms;
  atomic_long next; /* next request to take */
  int want_output;  /* keep request 0's output */
  /* results, by request */
  double *sent_ms; /* since start */
  double *latency_us;
  int *status;
  int *refused;  /* the connection could not be opened */
  char **subnet; /* malloc'd, or NULL */
  char **error;  /* why it failed (the daemon's "error", or ours), malloc'd */
  float *output; /* request 0's output when want_output */
  size_t output_len;
  char *output_json;
  char *first_error; /* the first failure's message, malloc'd */
  pthread_mutex_t lock;
};

static void sleep_until_ms(double t_ms) {
  for (;;) {
    double left = t_ms - tl_now_ms();
    if (left <= 0)
      return;
    struct timespec ts = {(time_t)(left / 1000.0), (long)(fmod(left, 1000.0) * 1e6)};
    nanosleep(&ts, NULL);
  }
}

static void note_error(struct load *l, const char *msg) {
  pthread_mutex_lock(&l->lock);
  if (l->first_error == NULL)
    l->first_error = strdup(msg);
  pthread_mutex_unlock(&l->lock);
}

/* Request i's JSON body into *buf (grown as needed): the head, the
 * image's values as text that reads back to the same float32, the tail.
 * Returns its length, or 0 when out of memory. */
static size_t json_body(const struct load *l, long i, char **buf, size_t *cap) {
  size_t tail_len = strlen(l->tail);
  size_t need = l->head_len + 2 + l->image_len * 18 + tail_len + 1;
  if (need > *cap) {
    char *b = realloc(*buf, need);
    if (b == NULL)
      return 0;
    *buf = b;
    *cap = need;
  }
  const float *x = l->images + (size_t)(i % l->n_images) * l->image_len;
  char *p = *buf;
  memcpy(p, l->head, l->head_len);
  p += l->head_len;
  *p++ = '[';
  for (size_t k = 0; k < l->image_len; k++)
    p += sprintf(p, k ? ",%.9g" : "%.9g", (double)x[k]); /* <= 16 bytes + comma */
  *p++ = ']';
  memcpy(p, l->tail, tail_len + 1);
  return (size_t)(p - *buf) + tail_len;
}

/* Keeps request 0's output (logits) and its response's JSON when the load
 * wants it: after the JSON in the binary extension, or in the JSON's
 * first output's "data". */
static void keep_output(struct load *l, const struct reply *r, json_t *v) {
  l->output_json = malloc(r->json_len + 1);
  if (l->output_json == NULL)
    return;
  memcpy(l->output_json, r->body, r->json_len);
  l->output_json[r->json_len] = '\0';
  if (!l->json_requests) {
    l->output_len = (r->len - r->json_len) / sizeof(float);
    l->output = malloc(r->len - r->json_len + 1);
    if (l->output != NULL)
      memcpy(l->output, r->body + r->json_len, r->len - r->json_len);
    return;
  }
  json_t *data = json_object_get(json_array_get(json_object_get(v, "outputs"), 0), "data");
  l->output_len = json_array_size(data);
  l->output = malloc(l->output_len * sizeof(float) + 1);
  for (size_t k = 0; l->output != NULL && k < l->output_len; k++)
    l->output[k] = (float)json_number_value(json_array_get(data, k));
}

static void *client_main(void *arg) {
  struct load *l = arg;
  struct conn c = {.path = l->sock, .fd = -1};
  size_t bytes = l->image_len * sizeof(float);
  size_t cap = l->json_requests ? 0 : l->head_len + bytes;
  char *body = cap ? malloc(cap) : NULL;
  if (cap && body == NULL) {
    note_error(l, "out of memory");
    return NULL;
  }
  char extra[96] = "";
  if (!l->json_requests) {
    memcpy(body, l->head, l->head_len);
    snprintf(extra, sizeof extra, "Inference-Header-Content-Length: %zu\r\n", l->head_len);
  }
  sleep_until_ms(l->start_ms);
  for (;;) {
    long i = atomic_fetch_add(&l->next, 1);
    if (i >= l->runs)
      break;
    /* the body is made before the request is due, so that making it
     * (the JSON's text) does not delay it */
    size_t n = l->head_len + bytes;
    if (l->json_requests)
      n = json_body(l, i, &body, &cap);
    else
      memcpy(body + l->head_len, l->images + (size_t)(i % l->n_images) * l->image_len, bytes);
    if (n == 0) {
      note_error(l, "out of memory");
      break;
    }
    if (l->rate > 0)
      sleep_until_ms(l->start_ms + 1000.0 * (double)i / l->rate);
    struct reply r;
    double t0 = tl_now_ms();
    exchange(&c, "POST", l->path,
             l->json_requests ? "application/json" : "application/octet-stream", extra, body, n,
             &r);
    if (l->connection_per_request)
      conn_close(&c);
    double t1 = tl_now_ms();
    l->sent_ms[i] = t0 - l->start_ms;
    l->latency_us[i] = (t1 - t0) * 1000.0;
    l->status[i] = r.status;
    l->refused[i] = r.refused;
    if (r.status == 0) {
      l->error[i] = strdup(r.msg);
      note_error(l, r.msg);
      continue;
    }
    json_t *v = json_loadb(r.body, r.json_len, 0, NULL);
    if (r.status != 200) {
      char msg[512];
      const char *e = json_string_value(json_object_get(v, "error"));
      l->error[i] = strdup(e != NULL ? e : "?");
      snprintf(msg, sizeof msg, "tailord answered %d: %s", r.status, e != NULL ? e : "?");
      note_error(l, msg);
    } else {
      const char *s =
          json_string_value(json_object_get(json_object_get(v, "parameters"), "subnet"));
      l->subnet[i] = s != NULL ? strdup(s) : NULL;
      if (i == 0 && l->want_output)
        keep_output(l, &r, v);
    }
    json_decref(v);
  }
  free(body);
  conn_free(&c);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile of sorted v[n] (nearest rank). */
static double quantile(const double *v, size_t n, double q) {
  if (n == 0)
    return NAN;
  size_t k = (size_t)ceil(q * (double)n);
  return v[k > 0 ? k - 1 : 0];
}

/* The model's first input (its name, shape with a batch of one, and
 * element count) and first output's name, from its metadata; dies if the
 * input is not a float32 tensor of fixed shape. */
static void io_of(struct target *t, char *name, size_t name_size, json_t **shape, size_t *elems,
                  char *out_name, size_t out_size) {
  char path[256];
  model_path(t, "", path, sizeof path);
  json_t *meta = get(t, path, path);
  json_t *in = json_array_get(json_object_get(meta, "inputs"), 0);
  json_t *out = json_array_get(json_object_get(meta, "outputs"), 0);
  const char *dt = json_string_value(json_object_get(in, "datatype"));
  *shape = json_deep_copy(json_object_get(in, "shape"));
  if (in == NULL || dt == NULL || *shape == NULL || strcmp(dt, "FP32") != 0)
    die("model \"%s\": its first input is not an FP32 tensor", t->model);
  if (json_string_value(json_object_get(out, "name")) == NULL)
    die("model \"%s\": its metadata names no output", t->model);
  snprintf(name, name_size, "%s", str(in, "name"));
  snprintf(out_name, out_size, "%s", str(out, "name"));
  *elems = 1;
  for (size_t i = 0; i < json_array_size(*shape); i++) {
    json_int_t d = json_integer_value(json_array_get(*shape, i));
    if (d <= 0 && i == 0) { /* a variable batch: one image per request */
      d = 1;
      json_array_set_new(*shape, 0, json_integer(1));
    }
    if (d <= 0)
      die("model \"%s\": dimension %zu of its input is variable, which infer does not fill",
          t->model, i);
    *elems *= (size_t)d;
  }
  json_decref(meta);
}

/* The images of path as float32, image_len values each: uint8 pixels are
 * multiplied by scale. */
static float *load_images(const char *path, size_t image_len, float scale, long *n) {
  struct tl_tensor x;
  struct tl_error err = {{0}};
  if (tl_npy_read(path, &x, &err) != 0)
    die("%s", err.msg);
  int64_t count = tl_shape_numel(&x.shape);
  if (x.dtype != TL_DTYPE_FLOAT32 && x.dtype != TL_DTYPE_UINT8)
    die("%s: images must be float32 or uint8, not %s", path, tl_dtype_name(x.dtype));
  if (count <= 0 || (size_t)count % image_len != 0)
    die("%s holds %lld values, not a whole number of the model's inputs (%zu values each)", path,
        (long long)count, image_len);
  float *out = x.data;
  if (x.dtype == TL_DTYPE_UINT8) {
    out = malloc((size_t)count * sizeof *out);
    if (out == NULL)
      die("out of memory");
    const uint8_t *p = x.data;
    for (int64_t i = 0; i < count; i++)
      out[i] = (float)p[i] * scale;
    free(x.data);
  }
  *n = (long)((size_t)count / image_len);
  return out;
}

static void print_top5(const float *v, size_t n) {
  int used[5] = {-1, -1, -1, -1, -1};
  for (int k = 0; k < 5 && k < (int)n; k++) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
      int taken = 0;
      for (int j = 0; j < k; j++)
        taken |= used[j] == (int)i;
      if (!taken && (best < 0 || v[i] > v[best]))
        best = (int)i;
    }
    used[k] = best;
    printf("  %d: class %d  %.4f\n", k + 1, best, v[best]);
  }
}

int cmd_infer(int argc, char **argv) {
  static const struct option opts[] = {COMMON_OPTS,
                                       {"runs", required_argument, NULL, 'n'},
                                       {"clients", required_argument, NULL, 'c'},
                                       {"rate", required_argument, NULL, 'r'},
                                       {"timeout-us", required_argument, NULL, 'T'},
                                       {"scale", required_argument, NULL, 'x'},
                                       {"trace", required_argument, NULL, 'o'},
                                       {"json-requests", no_argument, NULL, 'J'},
                                       {"connection-per-request", no_argument, NULL, 'C'},
                                       {"start-monotonic-ms", required_argument, NULL, 'A'},
                                       {NULL, 0, NULL, 0}};
  struct target t;
  target_init(&t);
  int as_json = 0, json_requests = 0, connection_per_request = 0, c;
  long runs = 1, clients = 1, timeout_us = 0;
  double rate = 0, start_at_ms = 0;
  float scale = 1.0f / 255.0f;
  const char *trace = NULL;
  while ((c = getopt_long(argc, argv, "S:m:jhn:c:r:T:x:o:", opts, NULL)) != -1) {
    switch (c) {
    case 'n': runs = parse_count("--runs", optarg, 1, 100000000); break;
    case 'c': clients = parse_count("--clients", optarg, 1, 1024); break;
    case 'T': timeout_us = parse_count("--timeout-us", optarg, 1, 3600000000L); break;
    case 'x': scale = parse_scale(optarg); break;
    case 'o': trace = optarg; break;
    case 'J': json_requests = 1; break;
    case 'C': connection_per_request = 1; break;
    case 'A': {
      char *end;
      start_at_ms = strtod(optarg, &end);
      if (*end || end == optarg || !(start_at_ms > 0 && isfinite(start_at_ms))) {
        fprintf(stderr,
                "tailorctl: --start-monotonic-ms needs a time on CLOCK_MONOTONIC in ms, "
                "not \"%s\"\n",
                optarg);
        return EXIT_USAGE;
      }
      break;
    }
    case 'r': rate = parse_positive("--rate", "requests per second", optarg, 1e6); break;
    default:
      if (common_opt(&t, c, &as_json) != 0) {
        usage(stderr);
        return EXIT_USAGE;
      }
    }
  }
  if (argc - optind != 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  resolve_model(&t);
  char in_name[128], out_name[128];
  json_t *shape = NULL;
  size_t image_len = 0;
  io_of(&t, in_name, sizeof in_name, &shape, &image_len, out_name, sizeof out_name);
  long n_images = 0;
  float *images = load_images(argv[optind], image_len, scale, &n_images);

  /* binary: the whole JSON header, the image's bytes follow it; JSON: the
   * body cut where the input's data goes (a placeholder, the one 0 in
   * it), so that each request only prints its image's values there */
  json_t *head;
  if (json_requests)
    head = json_pack("{s:[{s:s,s:o,s:s,s:i}],s:[{s:s}]}", "inputs", "name", in_name, "shape", shape,
                     "datatype", "FP32", "data", 0, "outputs", "name", out_name);
  else
    head = json_pack("{s:[{s:s,s:o,s:s,s:{s:I}}],s:[{s:s,s:{s:b}}]}", "inputs", "name", in_name,
                     "shape", shape, "datatype", "FP32", "parameters", "binary_data_size",
                     (json_int_t)(image_len * sizeof(float)), "outputs", "name", out_name,
                     "parameters", "binary_data", 1);
  if (head != NULL && timeout_us > 0)
    json_object_set_new(head, "parameters", json_pack("{s:I}", "timeout", (json_int_t)timeout_us));
  char *head_text = head != NULL ? json_dumps(head, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(head);
  if (head_text == NULL)
    die("out of memory");
  const char *tail_text = "";
  if (json_requests) {
    char *data = strstr(head_text, "\"data\":0");
    if (data == NULL)
      die("out of memory"); /* cannot happen: the pack above wrote it */
    data += strlen("\"data\":");
    *data = '\0';
    tail_text = data + 1;
  }

  struct load l = {
      .sock = t.conn.path,
      .head = head_text,
      .head_len = strlen(head_text),
      .tail = tail_text,
      .json_requests = json_requests,
      .connection_per_request = connection_per_request,
      .images = images,
      .image_len = image_len,
      .n_images = n_images,
      .runs = runs,
      .rate = rate,
      .want_output = runs == 1,
  };
  model_path(&t, "/infer", l.path, sizeof l.path);
  atomic_init(&l.next, 0);
  pthread_mutex_init(&l.lock, NULL);
  l.sent_ms = calloc((size_t)runs, sizeof *l.sent_ms);
  l.latency_us = calloc((size_t)runs, sizeof *l.latency_us);
  l.status = calloc((size_t)runs, sizeof *l.status);
  l.refused = calloc((size_t)runs, sizeof *l.refused);
  l.subnet = calloc((size_t)runs, sizeof *l.subnet);
  l.error = calloc((size_t)runs, sizeof *l.error);
  pthread_t *tid = calloc((size_t)clients, sizeof *tid);
  if (l.sent_ms == NULL || l.latency_us == NULL || l.status == NULL || l.refused == NULL ||
      l.subnet == NULL || l.error == NULL || tid == NULL)
    die("out of memory");
  conn_close(&t.conn); /* the clients open their own */
  /* a later start lets loads from several processes begin together: each
   * client waits for it (request 0 is due then) */
  l.start_ms = start_at_ms > 0 ? start_at_ms : tl_now_ms();
  long started = 0;
  for (; started < clients; started++) {
    int e = pthread_create(&tid[started], NULL, client_main, &l);
    if (e != 0) {
      fprintf(stderr, "tailorctl: cannot start client %ld: %s\n", started, strerror(e));
      break;
    }
  }
  for (long i = 0; i < started; i++)
    pthread_join(tid[i], NULL);
  double wall_ms = tl_now_ms() - l.start_ms;
  if (wall_ms <= 0)
    wall_ms = 1e-3;
  if (started == 0)
    die("no client could start");

  long ok = 0, failed = 0, unreachable = 0, refused = 0;
  double *lat = malloc((size_t)runs * sizeof *lat);
  if (lat == NULL)
    die("out of memory");
  for (long i = 0; i < runs; i++) {
    if (l.status[i] == 200)
      lat[ok++] = l.latency_us[i];
    else if (l.status[i] == 0)
      unreachable++, refused += l.refused[i];
    else
      failed++;
  }
  qsort(lat, (size_t)ok, sizeof *lat, cmp_double);

  if (trace != NULL) {
    FILE *f = strcmp(trace, "-") == 0 ? stdout : fopen(trace, "w");
    if (f == NULL)
      die("cannot write %s: %s", trace, strerror(errno));
    /* due_ms: when --rate meant it to leave; a request sent later waited
     * for a free connection, which a caller would count as latency.
     * status 0: unanswered, refused when it could not connect; error: the
     * daemon's reason for any other status, or why it went unanswered */
    for (long i = 0; i < runs; i++) {
      json_t *e = l.error[i] != NULL ? json_string(l.error[i]) : NULL;
      char *error = e != NULL ? json_dumps(e, JSON_ENCODE_ANY) : NULL;
      json_decref(e);
      fprintf(f,
              "{\"i\":%ld,\"due_ms\":%.3f,\"sent_ms\":%.3f,\"latency_us\":%.1f,\"status\":%d,"
              "\"subnet\":%s%s%s,\"refused\":%s,\"error\":%s}\n",
              i, rate > 0 ? 1000.0 * (double)i / rate : l.sent_ms[i], l.sent_ms[i], l.latency_us[i],
              l.status[i], l.subnet[i] ? "\"" : "", l.subnet[i] ? l.subnet[i] : "null",
              l.subnet[i] ? "\"" : "", l.refused[i] ? "true" : "false",
              error != NULL ? error : "null");
      free(error);
    }
    if (f != stdout && fclose(f) != 0)
      die("cannot write %s: %s", trace, strerror(errno));
  }

  /* requests per subnet that served */
  json_t *by_subnet = json_object();
  if (by_subnet == NULL)
    die("out of memory");
  for (long i = 0; i < runs; i++) {
    if (l.subnet[i] == NULL)
      continue;
    json_int_t k = json_integer_value(json_object_get(by_subnet, l.subnet[i]));
    json_object_set_new(by_subnet, l.subnet[i], json_integer(k + 1));
  }

  /* one request: it must succeed; a load: every request must be answered
   * (a 503 for a deadline is an answer the summary counts) */
  int rc = (runs == 1 ? ok == 1 : unreachable == 0) ? 0 : 1;
  if (runs == 1 && ok == 0) {
    fprintf(stderr, "tailorctl: %s\n",
            l.first_error != NULL ? l.first_error : "the request failed");
  } else if (runs == 1) {
    if (as_json) {
      json_t *meta = json_loads(l.output_json != NULL ? l.output_json : "", 0, NULL);
      json_t *data = json_array();
      for (size_t i = 0; data != NULL && l.output != NULL && i < l.output_len; i++)
        json_array_append_new(data, json_real(l.output[i]));
      json_t *o = json_pack("{s:s?,s:f,s:o?,s:o}", "subnet", l.subnet[0], "latency_us",
                            l.latency_us[0], "response", meta, "data", data);
      if (o == NULL)
        die("out of memory");
      print_json(o);
      json_decref(o);
    } else {
      printf("%s: served by %s in %.0f us\n", t.model, l.subnet[0] ? l.subnet[0] : "?",
             l.latency_us[0]);
      if (l.output != NULL)
        print_top5(l.output, l.output_len);
    }
  } else if (as_json) {
    /* start_monotonic_us: CLOCK_MONOTONIC when request 0 was due, so that a
     * caller can place the trace's times on its own clock (an integer: the
     * reals here are printed to 6 digits) */
    json_t *o =
        json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:o}", "model", t.model,
                  "requests", (json_int_t)runs, "ok", (json_int_t)ok, "failed", (json_int_t)failed,
                  "unreachable", (json_int_t)unreachable, "refused", (json_int_t)refused,
                  "start_monotonic_us", (json_int_t)llround(1000.0 * l.start_ms), "wall_s",
                  wall_ms / 1000.0, "throughput_per_s", 1000.0 * (double)ok / wall_ms, "p50_us",
                  ok ? quantile(lat, (size_t)ok, 0.50) : -1.0, "p95_us",
                  ok ? quantile(lat, (size_t)ok, 0.95) : -1.0, "p99_us",
                  ok ? quantile(lat, (size_t)ok, 0.99) : -1.0, "min_us", ok ? lat[0] : -1.0,
                  "max_us", ok ? lat[ok - 1] : -1.0, "subnets", json_incref(by_subnet));
    if (o == NULL)
      die("out of memory");
    print_json(o);
    json_decref(o);
  } else {
    printf("%s: %ld requests from %ld clients in %.2f s (%.0f/s): %ld ok, %ld failed, %ld "
           "unreachable",
           t.model, runs, started, wall_ms / 1000.0, 1000.0 * (double)ok / wall_ms, ok, failed,
           unreachable);
    if (refused > 0)
      printf(" (%ld could not connect)", refused);
    putchar('\n');
    if (ok > 0)
      printf("latency us: p50 %.0f  p95 %.0f  p99 %.0f  min %.0f  max %.0f\n",
             quantile(lat, (size_t)ok, 0.50), quantile(lat, (size_t)ok, 0.95),
             quantile(lat, (size_t)ok, 0.99), lat[0], lat[ok - 1]);
    const char *key;
    json_t *value;
    json_object_foreach(by_subnet, key, value) {
      printf("  %6lld  %s\n", (long long)json_integer_value(value), key);
    }
  }
  if (l.first_error != NULL && runs > 1)
    fprintf(stderr, "tailorctl: %s%s\n", l.first_error,
            ok + 1 < runs ? " (the first failure)" : "");

  json_decref(by_subnet);
  for (long i = 0; i < runs; i++) {
    free(l.subnet[i]);
    free(l.error[i]);
  }
  free(l.subnet);
  free(l.error);
  free(l.refused);
  free(l.sent_ms);
  free(l.latency_us);
  free(l.status);
  free(l.output);
  free(l.output_json);
  free(l.first_error);
  free(lat);
  free(tid);
  free(head_text);
  free(images);
  pthread_mutex_destroy(&l.lock);
  target_free(&t);
  return rc;
}
