/*
 * tailorctl.c - tailorctl's commands for a running daemon (status,
 * subnets, events, pin, infer) against the routes they front, and its
 * errors: one line on stderr and exit status 1.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "npy.h"

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

/* The class the JSON route gives image k, and the subnet that served. */
static int route_class(const struct daemon *d, int k, char *subnet, size_t size) {
  json_t *r = infer_ok(d, k);
  float logits[10];
  snprintf(subnet, size, "%s", logits_of(r, logits));
  json_decref(r);
  return argmax(logits, 10);
}

START_TEST(tailorctl_status_subnets_and_pin_agree_with_the_routes) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct daemon d;
  daemon_start(&d, NULL);
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
  json_t *route = get_ok(&d, "/v2/models/fmnist/subnets");
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
  struct daemon d;
  daemon_start(&d, NULL);
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
  double before = metric_now(&d, "tailor_requests_total{route=\"model_infer\",code=\"200\"}");
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
  ck_assert(metric_now(&d, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") ==
            before + 200);

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
  json_t *v = get_ok(&d, "/v2");
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
  json_t *route = get_ok(&d, "/v2/models/beta/subnets");
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

TCase *tailord_tailorctl_case(void) {
  TCase *tc = tcase_create("tailorctl");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, tailorctl_status_subnets_and_pin_agree_with_the_routes);
  tcase_add_test(tc, tailorctl_infer_classifies_like_the_json_route);
  tcase_add_test(tc, tailorctl_says_what_is_wrong_and_exits_1);
  return tc;
}
