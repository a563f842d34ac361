/*
 * supernet.c - tailorctl inspect, eval and export: the SuperNet the
 * compiler finds in a model, and its subnets.
 *
 *   tailorctl inspect MODEL.onnx [--why] [--spread N] [--json]
 *   tailorctl eval MODEL.onnx --calib X.npy [Y.npy] [--subnet SPEC]...
 *                  [--recalib X.npy] [--json]
 *   tailorctl export MODEL.onnx --subnet SPEC -o FILE.onnx [--recalib X.npy]
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "clock.h"
#include "error.h"
#include "export.h"
#include "graph.h"
#include "internal.h"
#include "npy.h"
#include "supernet.h"

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

int cmd_inspect(int argc, char **argv) {
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
  /* the SuperNet, its extremes and --spread's subnets */
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

  /* the report, as JSON or text */
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
    print_json_as(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
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

int cmd_eval(int argc, char **argv) {
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
      print_json_as(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
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

int cmd_export(int argc, char **argv) {
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
