/*
 * test_kernels.c - the fast kernels against the plain reference kernels.
 *
 * Each case builds two plans of one graph, one with reference=1 (reference
 * kernels, no fusion) and one with the defaults, runs both on the same
 * input and requires every output to agree within TOL of the largest
 * reference value.  The graphs are small ONNX files that
 * scripts/gen-kernel-models.py writes into the build tree (odd sizes,
 * padding, strides, dilation, groups, channel multipliers, residuals and
 * each activation), plus the exported torchvision models from
 * scripts/export-models.py; both scripts run from main() when their output
 * is missing.  Tests that need weights read through a row stride larger
 * than the row (a SuperNet's channel slice) build conv steps by hand.
 */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "testutil.h"

/* Fast and reference results may differ by the order of float sums. */
#define TOL 1e-4

static char kernel_dir[PATH_MAX]; /* generated graphs */
static char model_dir[PATH_MAX];  /* exported torchvision models */

/* ------------------------------------------------------------- helpers */

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Deterministic values in [-1, 1). */
static void fill_random(float *x, int64_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((s >> 8) & 0xffff) / 32768.f - 1.f;
  }
}

/* A graph with a reference plan and a fast plan on the same inputs. */
struct pair {
  struct tl_graph *g;
  struct tl_plan *ref, *fast;
};

/* Loads path and builds both plans; fills every runtime input with the
 * same values: the .npy at input_npy for input 0 if given, else random. */
static void pair_load(struct pair *p, const char *path, const char *input_npy) {
  struct tl_error err = {{0}};
  memset(p, 0, sizeof *p);
  ck_assert_msg(tl_onnx_load(path, &p->g, &err) == 0, "%s", err.msg);
  struct tl_plan_options ref_opts = {.reference = 1};
  ck_assert_msg(tl_plan_build(p->g, &ref_opts, &p->ref, &err) == 0, "%s", err.msg);
  ck_assert_msg(tl_plan_build(p->g, NULL, &p->fast, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(tl_plan_n_inputs(p->ref), tl_plan_n_inputs(p->fast));
  for (int i = 0; i < tl_plan_n_inputs(p->ref); i++) {
    struct tl_tensor *a = tl_plan_input(p->ref, i), *b = tl_plan_input(p->fast, i);
    ck_assert_int_eq(a->dtype, TL_DTYPE_FLOAT32);
    int64_t n = tl_shape_numel(&a->shape);
    if (i == 0 && input_npy != NULL) {
      struct tl_tensor t;
      ck_assert_msg(tl_npy_read(input_npy, &t, &err) == 0, "%s", err.msg);
      ck_assert_int_eq(tl_shape_numel(&t.shape), n);
      memcpy(a->data, t.data, (size_t)n * sizeof(float));
      free(t.data);
    } else {
      fill_random(a->data, n, 7u + (uint32_t)i);
    }
    memcpy(b->data, a->data, (size_t)n * sizeof(float));
  }
}

static void pair_free(struct pair *p) {
  tl_plan_free(p->fast);
  tl_plan_free(p->ref);
  tl_graph_free(p->g);
}

/* Runs both plans (the fast one twice: a kernel must not depend on what
 * an earlier run left in scratch) and returns the largest output
 * difference relative to the largest reference magnitude. */
static double pair_diff(struct pair *p) {
  tl_plan_run(p->ref);
  tl_plan_run(p->fast);
  tl_plan_run(p->fast);
  double worst = 0.0;
  ck_assert_int_eq(tl_plan_n_outputs(p->ref), tl_plan_n_outputs(p->fast));
  for (int i = 0; i < tl_plan_n_outputs(p->ref); i++) {
    const struct tl_tensor *a = tl_plan_output(p->ref, i), *b = tl_plan_output(p->fast, i);
    ck_assert(tl_shape_equal(&a->shape, &b->shape));
    int64_t n = tl_shape_numel(&a->shape);
    const float *x = a->data, *y = b->data;
    double mag = 1e-6, diff = 0.0;
    for (int64_t k = 0; k < n; k++) {
      mag = fabs(x[k]) > mag ? fabs(x[k]) : mag;
      double d = fabs((double)x[k] - y[k]);
      if (!(d <= diff)) /* NaN counts as a difference */
        diff = isnan(d) ? INFINITY : d;
    }
    worst = diff / mag > worst ? diff / mag : worst;
  }
  return worst;
}

/* Number of steps of plan whose kind is exactly kind. */
static int count_kind(const struct tl_plan *plan, const char *kind) {
  int n = 0;
  for (int i = 0; i < tl_plan_n_steps(plan); i++) {
    struct tl_step_info info;
    tl_plan_step_info(plan, i, &info);
    n += strcmp(info.kind, kind) == 0;
  }
  return n;
}

static void kernel_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s.onnx", kernel_dir, name);
}

/* The generated graph name, fast vs reference. */
static void check_graph(const char *name) {
  char path[PATH_MAX + 64];
  kernel_path(path, sizeof path, name);
  struct pair p;
  pair_load(&p, path, NULL);
  double d = pair_diff(&p);
  ck_assert_msg(d <= TOL, "%s: fast differs from reference by %g (relative)", name, d);
  pair_free(&p);
}

/* A test per generated graph: NAME_matches_reference runs NAME.onnx. */
#define GRAPH_TEST(name)                                                                           \
  START_TEST(name##_matches_reference) { check_graph(#name); }                                     \
  END_TEST

/* ---------------------------------------------------- conv (implicit GEMM) */

GRAPH_TEST(conv3x3_s1_odd_sizes_bn_relu)
GRAPH_TEST(conv3x3_s1_c64_28x28_bn_add_relu)
GRAPH_TEST(conv3x3_s1_c35_13x17_bias)
GRAPH_TEST(conv3x3_s1_7x7_c96)
GRAPH_TEST(conv3x3_s1_large_k_blocks)
GRAPH_TEST(conv3x3_s2_p1_bias_clip)
GRAPH_TEST(conv3x3_s2_even_input)
GRAPH_TEST(conv7x7_s2_p3_stem)
GRAPH_TEST(conv1x1_s1_tail_add_relu)
GRAPH_TEST(conv1x1_s1_many_blocks)
GRAPH_TEST(conv1x1_s1_k300)
GRAPH_TEST(conv1x1_s2_downsample)
GRAPH_TEST(conv1x1_p1_padded)
GRAPH_TEST(conv3x3_dilation2)
GRAPH_TEST(conv3x3_asymmetric_pads)
GRAPH_TEST(conv3x3_groups2)
GRAPH_TEST(conv5x3_stride2x1)
GRAPH_TEST(conv3x3_no_pad_valid)
GRAPH_TEST(conv3x3_hardswish)
GRAPH_TEST(conv3x3_sigmoid)
GRAPH_TEST(winograd_3x3_56x56_c64)
GRAPH_TEST(winograd_3x3_14x14_c256_res)
GRAPH_TEST(winograd_3x3_odd_15x13_c20)

/* Every generated conv graph again with each lesser micro-kernel (AVX2,
 * SSE2), which this CPU would not otherwise pick; and with im2col+sgemm. */
static const char *const conv_graphs[] = {"conv3x3_s1_odd_sizes_bn_relu",
                                          "conv3x3_s1_c35_13x17_bias",
                                          "conv3x3_s1_7x7_c96",
                                          "conv3x3_s1_large_k_blocks",
                                          "conv3x3_s2_p1_bias_clip",
                                          "conv7x7_s2_p3_stem",
                                          "conv1x1_s1_tail_add_relu",
                                          "conv1x1_s1_many_blocks",
                                          "conv1x1_s1_k300",
                                          "conv1x1_s2_downsample",
                                          "conv1x1_p1_padded",
                                          "conv3x3_dilation2",
                                          "conv3x3_asymmetric_pads",
                                          "conv3x3_groups2",
                                          "conv5x3_stride2x1",
                                          "conv3x3_hardswish",
                                          "conv3x3_hswish_pattern",
                                          "winograd_3x3_odd_15x13_c20",
                                          "conv1x1_hswish_pattern_swapped"};
#define N_CONV_GRAPHS ((int)(sizeof conv_graphs / sizeof conv_graphs[0]))

START_TEST(gemm_avx2_microkernel_matches_reference) {
  setenv("TL_GEMM_ISA", "avx2", 1); /* forked test: the change stays here */
  check_graph(conv_graphs[_i]);
}
END_TEST

START_TEST(gemm_sse_microkernel_matches_reference) {
  setenv("TL_GEMM_ISA", "sse", 1);
  check_graph(conv_graphs[_i]);
}
END_TEST

START_TEST(im2col_sgemm_fallback_matches_reference) {
  setenv("TL_NO_IGEMM", "1", 1);
  check_graph(conv_graphs[_i]);
}
END_TEST

/* ------------------------------------------------------------ depthwise */

GRAPH_TEST(depthwise_3x3_stride1_clip)
GRAPH_TEST(depthwise_3x3_stride2_relu)
GRAPH_TEST(depthwise_5x5_stride2)
GRAPH_TEST(depthwise_5x5_stride1_hswish_pattern)
GRAPH_TEST(depthwise_7x7_stride1)
GRAPH_TEST(depthwise_3x3_dilation2)
GRAPH_TEST(depthwise_channel_multiplier2)
GRAPH_TEST(depthwise_asymmetric_pads)
GRAPH_TEST(depthwise_3x3_residual)
GRAPH_TEST(depthwise_3x3_tiny_1x1_input)
GRAPH_TEST(depthwise_3x3_stride3)
GRAPH_TEST(depthwise_13x13_large_kernel)

/* ----------------------------------------------------------- activations */

GRAPH_TEST(unary_relu)
GRAPH_TEST(unary_clip6)
GRAPH_TEST(unary_hardswish)
GRAPH_TEST(unary_hardsigmoid)
GRAPH_TEST(unary_sigmoid)
GRAPH_TEST(se_block)

/* Conv + BN + HardSigmoid(1/6, 1/2) + Mul(x, that) is one step whose
 * epilogue is hardswish, in either operand order of the Mul. */
START_TEST(hardswish_pattern_fuses_and_matches_reference) {
  static const char *const names[] = {"conv3x3_hswish_pattern", "conv1x1_hswish_pattern_swapped",
                                      "depthwise_5x5_stride1_hswish_pattern"};
  static const char *const kinds[] = {"Conv+BatchNormalization+HardSigmoid+Mul",
                                      "Conv+BatchNormalization+HardSigmoid+Mul",
                                      "Conv+BatchNormalization+HardSigmoid+Mul"};
  for (int i = 0; i < 3; i++) {
    char path[PATH_MAX + 64];
    kernel_path(path, sizeof path, names[i]);
    struct pair p;
    pair_load(&p, path, NULL);
    ck_assert_int_eq(tl_plan_n_steps(p.fast), 1);
    ck_assert_int_eq(count_kind(p.fast, kinds[i]), 1);
    double d = pair_diff(&p);
    ck_assert_msg(d <= TOL, "%s: differs by %g", names[i], d);
    pair_free(&p);
  }
}
END_TEST

/* When the conv's output is also read elsewhere, the pattern stays as
 * separate steps (the unfused value is needed) and results still match. */
START_TEST(hardswish_pattern_with_shared_input_stays_unfused) {
  char path[PATH_MAX + 64];
  kernel_path(path, sizeof path, "hswish_pattern_shared_input");
  struct pair p;
  pair_load(&p, path, NULL);
  ck_assert_int_eq(count_kind(p.fast, "Conv+BatchNormalization+HardSigmoid+Mul"), 0);
  ck_assert_int_eq(count_kind(p.fast, "HardSigmoid"), 1);
  ck_assert_double_le(pair_diff(&p), TOL);
  pair_free(&p);
}
END_TEST

/* HardSigmoid(0.2, 0.5) times x is not hardswish. */
START_TEST(hardsigmoid_mul_with_other_alpha_is_not_hardswish) {
  char path[PATH_MAX + 64];
  kernel_path(path, sizeof path, "hardsigmoid_mul_not_hswish");
  struct pair p;
  pair_load(&p, path, NULL);
  ck_assert_int_eq(count_kind(p.fast, "Conv+BatchNormalization+HardSigmoid+Mul"), 0);
  ck_assert_double_le(pair_diff(&p), TOL);
  pair_free(&p);
}
END_TEST

static void check_model(const char *name);

/* ----------------------------------------------------- two threads */

/* With two engine threads each kernel splits its work (channels, column
 * blocks, Winograd positions) and must still match the reference. */
static const char *const threaded_graphs[] = {"conv3x3_s1_odd_sizes_bn_relu",
                                              "conv3x3_s1_7x7_c96",
                                              "conv3x3_s1_large_k_blocks",
                                              "conv7x7_s2_p3_stem",
                                              "conv1x1_s1_tail_add_relu",
                                              "conv1x1_s1_many_blocks",
                                              "conv1x1_s2_downsample",
                                              "conv3x3_groups2",
                                              "winograd_3x3_56x56_c64",
                                              "winograd_3x3_14x14_c256_res",
                                              "winograd_3x3_odd_15x13_c20",
                                              "depthwise_3x3_stride2_relu",
                                              "depthwise_channel_multiplier2",
                                              "depthwise_5x5_stride1_hswish_pattern",
                                              "maxpool_3x3_s2_p1_17x17",
                                              "gemm_m1_transb1_bias1",
                                              "se_block"};
#define N_THREADED_GRAPHS ((int)(sizeof threaded_graphs / sizeof threaded_graphs[0]))

START_TEST(kernels_split_over_two_threads_match_reference) {
  tl_engine_set_threads(2);
  check_graph(threaded_graphs[_i]);
}
END_TEST

START_TEST(mobilenet_v2_on_two_threads_matches_reference_plan) {
  tl_engine_set_threads(2);
  check_model("mobilenet_v2");
}
END_TEST

/* ----------------------------------------------------- expand + depthwise */

/* A 1x1 expansion conv and the depthwise conv after it, each with its BN
 * (or bias) and activation, become one step computed in bands; results
 * match the reference on one and on two threads. */
static void check_expand_dw(const char *name, const char *kind, int threads) {
  char path[PATH_MAX + 64];
  tl_engine_set_threads(threads);
  kernel_path(path, sizeof path, name);
  struct pair p;
  pair_load(&p, path, NULL);
  ck_assert_int_eq(tl_plan_n_steps(p.fast), 1);
  ck_assert_int_eq(count_kind(p.fast, kind), 1);
  double d = pair_diff(&p);
  ck_assert_msg(d <= TOL, "%s: differs by %g", name, d);
  pair_free(&p);
}

static const char *const expand_dw[][2] = {
    {"expand_dw_3x3_stride2_fuses", "Conv+BatchNormalization+Clip+Conv+BatchNormalization+Clip"},
    {"expand_dw_5x5_hswish_fuses",
     "Conv+BatchNormalization+HardSigmoid+Mul+Conv+BatchNormalization+HardSigmoid+Mul"},
    {"expand_dw_3x3_bias_fuses", "Conv+BatchNormalization+Relu+Conv+Relu"}};

START_TEST(expand_and_depthwise_fuse_into_one_step_and_match_reference) {
  check_expand_dw(expand_dw[_i][0], expand_dw[_i][1], 1);
  check_expand_dw(expand_dw[_i][0], expand_dw[_i][1], 2);
}
END_TEST

/* ----------------------------------------------------------------- pools */

static const char *const pool_graphs[] = {
    "maxpool_3x3_s2_p1_17x17",     "maxpool_3x3_s2_p1_10x23",     "maxpool_2x2_s2_17x17",
    "maxpool_2x2_s2_10x23",        "maxpool_3x3_s1_p1_17x17",     "maxpool_3x3_s1_p1_10x23",
    "maxpool_3x3_s2_ceil_17x17",   "maxpool_3x3_s2_ceil_10x23",   "maxpool_3x2_s1x2_asym_17x17",
    "maxpool_3x2_s1x2_asym_10x23", "maxpool_3x3_dilation2_17x17", "maxpool_3x3_dilation2_10x23",
    "maxpool_5x5_s3_p2_17x17",     "maxpool_5x5_s3_p2_10x23",     "avgpool_3x3_s2_p1"};
#define N_POOL_GRAPHS ((int)(sizeof pool_graphs / sizeof pool_graphs[0]))

START_TEST(maxpool_windows_match_reference) { check_graph(pool_graphs[_i]); }
END_TEST

/* ------------------------------------------------------------------ gemm */

GRAPH_TEST(gemm_m1_transb0_bias0)
GRAPH_TEST(gemm_m1_transb0_bias1)
GRAPH_TEST(gemm_m1_transb1_bias0)
GRAPH_TEST(gemm_m1_transb1_bias1)
GRAPH_TEST(gemm_m3_transb1)

/* ------------------------------------------------------ exported models */

static void check_model(const char *name) {
  char path[PATH_MAX + 64], input[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s.onnx", model_dir, name);
  snprintf(input, sizeof input, "%s/%s.input.npy", model_dir, name);
  struct pair p;
  pair_load(&p, path, input);
  double d = pair_diff(&p);
  ck_assert_msg(d <= TOL, "%s: fast plan differs from reference plan by %g", name, d);
  pair_free(&p);
}

START_TEST(resnet18_fast_plan_matches_reference_plan) { check_model("resnet18"); }
END_TEST
START_TEST(resnet50_fast_plan_matches_reference_plan) { check_model("resnet50"); }
END_TEST
START_TEST(mobilenet_v2_fast_plan_matches_reference_plan) { check_model("mobilenet_v2"); }
END_TEST
START_TEST(mobilenet_v3_small_fast_plan_matches_reference_plan) {
  check_model("mobilenet_v3_small");
}
END_TEST

/* The exported MobileNetV3 has its hardswish patterns fused: no
 * standalone HardSigmoid+Mul pair is left outside the SE blocks. */
START_TEST(mobilenet_v3_small_hardswish_patterns_all_fuse) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/mobilenet_v3_small.onnx", model_dir);
  struct tl_graph *g;
  struct tl_plan *plan;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_onnx_load(path, &g, &err) == 0, "%s", err.msg);
  ck_assert_msg(tl_plan_build(g, NULL, &plan, &err) == 0, "%s", err.msg);
  int fused = 0, standalone = 0;
  for (int i = 0; i < tl_plan_n_steps(plan); i++) {
    struct tl_step_info info;
    tl_plan_step_info(plan, i, &info);
    fused += strstr(info.kind, "HardSigmoid+Mul") != NULL;
    standalone += strcmp(info.kind, "HardSigmoid") == 0;
  }
  ck_assert_int_ge(fused, 10);
  ck_assert_int_le(standalone, 1); /* the classifier's hardswish (after Gemm) */
  tl_plan_free(plan);
  tl_graph_free(g);
}
END_TEST

/* ------------------------------------------ weights read through a stride */

/* A conv step built by hand: x (1, c, h, w), weights the first m rows and
 * first c/group*kh*kw columns of a (m + 3) x ldw buffer. */
struct hand_conv {
  int64_t c, h, w, m, k, s, pad, group;
};

/* Prepares the step with reference or fast kernels over the weight view
 * (row stride ldw) and runs it; y receives the output; returns the kind
 * of kernel prepare chose. */
static int hand_conv_run(const struct hand_conv *hc, int reference, const float *x,
                         const float *wbuf, int64_t ldw, const float *bias, float *y,
                         struct tl_mem *host) {
  const int64_t kernel[2] = {hc->k, hc->k}, strides[2] = {hc->s, hc->s};
  const int64_t pads[4] = {hc->pad, hc->pad, hc->pad, hc->pad};
  struct tl_attr attrs[4] = {
      {.name = "kernel_shape", .type = TL_ATTR_INTS, .n = 2, .ints = (int64_t *)kernel},
      {.name = "strides", .type = TL_ATTR_INTS, .n = 2, .ints = (int64_t *)strides},
      {.name = "pads", .type = TL_ATTR_INTS, .n = 4, .ints = (int64_t *)pads},
      {.name = "group", .type = TL_ATTR_INT, .i = hc->group}};
  struct tl_node node = {.name = "hand",
                         .op_type = "Conv",
                         .op = TL_OP_CONV,
                         .n_in = 3,
                         .n_out = 1,
                         .n_attrs = 4,
                         .attrs = attrs};
  struct tl_graph g = {.path = "hand.onnx", .opset = 13};
  int in_val[3] = {0, 1, 2}, out_val[1] = {3};
  struct tl_tensor in[3] = {
      {TL_DTYPE_FLOAT32, {4, {1, hc->c, hc->h, hc->w}}, (void *)x},
      {TL_DTYPE_FLOAT32, {4, {hc->m, hc->c / hc->group, hc->k, hc->k}}, (void *)wbuf},
      {TL_DTYPE_FLOAT32, {1, {hc->m}}, (void *)bias}};
  struct tl_tensor out[1] = {{TL_DTYPE_FLOAT32, {0, {0}}, NULL}};
  struct tl_step step = {.op = TL_OP_CONV,
                         .n_in = 3,
                         .n_out = 1,
                         .in_val = in_val,
                         .out_val = out_val,
                         .in = in,
                         .out = out};
  struct tl_prep prep = {.g = &g,
                         .node = &node,
                         .step = &step,
                         .mem = host,
                         .threads = tl_engine_threads(),
                         .reference = reference,
                         .weight_ldw = ldw};
  ck_assert_int_eq(tl__prepare_conv(&prep), 0);
  ck_assert_int_eq(step.p.conv.ldw, ldw); /* the view: rows of a wider tensor */
  step.p.conv.act1.type = TL_ACT_RELU;
  step.out[0].data = y;
  void *scratch = step.scratch_bytes ? malloc(step.scratch_bytes) : NULL;
  ck_assert(step.scratch_bytes == 0 || scratch != NULL);
  step.run(&step, scratch);
  free(scratch);
  return step.p.conv.kind;
}

/* Fast and reference kernels over a weight view with ldw larger than a
 * row (or equal to it: extra_ldw 0) agree, and equal the reference over a
 * compact copy of the view.  Returns the kind of fast kernel. */
static int check_hand_conv(const struct hand_conv *hc, int64_t extra_ldw) {
  struct tl_mem host = {0}; /* what the hand-built steps allocate */

  const int64_t row = hc->c / hc->group * hc->k * hc->k, ldw = row + extra_ldw;
  const int64_t oh = (hc->h + 2 * hc->pad - hc->k) / hc->s + 1;
  const int64_t ow = (hc->w + 2 * hc->pad - hc->k) / hc->s + 1;
  const int64_t nx = hc->c * hc->h * hc->w, ny = hc->m * oh * ow;
  float *x = malloc((size_t)nx * sizeof *x);
  float *wbig = malloc((size_t)((hc->m + 3) * ldw) * sizeof *wbig);
  float *wcompact = malloc((size_t)(hc->m * row) * sizeof *wcompact);
  float *bias = malloc((size_t)hc->m * sizeof *bias);
  float *y_ref = malloc((size_t)ny * sizeof *y_ref), *y_fast = malloc((size_t)ny * sizeof *y_fast);
  float *y_compact = malloc((size_t)ny * sizeof *y_compact);
  ck_assert(x && wbig && wcompact && bias && y_ref && y_fast && y_compact);
  fill_random(x, nx, 1);
  fill_random(wbig, (hc->m + 3) * ldw, 2);
  fill_random(bias, hc->m, 3);
  for (int64_t r = 0; r < hc->m; r++)
    memcpy(wcompact + r * row, wbig + r * ldw, (size_t)row * sizeof *wcompact);

  hand_conv_run(hc, 1, x, wcompact, row, bias, y_compact, &host);
  hand_conv_run(hc, 1, x, wbig, ldw, bias, y_ref, &host);
  const int kind = hand_conv_run(hc, 0, x, wbig, ldw, bias, y_fast, &host);
  double mag = 1e-6, d_ref = 0, d_fast = 0;
  for (int64_t i = 0; i < ny; i++) {
    mag = fabs(y_compact[i]) > mag ? fabs(y_compact[i]) : mag;
    d_ref = fmax(d_ref, fabs(y_ref[i] - y_compact[i]));
    d_fast = fmax(d_fast, fabs(y_fast[i] - y_compact[i]));
  }
  ck_assert_msg(d_ref == 0.0, "reference through ldw differs by %g", d_ref);
  ck_assert_msg(d_fast / mag <= TOL, "fast through ldw differs by %g", d_fast / mag);
  free(x), free(wbig), free(wcompact), free(bias), free(y_ref), free(y_fast), free(y_compact);
  tl__mem_free(&host);
  return kind;
}

START_TEST(conv3x3_reads_prefix_of_wider_weight_rows) {
  const struct hand_conv hc = {
      .c = 11, .h = 9, .w = 10, .m = 13, .k = 3, .s = 1, .pad = 1, .group = 1};
  ck_assert_int_ne(check_hand_conv(&hc, 13), TL_CONV_REF);
}
END_TEST

START_TEST(conv1x1_reads_prefix_of_wider_weight_rows) {
  const struct hand_conv hc = {
      .c = 24, .h = 7, .w = 7, .m = 19, .k = 1, .s = 1, .pad = 0, .group = 1};
  ck_assert_int_ne(check_hand_conv(&hc, 13), TL_CONV_REF);
}
END_TEST

START_TEST(conv3x3_stride2_reads_prefix_of_wider_weight_rows) {
  const struct hand_conv hc = {
      .c = 5, .h = 12, .w = 13, .m = 9, .k = 3, .s = 2, .pad = 1, .group = 1};
  ck_assert_int_ne(check_hand_conv(&hc, 13), TL_CONV_REF);
}
END_TEST

START_TEST(depthwise_reads_weight_rows_through_stride) {
  const struct hand_conv hc = {
      .c = 10, .h = 11, .w = 9, .m = 10, .k = 3, .s = 1, .pad = 1, .group = 10};
  ck_assert_int_ne(check_hand_conv(&hc, 13), TL_CONV_REF);
}
END_TEST

/* Winograd F(4x4, 3x3) is chosen for a 3x3 stride-1 conv with enough
 * channels and tiles, including output sizes that are not multiples of
 * 4, other paddings and weight views, and matches the reference. */
START_TEST(winograd_3x3_matches_reference) {
  static const struct hand_conv cases[] = {
      {.c = 24, .h = 13, .w = 11, .m = 20, .k = 3, .s = 1, .pad = 1, .group = 1},
      {.c = 32, .h = 28, .w = 28, .m = 48, .k = 3, .s = 1, .pad = 1, .group = 1},
      {.c = 17, .h = 10, .w = 23, .m = 33, .k = 3, .s = 1, .pad = 0, .group = 1},
      {.c = 64, .h = 9, .w = 9, .m = 16, .k = 3, .s = 1, .pad = 2, .group = 1}};
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(check_hand_conv(&cases[i], i % 2 ? 0 : 29), TL_CONV_WINOGRAD);
}
END_TEST

START_TEST(im2col_reads_prefix_of_wider_weight_rows) {
  setenv("TL_NO_IGEMM", "1", 1);
  const struct hand_conv hc = {
      .c = 11, .h = 9, .w = 10, .m = 13, .k = 3, .s = 1, .pad = 1, .group = 1};
  ck_assert_int_ne(check_hand_conv(&hc, 13), TL_CONV_REF);
}
END_TEST

/* ------------------------------------------------------------------ main */

/* Checked teardown: the kernel switches some tests set must not leak into
 * the next test when check runs without fork (CK_FORK=no, valgrind). */
static void clear_env(void) {
  unsetenv("TL_GEMM_ISA");
  unsetenv("TL_NO_IGEMM");
  tl_engine_set_threads(1);
}

static Suite *kernels_suite(void) {
  Suite *s = suite_create("kernels");
  TCase *tc = tcase_create("conv");
  tcase_set_timeout(tc, 60);
  tcase_add_checked_fixture(tc, NULL, clear_env);
  tcase_add_test(tc, conv3x3_s1_odd_sizes_bn_relu_matches_reference);
  tcase_add_test(tc, conv3x3_s1_c64_28x28_bn_add_relu_matches_reference);
  tcase_add_test(tc, conv3x3_s1_c35_13x17_bias_matches_reference);
  tcase_add_test(tc, conv3x3_s1_7x7_c96_matches_reference);
  tcase_add_test(tc, conv3x3_s1_large_k_blocks_matches_reference);
  tcase_add_test(tc, conv3x3_s2_p1_bias_clip_matches_reference);
  tcase_add_test(tc, conv3x3_s2_even_input_matches_reference);
  tcase_add_test(tc, conv7x7_s2_p3_stem_matches_reference);
  tcase_add_test(tc, conv1x1_s1_tail_add_relu_matches_reference);
  tcase_add_test(tc, conv1x1_s1_many_blocks_matches_reference);
  tcase_add_test(tc, conv1x1_s1_k300_matches_reference);
  tcase_add_test(tc, conv1x1_s2_downsample_matches_reference);
  tcase_add_test(tc, conv1x1_p1_padded_matches_reference);
  tcase_add_test(tc, conv3x3_dilation2_matches_reference);
  tcase_add_test(tc, conv3x3_asymmetric_pads_matches_reference);
  tcase_add_test(tc, conv3x3_groups2_matches_reference);
  tcase_add_test(tc, conv5x3_stride2x1_matches_reference);
  tcase_add_test(tc, conv3x3_no_pad_valid_matches_reference);
  tcase_add_test(tc, conv3x3_hardswish_matches_reference);
  tcase_add_test(tc, conv3x3_sigmoid_matches_reference);
  tcase_add_test(tc, winograd_3x3_56x56_c64_matches_reference);
  tcase_add_test(tc, winograd_3x3_14x14_c256_res_matches_reference);
  tcase_add_test(tc, winograd_3x3_odd_15x13_c20_matches_reference);
  tcase_add_loop_test(tc, gemm_avx2_microkernel_matches_reference, 0, N_CONV_GRAPHS);
  tcase_add_loop_test(tc, gemm_sse_microkernel_matches_reference, 0, N_CONV_GRAPHS);
  tcase_add_loop_test(tc, im2col_sgemm_fallback_matches_reference, 0, N_CONV_GRAPHS);
  suite_add_tcase(s, tc);

  tc = tcase_create("depthwise");
  tcase_add_test(tc, depthwise_3x3_stride1_clip_matches_reference);
  tcase_add_test(tc, depthwise_3x3_stride2_relu_matches_reference);
  tcase_add_test(tc, depthwise_5x5_stride2_matches_reference);
  tcase_add_test(tc, depthwise_5x5_stride1_hswish_pattern_matches_reference);
  tcase_add_test(tc, depthwise_7x7_stride1_matches_reference);
  tcase_add_test(tc, depthwise_3x3_dilation2_matches_reference);
  tcase_add_test(tc, depthwise_channel_multiplier2_matches_reference);
  tcase_add_test(tc, depthwise_asymmetric_pads_matches_reference);
  tcase_add_test(tc, depthwise_3x3_residual_matches_reference);
  tcase_add_test(tc, depthwise_3x3_tiny_1x1_input_matches_reference);
  tcase_add_test(tc, depthwise_3x3_stride3_matches_reference);
  tcase_add_test(tc, depthwise_13x13_large_kernel_matches_reference);
  suite_add_tcase(s, tc);

  tc = tcase_create("activations");
  tcase_add_test(tc, unary_relu_matches_reference);
  tcase_add_test(tc, unary_clip6_matches_reference);
  tcase_add_test(tc, unary_hardswish_matches_reference);
  tcase_add_test(tc, unary_hardsigmoid_matches_reference);
  tcase_add_test(tc, unary_sigmoid_matches_reference);
  tcase_add_test(tc, se_block_matches_reference);
  tcase_add_test(tc, hardswish_pattern_fuses_and_matches_reference);
  tcase_add_test(tc, hardswish_pattern_with_shared_input_stays_unfused);
  tcase_add_test(tc, hardsigmoid_mul_with_other_alpha_is_not_hardswish);
  suite_add_tcase(s, tc);

  tc = tcase_create("threads");
  tcase_set_timeout(tc, 60);
  tcase_add_checked_fixture(tc, NULL, clear_env);
  tcase_add_loop_test(tc, kernels_split_over_two_threads_match_reference, 0, N_THREADED_GRAPHS);
  tcase_add_test(tc, mobilenet_v2_on_two_threads_matches_reference_plan);
  tcase_add_loop_test(tc, expand_and_depthwise_fuse_into_one_step_and_match_reference, 0, 3);
  suite_add_tcase(s, tc);

  tc = tcase_create("pool_gemm");
  tcase_add_loop_test(tc, maxpool_windows_match_reference, 0, N_POOL_GRAPHS);
  tcase_add_test(tc, gemm_m1_transb0_bias0_matches_reference);
  tcase_add_test(tc, gemm_m1_transb0_bias1_matches_reference);
  tcase_add_test(tc, gemm_m1_transb1_bias0_matches_reference);
  tcase_add_test(tc, gemm_m1_transb1_bias1_matches_reference);
  tcase_add_test(tc, gemm_m3_transb1_matches_reference);
  suite_add_tcase(s, tc);

  tc = tcase_create("weight_views");
  tcase_add_checked_fixture(tc, NULL, clear_env);
  tcase_add_test(tc, conv3x3_reads_prefix_of_wider_weight_rows);
  tcase_add_test(tc, conv1x1_reads_prefix_of_wider_weight_rows);
  tcase_add_test(tc, conv3x3_stride2_reads_prefix_of_wider_weight_rows);
  tcase_add_test(tc, depthwise_reads_weight_rows_through_stride);
  tcase_add_test(tc, im2col_reads_prefix_of_wider_weight_rows);
  tcase_add_test(tc, winograd_3x3_matches_reference);
  suite_add_tcase(s, tc);

  tc = tcase_create("models");
  tcase_set_timeout(tc, 100);
  /* Under an emulator the ResNets' reference plans (naive loops over
   * 2 and 4 GFLOPs) are left out; the MobileNets cover 1x1, depthwise
   * and fused convs, and test_models compares ResNet-18 with PyTorch. */
  if (!tu_emulated()) {
    tcase_add_test(tc, resnet18_fast_plan_matches_reference_plan);
    tcase_add_test(tc, resnet50_fast_plan_matches_reference_plan);
  } else {
    fprintf(stderr, "test_kernels: emulated: resnet18 and resnet50 against their reference "
                    "plans left out\n");
  }
  tcase_add_test(tc, mobilenet_v2_fast_plan_matches_reference_plan);
  tcase_add_test(tc, mobilenet_v3_small_fast_plan_matches_reference_plan);
  tcase_add_test(tc, mobilenet_v3_small_hardswish_patterns_all_fuse);
  suite_add_tcase(s, tc);
  return s;
}

/* Runs a generator script unless its output is there; 0 on success. */
static int generate(const char *script, const char *dir, const char *args, const char *check) {
  char cmd[3 * PATH_MAX + 256];
  if (check != NULL && file_exists(check))
    return 0;
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/%s' '%s' %s", src ? src : ".", script,
           dir, args);
  int rc = system(cmd);
  if (rc != 0)
    fprintf(stderr, "test_kernels: `%s` failed (%d)\n", cmd, rc);
  return rc;
}

int main(void) {
  const char *build = getenv("TAILOR_GENERATED_ROOT");
  snprintf(kernel_dir, sizeof kernel_dir, "%s/kernel-models", build ? build : "build");
  snprintf(model_dir, sizeof model_dir, "%s/models", build ? build : "build");
  /* The generator is idempotent (it checks its own stamp). */
  if (generate("gen-kernel-models.py", kernel_dir, "", NULL) != 0)
    return 1;
  char check[PATH_MAX + 64];
  snprintf(check, sizeof check, "%s/resnet50.input.npy", model_dir);
  const char *names[] = {"resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small"};
  for (int i = 0; i < 4; i++) {
    snprintf(check, sizeof check, "%s/%s.input.npy", model_dir, names[i]);
    if (!file_exists(check) && generate("export-models.py", model_dir, "", NULL) != 0)
      return 1;
  }
  int failures = tu_run(kernels_suite());
  return failures ? 1 : 0;
}
