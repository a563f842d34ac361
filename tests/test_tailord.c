/*
 * test_tailord.c - the real tailord binary driven over its Unix socket:
 * start-up with a provisional frontier and the swap to the searched one,
 * health and metadata, inference in JSON and in the binary extension,
 * every refusal with its status, clients that hang up, deadlines, the
 * metrics, pinning, hot swaps every 10 ms under 8 clients (nothing
 * dropped, every answer the logits of the subnet it names), the adaptation
 * to a CPU whose frequency halves and recovers (checked in the daemon's own
 * event log), reloads with a broken and a good config, limits, the drain
 * on SIGTERM, and `tailord -n`; the switch events route; a cgroup CPU
 * quota, which bounds throughput (it moves the daemon only while requests
 * flow); and tailorctl's commands for a running daemon (status, subnets,
 * events, pin, infer) against the routes they front, with their errors.
 *
 * Each test starts its own daemon in a directory of its own, with a config
 * written here, a fake /proc and /sys tree (monitor.root) whose CPU
 * frequency the test sets, and a socket; the daemon dies with the test
 * (PR_SET_PDEATHSIG) if the test fails first.  All of them share one
 * cache, made in main() by a first start that searches the frontier (on
 * 200 calibration images and a small space, so it takes seconds); every
 * later start finds the frontier there.  The client is raw HTTP/1.1 over
 * AF_UNIX, written here; tailorctl runs as a child whose output is kept.
 *
 * Timing: nothing is asserted about how fast anything is, except generous
 * deadlines for things to happen at all; the adaptation and CPU quota
 * tests check the order of events and that moving up waited for the
 * hysteresis, using the times the daemon stored.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "npy.h"
#include "store.h"
#include "testutil.h"

/* How long a daemon may take to be ready with a cached frontier, and the
 * first start to finish its search, in a release build (every wait below
 * stretches by wait_s()). */
#define READY_DEADLINE_S 120
#define SEARCH_DEADLINE_S 400
#define CALIB_IMAGES 200
#define MONITOR_INTERVAL_MS 50
#define FULL_KHZ 2000000
#define SCALE (0.00392156862745098)

static char source_root[PATH_MAX], build_root[PATH_MAX], tailord_bin[PATH_MAX + 32];
static char tailorctl_bin[PATH_MAX + 32];
static char base_dir[PATH_MAX];
static char calib_x[PATH_MAX + 32], calib_y[PATH_MAX + 32], shared_db[PATH_MAX + 32];

/* The first images of the calibration data, and their labels. */
#define N_IMAGES 16
static uint8_t images[N_IMAGES][784];
static int64_t labels[N_IMAGES];

/* What main's first start saw. */
static struct {
  int ok;
  char why[2048];
  int provisional_seen; /* ready while the search still ran */
  int partial_seen;     /* a partial frontier served before the final one */
  double search_wait_s;
  int n; /* the searched frontier */
  double ms[64];
  double acc[64];
  char spec[64][256];
} warm;

/* ------------------------------------------------------------- helpers */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A deadline of s seconds in a release build, stretched for a slower one
 * (a sanitizer's, an emulator's): tu_time_scale(). */
static double wait_s(double s) { return s * tu_time_scale(); }

static int64_t realtime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* Writes text to path through a rename, so a reader never sees half. */
static int write_file(const char *path, const char *text) {
  char tmp[PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return -1;
  int ok = fputs(text, f) >= 0;
  ok = fclose(f) == 0 && ok;
  return ok && rename(tmp, path) == 0 ? 0 : -1;
}

static int mkdirs(const char *path) {
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

static char *read_text(const char *path) {
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

/* A fake /proc and /sys under root: two CPUs at full speed, static
 * counters (so the CPU share is unknown, taken as 1).  0 or -1. */
static int fake_tree(const char *root) {
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

static void set_freq(const char *root, int khz) {
  char p[PATH_MAX + 128], v[32];
  snprintf(v, sizeof v, "%d\n", khz);
  for (int cpu = 0; cpu < 2; cpu++) {
    snprintf(p, sizeof p, "%s/sys/devices/system/cpu/cpu%d/cpufreq/scaling_cur_freq", root, cpu);
    ck_assert_int_eq(write_file(p, v), 0);
  }
}

/* ------------------------------------------------------------- client */

static int unix_connect(const char *path) {
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

static int write_all(int fd, const void *data, size_t n) {
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

/* A connection with a read buffer, for responses one at a time. */
struct client {
  int fd;
  char *buf;
  size_t len, cap;
};

struct resp {
  int status;
  char head[8192];
  char *body; /* malloc'd, NUL-terminated */
  size_t len;
  size_t json_len; /* Inference-Header-Content-Length, else len */
};

static void resp_free(struct resp *r) {
  free(r->body);
  r->body = NULL;
}

static int client_fill(struct client *c) {
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

/* Reads one response; 0 or -1 (closed or malformed). */
static int client_read(struct client *c, struct resp *r) {
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

static void client_close(struct client *c) {
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

/* Reads one answer on c and checks its status and that its body holds
 * needle (unless NULL). */
static void expect_answer(struct client *c, int status, const char *needle) {
  struct resp r;
  ck_assert_int_eq(client_read(c, &r), 0);
  ck_assert_int_eq(r.status, status);
  if (needle != NULL)
    ck_assert_ptr_nonnull(strstr(r.body, needle));
  resp_free(&r);
}

/* Sends one request on a new connection and reads its response. */
static int request(const char *sock, const char *method, const char *path, const char *headers,
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

/* GET path as JSON; the status in *status. */
static json_t *get_json(const char *sock, const char *path, int *status) {
  struct resp r;
  if (request(sock, "GET", path, NULL, NULL, 0, &r) != 0)
    return NULL;
  *status = r.status;
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  resp_free(&r);
  return v;
}

static json_t *post_json(const char *sock, const char *path, json_t *body, int *status) {
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

struct opts {
  const char *model_name;
  double budget_ms;
  double margin;
  int hysteresis_ms;
  int max_connections;
  int idle_timeout_ms;
  long max_body_bytes;
  int workers;
  int queue_depth;
  int search_k;
  int search_candidates;
  int interval_ms; /* the monitor's */
  int unlabelled;  /* calibration images without labels */
  int request_timeout_ms;
};

static void opts_default(struct opts *o) {
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

struct daemon {
  pid_t pid;
  char dir[PATH_MAX];
  char sock[PATH_MAX + 16];
  char cfg[PATH_MAX + 16];
  char log[PATH_MAX + 16];
  char root[PATH_MAX + 16];
};

static void config_text(const struct daemon *d, const struct opts *o, const char *db, char *buf,
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

/* Prepares a directory, its fake tree and config; does not start. */
static void daemon_prepare(struct daemon *d, const struct opts *o, const char *db) {
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

static pid_t spawn(const char *log, const char *const *argv) {
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

/* Waits for pid with a deadline; its exit status, or -1 if killed, -2 on
 * timeout. */
static int wait_exit(pid_t pid, double deadline_s) {
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

static void daemon_launch(struct daemon *d) {
  const char *argv[] = {tailord_bin, "--config", d->cfg, NULL};
  d->pid = spawn(d->log, argv);
  ck_assert_int_gt(d->pid, 0);
}

/* Polls GET /v2/health/ready until 200, or fails the test with the log. */
static void daemon_wait_ready(struct daemon *d, double deadline_s) {
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

static void daemon_start(struct daemon *d, const struct opts *o) {
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

static void daemon_stop_ok(struct daemon *d) {
  int rc = daemon_stop(d);
  if (rc != 0) {
    char *log = read_text(d->log);
    ck_abort_msg("tailord exited with %d after SIGTERM; its log:\n%s", rc, log);
  }
}

/* 1 once the daemon's log holds text. */
static int log_has(const struct daemon *d, const char *text) {
  char *log = read_text(d->log);
  int has = strstr(log, text) != NULL;
  free(log);
  return has;
}

/* 1 if a line of the daemon's log reads "<file>:LINE:COLUMN: <what>...". */
static int log_has_placed(const struct daemon *d, const char *file, const char *what) {
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

/* {"inputs": [one image of the calibration data]} as JSON, UINT8 or FP32. */
static json_t *infer_body(int image, int fp32, json_t *parameters) {
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

/* The 10 logits of a JSON infer response into out; returns the subnet. */
static const char *logits_of(json_t *resp, float out[10]) {
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

static int argmax(const float *v, int n) {
  int k = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[k])
      k = i;
  return k;
}

/* The active subnet from GET .../state. */
static char *active_of(const struct daemon *d, const char *model) {
  char path[256];
  snprintf(path, sizeof path, "/v2/models/%s/state", model);
  int status = 0;
  json_t *st = get_json(d->sock, path, &status);
  ck_assert_int_eq(status, 200);
  char *a = strdup(json_string_value(json_object_get(st, "active")));
  json_decref(st);
  return a;
}

static int is_frontier_member(const char *spec) {
  for (int i = 0; i < warm.n; i++)
    if (strcmp(warm.spec[i], spec) == 0)
      return 1;
  return 0;
}

/* A metric's value from /metrics text (the line that starts with
 * series + " "), or -1 when absent. */
static double metric(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

static char *get_metrics(const struct daemon *d) {
  struct resp r;
  ck_assert_int_eq(request(d->sock, "GET", "/metrics", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.head, "text/plain; version=0.0.4"));
  return r.body;
}

/* --------------------------------------------------------------- tests */

START_TEST(first_start_serves_provisional_then_the_searched_frontier) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  ck_assert_msg(warm.provisional_seen,
                "the first start was not ready with a provisional frontier before its search "
                "ended");
  ck_assert_int_ge(warm.n, 2);
  for (int i = 1; i < warm.n; i++) {
    ck_assert(warm.ms[i] > warm.ms[i - 1]);
    ck_assert(warm.acc[i] > warm.acc[i - 1]);
  }
  /* on the way, the search's better frontiers were served as they came */
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/warm/stderr.log", base_dir);
  char *log = read_text(path);
  ck_assert_msg(strstr(log, "found a better frontier") != NULL &&
                    strstr(log, "serving the search's partial frontier") != NULL,
                "no partial frontier served during the first search; log:\n%s", log);
  free(log);
  /* a later start finds the frontier in the cache: no provisional one */
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  json_t *s = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_false(json_object_get(s, "provisional")));
  ck_assert_int_eq(json_array_size(json_object_get(s, "subnets")), (size_t)warm.n);
  json_decref(s);
  ck_assert(log_has(&d, "from the cache"));
  ck_assert(!log_has(&d, "searching the frontier"));
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(health_and_metadata_answer) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  json_t *v = get_json(d.sock, "/v2/health/live", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_true(json_object_get(v, "live")));
  json_decref(v);
  v = get_json(d.sock, "/v2/health/ready", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_true(json_object_get(v, "ready")));
  json_decref(v);
  v = get_json(d.sock, "/v2", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "tailor");
  ck_assert_ptr_nonnull(json_string_value(json_object_get(v, "version")));
  json_decref(v);
  v = get_json(d.sock, "/v2/models/fmnist", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "fmnist");
  json_t *in = json_array_get(json_object_get(v, "inputs"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(in, "name")), "input");
  ck_assert_str_eq(json_string_value(json_object_get(in, "datatype")), "FP32");
  json_t *shape = json_object_get(in, "shape");
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), -1);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), 1);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 2)), 28);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 3)), 28);
  json_t *out = json_array_get(json_object_get(v, "outputs"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(out, "name")), "logits");
  json_decref(v);
  v = get_json(d.sock, "/v2/models/fmnist/ready", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_true(json_object_get(v, "ready")));
  json_decref(v);
  v = get_json(d.sock, "/v2/models/nope", &status);
  ck_assert_int_eq(status, 404);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(v, "error")), "nope"));
  json_decref(v);
  v = get_json(d.sock, "/v2/models/nope/ready", &status);
  ck_assert_int_eq(status, 404);
  json_decref(v);
  /* the extensions */
  v = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
  ck_assert_int_eq(status, 200);
  json_t *list = json_object_get(v, "subnets");
  ck_assert_int_eq(json_array_size(list), (size_t)warm.n);
  int actives = 0;
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *e = json_array_get(list, i);
    ck_assert_str_eq(json_string_value(json_object_get(e, "subnet")), warm.spec[i]);
    ck_assert(json_number_value(json_object_get(e, "predicted_ms")) > 0);
    ck_assert(json_number_value(json_object_get(e, "predicted_mib")) > 0);
    ck_assert(json_is_real(json_object_get(e, "accuracy")));
    actives += json_is_true(json_object_get(e, "active"));
  }
  ck_assert_int_eq(actives, 1);
  json_decref(v);
  v = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(is_frontier_member(json_string_value(json_object_get(v, "active"))));
  ck_assert(json_is_false(json_object_get(v, "degraded")));
  ck_assert(json_is_false(json_object_get(v, "pinned")));
  ck_assert(json_number_value(json_object_get(v, "correction")) > 0);
  ck_assert(json_number_value(json_object_get(json_object_get(v, "budget"), "latency_p95_ms")) ==
            10000);
  ck_assert(json_number_value(json_object_get(json_object_get(v, "device"), "freq_ratio")) == 1);
  json_decref(v);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(json_infer_classifies_calibration_images) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int right = 0;
  for (int k = 0; k < 8; k++) {
    int status = 0;
    json_t *body = infer_body(k, 0, NULL);
    json_object_set_new(body, "id", json_sprintf("req-%d", k));
    json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", body, &status);
    json_decref(body);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r, "model_name")), "fmnist");
    char id[16];
    snprintf(id, sizeof id, "req-%d", k);
    ck_assert_str_eq(json_string_value(json_object_get(r, "id")), id);
    float logits[10];
    const char *subnet = logits_of(r, logits);
    ck_assert_msg(is_frontier_member(subnet), "\"%s\" is not on the frontier", subnet);
    right += argmax(logits, 10) == labels[k];
    /* the same pixels as FP32 give the same logits, bit for bit */
    body = infer_body(k, 1, json_pack("{s:s}", "subnet", subnet));
    json_t *r2 = post_json(d.sock, "/v2/models/fmnist/infer", body, &status);
    json_decref(body);
    ck_assert_int_eq(status, 200);
    float logits2[10];
    ck_assert_str_eq(logits_of(r2, logits2), subnet);
    ck_assert_int_eq(memcmp(logits, logits2, sizeof logits), 0);
    json_decref(r2);
    json_decref(r);
  }
  /* the frontier's members are 85-95 % accurate on this data */
  ck_assert_msg(right >= 6, "only %d of 8 calibration images classified right", right);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(binary_infer_equals_json_infer_bit_for_bit) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  for (int k = 0; k < 3; k++) {
    int status = 0;
    json_t *body = infer_body(k, 1, NULL);
    json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", body, &status);
    json_decref(body);
    ck_assert_int_eq(status, 200);
    float want[10];
    char *subnet = strdup(logits_of(r, want));
    json_decref(r);

    float x[784];
    for (int i = 0; i < 784; i++)
      x[i] = (float)images[k][i] * (float)SCALE;
    char head[512];
    int jl = snprintf(head, sizeof head,
                      "{\"parameters\":{\"subnet\":\"%s\"},\"inputs\":[{\"name\":\"input\","
                      "\"shape\":[1,1,28,28],\"datatype\":\"FP32\",\"parameters\":"
                      "{\"binary_data_size\":%zu}}],\"outputs\":[{\"name\":\"logits\","
                      "\"parameters\":{\"binary_data\":true}}]}",
                      subnet, sizeof x);
    char *bin = malloc((size_t)jl + sizeof x);
    ck_assert_ptr_nonnull(bin);
    memcpy(bin, head, (size_t)jl);
    memcpy(bin + jl, x, sizeof x);
    char hdr[128];
    snprintf(hdr, sizeof hdr,
             "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: %d\r\n",
             jl);
    struct resp rr;
    ck_assert_int_eq(
        request(d.sock, "POST", "/v2/models/fmnist/infer", hdr, bin, (size_t)jl + sizeof x, &rr),
        0);
    free(bin);
    ck_assert_int_eq(rr.status, 200);
    ck_assert_uint_eq(rr.len - rr.json_len, sizeof want);
    json_t *meta = json_loadb(rr.body, rr.json_len, 0, NULL);
    ck_assert_ptr_nonnull(meta);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(meta, "parameters"), "subnet")), subnet);
    json_t *o0 = json_array_get(json_object_get(meta, "outputs"), 0);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(o0, "parameters"), "binary_data_size")),
        (json_int_t)sizeof want);
    json_decref(meta);
    ck_assert_int_eq(memcmp(rr.body + rr.json_len, want, sizeof want), 0);
    resp_free(&rr);
    free(subnet);
  }
  daemon_stop_ok(&d);
}
END_TEST

/* POSTs raw body text and checks the status and that the body is
 * {"error": ...} containing needle. */
static void expect_error(const struct daemon *d, const char *path, const char *body, int want,
                         const char *needle) {
  struct resp r;
  ck_assert_int_eq(
      request(d->sock, "POST", path, "Content-Type: application/json\r\n", body, strlen(body), &r),
      0);
  ck_assert_msg(r.status == want, "%s %s: got %d, want %d: %s", path, body, r.status, want, r.body);
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  const char *msg = json_string_value(json_object_get(v, "error"));
  ck_assert_msg(msg != NULL, "no error member in %s", r.body);
  ck_assert_msg(needle == NULL || strstr(msg, needle) != NULL, "\"%s\" does not say \"%s\"", msg,
                needle);
  json_decref(v);
  resp_free(&r);
}

START_TEST(bad_requests_get_their_status_and_a_json_error) {
  struct opts o;
  opts_default(&o);
  o.max_body_bytes = 65536;
  struct daemon d;
  daemon_start(&d, &o);
  const char *infer = "/v2/models/fmnist/infer";
  expect_error(&d, infer, "{\"inputs\": [", 400, "not valid JSON");
  expect_error(&d, infer,
               "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,27],\"datatype\":\"FP32\","
               "\"data\":[0]}]}",
               400, NULL);
  /* a consistent tensor of the wrong shape for the model */
  {
    json_t *b = infer_body(0, 0, NULL);
    json_t *in = json_array_get(json_object_get(b, "inputs"), 0);
    json_object_set_new(in, "shape", json_pack("[i,i,i,i]", 1, 1, 14, 56));
    char *text = json_dumps(b, JSON_COMPACT);
    expect_error(&d, infer, text, 400, "[N,1,28,28]");
    free(text);
    json_object_set_new(in, "shape", json_pack("[i,i,i,i]", 1, 1, 28, 28));
    json_object_set_new(in, "name", json_string("x"));
    text = json_dumps(b, JSON_COMPACT);
    expect_error(&d, infer, text, 400, "no input \"x\"");
    free(text);
    json_object_set_new(in, "name", json_string("input"));
    json_object_set_new(in, "datatype", json_string("INT32"));
    text = json_dumps(b, JSON_COMPACT);
    expect_error(&d, infer, text, 400, "INT32");
    free(text);
    json_object_set_new(in, "datatype", json_string("UINT8"));
    json_object_set_new(b, "outputs", json_pack("[{s:s}]", "name", "probs"));
    text = json_dumps(b, JSON_COMPACT);
    expect_error(&d, infer, text, 400, "no output \"probs\"");
    free(text);
    json_object_del(b, "outputs");
    json_object_set_new(b, "parameters", json_pack("{s:s}", "subnet", "r=28 d=9,9,9 w=1,1,1"));
    text = json_dumps(b, JSON_COMPACT);
    expect_error(&d, infer, text, 400, NULL);
    free(text);
    json_decref(b);
  }
  expect_error(&d, "/v2/models/nope/infer", "{}", 404, "unknown model \"nope\"");
  expect_error(&d, "/v2/models/fmnist/pin", "{\"subnet\": 3}", 400, "subnet");
  expect_error(&d, "/v2/models/fmnist/pin", "{\"subnet\": \"r=14 d=0,0,0 w=.5,.5,.5x\"}", 400,
               NULL);
  expect_error(&d, "/v2/nothing/here", "{}", 404, NULL);
  /* 405 with Allow */
  struct resp r;
  ck_assert_int_eq(request(d.sock, "DELETE", "/v2/health/live", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 405);
  ck_assert_ptr_nonnull(strstr(r.head, "Allow: GET, HEAD"));
  ck_assert_ptr_nonnull(strstr(r.body, "\"error\""));
  resp_free(&r);
  /* 413 as soon as the Content-Length is over the limit */
  ck_assert_int_eq(request(d.sock, "POST", infer, "Content-Length: 1000000\r\n", NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 413);
  ck_assert_ptr_nonnull(strstr(r.body, "\"error\""));
  resp_free(&r);
  /* a malformed request line: 400 */
  struct client c = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(c.fd, 0);
  ck_assert_int_eq(write_all(c.fd, "GARBAGE\r\n\r\n", 11), 0);
  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 400);
  resp_free(&r);
  client_close(&c);
  /* a header block over the limit: 431 */
  char big[20000];
  memset(big, 'a', sizeof big);
  memcpy(big, "X-Big: ", 7);
  big[sizeof big - 5] = '\r';
  big[sizeof big - 4] = '\n';
  big[sizeof big - 3] = '\r';
  big[sizeof big - 2] = '\n';
  big[sizeof big - 1] = '\0';
  ck_assert_int_eq(request(d.sock, "GET", "/v2", big, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 431);
  resp_free(&r);
  /* and the daemon still serves */
  int status = 0;
  json_t *v = get_json(d.sock, "/v2/health/ready", &status);
  ck_assert_int_eq(status, 200);
  json_decref(v);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"400\"}") >= 7);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"404\"}") == 1);
  ck_assert(metric(m, "tailor_requests_total{route=\"none\",code=\"413\"}") == 1);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(clients_that_hang_up_do_not_stop_the_daemon) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  json_t *b = infer_body(0, 0, NULL);
  char *text = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  size_t len = strlen(text);
  for (int round = 0; round < 3; round++) {
    /* mid-body */
    int fd = unix_connect(d.sock);
    ck_assert_int_ge(fd, 0);
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
    ck_assert_int_eq(write_all(fd, head, (size_t)hn), 0);
    ck_assert_int_eq(write_all(fd, text, len / 2), 0);
    close(fd);
    /* a whole request, gone before the answer */
    fd = unix_connect(d.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, head, (size_t)hn), 0);
    ck_assert_int_eq(write_all(fd, text, len), 0);
    close(fd);
    /* mid-headers */
    fd = unix_connect(d.sock);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write_all(fd, "GET /v2/hea", 11), 0);
    close(fd);
  }
  /* keep-alive and pipelining on one connection: answers in order */
  struct client c = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(c.fd, 0);
  char two[8192];
  int n = snprintf(two, sizeof two,
                   "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s"
                   "GET /v2/models/fmnist/ready HTTP/1.1\r\n\r\n"
                   "GET /v2/models/nope HTTP/1.1\r\n\r\n",
                   len, text);
  ck_assert_int_lt(n, (int)sizeof two);
  ck_assert_int_eq(write_all(c.fd, two, (size_t)n), 0);
  expect_answer(&c, 200, "\"logits\"");
  expect_answer(&c, 200, "\"ready\":true");
  expect_answer(&c, 404, NULL);
  client_close(&c);
  free(text);
  int status = 0;
  json_t *v = get_json(d.sock, "/v2/health/live", &status);
  ck_assert_int_eq(status, 200);
  json_decref(v);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(an_expired_deadline_is_503_without_running) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  /* one request that runs, so the compute histogram exists */
  json_t *b = infer_body(1, 0, NULL);
  json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  ck_assert_int_eq(status, 200);
  json_decref(r);
  json_decref(b);
  char *m = get_metrics(&d);
  double ran = metric(m, "tailor_compute_duration_seconds_count{model=\"fmnist\"}");
  free(m);
  ck_assert(ran == 1);

  b = infer_body(1, 0, json_pack("{s:i}", "timeout", 1));
  r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_int_eq(status, 503);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "error")), "deadline"));
  json_decref(r);
  m = get_metrics(&d);
  ck_assert(metric(m, "tailor_compute_duration_seconds_count{model=\"fmnist\"}") == ran);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"503\"}") == 1);
  free(m);
  /* a deadline that can be met is served, by a frontier member */
  b = infer_body(1, 0, json_pack("{s:i}", "timeout", 30000000));
  r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_int_eq(status, 200);
  float logits[10];
  ck_assert(is_frontier_member(logits_of(r, logits)));
  json_decref(r);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(metrics_show_counters_histograms_and_gauges) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  for (int k = 0; k < 3; k++) {
    json_t *b = infer_body(k, 0, NULL);
    json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
    ck_assert_int_eq(status, 200);
    json_decref(r);
    json_decref(b);
  }
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") == 3);
  ck_assert(metric(m, "tailor_requests_total{route=\"health_ready\",code=\"200\"}") >= 1);
  ck_assert(metric(m, "tailor_switches_total{model=\"fmnist\",reason=\"start\"}") == 1);
  ck_assert(metric(m, "tailor_request_duration_seconds_count{model=\"fmnist\"}") == 3);
  ck_assert(metric(m, "tailor_request_duration_seconds_bucket{model=\"fmnist\",le=\"+Inf\"}") == 3);
  ck_assert(metric(m, "tailor_queue_duration_seconds_count{model=\"fmnist\"}") == 3);
  ck_assert(metric(m, "tailor_compute_duration_seconds_sum{model=\"fmnist\"}") > 0);
  ck_assert_ptr_nonnull(strstr(m, "# TYPE tailor_request_duration_seconds histogram"));
  ck_assert_ptr_nonnull(strstr(m, "# TYPE tailor_requests_total counter"));
  char *a = active_of(&d, "fmnist");
  char series[512];
  snprintf(series, sizeof series, "tailor_active_subnet_info{model=\"fmnist\",subnet=\"%s\"}", a);
  ck_assert(metric(m, series) == 1);
  free(a);
  ck_assert(metric(m, "tailor_latency_budget_seconds{model=\"fmnist\"}") == 10);
  ck_assert(metric(m, "tailor_predicted_latency_seconds{model=\"fmnist\"}") > 0);
  ck_assert(metric(m, "tailor_degraded{model=\"fmnist\"}") == 0);
  ck_assert(metric(m, "tailor_accuracy_info{model=\"fmnist\",metric=\"top-1\"}") == 1);
  ck_assert(metric(m, "tailor_search_progress{model=\"fmnist\"}") == 1); /* cached: final */
  ck_assert(metric(m, "tailor_device_freq_ratio") == 1);
  ck_assert(metric(m, "tailor_device_memory_available_bytes") == 6000000.0 * 1024);
  ck_assert(metric(m, "tailor_ready") == 1);
  ck_assert(metric(m, "tailor_connections") >= 1);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

/* Calibration images without labels: the search measures agreement with
 * the largest subnet, and the routes and metrics say so. */
START_TEST(unlabelled_calibration_is_searched_and_reported_as_agreement) {
  struct opts o;
  opts_default(&o);
  o.unlabelled = 1;
  struct daemon d;
  char db[PATH_MAX + 32];
  snprintf(db, sizeof db, "%s/unlabelled-%d.db", base_dir, (int)getpid());
  daemon_prepare(&d, &o, db);
  daemon_launch(&d);
  daemon_wait_ready(&d, READY_DEADLINE_S);
  double t0 = now_s();
  json_t *s = NULL;
  for (;;) {
    int status = 0;
    s = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(s, "accuracy_metric")), "agreement");
    if (json_is_false(json_object_get(s, "provisional")) &&
        json_is_false(json_object_get(s, "partial")))
      break;
    json_decref(s);
    ck_assert_msg(now_s() - t0 < wait_s(SEARCH_DEADLINE_S), "no searched frontier");
    sleep_ms(100);
  }
  json_t *list = json_object_get(s, "subnets");
  size_t n = json_array_size(list);
  ck_assert_uint_ge(n, 2);
  for (size_t i = 0; i < n; i++) {
    double a = json_number_value(json_object_get(json_array_get(list, i), "accuracy"));
    ck_assert_msg(a > 0.1 && a <= 1.0, "agreement %g", a);
  }
  json_decref(s);
  int status = 0;
  json_t *st = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_str_eq(
      json_string_value(json_object_get(json_object_get(st, "budget"), "accuracy_metric")),
      "agreement");
  json_decref(st);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_accuracy_info{model=\"fmnist\",metric=\"agreement\"}") == 1);
  free(m);
  daemon_stop_ok(&d);
  unlink(db);
}
END_TEST

START_TEST(pin_fixes_the_subnet_and_auto_releases_it) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  /* with a loose budget the most accurate member is active */
  char *a = active_of(&d, "fmnist");
  ck_assert_str_eq(a, warm.spec[warm.n - 1]);
  free(a);
  json_t *pin = json_pack("{s:s}", "subnet", warm.spec[0]);
  json_t *r = post_json(d.sock, "/v2/models/fmnist/pin", pin, &status);
  json_decref(pin);
  ck_assert_int_eq(status, 200);
  ck_assert_str_eq(json_string_value(json_object_get(r, "active")), warm.spec[0]);
  ck_assert(json_is_true(json_object_get(r, "pinned")));
  json_decref(r);
  for (int k = 0; k < 3; k++) {
    json_t *b = infer_body(k, 0, NULL);
    r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
    ck_assert_int_eq(status, 200);
    float logits[10];
    ck_assert_str_eq(logits_of(r, logits), warm.spec[0]);
    json_decref(r);
    json_decref(b);
  }
  /* the controller leaves a pinned model alone across intervals */
  sleep_ms(5 * MONITOR_INTERVAL_MS);
  json_t *st = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert(json_is_true(json_object_get(st, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  json_decref(st);
  /* a spec that is valid but not on the frontier */
  expect_error(&d, "/v2/models/fmnist/pin", "{\"subnet\": \"r=14 d=0,0,0 w=.5,.5,.5\"}", 400,
               "not on the frontier");
  pin = json_pack("{s:s}", "subnet", "auto");
  r = post_json(d.sock, "/v2/models/fmnist/pin", pin, &status);
  json_decref(pin);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_false(json_object_get(r, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(r, "active")), warm.spec[warm.n - 1]);
  json_decref(r);
  json_t *b = infer_body(0, 0, NULL);
  r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  float logits[10];
  ck_assert_str_eq(logits_of(r, logits), warm.spec[warm.n - 1]);
  json_decref(r);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_switches_total{model=\"fmnist\",reason=\"pin\"}") == 2);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

/* ------------------------------------------------------ hot-swap storm */

/* 20 000 requests from 8 clients while a ninth pins another frontier
 * member every 10 ms (a quarter of them in a sanitizer's build, whose
 * time scale is 4: tu_time_scale()).  Every request must get one answer, 200, from a
 * frontier member, with the logits that member gives alone for that
 * image.  A member's plans run one image the same way whichever worker
 * holds them (one engine thread each, no reduction order that depends on
 * timing), so its logits must be equal bit for bit, not just close.
 *
 * However fast the machine, the storm spans at least STORM_MIN_PINS pins:
 * a client sends its request k (from 0) only after (k + 1) *
 * STORM_MIN_PINS / per_client pins.  A client on a 2-core machine
 * hardly ever waits for that (the storm takes seconds); one on a machine
 * that answers 20 000 requests in under a second would. */

#define STORM_CLIENTS 8
#define STORM_PER_CLIENT 2500
#define STORM_IMAGES 4
#define STORM_PIN_MS 10
#define STORM_MIN_PINS 100
#define STORM_MEMBERS 64

struct storm {
  const struct daemon *d;
  int n;                                      /* frontier members */
  float ref[STORM_MEMBERS][STORM_IMAGES][10]; /* member i's logits alone */
  atomic_int clients_running;                 /* the pinner stops at 0 */
  atomic_int pins_tried;                      /* by the pinner, so far */
  int per_client;                             /* requests each client sends */
};

/* What one client thread saw; read by the test after the join. */
struct storm_client {
  struct storm *s;
  int index;
  pthread_t thread;
  int answered; /* requests that got a response */
  int dropped;  /* requests whose connection closed or broke first */
  int not_200;
  int malformed; /* no parsable header, wrong id or wrong output size */
  int unknown_subnet;
  int wrong_logits; /* not the named member's reference for the image */
  int changes;      /* consecutive answers from different members */
  int served[STORM_MEMBERS];
  char first_problem[512];
};

/* The thread that pins; also read after the join. */
struct storm_pinner {
  struct storm *s;
  pthread_t thread;
  int pins;
  int failed;
  char first_problem[512];
};

/* Notes the first problem a thread saw (threads do not ck_assert: under
 * CK_FORK only the test's main thread may fail the test). */
static void storm_note(char *first, size_t size, const char *fmt, ...) {
  if (first[0] != '\0')
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(first, size, fmt, ap);
  va_end(ap);
}

/* Sends a binary UINT8 infer request to model for one calibration image,
 * with id, on c and reads the answer into r: 0, or -1 if the connection
 * broke. */
/* A whole binary infer request for one calibration image, with id, into
 * msg (BINARY_MSG_MAX bytes): its length. */
#define BINARY_MSG_MAX 2048
static size_t binary_message(char *msg, const char *model, int image, const char *id) {
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

static int binary_infer(struct client *c, const char *model, int image, const char *id,
                        struct resp *r) {
  memset(r, 0, sizeof *r);
  char msg[BINARY_MSG_MAX];
  if (write_all(c->fd, msg, binary_message(msg, model, image, id)) != 0)
    return -1;
  return client_read(c, r);
}

/* The storm's requests, to model fmnist. */
static int storm_infer(struct client *c, int image, const char *id, struct resp *r) {
  return binary_infer(c, "fmnist", image, id, r);
}

/* The subnet and the 10 binary logits of a 200 answer to request id:
 * 0, or -1 with why. */
static int storm_parse(const struct resp *r, const char *id, char *subnet, size_t size,
                       float logits[10], char *why, size_t why_size) {
  json_t *meta = json_loadb(r->body, r->json_len, 0, NULL);
  const char *got_id = json_string_value(json_object_get(meta, "id"));
  const char *sn =
      json_string_value(json_object_get(json_object_get(meta, "parameters"), "subnet"));
  int rc = -1;
  if (meta == NULL)
    snprintf(why, why_size, "request %s: the answer's header is not JSON", id);
  else if (got_id == NULL || strcmp(got_id, id) != 0)
    snprintf(why, why_size, "request %s: answered as \"%s\"", id, got_id ? got_id : "(none)");
  else if (sn == NULL)
    snprintf(why, why_size, "request %s: no parameters.subnet", id);
  else if (r->len - r->json_len != 10 * sizeof(float))
    snprintf(why, why_size, "request %s: %zu bytes of output, not 40", id, r->len - r->json_len);
  else
    rc = 0;
  if (rc == 0) {
    snprintf(subnet, size, "%s", sn);
    memcpy(logits, r->body + r->json_len, 10 * sizeof(float));
  }
  json_decref(meta);
  return rc;
}

static int storm_member(const struct storm *s, const char *spec) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(warm.spec[i], spec) == 0)
      return i;
  return -1;
}

/* POST .../pin {"subnet": spec} on c: 0 when the answer is 200 with spec
 * active and pinned, else -1 with why. */
static int storm_pin(struct client *c, const char *spec, char *why, size_t why_size) {
  char body[sizeof warm.spec[0] + 32], msg[sizeof warm.spec[0] + 256];
  int bl = snprintf(body, sizeof body, "{\"subnet\":\"%s\"}", spec);
  int ml = snprintf(msg, sizeof msg,
                    "POST /v2/models/fmnist/pin HTTP/1.1\r\nHost: tailord\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                    bl, body);
  struct resp r;
  if (write_all(c->fd, msg, (size_t)ml) != 0 || client_read(c, &r) != 0) {
    snprintf(why, why_size, "pin %s: the connection broke", spec);
    return -1;
  }
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  const char *active = json_string_value(json_object_get(v, "active"));
  int ok = r.status == 200 && active != NULL && strcmp(active, spec) == 0 &&
           json_is_true(json_object_get(v, "pinned"));
  if (!ok)
    snprintf(why, why_size, "pin %s: %d %s", spec, r.status, r.body);
  json_decref(v);
  resp_free(&r);
  return ok ? 0 : -1;
}

static void *storm_client_main(void *arg) {
  struct storm_client *sc = arg;
  const struct storm *s = sc->s;
  struct client c = {.fd = unix_connect(s->d->sock)};
  int last = -1;
  for (int k = 0; k < s->per_client; k++) {
    if (c.fd < 0) {
      sc->dropped += s->per_client - k;
      storm_note(sc->first_problem, sizeof sc->first_problem, "client %d: cannot connect",
                 sc->index);
      break;
    }
    while (atomic_load(&s->pins_tried) < (k + 1) * STORM_MIN_PINS / s->per_client)
      sleep_ms(1);
    char id[32], subnet[sizeof warm.spec[0]], why[512];
    snprintf(id, sizeof id, "c%d-%d", sc->index, k);
    int image = (sc->index + k) % STORM_IMAGES;
    struct resp r;
    if (storm_infer(&c, image, id, &r) != 0) {
      /* a broken connection loses this request; go on with a new one */
      sc->dropped++;
      storm_note(sc->first_problem, sizeof sc->first_problem,
                 "request %s: no answer (the connection broke)", id);
      resp_free(&r);
      client_close(&c);
      c.fd = unix_connect(s->d->sock);
      continue;
    }
    sc->answered++;
    float logits[10];
    if (r.status != 200) {
      sc->not_200++;
      storm_note(sc->first_problem, sizeof sc->first_problem, "request %s: %d %s", id, r.status,
                 r.body);
    } else if (storm_parse(&r, id, subnet, sizeof subnet, logits, why, sizeof why) != 0) {
      sc->malformed++;
      storm_note(sc->first_problem, sizeof sc->first_problem, "%s", why);
    } else {
      int m = storm_member(s, subnet);
      if (m < 0) {
        sc->unknown_subnet++;
        storm_note(sc->first_problem, sizeof sc->first_problem,
                   "request %s: served by \"%s\", not a frontier member", id, subnet);
      } else {
        sc->served[m]++;
        sc->changes += last >= 0 && m != last;
        last = m;
        if (memcmp(logits, s->ref[m][image], sizeof logits) != 0) {
          sc->wrong_logits++;
          storm_note(sc->first_problem, sizeof sc->first_problem,
                     "request %s (image %d): named %s, logits[0] %.9g, that member gives %.9g", id,
                     image, subnet, (double)logits[0], (double)s->ref[m][image][0]);
        }
      }
    }
    resp_free(&r);
  }
  if (c.fd >= 0 && c.len != 0) {
    sc->malformed++;
    storm_note(sc->first_problem, sizeof sc->first_problem,
               "client %d: %zu bytes after the last answer", sc->index, c.len);
  }
  client_close(&c);
  atomic_fetch_sub(&sc->s->clients_running, 1);
  return NULL;
}

static void *storm_pinner_main(void *arg) {
  struct storm_pinner *p = arg;
  struct storm *s = p->s;
  struct client c = {.fd = unix_connect(s->d->sock)};
  struct timespec next;
  clock_gettime(CLOCK_MONOTONIC, &next);
  /* the reference pass left the last member pinned: start with the first */
  for (int m = 0; atomic_load(&s->clients_running) > 0; m = (m + 1) % s->n) {
    char why[512];
    if (c.fd < 0 || storm_pin(&c, warm.spec[m], why, sizeof why) != 0) {
      p->failed++;
      storm_note(p->first_problem, sizeof p->first_problem, "%s",
                 c.fd < 0 ? "the pinner cannot connect" : why);
      client_close(&c);
      c.fd = unix_connect(s->d->sock);
    } else {
      p->pins++;
    }
    atomic_fetch_add(&s->pins_tried, 1);
    /* the next pin 10 ms after the last was due, or now if that is past */
    next.tv_nsec += STORM_PIN_MS * 1000000L;
    if (next.tv_nsec >= 1000000000L) {
      next.tv_sec++;
      next.tv_nsec -= 1000000000L;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
      next = now;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
      ;
  }
  client_close(&c);
  return NULL;
}

START_TEST(hot_swap_every_10_ms_drops_nothing_and_serves_what_it_names) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  o.workers = 4; /* each with a plan of its own per member: all must agree */
  o.max_connections = 32;
  struct daemon d;
  daemon_start(&d, &o);
  static struct storm s; /* the references are too big for the stack */
  memset(&s, 0, sizeof s);
  s.d = &d;
  s.per_client = (int)fmax(STORM_PER_CLIENT / tu_time_scale(), 100);
  /* the searched frontier, from the cache (three members here) */
  int status = 0;
  json_t *list = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_false(json_object_get(list, "provisional")));
  s.n = (int)json_array_size(json_object_get(list, "subnets"));
  json_decref(list);
  ck_assert_int_eq(s.n, warm.n);
  ck_assert_int_ge(s.n, 2);
  ck_assert_int_le(s.n, STORM_MEMBERS);

  /* each member's logits for each image, pinned, one request at a time */
  struct client c = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(c.fd, 0);
  for (int m = 0; m < s.n; m++) {
    char why[512];
    ck_assert_msg(storm_pin(&c, warm.spec[m], why, sizeof why) == 0, "%s", why);
    for (int k = 0; k < STORM_IMAGES; k++) {
      char id[32], subnet[sizeof warm.spec[0]];
      snprintf(id, sizeof id, "ref-%d-%d", m, k);
      struct resp r;
      ck_assert_int_eq(storm_infer(&c, k, id, &r), 0);
      ck_assert_int_eq(r.status, 200);
      ck_assert_msg(storm_parse(&r, id, subnet, sizeof subnet, s.ref[m][k], why, sizeof why) == 0,
                    "%s", why);
      ck_assert_str_eq(subnet, warm.spec[m]);
      resp_free(&r);
    }
  }
  client_close(&c);
  /* the members disagree on every image, so an answer credited to the
   * wrong member cannot pass */
  for (int a = 0; a < s.n; a++)
    for (int b = a + 1; b < s.n; b++)
      for (int k = 0; k < STORM_IMAGES; k++)
        ck_assert_msg(memcmp(s.ref[a][k], s.ref[b][k], sizeof s.ref[a][k]) != 0,
                      "%s and %s give the same logits for image %d", warm.spec[a], warm.spec[b], k);

  /* the storm */
  static struct storm_client clients[STORM_CLIENTS];
  struct storm_pinner pinner = {.s = &s};
  memset(clients, 0, sizeof clients);
  atomic_store(&s.clients_running, STORM_CLIENTS);
  atomic_store(&s.pins_tried, 0);
  double t0 = now_s();
  for (int i = 0; i < STORM_CLIENTS; i++) {
    clients[i].s = &s;
    clients[i].index = i;
    ck_assert_int_eq(pthread_create(&clients[i].thread, NULL, storm_client_main, &clients[i]), 0);
  }
  ck_assert_int_eq(pthread_create(&pinner.thread, NULL, storm_pinner_main, &pinner), 0);
  for (int i = 0; i < STORM_CLIENTS; i++)
    ck_assert_int_eq(pthread_join(clients[i].thread, NULL), 0);
  ck_assert_int_eq(pthread_join(pinner.thread, NULL), 0);
  double storm_s = now_s() - t0;

  int answered = 0, changes = 0, served[STORM_MEMBERS] = {0};
  for (int i = 0; i < STORM_CLIENTS; i++) {
    const struct storm_client *sc = &clients[i];
    ck_assert_msg(sc->dropped == 0 && sc->not_200 == 0 && sc->malformed == 0 &&
                      sc->unknown_subnet == 0 && sc->wrong_logits == 0,
                  "client %d: %d dropped, %d not 200, %d malformed, %d from no member, %d with "
                  "wrong logits; the first: %s",
                  i, sc->dropped, sc->not_200, sc->malformed, sc->unknown_subnet, sc->wrong_logits,
                  sc->first_problem);
    ck_assert_int_eq(sc->answered, s.per_client);
    answered += sc->answered;
    changes += sc->changes;
    for (int m = 0; m < s.n; m++)
      served[m] += sc->served[m];
  }
  ck_assert_int_eq(answered, STORM_CLIENTS * s.per_client);
  ck_assert_msg(pinner.failed == 0, "%d pins failed; the first: %s", pinner.failed,
                pinner.first_problem);
  int members_seen = 0;
  for (int m = 0; m < s.n; m++)
    members_seen += served[m] > 0;
  printf("hot-swap: %d requests from %d clients in %.1f s, 0 errors; %d pins (every %.1f ms), "
         "%d of %d subnets served (",
         answered, STORM_CLIENTS, storm_s, pinner.pins, storm_s * 1e3 / pinner.pins, members_seen,
         s.n);
  for (int m = 0; m < s.n; m++)
    printf("%s%d", m > 0 ? "/" : "", served[m]);
  printf(" requests), %d subnet changes seen within a client's stream\n", changes);
  fflush(stdout);
  /* the subnet did change under the clients, many times */
  ck_assert_int_ge(pinner.pins, STORM_MIN_PINS);
  ck_assert_int_eq(members_seen, s.n);
  ck_assert_int_ge(changes, 100);

  /* the daemon counted the same: every infer answered 200, and each pin
   * was a switch (each names another member than the one before it; the
   * first, member 0, replaced the most accurate, chosen at the start) */
  char *mt = get_metrics(&d);
  ck_assert(metric(mt, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") ==
            answered + s.n * STORM_IMAGES);
  char series[256];
  for (int code = 400; code < 600; code++) {
    snprintf(series, sizeof series, "tailor_requests_total{route=\"model_infer\",code=\"%d\"}",
             code);
    ck_assert_msg(metric(mt, series) == -1, "%s is %g", series, metric(mt, series));
  }
  ck_assert(metric(mt, "tailor_switches_total{model=\"fmnist\",reason=\"pin\"}") ==
            s.n + pinner.pins);
  free(mt);
  daemon_stop_ok(&d);
}
END_TEST

/* Sends text on c and reads one answer; its status, or -1. */
static int text_request(struct client *c, const char *text, struct resp *r) {
  if (write_all(c->fd, text, strlen(text)) != 0 || client_read(c, r) != 0)
    return -1;
  return r->status;
}

/* A client that sends each request as soon as it has the answer is
 * served by the worker that holds its connection (a lease, server_infer.c);
 * whatever else comes on that connection goes back to the loop, and
 * every answer comes in order. */
START_TEST(a_client_in_a_tight_loop_gets_every_answer_in_order) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  struct client c = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(c.fd, 0);
  static float ref[N_IMAGES][10];
  static char ref_subnet[N_IMAGES][256];
  char id[32], subnet[256], why[512];
  float logits[10];
  struct resp r;
  int served = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 300; i++) {
      int image = i % N_IMAGES;
      snprintf(id, sizeof id, "r%d-%d", round, i);
      ck_assert_int_eq(binary_infer(&c, "fmnist", image, id, &r), 0);
      ck_assert_int_eq(r.status, 200);
      ck_assert_msg(storm_parse(&r, id, subnet, sizeof subnet, logits, why, sizeof why) == 0, "%s",
                    why);
      resp_free(&r);
      served++;
      if (ref_subnet[image][0] == '\0') {
        snprintf(ref_subnet[image], sizeof ref_subnet[image], "%s", subnet);
        memcpy(ref[image], logits, sizeof logits);
      } else if (strcmp(ref_subnet[image], subnet) == 0) {
        ck_assert_int_eq(memcmp(ref[image], logits, sizeof logits), 0);
      }
    }
    /* other routes on the same connection, at once */
    ck_assert_int_eq(text_request(&c, "GET /v2/health/ready HTTP/1.1\r\n\r\n", &r), 200);
    resp_free(&r);
    ck_assert_int_eq(binary_infer(&c, "fmnist", 0, "after-ready", &r), 0);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    served++;
    ck_assert_int_eq(text_request(&c, "GET /v2/models/nope HTTP/1.1\r\n\r\n", &r), 404);
    resp_free(&r);
    /* two requests in one write: the second answered after the first */
    ck_assert_int_eq(binary_infer(&c, "fmnist", 1, "before-pair", &r), 0);
    resp_free(&r);
    served++;
    const char pair[] = "GET /v2/models/fmnist/ready HTTP/1.1\r\n\r\n"
                        "GET /v2/health/live HTTP/1.1\r\n\r\n";
    ck_assert_int_eq(write_all(c.fd, pair, sizeof pair - 1), 0);
    expect_answer(&c, 200, "\"ready\":true");
    expect_answer(&c, 200, "\"live\":true");
    /* a body behind Expect: 100-continue */
    ck_assert_int_eq(binary_infer(&c, "fmnist", 2, "before-continue", &r), 0);
    resp_free(&r);
    served++;
    const char body[] = "{\"inputs\":[]}";
    char head[256];
    snprintf(head, sizeof head,
             "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n"
             "Expect: 100-continue\r\n\r\n",
             sizeof body - 1);
    ck_assert_int_eq(text_request(&c, head, &r), 100);
    resp_free(&r);
    ck_assert_int_eq(text_request(&c, body, &r), 400); /* no inputs: the client's error */
    resp_free(&r);
  }
  /* what is not HTTP, right after an answer: 400, and the connection ends */
  ck_assert_int_eq(binary_infer(&c, "fmnist", 4, "before-garbage", &r), 0);
  resp_free(&r);
  served++;
  ck_assert_int_eq(text_request(&c, "NOT HTTP AT ALL\r\n\r\n", &r), 400);
  resp_free(&r);
  ck_assert_int_ne(client_fill(&c), 0);
  client_close(&c);

  /* a client that hangs up right after its request */
  for (int k = 0; k < 20; k++) {
    struct client h = {.fd = unix_connect(d.sock)};
    ck_assert_int_ge(h.fd, 0);
    ck_assert_int_eq(binary_infer(&h, "fmnist", 3, "warm", &r), 0);
    resp_free(&r);
    served++;
    char msg[BINARY_MSG_MAX];
    ck_assert_int_eq(write_all(h.fd, msg, binary_message(msg, "fmnist", 3, "gone")), 0);
    client_close(&h);
  }
  int status = 0;
  json_t *v = get_json(d.sock, "/v2/health/live", &status);
  ck_assert_int_eq(status, 200);
  json_decref(v);
  /* every answer written is counted, the hung-up ones at most once each */
  char *m = get_metrics(&d);
  double ok = metric(m, "tailor_requests_total{route=\"model_infer\",code=\"200\"}");
  ck_assert_msg(ok >= served && ok <= served + 20, "%g answers counted, %d served", ok, served);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(adaptation_moves_down_at_once_and_up_after_the_hysteresis) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  int top = warm.n - 1;
  double p0 = warm.ms[0], ptop = warm.ms[top];
  /* A budget the most accurate member meets at full speed and not at half
   * speed, while the fastest does at half speed. */
  double budget = fmax(1.25 * ptop, 2.2 * p0);
  ck_assert_msg(budget < 1.9 * ptop,
                "the frontier's extremes (%g, %g ms) are too close for this test", p0, ptop);
  int lower = 0; /* the member expected at half speed */
  for (int i = 0; i < warm.n; i++)
    if (2 * warm.ms[i] <= budget)
      lower = i;
  ck_assert_int_lt(lower, top);

  struct opts o;
  opts_default(&o);
  o.model_name = "adapt";
  o.budget_ms = budget;
  o.margin = 0;
  o.hysteresis_ms = 1500;
  struct daemon d;
  daemon_start(&d, &o);
  char *a = active_of(&d, "adapt");
  ck_assert_str_eq(a, warm.spec[top]);
  free(a);

  /* half the frequency: down at once */
  int64_t slow_ms = realtime_ms();
  double t0 = now_s();
  set_freq(d.root, FULL_KHZ / 2);
  for (;;) {
    a = active_of(&d, "adapt");
    if (strcmp(a, warm.spec[top]) != 0)
      break;
    free(a);
    ck_assert_msg(now_s() - t0 < wait_s(20), "no switch within 20 s of the frequency halving");
    sleep_ms(10);
  }
  double down_s = now_s() - t0;
  ck_assert_str_eq(a, warm.spec[lower]);
  free(a);
  fprintf(stderr, "adaptation: moved down %.0f ms after the frequency halved (interval %d ms)\n",
          down_s * 1e3, MONITOR_INTERVAL_MS);

  /* back to full speed: up only after the hysteresis */
  sleep_ms(3 * MONITOR_INTERVAL_MS);
  int64_t fast_ms = realtime_ms();
  t0 = now_s();
  set_freq(d.root, FULL_KHZ);
  sleep_ms(4 * MONITOR_INTERVAL_MS);
  a = active_of(&d, "adapt");
  if ((now_s() - t0) * 1e3 < o.hysteresis_ms) /* always, unless the machine stalled */
    ck_assert_str_eq(a, warm.spec[lower]);
  free(a);
  for (;;) {
    a = active_of(&d, "adapt");
    if (strcmp(a, warm.spec[top]) == 0)
      break;
    free(a);
    ck_assert_msg(now_s() - t0 < wait_s(30), "no move back up within 30 s of the recovery");
    sleep_ms(20);
  }
  free(a);
  ck_assert((now_s() - t0) * 1e3 >= o.hysteresis_ms);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_switches_total{model=\"adapt\",reason=\"latency\"}") == 1);
  ck_assert(metric(m, "tailor_switches_total{model=\"adapt\",reason=\"recovered\"}") == 1);
  free(m);
  daemon_stop_ok(&d);

  /* both switches are in the daemon's event log, with reasons and state */
  struct tl_store *st = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_store_open(shared_db, &st, NULL, &err) == 0, "%s", err.msg);
  struct tl_switch_event *ev = NULL;
  size_t n = 0;
  ck_assert_int_eq(tl_store_event_last(st, NULL, 200, &ev, &n, &err), 0);
  const struct tl_switch_event *down = NULL, *up = NULL;
  for (size_t i = 0; i < n; i++) { /* newest first */
    if (strcmp(ev[i].model, "adapt") != 0 || ev[i].time_ms < slow_ms)
      continue;
    if (up == NULL && strncmp(ev[i].reason, "resources recovered for ", 24) == 0)
      up = &ev[i];
    else if (down == NULL && strncmp(ev[i].reason, "latency budget at risk: predicted ", 34) == 0)
      down = &ev[i];
  }
  ck_assert_msg(down != NULL && up != NULL, "the switch events are not in the store");
  ck_assert_str_eq(down->from_spec, warm.spec[top]);
  ck_assert_str_eq(down->to_spec, warm.spec[lower]);
  ck_assert_ptr_nonnull(strstr(down->state, "\"freq_ratio\":0.5"));
  ck_assert_str_eq(up->from_spec, warm.spec[lower]);
  ck_assert_str_eq(up->to_spec, warm.spec[top]);
  ck_assert_ptr_nonnull(strstr(up->state, "\"freq_ratio\":1"));
  ck_assert(up->id > down->id);
  ck_assert(down->time_ms >= slow_ms);
  /* the daemon cannot have seen the recovery before the file changed, and
   * then waited the hysteresis (times are whole ms: 1 ms of slack) */
  ck_assert_msg(up->time_ms + 1 >= fast_ms + o.hysteresis_ms,
                "moved up %lld ms after the recovery, before the %d ms hysteresis",
                (long long)(up->time_ms - fast_ms), o.hysteresis_ms);
  free(ev);
  tl_store_close(st);
}
END_TEST

START_TEST(a_broken_config_on_sighup_keeps_the_old_one_serving) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  /* a syntax error on line 3 and an unknown key */
  char text[4096];
  config_text(&d, &o, shared_db, text, sizeof text);
  char broken[4200];
  snprintf(broken, sizeof broken, "workers: 2\nlatncy: 3\nthreads: [1,\n%s", text);
  ck_assert_int_eq(write_file(d.cfg, broken), 0);
  kill(d.pid, SIGHUP);
  double t0 = now_s();
  while (!log_has(&d, "keeping the running configuration")) {
    ck_assert_msg(now_s() - t0 < wait_s(30), "the reload was not reported");
    sleep_ms(50);
  }
  char want[PATH_MAX + 64];
  snprintf(want, sizeof want, "%s:2:1: unknown key \"latncy\"", d.cfg);
  ck_assert_msg(log_has(&d, want), "the log does not say \"%s\"", want);
  ck_assert_msg(log_has_placed(&d, d.cfg, "syntax error"),
                "the log does not place the syntax error at a line and column");
  int status = 0;
  json_t *b = infer_body(2, 0, NULL);
  json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  ck_assert_int_eq(status, 200);
  json_decref(r);
  json_t *st = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert_int_eq(json_integer_value(json_object_get(st, "generation")), 1);
  json_decref(st);

  /* a good config replaces the generation */
  o.budget_ms = 5000;
  config_text(&d, &o, shared_db, text, sizeof text);
  ck_assert_int_eq(write_file(d.cfg, text), 0);
  kill(d.pid, SIGHUP);
  t0 = now_s();
  for (;;) {
    st = get_json(d.sock, "/v2/models/fmnist/state", &status);
    ck_assert_int_eq(status, 200);
    json_int_t gen = json_integer_value(json_object_get(st, "generation"));
    double budget =
        json_number_value(json_object_get(json_object_get(st, "budget"), "latency_p95_ms"));
    json_decref(st);
    if (gen >= 2) {
      ck_assert(budget == 5000);
      break;
    }
    ck_assert_msg(now_s() - t0 < wait_s(READY_DEADLINE_S), "no new generation after the reload");
    sleep_ms(50);
  }
  r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  ck_assert_int_eq(status, 200);
  json_decref(r);
  json_decref(b);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(limits_on_connections_and_idle_time) {
  struct opts o;
  opts_default(&o);
  o.max_connections = 2;
  o.idle_timeout_ms = 2000;
  struct daemon d;
  daemon_start(&d, &o);
  int c1 = unix_connect(d.sock), c2 = unix_connect(d.sock);
  ck_assert_int_ge(c1, 0);
  ck_assert_int_ge(c2, 0);
  /* make sure both were accepted before the third comes */
  struct client k1 = {.fd = c1};
  ck_assert_int_eq(write_all(c1, "GET /v2/health/live HTTP/1.1\r\n\r\n", 32), 0);
  struct resp r;
  ck_assert_int_eq(client_read(&k1, &r), 0);
  ck_assert_int_eq(r.status, 200);
  resp_free(&r);
  struct client k2 = {.fd = c2};
  ck_assert_int_eq(write_all(c2, "GET /v2/health/live HTTP/1.1\r\n\r\n", 32), 0);
  ck_assert_int_eq(client_read(&k2, &r), 0);
  ck_assert_int_eq(r.status, 200);
  resp_free(&r);
  ck_assert_int_eq(request(d.sock, "GET", "/v2/health/live", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 503);
  ck_assert_ptr_nonnull(strstr(r.body, "too many connections"));
  resp_free(&r);
  /* idle keep-alive connections are closed after idle_timeout_ms */
  sleep_ms(4000);
  char byte;
  ck_assert_int_eq(read(c1, &byte, 1), 0);
  ck_assert_int_eq(read(c2, &byte, 1), 0);
  client_close(&k1);
  client_close(&k2);
  ck_assert_int_eq(request(d.sock, "GET", "/v2/health/live", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 200);
  resp_free(&r);
  daemon_stop_ok(&d);
}
END_TEST

/* Clients that send their request slowly (slowloris) cannot hold the
 * connections others need: at the limit, the one stalled longest in its
 * request is answered 408 and makes room, and a request that does not
 * arrive whole within request_timeout_ms is answered 408 whatever its
 * bytes trickle. */
START_TEST(slow_senders_cannot_hold_the_connections) {
  struct opts o;
  opts_default(&o);
  o.max_connections = 8;
  o.request_timeout_ms = 3000;
  struct daemon d;
  daemon_start(&d, &o);
  static const char part[] = "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Type: app";
  struct client slow[8];
  for (int i = 0; i < 8; i++) {
    slow[i] = (struct client){.fd = unix_connect(d.sock)};
    ck_assert_int_ge(slow[i].fd, 0);
    ck_assert_int_eq(write_all(slow[i].fd, part, sizeof part - 1), 0);
  }
  sleep_ms(300); /* stalled for a while: they may be taken */
  /* Every connection is taken by a slow sender, yet each client that
   * opens one per request is served. */
  for (int k = 0; k < 16; k++) {
    struct resp r;
    ck_assert_int_eq(request(d.sock, "GET", "/v2/health/live", NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "request %d: %d %s", k, r.status, r.body);
    resp_free(&r);
  }
  for (int i = 0; i < 8; i++) {
    struct resp r;
    ck_assert_int_eq(client_read(&slow[i], &r), 0);
    /* taken to make room, or (once the room was there) timed out */
    ck_assert_int_eq(r.status, 408);
    ck_assert_msg(strstr(r.body, "did not arrive whole") != NULL, "%s", r.body);
    resp_free(&r);
    client_close(&slow[i]);
  }
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_connections_evicted_total") >= 1);
  free(m);

  /* Alone, a request trickling a byte at a time still ends at the
   * timeout, counted from its first byte. */
  struct client one = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(one.fd, 0);
  double t0 = now_s();
  for (int i = 0; i < 6; i++) {
    ck_assert_int_eq(write_all(one.fd, part + i, 1), 0);
    sleep_ms(400);
  }
  struct resp r;
  ck_assert_int_eq(client_read(&one, &r), 0);
  double waited = now_s() - t0;
  ck_assert_int_eq(r.status, 408);
  ck_assert_msg(strstr(r.body, "within 3000 ms") != NULL, "%s", r.body);
  ck_assert_msg(waited > 2.5 && waited < 20, "408 after %.2f s", waited);
  resp_free(&r);
  client_close(&one);
  daemon_stop_ok(&d);
}
END_TEST

/* Sends (without reading the answer) a binary UINT8 batch of n
 * calibration images on a new connection; returns the connection. */
/* Sends a batch of n images on a new connection (binary input; binary
 * outputs unless json_out) and returns the connection. */
static int send_batch_as(const struct daemon *d, int n, int json_out) {
  char head[512];
  int jl = snprintf(head, sizeof head,
                    "{\"parameters\":{\"binary_data_output\":%s},\"inputs\":[{\"name\":"
                    "\"input\",\"shape\":[%d,1,28,28],\"datatype\":\"UINT8\",\"parameters\":"
                    "{\"binary_data_size\":%d}}]}",
                    json_out ? "false" : "true", n, n * 784);
  size_t blen = (size_t)jl + (size_t)n * 784;
  char *body = malloc(blen);
  ck_assert_ptr_nonnull(body);
  memcpy(body, head, (size_t)jl);
  for (int k = 0; k < n; k++)
    memcpy(body + jl + (size_t)k * 784, images[k % N_IMAGES], 784);
  int fd = unix_connect(d->sock);
  ck_assert_int_ge(fd, 0);
  char req[256];
  int hn = snprintf(req, sizeof req,
                    "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n"
                    "Inference-Header-Content-Length: %d\r\n\r\n",
                    blen, jl);
  ck_assert_int_eq(write_all(fd, req, (size_t)hn), 0);
  ck_assert_int_eq(write_all(fd, body, blen), 0);
  free(body);
  return fd;
}

static int send_batch(const struct daemon *d, int n) { return send_batch_as(d, n, 0); }

/* Polls /metrics until series reaches at least want. */
static void wait_metric(const struct daemon *d, const char *series, double want) {
  double t0 = now_s();
  for (;;) {
    char *m = get_metrics(d);
    double v = metric(m, series);
    free(m);
    if (v >= want)
      return;
    ck_assert_msg(now_s() - t0 < wait_s(60), "%s never reached %g", series, want);
    sleep_ms(1);
  }
}

START_TEST(a_full_queue_answers_503) {
  struct opts o;
  opts_default(&o);
  o.workers = 1;
  o.queue_depth = 1;
  o.max_body_bytes = 64 << 20;
  struct daemon d;
  daemon_start(&d, &o);
  /* a batch that keeps the one worker busy for about 3 s on this build */
  struct client a = {.fd = send_batch(&d, 200)};
  double t0 = now_s();
  struct resp r;
  ck_assert_int_eq(client_read(&a, &r), 0);
  ck_assert_int_eq(r.status, 200);
  resp_free(&r);
  client_close(&a);
  double per_image = (now_s() - t0) / 200;
  int n = (int)fmin(60000, fmax(2000, 3.0 / per_image));
  a.fd = send_batch(&d, n);
  wait_metric(&d, "tailor_running_requests", 1);
  /* one more waits in the queue, which is then full */
  json_t *b = infer_body(0, 0, NULL);
  char *text = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  struct client c2 = {.fd = unix_connect(d.sock)};
  ck_assert_int_ge(c2.fd, 0);
  char head[128];
  int hn = snprintf(head, sizeof head,
                    "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                    strlen(text));
  ck_assert_int_eq(write_all(c2.fd, head, (size_t)hn), 0);
  ck_assert_int_eq(write_all(c2.fd, text, strlen(text)), 0);
  wait_metric(&d, "tailor_queue_requests", 1);
  ck_assert_int_eq(request(d.sock, "POST", "/v2/models/fmnist/infer", NULL, text, strlen(text), &r),
                   0);
  ck_assert_int_eq(r.status, 503);
  ck_assert_ptr_nonnull(strstr(r.body, "queue is full"));
  resp_free(&r);
  /* the two admitted are answered, in order of their work */
  ck_assert_int_eq(client_read(&a, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_uint_eq(r.len - r.json_len, (size_t)n * 10 * sizeof(float));
  resp_free(&r);
  ck_assert_int_eq(client_read(&c2, &r), 0);
  ck_assert_int_eq(r.status, 200);
  resp_free(&r);
  client_close(&a);
  client_close(&c2);
  free(text);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(nothing_fits_serves_the_fastest_degraded) {
  struct opts o;
  opts_default(&o);
  o.budget_ms = 1e-6;
  struct daemon d;
  daemon_start(&d, &o);
  int status = 0;
  json_t *st = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert_int_eq(status, 200);
  ck_assert(json_is_true(json_object_get(st, "degraded")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  ck_assert_ptr_nonnull(
      strstr(json_string_value(json_object_get(st, "reason")), "no subnet meets the budget"));
  json_decref(st);
  json_t *b = infer_body(3, 0, NULL);
  json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_int_eq(status, 200);
  float logits[10];
  ck_assert_str_eq(logits_of(r, logits), warm.spec[0]);
  json_decref(r);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_degraded{model=\"fmnist\"}") == 1);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

/* The worker that ran a request writes its answer itself; what the
 * socket cannot take at once is left to the loop, and requests that
 * arrive while one runs are kept and answered after it, in order. */
START_TEST(a_late_reader_gets_a_large_answer_whole_and_the_pipelined_ones_after) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  /* JSON logits of 3000 images: several times a socket's buffer */
  enum { N = 3000 };
  struct client c = {.fd = send_batch_as(&d, N, 1)};
  wait_metric(&d, "tailor_running_requests", 1);
  /* while it runs: a binary request in two pieces, then a GET */
  char msg[BINARY_MSG_MAX];
  size_t ml = binary_message(msg, "fmnist", 1, "second");
  ck_assert_int_eq(write_all(c.fd, msg, ml / 2), 0);
  sleep_ms(5);
  ck_assert_int_eq(write_all(c.fd, msg + ml / 2, ml - ml / 2), 0);
  const char ready[] = "GET /v2/models/fmnist/ready HTTP/1.1\r\n\r\n";
  ck_assert_int_eq(write_all(c.fd, ready, sizeof ready - 1), 0);
  /* read nothing until the batch has run and its answer filled the socket */
  wait_metric(&d, "tailor_compute_duration_seconds_count{model=\"fmnist\"}", 1);
  sleep_ms(50);

  struct resp r;
  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 200);
  char *wmem = read_text("/proc/sys/net/core/wmem_default");
  if (wmem != NULL) /* else the size is still far above any default */
    ck_assert_uint_gt(r.len, (size_t)strtoul(wmem, NULL, 10));
  free(wmem);
  json_t *v = json_loadb(r.body, r.len, 0, NULL);
  ck_assert_ptr_nonnull(v);
  json_t *out = json_array_get(json_object_get(v, "outputs"), 0);
  ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(out, "shape"), 0)), N);
  json_t *data = json_object_get(out, "data");
  ck_assert_int_eq(json_array_size(data), (size_t)N * 10);
  /* image k of the batch is image k % N_IMAGES: the last rows repeat the first */
  size_t last = (size_t)(N - 1) * 10, same = (size_t)((N - 1) % N_IMAGES) * 10;
  for (size_t i = 0; i < 10; i++)
    ck_assert(json_real_value(json_array_get(data, last + i)) ==
              json_real_value(json_array_get(data, same + i)));
  json_decref(v);
  resp_free(&r);

  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_uint_eq(r.len - r.json_len, 10 * sizeof(float));
  v = json_loadb(r.body, r.json_len, 0, NULL);
  ck_assert_str_eq(json_string_value(json_object_get(v, "id")), "second");
  json_decref(v);
  resp_free(&r);
  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.body, "\"ready\":true"));
  resp_free(&r);
  client_close(&c);

  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") == 2);
  free(m);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(sigterm_finishes_the_request_in_flight_and_exits_0) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  /* a batch large enough to be running when SIGTERM comes */
  enum { N = 2000 };
  struct client c = {.fd = send_batch(&d, N)};
  wait_metric(&d, "tailor_running_requests", 1);
  kill(d.pid, SIGTERM);
  struct resp r;
  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.head, "Connection: close"));
  ck_assert_uint_eq(r.len - r.json_len, (size_t)N * 10 * sizeof(float));
  json_t *meta = json_loadb(r.body, r.json_len, 0, NULL);
  json_t *shape = json_object_get(json_array_get(json_object_get(meta, "outputs"), 0), "shape");
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), N);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), 10);
  json_decref(meta);
  /* image k of the batch is image k % N_IMAGES: equal logits */
  const float *logits = (const float *)(r.body + r.json_len);
  ck_assert_int_eq(memcmp(logits, logits + N_IMAGES * 10, 10 * sizeof(float)), 0);
  resp_free(&r);
  client_close(&c);
  int rc = wait_exit(d.pid, 60);
  d.pid = 0;
  ck_assert_int_eq(rc, 0);
  struct stat sb;
  ck_assert_int_ne(stat(d.sock, &sb), 0); /* the socket is gone */
}
END_TEST

START_TEST(sigterm_during_the_first_search_stops_it_and_exits_0) {
  struct opts o;
  opts_default(&o);
  o.search_k = 16;
  o.search_candidates = 4096; /* a search of many seconds */
  char db[PATH_MAX + 32];
  snprintf(db, sizeof db, "%s/fresh-search.db", base_dir);
  unlink(db);
  struct daemon d;
  daemon_prepare(&d, &o, db);
  daemon_launch(&d);
  daemon_wait_ready(&d, READY_DEADLINE_S);
  double t0 = now_s();
  while (!log_has(&d, "searching the frontier in the background") && now_s() - t0 < wait_s(60))
    sleep_ms(20);
  ck_assert_msg(log_has(&d, "searching the frontier in the background"), "no search started");
  sleep_ms(300); /* into its evaluations */
  ck_assert_msg(!log_has(&d, "subnets searched in"), "the search ended before SIGTERM");
  kill(d.pid, SIGTERM);
  int rc = wait_exit(d.pid, 30);
  char *log = read_text(d.log);
  d.pid = 0;
  ck_assert_msg(rc == 0, "exit %d after SIGTERM during the search; its log:\n%s", rc, log);
  /* stopped and cleaned up, not abandoned */
  ck_assert_msg(strstr(log, "frontier search stopped") != NULL, "%s", log);
  ck_assert_msg(strstr(log, "exiting while a frontier search runs") == NULL, "%s", log);
  free(log);
}
END_TEST

START_TEST(check_flag_reports_every_error_and_exits_1) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/n.XXXXXX", base_dir);
  ck_assert_ptr_nonnull(mkdtemp(dir));
  char cfg[PATH_MAX + 16], log[PATH_MAX + 16];
  snprintf(cfg, sizeof cfg, "%s/bad.yaml", dir);
  snprintf(log, sizeof log, "%s/out.log", dir);
  ck_assert_int_eq(write_file(cfg, "workers: 0\n"
                                   "log_levl: debug\n"
                                   "models:\n"
                                   "  - name: m\n"
                                   "    path: /nonexistent/model.onnx\n"
                                   "    budget: {latency_p95_ms: -1}\n"),
                   0);
  const char *argv[] = {tailord_bin, "-n", "--config", cfg, NULL};
  pid_t pid = spawn(log, argv);
  ck_assert_int_gt(pid, 0);
  ck_assert_int_eq(wait_exit(pid, 60), 1);
  char *out = read_text(log);
  const char *want[] = {"bad.yaml:1:10: workers: 0 is out of range",
                        "bad.yaml:2:1: unknown key \"log_levl\"",
                        "bad.yaml:5:11:", "bad.yaml:6:30:"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    ck_assert_msg(strstr(out, want[i]) != NULL, "no \"%s\" in:\n%s", want[i], out);
  /* one line per error, each "tailord: <file>:..." */
  int lines = 0;
  for (char *p = out; (p = strstr(p, "tailord: ")) != NULL; p++, lines++)
    ck_assert_ptr_nonnull(strstr(p, "bad.yaml:"));
  ck_assert_int_eq(lines, 4);
  free(out);
  /* and a good one is OK */
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_prepare(&d, &o, NULL);
  const char *argv2[] = {tailord_bin, "-n", "--config", d.cfg, NULL};
  pid = spawn(d.log, argv2);
  ck_assert_int_eq(wait_exit(pid, 60), 0);
  ck_assert(log_has(&d, "configuration OK"));
}
END_TEST

START_TEST(a_model_that_cannot_be_served_fails_the_start) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_prepare(&d, &o, NULL);
  char text[4096];
  snprintf(text, sizeof text,
           "socket:\n  path: %s\ndatabase: %s/cache.db\nmonitor:\n  root: %s\n"
           "models:\n  - name: bad\n    path: %s/tests/data/models/bad/unsupported_op.onnx\n"
           "    budget: {latency_p95_ms: 5}\n",
           d.sock, d.dir, d.root, source_root);
  ck_assert_int_eq(write_file(d.cfg, text), 0);
  daemon_launch(&d);
  int rc = wait_exit(d.pid, 120);
  d.pid = 0;
  char *log = read_text(d.log);
  ck_assert_msg(rc == 1, "exit status %d; log:\n%s", rc, log);
  ck_assert_msg(strstr(log, "<3>tailord: model \"bad\": ") != NULL &&
                    strstr(log, "unsupported_op.onnx") != NULL,
                "no error naming the model and its file:\n%s", log);
  free(log);
}
END_TEST

/* ----------------------------------------------------------- tailorctl */

/* What one run of tailorctl did. */
struct ctl {
  char cmd[1024]; /* the arguments, for messages */
  int status;     /* exit status; -1 killed */
  char *out;      /* stdout, malloc'd */
  char *err;      /* stderr, malloc'd */
};

static void ctl_free(struct ctl *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

/* Runs tailorctl with the arguments after env_socket (up to a NULL) and
 * $TAILOR_SOCKET set to env_socket, or unset when that is NULL; captures
 * what it prints.  A run that takes longer than 300 s fails the test. */
static void ctl(struct ctl *r, const char *env_socket, ...) __attribute__((sentinel));
static void ctl(struct ctl *r, const char *env_socket, ...) {
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

/* Exit status 0 and stdout as JSON (the caller frees it). */
static json_t *ctl_json(const struct ctl *r) {
  ck_assert_msg(r->status == 0, "tailorctl %s: exit status %d; stderr: %s", r->cmd, r->status,
                r->err);
  json_error_t je;
  json_t *v = json_loads(r->out, 0, &je);
  ck_assert_msg(v != NULL, "tailorctl %s: the output is not JSON (%s): %s", r->cmd, je.text,
                r->out);
  return v;
}

/* Exit status 1 and stderr exactly one line "tailorctl: ..." that holds
 * want. */
static void ctl_fails_with(const struct ctl *r, const char *want) {
  ck_assert_msg(r->status == 1, "tailorctl %s: exit status %d, stderr: %s", r->cmd, r->status,
                r->err);
  ck_assert_msg(strncmp(r->err, "tailorctl: ", 11) == 0, "tailorctl %s: stderr: %s", r->cmd,
                r->err);
  const char *nl = strchr(r->err, '\n');
  ck_assert_msg(nl != NULL && nl[1] == '\0', "tailorctl %s: not one line: %s", r->cmd, r->err);
  ck_assert_msg(strstr(r->err, want) != NULL, "tailorctl %s: \"%s\" not in: %s", r->cmd, want,
                r->err);
}

/* Writes n calibration images, from image first on (mod N_IMAGES), to
 * path as an n x 1 x 28 x 28 .npy: uint8 pixels, or float32 pixels times
 * SCALE. */
static void write_images(const char *path, int first, int n, int fp32) {
  size_t size = fp32 ? sizeof(float) : 1;
  unsigned char *data = malloc((size_t)n * 784 * size);
  ck_assert_ptr_nonnull(data);
  for (int k = 0; k < n; k++) {
    const uint8_t *px = images[(first + k) % N_IMAGES];
    for (int i = 0; i < 784; i++) {
      if (fp32) {
        float v = (float)px[i] * (float)SCALE;
        memcpy(data + ((size_t)k * 784 + (size_t)i) * size, &v, sizeof v);
      } else {
        data[(size_t)k * 784 + (size_t)i] = px[i];
      }
    }
  }
  struct tl_tensor t = {fp32 ? TL_DTYPE_FLOAT32 : TL_DTYPE_UINT8, {4, {n, 1, 28, 28}}, data};
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);
  free(data);
}

/* GET .../state of model (the caller frees it). */
static json_t *state_of(const struct daemon *d, const char *model) {
  char path[256];
  snprintf(path, sizeof path, "/v2/models/%s/state", model);
  int status = 0;
  json_t *st = get_json(d->sock, path, &status);
  ck_assert_msg(status == 200 && st != NULL, "GET %s: %d", path, status);
  return st;
}

/* The class the JSON route gives image k, and the subnet that served. */
static int route_class(const struct daemon *d, int k, char *subnet, size_t size) {
  int status = 0;
  json_t *b = infer_body(k, 0, NULL);
  json_t *r = post_json(d->sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_int_eq(status, 200);
  float logits[10];
  snprintf(subnet, size, "%s", logits_of(r, logits));
  json_decref(r);
  return argmax(logits, 10);
}

START_TEST(tailorctl_status_subnets_and_pin_agree_with_the_routes) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  int top = warm.n - 1;

  /* status: ready, and the subnet the state route names */
  struct ctl r;
  ctl(&r, NULL, "status", "--socket", d.sock, "--json", NULL);
  json_t *v = ctl_json(&r);
  ctl_free(&r);
  ck_assert(json_is_true(json_object_get(v, "ready")));
  ck_assert_str_eq(json_string_value(json_object_get(v, "socket")), d.sock);
  json_t *models = json_object_get(v, "models");
  ck_assert_int_eq(json_array_size(models), 1);
  json_t *m0 = json_array_get(models, 0);
  ck_assert_str_eq(json_string_value(json_object_get(m0, "model")), "fmnist");
  char *a = active_of(&d, "fmnist");
  ck_assert_str_eq(json_string_value(json_object_get(m0, "active")), a);
  ck_assert_str_eq(a, warm.spec[top]);
  free(a);
  ck_assert(json_is_false(json_object_get(m0, "pinned")));
  json_decref(v);

  /* $TAILOR_SOCKET stands in for --socket; --model names the model */
  ctl(&r, d.sock, "status", "--model", "fmnist", NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  ck_assert_msg(strstr(r.out, ": ready\n") != NULL, "%s", r.out);
  char line[512];
  snprintf(line, sizeof line, "fmnist: %s (adaptive)\n", warm.spec[top]);
  ck_assert_msg(strstr(r.out, line) != NULL, "no \"%s\" in:\n%s", line, r.out);
  ctl_free(&r);

  /* subnets: the route's members, in its order, the active one marked */
  ctl(&r, d.sock, "subnets", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  int status = 0;
  json_t *route = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
  ck_assert_int_eq(status, 200);
  json_t *got = json_object_get(v, "subnets"), *want = json_object_get(route, "subnets");
  ck_assert_int_eq(json_array_size(got), (size_t)warm.n);
  ck_assert_int_eq(json_array_size(got), json_array_size(want));
  for (size_t i = 0; i < json_array_size(want); i++) {
    json_t *g = json_array_get(got, i), *w = json_array_get(want, i);
    ck_assert_str_eq(json_string_value(json_object_get(g, "subnet")),
                     json_string_value(json_object_get(w, "subnet")));
    ck_assert(json_equal(json_object_get(g, "active"), json_object_get(w, "active")));
    ck_assert(json_equal(json_object_get(g, "fits"), json_object_get(w, "fits")));
  }
  ck_assert(json_is_true(json_object_get(json_array_get(got, (size_t)top), "active")));
  json_decref(route);
  json_decref(v);

  /* pin: status shows it pinned, and the daemon serves it */
  ctl(&r, d.sock, "pin", warm.spec[0], NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  snprintf(line, sizeof line, "fmnist: %s (pinned)\n", warm.spec[0]);
  ck_assert_str_eq(r.out, line);
  ctl_free(&r);
  ctl(&r, d.sock, "status", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  m0 = json_array_get(json_object_get(v, "models"), 0);
  ck_assert(json_is_true(json_object_get(m0, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(m0, "active")), warm.spec[0]);
  json_decref(v);
  json_t *st = state_of(&d, "fmnist");
  ck_assert(json_is_true(json_object_get(st, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  json_decref(st);
  ctl(&r, d.sock, "subnets", NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  ck_assert_msg(strstr(r.out, ", pinned\n") != NULL, "%s", r.out);
  snprintf(line, sizeof line, "* %s ", warm.spec[0]);
  ck_assert_msg(strstr(r.out, line) != NULL, "the pinned member is not marked:\n%s", r.out);
  ctl_free(&r);

  /* a bad spec: exit 1, tailord's own words on stderr, nothing changed */
  const char *bad[] = {"r=14 d=0,0,0 w=.5,.5,.5x", "r=14 d=0,0,0 w=.5,.5,.5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *pin = json_pack("{s:s}", "subnet", bad[i]);
    json_t *e = post_json(d.sock, "/v2/models/fmnist/pin", pin, &status);
    json_decref(pin);
    ck_assert_int_eq(status, 400);
    const char *msg = json_string_value(json_object_get(e, "error"));
    ck_assert_ptr_nonnull(msg);
    char expect[1024];
    snprintf(expect, sizeof expect, "tailorctl: pin: tailord answered 400: %s\n", msg);
    ctl(&r, d.sock, "pin", bad[i], NULL);
    ck_assert_msg(r.status == 1, "pin \"%s\": exit status %d", bad[i], r.status);
    ck_assert_str_eq(r.err, expect);
    ck_assert_str_eq(r.out, "");
    ctl_free(&r);
    json_decref(e);
  }
  a = active_of(&d, "fmnist");
  ck_assert_str_eq(a, warm.spec[0]);
  free(a);

  /* auto: the controller chooses again */
  ctl(&r, d.sock, "pin", "auto", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  ck_assert(json_is_false(json_object_get(v, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(v, "active")), warm.spec[top]);
  json_decref(v);
  ctl(&r, d.sock, "status", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  m0 = json_array_get(json_object_get(v, "models"), 0);
  ck_assert(json_is_false(json_object_get(m0, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(m0, "active")), warm.spec[top]);
  json_decref(v);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(tailorctl_infer_classifies_like_the_json_route) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_start(&d, &o);
  char path[PATH_MAX + 32];
  /* one image, uint8: the top-5 begins with the route's class */
  for (int k = 0; k < 3; k++) {
    char subnet[256];
    int want = route_class(&d, k, subnet, sizeof subnet);
    snprintf(path, sizeof path, "%s/image%d.npy", d.dir, k);
    write_images(path, k, 1, 0);
    struct ctl r;
    ctl(&r, d.sock, "infer", path, NULL);
    ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
    char served[256] = "";
    int cls = -1;
    ck_assert_msg(sscanf(r.out, "fmnist: served by %255[^\n]", served) == 1, "%s", r.out);
    char *in = strstr(served, " in ");
    ck_assert_ptr_nonnull(in);
    *in = '\0';
    const char *first = strstr(r.out, "\n  1: class ");
    ck_assert_msg(first != NULL && sscanf(first, "\n  1: class %d", &cls) == 1, "%s", r.out);
    ck_assert_str_eq(served, subnet);
    ck_assert_msg(cls == want, "image %d: tailorctl says class %d, the route %d", k, cls, want);
    ck_assert_ptr_nonnull(strstr(r.out, "\n  5: class "));
    ctl_free(&r);
  }
  /* float32 pixels, --json: the logits and the subnet */
  {
    char subnet[256];
    int want = route_class(&d, 5, subnet, sizeof subnet);
    snprintf(path, sizeof path, "%s/image5.npy", d.dir);
    write_images(path, 5, 1, 1);
    struct ctl r;
    ctl(&r, NULL, "infer", path, "--socket", d.sock, "--json", NULL);
    json_t *v = ctl_json(&r);
    ctl_free(&r);
    ck_assert_str_eq(json_string_value(json_object_get(v, "subnet")), subnet);
    json_t *data = json_object_get(v, "data");
    ck_assert_int_eq(json_array_size(data), 10);
    float logits[10];
    for (int i = 0; i < 10; i++)
      logits[i] = (float)json_number_value(json_array_get(data, (size_t)i));
    ck_assert_int_eq(argmax(logits, 10), want);
    ck_assert(json_number_value(json_object_get(v, "latency_us")) > 0);
    json_decref(v);
  }

  /* a load: 200 requests from 4 clients, every one answered and counted */
  char *m = get_metrics(&d);
  double before = metric(m, "tailor_requests_total{route=\"model_infer\",code=\"200\"}");
  free(m);
  snprintf(path, sizeof path, "%s/images.npy", d.dir);
  write_images(path, 0, N_IMAGES, 0);
  char trace[PATH_MAX + 32];
  snprintf(trace, sizeof trace, "%s/trace.jsonl", d.dir);
  struct ctl r;
  ctl(&r, d.sock, "infer", path, "--runs", "200", "--clients", "4", "--json", "--trace", trace,
      NULL);
  json_t *v = ctl_json(&r);
  ctl_free(&r);
  ck_assert_str_eq(json_string_value(json_object_get(v, "model")), "fmnist");
  ck_assert_int_eq(json_integer_value(json_object_get(v, "requests")), 200);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "ok")), 200);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "failed")), 0);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "unreachable")), 0);
  double p50 = json_number_value(json_object_get(v, "p50_us"));
  ck_assert(p50 > 0 && p50 <= json_number_value(json_object_get(v, "p99_us")));
  json_t *by_subnet = json_object_get(v, "subnets");
  ck_assert(json_is_object(by_subnet));
  json_int_t total = 0;
  const char *key;
  json_t *value;
  json_object_foreach(by_subnet, key, value) {
    ck_assert_msg(is_frontier_member(key), "\"%s\" is not on the frontier", key);
    total += json_integer_value(value);
  }
  ck_assert_int_eq(total, 200);
  m = get_metrics(&d);
  ck_assert(metric(m, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") == before + 200);
  free(m);

  /* the trace: one line per request, agreeing with the summary */
  char *text = read_text(trace);
  int lines = 0, seen[200] = {0};
  json_t *tally = json_object();
  for (char *p = text, *nl; *p != '\0'; p = nl + 1, lines++) {
    nl = strchr(p, '\n');
    ck_assert_msg(nl != NULL, "the trace's last line has no newline");
    json_error_t je;
    json_t *e = json_loadb(p, (size_t)(nl - p), 0, &je);
    ck_assert_msg(e != NULL, "trace line %d is not JSON: %s", lines + 1, je.text);
    json_int_t i = json_integer_value(json_object_get(e, "i"));
    ck_assert(json_is_integer(json_object_get(e, "i")) && i >= 0 && i < 200);
    seen[i]++;
    ck_assert(json_is_number(json_object_get(e, "due_ms")));
    ck_assert(json_number_value(json_object_get(e, "sent_ms")) >= 0);
    ck_assert(json_number_value(json_object_get(e, "latency_us")) > 0);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "status")), 200);
    const char *sn = json_string_value(json_object_get(e, "subnet"));
    ck_assert_msg(sn != NULL && is_frontier_member(sn), "trace line %d: subnet %s", lines + 1,
                  sn != NULL ? sn : "null");
    json_object_set_new(tally, sn,
                        json_integer(json_integer_value(json_object_get(tally, sn)) + 1));
    json_decref(e);
  }
  ck_assert_int_eq(lines, 200);
  for (int i = 0; i < 200; i++)
    ck_assert_msg(seen[i] == 1, "request %d is in the trace %d times", i, seen[i]);
  ck_assert(json_equal(tally, by_subnet));
  json_decref(tally);
  free(text);
  json_decref(v);

  /* at a rate: request i is due at i / rate, and not sent before */
  ctl(&r, d.sock, "infer", path, "--runs", "20", "--rate", "100", "--trace", trace, NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  ck_assert_msg(strstr(r.out, "fmnist: 20 requests from 1 clients in ") != NULL &&
                    strstr(r.out, ": 20 ok, 0 failed, 0 unreachable\n") != NULL,
                "%s", r.out);
  ctl_free(&r);
  text = read_text(trace);
  lines = 0;
  for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1, lines++) {
    json_t *e = json_loadb(p, (size_t)(nl - p), 0, NULL);
    ck_assert_ptr_nonnull(e);
    json_int_t i = json_integer_value(json_object_get(e, "i"));
    double due = json_number_value(json_object_get(e, "due_ms"));
    ck_assert_msg(fabs(due - 10.0 * (double)i) < 1e-6, "request %lld due at %g ms", (long long)i,
                  due);
    ck_assert(json_number_value(json_object_get(e, "sent_ms")) >= due - 1e-3);
    json_decref(e);
  }
  ck_assert_int_eq(lines, 20);
  free(text);

  /* JSON tensors, a connection per request: the same classes, and a
   * load of them all answered */
  for (int k = 0; k < 2; k++) {
    char subnet[256];
    int want = route_class(&d, k, subnet, sizeof subnet);
    snprintf(path, sizeof path, "%s/image%d.npy", d.dir, k);
    ctl(&r, d.sock, "infer", path, "--json-requests", NULL);
    ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
    int cls = -1;
    const char *first = strstr(r.out, "\n  1: class ");
    ck_assert_msg(first != NULL && sscanf(first, "\n  1: class %d", &cls) == 1, "%s", r.out);
    ck_assert_msg(cls == want, "image %d: --json-requests says class %d, the route %d", k, cls,
                  want);
    ctl_free(&r);
  }
  snprintf(path, sizeof path, "%s/images.npy", d.dir);
  ctl(&r, d.sock, "infer", path, "--runs", "30", "--clients", "3", "--json-requests",
      "--connection-per-request", "--json", "--trace", trace, NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "ok")), 30);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "refused")), 0);
  ck_assert(json_integer_value(json_object_get(v, "start_monotonic_us")) > 0);
  json_decref(v);
  text = read_text(trace);
  lines = 0;
  for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1, lines++) {
    json_t *e = json_loadb(p, (size_t)(nl - p), 0, NULL);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "status")), 200);
    ck_assert(json_is_false(json_object_get(e, "refused")));
    ck_assert(json_is_null(json_object_get(e, "error")));
    const char *sn = json_string_value(json_object_get(e, "subnet"));
    ck_assert_msg(sn != NULL && is_frontier_member(sn), "subnet %s", sn != NULL ? sn : "null");
    json_decref(e);
  }
  ck_assert_int_eq(lines, 30);
  free(text);

  /* a load that starts later, on the monotonic clock: no request before */
  {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char at[64];
    double at_ms = (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6 + 300.0;
    snprintf(at, sizeof at, "%.3f", at_ms);
    ctl(&r, d.sock, "infer", path, "--runs", "3", "--rate", "100", "--start-monotonic-ms", at,
        "--json", "--trace", trace, NULL);
    v = ctl_json(&r);
    ctl_free(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "ok")), 3);
    ck_assert(fabs((double)json_integer_value(json_object_get(v, "start_monotonic_us")) / 1000.0 -
                   at_ms) < 0.01);
    json_decref(v);
    text = read_text(trace);
    for (char *p = text, *nl; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
      json_t *e = json_loadb(p, (size_t)(nl - p), 0, NULL);
      ck_assert_ptr_nonnull(e);
      ck_assert(json_number_value(json_object_get(e, "sent_ms")) >= -1e-3);
      json_decref(e);
    }
    free(text);
  }

  /* a request past its deadline: one failed request exits 1 with the
   * daemon's words; in a load, answered failures are counted, exit 0 */
  snprintf(path, sizeof path, "%s/image0.npy", d.dir);
  ctl(&r, d.sock, "infer", path, "--timeout-us", "1", NULL);
  ctl_fails_with(&r, "tailord answered 503: ");
  ck_assert_ptr_nonnull(strstr(r.err, "deadline"));
  ctl_free(&r);
  ctl(&r, d.sock, "infer", path, "--timeout-us", "1", "--runs", "5", "--json", NULL);
  v = ctl_json(&r);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "ok")), 0);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "failed")), 5);
  ck_assert_int_eq(json_integer_value(json_object_get(v, "unreachable")), 0);
  ck_assert_ptr_nonnull(strstr(r.err, "deadline"));
  json_decref(v);
  ctl_free(&r);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(tailorctl_says_what_is_wrong_and_exits_1) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  o.model_name = "alpha";
  struct daemon d;
  daemon_prepare(&d, &o, NULL);
  /* a second model: the same network under another name */
  char text[8192], other[4096];
  config_text(&d, &o, shared_db, text, sizeof text);
  o.model_name = "beta";
  config_text(&d, &o, shared_db, other, sizeof other);
  const char *second = strstr(other, "  - name: beta\n");
  ck_assert_ptr_nonnull(second);
  ck_assert_int_lt(strlen(text) + strlen(second), sizeof text);
  strcat(text, second);
  ck_assert_int_eq(write_file(d.cfg, text), 0);
  daemon_launch(&d);
  daemon_wait_ready(&d, READY_DEADLINE_S);
  int status = 0;
  json_t *v = get_json(d.sock, "/v2", &status);
  ck_assert_int_eq(status, 200);
  json_t *want = json_pack("[s,s]", "alpha", "beta");
  ck_assert(json_equal(json_object_get(v, "models"), want));
  json_decref(want);
  json_decref(v);

  /* which model?  Without --model a command must be told */
  char npy[PATH_MAX + 32];
  snprintf(npy, sizeof npy, "%s/image0.npy", d.dir);
  write_images(npy, 0, 1, 0);
  struct ctl r;
  const char *const which[][3] = {
      {"subnets", NULL, NULL}, {"events", NULL, NULL}, {"pin", "auto", NULL}, {"infer", npy, NULL}};
  for (size_t i = 0; i < sizeof which / sizeof which[0]; i++) {
    ctl(&r, d.sock, which[i][0], which[i][1], NULL);
    ctl_fails_with(&r, "tailord serves 2 models (alpha, beta): name one with --model");
    ctl_free(&r);
  }
  /* status shows them all, and --model picks one */
  ctl(&r, d.sock, "status", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  json_t *models = json_object_get(v, "models");
  ck_assert_int_eq(json_array_size(models), 2);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(models, 0), "model")), "alpha");
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(models, 1), "model")), "beta");
  json_decref(v);
  ctl(&r, d.sock, "subnets", "--model", "beta", "--json", NULL);
  v = ctl_json(&r);
  ctl_free(&r);
  ck_assert_str_eq(json_string_value(json_object_get(v, "model")), "beta");
  json_t *route = get_json(d.sock, "/v2/models/beta/subnets", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_int_ge(json_array_size(json_object_get(v, "subnets")), 2);
  ck_assert_int_eq(json_array_size(json_object_get(v, "subnets")),
                   json_array_size(json_object_get(route, "subnets")));
  json_decref(route);
  json_decref(v);
  ctl(&r, d.sock, "infer", npy, "--model", "alpha", NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  ck_assert_msg(strncmp(r.out, "alpha: served by ", 17) == 0, "%s", r.out);
  ctl_free(&r);

  /* a model the daemon does not serve is named */
  ctl(&r, d.sock, "status", "--model", "gamma", NULL);
  ctl_fails_with(&r, "\"gamma\"");
  ctl_free(&r);
  const char *const unknown[][3] = {
      {"subnets", NULL, NULL}, {"events", NULL, NULL}, {"pin", "auto", NULL}, {"infer", npy, NULL}};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    if (unknown[i][1] != NULL)
      ctl(&r, d.sock, unknown[i][0], unknown[i][1], "--model", "gamma", NULL);
    else
      ctl(&r, d.sock, unknown[i][0], "--model", "gamma", NULL);
    ctl_fails_with(&r, "unknown model \"gamma\"");
    ck_assert_ptr_nonnull(strstr(r.err, "tailord answered 404"));
    ctl_free(&r);
  }

  /* a usage error is 2 */
  ctl(&r, d.sock, "events", "--limit", "0", "--model", "alpha", NULL);
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "--limit needs a whole number from 1 to 1000"));
  ctl_free(&r);
  daemon_stop_ok(&d);

  /* no daemon on the socket: every command says it cannot connect */
  const char *const cmds[][3] = {{"status", NULL, NULL},
                                 {"subnets", NULL, NULL},
                                 {"events", NULL, NULL},
                                 {"pin", "auto", NULL},
                                 {"infer", npy, NULL}};
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    ctl(&r, NULL, cmds[i][0], "--socket", d.sock, cmds[i][1], NULL);
    ctl_fails_with(&r, "cannot connect to tailord at ");
    ck_assert_ptr_nonnull(strstr(r.err, d.sock));
    ctl_free(&r);
  }
  /* nor through $TAILOR_SOCKET */
  char nowhere[PATH_MAX + 32];
  snprintf(nowhere, sizeof nowhere, "%s/nowhere.sock", d.dir);
  ctl(&r, nowhere, "status", NULL);
  ctl_fails_with(&r, "cannot connect to tailord at ");
  ck_assert_ptr_nonnull(strstr(r.err, nowhere));
  ctl_free(&r);
}
END_TEST

/* ------------------------------------------------------------- events */

/* GET .../events with query (may be ""): the status, and the body. */
static json_t *events_of(const struct daemon *d, const char *model, const char *query,
                         int *status) {
  char path[512];
  snprintf(path, sizeof path, "/v2/models/%s/events%s%s", model, query[0] ? "?" : "", query);
  *status = 0;
  return get_json(d->sock, path, status);
}

START_TEST(events_list_the_last_switches_newest_first) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  int top = warm.n - 1;
  struct opts o;
  opts_default(&o);
  o.model_name = "switches"; /* a name no other test's events carry */
  struct daemon d;
  int64_t t0_ms = realtime_ms();
  daemon_start(&d, &o);
  int status = 0;
  /* two pins, each a switch: top -> 0 -> 1 */
  for (int k = 0; k < 2; k++) {
    json_t *pin = json_pack("{s:s}", "subnet", warm.spec[k]);
    json_t *r = post_json(d.sock, "/v2/models/switches/pin", pin, &status);
    json_decref(pin);
    ck_assert_int_eq(status, 200);
    json_decref(r);
  }
  int64_t t1_ms = realtime_ms();
  json_t *v = events_of(&d, "switches", "limit=2", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_str_eq(json_string_value(json_object_get(v, "model")), "switches");
  json_t *list = json_object_get(v, "events");
  ck_assert_int_eq(json_array_size(list), 2);
  json_t *e0 = json_array_get(list, 0), *e1 = json_array_get(list, 1);
  ck_assert_str_eq(json_string_value(json_object_get(e0, "from")), warm.spec[0]);
  ck_assert_str_eq(json_string_value(json_object_get(e0, "to")), warm.spec[1]);
  ck_assert_str_eq(json_string_value(json_object_get(e1, "from")), warm.spec[top]);
  ck_assert_str_eq(json_string_value(json_object_get(e1, "to")), warm.spec[0]);
  for (int k = 0; k < 2; k++) {
    json_t *e = json_array_get(list, (size_t)k);
    const char *reason = json_string_value(json_object_get(e, "reason"));
    ck_assert_msg(reason != NULL && strstr(reason, "pin") != NULL, "reason: %s",
                  reason ? reason : "(none)");
    json_int_t ms = json_integer_value(json_object_get(e, "time_ms"));
    ck_assert(ms >= t0_ms && ms <= t1_ms);
    json_t *state = json_object_get(e, "state");
    ck_assert(json_is_object(state));
    ck_assert(json_number_value(json_object_get(state, "freq_ratio")) == 1);
  }
  ck_assert(json_integer_value(json_object_get(e0, "id")) >
            json_integer_value(json_object_get(e1, "id")));
  ck_assert(json_integer_value(json_object_get(e0, "time_ms")) >=
            json_integer_value(json_object_get(e1, "time_ms")));

  /* without a limit: all three, the start the oldest */
  json_t *all = events_of(&d, "switches", "", &status);
  ck_assert_int_eq(status, 200);
  json_t *alist = json_object_get(all, "events");
  ck_assert_int_eq(json_array_size(alist), 3);
  ck_assert(json_equal(json_array_get(alist, 0), e0));
  ck_assert(json_equal(json_array_get(alist, 1), e1));
  json_t *first = json_array_get(alist, 2);
  ck_assert(json_is_null(json_object_get(first, "from")));
  ck_assert_str_eq(json_string_value(json_object_get(first, "to")), warm.spec[top]);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(first, "reason")), "start"));
  json_decref(all);
  all = events_of(&d, "switches", "limit=1000", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_int_eq(json_array_size(json_object_get(all, "events")), 3);
  json_decref(all);

  /* tailorctl events --json prints what the route says */
  struct ctl r;
  ctl(&r, d.sock, "events", "--json", "--limit", "2", NULL);
  json_t *c = ctl_json(&r);
  ctl_free(&r);
  ck_assert_msg(json_equal(c, v), "tailorctl events differs from the route");
  json_decref(c);
  /* and as text, oldest first */
  ctl(&r, d.sock, "events", "--limit", "2", NULL);
  ck_assert_msg(r.status == 0, "tailorctl %s: exit status %d: %s", r.cmd, r.status, r.err);
  char l1[600], l2[600];
  snprintf(l1, sizeof l1, "  %s -> %s  (pinned by a client)\n", warm.spec[top], warm.spec[0]);
  snprintf(l2, sizeof l2, "  %s -> %s  (pinned by a client)\n", warm.spec[0], warm.spec[1]);
  const char *p1 = strstr(r.out, l1), *p2 = strstr(r.out, l2);
  ck_assert_msg(p1 != NULL && p2 != NULL && p1 < p2, "not the two pins, oldest first:\n%s", r.out);
  ctl_free(&r);
  json_decref(v);

  /* any other query is 400 with a JSON error; an unknown model 404 */
  const char *bad[] = {"limit=0", "limit=1001",      "limit=-1",
                       "limit=",  "limit=2x",        "limit=abc",
                       "count=2", "limit=2&limit=3", "limit=99999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json_t *e = events_of(&d, "switches", bad[i], &status);
    ck_assert_msg(status == 400, "?%s: %d", bad[i], status);
    const char *msg = json_string_value(json_object_get(e, "error"));
    ck_assert_msg(msg != NULL && strstr(msg, "limit=N") != NULL, "?%s: %s", bad[i],
                  msg ? msg : "(no error)");
    json_decref(e);
  }
  json_t *e = events_of(&d, "nope", "limit=2", &status);
  ck_assert_int_eq(status, 404);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(e, "error")), "nope"));
  json_decref(e);
  daemon_stop_ok(&d);
}
END_TEST

/* ----------------------------------------------------------- CPU quota */

/* A fake cgroup v2 for the daemon: proc/self/cgroup puts it in
 * /tailord.service, whose cpu.max is max (e.g. "1000 100000"). */
static void set_cpu_max(const struct daemon *d, const char *max) {
  char p[PATH_MAX + 128];
  snprintf(p, sizeof p, "%s/proc/self", d->root);
  ck_assert_int_eq(mkdirs(p), 0);
  snprintf(p, sizeof p, "%s/proc/self/cgroup", d->root);
  ck_assert_int_eq(write_file(p, "0::/tailord.service\n"), 0);
  snprintf(p, sizeof p, "%s/sys/fs/cgroup/tailord.service", d->root);
  ck_assert_int_eq(mkdirs(p), 0);
  snprintf(p, sizeof p, "%s/sys/fs/cgroup/tailord.service/cpu.max", d->root);
  ck_assert_int_eq(write_file(p, max), 0);
}

/* Waits until the controller has sampled the device n more times (each
 * sample has a new monotonic_ns), and returns the last state. */
static json_t *wait_samples(const struct daemon *d, const char *model, int n) {
  json_int_t last = -1;
  int seen = -1;
  double t0 = now_s();
  for (;;) {
    json_t *st = state_of(d, model);
    json_int_t ns =
        json_integer_value(json_object_get(json_object_get(st, "device"), "monotonic_ns"));
    if (ns != last) {
      last = ns;
      seen++;
    }
    if (seen >= n)
      return st;
    json_decref(st);
    ck_assert_msg(now_s() - t0 < wait_s(120), "fewer than %d samples in 120 s", n);
    sleep_ms(10);
  }
}

/* A client that keeps one request in flight until told to stop. */
struct steady_load {
  const struct daemon *d;
  const char *model;
  pthread_t thread;
  atomic_int stop;
  atomic_long answered;
  long not_200, broken;
  char first_problem[512];
};

static void *steady_load_main(void *arg) {
  struct steady_load *l = arg;
  struct client c = {.fd = unix_connect(l->d->sock)};
  for (long k = 0; !atomic_load(&l->stop); k++) {
    char id[32];
    snprintf(id, sizeof id, "load-%ld", k);
    struct resp r;
    if (c.fd < 0 || binary_infer(&c, l->model, (int)(k % N_IMAGES), id, &r) != 0) {
      l->broken++;
      storm_note(l->first_problem, sizeof l->first_problem, "request %s: no answer", id);
      if (c.fd >= 0)
        resp_free(&r);
      client_close(&c);
      c.fd = unix_connect(l->d->sock);
      sleep_ms(10);
      continue;
    }
    if (r.status != 200) {
      l->not_200++;
      storm_note(l->first_problem, sizeof l->first_problem, "request %s: %d %s", id, r.status,
                 r.body);
    }
    atomic_fetch_add(&l->answered, 1);
    resp_free(&r);
  }
  client_close(&c);
  return NULL;
}

/* The frontier index of spec, or -1. */
static int member_of(const char *spec) {
  for (int i = 0; i < warm.n; i++)
    if (spec != NULL && strcmp(warm.spec[i], spec) == 0)
      return i;
  return -1;
}

/* Starts a daemon for model `name` with fault injection: the file it
 * returns in path (PATH_MAX + 32 bytes) holds the µs every request waits
 * before its worker starts it, 0 at first. */
static void daemon_start_injected(struct daemon *d, const struct opts *o, char *path) {
  daemon_prepare(d, o, NULL);
  snprintf(path, PATH_MAX + 32, "%s/delay_us", d->dir);
  ck_assert_int_eq(write_file(path, "0\n"), 0);
  ck_assert_int_eq(setenv("TAILORD_INJECT_DELAY_FILE", path, 1), 0);
  daemon_launch(d);
  unsetenv("TAILORD_INJECT_DELAY_FILE");
  daemon_wait_ready(d, READY_DEADLINE_S);
}

static void set_delay_us(const char *path, long us) {
  char text[32];
  snprintf(text, sizeof text, "%ld\n", us);
  char tmp[PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  ck_assert_int_eq(write_file(tmp, text), 0);
  ck_assert_int_eq(rename(tmp, path), 0);
}

/* The state once its feedback has at least TL_RT_FEEDBACK_MIN requests. */
static json_t *state_with_feedback(const struct daemon *d, const char *model) {
  double t0 = now_s();
  for (;;) {
    json_t *st = state_of(d, model);
    json_t *fb = json_object_get(st, "feedback");
    if (json_integer_value(json_object_get(fb, "samples")) >= 8 &&
        json_is_number(json_object_get(fb, "waiting_p95_ms")))
      return st;
    json_decref(st);
    ck_assert_msg(now_s() - t0 < wait_s(20), "no feedback within 20 s of a steady load");
    sleep_ms(10);
  }
}

/* Starts n steady loads on model (l must outlive them: static). */
static void start_load(struct steady_load *l, int n, const struct daemon *d, const char *model) {
  memset(l, 0, (size_t)n * sizeof *l);
  for (int i = 0; i < n; i++) {
    l[i].d = d;
    l[i].model = model;
    ck_assert_int_eq(pthread_create(&l[i].thread, NULL, steady_load_main, &l[i]), 0);
  }
}

static void stop_load(struct steady_load *l, int n) {
  for (int i = 0; i < n; i++)
    atomic_store(&l[i].stop, 1);
  for (int i = 0; i < n; i++)
    pthread_join(l[i].thread, NULL);
}

/* Requests wait longer before they run while their compute stays the
 * same (the case of CPU hogs at ordinary weight, which the device state
 * does not show): the latency clients see drives the controller down to a
 * member that fits with that wait, within two monitor intervals. */
START_TEST(waiting_not_compute_grows_and_the_controller_moves_down) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  int top = warm.n - 1;
  struct opts o;
  opts_default(&o);
  o.model_name = "wait";
  /* A budget far above what the top member needs, so that other work on
   * the machine does not move it down before the test does; then the
   * wait injected is long, and a longer interval keeps enough requests
   * (two clients on two workers) in its window.  (A sanitizer's build on
   * a slow machine computes the top member in tens of ms: the budget
   * keeps its room there too.) */
  o.budget_ms = fmax(20, 10 * warm.ms[top]);
  o.margin = 0;
  /* Short, so that a move down the machine's other work causes before the
   * test looks is undone; a wait that keeps the top member over the budget
   * keeps it down all the same. */
  o.hysteresis_ms = 500;
  o.interval_ms = 200;
  struct daemon d;
  char delay[PATH_MAX + 32];
  daemon_start_injected(&d, &o, delay);
  static struct steady_load l[2];
  start_load(l, 2, &d, "wait");

  /* A wait that leaves the top member half the gap to the fastest over
   * the budget, given what requests wait now (e0: the least of a few
   * looks, as a machine shared with other work makes it wobble; should it
   * rise, the fastest member, degraded, is still a move down). */
  double e0 = 1e9, corr = 1;
  for (double t_top = now_s();;) {
    json_t *st = state_with_feedback(&d, "wait");
    int at_top = strcmp(json_string_value(json_object_get(st, "active")), warm.spec[top]) == 0;
    json_decref(st);
    if (at_top)
      break;
    if (now_s() - t_top > wait_s(30)) {
      stop_load(l, 2);
      ck_abort_msg("not on the top member within %.0f s of a steady load, budget %g ms", wait_s(30),
                   o.budget_ms);
    }
    sleep_ms(o.interval_ms);
  }
  for (int k = 0; k < 6; k++) {
    json_t *st = state_with_feedback(&d, "wait");
    e0 = fmin(
        e0, json_number_value(json_object_get(json_object_get(st, "feedback"), "waiting_p95_ms")));
    corr = json_number_value(json_object_get(st, "correction"));
    json_decref(st);
    sleep_ms(o.interval_ms);
  }
  double c_top = warm.ms[top] * corr, c_fast = warm.ms[0] * corr;
  double wait_ms = o.budget_ms - e0 - c_top + (c_top - c_fast) / 2;
  ck_assert_msg(wait_ms > 0.5, "requests already wait %g ms beyond compute", e0);
  double t0 = now_s();
  set_delay_us(delay, (long)(wait_ms * 1e3));
  char *a = NULL;
  for (;;) {
    a = active_of(&d, "wait");
    if (strcmp(a, warm.spec[top]) != 0)
      break;
    free(a);
    if (now_s() - t0 > wait_s(10)) {
      stop_load(l, 2);
      ck_abort_msg("no switch within %.0f s of a %.3g ms wait (e0 %.3g ms, top %.3g ms, fastest "
                   "%.3g ms, budget %g ms)",
                   wait_s(10), wait_ms, e0, c_top, c_fast, o.budget_ms);
    }
    sleep_ms(2);
  }
  double down_ms = (now_s() - t0) * 1e3;
  int to = member_of(a);
  free(a);
  stop_load(l, 2);
  fprintf(stderr,
          "feedback: moved down %.0f ms after a %.3g ms wait was injected (interval %d "
          "ms, e0 %.3g ms)\n",
          down_ms, wait_ms, o.interval_ms, e0);
  ck_assert_msg(to >= 0 && warm.ms[to] < warm.ms[top], "moved to member %d", to);
  /* How fast is for the benchmarks (a test on a shared machine does not
   * time); the figure printed above is two intervals on a quiet one. */
  ck_assert_msg(down_ms < 20 * o.interval_ms, "moved down %.0f ms after the wait began", down_ms);
  /* the switch from the top member says it was the wait (a state event,
   * degraded, may follow it when the wait leaves no member room) */
  int status = 0;
  json_t *ev = events_of(&d, "wait", "limit=5", &status);
  json_t *list = json_object_get(ev, "events");
  const char *reason = NULL;
  for (size_t i = 0; i < json_array_size(list) && reason == NULL; i++) {
    json_t *e = json_array_get(list, i);
    const char *from = json_string_value(json_object_get(e, "from"));
    if (from != NULL && strcmp(from, warm.spec[top]) == 0)
      reason = json_string_value(json_object_get(e, "reason"));
  }
  ck_assert_msg(reason != NULL && strstr(reason, "waiting ") != NULL, "reason: %s",
                reason ? reason : "(none)");
  json_decref(ev);
  daemon_stop_ok(&d);
}
END_TEST

/* The state once its degraded flag is want (within 10 s, or the test
 * fails after stopping the n loads). */
static json_t *wait_degraded(const struct daemon *d, const char *model, int want,
                             struct steady_load *l, int n) {
  double t0 = now_s();
  for (;;) {
    json_t *st = state_of(d, model);
    if (json_is_true(json_object_get(st, "degraded")) == want)
      return st;
    json_decref(st);
    if (now_s() - t0 > wait_s(10)) {
      stop_load(l, n);
      ck_abort_msg("%s: degraded not %d within %.0f s", model, want, wait_s(10));
    }
    sleep_ms(2);
  }
}

/* A wait no member can meet the budget with: within two intervals the
 * model is degraded, serves the fastest member, and says so in its state
 * (what is over and what would help), an event and /metrics; when the
 * wait ends it clears the same way. */
START_TEST(an_infeasible_budget_is_reported_and_clears) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  o.model_name = "infeasible";
  /* (a budget other work on the machine does not break by itself, even
   * in a sanitizer's build, and an interval whose window holds enough of
   * the slow requests) */
  o.budget_ms = fmax(10, 5 * warm.ms[warm.n - 1]);
  const double wait_ms = 3 * o.budget_ms; /* what no member can meet */
  o.margin = 0;
  o.hysteresis_ms = 600000;
  o.interval_ms = 200;
  struct daemon d;
  char delay[PATH_MAX + 32];
  daemon_start_injected(&d, &o, delay);
  static struct steady_load l[2];
  start_load(l, 2, &d, "infeasible");
  json_decref(state_with_feedback(&d, "infeasible"));
  double t0 = now_s();
  set_delay_us(delay, (long)(wait_ms * 1e3));
  json_t *st = wait_degraded(&d, "infeasible", 1, l, 2);
  double on_ms = (now_s() - t0) * 1e3;
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  json_t *fb = json_object_get(st, "feedback");
  ck_assert_str_eq(json_string_value(json_object_get(fb, "over")), "queue");
  const char *help = json_string_value(json_object_get(fb, "help"));
  ck_assert_msg(help != NULL && strncmp(help, "queueing: requests waited ", 26) == 0, "help: %s",
                help ? help : "(none)");
  json_decref(st);
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_degraded{model=\"infeasible\"}") == 1);
  ck_assert(metric(m, "tailor_over_budget_info{model=\"infeasible\",part=\"queue\"}") == 1);
  ck_assert(metric(m, "tailor_served_latency_p95_seconds{model=\"infeasible\"}") >
            o.budget_ms / 1e3);
  free(m);
  int status = 0;
  json_t *ev = events_of(&d, "infeasible", "limit=5", &status);
  int found = 0;
  json_t *list = json_object_get(ev, "events");
  for (size_t i = 0; i < json_array_size(list); i++) {
    const char *r = json_string_value(json_object_get(json_array_get(list, i), "reason"));
    found |= r != NULL && strncmp(r, "degraded: no subnet meets the budget; queueing", 46) == 0;
  }
  ck_assert_msg(found, "no event says the model is degraded: %s", json_dumps(ev, JSON_COMPACT));
  json_decref(ev);

  t0 = now_s();
  set_delay_us(delay, 0);
  st = wait_degraded(&d, "infeasible", 0, l, 2);
  double off_ms = (now_s() - t0) * 1e3;
  ck_assert(json_is_null(json_object_get(json_object_get(st, "feedback"), "over")));
  json_decref(st);
  stop_load(l, 2);
  fprintf(stderr,
          "feedback: degraded %.0f ms after a %.0f ms wait began, cleared %.0f ms after it "
          "ended (interval %d ms)\n",
          on_ms, wait_ms, off_ms, o.interval_ms);
  /* (timing is the benchmarks' to judge; see the figures printed) */
  ck_assert_msg(on_ms < 20 * o.interval_ms, "degraded after %.0f ms", on_ms);
  ck_assert_msg(off_ms < 20 * o.interval_ms, "cleared after %.0f ms", off_ms);
  m = get_metrics(&d);
  ck_assert(metric(m, "tailor_degraded{model=\"infeasible\"}") == 0);
  ck_assert(metric(m, "tailor_over_budget_info{model=\"infeasible\",part=\"queue\"}") == -1);
  free(m);
  ev = events_of(&d, "infeasible", "limit=1", &status);
  const char *r = json_string_value(
      json_object_get(json_array_get(json_object_get(ev, "events"), 0), "reason"));
  ck_assert_msg(r != NULL && strncmp(r, "no longer degraded: ", 20) == 0, "last event: %s",
                r ? r : "(none)");
  json_decref(ev);
  daemon_stop_ok(&d);
}
END_TEST

struct shed_client {
  const struct daemon *d;
  const char *body;
  pthread_t thread;
  int rc, status;
  double ms;
  char error[256];
};

static void *shed_client_main(void *arg) {
  struct shed_client *sc = arg;
  double t0 = now_s();
  struct resp r;
  sc->rc = request(sc->d->sock, "POST", "/v2/models/shed/infer",
                   "Content-Type: application/json\r\n", sc->body, strlen(sc->body), &r);
  sc->ms = (now_s() - t0) * 1e3;
  if (sc->rc == 0) {
    sc->status = r.status;
    snprintf(sc->error, sizeof sc->error, "%.*s", (int)(r.len < 255 ? r.len : 255),
             r.body != NULL ? r.body : "");
    resp_free(&r);
  }
  return NULL;
}

/* A burst that the workers cannot serve by the deadline: the requests
 * that would wait past it are answered 503 at once, with the reason,
 * and counted; the others are served; every client gets an answer. */
START_TEST(requests_that_would_miss_the_deadline_are_shed_at_once) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  o.model_name = "shed";
  o.budget_ms = 10; /* so the deadline is 100 ms */
  o.workers = 2;
  o.max_connections = 64;
  struct daemon d;
  char delay[PATH_MAX + 32];
  daemon_start_injected(&d, &o, delay);
  set_delay_us(delay, 50000); /* each request holds its worker 50 ms */
  json_t *b = infer_body(0, 0, NULL);
  char *body = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  /* one request first: the server learns how long a request takes */
  sleep_ms(100);
  struct shed_client first = {.d = &d, .body = body};
  shed_client_main(&first);
  ck_assert_msg(first.rc == 0 && first.status == 200, "first request: %d %d %s", first.rc,
                first.status, first.error);
  enum { N = 16 };
  static struct shed_client sc[N];
  for (int i = 0; i < N; i++) {
    sc[i] = (struct shed_client){.d = &d, .body = body};
    ck_assert_int_eq(pthread_create(&sc[i].thread, NULL, shed_client_main, &sc[i]), 0);
  }
  int served = 0, shed = 0;
  double shed_max_ms = 0;
  for (int i = 0; i < N; i++) {
    pthread_join(sc[i].thread, NULL);
    ck_assert_msg(sc[i].rc == 0, "client %d got no answer", i);
    if (sc[i].status == 200) {
      served++;
    } else {
      ck_assert_msg(sc[i].status == 503 && strstr(sc[i].error, "shed: ") != NULL,
                    "client %d: %d %s", i, sc[i].status, sc[i].error);
      shed++;
      shed_max_ms = fmax(shed_max_ms, sc[i].ms);
    }
  }
  free(body);
  fprintf(stderr, "shedding: %d of %d served, %d shed, the slowest 503 in %.0f ms\n", served, N,
          shed, shed_max_ms);
  ck_assert_int_ge(served, 2);
  ck_assert_int_ge(shed, 1);
  /* a shed request is answered before it could have been served */
  ck_assert_msg(shed_max_ms < 300, "a 503 took %.0f ms", shed_max_ms); /* queued: >= 400 */
  char *m = get_metrics(&d);
  ck_assert(metric(m, "tailor_shed_total{model=\"shed\"}") == shed);
  free(m);
  set_delay_us(delay, 0);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(a_cpu_quota_bounds_throughput_not_latency) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  int top = warm.n - 1;
  struct opts o;
  opts_default(&o);
  o.model_name = "quota";
  /* A budget the most accurate member meets with a correction of up to 5
   * (the most one request can say), but not 100 times slower: were the
   * quota of 0.01 cores taken as a slowdown, it would not fit. */
  o.budget_ms = 20 * warm.ms[top];
  o.margin = 0.1;
  o.hysteresis_ms = 2000;
  struct daemon d;
  daemon_prepare(&d, &o, NULL);
  set_cpu_max(&d, "1000 100000\n");
  daemon_launch(&d);
  daemon_wait_ready(&d, READY_DEADLINE_S);

  /* no requests: no demand, so the quota moves nothing */
  json_t *st = wait_samples(&d, "quota", 10);
  json_t *load = json_object_get(st, "load");
  ck_assert_msg(json_number_value(json_object_get(load, "quota_cores")) == 0.01, "load: %s",
                json_dumps(load, JSON_COMPACT));
  ck_assert(json_number_value(json_object_get(load, "rate_per_s")) == 0);
  ck_assert(json_number_value(json_object_get(load, "overhead_ms")) >= 0);
  ck_assert(json_number_value(
                json_object_get(json_object_get(st, "device"), "cgroup_cpu_quota_cores")) == 0.01);
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[top]);
  ck_assert(json_is_false(json_object_get(st, "degraded")));
  json_decref(st);
  int status = 0;
  json_t *ev = events_of(&d, "quota", "", &status);
  ck_assert_int_eq(status, 200);
  ck_assert_int_eq(json_array_size(json_object_get(ev, "events")), 1); /* the start */
  json_int_t start_id =
      json_integer_value(json_object_get(json_array_get(json_object_get(ev, "events"), 0), "id"));
  json_decref(ev);

  /* a steady load: the most accurate member would use more than the
   * quota, so the daemon moves to a faster one within a few samples */
  static struct steady_load l;
  memset(&l, 0, sizeof l);
  l.d = &d;
  l.model = "quota";
  ck_assert_int_eq(pthread_create(&l.thread, NULL, steady_load_main, &l), 0);
  double t0 = now_s();
  for (;;) {
    char *a = active_of(&d, "quota");
    int moved = strcmp(a, warm.spec[top]) != 0;
    free(a);
    if (moved)
      break;
    if (now_s() - t0 > wait_s(60)) {
      atomic_store(&l.stop, 1);
      pthread_join(l.thread, NULL);
      ck_abort_msg("no switch within 60 s of a steady load under a quota of 0.01 cores "
                   "(%ld answered, %ld not 200, %ld without an answer: %s)",
                   atomic_load(&l.answered), l.not_200, l.broken, l.first_problem);
    }
    sleep_ms(10);
  }
  st = state_of(&d, "quota");
  load = json_object_get(st, "load");
  ck_assert(json_number_value(json_object_get(load, "rate_per_s")) > 0);
  ck_assert(json_number_value(json_object_get(load, "quota_cores")) == 0.01);
  json_decref(st);
  /* the first switch after the start: down from the top, for the quota */
  ev = events_of(&d, "quota", "limit=1000", &status);
  ck_assert_int_eq(status, 200);
  json_t *list = json_object_get(ev, "events");
  json_t *down = NULL;
  for (size_t i = 0; i < json_array_size(list); i++) { /* newest first */
    json_t *e = json_array_get(list, i);
    if (json_integer_value(json_object_get(e, "id")) > start_id)
      down = e;
  }
  ck_assert_ptr_nonnull(down);
  ck_assert_str_eq(json_string_value(json_object_get(down, "from")), warm.spec[top]);
  int to = member_of(json_string_value(json_object_get(down, "to")));
  ck_assert_msg(to >= 0 && warm.ms[to] < warm.ms[top], "moved to %s",
                json_string_value(json_object_get(down, "to")));
  const char *reason = json_string_value(json_object_get(down, "reason"));
  ck_assert_msg(reason != NULL && strncmp(reason, "CPU quota at risk: ", 19) == 0, "reason: %s",
                reason ? reason : "(none)");
  ck_assert(json_number_value(
                json_object_get(json_object_get(down, "state"), "cgroup_cpu_quota_cores")) == 0.01);
  json_decref(ev);

  /* the quota lifted under the same load: up only after the hysteresis */
  sleep_ms(3 * MONITOR_INTERVAL_MS);
  int64_t lifted_ms = realtime_ms();
  t0 = now_s();
  set_cpu_max(&d, "max 100000\n");
  sleep_ms(4 * MONITOR_INTERVAL_MS);
  st = state_of(&d, "quota");
  if ((now_s() - t0) * 1e3 < o.hysteresis_ms) /* always, unless the machine stalled */
    ck_assert_str_ne(json_string_value(json_object_get(st, "active")), warm.spec[top]);
  json_decref(st);
  for (;;) {
    st = state_of(&d, "quota");
    int up = strcmp(json_string_value(json_object_get(st, "active")), warm.spec[top]) == 0;
    int no_quota = json_is_null(json_object_get(json_object_get(st, "load"), "quota_cores"));
    json_decref(st);
    if (up) {
      ck_assert(no_quota);
      break;
    }
    if (now_s() - t0 > wait_s(60)) {
      atomic_store(&l.stop, 1);
      pthread_join(l.thread, NULL);
      ck_abort_msg("no move back up within 60 s of lifting the quota");
    }
    sleep_ms(20);
  }
  ck_assert((now_s() - t0) * 1e3 >= o.hysteresis_ms);
  atomic_store(&l.stop, 1);
  ck_assert_int_eq(pthread_join(l.thread, NULL), 0);
  ck_assert_msg(l.broken == 0 && l.not_200 == 0, "%ld without an answer, %ld not 200: %s", l.broken,
                l.not_200, l.first_problem);
  ck_assert(atomic_load(&l.answered) > 0);

  /* the move up is in the events, the hysteresis after the quota went */
  ev = events_of(&d, "quota", "limit=1000", &status);
  ck_assert_int_eq(status, 200);
  list = json_object_get(ev, "events");
  json_t *up = NULL;
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *e = json_array_get(list, i);
    if (json_integer_value(json_object_get(e, "time_ms")) >= lifted_ms &&
        strcmp(json_string_value(json_object_get(e, "to")), warm.spec[top]) == 0)
      up = e; /* the oldest such */
  }
  ck_assert_ptr_nonnull(up);
  reason = json_string_value(json_object_get(up, "reason"));
  ck_assert_msg(strncmp(reason, "resources recovered for ", 24) == 0, "reason: %s", reason);
  json_int_t up_ms = json_integer_value(json_object_get(up, "time_ms"));
  ck_assert_msg(up_ms + 1 >= lifted_ms + o.hysteresis_ms,
                "moved up %lld ms after the quota was lifted, before the %d ms hysteresis",
                (long long)(up_ms - lifted_ms), o.hysteresis_ms);
  ck_assert_str_eq(
      json_string_value(json_object_get(json_object_get(up, "state"), "cgroup_cpu_quota_cores")),
      "max");
  json_decref(ev);
  daemon_stop_ok(&d);
}
END_TEST

/* --------------------------------------------------------------- main */

/* The first start: ready at once with a provisional frontier, then the
 * searched one; fills `warm` and the shared cache. */
static void warm_up(void) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  memset(&d, 0, sizeof d);
  snprintf(d.dir, sizeof d.dir, "%s/warm", base_dir);
  if (mkdir(d.dir, 0700) != 0) {
    snprintf(warm.why, sizeof warm.why, "%s: %s", d.dir, strerror(errno));
    return;
  }
  snprintf(d.sock, sizeof d.sock, "%s/s.sock", d.dir);
  snprintf(d.cfg, sizeof d.cfg, "%s/tailord.yaml", d.dir);
  snprintf(d.log, sizeof d.log, "%s/stderr.log", d.dir);
  snprintf(d.root, sizeof d.root, "%s/root", d.dir);
  char text[4096];
  config_text(&d, &o, shared_db, text, sizeof text);
  if (fake_tree(d.root) != 0 || write_file(d.cfg, text) != 0) {
    snprintf(warm.why, sizeof warm.why, "cannot write %s", d.cfg);
    return;
  }
  const char *argv[] = {tailord_bin, "--config", d.cfg, NULL};
  d.pid = spawn(d.log, argv);
  double t0 = now_s();
  for (;;) {
    int status = 0;
    json_t *s = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
    if (status == 200) {
      int provisional = json_is_true(json_object_get(s, "provisional"));
      int partial = json_is_true(json_object_get(s, "partial"));
      json_t *list = json_object_get(s, "subnets");
      if (provisional) {
        warm.provisional_seen = json_array_size(list) == 2;
      } else if (partial) {
        warm.partial_seen = 1;
      } else {
        warm.n = (int)json_array_size(list);
        for (int i = 0; i < warm.n && i < 64; i++) {
          json_t *e = json_array_get(list, (size_t)i);
          warm.ms[i] = json_number_value(json_object_get(e, "predicted_ms"));
          warm.acc[i] = json_number_value(json_object_get(e, "accuracy"));
          snprintf(warm.spec[i], sizeof warm.spec[i], "%s",
                   json_string_value(json_object_get(e, "subnet")));
        }
        json_decref(s);
        break;
      }
    }
    json_decref(s);
    int st;
    if (waitpid(d.pid, &st, WNOHANG) == d.pid || now_s() - t0 > wait_s(SEARCH_DEADLINE_S)) {
      char *log = read_text(d.log);
      snprintf(warm.why, sizeof warm.why, "no searched frontier; log:\n%s", log);
      free(log);
      kill(d.pid, SIGKILL);
      waitpid(d.pid, &st, 0);
      return;
    }
    sleep_ms(100);
  }
  warm.search_wait_s = now_s() - t0;
  kill(d.pid, SIGTERM);
  int rc = wait_exit(d.pid, 120);
  if (rc != 0) {
    char *log = read_text(d.log);
    snprintf(warm.why, sizeof warm.why, "the first start exited with %d; log:\n%s", rc, log);
    free(log);
    return;
  }
  fprintf(stderr, "test_tailord: first start searched a frontier of %d subnets in %.1f s\n", warm.n,
          warm.search_wait_s);
  warm.ok = 1;
}

static Suite *tailord_suite(void) {
  Suite *s = suite_create("tailord");
  TCase *tc = tcase_create("daemon");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, first_start_serves_provisional_then_the_searched_frontier);
  tcase_add_test(tc, health_and_metadata_answer);
  tcase_add_test(tc, json_infer_classifies_calibration_images);
  tcase_add_test(tc, binary_infer_equals_json_infer_bit_for_bit);
  tcase_add_test(tc, bad_requests_get_their_status_and_a_json_error);
  tcase_add_test(tc, clients_that_hang_up_do_not_stop_the_daemon);
  tcase_add_test(tc, an_expired_deadline_is_503_without_running);
  tcase_add_test(tc, metrics_show_counters_histograms_and_gauges);
  tcase_add_test(tc, unlabelled_calibration_is_searched_and_reported_as_agreement);
  tcase_add_test(tc, pin_fixes_the_subnet_and_auto_releases_it);
  tcase_add_test(tc, hot_swap_every_10_ms_drops_nothing_and_serves_what_it_names);
  tcase_add_test(tc, a_client_in_a_tight_loop_gets_every_answer_in_order);
  tcase_add_test(tc, adaptation_moves_down_at_once_and_up_after_the_hysteresis);
  tcase_add_test(tc, waiting_not_compute_grows_and_the_controller_moves_down);
  tcase_add_test(tc, an_infeasible_budget_is_reported_and_clears);
  tcase_add_test(tc, requests_that_would_miss_the_deadline_are_shed_at_once);
  tcase_add_test(tc, a_broken_config_on_sighup_keeps_the_old_one_serving);
  tcase_add_test(tc, limits_on_connections_and_idle_time);
  tcase_add_test(tc, slow_senders_cannot_hold_the_connections);
  tcase_add_test(tc, a_full_queue_answers_503);
  tcase_add_test(tc, nothing_fits_serves_the_fastest_degraded);
  tcase_add_test(tc, a_late_reader_gets_a_large_answer_whole_and_the_pipelined_ones_after);
  tcase_add_test(tc, sigterm_finishes_the_request_in_flight_and_exits_0);
  tcase_add_test(tc, sigterm_during_the_first_search_stops_it_and_exits_0);
  tcase_add_test(tc, check_flag_reports_every_error_and_exits_1);
  tcase_add_test(tc, a_model_that_cannot_be_served_fails_the_start);
  tcase_add_test(tc, tailorctl_status_subnets_and_pin_agree_with_the_routes);
  tcase_add_test(tc, tailorctl_infer_classifies_like_the_json_route);
  tcase_add_test(tc, tailorctl_says_what_is_wrong_and_exits_1);
  tcase_add_test(tc, events_list_the_last_switches_newest_first);
  tcase_add_test(tc, a_cpu_quota_bounds_throughput_not_latency);
  suite_add_tcase(s, tc);
  return s;
}

/* The first n images and labels of the calibration data: the test's own
 * smaller calibration set, and the images the tests send. */
static int make_calibration(const char *full_x, const char *full_y) {
  struct tl_tensor x, y;
  struct tl_error err = {{0}};
  if (tl_npy_read(full_x, &x, &err) != 0 || tl_npy_read(full_y, &y, &err) != 0) {
    fprintf(stderr, "test_tailord: %s\n", err.msg);
    return -1;
  }
  if (x.dtype != TL_DTYPE_UINT8 || x.shape.ndim != 4 || x.shape.dims[0] < CALIB_IMAGES ||
      x.shape.dims[1] * x.shape.dims[2] * x.shape.dims[3] != 784 || y.dtype != TL_DTYPE_INT64) {
    fprintf(stderr, "test_tailord: %s is not the Fashion-MNIST calibration set\n", full_x);
    return -1;
  }
  memcpy(images, x.data, sizeof images);
  memcpy(labels, y.data, sizeof labels);
  x.shape.dims[0] = CALIB_IMAGES;
  y.shape.dims[0] = CALIB_IMAGES;
  int rc = tl_npy_write(calib_x, &x, &err) == 0 && tl_npy_write(calib_y, &y, &err) == 0 ? 0 : -1;
  if (rc != 0)
    fprintf(stderr, "test_tailord: %s\n", err.msg);
  free(x.data);
  free(y.data);
  return rc;
}

int main(void) {
  if (tu_roots("tailord", source_root, build_root) != 0)
    return 1;
  snprintf(tailord_bin, sizeof tailord_bin, "%s/daemon/tailord", build_root);
  snprintf(tailorctl_bin, sizeof tailorctl_bin, "%s/tailorctl/tailorctl", build_root);
  if (access(tailord_bin, X_OK) != 0) {
    fprintf(stderr, "test_tailord: %s: %s (build it first)\n", tailord_bin, strerror(errno));
    return 1;
  }
  char full_x[PATH_MAX + 64], full_y[PATH_MAX + 64];
  snprintf(full_x, sizeof full_x, "%s/data/fmnist-calib-x.npy", build_root);
  snprintf(full_y, sizeof full_y, "%s/data/fmnist-calib-y.npy", build_root);
  struct stat sb;
  if (stat(full_y, &sb) != 0) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/make-calib.py' '%s/data'", source_root,
             build_root);
    if (system(cmd) != 0) {
      fprintf(stderr, "test_tailord: `%s` failed\n", cmd);
      return 1;
    }
  }
  snprintf(base_dir, sizeof base_dir, "/tmp/test_tailord.XXXXXX");
  if (mkdtemp(base_dir) == NULL) {
    perror("test_tailord: mkdtemp");
    return 1;
  }
  snprintf(calib_x, sizeof calib_x, "%s/calib-x.npy", base_dir);
  snprintf(calib_y, sizeof calib_y, "%s/calib-y.npy", base_dir);
  snprintf(shared_db, sizeof shared_db, "%s/cache/cache.db", base_dir);
  int failed = 1;
  if (make_calibration(full_x, full_y) == 0) {
    warm_up();
    failed = tu_run(tailord_suite());
  }
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "test_tailord: cannot remove %s\n", base_dir);
  return failed ? 1 : 0;
}
