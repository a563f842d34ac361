/*
 * test_cli.c - tailorctl as a user meets it: run and bench on a small
 * model, and one clear error line with exit status 1 for each kind of bad
 * input (truncated model, unsupported op, missing initializer, .npy of the
 * wrong shape or dtype, wrong number of inputs).
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"
#include "testutil.h"

static char tailorctl[4096], data_dir[4096], tmp_dir[4096], bundled[4096];

struct result {
  int status; /* exit status, or -1 if killed */
  char out[65536];
  char err[8192];
};

static void read_all(int fd, char *buf, size_t size) {
  size_t used = 0;
  for (;;) {
    ssize_t n = read(fd, buf + used, size - 1 - used);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    used += (size_t)n;
    if (used == size - 1)
      break;
  }
  buf[used] = '\0';
}

/* Runs tailorctl with args (NULL-terminated) and captures its output. */
static void run(struct result *r, const char *const *args) {
  char out_path[4200], err_path[4200];
  snprintf(out_path, sizeof out_path, "%s/stdout", tmp_dir);
  snprintf(err_path, sizeof err_path, "%s/stderr", tmp_dir);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
      _exit(127);
    const char *argv[32] = {tailorctl};
    for (int i = 0; args[i] && i < 30; i++)
      argv[i + 1] = args[i];
    execv(tailorctl, (char *const *)argv);
    _exit(127);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  int fd = open(out_path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  read_all(fd, r->out, sizeof r->out);
  close(fd);
  fd = open(err_path, O_RDONLY);
  ck_assert_int_ge(fd, 0);
  read_all(fd, r->err, sizeof r->err);
  close(fd);
}

/* Exit status 1 and exactly one stderr line "tailorctl: ..." holding each
 * fragment. */
static void assert_one_error_line(const struct result *r, const char *a, const char *b) {
  ck_assert_msg(r->status == 1, "exit status %d, stderr: %s", r->status, r->err);
  ck_assert_msg(strncmp(r->err, "tailorctl: ", 11) == 0, "stderr: %s", r->err);
  const char *nl = strchr(r->err, '\n');
  ck_assert_msg(nl != NULL && nl[1] == '\0', "not one line: %s", r->err);
  ck_assert_msg(strstr(r->err, a) != NULL, "\"%s\" not in: %s", a, r->err);
  if (b != NULL)
    ck_assert_msg(strstr(r->err, b) != NULL, "\"%s\" not in: %s", b, r->err);
}

static const char *model(const char *name) {
  static char buf[4][4200];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", data_dir, name);
  return buf[k];
}

static const char *tmp(const char *name) {
  static char buf[4][4200];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
  return buf[k];
}

static void write_npy(const char *path, enum tl_dtype dt, struct tl_shape shape) {
  size_t bytes = (size_t)tl_shape_numel(&shape) * tl_dtype_size(dt);
  void *data = calloc(1, bytes ? bytes : 1);
  ck_assert_ptr_nonnull(data);
  struct tl_tensor t = {dt, shape, data};
  ck_assert_int_eq(tl_npy_write(path, &t, NULL), 0);
  free(data);
}

static void setup(void) {
  const char *build = getenv("TAILOR_BUILD_ROOT");
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  snprintf(tailorctl, sizeof tailorctl, "%s/tailorctl/tailorctl", build ? build : "build");
  snprintf(data_dir, sizeof data_dir, "%s/tests/data/models", src ? src : ".");
  snprintf(bundled, sizeof bundled, "%s/models/fmnist.onnx", src ? src : ".");
  snprintf(tmp_dir, sizeof tmp_dir, "/tmp/tl_cli_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
}

static void teardown(void) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(run_prints_top5_of_a_classifier) {
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), model("tiny_cnn.input.npy"), NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "output: float32 1x10"));
  ck_assert_ptr_nonnull(strstr(r.out, "top5"));
}
END_TEST

/* A shape that is a graph input (Reshape's target) is taken from the
 * file given for it, so the plan knows every shape after it. */
START_TEST(run_binds_a_shape_input_from_its_file) {
  struct result r;
  run(&r, (const char *[]){"run", model("reshape_input.onnx"), model("reshape_input.data.npy"),
                           model("reshape_input.shape.npy"), "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "\"shape\":[4,6]") != NULL, "%s", r.out);
  ck_assert_msg(strstr(r.out, "0.0,0.0,1.0,2.0") != NULL, "%s", r.out);
}
END_TEST

START_TEST(run_out_writes_each_output_as_npy) {
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), model("tiny_cnn.input.npy"), "--out",
                           tmp("outs"), NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_read(tmp("outs/output.npy"), &t, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(t.dtype, TL_DTYPE_FLOAT32);
  ck_assert_int_eq(t.shape.ndim, 2);
  ck_assert_int_eq(t.shape.dims[1], 10);
  free(t.data);
}
END_TEST

START_TEST(run_json_lists_outputs_with_shape_top5_and_data) {
  struct result r;
  run(&r,
      (const char *[]){"run", model("tiny_cnn.onnx"), model("tiny_cnn.input.npy"), "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_error_t je;
  json_t *o = json_loads(r.out, 0, &je);
  ck_assert_msg(o != NULL, "not JSON: %s", je.text);
  json_t *out0 = json_array_get(json_object_get(o, "outputs"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(out0, "name")), "output");
  ck_assert_int_eq(json_array_size(json_object_get(out0, "top5")), 5);
  ck_assert_int_eq(json_array_size(json_object_get(out0, "data")), 10);
  ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(out0, "shape"), 1)), 10);
  json_decref(o);
}
END_TEST

START_TEST(bench_json_reports_latency_percentiles_and_peak_rss) {
  struct result r;
  run(&r, (const char *[]){"bench", model("tiny_cnn.onnx"), "--runs", "5", "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  const char *keys[] = {"median_ms", "p10_ms", "p90_ms", "peak_rss_mib"};
  for (int i = 0; i < 4; i++) {
    json_t *v = json_object_get(o, keys[i]);
    ck_assert_msg(json_is_number(v), "%s missing", keys[i]);
    ck_assert_double_gt(json_number_value(v), 0);
  }
  ck_assert_double_le(json_number_value(json_object_get(o, "p10_ms")),
                      json_number_value(json_object_get(o, "p90_ms")));
  json_decref(o);
}
END_TEST

START_TEST(bench_per_op_names_every_step) {
  struct result r;
  run(&r, (const char *[]){"bench", model("tiny_cnn.onnx"), "--runs", "3", "--per-op", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "Conv+BatchNormalization+Relu"));
  ck_assert_ptr_nonnull(strstr(r.out, "conv1"));
  ck_assert_ptr_nonnull(strstr(r.out, "MaxPool"));
}
END_TEST

START_TEST(truncated_model_is_one_error_line) {
  FILE *in = fopen(model("tiny_cnn.onnx"), "rb");
  ck_assert_ptr_nonnull(in);
  char buf[1000];
  size_t n = fread(buf, 1, sizeof buf, in);
  fclose(in);
  FILE *out = fopen(tmp("cut.onnx"), "wb");
  ck_assert_ptr_nonnull(out);
  ck_assert_uint_eq(fwrite(buf, 1, n / 2, out), n / 2);
  fclose(out);
  struct result r;
  run(&r, (const char *[]){"run", tmp("cut.onnx"), model("tiny_cnn.input.npy"), NULL});
  assert_one_error_line(&r, "cut.onnx", NULL);
}
END_TEST

START_TEST(unsupported_op_is_one_error_line) {
  struct result r;
  run(&r,
      (const char *[]){"run", model("bad/unsupported_op.onnx"), model("tiny_cnn.input.npy"), NULL});
  assert_one_error_line(&r, "node \"relu1\" (Tanh)", "not supported");
  run(&r, (const char *[]){"bench", model("bad/unsupported_op.onnx"), NULL});
  assert_one_error_line(&r, "node \"relu1\" (Tanh)", "not supported");
}
END_TEST

START_TEST(missing_initializer_is_one_error_line) {
  struct result r;
  run(&r, (const char *[]){"run", model("bad/missing_initializer.onnx"),
                           model("tiny_cnn.input.npy"), NULL});
  assert_one_error_line(&r, "\"c2.w\"", "node \"conv2\"");
}
END_TEST

START_TEST(npy_of_the_wrong_shape_is_one_error_line) {
  write_npy(tmp("small.npy"), TL_DTYPE_FLOAT32, (struct tl_shape){4, {1, 1, 4, 4}});
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), tmp("small.npy"), NULL});
  assert_one_error_line(&r, "small.npy: shape is 1x1x4x4", "is 1x1x8x8");
}
END_TEST

START_TEST(npy_of_the_wrong_dtype_is_one_error_line) {
  write_npy(tmp("ints.npy"), TL_DTYPE_INT32, (struct tl_shape){4, {1, 1, 8, 8}});
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), tmp("ints.npy"), NULL});
  assert_one_error_line(&r, "ints.npy: dtype is int32", "float32");
}
END_TEST

/* The outputs' "data" of a `run --json` that succeeded (the caller frees). */
static json_t *run_data(const char *const *argv) {
  struct result r;
  run(&r, argv);
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  json_t *data =
      json_incref(json_object_get(json_array_get(json_object_get(o, "outputs"), 0), "data"));
  json_decref(o);
  ck_assert(json_array_size(data) > 0);
  return data;
}

/* A uint8 file for a float32 input is images: pixels times --scale
 * (default 1/255), the model's output as if the floats had been given. */
START_TEST(run_takes_uint8_images_times_the_scale) {
  uint8_t px[64];
  float x255[64], x2[64];
  for (int k = 0; k < 64; k++) {
    px[k] = (uint8_t)(k * 37 % 256);
    x255[k] = (float)px[k] * (1.0f / 255);
    x2[k] = (float)px[k] * 0.5f;
  }
  const struct tl_shape shape = {4, {1, 1, 8, 8}};
  struct tl_tensor u = {TL_DTYPE_UINT8, shape, px}, a = {TL_DTYPE_FLOAT32, shape, x255},
                   b = {TL_DTYPE_FLOAT32, shape, x2};
  ck_assert_int_eq(tl_npy_write(tmp("px.npy"), &u, NULL), 0);
  ck_assert_int_eq(tl_npy_write(tmp("x255.npy"), &a, NULL), 0);
  ck_assert_int_eq(tl_npy_write(tmp("x2.npy"), &b, NULL), 0);
  const char *m = model("tiny_cnn.onnx");
  json_t *from_px = run_data((const char *[]){"run", m, tmp("px.npy"), "--json", NULL});
  json_t *from_x255 = run_data((const char *[]){"run", m, tmp("x255.npy"), "--json", NULL});
  json_t *from_px2 =
      run_data((const char *[]){"run", m, tmp("px.npy"), "--scale", "0.5", "--json", NULL});
  json_t *from_x2 = run_data((const char *[]){"run", m, tmp("x2.npy"), "--json", NULL});
  ck_assert(json_equal(from_px, from_x255));
  ck_assert(json_equal(from_px2, from_x2));
  ck_assert(!json_equal(from_px, from_px2));
  json_decref(from_px);
  json_decref(from_x255);
  json_decref(from_px2);
  json_decref(from_x2);
}
END_TEST

START_TEST(corrupt_npy_is_one_error_line) {
  FILE *f = fopen(tmp("junk.npy"), "wb");
  ck_assert_ptr_nonnull(f);
  fputs("not numpy at all", f);
  fclose(f);
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), tmp("junk.npy"), NULL});
  assert_one_error_line(&r, "junk.npy", "not a .npy file");
}
END_TEST

START_TEST(wrong_number_of_inputs_is_one_error_line) {
  struct result r;
  run(&r, (const char *[]){"run", model("tiny_cnn.onnx"), model("tiny_cnn.input.npy"),
                           model("tiny_cnn.input.npy"), NULL});
  assert_one_error_line(&r, "1 input", "2 .npy files");
}
END_TEST

/* ------------------------------------------------ SuperNet and predictors */

START_TEST(inspect_json_shows_stages_elastic_dimensions_and_space) {
  struct result r;
  run(&r, (const char *[]){"inspect", bundled, "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(json_array_size(json_object_get(o, "stages")), 3);
  json_t *el = json_object_get(o, "elastic");
  ck_assert(json_is_true(json_object_get(el, "depth")));
  ck_assert(json_is_true(json_object_get(el, "width")));
  ck_assert(json_is_true(json_object_get(el, "resolution")));
  ck_assert(json_number_value(json_object_get(o, "space_size")) == 8640);
  json_decref(o);
}
END_TEST

START_TEST(eval_json_prints_one_object_per_subnet) {
  /* 40 images: accuracy is whatever it is, but a fraction, per subnet */
  struct tl_shape xs = {4, {40, 1, 28, 28}}, ys = {1, {40}};
  write_npy(tmp("x.npy"), TL_DTYPE_UINT8, xs);
  write_npy(tmp("y.npy"), TL_DTYPE_INT64, ys);
  struct result r;
  run(&r, (const char *[]){"eval", bundled, "--calib", tmp("x.npy"), tmp("y.npy"), "--subnet",
                           "r=28 d=2,2,2 w=1,1,1", "--subnet", "w=.5,.5,.5 r=14 d=0,1,2", "--batch",
                           "20", "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  char *line = strtok(r.out, "\n");
  const char *want[] = {"r=28 d=2,2,2 w=1,1,1", "r=14 d=0,1,2 w=.5,.5,.5"};
  for (int i = 0; i < 2; i++, line = strtok(NULL, "\n")) {
    ck_assert_ptr_nonnull(line);
    json_t *o = json_loads(line, 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "subnet")), want[i]); /* canonical */
    double acc = json_number_value(json_object_get(o, "accuracy"));
    ck_assert(acc >= 0 && acc <= 1);
    json_decref(o);
  }
  ck_assert_ptr_null(line);
}
END_TEST

START_TEST(bad_subnet_spec_is_one_error_line) {
  struct result r;
  run(&r, (const char *[]){"bench", bundled, "--subnet", "r=28 d=3,1,1 w=1,1,1", NULL});
  assert_one_error_line(&r, "depth", "stage 1");
  run(&r, (const char *[]){"bench", bundled, "--subnet", "r=28 d=2,2,2 w=1,1,.3", NULL});
  assert_one_error_line(&r, "width", NULL);
  run(&r, (const char *[]){"bench", bundled, "--subnet", "r=28 d=2,2,2 w=1,1,1 q=2", NULL});
  assert_one_error_line(&r, "q", NULL);
}
END_TEST

START_TEST(model_without_elastic_dimension_is_one_error_line) {
  struct result r;
  run(&r, (const char *[]){"inspect", model("no_elastic.onnx"), NULL});
  assert_one_error_line(&r, "no_elastic.onnx", "elastic");
}
END_TEST

START_TEST(predict_profiles_once_then_reads_the_cache) {
  struct result r;
  const char *db = tmp("cache.db");
  run(&r, (const char *[]){"predict", bundled, "--db", db, "--subnet", "r=21 d=1,1,1 w=.5,.5,.5",
                           "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.err, "profiling:")); /* the progress line */
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  ck_assert_double_gt(json_number_value(json_object_get(o, "predicted_ms")), 0);
  ck_assert_double_gt(json_number_value(json_object_get(o, "predicted_mib")), 0);
  ck_assert_int_gt(json_integer_value(json_object_get(o, "profiled_signatures")), 0);
  json_decref(o);
  run(&r, (const char *[]){"predict", bundled, "--db", db, "--subnet", "r=14 d=0,0,0 w=1,1,1",
                           "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_str_eq(r.err, "");
  o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_eq(json_integer_value(json_object_get(o, "profiled_signatures")), 0);
  json_decref(o);
}
END_TEST

START_TEST(corrupt_cache_is_set_aside_with_a_warning) {
  FILE *f = fopen(tmp("cache.db"), "w");
  ck_assert_ptr_nonnull(f);
  fputs("garbage, not SQLite\n", f);
  fclose(f);
  struct result r;
  run(&r, (const char *[]){"profile", bundled, "--db", tmp("cache.db"), "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.err, "tailorctl: warning:"));
  ck_assert_ptr_nonnull(strstr(r.err, ".corrupt-"));
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  ck_assert_int_gt(json_integer_value(json_object_get(o, "new_signatures")), 0);
  json_decref(o);
}
END_TEST

START_TEST(space_options_set_the_choices) {
  struct result r;
  run(&r,
      (const char *[]){"inspect", bundled, "--widths", ".5,1", "--res-steps=2", "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  ck_assert(json_number_value(json_object_get(o, "space_size")) == 648); /* 3 * 27 * 2^3 */
  ck_assert_int_eq(json_array_size(json_object_get(o, "widths")), 2);
  ck_assert_int_eq(json_array_size(json_object_get(o, "resolutions")), 3);
  json_decref(o);
  run(&r, (const char *[]){"inspect", bundled, "--widths", "1,.5", NULL});
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "ascending"));
  run(&r, (const char *[]){"inspect", bundled, "--res-steps", "0", NULL});
  ck_assert_int_eq(r.status, 2);
}
END_TEST

START_TEST(profile_from_needs_anchors) {
  struct result r;
  run(&r, (const char *[]){"profile", bundled, "--db", tmp("a.db"), "--from", tmp("b.db"), NULL});
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "--anchors"));
}
END_TEST

/* export writes a file that `run` takes like any model and that gives
 * the subnet's logits; with --recalib too; a file it cannot write is one
 * error line; a missing -o is a usage error. */
START_TEST(export_writes_a_model_that_runs_as_the_subnet) {
  const char *spec = "r=21 d=1,0,2 w=.5,.25,.75";
  struct tl_shape xs = {4, {1, 1, 28, 28}};
  write_npy(tmp("x.npy"), TL_DTYPE_FLOAT32, xs);
  struct result r;
  run(&r, (const char *[]){"export", bundled, "--subnet", spec, "-o", tmp("s.onnx"), NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, spec));
  run(&r, (const char *[]){"run", bundled, tmp("x.npy"), "--subnet", spec, "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  char want[65536];
  memcpy(want, r.out, sizeof want);
  run(&r, (const char *[]){"run", tmp("s.onnx"), tmp("x.npy"), "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  /* The same logits, bit for bit, once the model's path is set aside. */
  ck_assert_str_eq(strstr(r.out, "\"outputs\""), strstr(want, "\"outputs\""));

  struct tl_shape rs = {4, {8, 1, 28, 28}};
  write_npy(tmp("r.npy"), TL_DTYPE_UINT8, rs);
  run(&r, (const char *[]){"export", bundled, "--subnet", spec, "-o", tmp("c.onnx"), "--recalib",
                           tmp("r.npy"), NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "recalibrated"));

  run(&r, (const char *[]){"export", bundled, "--subnet", spec, "-o", tmp("none/s.onnx"), NULL});
  assert_one_error_line(&r, "none/s.onnx", "cannot create");
  run(&r, (const char *[]){"export", bundled, "--subnet", spec, NULL});
  ck_assert_int_eq(r.status, 2);
}
END_TEST

/* inspect --spread N: N subnets from the smallest to the largest,
 * ascending by MACs. */
START_TEST(inspect_spread_lists_subnets_from_smallest_to_largest) {
  struct result r;
  run(&r, (const char *[]){"inspect", bundled, "--spread", "6", "--json", NULL});
  ck_assert_msg(r.status == 0, "%s", r.err);
  json_t *o = json_loads(r.out, 0, NULL);
  ck_assert_ptr_nonnull(o);
  json_t *arr = json_object_get(o, "spread");
  ck_assert_int_eq(json_array_size(arr), 6);
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 0), "subnet")),
                   json_string_value(json_object_get(json_object_get(o, "smallest"), "subnet")));
  ck_assert_str_eq(json_string_value(json_object_get(json_array_get(arr, 5), "subnet")),
                   json_string_value(json_object_get(json_object_get(o, "largest"), "subnet")));
  for (size_t i = 1; i < 6; i++)
    ck_assert_int_lt(json_integer_value(json_object_get(json_array_get(arr, i - 1), "macs")),
                     json_integer_value(json_object_get(json_array_get(arr, i), "macs")));
  json_decref(o);
}
END_TEST

START_TEST(usage_errors_exit_2) {
  struct result r;
  run(&r, (const char *[]){"frobnicate", NULL});
  ck_assert_int_eq(r.status, 2);
  run(&r, (const char *[]){"bench", model("tiny_cnn.onnx"), "--runs", "zero", NULL});
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "--runs"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("tailorctl");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, run_prints_top5_of_a_classifier);
  tcase_add_test(tc, run_out_writes_each_output_as_npy);
  tcase_add_test(tc, run_json_lists_outputs_with_shape_top5_and_data);
  tcase_add_test(tc, bench_json_reports_latency_percentiles_and_peak_rss);
  tcase_add_test(tc, bench_per_op_names_every_step);
  tcase_add_test(tc, truncated_model_is_one_error_line);
  tcase_add_test(tc, unsupported_op_is_one_error_line);
  tcase_add_test(tc, missing_initializer_is_one_error_line);
  tcase_add_test(tc, npy_of_the_wrong_shape_is_one_error_line);
  tcase_add_test(tc, npy_of_the_wrong_dtype_is_one_error_line);
  tcase_add_test(tc, run_takes_uint8_images_times_the_scale);
  tcase_add_test(tc, corrupt_npy_is_one_error_line);
  tcase_add_test(tc, wrong_number_of_inputs_is_one_error_line);
  tcase_add_test(tc, usage_errors_exit_2);
  tcase_add_test(tc, inspect_json_shows_stages_elastic_dimensions_and_space);
  tcase_add_test(tc, eval_json_prints_one_object_per_subnet);
  tcase_add_test(tc, bad_subnet_spec_is_one_error_line);
  tcase_add_test(tc, model_without_elastic_dimension_is_one_error_line);
  tcase_add_test(tc, predict_profiles_once_then_reads_the_cache);
  tcase_add_test(tc, corrupt_cache_is_set_aside_with_a_warning);
  tcase_add_test(tc, profile_from_needs_anchors);
  tcase_add_test(tc, space_options_set_the_choices);
  tcase_add_test(tc, run_binds_a_shape_input_from_its_file);
  tcase_add_test(tc, export_writes_a_model_that_runs_as_the_subnet);
  tcase_add_test(tc, inspect_spread_lists_subnets_from_smallest_to_largest);
  suite_add_tcase(s, tc);
  int failed = tu_run(s);
  return failed ? 1 : 0;
}
