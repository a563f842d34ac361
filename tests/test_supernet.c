/*
 * test_supernet.c - the SuperNet compiler and subnets.
 *
 * On the torchvision exports (made by scripts/export-models.py when
 * missing) and the small test models: the elastic dimensions found, the
 * largest subnet reproducing the model, random subnets running, plans that
 * share the SuperNet's weights instead of copying them, sorted channels,
 * BN recalibration, and errors for bad specs and models with nothing
 * elastic.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "supernet.h"
#include "testutil.h"

static char model_dir[4096], data_dir[4096];

struct expect {
  const char *name;
  int stages;
  int blocks[8];    /* skippable blocks per stage */
  int width_groups; /* total */
};

/* What the graphs hold: ResNets' identity blocks after each stage's
 * projection block, and each block's internal channels (one group per
 * 3x3 ResNet block, two per bottleneck); MobileNets' inverted residuals
 * with skips, the expansion channels of every block that has an expansion
 * conv (through the depthwise conv and any squeeze-excitation gate: 10 in
 * MobileNetV3-Small), the squeeze-excitation's own hidden channels (9),
 * and a block's output channels when only the next block's first conv
 * reads them (no skip ties them; 2). */
static const struct expect expects[] = {
    {"resnet18", 4, {2, 1, 1, 1}, 8},
    {"resnet50", 4, {2, 3, 5, 2}, 32},
    {"mobilenet_v2", 5, {1, 2, 3, 2, 2}, 19},
    {"mobilenet_v3_small", 4, {1, 2, 1, 2}, 21},
};

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static void ensure_models(void) {
  const char *build = getenv("TAILOR_GENERATED_ROOT");
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  snprintf(model_dir, sizeof model_dir, "%s/models", build ? build : "build");
  snprintf(data_dir, sizeof data_dir, "%s/tests/data/models", src ? src : ".");
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/mobilenet_v3_small.output.npy", model_dir);
  if (exists(probe))
    return;
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/export-models.py' '%s'", src ? src : ".",
           model_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "model export failed\n");
}

static struct tl_graph *load(const char *dir, const char *name) {
  char path[8300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return tu_load(path);
}

/* The largest difference between y and ref, relative to max |ref|; the
 * shapes must agree. */
static double rel_error(const struct tl_tensor *y, const struct tl_tensor *ref) {
  ck_assert(tl_shape_equal(&y->shape, &ref->shape));
  double max_ref = 0, max_err = 0;
  for (int64_t i = 0; i < tl_shape_numel(&ref->shape); i++) {
    max_ref = fmax(max_ref, fabs(((float *)ref->data)[i]));
    max_err = fmax(max_err, fabs(((float *)ref->data)[i] - ((float *)y->data)[i]));
  }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

START_TEST(compiler_finds_the_elastic_dimensions) {
  const struct expect *e = &expects[_i];
  char file[256];
  snprintf(file, sizeof file, "%s.onnx", e->name);
  struct tl_graph *g = load(model_dir, file);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  ck_assert_msg(info.n_stages == e->stages, "%s: %d stages", e->name, info.n_stages);
  for (int s = 0; s < e->stages; s++)
    ck_assert_msg(info.blocks[s] == e->blocks[s], "%s: stage %d has %d blocks, expected %d",
                  e->name, s + 1, info.blocks[s], e->blocks[s]);
  if (e->width_groups >= 0)
    ck_assert_msg(info.n_width_groups == e->width_groups, "%s: %d width groups, expected %d",
                  e->name, info.n_width_groups, e->width_groups);
  else
    ck_assert_int_gt(info.n_width_groups, 0);
  ck_assert_int_eq(info.n_res, 5); /* 112 140 168 196 224 */
  ck_assert_int_eq(info.res[0], 112);
  ck_assert_int_eq(info.res[4], 224);
  ck_assert(info.space_size > 1000);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* The largest subnet equals the original model (PyTorch's output); 100
 * random subnets all run to finite outputs of the same shape (3 under an
 * emulator). */
START_TEST(largest_subnet_reproduces_the_model_and_random_subnets_run) {
  const char *name = expects[_i].name;
  char path[8300];
  struct tl_error err = {{0}};
  snprintf(path, sizeof path, "%s.onnx", name);
  struct tl_graph *g = load(model_dir, path);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_tensor x, ref;
  snprintf(path, sizeof path, "%s/%s.input.npy", model_dir, name);
  ck_assert_int_eq(tl_npy_read(path, &x, &err), 0);
  snprintf(path, sizeof path, "%s/%s.output.npy", model_dir, name);
  ck_assert_int_eq(tl_npy_read(path, &ref, &err), 0);
  const size_t in_bytes = (size_t)tl_shape_numel(&x.shape) * sizeof(float);

  struct tl_subnet_spec spec;
  tl_subnet_largest(sn, &spec);
  struct tl_plan *p = NULL;
  ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s", err.msg);
  memcpy(tl_plan_input(p, 0)->data, x.data, in_bytes);
  tl_plan_run(p);
  const double rel = rel_error(tl_plan_output(p, 0), &ref);
  ck_assert_msg(rel <= 1e-4, "%s: largest subnet off by %g of max |ref|", name, rel);
  tl_plan_free(p);

  uint64_t seed = 42;
  int runs = strcmp(name, "resnet50") == 0 ? 30 : 100; /* keep the suite quick */
  if (tu_emulated())
    runs = 3;
  for (int k = 0; k < runs; k++) {
    tl_subnet_random(sn, &seed, &spec);
    char text[512];
    tl_subnet_format(sn, &spec, text, sizeof text);
    ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s %s: %s", name, text, err.msg);
    memcpy(tl_plan_input(p, 0)->data, x.data, in_bytes);
    tl_plan_run(p);
    const struct tl_tensor *y = tl_plan_output(p, 0);
    ck_assert_msg(tl_shape_equal(&y->shape, &ref.shape), "%s %s: wrong output shape", name, text);
    for (int64_t i = 0; i < tl_shape_numel(&y->shape); i++)
      ck_assert_msg(isfinite(((float *)y->data)[i]), "%s %s: output %lld not finite", name, text,
                    (long long)i);
    tl_plan_free(p);
  }
  free(x.data);
  free(ref.data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* The bundled model: three stages of two skippable blocks, eight width
 * groups, resolutions 14..28; its largest subnet equals the whole graph
 * run by the engine, and 100 random subnets (10 under an emulator) give
 * finite logits. */
START_TEST(bundled_model_is_a_supernet_whose_largest_subnet_is_the_model) {
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  char dir[4100];
  snprintf(dir, sizeof dir, "%s/models", src ? src : ".");
  struct tl_graph *g = load(dir, "fmnist.onnx");
  struct tl_error err = {{0}};
  /* The whole graph first: the SuperNet sorts channels in place, which
   * must not change what the model computes. */
  struct tl_shape in_shape = {4, {1, 1, 28, 28}};
  struct tl_plan_options po = {.input_shapes = &in_shape};
  struct tl_plan *whole = NULL;
  ck_assert_msg(tl_plan_build(g, &po, &whole, &err) == 0, "%s", err.msg);
  float x[28 * 28];
  uint32_t r = 1;
  for (int i = 0; i < 28 * 28; i++) {
    r = r * 1664525u + 1013904223u;
    x[i] = (float)(r >> 8) / 16777216.0f;
  }
  memcpy(tl_plan_input(whole, 0)->data, x, sizeof x);
  tl_plan_run(whole);
  float ref[10];
  memcpy(ref, tl_plan_output(whole, 0)->data, sizeof ref);
  tl_plan_free(whole);

  struct tl_supernet *sn = tu_supernet(g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  ck_assert_int_eq(info.n_stages, 3);
  for (int st = 0; st < 3; st++)
    ck_assert_int_eq(info.blocks[st], 2);
  ck_assert_int_eq(info.n_width_groups, 8);
  ck_assert_int_eq(info.n_res, 5);
  ck_assert_int_eq(info.res[0], 14);
  ck_assert_int_eq(info.res[4], 28);
  ck_assert(info.space_size == 8640);

  struct tl_subnet_spec spec;
  tl_subnet_largest(sn, &spec);
  struct tl_plan *p = NULL;
  ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s", err.msg);
  memcpy(tl_plan_input(p, 0)->data, x, sizeof x);
  tl_plan_run(p);
  const float *y = tl_plan_output(p, 0)->data;
  /* In float, which holds these maxima exactly: a double fmax over float
   * elements makes GCC 12's aarch64 vectorizer fail (an internal error in
   * vect_transform_reduction at -O3). */
  float max_ref = 0, max_err = 0;
  for (int i = 0; i < 10; i++) {
    max_ref = fmaxf(max_ref, fabsf(ref[i]));
    max_err = fmaxf(max_err, fabsf(ref[i] - y[i]));
  }
  ck_assert_msg(max_err <= 1e-4 * max_ref, "largest subnet off by %g (max |ref| %g)", max_err,
                max_ref);
  tl_plan_free(p);
  uint64_t seed = 9;
  for (int k = 0, runs = tu_emulated() ? 10 : 100; k < runs; k++) {
    tl_subnet_random(sn, &seed, &spec);
    ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s", err.msg);
    memcpy(tl_plan_input(p, 0)->data, x, sizeof x);
    tl_plan_run(p);
    const struct tl_tensor *t = tl_plan_output(p, 0);
    ck_assert_int_eq(tl_shape_numel(&t->shape), 10);
    for (int i = 0; i < 10; i++)
      ck_assert(isfinite(((const float *)t->data)[i]));
    tl_plan_free(p);
  }
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

static long resident_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  ck_assert_ptr_nonnull(f);
  long size, res;
  ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &res), 2);
  fclose(f);
  return res * sysconf(_SC_PAGESIZE);
}

START_TEST(subnet_plans_share_weights_instead_of_copying_them) {
  struct tl_graph *g = load(model_dir, "resnet50.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  enum { N = 100 };
  struct tl_plan *plans[N];
  const int n = tu_emulated() ? 10 : N;
  uint64_t seed = 7;
  long before = resident_bytes();
  size_t arenas = 0, meta = 0;
  for (int k = 0; k < n; k++) {
    struct tl_subnet_spec spec;
    tl_subnet_random(sn, &seed, &spec);
    ck_assert_int_eq(tl_subnet_plan(sn, &spec, NULL, &plans[k], NULL), 0);
    arenas += tl_plan_arena_bytes(plans[k]) + tl_plan_scratch_bytes(plans[k]);
    meta += tl_plan_meta_bytes(plans[k]);
  }
  long grown = resident_bytes() - before;
  double weights = (double)tl_graph_weight_bytes(g);
  /* Besides its arena a plan owns only bookkeeping (steps, BN scale and
   * shift vectors: well under 1 MiB); one copy of the weights would add
   * ~100 MB.  The slack is the allocator's. */
  printf("%d resnet50 subnet plans: RSS grew %.1f MiB; arenas %.1f MiB, bookkeeping %.1f MiB; "
         "weights %.1f MiB\n",
         n, grown / 1048576.0, arenas / 1048576.0, meta / 1048576.0, weights / 1048576.0);
  ck_assert_uint_lt(meta / (size_t)n, 1024 * 1024);
  ck_assert_msg((double)grown <= (double)(arenas + meta) + 16.0 * 1048576,
                "RSS grew %ld bytes; arenas %zu, bookkeeping %zu", grown, arenas, meta);
  for (int k = 0; k < n; k++)
    tl_plan_free(plans[k]);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

START_TEST(internal_channels_are_sorted_by_importance) {
  struct tl_graph *g = load(model_dir, "resnet18.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  for (int i = 0; i < info.n_width_groups; i++) {
    const char *prod, *cons;
    int64_t ch;
    int stage;
    tl_supernet_width_group(sn, i, &prod, &cons, &ch, &stage);
    /* The producer's BN follows it: importance = L1(filter) * |gamma|/sqrt(var+eps). */
    int c1 = -1;
    for (int n = 0; n < g->n_nodes; n++)
      if (strcmp(g->nodes[n].name, prod) == 0)
        c1 = n;
    ck_assert_int_ge(c1, 0);
    const struct tl_value *w = &g->values[g->nodes[c1].in[1]];
    int bn = -1;
    for (int n = c1 + 1; n < g->n_nodes && bn < 0; n++)
      if (g->nodes[n].op == TL_OP_BATCHNORM && g->nodes[n].in[0] == g->nodes[c1].out[0])
        bn = n;
    ck_assert_int_ge(bn, 0);
    const float *gam = g->values[g->nodes[bn].in[1]].data;
    const float *var = g->values[g->nodes[bn].in[4]].data;
    int64_t row = tl_shape_numel(&w->shape) / ch;
    double prev = INFINITY;
    for (int64_t k = 0; k < ch; k++) {
      double l1 = 0;
      for (int64_t j = 0; j < row; j++)
        l1 += fabs(((float *)w->data)[k * row + j]);
      double imp = l1 * fabs(gam[k]) / sqrt(var[k] + 1e-5);
      ck_assert_msg(imp <= prev * (1 + 1e-6), "%s: channel %lld more important than %lld", prod,
                    (long long)k, (long long)(k - 1));
      prev = imp;
    }
  }
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

START_TEST(spec_text_round_trips_and_keys_are_stable) {
  struct tl_graph *g = load(model_dir, "resnet18.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_subnet_spec a, b;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_subnet_parse(sn, "w=0.5,1,.75,.25  d=1,0,1,1 r=168", &a, &err) == 0, "%s",
                err.msg);
  char text[256];
  ck_assert_str_eq(tl_subnet_format(sn, &a, text, sizeof text), "r=168 d=1,0,1,1 w=.5,1,.75,.25");
  ck_assert_int_eq(tl_subnet_parse(sn, text, &b, &err), 0);
  ck_assert(tl_subnet_key(sn, &a) == tl_subnet_key(sn, &b));
  tl_subnet_largest(sn, &b);
  ck_assert_str_eq(tl_subnet_format(sn, &b, text, sizeof text), "r=224 d=2,1,1,1 w=1,1,1,1");
  ck_assert(tl_subnet_key(sn, &a) != tl_subnet_key(sn, &b));
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

static const struct {
  const char *spec, *fragment;
} bad_specs[] = {
    {"r=224 d=2,1,1,1 w=1,1,1,1 x=3", "unknown key \"x\""},
    {"r=224 d=2,1,1,1 w=1,1,.6,1", "width \".6\" of stage 3 is not offered (.25, .5, .75, 1 are)"},
    {"r=224 d=3,1,1,1 w=1,1,1,1", "depth \"3\" of stage 1 is out of range (0 to 2)"},
    {"r=224 d=2,1,1,-1 w=1,1,1,1", "depth \"-1\" of stage 4 is out of range"},
    {"r=200 d=2,1,1,1 w=1,1,1,1", "resolution 200 is not offered (112, 140, 168, 196, 224 are)"},
    {"r=224 d=2,1,1 w=1,1,1,1", "d needs 4 values (one per stage), not 3"},
    {"r=224 w=1,1,1,1", "d is missing"},
    {"r=224 r=112 d=2,1,1,1 w=1,1,1,1", "r is given twice"},
    {"r=224 d=2,1,1,1 w=1,1,1,1 junk", "\"junk\" is not key=value"},
};

START_TEST(bad_spec_is_an_error_that_says_why) {
  struct tl_graph *g = load(model_dir, "resnet18.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_subnet_spec spec;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_subnet_parse(sn, bad_specs[_i].spec, &spec, &err), TL_EINVAL);
  ck_assert_msg(strstr(err.msg, bad_specs[_i].fragment) != NULL, "\"%s\" not in: %s",
                bad_specs[_i].fragment, err.msg);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* Runs spec of sn on the .npy input in data_dir and returns the largest
 * difference from the .npy reference there, relative to max |ref|. */
static double subnet_error(const struct tl_supernet *sn, const char *spec_text, const char *input,
                           const char *want) {
  struct tl_error err = {{0}};
  struct tl_subnet_spec spec;
  ck_assert_msg(tl_subnet_parse(sn, spec_text, &spec, &err) == 0, "%s", err.msg);
  struct tl_plan *p = NULL;
  ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s: %s", spec_text, err.msg);
  char path[8300];
  struct tl_tensor x, ref;
  snprintf(path, sizeof path, "%s/%s", data_dir, input);
  ck_assert_msg(tl_npy_read(path, &x, &err) == 0, "%s", err.msg);
  snprintf(path, sizeof path, "%s/%s", data_dir, want);
  ck_assert_msg(tl_npy_read(path, &ref, &err) == 0, "%s", err.msg);
  memcpy(tl_plan_input(p, 0)->data, x.data, (size_t)tl_shape_numel(&x.shape) * sizeof(float));
  tl_plan_run(p);
  const double rel = rel_error(tl_plan_output(p, 0), &ref);
  tl_plan_free(p);
  free(x.data);
  free(ref.data);
  return rel;
}

/* A small graph written the way torch.onnx.export's defaults write one
 * (BN folded, shared initializers behind Identity nodes, SiLU as two
 * nodes, a grouped conv, a squeeze-and-excitation gate): the loader
 * drops the Identity nodes, the compiler finds both blocks and a width
 * group through the grouped conv and the gate, plus the gate's own. */
START_TEST(default_export_has_depth_and_width_through_groups_and_gates) {
  struct tl_graph *g = load(data_dir, "exported.onnx");
  for (int i = 0; i < g->n_nodes; i++)
    ck_assert_msg(g->nodes[i].op != TL_OP_IDENTITY, "Identity node %s kept", g->nodes[i].name);
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  ck_assert_int_eq(info.n_stages, 1);
  ck_assert_int_eq(info.blocks[0], 2);
  ck_assert_int_eq(info.n_width_groups, 3);
  const char *want[3][2] = {{"a", "p"}, {"r", "e"}, {"a2", "p2"}};
  for (int i = 0; i < 3; i++) {
    const char *prod, *cons;
    int64_t ch;
    int stage;
    tl_supernet_width_group(sn, i, &prod, &cons, &ch, &stage);
    ck_assert_str_eq(prod, want[i][0]);
    ck_assert_str_eq(cons, want[i][1]);
  }
  /* Only the stem conv is left out, and the reason says why. */
  ck_assert_int_eq(tl_supernet_n_notes(sn), 1);
  ck_assert_str_eq(tl_supernet_note(sn, 0), "node \"s\" (Conv): its channels feed the residual "
                                            "node \"add1\" (Add) outside the block");
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* Sorting permutes each group's tensors, and a2 reads a's weights (one
 * buffer in the file): the largest subnet still computes PyTorch's
 * output, so no permutation reached a tensor another node reads. */
START_TEST(sorting_shared_weights_copies_them_and_keeps_the_model) {
  struct tl_graph *g = load(data_dir, "exported.onnx");
  int a = tl_graph_find_value(g, "a.w");
  ck_assert_int_ge(a, 0);
  int64_t shared_bytes = tl_graph_weight_bytes(g);
  struct tl_supernet *sn = tu_supernet(g);
  ck_assert_double_le(subnet_error(sn, "r=8 d=2 w=1", "exported.input.npy", "exported.full.npy"),
                      1e-5);
  /* Both readers of the shared weights and zeros were permuted, each
   * with its own order: two copies were made, nothing more. */
  ck_assert_int_eq(tl_graph_weight_bytes(g), shared_bytes + (16 * 8 + 16) * 4);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* With the channels left in file order, d=1 w=.5 keeps block 1 with the
 * first 8 of its 16 channels -- 2 of the grouped conv's 4 groups, the
 * gate's expand rows and reduce columns for them -- and 2 of the gate's
 * 4 hidden channels: PyTorch computes the same with sliced weights. */
START_TEST(subnet_slices_grouped_convs_by_whole_groups_and_gates_with_them) {
  struct tl_graph *g = load(data_dir, "exported.onnx");
  struct tl_supernet_options o = {.no_sort = 1};
  struct tl_supernet *sn = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_supernet_build(g, &o, &sn, &err) == 0, "%s", err.msg);
  ck_assert_double_le(subnet_error(sn, "r=8 d=1 w=.5", "exported.input.npy", "exported.d1w50.npy"),
                      1e-5);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

START_TEST(model_with_nothing_elastic_is_refused) {
  struct tl_graph *g = load(data_dir, "no_elastic.onnx");
  struct tl_supernet *sn = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_supernet_build(g, NULL, &sn, &err), TL_EUNSUPPORTED);
  ck_assert_ptr_null(sn);
  ck_assert_ptr_nonnull(strstr(err.msg, "no_elastic.onnx: no elastic dimension"));
  tl_graph_free(g);
}
END_TEST

/* Random images for a model with c channels of side x side. */
static void random_calib(struct tl_calib *data, int n, int c, int side) {
  memset(data, 0, sizeof *data);
  data->x.dtype = TL_DTYPE_FLOAT32;
  data->x.shape = (struct tl_shape){4, {n, c, side, side}};
  data->x.data = malloc((size_t)n * c * side * side * sizeof(float));
  data->labels = calloc((size_t)n, sizeof(int64_t));
  ck_assert(data->x.data != NULL && data->labels != NULL);
  data->n = n;
  data->scale = 1.f;
  uint64_t s = 1;
  for (int i = 0; i < n * c * side * side; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ((float *)data->x.data)[i] = (float)(s >> 40) / (float)(1 << 24) * 4.f - 1.f;
  }
}

/* A graph without BatchNormalization (BN folded into the convs, as
 * exports do by default): every conv with a spatial output gets a map
 * onto the full model's statistics; for the full model itself that map
 * is the identity, and the record survives the cache's bytes. */
START_TEST(convs_without_bn_are_recalibrated_and_the_full_model_maps_to_itself) {
  struct tl_graph *g = load(data_dir, "exported.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  struct tl_calib data;
  random_calib(&data, 64, 8, 8);
  struct tl_subnet_spec spec;
  struct tl_error err = {{0}};
  tl_subnet_largest(sn, &spec);
  struct tl_bn_stats *full = NULL, *half = NULL;
  /* One batch: each batch is mapped by its own statistics, so only then
   * is the full model's map exactly the identity. */
  ck_assert_msg(tl_subnet_recalibrate(sn, &spec, &data, 64, 64, NULL, &full, &err) == 0, "%s",
                err.msg);
  int convs = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const int spatial = strcmp(g->nodes[i].name, "r") != 0 && strcmp(g->nodes[i].name, "e") != 0;
    if (g->nodes[i].op != TL_OP_CONV)
      continue;
    /* The gate's convs see one value per image: nothing to match. */
    ck_assert_msg((full->mean[i] != NULL) == spatial, "conv %s", g->nodes[i].name);
    if (!spatial)
      continue;
    convs++;
    const int64_t m = g->values[g->nodes[i].in[1]].shape.dims[0];
    for (int64_t k = 0; k < m; k++) {
      ck_assert_msg(fabsf(full->var[i][k] - 1.f) < 1e-4f, "conv %s channel %lld: var %g",
                    g->nodes[i].name, (long long)k, full->var[i][k]);
      ck_assert_msg(fabsf(full->mean[i][k]) < 1e-4f, "conv %s channel %lld: mean %g",
                    g->nodes[i].name, (long long)k, full->mean[i][k]);
    }
  }
  ck_assert_int_eq(convs, 6); /* all but the gate's two */
  /* A subnet's map is not the identity, and it round-trips. */
  ck_assert_int_eq(tl_subnet_parse(sn, "r=6 d=1 w=.5", &spec, &err), 0);
  ck_assert_msg(tl_subnet_recalibrate(sn, &spec, &data, 64, 32, NULL, &half, &err) == 0, "%s",
                err.msg);
  const int s0 = 0; /* the stem conv, first node after the loader */
  ck_assert_str_eq(g->nodes[s0].name, "s");
  ck_assert_ptr_nonnull(half->mean[s0]);
  ck_assert(fabsf(half->var[s0][0] - 1.f) > 1e-3f || fabsf(half->mean[s0][0]) > 1e-3f);
  void *bytes = NULL;
  size_t len = 0;
  struct tl_bn_stats *back = NULL;
  ck_assert_int_eq(tl_bn_stats_serialize(sn, half, &bytes, &len, &err), 0);
  ck_assert_msg(tl_bn_stats_deserialize(sn, bytes, len, &back, &err) == 0, "%s", err.msg);
  for (int i = 0; i < g->n_nodes; i++) {
    ck_assert((back->mean[i] == NULL) == (half->mean[i] == NULL));
    if (half->mean[i] != NULL)
      ck_assert_float_eq(back->var[i][0], half->var[i][0]);
  }
  free(bytes);
  tl_bn_stats_free(back);
  tl_bn_stats_free(full);
  tl_bn_stats_free(half);
  tl_calib_free(&data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* The bundled SuperNet with its BN folded into the convs (what a default
 * export gives, models/fmnist-folded.onnx) and with BN kept: after
 * recalibration on the same 1 000 training images, each subnet's top-1
 * on 2 000 test images is within 0.5 pt of the other's.  (Two subnets
 * keep the sanitizer build quick; scripts/compare-folded measures 36 on
 * all 10 000 images.) */
START_TEST(folded_bn_recalibrates_to_the_accuracy_of_kept_bn) {
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  const char *build = getenv("TAILOR_GENERATED_ROOT");
  char dir[4100], x[4200], y[4200], cx[4200], cy[4200], cmd[9000];
  snprintf(dir, sizeof dir, "%s/models", src ? src : ".");
  snprintf(x, sizeof x, "%s/data/fmnist-val-x.npy", build ? build : "build");
  snprintf(y, sizeof y, "%s/data/fmnist-val-y.npy", build ? build : "build");
  snprintf(cx, sizeof cx, "%s/data/fmnist-calib-x.npy", build ? build : "build");
  snprintf(cy, sizeof cy, "%s/data/fmnist-calib-y.npy", build ? build : "build");
  if (!exists(x) || !exists(cx)) {
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/make-calib.py' '%s/data' >&2",
             src ? src : ".", build ? build : "build");
    ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
  }
  struct tl_calib val, calib;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_calib_load(x, y, 0, &val, &err) == 0, "%s", err.msg);
  ck_assert_msg(tl_calib_load(cx, cy, 0, &calib, &err) == 0, "%s", err.msg);
  val.n = 2000;
  const char *specs[] = {"r=21 d=1,1,1 w=.5,.5,.5", "r=14 d=0,0,0 w=.25,.25,.25"};
  double acc[2][2];
  const char *files[2] = {"fmnist.onnx", "fmnist-folded.onnx"};
  for (int f = 0; f < 2; f++) {
    struct tl_graph *g = load(dir, files[f]);
    struct tl_supernet *sn = tu_supernet(g);
    for (int i = 0; i < 2; i++) {
      struct tl_subnet_spec spec;
      struct tl_bn_stats *bn = NULL;
      ck_assert_int_eq(tl_subnet_parse(sn, specs[i], &spec, &err), 0);
      ck_assert_msg(tl_subnet_recalibrate(sn, &spec, &calib, 1000, 100, NULL, &bn, &err) == 0, "%s",
                    err.msg);
      ck_assert_msg(tl_subnet_accuracy(sn, &spec, bn, &val, 0, 0, 100, NULL, &acc[f][i], &err) == 0,
                    "%s", err.msg);
      tl_bn_stats_free(bn);
    }
    tl_supernet_free(sn);
    tl_graph_free(g);
  }
  for (int i = 0; i < 2; i++)
    ck_assert_msg(fabs(acc[0][i] - acc[1][i]) <= 0.005, "%s: %.2f %% with BN, %.2f %% folded",
                  specs[i], 100 * acc[0][i], 100 * acc[1][i]);
  tl_calib_free(&val);
  tl_calib_free(&calib);
}
END_TEST

/* Recalibrating on one batch and evaluating that batch with the new
 * statistics is what train-mode BN computes on it. */
START_TEST(recalibrated_statistics_match_the_batch_they_came_from) {
  struct tl_graph *g = load(data_dir, "tiny_cnn.onnx");
  struct tl_supernet *sn = tu_supernet(g);
  enum { N = 64 };
  struct tl_calib data;
  random_calib(&data, N, 1, 8);
  struct tl_subnet_spec spec;
  tl_subnet_largest(sn, &spec);
  struct tl_bn_stats *bn = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_subnet_recalibrate(sn, &spec, &data, N, N, NULL, &bn, &err) == 0, "%s", err.msg);
  /* Train-mode BN over the batch (collect plan) vs eval mode with the
   * recalibrated statistics: the same logits up to var's n/(n-1). */
  struct tl_plan *train = NULL, *eval = NULL;
  struct tl_subnet_plan_options to = {.batch = N, .collect_bn = 1};
  struct tl_subnet_plan_options eo = {.batch = N, .bn = bn};
  ck_assert_int_eq(tl_subnet_plan(sn, &spec, &to, &train, &err), 0);
  ck_assert_int_eq(tl_subnet_plan(sn, &spec, &eo, &eval, &err), 0);
  memcpy(tl_plan_input(train, 0)->data, data.x.data, N * 64 * sizeof(float));
  memcpy(tl_plan_input(eval, 0)->data, data.x.data, N * 64 * sizeof(float));
  tl_plan_run(train);
  tl_plan_run(eval);
  const float *a = tl_plan_output(train, 0)->data, *b = tl_plan_output(eval, 0)->data;
  for (int i = 0; i < N * 10; i++)
    ck_assert_msg(fabsf(a[i] - b[i]) <= 2e-3f * (1 + fabsf(a[i])), "logit %d: %g vs %g", i, a[i],
                  b[i]);
  /* And the statistics differ from the model's own. */
  int bn1 = -1;
  for (int n = 0; n < g->n_nodes; n++)
    if (strcmp(g->nodes[n].name, "bn1") == 0)
      bn1 = n;
  ck_assert_ptr_nonnull(bn->mean[bn1]);
  ck_assert_float_ne(bn->mean[bn1][0], ((float *)g->values[g->nodes[bn1].in[3]].data)[0]);
  tl_plan_free(train);
  tl_plan_free(eval);
  tl_bn_stats_free(bn);
  tl_calib_free(&data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

int main(void) {
  ensure_models();
  Suite *s = suite_create("supernet");
  TCase *tc = tcase_create("compiler");
  tcase_set_timeout(tc, 300);
  int n = (int)(sizeof expects / sizeof expects[0]);
  tcase_add_loop_test(tc, compiler_finds_the_elastic_dimensions, 0, n);
  if (!tu_emulated()) {
    tcase_add_loop_test(tc, largest_subnet_reproduces_the_model_and_random_subnets_run, 0, n);
  } else {
    /* Under an emulator without ResNet-50 (index 1: 4 GFLOPs a run). */
    tcase_add_loop_test(tc, largest_subnet_reproduces_the_model_and_random_subnets_run, 0, 1);
    tcase_add_loop_test(tc, largest_subnet_reproduces_the_model_and_random_subnets_run, 2, n);
  }
  tcase_add_test(tc, bundled_model_is_a_supernet_whose_largest_subnet_is_the_model);
  tcase_add_test(tc, subnet_plans_share_weights_instead_of_copying_them);
  tcase_add_test(tc, internal_channels_are_sorted_by_importance);
  tcase_add_test(tc, spec_text_round_trips_and_keys_are_stable);
  tcase_add_loop_test(tc, bad_spec_is_an_error_that_says_why, 0,
                      (int)(sizeof bad_specs / sizeof bad_specs[0]));
  tcase_add_test(tc, model_with_nothing_elastic_is_refused);
  tcase_add_test(tc, default_export_has_depth_and_width_through_groups_and_gates);
  tcase_add_test(tc, sorting_shared_weights_copies_them_and_keeps_the_model);
  tcase_add_test(tc, subnet_slices_grouped_convs_by_whole_groups_and_gates_with_them);
  tcase_add_test(tc, recalibrated_statistics_match_the_batch_they_came_from);
  tcase_add_test(tc, convs_without_bn_are_recalibrated_and_the_full_model_maps_to_itself);
  /* 24 000 forward passes of the bundled model: natively only. */
  if (!tu_emulated())
    tcase_add_test(tc, folded_bn_recalibrates_to_the_accuracy_of_kept_bn);
  if (tu_emulated())
    fprintf(stderr, "test_supernet: emulated: resnet50's forward passes, the folded-BN accuracy "
                    "comparison and most random subnets left out\n");
  suite_add_tcase(s, tc);
  int failed = tu_run(s);
  return failed ? 1 : 0;
}
