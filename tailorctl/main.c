/*
 * tailorctl - the command line front of tailor's engine, its cache and a
 * running tailord.
 *
 *   tailorctl run|bench MODEL.onnx ...             (engine.c)
 *   tailorctl inspect|eval|export MODEL.onnx ...   (supernet.c)
 *   tailorctl profile|predict|search ...           (cache.c)
 *   tailorctl status|subnets|events|pin            (client.c, clients of tailord)
 *   tailorctl infer IMAGES.npy ...                 (infer.c, one request or a load)
 *
 * This file: the usage text, the command table and main, and what the
 * commands share (reporting, option parsing, loading a model and its
 * SuperNet, the search space's options).
 *
 * Every failure prints one line "tailorctl: <what and where>" on stderr and
 * exits with status 1; usage errors exit with 2.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "internal.h"
#include "onnx.h"
#include "supernet.h"

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
      "usage: tailorctl run MODEL.onnx INPUT.npy... [--subnet SPEC] [--scale S] [--out DIR]\n"
      "                     [--json]\n"
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
      "         a uint8 file for a float32 input is images: its values times --scale\n"
      "         (default 1/255); --out DIR writes each output as DIR/<output name>.npy\n"
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

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void sort_doubles(double *v, size_t n) { qsort(v, n, sizeof *v, cmp_double); }

void print_json_as(json_t *v, size_t flags) {
  char *s = json_dumps(v, flags);
  if (s == NULL)
    die("out of memory");
  puts(s);
  free(s);
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

/* Images as pixels: t's uint8 values times scale, as float32 (in place). */
void uint8_to_float(struct tl_tensor *t, float scale, const char *path) {
  int64_t n = tl_shape_numel(&t->shape);
  float *x = n > 0 ? malloc((size_t)n * sizeof *x) : NULL;
  if (n > 0 && x == NULL)
    die("%s: out of memory for %lld values", path, (long long)n);
  const uint8_t *u = t->data;
  for (int64_t k = 0; k < n; k++)
    x[k] = (float)u[k] * scale;
  free(t->data);
  t->data = x;
  t->dtype = TL_DTYPE_FLOAT32;
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
