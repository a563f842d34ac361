/*
 * swap.c - tailord changing subnets under load: hot swaps every 10 ms under
 * 8 clients (nothing dropped, every answer the logits of the subnet it
 * names), a client in a tight loop that gets every answer in order, and
 * the adaptation to a CPU whose frequency halves and recovers (checked in
 * the daemon's own event log: down at once, up after the hysteresis).
 */
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "store.h"
#include "testutil.h"

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
      note_first(sc->first_problem, sizeof sc->first_problem, "client %d: cannot connect",
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
      note_first(sc->first_problem, sizeof sc->first_problem,
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
      note_first(sc->first_problem, sizeof sc->first_problem, "request %s: %d %s", id, r.status,
                 r.body);
    } else if (storm_parse(&r, id, subnet, sizeof subnet, logits, why, sizeof why) != 0) {
      sc->malformed++;
      note_first(sc->first_problem, sizeof sc->first_problem, "%s", why);
    } else {
      int m = storm_member(s, subnet);
      if (m < 0) {
        sc->unknown_subnet++;
        note_first(sc->first_problem, sizeof sc->first_problem,
                   "request %s: served by \"%s\", not a frontier member", id, subnet);
      } else {
        sc->served[m]++;
        sc->changes += last >= 0 && m != last;
        last = m;
        if (memcmp(logits, s->ref[m][image], sizeof logits) != 0) {
          sc->wrong_logits++;
          note_first(sc->first_problem, sizeof sc->first_problem,
                     "request %s (image %d): named %s, logits[0] %.9g, that member gives %.9g", id,
                     image, subnet, (double)logits[0], (double)s->ref[m][image][0]);
        }
      }
    }
    resp_free(&r);
  }
  if (c.fd >= 0 && c.len != 0) {
    sc->malformed++;
    note_first(sc->first_problem, sizeof sc->first_problem,
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
      note_first(p->first_problem, sizeof p->first_problem, "%s",
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
  json_t *list = get_ok(&d, "/v2/models/fmnist/subnets");
  ck_assert(json_is_false(json_object_get(list, "provisional")));
  s.n = (int)json_array_size(json_object_get(list, "subnets"));
  json_decref(list);
  ck_assert_int_eq(s.n, warm.n);
  ck_assert_int_ge(s.n, 2);
  ck_assert_int_le(s.n, STORM_MEMBERS);

  /* each member's logits for each image, pinned, one request at a time */
  struct client c = client_open(d.sock);
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
  struct daemon d;
  daemon_start(&d, NULL);
  struct client c = client_open(d.sock);
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
    struct client h = client_open(d.sock);
    ck_assert_int_eq(binary_infer(&h, "fmnist", 3, "warm", &r), 0);
    resp_free(&r);
    served++;
    char msg[BINARY_MSG_MAX];
    ck_assert_int_eq(write_all(h.fd, msg, binary_message(msg, "fmnist", 3, "gone")), 0);
    client_close(&h);
  }
  json_t *v = get_ok(&d, "/v2/health/live");
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

TCase *tailord_swap_case(void) {
  TCase *tc = tcase_create("swap");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, hot_swap_every_10_ms_drops_nothing_and_serves_what_it_names);
  tcase_add_test(tc, a_client_in_a_tight_loop_gets_every_answer_in_order);
  tcase_add_test(tc, adaptation_moves_down_at_once_and_up_after_the_hysteresis);
  return tc;
}
