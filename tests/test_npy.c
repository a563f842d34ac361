/*
 * test_npy.c - the .npy reader and writer: what round-trips, which headers
 * are read, that written files are byte for byte what numpy writes, and that
 * every bad file gets its exact error code and a sentence with the words a
 * person needs.
 *
 * Golden bytes were made with numpy 1.24 (np.save and
 * np.lib.format.write_array(version=(2, 0))) and pasted here.  Files go to
 * a mkdtemp() directory of their own per test, removed afterwards.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"
#include "tensor.h"
#include "testutil.h"

/* -------------------------------------------------------------- helpers */

/* A .npy image: version major.0, header dict exactly as given (no padding:
 * readers must not need it), then data_len bytes of data.  malloc'd. */
static unsigned char *make_npy(int major, const char *dict, const void *data, size_t data_len,
                               size_t *len) {
  size_t dict_len = strlen(dict);
  size_t off = major == 1 ? 10 : 12;
  unsigned char *buf = malloc(off + dict_len + data_len + 1);
  ck_assert_ptr_nonnull(buf);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = 0;
  buf[8] = (unsigned char)(dict_len & 0xff);
  buf[9] = (unsigned char)(dict_len >> 8 & 0xff);
  if (major > 1) {
    buf[10] = (unsigned char)(dict_len >> 16 & 0xff);
    buf[11] = (unsigned char)(dict_len >> 24 & 0xff);
  }
  memcpy(buf + off, dict, dict_len);
  if (data_len > 0)
    memcpy(buf + off + dict_len, data, data_len);
  *len = off + dict_len + data_len;
  return buf;
}

/* Asserts msg contains each of the NULL-terminated words. */
static void assert_words(const char *msg, ...) {
  va_list ap;
  va_start(ap, msg);
  for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
    ck_assert_msg(strstr(msg, w) != NULL, "message \"%s\" lacks \"%s\"", msg, w);
  va_end(ap);
}

/* Parses a version 1.0 image of dict + data_len zero bytes as "x.npy" and
 * asserts it fails with code; the message is left in *err. */
static void expect_parse_fail(const char *dict, size_t data_len, int code, struct tl_error *err) {
  static const unsigned char zeros[64];
  size_t len;
  ck_assert_uint_le(data_len, sizeof zeros);
  unsigned char *buf = make_npy(1, dict, zeros, data_len, &len);
  struct tl_tensor out;
  memset(err, 0, sizeof *err);
  int rc = tl_npy_parse(buf, len, "x.npy", &out, err);
  ck_assert_msg(rc == code, "%s: got %d (%s), want %d (%s): %s", dict, rc, tl_strerror(rc), code,
                tl_strerror(code), err->msg);
  ck_assert_msg(strncmp(err->msg, "x.npy: ", 7) == 0,
                "message \"%s\" does not start with the file name", err->msg);
  free(buf);
}

/* Parses a version 1.0 image of dict + data and asserts success. */
static struct tl_tensor expect_parse_ok(int major, const char *dict, const void *data,
                                        size_t data_len) {
  size_t len;
  unsigned char *buf = make_npy(major, dict, data, data_len, &len);
  struct tl_tensor out;
  struct tl_error err = {{0}};
  int rc = tl_npy_parse(buf, len, "ok.npy", &out, &err);
  ck_assert_msg(rc == 0, "%s: %d %s", dict, rc, err.msg);
  free(buf);
  return out;
}

/* Fills n elements of dtype with a pattern that differs per element and
 * uses the high bytes, so a byte-order or offset slip shows. */
static void fill_pattern(enum tl_dtype dtype, void *data, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    switch (dtype) {
    case TL_DTYPE_FLOAT32: ((float *)data)[i] = (float)i * -1.5f + 0.25f; break;
    case TL_DTYPE_UINT8: ((uint8_t *)data)[i] = (uint8_t)(i * 37 + 1); break;
    case TL_DTYPE_INT32: ((int32_t *)data)[i] = (int32_t)(i * -100003 - 7); break;
    case TL_DTYPE_INT64: ((int64_t *)data)[i] = (int64_t)i * -1000000000007LL + 3; break;
    default: ck_abort_msg("no pattern for %s", tl_dtype_name(dtype));
    }
  }
}

static const char golden_dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
static const float golden_data[6] = {0, 1, 2, 3, 4, 5};

/* ------------------------------------------------------------ round trip */

static const enum tl_dtype roundtrip_dtypes[] = {TL_DTYPE_FLOAT32, TL_DTYPE_UINT8, TL_DTYPE_INT32,
                                                 TL_DTYPE_INT64};

/* Loop test over roundtrip_dtypes: scalar, 1-D and 4-D each come back with
 * the same dtype, shape and bytes. */
START_TEST(roundtrip_preserves_dtype_shape_and_bytes) {
  enum tl_dtype dtype = roundtrip_dtypes[_i];
  static const struct {
    int ndim;
    int64_t dims[4];
  } shapes[] = {{0, {0}}, {1, {5}}, {4, {2, 3, 4, 5}}};

  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    struct tl_tensor t = {.dtype = dtype};
    t.shape = tl_shape_make(shapes[s].ndim, shapes[s].dims);
    int64_t n = tl_shape_numel(&t.shape);
    size_t nbytes = (size_t)n * tl_dtype_size(dtype);
    t.data = malloc(nbytes);
    ck_assert_ptr_nonnull(t.data);
    fill_pattern(dtype, t.data, n);

    struct tl_error err = {{0}};
    const char *path = tu_tmp_path("rt.npy");
    ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);

    struct tl_tensor back;
    ck_assert_msg(tl_npy_read(path, &back, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(back.dtype, dtype);
    ck_assert(tl_shape_equal(&back.shape, &t.shape));
    ck_assert_ptr_nonnull(back.data);
    ck_assert_mem_eq(back.data, t.data, nbytes);

    /* tl_npy_parse of the same bytes agrees with tl_npy_read */
    size_t len;
    unsigned char *file = tu_read_bytes(path, &len);
    struct tl_tensor parsed;
    ck_assert_msg(tl_npy_parse(file, len, path, &parsed, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(parsed.dtype, dtype);
    ck_assert(tl_shape_equal(&parsed.shape, &t.shape));
    ck_assert_mem_eq(parsed.data, t.data, nbytes);

    free(parsed.data);
    free(file);
    free(back.data);
    free(t.data);
  }
}
END_TEST

START_TEST(roundtrip_zero_element_array_reads_null_data) {
  int64_t dims[] = {0, 3};
  struct tl_tensor t = {.dtype = TL_DTYPE_FLOAT32, .shape = tl_shape_make(2, dims), .data = NULL};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("empty.npy");
  ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);

  struct tl_tensor back;
  back.data = &back; /* must be overwritten with NULL */
  ck_assert_msg(tl_npy_read(path, &back, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(back.dtype, TL_DTYPE_FLOAT32);
  ck_assert(tl_shape_equal(&back.shape, &t.shape));
  ck_assert_ptr_null(back.data);
}
END_TEST

START_TEST(write_replaces_existing_file_and_leaves_no_temp_files) {
  const char *path = tu_tmp_path("replace.npy");
  tu_write_bytes(path, "old contents", 12);

  uint8_t v[3] = {7, 8, 9};
  int64_t dims[] = {3};
  struct tl_tensor t = {TL_DTYPE_UINT8, tl_shape_make(1, dims), v};
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);

  struct tl_tensor back;
  ck_assert_msg(tl_npy_read(path, &back, &err) == 0, "%s", err.msg);
  ck_assert_mem_eq(back.data, v, 3);
  free(back.data);
}
END_TEST

START_TEST(write_gives_new_file_mode_0666_less_umask) {
  mode_t old = umask(022);
  float x = 1;
  struct tl_tensor t = {TL_DTYPE_FLOAT32, tl_shape_make(0, NULL), &x};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("mode.npy");
  int rc = tl_npy_write(path, &t, &err);
  umask(old);
  ck_assert_msg(rc == 0, "%s", err.msg);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_uint_eq(st.st_mode & 0777, 0644);
}
END_TEST

/* ------------------------------------------------------- numpy's bytes */

/* np.save("g.npy", np.arange(6, dtype=np.float32).reshape(2, 3)) */
static const unsigned char numpy_2x3_f32[152] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27, 0x64, 0x65, 0x73, 0x63,
    0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74,
    0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32, 0x2c, 0x20,
    0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
    0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40,
};

/* np.lib.format.write_array(f, np.arange(6, dtype=np.int32).reshape(2, 3),
 *                           version=(2, 0)) */
static const unsigned char numpy_v2_2x3_i32[152] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00, 0x7b, 0x27, 0x64, 0x65,
    0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f,
    0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28, 0x32,
    0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
    0x04, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
};

START_TEST(write_matches_numpy_bytes_for_2x3_float32) {
  int64_t dims[] = {2, 3};
  struct tl_tensor t = {TL_DTYPE_FLOAT32, tl_shape_make(2, dims), (void *)golden_data};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("golden.npy");
  ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);

  size_t len;
  unsigned char *got = tu_read_bytes(path, &len);
  ck_assert_uint_eq(len, sizeof numpy_2x3_f32);
  ck_assert_mem_eq(got, numpy_2x3_f32, sizeof numpy_2x3_f32);
  free(got);
}
END_TEST

/* np.save's headers for other ranks: the dict, then this many spaces of
 * padding, then '\n', len bytes from the magic on.  numpy leaves room for
 * the first dim to grow to 21 digits, then pads the whole to a multiple of
 * 64, with a full 64 when it already is one. */
static const struct {
  enum tl_dtype dtype;
  int ndim;
  int64_t dims[TL_MAX_DIMS];
  const char *dict;
  int pad;
  int len;
} numpy_headers[] = {
    /* np.int64(7) */
    {TL_DTYPE_INT64, 0, {0}, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }", 62, 128},
    /* np.arange(5, dtype=np.uint8) */
    {TL_DTYPE_UINT8, 1, {5}, "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", 60, 128},
    /* np.zeros((3, 1, 2, 1, 1, 0, 1, 12345678901), np.int32) */
    {TL_DTYPE_INT32,
     8,
     {3, 1, 2, 1, 1, 0, 1, 12345678901LL},
     "{'descr': '<i4', 'fortran_order': False, 'shape': "
     "(3, 1, 2, 1, 1, 0, 1, 12345678901), }",
     30,
     128},
    /* np.lib.format.write_array_header_1_0() of this float32 shape: dict and
     * growth room end exactly on 128 bytes, so numpy adds a whole block */
    {TL_DTYPE_FLOAT32,
     8,
     {0, 1000, 1000, 1000, 1000, 1000, 1000, 100},
     "{'descr': '<f4', 'fortran_order': False, 'shape': "
     "(0, 1000, 1000, 1000, 1000, 1000, 1000, 100), }",
     84,
     192},
    /* the same, one digit shorter: one space short of a block, so pad 1 */
    {TL_DTYPE_FLOAT32,
     8,
     {0, 1000, 1000, 1000, 1000, 1000, 100, 100},
     "{'descr': '<f4', 'fortran_order': False, 'shape': "
     "(0, 1000, 1000, 1000, 1000, 1000, 100, 100), }",
     21,
     128},
};

/* Loop test over numpy_headers. */
START_TEST(write_matches_numpy_header_padding_for_other_shapes) {
  int64_t zero = 0;
  struct tl_tensor t = {numpy_headers[_i].dtype,
                        tl_shape_make(numpy_headers[_i].ndim, numpy_headers[_i].dims), &zero};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("header.npy");
  ck_assert_msg(tl_npy_write(path, &t, &err) == 0, "%s", err.msg);

  char want[256];
  int hlen = numpy_headers[_i].len - 10;
  int n = snprintf(want, sizeof want, "\x93NUMPY%c%c%c%c%s%*s\n", 1, 0, hlen & 0xff, hlen >> 8,
                   numpy_headers[_i].dict, numpy_headers[_i].pad, "");
  ck_assert_int_eq(n, numpy_headers[_i].len);
  size_t len;
  unsigned char *got = tu_read_bytes(path, &len);
  ck_assert_uint_ge(len, (size_t)n);
  ck_assert_mem_eq(got, want, (size_t)n);
  free(got);
}
END_TEST

START_TEST(read_accepts_numpy_2x3_float32_bytes) {
  const char *path = tu_tmp_path("numpy.npy");
  tu_write_bytes(path, numpy_2x3_f32, sizeof numpy_2x3_f32);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_read(path, &t, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(t.dtype, TL_DTYPE_FLOAT32);
  ck_assert_int_eq(t.shape.ndim, 2);
  ck_assert_int_eq(t.shape.dims[0], 2);
  ck_assert_int_eq(t.shape.dims[1], 3);
  ck_assert_mem_eq(t.data, golden_data, sizeof golden_data);
  free(t.data);
}
END_TEST

START_TEST(read_accepts_version_2_header) {
  static const int32_t want[6] = {0, 1, 2, 3, 4, 5};
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_parse(numpy_v2_2x3_i32, sizeof numpy_v2_2x3_i32, "v2.npy", &t, &err) == 0,
                "%s", err.msg);
  ck_assert_int_eq(t.dtype, TL_DTYPE_INT32);
  ck_assert_int_eq(t.shape.ndim, 2);
  ck_assert_int_eq(t.shape.dims[0], 2);
  ck_assert_int_eq(t.shape.dims[1], 3);
  ck_assert_mem_eq(t.data, want, sizeof want);
  free(t.data);
}
END_TEST

START_TEST(read_accepts_version_3_header) {
  unsigned char buf[sizeof numpy_v2_2x3_i32];
  memcpy(buf, numpy_v2_2x3_i32, sizeof buf);
  buf[6] = 3; /* 3.0 differs from 2.0 only in allowing UTF-8 in the header */
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_parse(buf, sizeof buf, "v3.npy", &t, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(t.dtype, TL_DTYPE_INT32);
  ck_assert_int_eq(t.shape.ndim, 2);
  free(t.data);
}
END_TEST

/* ------------------------------------------------------ header variants */

START_TEST(read_accepts_keys_in_any_order) {
  static const char *const dicts[] = {
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{'fortran_order': False, 'descr': '<f4', 'shape': (2, 3)}",
      "{'shape': (2, 3), 'descr': '<f4', 'fortran_order': False, }",
  };
  for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
    struct tl_tensor t = expect_parse_ok(1, dicts[i], golden_data, sizeof golden_data);
    ck_assert_int_eq(t.dtype, TL_DTYPE_FLOAT32);
    ck_assert_int_eq(t.shape.ndim, 2);
    ck_assert_int_eq(t.shape.dims[0], 2);
    ck_assert_int_eq(t.shape.dims[1], 3);
    ck_assert_mem_eq(t.data, golden_data, sizeof golden_data);
    free(t.data);
  }
}
END_TEST

START_TEST(read_accepts_whitespace_trailing_commas_and_double_quotes) {
  static const char *const dicts[] = {
      "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",
      "  {  'descr' :  '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 "
      ", ) , }   \n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3,), }"
      "                                                          \n",
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
      "{'descr': '<f4',\n 'fortran_order': False,\n 'shape': (2,\n 3)}\r\n",
      /* Python 2 numpy wrote dims as longs */
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
  };
  for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
    struct tl_tensor t = expect_parse_ok(1, dicts[i], golden_data, sizeof golden_data);
    ck_assert_int_eq(t.shape.ndim, 2);
    ck_assert_int_eq(t.shape.dims[0], 2);
    ck_assert_int_eq(t.shape.dims[1], 3);
    free(t.data);
  }
}
END_TEST

START_TEST(read_accepts_scalar_and_1d_shapes) {
  int64_t v = -42;
  struct tl_tensor t =
      expect_parse_ok(1, "{'descr': '<i8', 'fortran_order': False, 'shape': ( ), }", &v, sizeof v);
  ck_assert_int_eq(t.dtype, TL_DTYPE_INT64);
  ck_assert_int_eq(t.shape.ndim, 0);
  ck_assert_int_eq(*(int64_t *)t.data, -42);
  free(t.data);

  int32_t five[5] = {1, 2, 3, 4, 5};
  t = expect_parse_ok(1,
                      "{'descr': '<i4', 'fortran_order': False, "
                      "'shape': (5,), }",
                      five, sizeof five);
  ck_assert_int_eq(t.dtype, TL_DTYPE_INT32);
  ck_assert_int_eq(t.shape.ndim, 1);
  ck_assert_int_eq(t.shape.dims[0], 5);
  ck_assert_mem_eq(t.data, five, sizeof five);
  free(t.data);
}
END_TEST

START_TEST(read_accepts_uint8_with_any_byte_order_mark) {
  static const char *const dicts[] = {
      "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '<u1', 'fortran_order': False, 'shape': (2,), }",
      "{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }",
  };
  uint8_t v[2] = {200, 3};
  for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
    struct tl_tensor t = expect_parse_ok(1, dicts[i], v, sizeof v);
    ck_assert_int_eq(t.dtype, TL_DTYPE_UINT8);
    ck_assert_mem_eq(t.data, v, 2);
    free(t.data);
  }
}
END_TEST

/* ------------------------------------------------------------ bad input */

START_TEST(read_rejects_bad_magic) {
  static const unsigned char zip[] = "PK\x03\x04 not numpy at all";
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_parse(zip, sizeof zip, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "x.npy", "not a .npy file", "bad magic", NULL);

  /* shorter than the magic and not a prefix of it */
  ck_assert_int_eq(tl_npy_parse("\x93NUMPX", 6, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "bad magic", NULL);
}
END_TEST

START_TEST(read_rejects_empty_and_preamble_only_files) {
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_parse("", 0, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "x.npy", "not a .npy file", "empty", NULL);
  ck_assert_int_eq(tl_npy_parse(NULL, 0, "x.npy", &t, &err), TL_EFORMAT);

  /* the magic and version, cut before the header length */
  ck_assert_int_eq(tl_npy_parse("\x93NUMPY\x01\x00\x76", 9, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "x.npy", "truncated", "preamble", NULL);
  ck_assert_int_eq(tl_npy_parse("\x93NUM", 4, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "truncated", NULL);
}
END_TEST

START_TEST(read_rejects_unknown_format_versions) {
  static const unsigned char versions[][2] = {{4, 0}, {1, 1}, {0, 0}, {255, 0}};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    unsigned char buf[sizeof numpy_2x3_f32];
    memcpy(buf, numpy_2x3_f32, sizeof buf);
    buf[6] = versions[i][0];
    buf[7] = versions[i][1];
    struct tl_tensor t;
    struct tl_error err = {{0}};
    ck_assert_int_eq(tl_npy_parse(buf, sizeof buf, "x.npy", &t, &err), TL_EUNSUPPORTED);
    assert_words(err.msg, "x.npy", "version", "1.0, 2.0 and 3.0", NULL);
  }
}
END_TEST

START_TEST(read_rejects_float64_naming_supported_dtypes) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16,
                    TL_EUNSUPPORTED, &err);
  ck_assert_str_eq(err.msg, "x.npy: dtype '<f8' (float64) is not supported; "
                            "use float32, uint8, int32 or int64");
}
END_TEST

/* Every other dtype np.save can write, each with the name numpy gives it. */
static const struct {
  const char *descr;
  const char *name;
} other_dtypes[] = {
    {"|b1", "(bool)"},           {"|i1", "(int8)"},        {"<f2", "(float16)"},
    {"<i2", "(int16)"},          {"<u2", "(uint16)"},      {"<u4", "(uint32)"},
    {"<u8", "(uint64)"},         {"<c8", "(complex64)"},   {"<c16", "(complex128)"},
    {"<f16", "(float128)"},      {"<U2", "(str)"},         {"|S3", "(bytes)"},
    {"|V4", "(void)"},           {"|O", "(object)"},       {"<M8[ns]", "(datetime64)"},
    {"<m8[s]", "(timedelta64)"}, {"float32", "'float32'"}, {"", "''"},
};

/* Loop test over other_dtypes. */
START_TEST(read_rejects_other_dtypes_with_their_numpy_name) {
  char dict[128];
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }",
           other_dtypes[_i].descr);
  struct tl_error err;
  expect_parse_fail(dict, 0, TL_EUNSUPPORTED, &err);
  assert_words(err.msg, "dtype", other_dtypes[_i].name, "is not supported",
               "float32, uint8, int32 or int64", NULL);
}
END_TEST

START_TEST(read_rejects_big_endian_data) {
  static const char *const descrs[] = {">f4", ">i4", ">i8"};
  for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
    char dict[128], fix[32];
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (1,), }",
             descrs[i]);
    snprintf(fix, sizeof fix, "astype('<%s')", descrs[i] + 1);
    struct tl_error err;
    expect_parse_fail(dict, 8, TL_EUNSUPPORTED, &err);
    assert_words(err.msg, "big-endian", descrs[i], fix, NULL);
  }
  /* numpy never writes '=' (native order), but its meaning is the host's */
  struct tl_error err;
  expect_parse_fail("{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }", 4, TL_EUNSUPPORTED,
                    &err);
  assert_words(err.msg, "native-order dtype '=f4'", "astype('<f4')", NULL);
}
END_TEST

START_TEST(read_rejects_structured_dtype) {
  struct tl_error err;
  expect_parse_fail("{'descr': [('a', '<f4'), ('b', '<i4')], "
                    "'fortran_order': False, 'shape': (1,), }",
                    8, TL_EUNSUPPORTED, &err);
  assert_words(err.msg, "structured", "not supported", "float32", NULL);
}
END_TEST

START_TEST(read_rejects_fortran_order) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24,
                    TL_EUNSUPPORTED, &err);
  ck_assert_str_eq(err.msg, "x.npy: fortran_order arrays are not supported; "
                            "save with np.ascontiguousarray");
}
END_TEST

START_TEST(read_rejects_truncated_data_with_sizes) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 28, 28), }", 60,
                    TL_EFORMAT, &err);
  assert_words(err.msg, "x.npy: truncated", "1x3x28x28 float32", "9408 bytes of data", "has 60",
               NULL);
}
END_TEST

START_TEST(read_rejects_truncated_header) {
  size_t len;
  unsigned char *buf = make_npy(1, golden_dict, golden_data, sizeof golden_data, &len);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  /* cut in the middle of the dict */
  ck_assert_int_eq(tl_npy_parse(buf, 30, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "x.npy", "truncated", "header", NULL);
  /* a header length larger than the whole file */
  buf[9] = 0xff;
  ck_assert_int_eq(tl_npy_parse(buf, len, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "truncated", NULL);
  free(buf);
}
END_TEST

START_TEST(read_rejects_trailing_bytes) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 12, TL_EFORMAT,
                    &err);
  assert_words(err.msg, "x.npy", "4 trailing bytes", "2 int32", "8 bytes", NULL);
}
END_TEST

START_TEST(read_rejects_more_than_max_dims) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<f4', 'fortran_order': False, "
                    "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }",
                    4, TL_EUNSUPPORTED, &err);
  assert_words(err.msg, "x.npy", "more than 8 dimensions", "not supported", NULL);

  /* exactly TL_MAX_DIMS is fine */
  float v = 3;
  struct tl_tensor t = expect_parse_ok(1,
                                       "{'descr': '<f4', 'fortran_order': False, "
                                       "'shape': (1, 1, 1, 1, 1, 1, 1, 1), }",
                                       &v, sizeof v);
  ck_assert_int_eq(t.shape.ndim, TL_MAX_DIMS);
  free(t.data);
}
END_TEST

START_TEST(read_rejects_negative_dim) {
  struct tl_error err;
  expect_parse_fail("{'descr': '<f4', 'fortran_order': False, "
                    "'shape': (2, -3), }",
                    0, TL_EFORMAT, &err);
  assert_words(err.msg, "x.npy", "negative dimension -3", NULL);
}
END_TEST

START_TEST(read_rejects_overflowing_dims) {
  struct tl_error err;
  /* one dim past INT64_MAX */
  expect_parse_fail("{'descr': '<f4', 'fortran_order': False, "
                    "'shape': (9223372036854775808,), }",
                    0, TL_EFORMAT, &err);
  assert_words(err.msg, "9223372036854775808", "does not fit in 64 bits", NULL);
  /* dims that fit but whose product does not */
  expect_parse_fail("{'descr': '<f4', 'fortran_order': False, "
                    "'shape': (4294967296, 4294967296), }",
                    0, TL_EFORMAT, &err);
  assert_words(err.msg, "4294967296x4294967296", "64 bits", NULL);
  /* elements that fit but whose byte count does not */
  expect_parse_fail("{'descr': '<i8', 'fortran_order': False, "
                    "'shape': (4611686018427387904,), }",
                    0, TL_EFORMAT, &err);
  assert_words(err.msg, "64 bits", NULL);
  /* a huge but representable array in a small file is just truncated */
  expect_parse_fail("{'descr': '|u1', 'fortran_order': False, "
                    "'shape': (9223372036854775807,), }",
                    0, TL_EFORMAT, &err);
  assert_words(err.msg, "truncated", NULL);
}
END_TEST

/* Headers that are not the dict numpy writes, and a word the message must
 * hold. */
static const struct {
  const char *dict;
  const char *word;
} malformed[] = {
    {"", "expected '{'"},
    {"['descr', '<f4']", "expected '{'"},
    {"{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"},
    {"{'descr': '<f4', 'shape': (2,)}", "missing key 'fortran_order'"},
    {"{'fortran_order': False, 'shape': (2,)}", "missing key 'descr'"},
    {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
     "repeated key 'descr'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
     "unexpected or repeated key 'x'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "not a tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': 2}", "tuple"},
    {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "True or False"},
    {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2,)}", "True or False"},
    {"{'descr': <f4, 'fortran_order': False, 'shape': (2,)}", "quoted dtype"},
    {"{'descr': '<f4\\'', 'fortran_order': False, 'shape': (2,)}", "escaped string"},
    {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "expected ',' or '}'"},
    {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", "expected ',' or '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,) ", "expected ',' or '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "after the closing '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}}", "after the closing '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}", "expected a dimension"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (,)}", "expected a dimension"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", "expected ',' or ')'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,)}", "expected ',' or ')'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,", "dimension"},
    {"{descr: '<f4', 'fortran_order': False, 'shape': (2,)}", "quoted key"},
    {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", "expected ':'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,),,}", "quoted key"},
};

/* Loop test over malformed. */
START_TEST(read_rejects_malformed_header) {
  struct tl_error err;
  expect_parse_fail(malformed[_i].dict, 8, TL_EFORMAT, &err);
  assert_words(err.msg, "malformed .npy header", malformed[_i].word, NULL);
}
END_TEST

START_TEST(read_rejects_nul_in_header) {
  static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\0";
  unsigned char buf[10 + sizeof dict - 1 + 8];
  size_t hlen = sizeof dict - 1; /* the NUL is part of the header */
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)hlen;
  buf[9] = 0;
  memcpy(buf + 10, dict, hlen);
  memset(buf + 10 + hlen, 0, 8);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_parse(buf, sizeof buf, "x.npy", &t, &err), TL_EFORMAT);
  assert_words(err.msg, "after the closing '}'", NULL);
}
END_TEST

START_TEST(read_rejects_oversized_header) {
  /* a well-formed 20000-byte header: numpy would refuse it too */
  size_t hlen = 20000;
  char *dict = malloc(hlen + 1);
  ck_assert_ptr_nonnull(dict);
  int n = snprintf(dict, hlen + 1, "%s", golden_dict);
  memset(dict + n, ' ', hlen - (size_t)n);
  dict[hlen - 1] = '\n';
  dict[hlen] = '\0';
  size_t len;
  unsigned char *buf = make_npy(2, dict, golden_data, sizeof golden_data, &len);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_parse(buf, len, "x.npy", &t, &err), TL_EUNSUPPORTED);
  assert_words(err.msg, "x.npy", "header of 20000 bytes", NULL);
  free(buf);
  free(dict);
}
END_TEST

START_TEST(read_failure_leaves_output_untouched) {
  struct tl_tensor t, before;
  memset(&t, 0xab, sizeof t);
  memcpy(&before, &t, sizeof t);
  struct tl_error err;
  size_t len;
  unsigned char *buf = make_npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                golden_data, 20, &len);
  ck_assert_int_eq(tl_npy_parse(buf, len, "x.npy", &t, &err), TL_EFORMAT);
  ck_assert_mem_eq(&t, &before, sizeof t);
  free(buf);

  ck_assert_int_eq(tl_npy_read(tu_tmp_path("absent.npy"), &t, &err), TL_ENOENT);
  ck_assert_mem_eq(&t, &before, sizeof t);
}
END_TEST

START_TEST(parse_rejects_null_arguments_and_names_unnamed_buffers) {
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_parse(NULL, 10, "x.npy", &t, &err), TL_EINVAL);
  ck_assert_int_eq(tl_npy_parse(numpy_2x3_f32, sizeof numpy_2x3_f32, "x.npy", NULL, &err),
                   TL_EINVAL);
  ck_assert_int_eq(tl_npy_read(NULL, &t, &err), TL_EINVAL);
  ck_assert_int_eq(tl_npy_read("x.npy", NULL, &err), TL_EINVAL);
  ck_assert_int_eq(tl_npy_write(NULL, NULL, &err), TL_EINVAL);

  ck_assert_int_eq(tl_npy_parse("junk", 4, NULL, &t, &err), TL_EFORMAT);
  assert_words(err.msg, "<npy>: not a .npy file", NULL);
  /* err may be NULL */
  ck_assert_int_eq(tl_npy_parse("junk", 4, NULL, &t, NULL), TL_EFORMAT);
}
END_TEST

/* ----------------------------------------------------------- file system */

START_TEST(read_missing_file_returns_enoent_with_strerror) {
  struct tl_tensor t;
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("missing.npy");
  ck_assert_int_eq(tl_npy_read(path, &t, &err), TL_ENOENT);
  assert_words(err.msg, path, "No such file or directory", NULL);
}
END_TEST

START_TEST(read_directory_fails_with_eio) {
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_read(tu_tmpdir(), &t, &err), TL_EIO);
  assert_words(err.msg, tu_tmpdir(), "directory", NULL);
}
END_TEST

START_TEST(read_truncated_file_reports_sizes) {
  const char *path = tu_tmp_path("short.npy");
  tu_write_bytes(path, numpy_2x3_f32, sizeof numpy_2x3_f32 - 5);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_read(path, &t, &err), TL_EFORMAT);
  assert_words(err.msg, path, "truncated", "2x3 float32", "24 bytes of data", "has 19", NULL);

  /* cut inside the header: the file's size is checked before reading it */
  tu_write_bytes(path, numpy_2x3_f32, 40);
  ck_assert_int_eq(tl_npy_read(path, &t, &err), TL_EFORMAT);
  assert_words(err.msg, "truncated", "header", NULL);
}
END_TEST

START_TEST(read_file_with_second_array_appended_fails) {
  /* np.save twice into one open file leaves two arrays back to back */
  const char *path = tu_tmp_path("two.npy");
  unsigned char two[2 * sizeof numpy_2x3_f32];
  memcpy(two, numpy_2x3_f32, sizeof numpy_2x3_f32);
  memcpy(two + sizeof numpy_2x3_f32, numpy_2x3_f32, sizeof numpy_2x3_f32);
  tu_write_bytes(path, two, sizeof two);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_read(path, &t, &err), TL_EFORMAT);
  assert_words(err.msg, path, "152 trailing bytes", "exactly one array", NULL);
}
END_TEST

START_TEST(write_to_missing_directory_fails_naming_path) {
  float x = 1;
  struct tl_tensor t = {TL_DTYPE_FLOAT32, tl_shape_make(0, NULL), &x};
  struct tl_error err = {{0}};
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/no/such/dir/out.npy", tu_tmpdir());
  int rc = tl_npy_write(path, &t, &err);
  ck_assert_msg(rc == TL_ENOENT || rc == TL_EIO, "got %d: %s", rc, err.msg);
  assert_words(err.msg, path, "No such file or directory", NULL);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);
}
END_TEST

START_TEST(write_failing_rename_keeps_target_and_removes_temp_file) {
  /* a non-empty directory where the file should go: rename() fails */
  const char *path = tu_tmp_path("taken.npy");
  ck_assert_int_eq(mkdir(path, 0700), 0);
  char inner[PATH_MAX * 2 + 8];
  snprintf(inner, sizeof inner, "%s/keep", path);
  tu_write_bytes(inner, "x", 1);

  float x = 1;
  struct tl_tensor t = {TL_DTYPE_FLOAT32, tl_shape_make(0, NULL), &x};
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_npy_write(path, &t, &err), TL_EIO);
  assert_words(err.msg, path, "rename", NULL);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1); /* only taken.npy/ */
  ck_assert_int_eq(tu_count_entries(path), 1);
}
END_TEST

START_TEST(write_rejects_unsupported_dtype) {
  uint16_t h = 0x3c00;
  struct tl_tensor t = {TL_DTYPE_FLOAT16, tl_shape_make(0, NULL), &h};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("f16.npy");
  ck_assert_int_eq(tl_npy_write(path, &t, &err), TL_EUNSUPPORTED);
  assert_words(err.msg, path, "float16", "float32, uint8, int32 or int64", NULL);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);
}
END_TEST

START_TEST(write_rejects_unknown_dims_and_missing_data) {
  float x[4] = {0};
  int64_t dims[] = {2, -1};
  struct tl_tensor t = {TL_DTYPE_FLOAT32, tl_shape_make(2, dims), x};
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("bad.npy");
  ck_assert_int_eq(tl_npy_write(path, &t, &err), TL_EINVAL);
  assert_words(err.msg, path, "2x?", NULL);

  t.shape.dims[1] = 2;
  t.data = NULL;
  ck_assert_int_eq(tl_npy_write(path, &t, &err), TL_EINVAL);
  assert_words(err.msg, path, "no data", NULL);

  t.shape.ndim = TL_MAX_DIMS + 1;
  ck_assert_int_eq(tl_npy_write(path, &t, &err), TL_EINVAL);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);
}
END_TEST

/* ----------------------------------------------------------------- main */

static Suite *npy_suite(void) {
  Suite *s = suite_create("npy");
  TCase *tc;

  tc = tcase_create("roundtrip");
  tu_add_tmpdir(tc, "npy");
  tcase_add_loop_test(tc, roundtrip_preserves_dtype_shape_and_bytes, 0,
                      (int)(sizeof roundtrip_dtypes / sizeof roundtrip_dtypes[0]));
  tcase_add_test(tc, roundtrip_zero_element_array_reads_null_data);
  tcase_add_test(tc, write_replaces_existing_file_and_leaves_no_temp_files);
  tcase_add_test(tc, write_gives_new_file_mode_0666_less_umask);
  suite_add_tcase(s, tc);

  tc = tcase_create("numpy");
  tu_add_tmpdir(tc, "npy");
  tcase_add_test(tc, write_matches_numpy_bytes_for_2x3_float32);
  tcase_add_loop_test(tc, write_matches_numpy_header_padding_for_other_shapes, 0,
                      (int)(sizeof numpy_headers / sizeof numpy_headers[0]));
  tcase_add_test(tc, read_accepts_numpy_2x3_float32_bytes);
  tcase_add_test(tc, read_accepts_version_2_header);
  tcase_add_test(tc, read_accepts_version_3_header);
  suite_add_tcase(s, tc);

  tc = tcase_create("header");
  tcase_add_test(tc, read_accepts_keys_in_any_order);
  tcase_add_test(tc, read_accepts_whitespace_trailing_commas_and_double_quotes);
  tcase_add_test(tc, read_accepts_scalar_and_1d_shapes);
  tcase_add_test(tc, read_accepts_uint8_with_any_byte_order_mark);
  suite_add_tcase(s, tc);

  tc = tcase_create("bad_input");
  tu_add_tmpdir(tc, "npy");
  tcase_add_test(tc, read_rejects_bad_magic);
  tcase_add_test(tc, read_rejects_empty_and_preamble_only_files);
  tcase_add_test(tc, read_rejects_unknown_format_versions);
  tcase_add_test(tc, read_rejects_float64_naming_supported_dtypes);
  tcase_add_loop_test(tc, read_rejects_other_dtypes_with_their_numpy_name, 0,
                      (int)(sizeof other_dtypes / sizeof other_dtypes[0]));
  tcase_add_test(tc, read_rejects_big_endian_data);
  tcase_add_test(tc, read_rejects_structured_dtype);
  tcase_add_test(tc, read_rejects_fortran_order);
  tcase_add_test(tc, read_rejects_truncated_data_with_sizes);
  tcase_add_test(tc, read_rejects_truncated_header);
  tcase_add_test(tc, read_rejects_trailing_bytes);
  tcase_add_test(tc, read_rejects_more_than_max_dims);
  tcase_add_test(tc, read_rejects_negative_dim);
  tcase_add_test(tc, read_rejects_overflowing_dims);
  tcase_add_loop_test(tc, read_rejects_malformed_header, 0,
                      (int)(sizeof malformed / sizeof malformed[0]));
  tcase_add_test(tc, read_rejects_nul_in_header);
  tcase_add_test(tc, read_rejects_oversized_header);
  tcase_add_test(tc, read_failure_leaves_output_untouched);
  tcase_add_test(tc, parse_rejects_null_arguments_and_names_unnamed_buffers);
  suite_add_tcase(s, tc);

  tc = tcase_create("files");
  tu_add_tmpdir(tc, "npy");
  tcase_add_test(tc, read_missing_file_returns_enoent_with_strerror);
  tcase_add_test(tc, read_directory_fails_with_eio);
  tcase_add_test(tc, read_truncated_file_reports_sizes);
  tcase_add_test(tc, read_file_with_second_array_appended_fails);
  tcase_add_test(tc, write_to_missing_directory_fails_naming_path);
  tcase_add_test(tc, write_failing_rename_keeps_target_and_removes_temp_file);
  tcase_add_test(tc, write_rejects_unsupported_dtype);
  tcase_add_test(tc, write_rejects_unknown_dims_and_missing_data);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  int failures = tu_run(npy_suite());
  return failures ? 1 : 0;
}
