/*
 * engine.c - tailorctl run and bench: the engine on a model, or on one
 * subnet of its SuperNet.
 *
 *   tailorctl run MODEL.onnx INPUT.npy... [--subnet SPEC] [--out DIR] [--json]
 *   tailorctl bench MODEL.onnx [--subnet SPEC] [--threads N] [--runs N]
 *                   [--warmup N] [--per-op] [--json]
 *
 * run prints each output (top-5 for a classifier); bench times the plan on
 * a random input and reports its latency and memory, reading
 * /proc/self/statm for the resident memory the plan adds.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "graph.h"
#include "internal.h"
#include "npy.h"
#include "plan.h"
#include "supernet.h"

#define BENCH_WARM_MS 100.0

/* The model's input shapes with unknown dims (a symbolic batch) set to 1. */
static struct tl_shape *default_shapes(const struct tl_graph *g) {
  struct tl_shape *shapes = calloc((size_t)g->n_inputs + 1, sizeof *shapes);
  if (shapes == NULL)
    die("out of memory");
  for (int i = 0; i < g->n_inputs; i++) {
    const struct tl_value *v = &g->values[g->inputs[i]];
    if (v->shape.ndim < 0)
      die("%s: input \"%s\" has no declared shape", g->path, v->name);
    shapes[i] = v->shape;
    for (int d = 0; d < shapes[i].ndim; d++)
      if (shapes[i].dims[d] < 0)
        shapes[i].dims[d] = 1;
  }
  return shapes;
}

/* The plan to run: the whole model at shapes (with values, if not NULL,
 * bound as constants: see tl_plan_options), or subnet (a spec text) of
 * its SuperNet, whose SuperNet is returned in *sn_out (to free after the
 * plan). */
static struct tl_plan *make_plan(struct tl_graph *g, const struct tl_shape *shapes,
                                 const void *const *values, const char *subnet,
                                 struct tl_supernet **sn_out) {
  struct tl_plan *plan = NULL;
  struct tl_error err = {{0}};
  *sn_out = NULL;
  if (subnet == NULL) {
    struct tl_plan_options po = {.input_shapes = shapes, .input_values = values};
    if (tl_plan_build(g, &po, &plan, &err) != 0)
      die("%s", err.msg);
    return plan;
  }
  struct tl_supernet *sn = load_supernet(g);
  struct tl_subnet_spec spec;
  parse_subnet(sn, subnet, &spec);
  struct tl_subnet_plan_options so = {.batch = (int)shapes[0].dims[0]};
  if (tl_subnet_plan(sn, &spec, &so, &plan, &err) != 0)
    die("%s", err.msg);
  *sn_out = sn;
  return plan;
}

static double peak_rss_mib(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return -1.0;
  return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* Resident memory now, in MiB (/proc/self/statm; -1 if unreadable).  The
 * growth across planning and running is what a plan really costs. */
static double resident_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long long size, resident;
  int ok = f != NULL && fscanf(f, "%lld %lld", &size, &resident) == 2;
  if (f != NULL)
    fclose(f);
  return ok ? (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0) : -1.0;
}

/* ----------------------------------------------------------------- run */

static void fmt_shape_json(json_t *arr, const struct tl_shape *s) {
  for (int d = 0; d < s->ndim; d++)
    json_array_append_new(arr, json_integer(s->dims[d]));
}

/* Indices of the k largest of x[0..n), best first. */
static int top_k(const float *x, int64_t n, int k, int64_t *idx) {
  int got = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i]))
      continue;
    int pos = got < k ? got++ : k;
    if (pos == k && x[i] <= x[idx[k - 1]])
      continue;
    if (pos == k)
      pos = k - 1;
    while (pos > 0 && x[idx[pos - 1]] < x[i]) {
      idx[pos] = idx[pos - 1];
      pos--;
    }
    idx[pos] = i;
  }
  return got;
}

static void safe_name(const char *in, char *out, size_t size) {
  size_t i = 0;
  for (; in[i] && i + 1 < size; i++)
    out[i] = (in[i] == '/' || in[i] == '\\' || (in[i] == '.' && i == 0)) ? '_' : in[i];
  out[i] = '\0';
  if (i == 0)
    snprintf(out, size, "output");
}

int cmd_run(int argc, char **argv) {
  static const struct option opts[] = {
      {"out", required_argument, NULL, 'o'},    {"json", no_argument, NULL, 'j'},
      {"subnet", required_argument, NULL, 's'}, {"scale", required_argument, NULL, 'S'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *out_dir = NULL, *subnet = NULL;
  float scale = 1.0f / 255;
  int as_json = 0, c;
  while ((c = getopt_long(argc, argv, "o:js:S:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out_dir = optarg; break;
    case 's': subnet = optarg; break;
    case 'S': scale = parse_scale(optarg); break;
    case 'j': as_json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind < 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  /* the model and its inputs, one .npy each, checked against it */
  const char *model = argv[optind++];
  struct tl_graph *g = load_model(model);
  int n_npy = argc - optind;
  if (n_npy != g->n_inputs)
    die("%s: the model has %d input%s but %d .npy file%s given", model, g->n_inputs,
        g->n_inputs == 1 ? "" : "s", n_npy, n_npy == 1 ? " was" : "s were");

  struct tl_tensor *inputs = calloc((size_t)n_npy + 1, sizeof *inputs);
  struct tl_shape *shapes = calloc((size_t)n_npy + 1, sizeof *shapes);
  if (inputs == NULL || shapes == NULL)
    die("out of memory");
  struct tl_error err = {{0}};
  for (int i = 0; i < n_npy; i++) {
    const char *path = argv[optind + i];
    const struct tl_value *v = &g->values[g->inputs[i]];
    if (tl_npy_read(path, &inputs[i], &err) != 0)
      die("%s", err.msg);
    enum tl_dtype want = v->dtype == TL_DTYPE_UNDEFINED ? TL_DTYPE_FLOAT32 : v->dtype;
    if (inputs[i].dtype == TL_DTYPE_UINT8 && want == TL_DTYPE_FLOAT32)
      uint8_to_float(&inputs[i], scale, path);
    if (inputs[i].dtype != want)
      die("%s: dtype is %s but input \"%s\" of %s is %s", path, tl_dtype_name(inputs[i].dtype),
          v->name, model, tl_dtype_name(want));
    if (v->shape.ndim >= 0) {
      int ok = inputs[i].shape.ndim == v->shape.ndim;
      for (int d = 0; ok && d < v->shape.ndim; d++)
        ok = v->shape.dims[d] < 0 || v->shape.dims[d] == inputs[i].shape.dims[d];
      if (!ok) {
        char a[96], b[96];
        die("%s: shape is %s but input \"%s\" of %s is %s", path,
            tl_shape_str(&inputs[i].shape, a, sizeof a), v->name, model,
            tl_shape_str(&v->shape, b, sizeof b));
      }
    }
    shapes[i] = inputs[i].shape;
  }
  /* Integer inputs carry shapes, axes or indices (Reshape's target, as
   * in ONNX's conformance cases): the plan takes their values from the
   * files given, so that shapes downstream are known when it is built. */
  const void **values = calloc((size_t)n_npy + 1, sizeof *values);
  if (values == NULL)
    die("out of memory");
  for (int i = 0; i < n_npy; i++)
    if (inputs[i].dtype == TL_DTYPE_INT64 || inputs[i].dtype == TL_DTYPE_INT32)
      values[i] = inputs[i].data;
  /* the plan, run once */
  struct tl_supernet *sn = NULL;
  struct tl_plan *plan = make_plan(g, shapes, values, subnet, &sn);
  for (int i = 0; i < n_npy; i++) {
    struct tl_tensor *t = tl_plan_input(plan, i);
    size_t bytes = (size_t)tl_shape_numel(&t->shape) * tl_dtype_size(t->dtype);
    if (bytes)
      memcpy(t->data, inputs[i].data, bytes);
  }
  tl_plan_run(plan);

  /* --out: each output as DIR/<name>.npy */
  if (out_dir != NULL) {
    struct stat st;
    if (stat(out_dir, &st) != 0 && mkdir(out_dir, 0777) != 0)
      die("%s: cannot create: %s", out_dir, strerror(errno));
    for (int i = 0; i < tl_plan_n_outputs(plan); i++) {
      char name[256], path[4096];
      safe_name(tl_plan_output_name(plan, i), name, sizeof name);
      snprintf(path, sizeof path, "%s/%s.npy", out_dir, name);
      if (tl_npy_write(path, tl_plan_output(plan, i), &err) != 0)
        die("%s", err.msg);
    }
  }

  /* the outputs, as text or JSON */
  json_t *root = as_json ? json_object() : NULL;
  json_t *outs = as_json ? json_array() : NULL;
  for (int i = 0; i < tl_plan_n_outputs(plan); i++) {
    const struct tl_tensor *t = tl_plan_output(plan, i);
    const char *name = tl_plan_output_name(plan, i);
    int64_t n = tl_shape_numel(&t->shape);
    char sh[96];
    int classifier =
        t->dtype == TL_DTYPE_FLOAT32 && n >= 5 && t->shape.dims[t->shape.ndim - 1] == n;
    int64_t idx[5];
    int k = classifier ? top_k(t->data, n, 5, idx) : 0;
    if (as_json) {
      json_t *o = json_object(), *shape = json_array(), *data = json_array();
      json_object_set_new(o, "name", json_string(name));
      json_object_set_new(o, "dtype", json_string(tl_dtype_name(t->dtype)));
      fmt_shape_json(shape, &t->shape);
      json_object_set_new(o, "shape", shape);
      if (classifier) {
        json_t *top = json_array();
        for (int j = 0; j < k; j++) {
          json_t *e = json_object();
          json_object_set_new(e, "index", json_integer(idx[j]));
          json_object_set_new(e, "value", json_real(((const float *)t->data)[idx[j]]));
          json_array_append_new(top, e);
        }
        json_object_set_new(o, "top5", top);
      }
      for (int64_t j = 0; j < n && n <= 65536; j++) {
        switch (t->dtype) {
        case TL_DTYPE_FLOAT32:
          json_array_append_new(data, json_real(((const float *)t->data)[j]));
          break;
        case TL_DTYPE_INT64:
          json_array_append_new(data, json_integer(((const int64_t *)t->data)[j]));
          break;
        default: json_array_append_new(data, json_integer(((const uint8_t *)t->data)[j])); break;
        }
      }
      json_object_set_new(o, "data", data);
      json_array_append_new(outs, o);
      continue;
    }
    printf("%s: %s %s\n", name, tl_dtype_name(t->dtype), tl_shape_str(&t->shape, sh, sizeof sh));
    if (classifier) {
      for (int j = 0; j < k; j++)
        printf("  top%d  class %-6lld %.6g\n", j + 1, (long long)idx[j],
               ((const float *)t->data)[idx[j]]);
    } else if (t->dtype == TL_DTYPE_FLOAT32) {
      for (int64_t j = 0; j < n && j < 16; j++)
        printf("%s%.6g", j ? " " : "  ", ((const float *)t->data)[j]);
      printf("%s\n", n > 16 ? " ..." : "");
    }
  }
  if (as_json) {
    json_object_set_new(root, "model", json_string(model));
    json_object_set_new(root, "outputs", outs);
    print_json_as(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
  }
  for (int i = 0; i < n_npy; i++)
    free(inputs[i].data);
  free(inputs);
  free(values);
  free(shapes);
  tl_plan_free(plan);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

/* --------------------------------------------------------------- bench */

/* Linear-interpolated percentile q (0..1) of sorted v[0..n). */
static double percentile(const double *v, int n, double q) {
  if (n == 1)
    return v[0];
  double pos = q * (n - 1);
  int lo = (int)pos;
  if (lo >= n - 1)
    return v[n - 1];
  return v[lo] + (v[lo + 1] - v[lo]) * (pos - lo);
}

struct op_time {
  int step;
  double us;
};

static int cmp_op_time(const void *a, const void *b) {
  double x = ((const struct op_time *)a)->us, y = ((const struct op_time *)b)->us;
  return x > y ? -1 : x < y;
}

static void fill_random(struct tl_tensor *t, unsigned seed) {
  int64_t n = tl_shape_numel(&t->shape);
  uint32_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    if (t->dtype == TL_DTYPE_FLOAT32)
      ((float *)t->data)[i] = (float)((s >> 8) & 0xffff) / 32768.f - 1.f;
    else if (t->dtype == TL_DTYPE_INT64)
      ((int64_t *)t->data)[i] = 0;
  }
}

int cmd_bench(int argc, char **argv) {
  static const struct option opts[] = {
      {"threads", required_argument, NULL, 't'}, {"runs", required_argument, NULL, 'r'},
      {"warmup", required_argument, NULL, 'w'},  {"per-op", no_argument, NULL, 'p'},
      {"json", no_argument, NULL, 'j'},          {"subnet", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  int threads = 1, runs = 50, warmup = 5, per_op = 0, as_json = 0, c;
  const char *subnet = NULL;
  while ((c = getopt_long(argc, argv, "t:r:w:pjs:h", opts, NULL)) != -1) {
    switch (c) {
    case 's': subnet = optarg; break;
    case 't': threads = (int)parse_count("--threads", optarg, 1, 256); break;
    case 'r': runs = (int)parse_count("--runs", optarg, 1, 1000000); break;
    case 'w': warmup = (int)parse_count("--warmup", optarg, 0, 1000000); break;
    case 'p': per_op = 1; break;
    case 'j': as_json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  /* the model and its plan, each timed */
  const char *model = argv[optind];
  tl_engine_set_threads(threads);
  double t0 = tl_now_ms();
  struct tl_graph *g = load_model(model);
  double load_ms = tl_now_ms() - t0;
  struct tl_shape *shapes = default_shapes(g);
  struct tl_supernet *sn = NULL;
  double rss_before = resident_mib();
  t0 = tl_now_ms();
  struct tl_plan *plan = make_plan(g, shapes, NULL, subnet, &sn);
  double plan_ms = tl_now_ms() - t0;
  free(shapes);
  for (int i = 0; i < tl_plan_n_inputs(plan); i++)
    fill_random(tl_plan_input(plan, i), (unsigned)i);

  /* warm-up, then the timed runs (and steps, with --per-op) */
  int n_steps = tl_plan_n_steps(plan);
  double *lat = calloc((size_t)runs, sizeof *lat);
  double *step_us = calloc((size_t)n_steps + 1, sizeof *step_us);
  if (lat == NULL || step_us == NULL)
    die("out of memory");
  double t_measure = tl_now_ms();
  for (int i = 0; i < warmup; i++)
    tl_plan_run(plan);
  /* With threads, warm up for BENCH_WARM_MS too: the threads of a new
   * process take tens of ms to run side by side at full speed (a
   * sleeping core wakes slowly until it has been busy a while). */
  while (threads > 1 && tl_now_ms() - t_measure < BENCH_WARM_MS) {
    tl_plan_run(plan);
    warmup++;
  }
  for (int i = 0; i < runs; i++) {
    double s = tl_now_ms();
    tl_plan_run(plan);
    lat[i] = tl_now_ms() - s;
  }
  double measure_ms = tl_now_ms() - t_measure;
  double plan_rss = resident_mib() - rss_before;
  size_t touched_arena = 0, touched_scratch = 0;
  if (tl_plan_touched_bytes(plan, &touched_arena, &touched_scratch) != 0)
    die("out of memory");
  if (per_op)
    for (int i = 0; i < runs; i++)
      tl_plan_run_timed(plan, step_us);
  /* the figures */
  sort_doubles(lat, (size_t)runs);
  double median = percentile(lat, runs, 0.5), p10 = percentile(lat, runs, 0.1),
         p90 = percentile(lat, runs, 0.9);
  double rss = peak_rss_mib();
  double weights_mib = (double)tl_graph_weight_bytes(g) / (1024.0 * 1024.0);
  double arena_mib = (double)tl_plan_arena_bytes(plan) / (1024.0 * 1024.0);
  double scratch_mib = (double)tl_plan_scratch_bytes(plan) / (1024.0 * 1024.0);
  double gmacs = (double)tl_plan_macs(plan) / 1e9;

  /* the report, as JSON or text */
  if (as_json) {
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model));
    if (subnet != NULL)
      json_object_set_new(o, "subnet", json_string(subnet));
    json_object_set_new(o, "threads", json_integer(threads));
    json_object_set_new(o, "runs", json_integer(runs));
    json_object_set_new(o, "median_ms", json_real(median));
    json_object_set_new(o, "p10_ms", json_real(p10));
    json_object_set_new(o, "p90_ms", json_real(p90));
    json_object_set_new(o, "min_ms", json_real(lat[0]));
    json_object_set_new(o, "peak_rss_mib", json_real(rss));
    json_object_set_new(o, "weights_mib", json_real(weights_mib));
    json_object_set_new(o, "arena_mib", json_real(arena_mib));
    json_object_set_new(o, "gmacs", json_real(gmacs));
    json_object_set_new(o, "load_ms", json_real(load_ms));
    json_object_set_new(o, "plan_ms", json_real(plan_ms));
    json_object_set_new(o, "measure_ms", json_real(measure_ms));
    json_object_set_new(o, "scratch_mib", json_real(scratch_mib));
    json_object_set_new(o, "plan_rss_mib", json_real(plan_rss));
    json_object_set_new(o, "touched_arena_bytes", json_integer((json_int_t)touched_arena));
    json_object_set_new(o, "touched_scratch_bytes", json_integer((json_int_t)touched_scratch));
    if (per_op) {
      json_t *ops = json_array();
      for (int i = 0; i < n_steps; i++) {
        struct tl_step_info info;
        tl_plan_step_info(plan, i, &info);
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(info.name));
        json_object_set_new(e, "kind", json_string(info.kind));
        json_object_set_new(e, "ms", json_real(step_us[i] / runs / 1e3));
        json_object_set_new(e, "macs", json_integer(info.macs));
        json_array_append_new(ops, e);
      }
      json_object_set_new(o, "per_op", ops);
    }
    print_json_as(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
  } else {
    printf("model        %s\n", model);
    if (subnet != NULL)
      printf("subnet       %s\n", subnet);
    printf("threads      %d\n", threads);
    printf("runs         %d (after %d warm-up)\n", runs, warmup);
    printf("latency ms   median %.3f  p10 %.3f  p90 %.3f  min %.3f\n", median, p10, p90, lat[0]);
    printf("compute      %.3f GMAC, %.1f GFLOP/s at the median\n", gmacs,
           2 * gmacs / (median / 1e3));
    printf("memory MiB   peak RSS %.1f  weights %.1f  arena %.1f  scratch %.1f\n", rss, weights_mib,
           arena_mib, scratch_mib);
    printf("             resident growth from planning and running %.1f\n", plan_rss);
    printf("setup ms     load %.1f  plan %.1f\n", load_ms, plan_ms);
    if (per_op) {
      struct op_time *ot = calloc((size_t)n_steps + 1, sizeof *ot);
      if (ot == NULL)
        die("out of memory");
      double total = 0;
      for (int i = 0; i < n_steps; i++) {
        ot[i] = (struct op_time){i, step_us[i] / runs};
        total += ot[i].us;
      }
      qsort(ot, (size_t)n_steps, sizeof *ot, cmp_op_time);
      printf("\n%8s %6s %8s  %-34s %s\n", "ms", "%", "GFLOP/s", "kind", "node");
      for (int i = 0; i < n_steps; i++) {
        struct tl_step_info info;
        tl_plan_step_info(plan, ot[i].step, &info);
        double gf = ot[i].us > 0 ? 2.0 * (double)info.macs / (ot[i].us * 1e3) : 0;
        printf("%8.3f %6.2f %8.1f  %-34s %s\n", ot[i].us / 1e3, 100 * ot[i].us / total, gf,
               info.kind, info.name);
      }
      free(ot);
    }
  }
  free(lat);
  free(step_us);
  tl_plan_free(plan);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}
