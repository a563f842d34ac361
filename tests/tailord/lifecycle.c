/*
 * lifecycle.c - tailord's life and limits: reloads with a broken and a
 * good config, the connection, idle, body and queue limits, slow senders,
 * a budget nothing fits, a late reader of pipelined answers, a client
 * that pipelines requests and reads no answer or closes its side after
 * them, the drain on
 * SIGTERM (also during the first search), `tailord -n`, and a model that
 * cannot be served.
 */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
    st = get_ok(&d, "/v2/models/fmnist/state");
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
  /* make sure both were accepted before the third comes */
  static const char live[] = "GET /v2/health/live HTTP/1.1\r\n\r\n";
  struct client k1 = client_open(d.sock), k2 = client_open(d.sock);
  ck_assert_int_eq(write_all(k1.fd, live, sizeof live - 1), 0);
  expect_answer(&k1, 200, NULL);
  ck_assert_int_eq(write_all(k2.fd, live, sizeof live - 1), 0);
  expect_answer(&k2, 200, NULL);
  struct resp r;
  ck_assert_int_eq(request(d.sock, "GET", "/v2/health/live", NULL, NULL, 0, &r), 0);
  ck_assert_int_eq(r.status, 503);
  ck_assert_ptr_nonnull(strstr(r.body, "too many connections"));
  resp_free(&r);
  /* idle keep-alive connections are closed after idle_timeout_ms */
  sleep_ms(4000);
  char byte;
  ck_assert_int_eq(read(k1.fd, &byte, 1), 0);
  ck_assert_int_eq(read(k2.fd, &byte, 1), 0);
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
    slow[i] = client_open(d.sock);
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
  ck_assert(metric_now(&d, "tailor_connections_evicted_total") >= 1);

  /* Alone, a request trickling a byte at a time still ends at the
   * timeout, counted from its first byte. */
  struct client one = client_open(d.sock);
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
  int fd = client_open(d->sock).fd;
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
    if (metric_now(d, series) >= want)
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
  struct client c2 = client_open(d.sock);
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
  json_t *st = get_ok(&d, "/v2/models/fmnist/state");
  ck_assert(json_is_true(json_object_get(st, "degraded")));
  ck_assert_str_eq(json_string_value(json_object_get(st, "active")), warm.spec[0]);
  ck_assert_ptr_nonnull(
      strstr(json_string_value(json_object_get(st, "reason")), "no subnet meets the budget"));
  json_decref(st);
  expect_served_by(&d, 3, warm.spec[0]);
  ck_assert(metric_now(&d, "tailor_degraded{model=\"fmnist\"}") == 1);
  daemon_stop_ok(&d);
}
END_TEST

/* The worker that ran a request writes its answer itself; what the
 * socket cannot take at once is left to the loop, and requests that
 * arrive while one runs are kept and answered after it, in order. */
START_TEST(a_late_reader_gets_a_large_answer_whole_and_the_pipelined_ones_after) {
  struct daemon d;
  daemon_start(&d, NULL);
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

  ck_assert(metric_now(&d, "tailor_requests_total{route=\"model_infer\",code=\"200\"}") == 2);
  daemon_stop_ok(&d);
}
END_TEST

/* The rest of a pipeline of requests, written by a thread while the test
 * reads the answers. */
struct rest {
  int fd;
  const char *data;
  size_t len;
  int failed;
};

static void *write_rest(void *arg) {
  struct rest *r = arg;
  r->failed = write_all(r->fd, r->data, r->len) != 0;
  return NULL;
}

/* n binary infer requests back to back, with ids "<prefix>0" on, in a
 * buffer the caller frees; its length in *len. */
static char *pipeline(const char *prefix, int n, size_t *len) {
  char *all = malloc((size_t)n * BINARY_MSG_MAX);
  ck_assert_ptr_nonnull(all);
  *len = 0;
  for (int k = 0; k < n; k++) {
    char id[16];
    snprintf(id, sizeof id, "%s%d", prefix, k);
    *len += binary_message(all + *len, "fmnist", k % N_IMAGES, id);
  }
  return all;
}

/* Reads the n answers to pipeline(prefix, n): each 200, in order. */
static void expect_answers_in_order(struct client *c, const char *prefix, int n) {
  for (int k = 0; k < n; k++) {
    struct resp r;
    ck_assert_msg(client_read(c, &r) == 0, "closed after %d of %d answers", k, n);
    ck_assert_int_eq(r.status, 200);
    json_t *v = json_loadb(r.body, r.json_len, 0, NULL);
    char id[16];
    snprintf(id, sizeof id, "%s%d", prefix, k);
    ck_assert_str_eq(json_string_value(json_object_get(v, "id")), id);
    json_decref(v);
    resp_free(&r);
  }
}

/* A client that pipelines requests and reads no answer used to make the
 * daemon hold every answer (20 000 requests grew it by 14 MiB): the
 * daemon reads on only while little of its answers waits to be written.
 * Once the client reads, every request is answered, in order. */
START_TEST(a_client_that_reads_no_answer_is_read_no_further) {
  struct daemon d;
  daemon_start(&d, NULL);
  enum { N = 4000 };
  size_t total = 0;
  char *all = pipeline("p", N, &total);
  struct client c = client_open(d.sock);
  /* send, reading nothing, until the daemon takes no more for a second */
  size_t sent = 0;
  for (double t0 = now_s(), last = t0; sent < total && now_s() - last < 1.0; sleep_ms(10)) {
    ssize_t w = send(c.fd, all + sent, total - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      last = now_s();
    }
    ck_assert_msg(now_s() - t0 < wait_s(60), "the daemon never stopped reading");
  }
  ck_assert_msg(sent < total / 2, "the daemon read %zu of %zu bytes with no answer read", sent,
                total);
  struct rest rest = {c.fd, all + sent, total - sent, 0};
  pthread_t writer;
  ck_assert_int_eq(pthread_create(&writer, NULL, write_rest, &rest), 0);
  expect_answers_in_order(&c, "p", N);
  pthread_join(writer, NULL);
  ck_assert(!rest.failed);
  client_close(&c);
  free(all);
  daemon_stop_ok(&d);
}
END_TEST

/* A client that sends requests and never reads the answers is closed
 * once none of its answer's bytes has been taken for a request timeout:
 * it does not hold its connection, the answers' memory and the drain at
 * SIGTERM for as long as it stays. */
START_TEST(a_client_that_never_reads_is_closed_after_the_request_timeout) {
  struct opts o;
  opts_default(&o);
  o.request_timeout_ms = 300;
  struct daemon d;
  daemon_start(&d, &o);
  enum { N = 4000 };
  size_t total = 0;
  char *all = pipeline("n", N, &total);
  struct client c = client_open(d.sock);
  size_t sent = 0;
  double t0 = now_s();
  while (!log_has(&d, "read none of its answer")) {
    ssize_t w = send(c.fd, all + sent, total - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0)
      sent += (size_t)w;
    ck_assert_msg(now_s() - t0 < wait_s(30),
                  "a client that read nothing was not closed; the daemon read %zu bytes", sent);
    sleep_ms(20);
  }
  /* the client still holds its end: SIGTERM does not wait for it */
  daemon_stop_ok(&d);
  client_close(&c);
  free(all);
}
END_TEST

/* A client may send its requests and then close its side of the
 * connection (shutdown(SHUT_WR), as `nc -N` does): every whole request
 * is answered, in order, and then the daemon closes.  It used to answer
 * only the one in flight when the end came and drop the rest. */
START_TEST(pipelined_requests_then_a_half_close_are_all_answered) {
  struct daemon d;
  daemon_start(&d, NULL);
  enum { N = 20 };
  struct client c = client_open(d.sock);
  size_t len = 0;
  char *all = pipeline("h", N, &len);
  ck_assert_int_eq(write_all(c.fd, all, len), 0);
  free(all);
  const char ready[] = "GET /v2/models/fmnist/ready HTTP/1.1\r\n\r\n";
  ck_assert_int_eq(write_all(c.fd, ready, sizeof ready - 1), 0);
  ck_assert_int_eq(shutdown(c.fd, SHUT_WR), 0);
  expect_answers_in_order(&c, "h", N);
  struct resp r;
  ck_assert_int_eq(client_read(&c, &r), 0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_ptr_nonnull(strstr(r.body, "\"ready\":true"));
  resp_free(&r);
  ck_assert_int_eq(client_read(&c, &r), -1); /* and then the end */
  resp_free(&r);
  client_close(&c);
  daemon_stop_ok(&d);
}
END_TEST

START_TEST(sigterm_finishes_the_request_in_flight_and_exits_0) {
  struct daemon d;
  daemon_start(&d, NULL);
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

TCase *tailord_lifecycle_case(void) {
  TCase *tc = tcase_create("lifecycle");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, a_broken_config_on_sighup_keeps_the_old_one_serving);
  tcase_add_test(tc, limits_on_connections_and_idle_time);
  tcase_add_test(tc, slow_senders_cannot_hold_the_connections);
  tcase_add_test(tc, a_full_queue_answers_503);
  tcase_add_test(tc, nothing_fits_serves_the_fastest_degraded);
  tcase_add_test(tc, a_late_reader_gets_a_large_answer_whole_and_the_pipelined_ones_after);
  tcase_add_test(tc, a_client_that_reads_no_answer_is_read_no_further);
  tcase_add_test(tc, a_client_that_never_reads_is_closed_after_the_request_timeout);
  tcase_add_test(tc, pipelined_requests_then_a_half_close_are_all_answered);
  tcase_add_test(tc, sigterm_finishes_the_request_in_flight_and_exits_0);
  tcase_add_test(tc, sigterm_during_the_first_search_stops_it_and_exits_0);
  tcase_add_test(tc, check_flag_reports_every_error_and_exits_1);
  tcase_add_test(tc, a_model_that_cannot_be_served_fails_the_start);
  return tc;
}
