/*
 * test_onnx.c - the ONNX loader and plan builder on good and broken models.
 *
 * tests/data/models holds a small CNN and a corpus of models broken in one
 * way each (made by scripts/make-test-models.py); truncated and corrupt
 * files are made here from the good one.  Each must fail with the exact
 * error code and a message that says what and where.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "testutil.h"

static char data_dir[4096];
static char tmp_dir[4096];

static void setup(void) {
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  snprintf(data_dir, sizeof data_dir, "%s/tests/data/models", src ? src : ".");
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/tl_onnx_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void teardown(void) {
  char cmd[8300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  ck_assert_int_eq(system(cmd), 0);
}

static char *path_in(const char *dir, const char *name) {
  static char buf[8192];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

START_TEST(good_model_loads_plans_and_runs) {
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_onnx_load(path_in(data_dir, "tiny_cnn.onnx"), &g, &err), 0);
  ck_assert_int_eq(g->n_inputs, 1);
  ck_assert_int_eq(g->n_outputs, 1);
  ck_assert_int_eq(g->opset, 13);
  struct tl_plan *fast = NULL, *ref = NULL;
  struct tl_plan_options ro = {.reference = 1};
  ck_assert_int_eq(tl_plan_build(g, NULL, &fast, &err), 0);
  ck_assert_int_eq(tl_plan_build(g, &ro, &ref, &err), 0);
  struct tl_tensor x;
  ck_assert_int_eq(tl_npy_read(path_in(data_dir, "tiny_cnn.input.npy"), &x, &err), 0);
  memcpy(tl_plan_input(fast, 0)->data, x.data, 64 * sizeof(float));
  memcpy(tl_plan_input(ref, 0)->data, x.data, 64 * sizeof(float));
  tl_plan_run(fast);
  tl_plan_run(ref);
  const struct tl_tensor *a = tl_plan_output(fast, 0), *b = tl_plan_output(ref, 0);
  ck_assert_int_eq(a->shape.ndim, 2);
  ck_assert_int_eq(a->shape.dims[1], 10);
  for (int i = 0; i < 10; i++)
    ck_assert_float_eq_tol(((float *)a->data)[i], ((float *)b->data)[i], 1e-4);
  free(x.data);
  tl_plan_free(fast);
  tl_plan_free(ref);
  tl_graph_free(g);
}
END_TEST

START_TEST(conv_bn_relu_and_residual_fuse_into_two_steps) {
  struct tl_graph *g = NULL;
  struct tl_plan *p = NULL;
  ck_assert_int_eq(tl_onnx_load(path_in(data_dir, "tiny_cnn.onnx"), &g, NULL), 0);
  ck_assert_int_eq(tl_plan_build(g, NULL, &p, NULL), 0);
  /* conv1+bn1+relu1, pool, conv2+bn2+add+relu2, gap, gemm (flatten is a view) */
  ck_assert_int_eq(tl_plan_n_steps(p), 5);
  struct tl_step_info info;
  tl_plan_step_info(p, 0, &info);
  ck_assert_str_eq(info.kind, "Conv+BatchNormalization+Relu");
  tl_plan_step_info(p, 2, &info);
  ck_assert_str_eq(info.kind, "Conv+BatchNormalization+Add+Relu");
  tl_plan_free(p);
  tl_graph_free(g);
}
END_TEST

START_TEST(arena_reuses_buffers_whose_lifetimes_do_not_overlap) {
  struct tl_graph *g = NULL;
  struct tl_plan *p = NULL;
  ck_assert_int_eq(tl_onnx_load(path_in(data_dir, "tiny_cnn.onnx"), &g, NULL), 0);
  ck_assert_int_eq(tl_plan_build(g, NULL, &p, NULL), 0);
  /* Buffers (64-byte aligned): input 256, conv1 out 2048, pool 512, conv2
   * 512, gap 64, fc 64.  All at once would be 3456 bytes; the largest
   * live set is conv1's input and output (256 + 2048). */
  ck_assert_uint_le(tl_plan_arena_bytes(p), 2048 + 512 + 256);
  ck_assert_uint_ge(tl_plan_arena_bytes(p), 2048 + 256);
  tl_plan_free(p);
  tl_graph_free(g);
}
END_TEST

START_TEST(shape_gather_unsqueeze_concat_chain_folds_into_a_view) {
  struct tl_graph *g = NULL;
  struct tl_plan *p = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_onnx_load(path_in(data_dir, "fold_chain.onnx"), &g, &err), 0);
  ck_assert_msg(tl_plan_build(g, NULL, &p, &err) == 0, "%s", err.msg);
  /* Shape..Reshape fold away; only the Relu runs. */
  ck_assert_int_eq(tl_plan_n_steps(p), 1);
  float *x = tl_plan_input(p, 0)->data;
  for (int i = 0; i < 120; i++)
    x[i] = (float)(i - 60);
  tl_plan_run(p);
  const struct tl_tensor *y = tl_plan_output(p, 0);
  ck_assert_int_eq(y->shape.ndim, 2);
  ck_assert_int_eq(y->shape.dims[0], 2);
  ck_assert_int_eq(y->shape.dims[1], 60);
  for (int i = 0; i < 120; i++)
    ck_assert_float_eq(((float *)y->data)[i], i < 60 ? 0.f : (float)(i - 60));
  tl_plan_free(p);
  tl_graph_free(g);
}
END_TEST

/* Loading fails with this code and a message holding every fragment. */
struct bad_case {
  const char *file;
  int code;
  int at_plan; /* loads fine; the plan build fails */
  const char *fragments[3];
};

static const struct bad_case bad_cases[] = {
    {"unsupported_op.onnx", TL_EUNSUPPORTED, 0, {"node \"relu1\"", "Tanh", "not supported"}},
    {"missing_initializer.onnx", TL_EFORMAT, 0, {"node \"conv2\"", "\"c2.w\"", "initializer"}},
    {"opset_99.onnx", TL_EUNSUPPORTED, 0, {"opset 99", "not supported", NULL}},
    {"raw_data_short.onnx", TL_EFORMAT, 0, {"initializer \"c1.w\"", "280 bytes", "288"}},
    {"external_data.onnx", TL_EUNSUPPORTED, 0, {"initializer \"c1.w\"", "external data", NULL}},
    {"duplicate_output.onnx", TL_EFORMAT, 0, {"node \"pool\"", "\"r1\"", "already defined"}},
    {"cycle.onnx", TL_EFORMAT, 0, {"cycle", NULL, NULL}},
    {"no_outputs.onnx", TL_EFORMAT, 0, {"no outputs", NULL, NULL}},
    {"attribute_type.onnx", TL_EFORMAT, 1, {"node \"pool\"", "kernel_shape", "wrong type"}},
    /* found by fuzz_onnx: the attribute's name leaked when its value could
     * not be read (the sanitizer and valgrind runs see the leak) */
    {"attribute_no_tensor.onnx", TL_EFORMAT, 0, {"node \"flatten\"", "\"axis\"", "no tensor"}},
    {"kernel_too_large.onnx", TL_ESHAPE, 1, {"node \"conv2\"", "kernel 5", "padded input 2"}},
    {"channel_mismatch.onnx", TL_ESHAPE, 1, {"node \"conv1\"", "3 input channels", "has 1"}},
};

START_TEST(broken_model_gives_its_error_with_place) {
  const struct bad_case *bc = &bad_cases[_i];
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/bad", data_dir);
  const char *path = path_in(dir, bc->file);
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  int rc = tl_onnx_load(path, &g, &err);
  if (bc->at_plan) {
    ck_assert_msg(rc == 0, "%s: %s", bc->file, err.msg);
    struct tl_plan *p = NULL;
    rc = tl_plan_build(g, NULL, &p, &err);
    ck_assert_ptr_null(p);
    tl_graph_free(g);
  } else {
    ck_assert_ptr_null(g);
  }
  ck_assert_msg(rc == bc->code, "%s: code %d (%s), expected %d; message: %s", bc->file, rc,
                tl_strerror(rc), bc->code, err.msg);
  ck_assert_msg(strstr(err.msg, bc->file) != NULL, "%s: message does not name the file: %s",
                bc->file, err.msg);
  for (int k = 0; k < 3 && bc->fragments[k]; k++)
    ck_assert_msg(strstr(err.msg, bc->fragments[k]) != NULL, "%s: \"%s\" not in: %s", bc->file,
                  bc->fragments[k], err.msg);
}
END_TEST

START_TEST(truncated_model_is_a_format_error_at_every_length) {
  size_t len;
  unsigned char *buf = tu_read_bytes(path_in(data_dir, "tiny_cnn.onnx"), &len);
  char path[4200];
  snprintf(path, sizeof path, "%s/truncated.onnx", tmp_dir);
  /* Every cut must fail cleanly: most do not parse, the rest lose a weight,
   * a node or the outputs. */
  for (size_t cut = 0; cut < len; cut += 7) {
    tu_write_bytes(path, buf, cut);
    struct tl_graph *g = NULL;
    struct tl_error err = {{0}};
    int rc = tl_onnx_load(path, &g, &err);
    if (rc == 0) {
      struct tl_plan *p = NULL;
      rc = tl_plan_build(g, NULL, &p, &err);
      tl_plan_free(p);
      tl_graph_free(g);
    }
    ck_assert_msg(rc < 0, "a model cut at %zu of %zu bytes was accepted", cut, len);
    ck_assert_msg(strstr(err.msg, "truncated.onnx") != NULL, "cut %zu: %s", cut, err.msg);
  }
  free(buf);
}
END_TEST

START_TEST(corrupt_model_never_crashes_the_loader) {
  size_t len;
  unsigned char *buf = tu_read_bytes(path_in(data_dir, "tiny_cnn.onnx"), &len);
  char path[4200];
  snprintf(path, sizeof path, "%s/corrupt.onnx", tmp_dir);
  srand(1234);
  int accepted = 0;
  for (int trial = 0; trial < 300; trial++) {
    unsigned char *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, buf, len);
    for (int k = 0; k < 1 + trial % 8; k++)
      copy[(size_t)rand() % len] = (unsigned char)rand();
    tu_write_bytes(path, copy, len);
    free(copy);
    struct tl_graph *g = NULL;
    struct tl_error err = {{0}};
    if (tl_onnx_load(path, &g, &err) == 0) {
      /* A flipped weight byte is still a valid model: it must plan and run. */
      struct tl_plan *p = NULL;
      if (tl_plan_build(g, NULL, &p, &err) == 0) {
        tl_plan_run(p);
        accepted++;
      }
      tl_plan_free(p);
      tl_graph_free(g);
    } else {
      ck_assert_msg(err.msg[0] != '\0', "trial %d: an error with no message", trial);
    }
  }
  ck_assert_int_gt(accepted, 0);
  free(buf);
}
END_TEST

START_TEST(garbage_file_is_not_an_onnx_model) {
  char path[4200];
  snprintf(path, sizeof path, "%s/garbage.onnx", tmp_dir);
  tu_write_bytes(path, (const unsigned char *)"this is not a protobuf\xff\xff\xff", 25);
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_onnx_load(path, &g, &err), TL_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "not a valid ONNX model"));
  tu_write_bytes(path, (const unsigned char *)"", 0);
  ck_assert_int_eq(tl_onnx_load(path, &g, &err), TL_EFORMAT);
  ck_assert_ptr_nonnull(strstr(err.msg, "empty"));
  ck_assert_int_eq(tl_onnx_load(path_in(tmp_dir, "absent.onnx"), &g, &err), TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "absent.onnx"));
  ck_assert_int_eq(tl_onnx_load(tmp_dir, &g, &err), TL_EIO);
  ck_assert_ptr_null(g);
}
END_TEST

START_TEST(input_of_the_wrong_shape_is_refused_by_the_plan) {
  struct tl_graph *g = NULL;
  struct tl_plan *p = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_onnx_load(path_in(data_dir, "tiny_cnn.onnx"), &g, NULL), 0);
  struct tl_shape s = {4, {1, 3, 8, 8}};
  struct tl_plan_options po = {.input_shapes = &s};
  ck_assert_int_eq(tl_plan_build(g, &po, &p, &err), TL_ESHAPE);
  ck_assert_ptr_nonnull(strstr(err.msg, "input \"input\" must be 1x1x8x8, not 1x3x8x8"));
  ck_assert_ptr_null(p);
  tl_graph_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("onnx");
  TCase *tc = tcase_create("loader");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, good_model_loads_plans_and_runs);
  tcase_add_test(tc, conv_bn_relu_and_residual_fuse_into_two_steps);
  tcase_add_test(tc, arena_reuses_buffers_whose_lifetimes_do_not_overlap);
  tcase_add_test(tc, shape_gather_unsqueeze_concat_chain_folds_into_a_view);
  tcase_add_loop_test(tc, broken_model_gives_its_error_with_place, 0,
                      (int)(sizeof bad_cases / sizeof bad_cases[0]));
  tcase_add_test(tc, truncated_model_is_a_format_error_at_every_length);
  tcase_add_test(tc, corrupt_model_never_crashes_the_loader);
  tcase_add_test(tc, garbage_file_is_not_an_onnx_model);
  tcase_add_test(tc, input_of_the_wrong_shape_is_refused_by_the_plan);
  suite_add_tcase(s, tc);
  int failed = tu_run(s);
  return failed ? 1 : 0;
}
