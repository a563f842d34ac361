/*
 * test_export.c - subnets written as standalone ONNX models.
 *
 * On the bundled model, its BN-folded variant and the small default
 * export of tests/data (grouped conv, squeeze-and-excitation gate, shared
 * weights): an exported subnet, loaded back like any model, gives what
 * the subnet's plan gives on the same input -- bit for bit when both run
 * the reference kernels, within 1e-5 of the largest output with the fast
 * ones, and with recalibrated statistics too; its weights are exactly
 * what the subnet reads; ONNX's own checker accepts it; Resize is ONNX's
 * linear half-pixel resize; failures leave no file and say where.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "export.h"
#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "supernet.h"
#include "testutil.h"

static char source_root[4096], build_root[4096];

struct model {
  const char *dir; /* under the source root */
  const char *file;
  int optional; /* skipped when the tree does not have it */
};

static const struct model models[] = {
    {"models", "fmnist.onnx", 0},
    {"models", "fmnist-folded.onnx", 1},
    {"tests/data/models", "exported.onnx", 0},
};
#define N_MODELS ((int)(sizeof models / sizeof models[0]))

/* Model i's path into buf; 0 if an optional model is missing. */
static int model_path(int i, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s/%s", source_root, models[i].dir, models[i].file);
  struct stat st;
  if (stat(buf, &st) == 0)
    return 1;
  ck_assert_msg(models[i].optional, "%s is missing", buf);
  fprintf(stderr, "test_export: %s not in this tree; skipped\n", buf);
  return 0;
}

/* The batch the tests run: 2 where the model leaves it free. */
static int batch_of(const struct tl_graph *g) {
  const int64_t n = g->values[g->inputs[0]].shape.dims[0];
  return n > 0 ? (int)n : 2;
}

/* Deterministic inputs in [-1, 3). */
static void fill(float *x, int64_t n, uint64_t seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    x[i] = (float)(seed >> 40) / (float)(1 << 24) * 4.f - 1.f;
  }
}

struct compared {
  double rel;    /* max |a - b| / max |b| */
  int identical; /* bit for bit */
};

/* Exports spec with statistics bn to a file, loads it, and runs it and
 * the subnet's own plan on the same input. */
static struct compared export_and_compare(struct tl_supernet *sn, struct tl_graph *g,
                                          const struct tl_subnet_spec *spec,
                                          const struct tl_bn_stats *bn, int reference) {
  struct tl_error err = {{0}};
  char text[512];
  tl_subnet_format(sn, spec, text, sizeof text);
  const char *path = tu_tmp_path("subnet.onnx");
  ck_assert_msg(tl_subnet_export(sn, spec, bn, path, &err) == 0, "%s: %s", text, err.msg);
  struct tl_graph *eg = tu_load(path);
  const int batch = batch_of(g);
  struct tl_shape shape = g->values[g->inputs[0]].shape;
  shape.dims[0] = batch;
  struct tl_plan_options po = {.input_shapes = &shape, .reference = reference};
  struct tl_plan *ep = NULL, *sp = NULL;
  ck_assert_msg(tl_plan_build(eg, &po, &ep, &err) == 0, "%s: %s", text, err.msg);
  struct tl_subnet_plan_options so = {.batch = batch, .bn = bn, .reference = reference};
  ck_assert_msg(tl_subnet_plan(sn, spec, &so, &sp, &err) == 0, "%s: %s", text, err.msg);
  const int64_t n_in = tl_shape_numel(&shape);
  fill(tl_plan_input(sp, 0)->data, n_in, tl_subnet_key(sn, spec));
  memcpy(tl_plan_input(ep, 0)->data, tl_plan_input(sp, 0)->data, (size_t)n_in * sizeof(float));
  tl_plan_run(ep);
  tl_plan_run(sp);
  const struct tl_tensor *a = tl_plan_output(ep, 0), *b = tl_plan_output(sp, 0);
  ck_assert_msg(tl_shape_equal(&a->shape, &b->shape), "%s: output shapes differ", text);
  struct compared c = {0, 1};
  double max_ref = 0, max_err = 0;
  for (int64_t i = 0; i < tl_shape_numel(&b->shape); i++) {
    const float x = ((const float *)a->data)[i], y = ((const float *)b->data)[i];
    ck_assert_msg(isfinite(x), "%s: output %lld is not finite", text, (long long)i);
    max_ref = fmax(max_ref, fabs(y));
    max_err = fmax(max_err, fabs((double)x - y));
    c.identical &= memcmp(&x, &y, sizeof x) == 0;
  }
  c.rel = max_ref > 0 ? max_err / max_ref : max_err;
  tl_plan_free(ep);
  tl_plan_free(sp);
  tl_graph_free(eg);
  return c;
}

/* The largest, the smallest and six random subnets of each model. */
#define N_SPECS 8
static void specs_of(const struct tl_supernet *sn, struct tl_subnet_spec *specs) {
  uint64_t seed = 7;
  tl_subnet_largest(sn, &specs[0]);
  tl_subnet_smallest(sn, &specs[1]);
  for (int k = 2; k < N_SPECS; k++)
    tl_subnet_random(sn, &seed, &specs[k]);
}

START_TEST(exported_subnets_match_their_plans) {
  char path[8300];
  if (!model_path(_i, path, sizeof path))
    return;
  struct tl_graph *g = tu_load(path);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_subnet_spec specs[N_SPECS];
  specs_of(sn, specs);
  for (int k = 0; k < N_SPECS; k++) {
    char text[512];
    tl_subnet_format(sn, &specs[k], text, sizeof text);
    /* The same kernels on both sides: the same numbers. */
    struct compared ref = export_and_compare(sn, g, &specs[k], NULL, 1);
    ck_assert_msg(ref.identical, "%s %s: reference kernels differ by %g of max |y|",
                  models[_i].file, text, ref.rel);
    /* The fast kernels may pick another algorithm for a whole model
     * (Winograd) than for a view of the SuperNet. */
    struct compared fast = export_and_compare(sn, g, &specs[k], NULL, 0);
    ck_assert_msg(fast.rel <= 1e-5, "%s %s: off by %g of max |y|", models[_i].file, text, fast.rel);
  }
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* Random images of the model's input shape, for recalibration. */
static void random_calib(const struct tl_graph *g, int n, struct tl_calib *data) {
  const struct tl_shape *s = &g->values[g->inputs[0]].shape;
  memset(data, 0, sizeof *data);
  data->x.dtype = TL_DTYPE_FLOAT32;
  data->x.shape = (struct tl_shape){4, {n, s->dims[1], s->dims[2], s->dims[3]}};
  data->x.data = malloc((size_t)tl_shape_numel(&data->x.shape) * sizeof(float));
  data->labels = calloc((size_t)n, sizeof(int64_t));
  ck_assert(data->x.data != NULL && data->labels != NULL);
  fill(data->x.data, tl_shape_numel(&data->x.shape), 99);
  data->n = n;
  data->scale = 1.f;
}

/* Recalibrated statistics go into the file: BN's mean and variance, and
 * in the folded model the conv maps, folded into the conv weights (so
 * there the numbers match to rounding, not bit for bit). */
START_TEST(exported_recalibrated_subnets_match_their_plans) {
  char path[8300];
  if (!model_path(_i, path, sizeof path))
    return;
  struct tl_graph *g = tu_load(path);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_calib data;
  random_calib(g, 16, &data);
  struct tl_subnet_spec specs[N_SPECS];
  specs_of(sn, specs);
  for (int k = 1; k < 5; k++) {
    char text[512];
    tl_subnet_format(sn, &specs[k], text, sizeof text);
    struct tl_bn_stats *bn = NULL;
    struct tl_error err = {{0}};
    ck_assert_msg(tl_subnet_recalibrate(sn, &specs[k], &data, 16, 8, NULL, &bn, &err) == 0, "%s",
                  err.msg);
    struct compared ref = export_and_compare(sn, g, &specs[k], bn, 1);
    ck_assert_msg(ref.rel <= 1e-5, "%s %s recalibrated, reference kernels: off by %g",
                  models[_i].file, text, ref.rel);
    struct compared fast = export_and_compare(sn, g, &specs[k], bn, 0);
    ck_assert_msg(fast.rel <= 1e-5, "%s %s recalibrated: off by %g", models[_i].file, text,
                  fast.rel);
    tl_bn_stats_free(bn);
  }
  tl_calib_free(&data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* Weight elements the graph's convs and Gemms read, counted per node as
 * plans count them. */
static int64_t weights_read(const struct tl_graph *g) {
  int64_t total = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[i];
    if (nd->op != TL_OP_CONV && nd->op != TL_OP_GEMM)
      continue;
    for (int k = 1; k < nd->n_in; k++)
      if (nd->in[k] >= 0 && g->values[nd->in[k]].data != NULL)
        total += tl_shape_numel(&g->values[nd->in[k]].shape);
  }
  return total;
}

/* A subnet's file holds what the subnet reads and no more: the weights
 * its plan counts, fewer nodes when blocks are skipped, and grouped
 * convs with the groups kept. */
START_TEST(exported_weights_are_exactly_what_the_subnet_reads) {
  char path[8300];
  if (!model_path(_i, path, sizeof path))
    return;
  struct tl_graph *g = tu_load(path);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_subnet_spec specs[N_SPECS];
  specs_of(sn, specs);
  for (int k = 0; k < N_SPECS; k++) {
    char text[512];
    struct tl_error err = {{0}};
    tl_subnet_format(sn, &specs[k], text, sizeof text);
    int64_t macs, params;
    ck_assert_msg(tl_subnet_cost(sn, &specs[k], &macs, &params, &err) == 0, "%s", err.msg);
    const char *out = tu_tmp_path("subnet.onnx");
    ck_assert_msg(tl_subnet_export(sn, &specs[k], NULL, out, &err) == 0, "%s", err.msg);
    struct tl_graph *eg = tu_load(out);
    ck_assert_msg(weights_read(eg) == params,
                  "%s %s: %lld weights in the file, the plan "
                  "reads %lld",
                  models[_i].file, text, (long long)weights_read(eg), (long long)params);
    if (k == 1) /* the smallest: every block skipped */
      ck_assert_int_lt(eg->n_nodes, g->n_nodes);
    for (int i = 0; i < eg->n_nodes; i++) {
      const struct tl_node *nd = &eg->nodes[i];
      const struct tl_attr *ga = tl_node_attr(nd, "group");
      if (nd->op != TL_OP_CONV || ga == NULL || ga->i <= 1)
        continue;
      /* Depthwise or grouped: every group whole, as many as declared. */
      const struct tl_shape *ws = &eg->values[nd->in[1]].shape;
      ck_assert_int_eq(ws->dims[0] % ga->i, 0);
    }
    tl_graph_free(eg);
  }
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* ONNX's own checker, with shape inference, accepts an export that
 * resizes and slices grouped convs and gates (when Debian's python3-onnx
 * is installed). */
START_TEST(onnx_checker_accepts_exports) {
  if (system("/usr/bin/python3 -c 'import onnx' 2>/dev/null") != 0) {
    fprintf(stderr, "test_export: no python3-onnx; checker test skipped\n");
    return;
  }
  for (int m = 0; m < N_MODELS; m++) {
    char path[8300];
    if (!model_path(m, path, sizeof path))
      continue;
    struct tl_graph *g = tu_load(path);
    struct tl_supernet *sn = tu_supernet(g);
    struct tl_subnet_spec spec;
    uint64_t seed = 3;
    tl_subnet_random(sn, &seed, &spec);
    struct tl_subnet_spec small;
    tl_subnet_smallest(sn, &small);
    spec.res = small.res; /* with a Resize in front */
    struct tl_error err = {{0}};
    const char *out = tu_tmp_path("checked.onnx");
    ck_assert_msg(tl_subnet_export(sn, &spec, NULL, out, &err) == 0, "%s", err.msg);
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import onnx, sys; "
             "onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' '%s'",
             out);
    ck_assert_msg(system(cmd) == 0, "%s: onnx.checker refused the export of %s", out,
                  models[m].file);
    tl_supernet_free(sn);
    tl_graph_free(g);
  }
}
END_TEST

/* tailor's Resize against ONNX's definition computed in float64 by
 * scripts/make-test-models.py, down and up: the same up to the float
 * rounding of the source coordinate (in/out times, not divided by out/in). */
START_TEST(resize_is_onnx_linear_half_pixel) {
  static const char *const names[] = {"resize_down", "resize_up"};
  for (int k = 0; k < 2; k++) {
    char path[8300];
    struct tl_error err = {{0}};
    snprintf(path, sizeof path, "%s/tests/data/models/%s.onnx", source_root, names[k]);
    struct tl_graph *g = tu_load(path);
    struct tl_tensor x, want;
    snprintf(path, sizeof path, "%s/tests/data/models/%s.input.npy", source_root, names[k]);
    ck_assert_msg(tl_npy_read(path, &x, &err) == 0, "%s", err.msg);
    snprintf(path, sizeof path, "%s/tests/data/models/%s.output.npy", source_root, names[k]);
    ck_assert_msg(tl_npy_read(path, &want, &err) == 0, "%s", err.msg);
    struct tl_plan *p = NULL;
    ck_assert_msg(tl_plan_build(g, NULL, &p, &err) == 0, "%s", err.msg);
    memcpy(tl_plan_input(p, 0)->data, x.data, (size_t)tl_shape_numel(&x.shape) * sizeof(float));
    tl_plan_run(p);
    const struct tl_tensor *y = tl_plan_output(p, 0);
    ck_assert(tl_shape_equal(&y->shape, &want.shape));
    double max_ref = 0, max_err = 0;
    for (int64_t i = 0; i < tl_shape_numel(&y->shape); i++) {
      max_ref = fmax(max_ref, fabs(((float *)want.data)[i]));
      max_err = fmax(max_err, fabs(((float *)want.data)[i] - ((float *)y->data)[i]));
    }
    ck_assert_msg(max_err <= 1e-5 * max_ref, "%s: off by %g (max |y| %g)", names[k], max_err,
                  max_ref);
    tl_plan_free(p);
    free(x.data);
    free(want.data);
    tl_graph_free(g);
  }
}
END_TEST

/* A file that cannot be written is an error naming it, and leaves
 * nothing behind; statistics of another model are refused. */
START_TEST(export_errors_say_where_and_leave_no_file) {
  char path[8300];
  model_path(0, path, sizeof path);
  struct tl_graph *g = tu_load(path);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_subnet_spec spec;
  tl_subnet_smallest(sn, &spec);
  struct tl_error err = {{0}};
  char bad[8300];
  snprintf(bad, sizeof bad, "%s/no/such/dir/x.onnx", tu_tmpdir());
  ck_assert_int_eq(tl_subnet_export(sn, &spec, NULL, bad, &err), TL_EIO);
  ck_assert_msg(strstr(err.msg, "no/such/dir/x.onnx") != NULL, "%s", err.msg);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);
  /* A directory where the file should go: the rename fails, and the
   * temporary file beside it is gone. */
  const char *dir = tu_tmp_path("taken");
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  char inner[8300];
  snprintf(inner, sizeof inner, "%s/f", dir);
  FILE *f = fopen(inner, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  ck_assert_int_eq(tl_subnet_export(sn, &spec, NULL, dir, &err), TL_EIO);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
  float *mean[1] = {NULL}, *var[1] = {NULL};
  struct tl_bn_stats other = {1, mean, var};
  ck_assert_int_eq(tl_subnet_export(sn, &spec, &other, tu_tmp_path("y.onnx"), &err), TL_EINVAL);
  ck_assert_msg(strstr(err.msg, "statistics for 1 nodes") != NULL, "%s", err.msg);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

int main(void) {
  if (tu_roots("export", source_root, build_root) != 0)
    return 1;
  Suite *s = suite_create("export");
  TCase *tc = tcase_create("export");
  tcase_set_timeout(tc, 300);
  tu_add_tmpdir(tc, "export");
  tcase_add_loop_test(tc, exported_subnets_match_their_plans, 0, N_MODELS);
  tcase_add_loop_test(tc, exported_recalibrated_subnets_match_their_plans, 0, N_MODELS);
  tcase_add_loop_test(tc, exported_weights_are_exactly_what_the_subnet_reads, 0, N_MODELS);
  tcase_add_test(tc, onnx_checker_accepts_exports);
  tcase_add_test(tc, resize_is_onnx_linear_half_pixel);
  tcase_add_test(tc, export_errors_say_where_and_leave_no_file);
  suite_add_tcase(s, tc);
  return tu_run(s) ? 1 : 0;
}
