/*
 * infer.c - tailorctl infer: sends images from a .npy file to a running
 * tailord, once (prints the top-5), or as a load (--runs, --clients,
 * --rate) with a latency summary and a per-request trace (--trace); in the
 * binary extension on keep-alive connections, or as JSON tensors
 * (--json-requests) and a connection per request
 * (--connection-per-request), as simple clients send them.  Each client
 * thread has a connection of its own (client.c).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "internal.h"
#include "npy.h"

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
    http_exchange(&c, "POST", l->path,
                  l->json_requests ? "application/json" : "application/octet-stream", extra, body,
                  n, &r);
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
  json_t *meta = get_json(t, path, path);
  json_t *in = json_array_get(json_object_get(meta, "inputs"), 0);
  json_t *out = json_array_get(json_object_get(meta, "outputs"), 0);
  const char *dt = json_string_value(json_object_get(in, "datatype"));
  *shape = json_deep_copy(json_object_get(in, "shape"));
  if (in == NULL || dt == NULL || *shape == NULL || strcmp(dt, "FP32") != 0)
    die("model \"%s\": its first input is not an FP32 tensor", t->model);
  if (json_string_value(json_object_get(out, "name")) == NULL)
    die("model \"%s\": its metadata names no output", t->model);
  snprintf(name, name_size, "%s", json_str(in, "name"));
  snprintf(out_name, out_size, "%s", json_str(out, "name"));
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
  if (x.dtype == TL_DTYPE_UINT8)
    uint8_to_float(&x, scale, path);
  *n = (long)((size_t)count / image_len);
  return x.data;
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
  /* the options */
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
  /* the model's input and the images */
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

  /* the load's shared state, and its clients run to the end */
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

  /* the outcomes; --trace */
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
  sort_doubles(lat, (size_t)ok);

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

  /* free */
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
