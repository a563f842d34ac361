/*
 * harness.c - the tailord tests' shared helpers (harness.h): files, the
 * fake tree, the raw HTTP/1.1 client, starting and stopping tailord, and
 * running tailorctl.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wait_s(double s) { return s * tu_time_scale(); }

int64_t realtime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

int write_file(const char *path, const char *text) {
  char tmp[PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return -1;
  int ok = fputs(text, f) >= 0;
  ok = fclose(f) == 0 && ok;
  return ok && rename(tmp, path) == 0 ? 0 : -1;
}

int mkdirs(const char *path) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return -1;
      *s = '/';
    }
  return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

char *read_text(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return strdup("");
  char *buf = NULL;
  size_t cap = 0, len = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = (cap + 4096) * 2;
      char *g = realloc(buf, cap);
      if (g == NULL)
        abort();
      buf = g;
    }
    size_t n = fread(buf + len, 1, 4096, f);
    len += n;
    if (n == 0)
      break;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

/* ---------------------------------------------------------- fake tree */

int fake_tree(const char *root) {
  static const char *const files[][2] = {
      {"proc/stat", "cpu  1000 0 500 8000 100 0 0 0 0 0\n"
                    "cpu0 500 0 250 4000 50 0 0 0 0 0\n"
                    "cpu1 500 0 250 4000 50 0 0 0 0 0\n"
                    "procs_running 1\nprocs_blocked 0\n"},
      {"proc/meminfo", "MemTotal:        8000000 kB\nMemFree:         3000000 kB\n"
                       "MemAvailable:    6000000 kB\n"},
      {"proc/loadavg", "0.50 0.40 0.30 1/200 4242\n"},
      {"sys/devices/system/cpu/online", "0-1\n"},
  };
  char p[PATH_MAX + 128], khz[32];
  snprintf(p, sizeof p, "%s/proc", root);
  if (mkdirs(p) != 0)
    return -1;
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", root, files[i][0]);
    if (i == 3) {
      char dir[PATH_MAX + 128];
      snprintf(dir, sizeof dir, "%s/sys/devices/system/cpu", root);
      if (mkdirs(dir) != 0)
        return -1;
    }
    if (write_file(p, files[i][1]) != 0)
      return -1;
  }
  snprintf(khz, sizeof khz, "%d\n", FULL_KHZ);
  for (int cpu = 0; cpu < 2; cpu++) {
    snprintf(p, sizeof p, "%s/sys/devices/system/cpu/cpu%d/cpufreq", root, cpu);
    if (mkdirs(p) != 0)
      return -1;
    snprintf(p, sizeof p, "%s/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq", root, cpu);
    if (write_file(p, khz) != 0)
      return -1;
    snprintf(p, sizeof p, "%s/sys/devices/system/cpu/cpu%d/cpufreq/scaling_cur_freq", root, cpu);
    if (write_file(p, khz) != 0)
      return -1;
  }
  return 0;
}

void set_freq(const char *root, int khz) {
  char p[PATH_MAX + 128], v[32];
  snprintf(v, sizeof v, "%d\n", khz);
  for (int cpu = 0; cpu < 2; cpu++) {
    snprintf(p, sizeof p, "%s/sys/devices/system/cpu/cpu%d/cpufreq/scaling_cur_freq", root, cpu);
    ck_assert_int_eq(write_file(p, v), 0);
  }
}

/* ------------------------------------------------------------- client */

int unix_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {120, 0}; /* no test waits on a read forever */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

int write_all(int fd, const void *data, size_t n) {
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

void resp_free(struct resp *r) {
  free(r->body);
  r->body = NULL;
}

int client_fill(struct client *c) {
  if (c->len + 65536 > c->cap) {
    c->cap = (c->len + 65536) * 2;
    char *g = realloc(c->buf, c->cap);
    if (g == NULL)
      abort();
    c->buf = g;
  }
  for (;;) {
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    c->len += (size_t)n;
    return 0;
  }
}

static long header_value(const char *head, const char *name) {
  const char *p = head;
  size_t n = strlen(name);
  while ((p = strcasestr(p, name)) != NULL) {
    if ((p == head || p[-1] == '\n') && p[n] == ':')
      return strtol(p + n + 1, NULL, 10);
    p += n;
  }
  return -1;
}

int client_read(struct client *c, struct resp *r) {
  memset(r, 0, sizeof *r);
  char *end;
  while ((end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL) == NULL)
    if (client_fill(c) != 0)
      return -1;
  size_t hl = (size_t)(end - c->buf) + 4;
  snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1),
           c->buf);
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
    return -1;
  long cl = header_value(r->head, "Content-Length");
  if (cl < 0)
    cl = 0;
  while (c->len < hl + (size_t)cl)
    if (client_fill(c) != 0)
      return -1;
  r->body = malloc((size_t)cl + 1);
  if (r->body == NULL)
    abort();
  memcpy(r->body, c->buf + hl, (size_t)cl);
  r->body[cl] = '\0';
  r->len = (size_t)cl;
  long jl = header_value(r->head, "Inference-Header-Content-Length");
  r->json_len = jl >= 0 ? (size_t)jl : r->len;
  memmove(c->buf, c->buf + hl + (size_t)cl, c->len - hl - (size_t)cl);
  c->len -= hl + (size_t)cl;
  return 0;
}

struct client client_open(const char *sock) {
  struct client c = {.fd = unix_connect(sock)};
  ck_assert_msg(c.fd >= 0, "connecting to %s: %s", sock, strerror(errno));
  return c;
}

void client_close(struct client *c) {
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

void expect_answer(struct client *c, int status, const char *needle) {
  struct resp r;
  ck_assert_int_eq(client_read(c, &r), 0);
  ck_assert_int_eq(r.status, status);
  if (needle != NULL)
    ck_assert_ptr_nonnull(strstr(r.body, needle));
  resp_free(&r);
}

int request(const char *sock, const char *method, const char *path, const char *headers,
            const void *body, size_t blen, struct resp *r) {
  struct client c = {.fd = unix_connect(sock)};
  if (c.fd < 0)
    return -1;
  char *head = NULL;
  int hn = body != NULL ? asprintf(&head,
                                   "%s %s HTTP/1.1\r\nHost: tailord\r\n%sContent-Length: "
                                   "%zu\r\n\r\n",
                                   method, path, headers != NULL ? headers : "", blen)
                        : asprintf(&head, "%s %s HTTP/1.1\r\nHost: tailord\r\n%s\r\n", method, path,
                                   headers != NULL ? headers : "");
  if (hn < 0)
    abort();
  /* The server may answer before it has read everything (413, 503 to a
   * connection over the limit) and close: read the answer anyway. */
  int rc = write_all(c.fd, head, (size_t)hn);
  if (rc == 0 && body != NULL)
    rc = write_all(c.fd, body, blen);
  rc = client_read(&c, r);
  free(head);
  client_close(&c);
  return rc;
}

json_t *get_json(const char *sock, const char *path, int *status) {
  struct resp r;
  if (request(sock, "GET", path, NULL, NULL, 0, &r) != 0)
    return NULL;
  *status = r.status;
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  resp_free(&r);
  return v;
}

json_t *post_json(const char *sock, const char *path, json_t *body, int *status) {
  char *text = json_dumps(body, JSON_COMPACT);
  ck_assert_ptr_nonnull(text);
  struct resp r;
  int rc =
      request(sock, "POST", path, "Content-Type: application/json\r\n", text, strlen(text), &r);
  free(text);
  if (rc != 0)
    return NULL;
  *status = r.status;
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  resp_free(&r);
  return v;
}

/* ------------------------------------------------------------- daemon */

void opts_default(struct opts *o) {
  memset(o, 0, sizeof *o);
  o->model_name = "fmnist";
  o->budget_ms = 10000;
  o->margin = 0.1;
  o->hysteresis_ms = 1000;
  o->max_connections = 16;
  o->idle_timeout_ms = 30000;
  o->request_timeout_ms = 10000;
  o->max_body_bytes = 16 << 20;
  o->workers = 2;
  o->queue_depth = 64;
  o->search_k = 4;
  o->search_candidates = 6;
  o->interval_ms = MONITOR_INTERVAL_MS;
}

void config_text(const struct daemon *d, const struct opts *o, const char *db, char *buf,
                 size_t size) {
  snprintf(buf, size,
           "socket:\n  path: %s\n  mode: 0600\n"
           "database: %s\n"
           "workers: %d\nthreads: 1\nlog_level: debug\n"
           "monitor:\n  interval_ms: %d\n  root: %s\n"
           "limits:\n  max_connections: %d\n  max_body_bytes: %ld\n  idle_timeout_ms: %d\n"
           "  request_timeout_ms: %d\n"
           "  queue_depth: %d\n"
           "models:\n"
           "  - name: %s\n"
           "    path: %s/models/fmnist.onnx\n"
           "    calibration:\n      x: %s\n%s%s%s"
           "    space:\n      widths: [0.5, 1]\n      resolution_steps: 2\n"
           "    search:\n      k: %d\n      images: 100\n      candidates: %d\n"
           "    budget:\n      latency_p95_ms: %.9g\n      margin: %g\n"
           "      hysteresis_ms: %d\n",
           d->sock, db, o->workers, o->interval_ms, d->root, o->max_connections, o->max_body_bytes,
           o->idle_timeout_ms, o->request_timeout_ms, o->queue_depth, o->model_name, source_root,
           calib_x, o->unlabelled ? "" : "      y: ", o->unlabelled ? "" : calib_y,
           o->unlabelled ? "" : "\n", o->search_k, o->search_candidates, o->budget_ms, o->margin,
           o->hysteresis_ms);
}

void daemon_prepare(struct daemon *d, const struct opts *o, const char *db) {
  memset(d, 0, sizeof *d);
  snprintf(d->dir, sizeof d->dir, "%s/d.XXXXXX", base_dir);
  ck_assert_ptr_nonnull(mkdtemp(d->dir));
  snprintf(d->sock, sizeof d->sock, "%s/s.sock", d->dir);
  snprintf(d->cfg, sizeof d->cfg, "%s/tailord.yaml", d->dir);
  snprintf(d->log, sizeof d->log, "%s/stderr.log", d->dir);
  snprintf(d->root, sizeof d->root, "%s/root", d->dir);
  ck_assert_int_eq(fake_tree(d->root), 0);
  char text[4096];
  config_text(d, o, db != NULL ? db : shared_db, text, sizeof text);
  ck_assert_int_eq(write_file(d->cfg, text), 0);
}

pid_t spawn(const char *log, const char *const *argv) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* die with the test, whatever happens to it */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
      _exit(127);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (fd < 0 || null < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0 || dup2(null, 0) < 0)
      _exit(127);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid, double deadline_s) {
  double t0 = now_s();
  for (;;) {
    int st;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (w < 0)
      return -3;
    if (now_s() - t0 > wait_s(deadline_s))
      return -2;
    sleep_ms(20);
  }
}

void daemon_launch(struct daemon *d) {
  const char *argv[] = {tailord_bin, "--config", d->cfg, NULL};
  d->pid = spawn(d->log, argv);
  ck_assert_int_gt(d->pid, 0);
}

void daemon_wait_ready(struct daemon *d, double deadline_s) {
  double t0 = now_s();
  for (;;) {
    int status = 0;
    json_t *v = get_json(d->sock, "/v2/health/ready", &status);
    json_decref(v);
    if (status == 200)
      return;
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
      char *log = read_text(d->log);
      ck_abort_msg("tailord exited before it was ready; its log:\n%s", log);
    }
    if (now_s() - t0 > wait_s(deadline_s)) {
      char *log = read_text(d->log);
      ck_abort_msg("tailord was not ready within %.0f s; its log:\n%s", deadline_s, log);
    }
    sleep_ms(50);
  }
}

void daemon_start(struct daemon *d, const struct opts *o) {
  struct opts defaults;
  if (o == NULL) {
    opts_default(&defaults);
    o = &defaults;
  }
  daemon_prepare(d, o, NULL);
  daemon_launch(d);
  daemon_wait_ready(d, READY_DEADLINE_S);
}

/* SIGTERM and the exit status (-1 killed, -2 still running). */
static int daemon_stop(struct daemon *d) {
  if (d->pid <= 0)
    return -3;
  kill(d->pid, SIGTERM);
  int rc = wait_exit(d->pid, 60);
  if (rc == -2) {
    kill(d->pid, SIGKILL);
    wait_exit(d->pid, 10);
  }
  d->pid = 0;
  return rc;
}

void daemon_stop_ok(struct daemon *d) {
  int rc = daemon_stop(d);
  if (rc != 0) {
    char *log = read_text(d->log);
    ck_abort_msg("tailord exited with %d after SIGTERM; its log:\n%s", rc, log);
  }
}

int log_has(const struct daemon *d, const char *text) {
  char *log = read_text(d->log);
  int has = strstr(log, text) != NULL;
  free(log);
  return has;
}

int log_has_placed(const struct daemon *d, const char *file, const char *what) {
  char *log = read_text(d->log);
  size_t fl = strlen(file);
  int found = 0;
  for (char *p = log; !found && (p = strstr(p, file)) != NULL; p += fl) {
    char *q = p + fl;
    int line = 0, col = 0, used = 0;
    if (sscanf(q, ":%d:%d: %n", &line, &col, &used) == 2 && used > 0 && line > 0 && col > 0)
      found = strncmp(q + used, what, strlen(what)) == 0;
  }
  free(log);
  return found;
}

/* ------------------------------------------------------- infer helpers */

json_t *infer_body(int image, int fp32, json_t *parameters) {
  json_t *data = json_array();
  for (int i = 0; i < 784; i++)
    json_array_append_new(data, fp32 ? json_real((double)((float)images[image][i] * (float)SCALE))
                                     : json_integer(images[image][i]));
  json_t *b = json_pack("{s:[{s:s,s:[i,i,i,i],s:s,s:o}]}", "inputs", "name", "input", "shape", 1, 1,
                        28, 28, "datatype", fp32 ? "FP32" : "UINT8", "data", data);
  ck_assert_ptr_nonnull(b);
  if (parameters != NULL)
    json_object_set_new(b, "parameters", parameters);
  return b;
}

const char *logits_of(json_t *resp, float out[10]) {
  json_t *o = json_array_get(json_object_get(resp, "outputs"), 0);
  ck_assert_ptr_nonnull(o);
  ck_assert_str_eq(json_string_value(json_object_get(o, "name")), "logits");
  ck_assert_str_eq(json_string_value(json_object_get(o, "datatype")), "FP32");
  json_t *shape = json_object_get(o, "shape");
  ck_assert_int_eq(json_array_size(shape), 2);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), 1);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), 10);
  json_t *data = json_object_get(o, "data");
  ck_assert_int_eq(json_array_size(data), 10);
  for (int i = 0; i < 10; i++)
    out[i] = (float)json_number_value(json_array_get(data, (size_t)i));
  const char *subnet =
      json_string_value(json_object_get(json_object_get(resp, "parameters"), "subnet"));
  ck_assert_ptr_nonnull(subnet);
  return subnet;
}

int argmax(const float *v, int n) {
  int k = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[k])
      k = i;
  return k;
}

json_t *get_ok(const struct daemon *d, const char *path) {
  int status = 0;
  json_t *v = get_json(d->sock, path, &status);
  ck_assert_msg(status == 200 && v != NULL, "GET %s: %d", path, status);
  return v;
}

json_t *infer_ok(const struct daemon *d, int image) {
  int status = 0;
  json_t *b = infer_body(image, 0, NULL);
  json_t *r = post_json(d->sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_msg(status == 200 && r != NULL, "image %d as JSON: %d", image, status);
  return r;
}

void expect_served_by(const struct daemon *d, int image, const char *spec) {
  json_t *r = infer_ok(d, image);
  float logits[10];
  ck_assert_str_eq(logits_of(r, logits), spec);
  json_decref(r);
}

json_t *pin_fmnist(const struct daemon *d, const char *spec) {
  int status = 0;
  json_t *pin = json_pack("{s:s}", "subnet", spec);
  json_t *r = post_json(d->sock, "/v2/models/fmnist/pin", pin, &status);
  json_decref(pin);
  ck_assert_int_eq(status, 200);
  return r;
}

char *active_of(const struct daemon *d, const char *model) {
  json_t *st = state_of(d, model);
  const char *active = json_string_value(json_object_get(st, "active"));
  ck_assert_msg(active != NULL, "the state of %s names no active subnet", model);
  char *a = strdup(active);
  ck_assert_ptr_nonnull(a);
  json_decref(st);
  return a;
}

int is_frontier_member(const char *spec) {
  for (int i = 0; i < warm.n; i++)
    if (strcmp(warm.spec[i], spec) == 0)
      return 1;
  return 0;
}

double metric(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

char *get_metrics(const struct daemon *d) {
  struct resp r;
  ck_assert_int_eq(request(d->sock, "GET", "/metrics", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.head, "text/plain; version=0.0.4"));
  return r.body;
}

double metric_now(const struct daemon *d, const char *series) {
  char *m = get_metrics(d);
  double v = metric(m, series);
  free(m);
  return v;
}

/* ------------------------------------------------- shared by the areas */

void note_first(char *first, size_t size, const char *fmt, ...) {
  if (first[0] != '\0')
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first, size, fmt, ap);
  va_end(ap);
}

size_t binary_message(char *msg, const char *model, int image, const char *id) {
  char json[256];
  int jl = snprintf(json, sizeof json,
                    "{\"id\":\"%s\",\"parameters\":{\"binary_data_output\":true},\"inputs\":"
                    "[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"UINT8\","
                    "\"parameters\":{\"binary_data_size\":784}}]}",
                    id);
  int hl = snprintf(msg, BINARY_MSG_MAX - 784,
                    "POST /v2/models/%s/infer HTTP/1.1\r\nHost: tailord\r\n"
                    "Content-Length: %d\r\nInference-Header-Content-Length: %d\r\n\r\n%s",
                    model, jl + 784, jl, json);
  ck_assert(jl > 0 && (size_t)jl < sizeof json && hl > 0 && hl < BINARY_MSG_MAX - 784);
  memcpy(msg + hl, images[image], 784);
  return (size_t)hl + 784;
}

int binary_infer(struct client *c, const char *model, int image, const char *id, struct resp *r) {
  memset(r, 0, sizeof *r);
  char msg[BINARY_MSG_MAX];
  if (write_all(c->fd, msg, binary_message(msg, model, image, id)) != 0)
    return -1;
  return client_read(c, r);
}

void ctl_free(struct ctl *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void ctl(struct ctl *r, const char *env_socket, ...) {
  const char *argv[48] = {tailorctl_bin};
  int argc = 1;
  va_list ap;
  va_start(ap, env_socket);
  const char *a;
  r->cmd[0] = '\0';
  while ((a = va_arg(ap, const char *)) != NULL) {
    ck_assert_int_lt(argc, 47);
    argv[argc++] = a;
    size_t used = strlen(r->cmd);
    snprintf(r->cmd + used, sizeof r->cmd - used, "%s%s", used ? " " : "", a);
  }
  va_end(ap);
  argv[argc] = NULL;
  char dir[PATH_MAX + 16], out[PATH_MAX + 32], err[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%s/ctl.XXXXXX", base_dir);
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(out, sizeof out, "%s/stdout", dir);
  snprintf(err, sizeof err, "%s/stderr", dir);
  pid_t parent = getpid();
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
      _exit(127);
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || null < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0 || dup2(null, 0) < 0)
      _exit(127);
    if (env_socket != NULL)
      setenv("TAILOR_SOCKET", env_socket, 1);
    else
      unsetenv("TAILOR_SOCKET");
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int rc = wait_exit(pid, 300);
  if (rc == -2) {
    kill(pid, SIGKILL);
    wait_exit(pid, 10);
  }
  ck_assert_msg(rc != -2, "tailorctl %s: still running after 300 s", r->cmd);
  r->status = rc;
  r->out = read_text(out);
  r->err = read_text(err);
}

json_t *ctl_json(const struct ctl *r) {
  ck_assert_msg(r->status == 0, "tailorctl %s: exit status %d; stderr: %s", r->cmd, r->status,
                r->err);
  json_error_t je;
  json_t *v = json_loads(r->out, 0, &je);
  ck_assert_msg(v != NULL, "tailorctl %s: the output is not JSON (%s): %s", r->cmd, je.text,
                r->out);
  return v;
}

json_t *state_of(const struct daemon *d, const char *model) {
  char path[256];
  snprintf(path, sizeof path, "/v2/models/%s/state", model);
  return get_ok(d, path);
}
