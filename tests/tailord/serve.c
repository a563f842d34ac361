/*
 * serve.c - tailord serving: start-up with a provisional frontier and the
 * swap to the searched one, health and metadata, inference in JSON and in
 * the binary extension (the same logits bit for bit), every refusal with
 * its status and a JSON error, clients that hang up, expired deadlines,
 * the metrics, a search on unlabelled calibration data, and pinning (which
 * a reload keeps).
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  struct daemon d;
  daemon_start(&d, NULL);
  json_t *s = get_ok(&d, "/v2/models/fmnist/subnets");
  ck_assert(json_is_false(json_object_get(s, "provisional")));
  ck_assert_int_eq(json_array_size(json_object_get(s, "subnets")), (size_t)warm.n);
  json_decref(s);
  ck_assert(log_has(&d, "from the cache"));
  ck_assert(!log_has(&d, "searching the frontier"));
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(health_and_metadata_answer) {
  struct daemon d;
  daemon_start(&d, NULL);
  int status = 0;
  json_t *v = get_ok(&d, "/v2/health/live");
  ck_assert(json_is_true(json_object_get(v, "live")));
  json_decref(v);
  v = get_ok(&d, "/v2/health/ready");
  ck_assert(json_is_true(json_object_get(v, "ready")));
  json_decref(v);
  v = get_ok(&d, "/v2");
  ck_assert_str_eq(json_string_value(json_object_get(v, "name")), "tailor");
  ck_assert_ptr_nonnull(json_string_value(json_object_get(v, "version")));
  json_decref(v);
  v = get_ok(&d, "/v2/models/fmnist");
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
  v = get_ok(&d, "/v2/models/fmnist/ready");
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
  v = get_ok(&d, "/v2/models/fmnist/subnets");
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
  v = get_ok(&d, "/v2/models/fmnist/state");
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
  struct daemon d;
  daemon_start(&d, NULL);
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
  struct daemon d;
  daemon_start(&d, NULL);
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
  struct client c = client_open(d.sock);
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
  json_t *v = get_ok(&d, "/v2/health/ready");
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
  struct daemon d;
  daemon_start(&d, NULL);
  json_t *b = infer_body(0, 0, NULL);
  char *text = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  size_t len = strlen(text);
  for (int round = 0; round < 3; round++) {
    /* mid-body */
    int fd = client_open(d.sock).fd;
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "POST /v2/models/fmnist/infer HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
    ck_assert_int_eq(write_all(fd, head, (size_t)hn), 0);
    ck_assert_int_eq(write_all(fd, text, len / 2), 0);
    close(fd);
    /* a whole request, gone before the answer */
    fd = client_open(d.sock).fd;
    ck_assert_int_eq(write_all(fd, head, (size_t)hn), 0);
    ck_assert_int_eq(write_all(fd, text, len), 0);
    close(fd);
    /* mid-headers */
    fd = client_open(d.sock).fd;
    ck_assert_int_eq(write_all(fd, "GET /v2/hea", 11), 0);
    close(fd);
  }
  /* keep-alive and pipelining on one connection: answers in order */
  struct client c = client_open(d.sock);
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
  json_t *v = get_ok(&d, "/v2/health/live");
  json_decref(v);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(an_expired_deadline_is_503_without_running) {
  struct daemon d;
  daemon_start(&d, NULL);
  int status = 0;
  /* one request that runs, so the compute histogram exists */
  json_t *b = infer_body(1, 0, NULL);
  json_t *r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  ck_assert_int_eq(status, 200);
  json_decref(r);
  json_decref(b);
  double ran = metric_now(&d, "tailor_compute_duration_seconds_count{model=\"fmnist\"}");
  ck_assert(ran == 1);

  b = infer_body(1, 0, json_pack("{s:i}", "timeout", 1));
  r = post_json(d.sock, "/v2/models/fmnist/infer", b, &status);
  json_decref(b);
  ck_assert_int_eq(status, 503);
  ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "error")), "deadline"));
  json_decref(r);
  char *m = get_metrics(&d);
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
  struct daemon d;
  daemon_start(&d, NULL);
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
    s = get_ok(&d, "/v2/models/fmnist/subnets");
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
  json_t *st = get_ok(&d, "/v2/models/fmnist/state");
  ck_assert_str_eq(
      json_string_value(json_object_get(json_object_get(st, "budget"), "accuracy_metric")),
      "agreement");
  json_decref(st);
  ck_assert(metric_now(&d, "tailor_accuracy_info{model=\"fmnist\",metric=\"agreement\"}") == 1);
  daemon_stop_ok(&d);
  unlink(db);
}
END_TEST

START_TEST(pin_fixes_the_subnet_and_auto_releases_it) {
  struct daemon d;
  daemon_start(&d, NULL);
  int status = 0;
  /* with a loose budget the most accurate member is active */
  char *a = active_of(&d, "fmnist");
  ck_assert_str_eq(a, warm.spec[warm.n - 1]);
  free(a);
  json_t *r = pin_fmnist(&d, warm.spec[0]);
  ck_assert_str_eq(json_string_value(json_object_get(r, "active")), warm.spec[0]);
  ck_assert(json_is_true(json_object_get(r, "pinned")));
  json_decref(r);
  for (int k = 0; k < 3; k++)
    expect_served_by(&d, k, warm.spec[0]);
  /* the controller leaves a pinned model alone across intervals */
  sleep_ms(5 * MONITOR_INTERVAL_MS);
  json_t *st = get_json(d.sock, "/v2/models/fmnist/state", &status);
  ck_assert(json_is_true(json_object_get(st, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  json_decref(st);
  /* a spec that is valid but not on the frontier */
  expect_error(&d, "/v2/models/fmnist/pin", "{\"subnet\": \"r=14 d=0,0,0 w=.5,.5,.5\"}", 400,
               "not on the frontier");
  r = pin_fmnist(&d, "auto");
  ck_assert(json_is_false(json_object_get(r, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(r, "active")), warm.spec[warm.n - 1]);
  json_decref(r);
  expect_served_by(&d, 0, warm.spec[warm.n - 1]);
  ck_assert(metric_now(&d, "tailor_switches_total{model=\"fmnist\",reason=\"pin\"}") == 2);
  daemon_stop_ok(&d);
}
END_TEST

/* A reload used to drop the pin: the new generation's controller chose
 * afresh (scripts/bench-soak found it, pinning every second and
 * reloading every 5 s). */
START_TEST(a_pin_holds_across_a_reload) {
  struct daemon d;
  daemon_start(&d, NULL);
  json_decref(pin_fmnist(&d, warm.spec[0]));
  kill(d.pid, SIGHUP);
  json_t *st = NULL;
  for (double t0 = now_s();; sleep_ms(50)) {
    st = get_ok(&d, "/v2/models/fmnist/state");
    if (json_integer_value(json_object_get(st, "generation")) >= 2)
      break;
    json_decref(st);
    ck_assert_msg(now_s() - t0 < wait_s(READY_DEADLINE_S), "no new generation after SIGHUP");
  }
  ck_assert_msg(json_is_true(json_object_get(st, "pinned")), "unpinned by the reload");
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  json_decref(st);
  expect_served_by(&d, 1, warm.spec[0]);
  /* the controller still leaves it alone, and auto still releases it */
  sleep_ms(5 * MONITOR_INTERVAL_MS);
  char *a = active_of(&d, "fmnist");
  ck_assert_str_eq(a, warm.spec[0]);
  free(a);
  json_t *r = pin_fmnist(&d, "auto");
  ck_assert(json_is_false(json_object_get(r, "pinned")));
  ck_assert_str_eq(json_string_value(json_object_get(r, "active")), warm.spec[warm.n - 1]);
  json_decref(r);
  daemon_stop_ok(&d);
}
END_TEST

TCase *tailord_serve_case(void) {
  TCase *tc = tcase_create("serve");
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
  tcase_add_test(tc, a_pin_holds_across_a_reload);
  return tc;
}
