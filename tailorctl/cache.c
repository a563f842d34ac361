/*
 * cache.c - tailorctl profile, predict and search: the latency table of
 * this device, kept in the SQLite cache, predictions from it, and the
 * frontier searched and kept there.
 *
 *   tailorctl profile MODEL.onnx [--db FILE] [--threads N] [--from OTHER.db
 *                     [--from-threads N] --anchors N] [--json]
 *   tailorctl predict MODEL.onnx --subnet SPEC... [--db FILE] [--threads N]
 *                     [--json]
 *   tailorctl search MODEL.onnx --calib X.npy [Y.npy] [--k N] [--db FILE]
 *                    [--threads N] [--jobs N] [--time-budget S] [--json]
 *
 * All reuse what the cache already holds for this device and measure only
 * what it lacks, so a second run costs no profiling (and a second search
 * with the same model, data and device only loads its frontier).
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "device.h"
#include "latency.h"
#include "calib.h"
#include "frontier.h"
#include "internal.h"
#include "plan.h"
#include "profile.h"
#include "search.h"
#include "store.h"
#include "transfer.h"

/* --db, else $TAILOR_DB, else $XDG_CACHE_HOME/tailor/cache.db (or
 * ~/.cache/tailor/cache.db), creating the folder. */
static const char *default_db(char *buf, size_t size) {
  const char *env = getenv("TAILOR_DB");
  if (env != NULL && env[0] != '\0')
    return env;
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  char dir[4096];
  if (xdg != NULL && xdg[0] == '/')
    snprintf(dir, sizeof dir, "%s/tailor", xdg);
  else if (home != NULL && home[0] == '/')
    snprintf(dir, sizeof dir, "%s/.cache/tailor", home);
  else
    die("no cache file: give --db FILE (neither TAILOR_DB nor HOME is set)");
  /* mkdir -p of the last two levels is enough for ~/.cache/tailor */
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", dir);
  char *slash = strrchr(parent, '/');
  if (slash != NULL && slash != parent) {
    *slash = '\0';
    if (mkdir(parent, 0755) != 0 && errno != EEXIST)
      die("%s: cannot create: %s", parent, strerror(errno));
  }
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    die("%s: cannot create: %s", dir, strerror(errno));
  snprintf(buf, size, "%s/cache.db", dir);
  return buf;
}

static struct tl_store *open_store(const char *path) {
  struct tl_store *st = NULL;
  struct tl_store_open_report rep;
  struct tl_error err = {{0}};
  if (tl_store_open(path, &st, &rep, &err) != 0)
    die("%s", err.msg);
  if (rep.outcome >= TL_STORE_REBUILT_CORRUPT)
    fprintf(stderr, "tailorctl: warning: %s\n", rep.message);
  return st;
}

static int64_t device_id(struct tl_store *st, int threads) {
  struct tl_device_fp fp;
  struct tl_error err = {{0}};
  int64_t id;
  if (tl_device_fingerprint("/", threads, &fp, &err) != 0 ||
      tl_store_device(st, &fp, &id, &err) != 0)
    die("%s", err.msg);
  return id;
}

static void progress(void *ctx, int plans, int signatures, int planned) {
  (void)ctx;
  fprintf(stderr, "\rprofiling: plan %d of %d timed, %d op signatures", plans, planned, signatures);
  fflush(stderr);
}

/* Loads the device's table from st and profiles what sn's space lacks,
 * saving the result.  Prints a progress line on stderr while profiling. */
static struct tl_op_table *table_for(const struct tl_supernet *sn, struct tl_store *st, int64_t dev,
                                     int quiet, struct tl_profile_report *rep) {
  struct tl_op_table *t = NULL;
  struct tl_error err = {{0}};
  if (tl_op_table_new(&t) != 0)
    die("out of memory");
  int loaded = 0;
  if (tl_latency_load(st, dev, t, &loaded, &err) != 0)
    die("%s", err.msg);
  struct tl_profile_options po = {.progress = quiet ? NULL : progress};
  if (tl_latency_profile(sn, &po, t, rep, &err) != 0)
    die("%s", err.msg);
  if (!quiet && rep->plans > 0)
    fputc('\n', stderr);
  if (rep->new_signatures > 0 && tl_latency_save(st, dev, t, 8, &err) != 0)
    die("%s", err.msg);
  return t;
}

int cmd_profile(int argc, char **argv) {
  static const struct option opts[] = {
      {"db", required_argument, NULL, 'd'},      {"threads", required_argument, NULL, 't'},
      {"from", required_argument, NULL, 'f'},    {"from-threads", required_argument, NULL, 'F'},
      {"anchors", required_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *db = NULL, *from = NULL;
  int threads = 1, from_threads = 0, anchors = 0, as_json = 0, c;
  while ((c = getopt_long(argc, argv, "d:t:f:F:a:jh", opts, NULL)) != -1) {
    switch (c) {
    case 'd': db = optarg; break;
    case 't': threads = (int)parse_count("--threads", optarg, 1, 256); break;
    case 'f': from = optarg; break;
    case 'F': from_threads = (int)parse_count("--from-threads", optarg, 1, 256); break;
    case 'a': anchors = (int)parse_count("--anchors", optarg, 2, 1000); break;
    case 'j': as_json = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1 || (from != NULL) != (anchors > 0)) {
    if (from != NULL || anchors > 0)
      fprintf(stderr, "tailorctl: --from and --anchors go together\n");
    usage(stderr);
    return EXIT_USAGE;
  }
  char dbbuf[4096];
  if (db == NULL)
    db = default_db(dbbuf, sizeof dbbuf);
  const char *model = argv[optind];
  tl_engine_set_threads(threads);
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_store *st = open_store(db);
  int64_t dev = device_id(st, threads);
  struct tl_error err = {{0}};
  json_t *o = json_object();
  if (o == NULL)
    die("out of memory");
  json_object_set_new(o, "model", json_string(model));
  json_object_set_new(o, "db", json_string(db));
  json_object_set_new(o, "threads", json_integer(threads));

  if (from != NULL) {
    /* The other cache's table for this CPU at --from-threads (default:
     * the same threads), mapped here from a few anchors. */
    struct tl_store *other = open_store(from);
    int64_t odev = device_id(other, from_threads ? from_threads : threads);
    struct tl_op_table *src = NULL, *dst = NULL;
    int loaded = 0;
    if (tl_op_table_new(&src) != 0 || tl_op_table_new(&dst) != 0)
      die("out of memory");
    if (tl_latency_load(other, odev, src, &loaded, &err) != 0)
      die("%s", err.msg);
    if (loaded == 0)
      die("%s: no latencies for this CPU at %d thread%s: profile there first", from,
          from_threads ? from_threads : threads,
          (from_threads ? from_threads : threads) == 1 ? "" : "s");
    struct tl_transfer_report tr;
    if (tl_latency_transfer(sn, src, anchors, NULL, dst, &tr, &err) != 0)
      die("%s", err.msg);
    if (tl_latency_save(st, dev, dst, 8, &err) != 0)
      die("%s", err.msg);
    json_object_set_new(o, "transferred", json_integer(tl_op_table_count(dst)));
    json_object_set_new(o, "anchors", json_integer(tr.anchors));
    json_object_set_new(o, "plans", json_integer(tr.plans));
    /* the two groups' maps: steps split alike here and there, and the
     * others (r: the busiest thread's share here over there) */
    static const char *const groups[2] = {"same split", "split changes"};
    json_t *fits = json_array();
    if (fits == NULL || json_object_set_new(o, "fits", fits) != 0)
      die("out of memory");
    for (int k = 0; k < 2; k++)
      if (json_array_append_new(fits, json_pack("{s:s,s:i,s:f,s:f}", "group", groups[k], "anchors",
                                                tr.fit[k].anchors, "scale", tr.fit[k].scale,
                                                "exponent", tr.fit[k].exponent)) != 0)
        die("out of memory");
    json_object_set_new(o, "seconds", json_real(tr.seconds));
    if (!as_json) {
      printf("transferred %d op latencies from %s with %d anchors (%d plans run, %.2f s)\n",
             tl_op_table_count(dst), from, tr.anchors, tr.plans, tr.seconds);
      for (int k = 0; k < 2; k++)
        if (tr.fit[k].anchors > 0)
          printf("  %-13s %d anchors: here = %.3f x (there x r)^%.3f us\n", groups[k],
                 tr.fit[k].anchors, tr.fit[k].scale, tr.fit[k].exponent);
    }
    tl_op_table_free(src);
    tl_op_table_free(dst);
    tl_store_close(other);
  } else {
    struct tl_profile_report rep;
    struct tl_op_table *t = table_for(sn, st, dev, as_json, &rep);
    json_object_set_new(o, "signatures", json_integer(tl_op_table_count(t)));
    json_object_set_new(o, "new_signatures", json_integer(rep.new_signatures));
    json_object_set_new(o, "plans", json_integer(rep.plans));
    json_object_set_new(o, "runs", json_integer(rep.runs));
    json_object_set_new(o, "seconds", json_real(rep.seconds));
    json_object_set_new(o, "overhead_us", json_real(tl_op_table_overhead_us(t)));
    if (!as_json)
      printf("%d op signatures for %s at %d thread%s in %s: %d new, from %d plans "
             "(%d runs, %.2f s); per-step overhead %.2f us\n",
             tl_op_table_count(t), model, threads, threads == 1 ? "" : "s", db, rep.new_signatures,
             rep.plans, rep.runs, rep.seconds, tl_op_table_overhead_us(t));
    tl_op_table_free(t);
  }
  if (as_json) {
    print_json_as(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
  }
  json_decref(o);
  tl_store_close(st);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

int cmd_predict(int argc, char **argv) {
  static const struct option opts[] = {
      {"db", required_argument, NULL, 'd'},     {"threads", required_argument, NULL, 't'},
      {"subnet", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  const char *db = NULL;
  const char **subnets = calloc((size_t)argc + 1, sizeof *subnets);
  int n_subnets = 0, threads = 1, as_json = 0, c;
  if (subnets == NULL)
    die("out of memory");
  while ((c = getopt_long(argc, argv, "d:t:s:jh", opts, NULL)) != -1) {
    switch (c) {
    case 'd': db = optarg; break;
    case 't': threads = (int)parse_count("--threads", optarg, 1, 256); break;
    case 's': subnets[n_subnets++] = optarg; break;
    case 'j': as_json = 1; break;
    case 'h':
      usage(stdout);
      free(subnets);
      return 0;
    default:
      usage(stderr);
      free(subnets);
      return EXIT_USAGE;
    }
  }
  if (argc - optind != 1 || n_subnets == 0) {
    usage(stderr);
    free(subnets);
    return EXIT_USAGE;
  }
  char dbbuf[4096];
  if (db == NULL)
    db = default_db(dbbuf, sizeof dbbuf);
  const char *model = argv[optind];
  tl_engine_set_threads(threads);
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_subnet_spec *specs = calloc((size_t)n_subnets, sizeof *specs);
  if (specs == NULL)
    die("out of memory");
  for (int i = 0; i < n_subnets; i++)
    parse_subnet(sn, subnets[i], &specs[i]);
  struct tl_store *st = open_store(db);
  int64_t dev = device_id(st, threads);
  struct tl_profile_report rep;
  struct tl_op_table *t = table_for(sn, st, dev, 0, &rep);
  struct tl_error err = {{0}};
  for (int i = 0; i < n_subnets; i++) {
    struct tl_prediction p;
    if (tl_latency_predict(sn, t, &specs[i], &p, &err) != 0)
      die("%s", err.msg);
    char text[512];
    tl_subnet_format(sn, &specs[i], text, sizeof text);
    if (as_json) {
      json_t *o = json_object();
      json_object_set_new(o, "subnet", json_string(text));
      json_object_set_new(o, "predicted_ms", json_real(p.latency_ms));
      json_object_set_new(o, "predicted_mib", json_real(p.mem_mib));
      json_object_set_new(o, "weight_bytes", json_integer(p.weight_bytes));
      json_object_set_new(o, "arena_bytes", json_integer(p.arena_bytes));
      json_object_set_new(o, "io_bytes", json_integer(p.io_bytes));
      json_object_set_new(o, "steps", json_integer(p.steps));
      json_object_set_new(o, "threads", json_integer(threads));
      json_object_set_new(o, "profiled_signatures", json_integer(rep.new_signatures));
      print_json_as(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
      json_decref(o);
    } else {
      printf("%-44s %9.3f ms %8.2f MiB (weights %.2f, arena %.2f, io %.3f)\n", text, p.latency_ms,
             p.mem_mib, p.weight_bytes / 1048576.0, p.arena_bytes / 1048576.0,
             p.io_bytes / 1048576.0);
    }
  }
  tl_op_table_free(t);
  tl_store_close(st);
  free(specs);
  free(subnets);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}

/* -------------------------------------------------------------- search */

static void search_progress(void *ctx, const char *phase, int done, int total, double overall) {
  (void)ctx;
  fprintf(stderr, "\rsearch: %3.0f %% %-8s %d/%d   ", 100 * overall, phase, done, total);
  if (done == total)
    fputc('\n', stderr);
  fflush(stderr);
}

int cmd_search(int argc, char **argv) {
  static const struct option opts[] = {
      {"calib", required_argument, NULL, 'c'}, {"k", required_argument, NULL, 'k'},
      {"db", required_argument, NULL, 'd'},    {"threads", required_argument, NULL, 't'},
      {"scale", required_argument, NULL, 'S'}, {"json", no_argument, NULL, 'j'},
      {"jobs", required_argument, NULL, 'J'},  {"time-budget", required_argument, NULL, 'T'},
      {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
  const char *db = NULL, *calib_x = NULL, *calib_y = NULL;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int k = 16, threads = 1, jobs = cpus > 0 ? (int)(cpus < 64 ? cpus : 64) : 1, as_json = 0, c;
  float scale = 0.f;
  double time_budget = 0;
  while ((c = getopt_long(argc, argv, "c:k:d:t:S:jJ:T:h", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      calib_x = optarg;
      calib_y = take_labels_file(argc, argv);
      break;
    case 'k': k = (int)parse_count("--k", optarg, 1, 64); break;
    case 'd': db = optarg; break;
    case 't': threads = (int)parse_count("--threads", optarg, 1, 256); break;
    case 'S': scale = parse_scale(optarg); break;
    case 'j': as_json = 1; break;
    case 'J': jobs = (int)parse_count("--jobs", optarg, 1, 64); break;
    case 'T': time_budget = parse_positive("--time-budget", "seconds", optarg, 1e7); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return EXIT_USAGE;
    }
  }
  if (argc - optind != 1 || calib_x == NULL) {
    usage(stderr);
    return EXIT_USAGE;
  }
  char dbbuf[4096];
  if (db == NULL)
    db = default_db(dbbuf, sizeof dbbuf);
  const char *model = argv[optind];
  tl_engine_set_threads(threads);
  double t_start = tl_now_ms();
  struct tl_graph *g = load_model(model);
  struct tl_supernet *sn = load_supernet(g);
  struct tl_error err = {{0}};
  struct tl_calib data;
  if (tl_calib_load(calib_x, calib_y, scale, &data, &err) != 0)
    die("%s", err.msg);
  struct tl_store *st = open_store(db);
  int64_t dev = device_id(st, threads);
  struct tl_search_options so = {
      .k = k, .threads = jobs, .time_budget_s = time_budget, .progress = search_progress};
  struct tl_profile_options po = {.progress = progress};
  struct tl_frontier_member *f = NULL;
  int n = 0;
  struct tl_frontier_report rep;
  if (tl_frontier_obtain(sn, g, st, dev, &data, &so, &po, NULL, &f, &n, &rep, &err) != 0)
    die("%s", err.msg);
  if (rep.profiled_signatures > 0)
    fputc('\n', stderr);
  if (rep.not_cached[0] != '\0')
    fprintf(stderr, "tailorctl: warning: the cache cannot keep this search: %s\n", rep.not_cached);

  json_t *out = json_object();
  json_t *members = json_array();
  if (out == NULL || members == NULL)
    die("out of memory");
  for (int i = 0; i < n; i++) {
    char text[512];
    json_t *m = json_object();
    json_object_set_new(m, "subnet",
                        json_string(tl_subnet_format(sn, &f[i].spec, text, sizeof text)));
    json_object_set_new(m, "predicted_ms", json_real(f[i].predicted_ms));
    json_object_set_new(m, "predicted_mib", json_real(f[i].predicted_mib));
    json_object_set_new(m, "accuracy", json_real(f[i].accuracy));
    json_array_append_new(members, m);
  }
  tl_frontier_free(f, n);
  json_object_set_new(out, "cached", json_boolean(rep.cached));
  json_object_set_new(out, "profiled_signatures", json_integer(rep.profiled_signatures));
  json_object_set_new(out, "evaluated", json_integer(rep.evaluated));
  json_object_set_new(out, "search_s", json_real(rep.search_s));
  json_object_set_new(out, "complete", json_boolean(rep.complete));
  double load_ms = rep.load_ms;
  json_object_set_new(out, "model", json_string(model));
  json_object_set_new(out, "load_ms", json_real(load_ms));
  json_object_set_new(out, "total_s", json_real((tl_now_ms() - t_start) / 1e3));
  json_object_set_new(out, "accuracy_metric", json_string(tl_calib_metric(&data)));
  json_object_set_new(out, "frontier", members);
  if (as_json) {
    print_json_as(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
  } else {
    int cached_run = json_is_true(json_object_get(out, "cached"));
    if (cached_run)
      printf("cached frontier of %s: %zu subnets (loaded in %.1f ms)\n", model,
             json_array_size(members), load_ms);
    else
      printf("new frontier of %s: %zu subnets (searched in %.1f s, %d evaluations%s)\n", model,
             json_array_size(members), json_real_value(json_object_get(out, "search_s")),
             (int)json_integer_value(json_object_get(out, "evaluated")),
             rep.complete ? "" : "; cut short by --time-budget, accuracies on a subset");
    printf("%-44s %12s %10s %9s\n", "subnet", "predicted ms", "MiB", tl_calib_metric(&data));
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) {
      printf("%-44s %12.3f %10.2f %8.2f%%\n", json_string_value(json_object_get(m, "subnet")),
             json_real_value(json_object_get(m, "predicted_ms")),
             json_real_value(json_object_get(m, "predicted_mib")),
             100 * json_real_value(json_object_get(m, "accuracy")));
    }
  }
  json_decref(out);
  tl_store_close(st);
  tl_calib_free(&data);
  tl_supernet_free(sn);
  tl_graph_free(g);
  return 0;
}
