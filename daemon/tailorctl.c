/*
 * tailorctl - the command line front of tailor's engine.
 *
 *   tailorctl run MODEL.onnx INPUT.npy... [--subnet SPEC] [--out DIR] [--json]
 *   tailorctl bench MODEL.onnx [--subnet SPEC] [--threads N] [--runs N]
 *                   [--warmup N] [--per-op] [--json]
 *   tailorctl inspect MODEL.onnx [--why] [--spread N] [--json]
 *   tailorctl eval MODEL.onnx --calib X.npy [Y.npy] [--subnet SPEC]...
 *                  [--recalib X.npy] [--json]
 *   tailorctl export MODEL.onnx --subnet SPEC -o FILE.onnx [--recalib X.npy]
 *   tailorctl profile|predict|search ...       (ctl_predict.c)
 *   tailorctl status|subnets|events|pin|infer  (ctl_socket.c, clients of tailord)
 *
 * Every failure prints one line "tailorctl: <what and where>" on stderr and
 * exits with status 1; usage errors exit with 2.
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
#include <time.h>
#include <unistd.h>

#include "calib.h"
#include "clock.h"
#include "ctl.h"
#include "error.h"
#include "export.h"
#include "graph.h"
#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "supernet.h"

#define BENCH_WARM_MS 100.0

void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tailorctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(EXIT_FAILURE);
}

void usage(FILE *f) {
  fputs(
      "usage: tailorctl run MODEL.onnx INPUT.npy... [--subnet SPEC] [--out DIR] [--json]\n"
      "       tailorctl bench MODEL.onnx [--subnet SPEC] [--threads N] [--runs N] [--warmup N]\n"
      "                       [--per-op] [--json]\n"
      "       tailorctl inspect MODEL.onnx [--why] [--spread N] [--json]\n"
      "       tailorctl eval MODEL.onnx --calib X.npy [Y.npy] [--subnet SPEC]... [--recalib "
      "X.npy]\n"
      "                      [--recalib-images N] [--scale S] [--batch N] [--threads N] [--json]\n"
      "       tailorctl export MODEL.onnx --subnet SPEC -o FILE.onnx [--recalib X.npy\n"
      "                        [--recalib-images N] [--scale S]]\n"
      "       tailorctl profile MODEL.onnx [--db FILE] [--threads N]\n"
      "                         [--from OTHER.db [--from-threads N] --anchors N] [--json]\n"
      "       tailorctl predict MODEL.onnx --subnet SPEC... [--db FILE] [--threads N] [--json]\n"
      "       tailorctl search MODEL.onnx --calib X.npy [Y.npy] [--k N] [--db FILE] [--threads N]\n"
      "                        [--jobs N] [--time-budget S] [--scale S] [--json]\n"
      "       tailorctl status [--model NAME] [--socket PATH] [--json]\n"
      "       tailorctl subnets [--model NAME] [--socket PATH] [--json]\n"
      "       tailorctl events [--limit N] [--model NAME] [--socket PATH] [--json]\n"
      "       tailorctl pin SPEC|auto [--model NAME] [--socket PATH] [--json]\n"
      "       tailorctl infer IMAGES.npy [--runs N] [--clients N] [--rate HZ]\n"
      "                       [--timeout-us T] [--scale S] [--trace FILE] [--json-requests]\n"
      "                       [--connection-per-request] [--start-monotonic-ms MS]\n"
      "                       [--model NAME] [--socket PATH] [--json]\n"
      "\n"
      "run      runs the model (or one subnet of its SuperNet) on one .npy per graph\n"
      "         input, in order, and prints each output (top-5 for a classifier);\n"
      "         --out DIR writes each output as DIR/<output name>.npy\n"
      "bench    times the model on a random input: median/p10/p90 latency and peak\n"
      "         resident memory; --per-op shows where the time goes\n"
      "inspect  the SuperNet found in the model: stages, residual blocks, elastic\n"
      "         widths and resolutions, the number of subnets, cost of the extremes;\n"
      "         --why says, for each residual Add and conv that is not elastic, why\n"
      "         not; --spread N lists N subnets spread over the space by cost (the\n"
      "         smallest, the largest, and random ones nearest to even steps of\n"
      "         log MACs between them)\n"
      "eval     top-1 accuracy of subnets on labelled images (X: N x C x H x W\n"
      "         float32, or uint8 times --scale, default 1/255; Y: N int64/int32),\n"
      "         or without Y their top-1 agreement with the largest subnet;\n"
      "         without --subnet, a table across width, depth and resolution;\n"
      "         --recalib X.npy recomputes BatchNorm statistics per subnet first (in a\n"
      "         model whose BN was folded into its convs: the convs' output statistics)\n"
      "export   writes one subnet as a standalone ONNX model that any runtime runs:\n"
      "         skipped blocks gone, weights cut to what it uses, the native input\n"
      "         resized first when SPEC's side is smaller; --recalib X.npy writes\n"
      "         BatchNorm statistics recalibrated on the first N images (default\n"
      "         2000) into it (into the convs' weights when BN was folded)\n"
      "profile  times every op signature of the model's subnet space on this device\n"
      "         (what the cache lacks) and keeps them in the cache (--db, default\n"
      "         $TAILOR_DB or ~/.cache/tailor/cache.db); --from maps another cache's\n"
      "         table here from N anchor ops measured here instead\n"
      "predict  predicted latency and memory of subnets, from the cached table\n"
      "search   the frontier: at most K subnets, Pareto in predicted latency and\n"
      "         accuracy on the calibration data (agreement without Y), kept in the\n"
      "         cache (a second search with the same model, data and device only\n"
      "         loads it)\n",
      f);
  fputs("\n"
        "status, subnets, events, pin and infer are clients of a running tailord, on\n"
        "--socket (default $TAILOR_SOCKET, else /run/tailord/tailord.sock), for --model\n"
        "(default: the one model it serves):\n"
        "status   ready or not; per model the subnet serving and why, its latency\n"
        "         predicted now against the budget, the device state\n"
        "subnets  the frontier: predicted latency (idle and now), memory, accuracy, fit\n"
        "events   the last N switches of the active subnet (default 20), with reasons\n"
        "pin      serves SPEC (a frontier member) from now on; auto gives the choice\n"
        "         back to the controller\n"
        "infer    sends images from IMAGES.npy (float32, or uint8 times --scale) and\n"
        "         prints the top-5 and the subnet that served; with --runs N, N requests\n"
        "         (image i mod count) from --clients connections, at --rate HZ if\n"
        "         given, and a summary: latency quantiles, outcomes, requests per\n"
        "         subnet; --trace FILE writes one JSON line per request; --timeout-us\n"
        "         is each request's deadline.  Requests use the binary tensor extension\n"
        "         on keep-alive connections; --json-requests sends JSON tensors instead,\n"
        "         --connection-per-request opens a connection for each request and\n"
        "         closes it after the answer; --start-monotonic-ms starts the load at\n"
        "         MS on CLOCK_MONOTONIC, so that loads from several processes line up.\n"
        "         Exits 1 if a request goes unanswered\n"
        "\n"
        "Every command that builds a SuperNet takes --widths LIST (ascending fractions,\n"
        "default .25,.5,.75,1) and --res-steps N (resolutions from 50 % to 100 % of the\n"
        "native side in N steps, default 4): the choices of the search space.\n"
        "\n"
        "A subnet SPEC reads \"r=24 d=2,1,2 w=1,.5,.75\": input side, residual blocks\n"
        "kept per stage, width kept per stage (see inspect for what is offered).\n",
        f);
}

long parse_count(const char *opt, const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < min || v > max) {
    fprintf(stderr, "tailorctl: %s needs a whole number from %ld to %ld, not \"%s\"\n", opt, min,
            max, s);
    exit(EXIT_USAGE);
  }
  return v;
}

double parse_positive(const char *opt, const char *what, const char *s, double max) {
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v > 0 && v <= max)) {
    fprintf(stderr, "tailorctl: %s needs %s, > 0 and <= %g, not \"%s\"\n", opt, what, max, s);
    exit(EXIT_USAGE);
  }
  return v;
}

const char *take_labels_file(int argc, char **argv) {
  if (optind >= argc || argv[optind][0] == '-')
    return NULL;
  size_t n = strlen(argv[optind]);
  if (n < 4 || strcmp(argv[optind] + n - 4, ".npy") != 0)
    return NULL; /* the model, say */
  return argv[optind++];
}

float parse_scale(const char *s) {
  char *end;
  float v = strtof(s, &end);
  if (*end || end == s || !(v > 0)) {
    fprintf(stderr, "tailorctl: --scale needs a positive number, not \"%s\"\n", s);
    exit(EXIT_USAGE);
  }
  return v;
}

struct tl_graph *load_model(const char *path) {
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  if (tl_onnx_load(path, &g, &err) != 0)
    die("%s", err.msg);
  return g;
}

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

/* The search space's choices, from --widths and --res-steps (any
 * command); zeros are the library's defaults. */
static struct tl_supernet_options space;

/* "--widths .25,.5,1": ascending fractions in (0, 1]. */
static void parse_widths(const char *s) {
  const char *p = s;
  space.n_widths = 0;
  while (*p) {
    char *end;
    errno = 0;
    float w = strtof(p, &end);
    if (end == p || errno || !(w > 0 && w <= 1) || space.n_widths == TL_SN_MAX_CHOICES ||
        (space.n_widths > 0 && w <= space.widths[space.n_widths - 1]) ||
        (*end != ',' && *end != '\0')) {
      fprintf(stderr,
              "tailorctl: --widths needs up to %d ascending fractions in (0, 1] separated by "
              "commas, not \"%s\"\n",
              TL_SN_MAX_CHOICES, s);
      exit(EXIT_USAGE);
    }
    space.widths[space.n_widths++] = w;
    p = *end == ',' ? end + 1 : end;
  }
  if (space.n_widths == 0) {
    fprintf(stderr, "tailorctl: --widths is empty\n");
    exit(EXIT_USAGE);
  }
}

/* Takes --widths and --res-steps out of argv (they apply to whichever
 * command builds a SuperNet); returns the new argc. */
static int take_space_options(int argc, char **argv) {
  int out = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    int widths = strncmp(a, "--widths", 8) == 0 && (a[8] == '\0' || a[8] == '=');
    int steps = strncmp(a, "--res-steps", 11) == 0 && (a[11] == '\0' || a[11] == '=');
    if (!widths && !steps) {
      argv[out++] = argv[i];
      continue;
    }
    const char *eq = strchr(a, '=');
    if (eq != NULL)
      val = eq + 1;
    else if (i + 1 < argc)
      val = argv[++i];
    else {
      fprintf(stderr, "tailorctl: %s needs a value\n", a);
      exit(EXIT_USAGE);
    }
    if (widths)
      parse_widths(val);
    else
      space.res_steps = (int)parse_count("--res-steps", val, 1, TL_SN_MAX_CHOICES - 1);
  }
  argv[out] = NULL;
  return out;
}

struct tl_supernet *load_supernet(struct tl_graph *g) {
  struct tl_supernet *sn = NULL;
  struct tl_error err = {{0}};
  if (tl_supernet_build(g, &space, &sn, &err) != 0)
    die("%s", err.msg);
  return sn;
}

void parse_subnet(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec) {
  struct tl_error err = {{0}};
  if (tl_subnet_parse(sn, text, spec, &err) != 0)
    die("%s", err.msg);
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

static int cmd_run(int argc, char **argv) {
  static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                       {"json", no_argument, NULL, 'j'},
                                       {"subnet", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *out_dir = NULL, *subnet = NULL;
  int as_json = 0, c;
  while ((c = getopt_long(argc, argv, "o:js:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out_dir = optarg; break;
    case 's': subnet = optarg; break;
    case 'j': as_json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind < 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
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
  struct tl_supernet *sn = NULL;
  struct tl_plan *plan = make_plan(g, shapes, values, subnet, &sn);
  for (int i = 0; i < n_npy; i++) {
    struct tl_tensor *t = tl_plan_input(plan, i);
    size_t bytes = (size_t)tl_shape_numel(&t->shape) * tl_dtype_size(t->dtype);
    if (bytes)
      memcpy(t->data, inputs[i].data, bytes);
  }
  tl_plan_run(plan);

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
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (s == NULL)
      die("out of memory");
    puts(s);
    free(s);
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

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

static int cmd_bench(int argc, char **argv) {
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
  qsort(lat, (size_t)runs, sizeof *lat, cmp_double);
  double median = percentile(lat, runs, 0.5), p10 = percentile(lat, runs, 0.1),
         p90 = percentile(lat, runs, 0.9);
  double rss = peak_rss_mib();
  double weights_mib = (double)tl_graph_weight_bytes(g) / (1024.0 * 1024.0);
  double arena_mib = (double)tl_plan_arena_bytes(plan) / (1024.0 * 1024.0);
  double scratch_mib = (double)tl_plan_scratch_bytes(plan) / (1024.0 * 1024.0);
  double gmacs = (double)tl_plan_macs(plan) / 1e9;

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
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (s == NULL)
      die("out of memory");
    puts(s);
    free(s);
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

/* ------------------------------------------------------------- inspect */

static json_t *cost_json(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                         int64_t *macs, int64_t *params) {
  struct tl_error err = {{0}};
  char text[512];
  if (tl_subnet_cost(sn, spec, macs, params, &err) != 0)
    die("%s", err.msg);
  json_t *o = json_object();
  json_object_set_new(o, "subnet", json_string(tl_subnet_format(sn, spec, text, sizeof text)));
  json_object_set_new(o, "macs", json_integer(*macs));
  json_object_set_new(o, "params", json_integer(*params));
  return o;
}

static void format_width(float w, char *buf, size_t size) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%g", (double)w);
  snprintf(buf, size, "%s", strncmp(tmp, "0.", 2) == 0 ? tmp + 1 : tmp);
}

#define SPREAD_MAX 64
#define SPREAD_DRAWS 40 /* random specs drawn per subnet wanted */

/* n subnets spread over the space by cost: the smallest, the largest and
 * between them the random specs whose MACs come nearest to n - 2 targets
 * evenly spaced on a log scale (for benchmarks that need subnets of every
 * size without a searched frontier).  Ascending by MACs; returns how
 * many (fewer when the space has fewer distinct costs). */
static int spread_subnets(const struct tl_supernet *sn, int n, struct tl_subnet_spec *specs,
                          int64_t *macs) {
  struct tl_error err = {{0}};
  const int draws = SPREAD_DRAWS * n;
  struct tl_subnet_spec *pool = malloc((size_t)draws * sizeof *pool);
  int64_t *cost = malloc((size_t)draws * sizeof *cost);
  uint8_t *used = calloc((size_t)draws, 1);
  if (pool == NULL || cost == NULL || used == NULL)
    die("out of memory");
  uint64_t seed = 1;
  for (int i = 0; i < draws; i++) {
    int64_t params;
    tl_subnet_random(sn, &seed, &pool[i]);
    if (tl_subnet_cost(sn, &pool[i], &cost[i], &params, &err) != 0)
      die("%s", err.msg);
  }
  int64_t params;
  tl_subnet_smallest(sn, &specs[0]);
  tl_subnet_largest(sn, &specs[n - 1]);
  if (tl_subnet_cost(sn, &specs[0], &macs[0], &params, &err) != 0 ||
      tl_subnet_cost(sn, &specs[n - 1], &macs[n - 1], &params, &err) != 0)
    die("%s", err.msg);
  int got = 1;
  const double lo = log((double)macs[0]), hi = log((double)macs[n - 1]);
  for (int j = 1; j < n - 1; j++) {
    const double target = lo + (hi - lo) * j / (n - 1);
    int best = -1;
    for (int i = 0; i < draws; i++) {
      int dup = used[i] || cost[i] <= macs[got - 1] || cost[i] >= macs[n - 1];
      if (!dup && (best < 0 ||
                   fabs(log((double)cost[i]) - target) < fabs(log((double)cost[best]) - target)))
        best = i;
    }
    if (best < 0)
      continue;
    used[best] = 1;
    specs[got] = pool[best];
    macs[got++] = cost[best];
  }
  specs[got] = specs[n - 1];
  macs[got] = macs[n - 1];
  got += macs[got] != macs[0];
  free(pool);
  free(cost);
  free(used);
  return got;
}

static int cmd_inspect(int argc, char **argv) {
  static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                       {"why", no_argument, NULL, 'w'},
                                       {"spread", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int as_json = 0, why = 0, spread = 0, c;
  while ((c = getopt_long(argc, argv, "jws:h", opts, NULL)) != -1) {
    switch (c) {
    case 'j': as_json = 1; break;
    case 'w': why = 1; break;
    case 's': spread = (int)parse_count("--spread", optarg, 2, SPREAD_MAX); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *model = argv[optind];
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  struct tl_subnet_spec big, small_;
  tl_subnet_largest(sn, &big);
  tl_subnet_smallest(sn, &small_);
  int64_t big_macs, big_params, small_macs, small_params;
  json_t *jbig = cost_json(sn, &big, &big_macs, &big_params);
  json_t *jsmall = cost_json(sn, &small_, &small_macs, &small_params);
  int total_blocks = 0;
  for (int s = 0; s < info.n_stages; s++)
    total_blocks += info.blocks[s];
  struct tl_subnet_spec spread_specs[SPREAD_MAX];
  int64_t spread_macs[SPREAD_MAX];
  int n_spread = spread > 0 ? spread_subnets(sn, spread, spread_specs, spread_macs) : 0;

  if (as_json) {
    json_t *o = json_object(), *stages = json_array(), *el = json_object();
    json_t *widths = json_array(), *res = json_array(), *groups = json_array();
    for (int s = 0; s < info.n_stages; s++) {
      json_t *st = json_object();
      json_object_set_new(st, "blocks", json_integer(info.blocks[s]));
      json_object_set_new(st, "width_groups", json_integer(info.width_groups[s]));
      json_array_append_new(stages, st);
    }
    for (int i = 0; i < info.n_widths; i++)
      json_array_append_new(widths, json_real(info.widths[i]));
    for (int i = 0; i < info.n_res; i++)
      json_array_append_new(res, json_integer(info.res[i]));
    for (int i = 0; i < info.n_width_groups; i++) {
      const char *prod, *cons;
      int64_t ch;
      int stage;
      tl_supernet_width_group(sn, i, &prod, &cons, &ch, &stage);
      json_t *wg = json_object();
      json_object_set_new(wg, "producer", json_string(prod));
      json_object_set_new(wg, "consumer", json_string(cons));
      json_object_set_new(wg, "channels", json_integer(ch));
      json_object_set_new(wg, "stage", json_integer(stage + 1));
      json_array_append_new(groups, wg);
    }
    json_object_set_new(el, "depth", json_boolean(total_blocks > 0));
    json_object_set_new(el, "width", json_boolean(info.n_width_groups > 0));
    json_object_set_new(el, "resolution", json_boolean(info.n_res > 1));
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "stages", stages);
    json_object_set_new(o, "elastic", el);
    json_object_set_new(o, "widths", widths);
    json_object_set_new(o, "resolutions", res);
    json_object_set_new(o, "width_groups", groups);
    json_object_set_new(o, "space_size", json_real(info.space_size));
    json_object_set_new(o, "largest", jbig);
    json_object_set_new(o, "smallest", jsmall);
    if (spread > 0) {
      json_t *arr = json_array();
      int64_t macs, params;
      for (int i = 0; i < n_spread; i++)
        json_array_append_new(arr, cost_json(sn, &spread_specs[i], &macs, &params));
      json_object_set_new(o, "spread", arr);
    }
    if (why) {
      json_t *notes = json_array();
      for (int i = 0; i < tl_supernet_n_notes(sn); i++)
        json_array_append_new(notes, json_string(tl_supernet_note(sn, i)));
      json_object_set_new(o, "not_elastic", notes);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (text == NULL)
      die("out of memory");
    puts(text);
    free(text);
    json_decref(o);
  } else {
    printf("model        %s\n", model);
    printf("stages       %d\n", info.n_stages);
    for (int s = 0; s < info.n_stages; s++)
      printf("  stage %-3d  %d skippable residual block%s, %d elastic channel group%s\n", s + 1,
             info.blocks[s], info.blocks[s] == 1 ? "" : "s", info.width_groups[s],
             info.width_groups[s] == 1 ? "" : "s");
    printf("depth        %s\n",
           total_blocks > 0 ? "elastic (keep the first d blocks of a stage)" : "fixed");
    printf("width        ");
    if (info.n_width_groups > 0) {
      for (int i = 0; i < info.n_widths; i++) {
        char w[32];
        format_width(info.widths[i], w, sizeof w);
        printf("%s%s", i ? " " : "", w);
      }
      printf(" of %d channel groups\n", info.n_width_groups);
    } else {
      printf("fixed\n");
    }
    printf("resolution   ");
    for (int i = 0; i < info.n_res; i++)
      printf("%s%d", i ? " " : "", info.res[i]);
    printf("%s\n", info.n_res > 1 ? "" : " (fixed)");
    printf("subnets      %.6g\n", info.space_size);
    printf("largest      %-40s %8.2f MMAC %8.3f M params\n",
           json_string_value(json_object_get(jbig, "subnet")), big_macs / 1e6, big_params / 1e6);
    printf("smallest     %-40s %8.2f MMAC %8.3f M params\n",
           json_string_value(json_object_get(jsmall, "subnet")), small_macs / 1e6,
           small_params / 1e6);
    printf("\nchannel groups (producer -> consumer, channels, stage)\n");
    for (int i = 0; i < info.n_width_groups; i++) {
      const char *prod, *cons;
      int64_t ch;
      int stage;
      tl_supernet_width_group(sn, i, &prod, &cons, &ch, &stage);
      printf("  %s -> %s  %lld  %d\n", prod, cons, (long long)ch, stage + 1);
    }
    if (spread > 0) {
      printf("\nspread by cost (%d subnets)\n", n_spread);
      for (int i = 0; i < n_spread; i++) {
        char text[512];
        printf("  %-44s %8.2f MMAC\n", tl_subnet_format(sn, &spread_specs[i], text, sizeof text),
               spread_macs[i] / 1e6);
      }
    }
    if (why) {
      printf("\nnot elastic (%d)\n", tl_supernet_n_notes(sn));
      for (int i = 0; i < tl_supernet_n_notes(sn); i++)
        printf("  %s\n", tl_supernet_note(sn, i));
    }
    if (total_blocks == 0 && info.n_width_groups == 0)
      printf("\nNo elastic depth or width: tailor looks for residual blocks whose skip is the\n"
             "block's input (x + f(x)) and for dense convs whose channels stay inside their\n"
             "block.  Export the model in eval mode, e.g. torch.onnx.export(model.eval(), x,\n"
             "\"m.onnx\", opset_version=13), and see --why for what each Add and conv lacks.\n");
    json_decref(jbig);
    json_decref(jsmall);
  }
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

/* ---------------------------------------------------------------- eval */

/* The default table: the largest, then each dimension shrunk alone (every
 * width, depth and resolution choice), then each shrunk together, down to
 * the smallest. */
static int default_table(const struct tl_supernet *sn, struct tl_subnet_spec *specs, int max) {
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  struct tl_subnet_spec big;
  tl_subnet_largest(sn, &big);
  int n = 0;
  specs[n++] = big;
  for (int w = info.n_widths - 2; w >= 0 && info.n_width_groups > 0 && n < max; w--) {
    struct tl_subnet_spec s = big;
    for (int k = 0; k < info.n_stages; k++)
      if (info.width_groups[k] > 0)
        s.width[k] = w;
    specs[n++] = s;
  }
  int maxd = 0;
  for (int k = 0; k < info.n_stages; k++)
    maxd = info.blocks[k] > maxd ? info.blocks[k] : maxd;
  for (int d = maxd - 1; d >= 0 && n < max; d--) {
    struct tl_subnet_spec s = big;
    for (int k = 0; k < info.n_stages; k++)
      s.depth[k] = d < info.blocks[k] ? d : info.blocks[k];
    specs[n++] = s;
  }
  for (int r = info.n_res - 2; r >= 0 && n < max; r--) {
    struct tl_subnet_spec s = big;
    s.res = info.res[r];
    specs[n++] = s;
  }
  /* Everything shrunk together, step by step. */
  int steps = info.n_widths > info.n_res ? info.n_widths : info.n_res;
  for (int t = 1; t < steps && n < max; t++) {
    struct tl_subnet_spec s = big;
    int wi = info.n_widths - 1 - t, ri = info.n_res - 1 - t;
    for (int k = 0; k < info.n_stages; k++) {
      if (info.width_groups[k] > 0)
        s.width[k] = wi > 0 ? wi : 0;
      int d = info.blocks[k] - t;
      s.depth[k] = d > 0 ? d : 0;
    }
    s.res = info.res[ri > 0 ? ri : 0];
    specs[n++] = s;
  }
  if (n < max)
    tl_subnet_smallest(sn, &specs[n++]);
  return n;
}

static int cmd_eval(int argc, char **argv) {
  static const struct option opts[] = {
      {"calib", required_argument, NULL, 'c'},   {"subnet", required_argument, NULL, 's'},
      {"recalib", required_argument, NULL, 'r'}, {"recalib-images", required_argument, NULL, 'n'},
      {"scale", required_argument, NULL, 'S'},   {"batch", required_argument, NULL, 'b'},
      {"threads", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *calib_x = NULL, *calib_y = NULL, *recalib = NULL;
  const char *subnets[64];
  int n_subnets = 0, as_json = 0, batch = 100, threads = 1, c;
  long recalib_images = 2000;
  float scale = 0.f;
  while ((c = getopt_long(argc, argv, "c:s:r:n:S:b:t:jh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      calib_x = optarg;
      calib_y = take_labels_file(argc, argv);
      break;
    case 's':
      if (n_subnets == 64) {
        fprintf(stderr, "tailorctl: at most 64 --subnet\n");
        return EXIT_USAGE;
      }
      subnets[n_subnets++] = optarg;
      break;
    case 'r': recalib = optarg; break;
    case 'n': recalib_images = parse_count("--recalib-images", optarg, 1, 100000000); break;
    case 'S': scale = parse_scale(optarg); break;
    case 'b': batch = (int)parse_count("--batch", optarg, 1, 4096); break;
    case 't': threads = (int)parse_count("--threads", optarg, 1, 256); break;
    case 'j': as_json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1 || calib_x == NULL) {
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *model = argv[optind];
  tl_engine_set_threads(threads);
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_error err = {{0}};
  struct tl_calib data, rdata;
  if (tl_calib_load(calib_x, calib_y, scale, &data, &err) != 0 ||
      tl_calib_agreement_labels(sn, &data, batch, NULL, &err) != 0)
    die("%s", err.msg);
  memset(&rdata, 0, sizeof rdata);
  if (recalib != NULL) {
    /* Recalibration needs images only; labels are not read. */
    struct tl_tensor x;
    if (tl_npy_read(recalib, &x, &err) != 0)
      die("%s", err.msg);
    if ((x.dtype != TL_DTYPE_FLOAT32 && x.dtype != TL_DTYPE_UINT8) || x.shape.ndim != 4)
      die("%s: recalibration images must be N x C x H x W float32 or uint8", recalib);
    rdata.x = x;
    rdata.n = x.shape.dims[0];
    rdata.scale = x.dtype == TL_DTYPE_UINT8 ? (scale > 0 ? scale : 1.f / 255.f) : 1.f;
  }
  struct tl_subnet_spec specs[64];
  int n = n_subnets;
  for (int i = 0; i < n_subnets; i++)
    parse_subnet(sn, subnets[i], &specs[i]);
  if (n == 0)
    n = default_table(sn, specs, 64);
  if (!as_json)
    printf("%-44s %9s %10s\n", "subnet", tl_calib_metric(&data), "MMAC");
  for (int i = 0; i < n; i++) {
    struct tl_bn_stats *bn = NULL;
    if (recalib != NULL &&
        tl_subnet_recalibrate(sn, &specs[i], &rdata, recalib_images, 100, NULL, &bn, &err) != 0)
      die("%s", err.msg);
    double acc;
    if (tl_subnet_accuracy(sn, &specs[i], bn, &data, 0, 0, batch, NULL, &acc, &err) != 0)
      die("%s", err.msg);
    int64_t macs, params;
    if (tl_subnet_cost(sn, &specs[i], &macs, &params, &err) != 0)
      die("%s", err.msg);
    char text[512];
    tl_subnet_format(sn, &specs[i], text, sizeof text);
    if (as_json) {
      json_t *o = json_object();
      json_object_set_new(o, "subnet", json_string(text));
      json_object_set_new(o, "accuracy", json_real(acc));
      json_object_set_new(o, "accuracy_metric", json_string(tl_calib_metric(&data)));
      json_object_set_new(o, "images", json_integer(data.n));
      json_object_set_new(o, "recalibrated", json_boolean(recalib != NULL));
      json_object_set_new(o, "macs", json_integer(macs));
      json_object_set_new(o, "params", json_integer(params));
      char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
      if (line == NULL)
        die("out of memory");
      puts(line);
      free(line);
      json_decref(o);
    } else {
      printf("%-44s %8.2f%% %10.2f\n", text, 100 * acc, macs / 1e6);
    }
    fflush(stdout);
    tl_bn_stats_free(bn);
  }
  free(rdata.x.data);
  tl_calib_free(&data);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

/* -------------------------------------------------------------- export */

static int cmd_export(int argc, char **argv) {
  static const struct option opts[] = {{"subnet", required_argument, NULL, 's'},
                                       {"out", required_argument, NULL, 'o'},
                                       {"recalib", required_argument, NULL, 'r'},
                                       {"recalib-images", required_argument, NULL, 'n'},
                                       {"scale", required_argument, NULL, 'S'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *subnet = NULL, *out = NULL, *recalib = NULL;
  long recalib_images = 2000;
  float scale = 0.f;
  int c;
  while ((c = getopt_long(argc, argv, "s:o:r:n:S:h", opts, NULL)) != -1) {
    switch (c) {
    case 's': subnet = optarg; break;
    case 'o': out = optarg; break;
    case 'r': recalib = optarg; break;
    case 'n': recalib_images = parse_count("--recalib-images", optarg, 1, 100000000); break;
    case 'S': scale = parse_scale(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1 || subnet == NULL || out == NULL) {
    fprintf(stderr, "tailorctl: export needs MODEL.onnx, --subnet SPEC and -o FILE.onnx\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  const char *model = argv[optind];
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_subnet_spec spec;
  parse_subnet(sn, subnet, &spec);
  struct tl_error err = {{0}};
  struct tl_bn_stats *bn = NULL;
  if (recalib != NULL) {
    /* As eval does: images only, uint8 times --scale. */
    struct tl_calib rdata;
    memset(&rdata, 0, sizeof rdata);
    if (tl_npy_read(recalib, &rdata.x, &err) != 0)
      die("%s", err.msg);
    if ((rdata.x.dtype != TL_DTYPE_FLOAT32 && rdata.x.dtype != TL_DTYPE_UINT8) ||
        rdata.x.shape.ndim != 4)
      die("%s: recalibration images must be N x C x H x W float32 or uint8", recalib);
    rdata.n = rdata.x.shape.dims[0];
    rdata.scale = rdata.x.dtype == TL_DTYPE_UINT8 ? (scale > 0 ? scale : 1.f / 255.f) : 1.f;
    int batch = rdata.n < 100 ? (int)rdata.n : 100;
    if (batch < 1)
      die("%s: no images", recalib);
    if (tl_subnet_recalibrate(sn, &spec, &rdata, recalib_images, batch, NULL, &bn, &err) != 0)
      die("%s", err.msg);
    free(rdata.x.data);
  }
  if (tl_subnet_export(sn, &spec, bn, out, &err) != 0)
    die("%s", err.msg);
  char text[512];
  tl_subnet_format(sn, &spec, text, sizeof text);
  printf("%s: subnet %s%s\n", out, text, bn != NULL ? " (recalibrated)" : "");
  tl_bn_stats_free(bn);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

/* ---------------------------------------------------------------- main */

static const struct {
  const char *name;
  int (*fn)(int, char **);
} commands[] = {
    {"run", cmd_run},         {"bench", cmd_bench},   {"inspect", cmd_inspect},
    {"eval", cmd_eval},       {"export", cmd_export}, {"profile", cmd_profile},
    {"predict", cmd_predict}, {"search", cmd_search}, {"status", cmd_status},
    {"subnets", cmd_subnets}, {"events", cmd_events}, {"pin", cmd_pin},
    {"infer", cmd_infer},
};

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : 0;
  }
  argc = take_space_options(argc, argv);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "tailorctl: unknown command \"%s\"\n", argv[1]);
  usage(stderr);
  return EXIT_USAGE;
}
