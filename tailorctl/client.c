/*
 * client.c - tailorctl's client of a running tailord over its Unix socket
 * (HTTP/1.1, Open Inference Protocol v2 and tailord's own routes): the
 * connection, the options every socket command takes, and the commands
 *
 *   status   is the daemon ready; per model the subnet serving, why, its
 *            prediction against the budget, and the device state
 *   subnets  the frontier: each member's prediction, accuracy and fit
 *   events   the last switches of the active subnet, with their reasons
 *   pin      fixes the subnet served (a frontier member) or gives the
 *            choice back to the controller ("auto")
 *
 * (infer, which sends images, one request or a load, is infer.c.)
 *
 * The socket is --socket, else $TAILOR_SOCKET, else tailord's default;
 * the model is --model, else the one model the daemon serves.
 */
#include <errno.h>
#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_SOCKET "/run/tailord/tailord.sock"

/* ---------------------------------------------------------- connection */

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

void conn_close(struct conn *c) {
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
void http_exchange(struct conn *c, const char *method, const char *target, const char *content_type,
                   const char *extra_header, const void *body, size_t n, struct reply *r) {
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

void conn_free(struct conn *c) {
  conn_close(c);
  free(c->body);
  c->body = NULL;
}

/* ------------------------------------------------------- common options */

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

json_t *get_json(struct target *t, const char *path, const char *what) {
  struct reply r;
  http_exchange(&t->conn, "GET", path, "application/json", "", NULL, 0, &r);
  return expect_json(&r, what);
}

/* Sets t->model: as given, or the only model served. */
void resolve_model(struct target *t) {
  if (t->model != NULL)
    return;
  json_t *meta = get_json(t, "/v2", "server metadata");
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

void target_free(struct target *t) {
  conn_free(&t->conn);
  free(t->model_owned);
}

/* "/v2/models/<model><suffix>" */
void model_path(const struct target *t, const char *suffix, char *buf, size_t size) {
  if ((size_t)snprintf(buf, size, "/v2/models/%s%s", t->model, suffix) >= size)
    die("model name \"%s\" is too long", t->model);
}

void print_json(json_t *v) { print_json_as(v, JSON_INDENT(2) | JSON_REAL_PRECISION(6)); }

void target_init(struct target *t) {
  memset(t, 0, sizeof *t);
  t->conn.fd = -1;
  t->conn.path = default_socket();
}

/* Handles a common option; 0 if c was one, 1 if not. */
int common_opt(struct target *t, int c, int *as_json) {
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

const char *json_str(json_t *o, const char *key) {
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
  json_t *meta = get_json(&t, "/v2", "server metadata");
  struct reply r;
  http_exchange(&t.conn, "GET", "/v2/health/ready", "application/json", "", NULL, 0, &r);
  if (r.status == 0)
    die("%s", r.msg);
  int ready = r.status == 200;
  json_t *all = json_object();
  json_t *states = json_array();
  if (all == NULL || states == NULL)
    die("out of memory");
  json_object_set_new(all, "server", json_string(json_str(meta, "name")));
  json_object_set_new(all, "version", json_string(json_str(meta, "version")));
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
    http_exchange(&t.conn, "GET", path, "application/json", "", NULL, 0, &r);
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
    printf("%s %s on %s: %s\n", json_str(all, "server"), json_str(all, "version"), t.conn.path,
           ready ? "ready" : "not ready");
    for (size_t i = 0; i < json_array_size(states); i++) {
      json_t *s = json_array_get(states, i);
      if (json_is_true(json_object_get(s, "loading"))) {
        printf("%s: loading\n", json_str(s, "model"));
        continue;
      }
      json_t *b = json_object_get(s, "budget");
      json_t *f = json_object_get(s, "frontier");
      json_t *sc = json_object_get(s, "scale");
      json_t *dev = json_object_get(s, "device");
      const char *how = json_is_true(json_object_get(s, "pinned"))     ? "pinned"
                        : json_is_true(json_object_get(s, "degraded")) ? "degraded: nothing fits"
                                                                       : "adaptive";
      printf("%s: %s (%s)\n", json_str(s, "model"), json_str(s, "active"), how);
      printf("  why:       %s\n", json_str(s, "reason"));
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
  json_t *v = get_json(&t, path, path);
  if (as_json) {
    print_json(v);
  } else {
    json_t *list = json_object_get(v, "subnets");
    printf("%s: %zu subnets%s%s%s\n", json_str(v, "model"), json_array_size(list),
           json_is_true(json_object_get(v, "provisional")) ? ", provisional (searching)" : "",
           json_is_true(json_object_get(v, "partial")) ? ", partial (searching on)" : "",
           json_is_true(json_object_get(v, "pinned")) ? ", pinned" : "");
    const char *metric = json_str(v, "accuracy_metric");
    printf("  %-34s %10s %10s %9s %9s  %s\n", "subnet", "pred. ms", "now ms", "MiB",
           strcmp(metric, "agreement") == 0 ? "agreement" : "accuracy", "fits");
    for (size_t i = 0; i < json_array_size(list); i++) {
      json_t *e = json_array_get(list, i);
      double acc = num(e, "accuracy");
      char accs[16] = "-";
      if (!isnan(acc))
        snprintf(accs, sizeof accs, "%.2f %%", 100.0 * acc);
      printf("%c %-34s %10.4f %10.4f %9.2f %9s  %s\n",
             json_is_true(json_object_get(e, "active")) ? '*' : ' ', json_str(e, "subnet"),
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
  json_t *v = get_json(&t, path, path);
  if (as_json) {
    print_json(v);
  } else {
    json_t *list = json_object_get(v, "events");
    if (json_array_size(list) == 0)
      printf("%s: no switches yet\n", json_str(v, "model"));
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
             from != NULL ? from : "(none)", json_str(e, "to"), json_str(e, "reason"));
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
  http_exchange(&t.conn, "POST", path, "application/json", "", body, strlen(body), &r);
  free(body);
  json_t *v = expect_json(&r, "pin");
  if (as_json)
    print_json(v);
  else
    printf("%s: %s (%s)\n", json_str(v, "model"), json_str(v, "active"),
           json_is_true(json_object_get(v, "pinned")) ? "pinned" : "adaptive");
  json_decref(v);
  target_free(&t);
  return 0;
}
