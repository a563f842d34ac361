/*
 * test_predictors.c - op tables, profiling, prediction, proxy transfer,
 * the frontier search and its cache, on the bundled Fashion-MNIST model
 * (models/fmnist.onnx) with real calibration data (made by
 * scripts/make-calib.py in the build tree when missing).
 *
 * No test asserts a timing: profiles and searches run with few repeats
 * and small image counts, and the tests pin what must hold whatever the
 * machine's speed (coverage of the space, the cache's contents, the
 * frontier's order, errors).
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "error.h"
#include "frontier.h"
#include "latency.h"
#include "onnx.h"
#include "plan.h"
#include "profile.h"
#include "search.h"
#include "store.h"
#include "supernet.h"
#include "transfer.h"
#include "testutil.h"

static char model_path[PATH_MAX];
static char calib_x[PATH_MAX], calib_y[PATH_MAX];

static const struct tl_profile_options quick_profile = {.warmup = 1, .repeats = 3, .patience = 10};

struct fixture {
  struct tl_graph *g;
  struct tl_supernet *sn;
};

static struct fixture load_space(const struct tl_supernet_options *o) {
  struct fixture f = {0};
  struct tl_error err = {{0}};
  ck_assert_msg(tl_onnx_load(model_path, &f.g, &err) == 0, "%s", err.msg);
  ck_assert_msg(tl_supernet_build(f.g, o, &f.sn, &err) == 0, "%s", err.msg);
  return f;
}

static struct fixture load(void) { return load_space(NULL); }

/* The space the searches below run in: every dimension still elastic, but
 * two widths and three resolutions (tailord's tests use it too), so that
 * a search takes seconds, not minutes, under a sanitizer. */
static struct fixture load_small(void) {
  const struct tl_supernet_options o = {.n_widths = 2, .widths = {.5f, 1.f}, .res_steps = 2};
  return load_space(&o);
}

/* The first n images of the calibration data (labelled unless
 * unlabelled): a search's cost grows with the images its frontier is
 * measured on, and 500 tell the subnets apart. */
static void load_calib(struct tl_calib *c, int64_t n, int unlabelled) {
  struct tl_error err = {{0}};
  ck_assert_msg(tl_calib_load(calib_x, unlabelled ? NULL : calib_y, 0, c, &err) == 0, "%s",
                err.msg);
  ck_assert_int_ge(c->n, n);
  c->n = c->x.shape.dims[0] = n;
}

static void unload(struct fixture *f) {
  tl_supernet_free(f->sn);
  tl_graph_free(f->g);
}

static struct tl_op_table *profiled(const struct fixture *f) {
  struct tl_op_table *t = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_op_table_new(&t), 0);
  ck_assert_msg(tl_latency_profile(f->sn, &quick_profile, t, NULL, &err) == 0, "%s", err.msg);
  return t;
}

/* ------------------------------------------------------------ op table */

START_TEST(op_table_sets_replaces_and_grows) {
  struct tl_op_table *t = NULL;
  ck_assert_int_eq(tl_op_table_new(&t), 0);
  char sig[64];
  for (int i = 0; i < 3000; i++) {
    snprintf(sig, sizeof sig, "Conv k3 #%d", i);
    ck_assert_int_eq(tl_op_table_set(t, sig, i * 0.5), 0);
  }
  ck_assert_int_eq(tl_op_table_set(t, "Conv k3 #7", 99.0), 0); /* replaces */
  ck_assert_int_eq(tl_op_table_count(t), 3000);
  double us;
  ck_assert_int_eq(tl_op_table_get(t, "Conv k3 #7", &us), 1);
  ck_assert(us == 99.0);
  ck_assert_int_eq(tl_op_table_get(t, "Conv k3 #2999", &us), 1);
  ck_assert(us == 1499.5);
  ck_assert_int_eq(tl_op_table_get(t, "Conv k3 #3000", &us), 0);
  const char *s0;
  tl_op_table_entry(t, 0, &s0, &us);
  ck_assert_str_eq(s0, "Conv k3 #0"); /* insertion order */
  ck_assert_int_eq(tl_op_table_set(t, "x", NAN), TL_EINVAL);
  ck_assert_int_eq(tl_op_table_set(t, "x", -1), TL_EINVAL);
  ck_assert_int_eq(tl_op_table_set(t, "", 1), TL_EINVAL);
  tl_op_table_free(t);
}
END_TEST

/* ---------------------------------------------------- profile, predict */

START_TEST(profile_covers_every_random_subnet) {
  struct fixture f = load();
  struct tl_op_table *t = profiled(&f);
  ck_assert_int_gt(tl_op_table_count(t), 0);
  uint64_t seed = 42;
  struct tl_error err = {{0}};
  for (int i = 0; i < 100; i++) {
    struct tl_subnet_spec spec;
    tl_subnet_random(f.sn, &seed, &spec);
    struct tl_prediction p;
    ck_assert_msg(tl_latency_predict(f.sn, t, &spec, &p, &err) == 0, "%s", err.msg);
    ck_assert(p.latency_ms > 0 && isfinite(p.latency_ms));
    ck_assert_int_gt(p.steps, 0);
  }
  tl_op_table_free(t);
  unload(&f);
}
END_TEST

START_TEST(profile_of_a_complete_table_measures_nothing) {
  struct fixture f = load();
  struct tl_op_table *t = profiled(&f);
  int before = tl_op_table_count(t);
  struct tl_profile_report rep;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_latency_profile(f.sn, &quick_profile, t, &rep, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(rep.plans, 0);
  ck_assert_int_eq(rep.new_signatures, 0);
  ck_assert_int_eq(tl_op_table_count(t), before);
  tl_op_table_free(t);
  unload(&f);
}
END_TEST

START_TEST(predict_without_the_signature_says_profile_first) {
  struct fixture f = load();
  struct tl_op_table *t = NULL;
  ck_assert_int_eq(tl_op_table_new(&t), 0);
  struct tl_subnet_spec spec;
  tl_subnet_largest(f.sn, &spec);
  struct tl_prediction p;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_latency_predict(f.sn, t, &spec, &p, &err), TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "profile the model first"));
  tl_op_table_free(t);
  unload(&f);
}
END_TEST

START_TEST(memory_prediction_is_the_plans_own_layout) {
  struct fixture f = load();
  struct tl_op_table *t = profiled(&f);
  uint64_t seed = 7;
  struct tl_error err = {{0}};
  for (int i = 0; i < 20; i++) {
    struct tl_subnet_spec spec;
    tl_subnet_random(f.sn, &seed, &spec);
    struct tl_prediction p;
    ck_assert_msg(tl_latency_predict(f.sn, t, &spec, &p, &err) == 0, "%s", err.msg);
    struct tl_plan *plan = NULL;
    struct tl_subnet_plan_options po = {.batch = 1};
    ck_assert_int_eq(tl_subnet_plan(f.sn, &spec, &po, &plan, &err), 0);
    int64_t macs, params;
    ck_assert_int_eq(tl_subnet_cost(f.sn, &spec, &macs, &params, &err), 0);
    ck_assert_int_eq(p.arena_bytes,
                     (int64_t)(tl_plan_arena_bytes(plan) + tl_plan_scratch_bytes(plan)));
    ck_assert_int_eq(p.weight_bytes, params * 4);
    ck_assert_int_eq(p.io_bytes, (28 * 28 + 10) * 4); /* 1x1x28x28 in, 1x10 out */
    ck_assert(fabs(p.mem_mib - (double)(p.weight_bytes + p.arena_bytes + p.io_bytes) / (1 << 20)) <
              1e-9);
    tl_plan_free(plan);
  }
  tl_op_table_free(t);
  unload(&f);
}
END_TEST

START_TEST(state_scaling_divides_by_frequency_and_share) {
  struct tl_device_scale s = {.freq_ratio = 0.5, .cpu_share = 0.5, .correction = 1.1};
  ck_assert(fabs(tl_latency_scale(2.0, &s) - 8.8) < 1e-12);
  struct tl_device_scale unknown = {0};
  ck_assert(tl_latency_scale(2.0, &unknown) == 2.0);
  struct tl_device_scale wild = {.freq_ratio = 1e-9, .cpu_share = 1, .correction = 1};
  ck_assert(tl_latency_scale(1.0, &wild) == 20.0); /* clamped */
  ck_assert(tl_latency_scale(3.0, NULL) == 3.0);
}
END_TEST

/* ------------------------------------------------------- store, transfer */

START_TEST(table_survives_the_store) {
  struct fixture f = load();
  struct tl_op_table *t = profiled(&f), *back = NULL;
  tl_op_table_set_overhead_us(t, -0.25); /* the overhead may be negative */
  struct tl_store *st = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_store_open(":memory:", &st, NULL, &err) == 0, "%s", err.msg);
  struct tl_device_fp fp = {.cpu_model = "test cpu", .cores = 2, .blas = "test", .threads = 1};
  int64_t dev;
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);
  ck_assert_msg(tl_latency_save(st, dev, t, 3, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(tl_op_table_new(&back), 0);
  int loaded = -1;
  ck_assert_msg(tl_latency_load(st, dev, back, &loaded, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(loaded, tl_op_table_count(t));
  for (int i = 0; i < tl_op_table_count(t); i++) {
    const char *sig;
    double us, us2;
    tl_op_table_entry(t, i, &sig, &us);
    ck_assert_int_eq(tl_op_table_get(back, sig, &us2), 1);
    ck_assert(us == us2);
  }
  ck_assert(tl_op_table_overhead_us(back) == -0.25);
  tl_store_close(st);
  tl_op_table_free(back);
  tl_op_table_free(t);
  unload(&f);
}
END_TEST

START_TEST(transfer_maps_every_entry_from_few_anchors) {
  struct fixture f = load();
  struct tl_op_table *src = profiled(&f), *dst = NULL;
  ck_assert_int_eq(tl_op_table_new(&dst), 0);
  struct tl_transfer_report rep;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_latency_transfer(f.sn, src, 4, &quick_profile, dst, &rep, &err) == 0, "%s",
                err.msg);
  ck_assert_int_eq(rep.anchors, 4);
  ck_assert_int_le(rep.plans, 4);
  ck_assert_int_eq(rep.fit[0].anchors + rep.fit[1].anchors, 4);
  ck_assert(rep.fit[0].scale > 0 && rep.fit[1].scale > 0);
  ck_assert_int_eq(tl_op_table_count(dst), tl_op_table_count(src));
  /* the mapped table predicts every subnet */
  uint64_t seed = 3;
  for (int i = 0; i < 30; i++) {
    struct tl_subnet_spec spec;
    tl_subnet_random(f.sn, &seed, &spec);
    struct tl_prediction p;
    ck_assert_msg(tl_latency_predict(f.sn, dst, &spec, &p, &err) == 0, "%s", err.msg);
  }
  tl_op_table_free(dst);
  tl_op_table_free(src);
  unload(&f);
}
END_TEST

/* The planner's busiest share: 1 for what runs on one thread, about 1/2
 * for a conv split over two, and 1 for everything at one thread. */
START_TEST(plan_steps_say_how_their_work_splits_over_threads) {
  struct fixture f = load();
  struct tl_subnet_spec spec;
  tl_subnet_largest(f.sn, &spec);
  struct tl_subnet_plan_options po = {.batch = 1};
  struct tl_error err = {{0}};
  for (int threads = 1; threads <= 2; threads++) {
    tl_engine_set_threads(threads);
    struct tl_plan *plan = NULL;
    ck_assert_int_eq(tl_subnet_plan(f.sn, &spec, &po, &plan, &err), 0);
    int split = 0, whole = 0;
    for (int i = 0; i < tl_plan_n_steps(plan); i++) {
      struct tl_step_info si;
      tl_plan_step_info(plan, i, &si);
      ck_assert(si.busiest > 0 && si.busiest <= 1);
      char sig[1024];
      tl_plan_step_signature(plan, i, sig, sizeof sig);
      /* the first conv reads one channel and runs as a depthwise conv
       * over it: one share of work, like the elementwise steps */
      if (threads == 1 || strncmp(si.kind, "Conv", 4) != 0 || strstr(sig, "in=f1x1x") != NULL) {
        ck_assert_msg(si.busiest == 1, "%s at %d threads: %g", sig, threads, si.busiest);
        whole++;
        continue;
      }
      /* the other convs have 16 to 64 output channels over a grid of at
       * least 4x4: each divides, into halves or near them */
      ck_assert_msg(si.busiest >= 0.5 && si.busiest < 0.7, "%s: %g", sig, si.busiest);
      split++;
    }
    ck_assert_int_gt(whole, 0);
    if (threads == 2)
      ck_assert_int_gt(split, 0);
    tl_plan_free(plan);
  }
  tl_engine_set_threads(1);
  unload(&f);
}
END_TEST

/* At equal thread counts nothing changes its split; from 1 thread to 2
 * the convs do, and each group gets anchors of its own. */
START_TEST(transfer_fits_the_steps_a_second_thread_splits_apart) {
  struct fixture f = load();
  struct tl_op_table *src = profiled(&f);
  struct tl_error err = {{0}};
  struct tl_transfer_report rep;
  struct tl_op_table *same = NULL, *two = NULL;
  ck_assert_int_eq(tl_op_table_new(&same), 0);
  ck_assert_int_eq(tl_op_table_new(&two), 0);
  ck_assert_msg(tl_latency_transfer(f.sn, src, 6, &quick_profile, same, &rep, &err) == 0, "%s",
                err.msg);
  ck_assert_int_eq(rep.fit[0].anchors, 6);
  ck_assert_int_eq(rep.fit[1].anchors, 0);

  tl_engine_set_threads(2);
  ck_assert_msg(tl_latency_transfer(f.sn, src, 6, &quick_profile, two, &rep, &err) == 0, "%s",
                err.msg);
  ck_assert_int_ge(rep.fit[0].anchors, 1);
  ck_assert_int_ge(rep.fit[1].anchors, 2);
  ck_assert_int_eq(rep.fit[0].anchors + rep.fit[1].anchors, 6);
  ck_assert_int_eq(tl_op_table_count(two), tl_op_table_count(src));
  for (int i = 0; i < tl_op_table_count(two); i++) {
    const char *sig;
    double us;
    tl_op_table_entry(two, i, &sig, &us);
    ck_assert_str_eq(sig + strlen(sig) - 3, " t2");
    ck_assert(us >= 0);
  }
  uint64_t seed = 11;
  for (int i = 0; i < 10; i++) {
    struct tl_subnet_spec spec;
    tl_subnet_random(f.sn, &seed, &spec);
    struct tl_prediction p;
    ck_assert_msg(tl_latency_predict(f.sn, two, &spec, &p, &err) == 0, "%s", err.msg);
  }
  tl_engine_set_threads(1);
  tl_op_table_free(two);
  tl_op_table_free(same);
  tl_op_table_free(src);
  unload(&f);
}
END_TEST

START_TEST(transfer_refuses_too_few_anchors_or_a_foreign_table) {
  struct fixture f = load();
  struct tl_op_table *src = NULL, *dst = NULL;
  ck_assert_int_eq(tl_op_table_new(&src), 0);
  ck_assert_int_eq(tl_op_table_new(&dst), 0);
  for (int i = 0; i < 20; i++) {
    char sig[64];
    snprintf(sig, sizeof sig, "Softmax in=f1x%d t1", i + 1);
    ck_assert_int_eq(tl_op_table_set(src, sig, 1.0 + i), 0);
  }
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_latency_transfer(f.sn, src, 1, NULL, dst, NULL, &err), TL_EINVAL);
  ck_assert_int_eq(tl_latency_transfer(f.sn, src, 4, NULL, dst, NULL, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "another model"));
  ck_assert_int_eq(tl_op_table_count(dst), 0);
  tl_op_table_free(dst);
  tl_op_table_free(src);
  unload(&f);
}
END_TEST

/* ------------------------------------------------------ BN statistics */

START_TEST(bn_stats_round_trip_and_reject_damage) {
  struct fixture f = load();
  struct tl_calib data;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_calib_load(calib_x, calib_y, 0, &data, &err) == 0, "%s", err.msg);
  struct tl_subnet_spec spec;
  tl_subnet_smallest(f.sn, &spec);
  struct tl_bn_stats *bn = NULL, *back = NULL;
  ck_assert_msg(tl_subnet_recalibrate(f.sn, &spec, &data, 200, 100, NULL, &bn, &err) == 0, "%s",
                err.msg);
  void *blob = NULL;
  size_t len = 0;
  ck_assert_int_eq(tl_bn_stats_serialize(f.sn, bn, &blob, &len, &err), 0);
  ck_assert_int_eq(tl_bn_stats_deserialize(f.sn, blob, len, &back, &err), 0);
  ck_assert_int_eq(back->n_nodes, bn->n_nodes);
  int nodes = 0;
  for (int i = 0; i < bn->n_nodes; i++) {
    ck_assert((bn->mean[i] == NULL) == (back->mean[i] == NULL));
    if (bn->mean[i] == NULL)
      continue;
    nodes++;
    ck_assert(bn->mean[i][0] == back->mean[i][0] && bn->var[i][0] == back->var[i][0]);
  }
  ck_assert_int_gt(nodes, 0);
  double a1, a2;
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &spec, bn, &data, 0, 500, 100, NULL, &a1, &err), 0);
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &spec, back, &data, 0, 500, 100, NULL, &a2, &err), 0);
  ck_assert(a1 == a2);
  /* Told to stop: canceled at the next batch, nothing returned. */
  atomic_int stop = 1;
  struct tl_bn_stats *none = NULL;
  ck_assert_int_eq(tl_subnet_recalibrate(f.sn, &spec, &data, 200, 100, &stop, &none, &err),
                   TL_ECANCELED);
  ck_assert_ptr_null(none);
  double a3 = -1;
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &spec, bn, &data, 0, 500, 100, &stop, &a3, &err),
                   TL_ECANCELED);
  ck_assert(a3 == -1);
  struct tl_bn_stats *bad = NULL;
  ck_assert_int_eq(tl_bn_stats_deserialize(f.sn, blob, len - 1, &bad, &err), TL_EFORMAT);
  ck_assert_int_eq(tl_bn_stats_deserialize(f.sn, blob, 8, &bad, &err), TL_EFORMAT);
  ((unsigned char *)blob)[0] ^= 0xff;
  ck_assert_int_eq(tl_bn_stats_deserialize(f.sn, blob, len, &bad, &err), TL_EFORMAT);
  ck_assert_ptr_null(bad);
  free(blob);
  tl_bn_stats_free(back);
  tl_bn_stats_free(bn);
  tl_calib_free(&data);
  unload(&f);
}
END_TEST

/* ---------------------------------------------------- search and cache */

static const struct tl_search_options small_search = {.k = 4,
                                                      .est_images = 100,
                                                      .recalib_images = 100,
                                                      .final_recalib = 100,
                                                      .candidates = 8,
                                                      .batch = 50};

START_TEST(a_stopped_search_returns_canceled_and_stores_nothing) {
  struct fixture f = load_small();
  struct tl_calib data;
  struct tl_error err = {{0}};
  load_calib(&data, 500, 0);
  struct tl_store *st = NULL;
  ck_assert_int_eq(tl_store_open(":memory:", &st, NULL, &err), 0);
  struct tl_device_fp fp = {.cpu_model = "test cpu", .cores = 2, .blas = "test", .threads = 1};
  int64_t dev;
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);
  atomic_int stop = 1;
  struct tl_search_options so = small_search;
  so.stop = &stop;
  struct tl_frontier_member *fr = NULL;
  int n = 0;
  ck_assert_int_eq(
      tl_frontier_obtain(f.sn, f.g, st, dev, &data, &so, &quick_profile, NULL, &fr, &n, NULL, &err),
      TL_ECANCELED);
  ck_assert_ptr_null(fr);
  int cached = -1;
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &data, &small_search, &cached, &err), 0);
  ck_assert_int_eq(cached, 0);
  tl_store_close(st);
  tl_calib_free(&data);
  unload(&f);
}
END_TEST

START_TEST(frontier_is_sorted_pareto_and_cached) {
  struct fixture f = load_small();
  struct tl_calib data;
  struct tl_error err = {{0}};
  load_calib(&data, 500, 0);
  char dir[] = "/tmp/test_predictors.XXXXXX", path[PATH_MAX];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/cache.db", dir);
  struct tl_store *st = NULL;
  ck_assert_msg(tl_store_open(path, &st, NULL, &err) == 0, "%s", err.msg);
  struct tl_device_fp fp = {.cpu_model = "test cpu", .cores = 2, .blas = "test", .threads = 1};
  int64_t dev;
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);

  struct tl_frontier_member *fr = NULL;
  int n = 0;
  struct tl_frontier_report rep;
  ck_assert_msg(tl_frontier_obtain(f.sn, f.g, st, dev, &data, &small_search, &quick_profile, NULL,
                                   &fr, &n, &rep, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(rep.cached, 0);
  ck_assert_int_gt(rep.profiled_signatures, 0);
  ck_assert_int_gt(rep.evaluated, 0);
  ck_assert_int_ge(n, 1);
  ck_assert_int_le(n, 4);
  for (int i = 0; i < n; i++) {
    ck_assert_ptr_nonnull(fr[i].bn);
    ck_assert(fr[i].accuracy > 0.5); /* a trained model on real images */
    if (i > 0) {
      ck_assert(fr[i].predicted_ms > fr[i - 1].predicted_ms);
      ck_assert(fr[i].accuracy > fr[i - 1].accuracy);
    }
  }
  /* Reopened: loaded, nothing profiled or evaluated, same members. */
  tl_store_close(st);
  ck_assert_int_eq(tl_store_open(path, &st, NULL, &err), 0);
  struct tl_frontier_member *again = NULL;
  int n2 = 0;
  ck_assert_msg(tl_frontier_obtain(f.sn, f.g, st, dev, &data, &small_search, &quick_profile, NULL,
                                   &again, &n2, &rep, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(rep.cached, 1);
  ck_assert_int_eq(rep.profiled_signatures, 0);
  ck_assert_int_eq(rep.evaluated, 0);
  ck_assert_int_eq(n2, n);
  for (int i = 0; i < n; i++) {
    ck_assert_int_eq(tl_subnet_key(f.sn, &again[i].spec), tl_subnet_key(f.sn, &fr[i].spec));
    ck_assert(again[i].accuracy == fr[i].accuracy);
    ck_assert_ptr_nonnull(again[i].bn);
  }
  tl_frontier_free(again, n2);
  tl_frontier_free(fr, n);
  /* What the daemon asks before it serves: the same search is cached;
   * another k, or more images, is another frontier, searched anew. */
  int cached = 0;
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &data, &small_search, &cached, &err), 0);
  ck_assert_int_eq(cached, n);
  struct tl_search_options other = small_search;
  other.k = 3;
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &data, &other, &cached, &err), 0);
  ck_assert_int_eq(cached, 0);
  other = small_search;
  other.est_images = 400;
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &data, &other, &cached, &err), 0);
  ck_assert_int_eq(cached, 0);
  tl_store_close(st);

  /* Garbage written over the cache: set aside and rebuilt empty, so the
   * frontier is searched again. */
  FILE *fh = fopen(path, "w");
  ck_assert_ptr_nonnull(fh);
  fputs("this is not a database, it is a test's garbage\n", fh);
  fclose(fh);
  struct tl_store_open_report orep;
  ck_assert_int_eq(tl_store_open(path, &st, &orep, &err), 0);
  ck_assert_int_eq(orep.outcome, TL_STORE_REBUILT_CORRUPT);
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &data, &small_search, &cached, &err), 0);
  ck_assert_int_eq(cached, 0);
  tl_store_close(st);
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
  tl_calib_free(&data);
  unload(&f);
}
END_TEST

/* The search evaluates a step's subnets on several threads at once; the
 * frontier (members, their accuracies, their statistics) and the work
 * done must be what one thread finds, whatever the threads' order. */
START_TEST(search_on_threads_finds_what_one_thread_finds) {
  struct fixture f = load_small();
  struct tl_calib data;
  struct tl_error err = {{0}};
  load_calib(&data, 500, 0);
  struct tl_op_table *t = profiled(&f);
  struct tl_frontier_member *one = NULL, *three = NULL;
  int n1 = 0, n3 = 0;
  struct tl_search_report r1, r3;
  struct tl_search_options so = small_search;
  so.threads = 1;
  ck_assert_msg(tl_search(f.sn, t, &data, &so, &one, &n1, &r1, &err) == 0, "%s", err.msg);
  so.threads = 3;
  ck_assert_msg(tl_search(f.sn, t, &data, &so, &three, &n3, &r3, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(r3.evaluated, r1.evaluated);
  ck_assert_int_eq(n3, n1);
  for (int i = 0; i < n1; i++) {
    ck_assert_int_eq(tl_subnet_key(f.sn, &three[i].spec), tl_subnet_key(f.sn, &one[i].spec));
    ck_assert(three[i].accuracy == one[i].accuracy);
    ck_assert(three[i].predicted_ms == one[i].predicted_ms);
    void *b1 = NULL, *b3 = NULL;
    size_t l1 = 0, l3 = 0;
    ck_assert_int_eq(tl_bn_stats_serialize(f.sn, one[i].bn, &b1, &l1, &err), 0);
    ck_assert_int_eq(tl_bn_stats_serialize(f.sn, three[i].bn, &b3, &l3, &err), 0);
    ck_assert(l1 == l3 && memcmp(b1, b3, l1) == 0);
    free(b1);
    free(b3);
  }
  /* A stop seen by every thread: canceled, nothing returned. */
  atomic_int stop = 1;
  so.stop = &stop;
  struct tl_frontier_member *none = NULL;
  int n0 = -1;
  ck_assert_int_eq(tl_search(f.sn, t, &data, &so, &none, &n0, NULL, &err), TL_ECANCELED);
  ck_assert_ptr_null(none);
  tl_frontier_free(one, n1);
  tl_frontier_free(three, n3);
  tl_op_table_free(t);
  tl_calib_free(&data);
  unload(&f);
}
END_TEST

struct partials {
  int calls, last_n;
  int sorted; /* every partial frontier sorted and each more accurate */
};

static void count_partial(void *ctx, struct tl_frontier_member *f, int n) {
  struct partials *p = ctx;
  p->calls++;
  p->last_n = n;
  for (int i = 1; i < n; i++)
    if (!(f[i].predicted_ms > f[i - 1].predicted_ms && f[i].accuracy > f[i - 1].accuracy))
      p->sorted = 0;
  for (int i = 0; i < n; i++)
    if (f[i].bn == NULL)
      p->sorted = 0; /* a partial frontier is served: it needs its statistics */
  tl_frontier_free(f, n);
}

/* The search is anytime: it hands over each better frontier on the way,
 * and a time budget ends it with the best front measured so far. */
START_TEST(search_gives_partial_frontiers_and_keeps_a_time_budget) {
  struct fixture f = load_small();
  struct tl_calib data;
  struct tl_error err = {{0}};
  load_calib(&data, 500, 0);
  struct tl_op_table *t = profiled(&f);
  struct partials p = {.sorted = 1};
  struct tl_search_options so = small_search;
  so.threads = 2;
  so.partial = count_partial;
  so.ctx = &p;
  struct tl_frontier_member *whole = NULL;
  int n = 0;
  struct tl_search_report rep;
  ck_assert_msg(tl_search(f.sn, t, &data, &so, &whole, &n, &rep, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(rep.complete, 1);
  ck_assert_int_ge(p.calls, 1);
  ck_assert_int_eq(rep.partials, p.calls);
  ck_assert(p.sorted);
  tl_frontier_free(whole, n);

  /* A quarter of that time: cut short, a frontier all the same, cached
   * with accuracies that say they were measured on the subset. */
  so.partial = NULL;
  so.time_budget_s = rep.seconds / 4;
  struct tl_store *st = NULL;
  ck_assert_int_eq(tl_store_open(":memory:", &st, NULL, &err), 0);
  struct tl_device_fp fp = {.cpu_model = "test cpu", .cores = 2, .blas = "test", .threads = 1};
  int64_t dev;
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);
  struct tl_frontier_member *cut = NULL;
  int n_cut = 0;
  struct tl_frontier_report crep;
  ck_assert_msg(tl_frontier_obtain(f.sn, f.g, st, dev, &data, &so, &quick_profile, t, &cut, &n_cut,
                                   &crep, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(crep.complete, 0);
  ck_assert_int_lt(crep.evaluated, rep.evaluated);
  ck_assert_int_ge(n_cut, 1);
  char mhash[17], chash[17];
  snprintf(mhash, sizeof mhash, "%016llx", (unsigned long long)f.g->hash);
  tl_frontier_calib_hash(&data, chash);
  for (int i = 0; i < n_cut; i++) {
    ck_assert_ptr_nonnull(cut[i].bn);
    if (i > 0) {
      ck_assert(cut[i].predicted_ms > cut[i - 1].predicted_ms);
      ck_assert(cut[i].accuracy > cut[i - 1].accuracy);
    }
    struct tl_subnet_accuracy *acc = NULL;
    ck_assert_int_eq(
        tl_store_accuracy_get(st, mhash, tl_subnet_key(f.sn, &cut[i].spec), chash, &acc, &err), 0);
    ck_assert_int_eq(acc->images, so.est_images); /* not all data.n */
    ck_assert(acc->accuracy == cut[i].accuracy);
    free(acc);
  }
  tl_frontier_free(cut, n_cut);
  tl_store_close(st);

  /* No time at all: nothing measured, said so. */
  so.time_budget_s = 1e-9;
  struct tl_frontier_member *none = NULL;
  int n_none = -1;
  ck_assert_int_eq(tl_search(f.sn, t, &data, &so, &none, &n_none, NULL, &err), TL_ETIMEDOUT);
  ck_assert_ptr_null(none);
  ck_assert_msg(strstr(err.msg, "time budget") != NULL, "%s", err.msg);
  tl_op_table_free(t);
  tl_calib_free(&data);
  unload(&f);
}
END_TEST

/* Without labels, every subnet is measured by its top-1 agreement with
 * the largest subnet: the largest agrees with itself on every image, a
 * search runs on such data as on labelled data, and its frontier is
 * cached apart from a labelled one. */
START_TEST(unlabelled_data_measures_agreement_and_keys_apart) {
  struct fixture f = load_small();
  struct tl_calib labelled, un;
  struct tl_error err = {{0}};
  load_calib(&labelled, 500, 0);
  load_calib(&un, 500, 1);
  ck_assert_int_eq(labelled.agreement, 0);
  ck_assert_str_eq(tl_calib_metric(&labelled), "top-1");
  ck_assert_int_eq(un.agreement, 1);
  ck_assert_ptr_null(un.labels);
  ck_assert_int_eq(un.n, labelled.n);
  ck_assert_str_eq(tl_calib_metric(&un), "agreement");

  struct tl_subnet_spec big, small;
  tl_subnet_largest(f.sn, &big);
  tl_subnet_smallest(f.sn, &small);
  double acc = -1;
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &big, NULL, &un, 0, 500, 100, NULL, &acc, &err),
                   TL_EINVAL);
  ck_assert_msg(strstr(err.msg, "no labels") != NULL, "%s", err.msg);

  /* The search labels its own copy: the caller's data stays unlabelled. */
  struct tl_store *st = NULL;
  ck_assert_int_eq(tl_store_open(":memory:", &st, NULL, &err), 0);
  struct tl_device_fp fp = {.cpu_model = "test cpu", .cores = 2, .blas = "test", .threads = 1};
  int64_t dev;
  ck_assert_int_eq(tl_store_device(st, &fp, &dev, &err), 0);
  struct tl_search_options so = small_search;
  so.k = 2;
  so.candidates = 4;
  so.threads = 2;
  struct tl_frontier_member *fr = NULL;
  int n = 0;
  ck_assert_msg(tl_frontier_obtain(f.sn, f.g, st, dev, &un, &so, &quick_profile, NULL, &fr, &n,
                                   NULL, &err) == 0,
                "%s", err.msg);
  ck_assert_ptr_null(un.labels);
  ck_assert_int_ge(n, 1);
  ck_assert(fr[n - 1].accuracy > 0.5 && fr[n - 1].accuracy <= 1.0);
  tl_frontier_free(fr, n);
  int cached = -1;
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &un, &so, &cached, &err), 0);
  ck_assert_int_eq(cached, n);
  ck_assert_int_eq(tl_frontier_cached(f.sn, f.g, st, dev, &labelled, &so, &cached, &err), 0);
  ck_assert_int_eq(cached, 0); /* a labelled search is another frontier */
  tl_store_close(st);

  ck_assert_int_eq(tl_calib_agreement_labels(f.sn, &un, 100, NULL, &err), 0);
  ck_assert_ptr_nonnull(un.labels);
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &big, NULL, &un, 0, 0, 100, NULL, &acc, &err), 0);
  ck_assert(acc == 1.0);
  double small_agree, small_top1, big_top1;
  ck_assert_int_eq(tl_subnet_accuracy(f.sn, &small, NULL, &un, 0, 0, 100, NULL, &small_agree, &err),
                   0);
  ck_assert_int_eq(
      tl_subnet_accuracy(f.sn, &small, NULL, &labelled, 0, 0, 100, NULL, &small_top1, &err), 0);
  ck_assert_int_eq(
      tl_subnet_accuracy(f.sn, &big, NULL, &labelled, 0, 0, 100, NULL, &big_top1, &err), 0);
  ck_assert(small_agree < 1.0);
  /* Agreement differs from accuracy by at most where the largest errs. */
  ck_assert_msg(fabs(small_agree - small_top1) <= 1 - big_top1 + 1e-9,
                "agreement %.4f, top-1 %.4f, largest's top-1 %.4f", small_agree, small_top1,
                big_top1);
  tl_calib_free(&un);
  tl_calib_free(&labelled);
  unload(&f);
}
END_TEST

static Suite *predictors_suite(void) {
  Suite *s = suite_create("predictors");
  TCase *tc = tcase_create("latency");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, op_table_sets_replaces_and_grows);
  tcase_add_test(tc, profile_covers_every_random_subnet);
  tcase_add_test(tc, profile_of_a_complete_table_measures_nothing);
  tcase_add_test(tc, predict_without_the_signature_says_profile_first);
  tcase_add_test(tc, memory_prediction_is_the_plans_own_layout);
  tcase_add_test(tc, state_scaling_divides_by_frequency_and_share);
  tcase_add_test(tc, table_survives_the_store);
  tcase_add_test(tc, transfer_maps_every_entry_from_few_anchors);
  tcase_add_test(tc, plan_steps_say_how_their_work_splits_over_threads);
  tcase_add_test(tc, transfer_fits_the_steps_a_second_thread_splits_apart);
  tcase_add_test(tc, transfer_refuses_too_few_anchors_or_a_foreign_table);
  suite_add_tcase(s, tc);
  tc = tcase_create("search");
  tcase_set_timeout(tc, 600); /* a whole search: 300 s was hit under ASan on a busy machine */
  tcase_add_test(tc, bn_stats_round_trip_and_reject_damage);
  tcase_add_test(tc, frontier_is_sorted_pareto_and_cached);
  tcase_add_test(tc, search_on_threads_finds_what_one_thread_finds);
  tcase_add_test(tc, unlabelled_data_measures_agreement_and_keys_apart);
  tcase_add_test(tc, search_gives_partial_frontiers_and_keeps_a_time_budget);
  tcase_add_test(tc, a_stopped_search_returns_canceled_and_stores_nothing);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  const char *src = getenv("TAILOR_SOURCE_ROOT"), *build = getenv("TAILOR_BUILD_ROOT");
  src = src ? src : ".";
  build = build ? build : "build";
  snprintf(model_path, sizeof model_path, "%s/models/fmnist.onnx", src);
  snprintf(calib_x, sizeof calib_x, "%s/data/fmnist-calib-x.npy", build);
  snprintf(calib_y, sizeof calib_y, "%s/data/fmnist-calib-y.npy", build);
  struct stat st;
  if (stat(calib_y, &st) != 0) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/make-calib.py' '%s/data'", src, build);
    if (system(cmd) != 0) {
      fprintf(stderr, "test_predictors: `%s` failed\n", cmd);
      return 1;
    }
  }
  int failed = tu_run(predictors_suite());
  return failed ? 1 : 0;
}
