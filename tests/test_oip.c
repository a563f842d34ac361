/*
 * test_oip.c - the Open Inference Protocol v2 codec: which request bodies
 * are read and into what, the exact code, status and sentence for each one
 * refused, responses whose floats read back bit for bit, the binary tensor
 * extension's layout both ways, metadata bodies and the route table.
 *
 * The corpus in tests/data/requests/ holds request bodies: good/<case>.body
 * and bad/<case>.body, each with <case>.expect, lines of "key: value":
 *   status: 200 | 400 ...        the HTTP status (tl_oip_error_status())
 *   code: FORMAT | SHAPE ...     the TL_E* code (bad cases)
 *   header-length: J             Inference-Header-Content-Length, if sent
 *   error: sentence              the whole message (bad cases), or
 *   error-contains: words        a part of it (messages with jansson's text)
 *   input: name DTYPE [d,..] json|binary hex   each input, in order, with
 *                                its bytes as parsed ("-" when empty)
 *   output: name binary|json     each output asked for, in order
 *   id: / timeout_us: / priority: / subnet: / binary_output:   parameters
 * Every case is parsed from an aligned buffer and from one offset by a
 * byte, which must agree: binary tensors are used in place only when
 * aligned, and copied otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "oip.h"
#include "tensor.h"
#include "testutil.h"

/* -------------------------------------------------------------- helpers */

static const char *corpus_dir(void) {
  static char dir[4096];
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  snprintf(dir, sizeof dir, "%s/tests/data/requests", src ? src : ".");
  return dir;
}

static int code_from_name(const char *name) {
  static const struct {
    const char *name;
    int code;
  } codes[] = {{"FORMAT", TL_EFORMAT}, {"SHAPE", TL_ESHAPE}, {"DTYPE", TL_EDTYPE},
               {"RANGE", TL_ERANGE},   {"NOMEM", TL_ENOMEM}, {"INVAL", TL_EINVAL}};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (strcmp(codes[i].name, name) == 0)
      return codes[i].code;
  ck_abort_msg("unknown code name %s", name);
  return 0;
}

static void hex(const void *p, size_t n, char *out) {
  const unsigned char *b = p;
  if (n == 0) {
    strcpy(out, "-");
    return;
  }
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02x", b[i]);
}

static void shape_str(const struct tl_shape *s, char *out) {
  int n = sprintf(out, "[");
  for (int i = 0; i < s->ndim; i++)
    n += sprintf(out + n, "%s%lld", i ? "," : "", (long long)s->dims[i]);
  sprintf(out + n, "]");
}

/* One line of r, in the corpus's "input:"/"output:"/parameter form, the
 * k'th of those the expect file lists; "" when there is none. */
static void describe(const struct tl_oip_request *r, const char *key, int k, char *out,
                     size_t size) {
  out[0] = '\0';
  if (strcmp(key, "input") == 0 && k < r->n_inputs) {
    const struct tl_oip_input *in = &r->inputs[k];
    char sh[256];
    char *hx = malloc(2 * in->nbytes + 2);
    ck_assert_ptr_nonnull(hx);
    shape_str(&in->shape, sh);
    hex(in->data, in->nbytes, hx);
    snprintf(out, size, "%s %s %s %s %s", in->name, tl_oip_dtype_name(in->dtype), sh,
             in->binary ? "binary" : "json", hx);
    free(hx);
  } else if (strcmp(key, "output") == 0 && k < r->n_outputs) {
    snprintf(out, size, "%s %s", r->outputs[k].name, r->outputs[k].binary ? "binary" : "json");
  } else if (strcmp(key, "id") == 0) {
    snprintf(out, size, "%s", r->id ? r->id : "(none)");
  } else if (strcmp(key, "timeout_us") == 0) {
    snprintf(out, size, "%lld", (long long)r->timeout_us);
  } else if (strcmp(key, "priority") == 0) {
    snprintf(out, size, "%lld", (long long)r->priority);
  } else if (strcmp(key, "subnet") == 0) {
    snprintf(out, size, "%s", r->subnet ? r->subnet : "(none)");
  } else if (strcmp(key, "binary_output") == 0) {
    snprintf(out, size, "%d", r->binary_output);
  }
}

/* Parses body (len bytes) copied to an address with the given offset from
 * a malloc'd (16-aligned) one. */
static int parse_at(const char *body, size_t len, size_t offset, int64_t json_len,
                    struct tl_oip_request *r, struct tl_error *err, char **keep) {
  char *buf = malloc(len + offset + 1);
  ck_assert_ptr_nonnull(buf);
  memcpy(buf + offset, body, len);
  *keep = buf;
  return tl_oip_parse_infer(buf + offset, len, json_len, r, err);
}

/* Checks one corpus case; appends a line to report for each mismatch. */
static void corpus_case(const char *dir, const char *name, int good, char *report, size_t size,
                        int *cases) {
  char path[8192];
  size_t len, elen;
  snprintf(path, sizeof path, "%s/%s.body", dir, name);
  char *body = (char *)tu_read_bytes(path, &len);
  snprintf(path, sizeof path, "%s/%s.expect", dir, name);
  char *expect = (char *)tu_read_bytes(path, &elen);
  (*cases)++;

  int64_t json_len = -1;
  const char *hl = strstr(expect, "header-length: ");
  if (hl != NULL)
    json_len = strtoll(hl + 15, NULL, 10);

#define MISMATCH(...)                                                                              \
  do {                                                                                             \
    size_t at_ = strlen(report);                                                                   \
    snprintf(report + at_, size - at_, __VA_ARGS__);                                               \
  } while (0)

  for (size_t offset = 0; offset < 2; offset++) {
    struct tl_oip_request r;
    struct tl_oip_request untouched;
    memset(&r, 0xa5, sizeof r);
    memcpy(&untouched, &r, sizeof r);
    struct tl_error err = {{0}};
    char *buf;
    int rc = parse_at(body, len, offset, json_len, &r, &err, &buf);
    int counts[2] = {0, 0}; /* inputs, outputs seen in the expect file */
    char *save = NULL;
    char *copy = strdup(expect);
    ck_assert_ptr_nonnull(copy);
    for (char *line = strtok_r(copy, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
      char *colon = strstr(line, ": ");
      ck_assert_msg(colon != NULL, "%s: bad line \"%s\"", name, line);
      *colon = '\0';
      const char *key = line, *val = colon + 2;
      if (strcmp(key, "status") == 0) {
        if (tl_oip_error_status(rc) != atoi(val))
          MISMATCH("%s@%zu: status %d, want %s (%s)\n", name, offset, tl_oip_error_status(rc), val,
                   err.msg);
      } else if (strcmp(key, "code") == 0) {
        if (rc != code_from_name(val))
          MISMATCH("%s@%zu: code %d (%s), want %s\n", name, offset, rc, tl_strerror(rc), val);
      } else if (strcmp(key, "error") == 0) {
        if (strcmp(err.msg, val) != 0)
          MISMATCH("%s@%zu: message \"%s\", want \"%s\"\n", name, offset, err.msg, val);
      } else if (strcmp(key, "error-contains") == 0) {
        if (strstr(err.msg, val) == NULL)
          MISMATCH("%s@%zu: message \"%s\" lacks \"%s\"\n", name, offset, err.msg, val);
      } else if (strcmp(key, "header-length") == 0) {
        continue;
      } else if (rc == 0) {
        int k = 0;
        if (strcmp(key, "input") == 0)
          k = counts[0]++;
        else if (strcmp(key, "output") == 0)
          k = counts[1]++;
        char got[4096];
        describe(&r, key, k, got, sizeof got);
        if (strcmp(got, val) != 0)
          MISMATCH("%s@%zu: %s \"%s\", want \"%s\"\n", name, offset, key, got, val);
      }
    }
    free(copy);
    if (good && rc == 0) {
      if (counts[0] != r.n_inputs || counts[1] != r.n_outputs)
        MISMATCH("%s@%zu: %d inputs and %d outputs, want %d and %d\n", name, offset, r.n_inputs,
                 r.n_outputs, counts[0], counts[1]);
      /* every tensor aligned for its type; JSON ones in the request's
       * allocation, UINT8 binary ones (never misaligned) in the body */
      for (int i = 0; i < r.n_inputs; i++) {
        const struct tl_oip_input *in = &r.inputs[i];
        size_t a = tl_dtype_size(in->dtype);
        if ((uintptr_t)in->data % a != 0)
          MISMATCH("%s@%zu: input %d misaligned\n", name, offset, i);
        int inside = (const char *)in->data >= buf && (const char *)in->data < buf + len + offset;
        if (!in->binary && inside)
          MISMATCH("%s@%zu: JSON input %d points into the body\n", name, offset, i);
        if (in->binary && a == 1 && in->nbytes > 0 && !inside)
          MISMATCH("%s@%zu: UINT8 input %d was copied\n", name, offset, i);
      }
    }
    if (good && rc != 0)
      MISMATCH("%s@%zu: refused: %s\n", name, offset, err.msg);
    if (!good && rc == 0)
      MISMATCH("%s@%zu: accepted\n", name, offset);
    if (rc != 0 && memcmp(&r, &untouched, sizeof r) != 0)
      MISMATCH("%s@%zu: output changed on failure\n", name, offset);
    if (rc == 0)
      tl_oip_request_free(&r);
    free(buf);
  }
#undef MISMATCH
  free(expect);
  free(body);
}

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every case in corpus subdirectory sub; returns how many. */
static int corpus_run(const char *sub, int good, char *report, size_t size) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/%s", corpus_dir(), sub);
  DIR *d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot open %s", dir);
  char *names[256];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > 5 && strcmp(e->d_name + l - 5, ".body") == 0) {
      ck_assert_int_lt(n, 256);
      names[n] = strndup(e->d_name, l - 5);
      ck_assert_ptr_nonnull(names[n]);
      n++;
    }
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof names[0], name_cmp);
  int cases = 0;
  for (int i = 0; i < n; i++) {
    corpus_case(dir, names[i], good, report, size, &cases);
    free(names[i]);
  }
  return cases;
}

/* Parses a request held in a string; asserts success. */
static void parse_ok(const char *json, struct tl_oip_request *r) {
  struct tl_error err = {{0}};
  int rc = tl_oip_parse_infer(json, strlen(json), -1, r, &err);
  ck_assert_msg(rc == 0, "%s: %s", json, err.msg);
}

/* ------------------------------------------------------------- corpus */

START_TEST(corpus_good_requests_parse_to_expected_tensors) {
  static char report[65536];
  report[0] = '\0';
  int n = corpus_run("good", 1, report, sizeof report);
  ck_assert_msg(report[0] == '\0', "%s", report);
  ck_assert_int_ge(n, 14);
}
END_TEST

START_TEST(corpus_bad_requests_fail_with_expected_status_and_sentence) {
  static char report[65536];
  report[0] = '\0';
  int n = corpus_run("bad", 0, report, sizeof report);
  ck_assert_msg(report[0] == '\0', "%s", report);
  ck_assert_int_ge(n, 50);
}
END_TEST

/* ----------------------------------------------------------- requests */

START_TEST(flat_and_nested_data_give_the_same_tensor) {
  struct tl_oip_request flat, nested;
  parse_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2,2],\"datatype\":"
           "\"FP32\",\"data\":[1,2,3,4,5,6,7,8.5]}]}",
           &flat);
  parse_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2,2],\"datatype\":"
           "\"FP32\",\"data\":[[[1,2],[3,4]],[[5,6],[7,8.5]]]}]}",
           &nested);
  static const float want[8] = {1, 2, 3, 4, 5, 6, 7, 8.5f};
  ck_assert_int_eq(flat.inputs[0].nbytes, sizeof want);
  ck_assert_mem_eq(flat.inputs[0].data, want, sizeof want);
  ck_assert_mem_eq(nested.inputs[0].data, want, sizeof want);
  ck_assert_int_eq(nested.inputs[0].shape.ndim, 3);
  ck_assert_int_eq(nested.inputs[0].binary, 0);
  tl_oip_request_free(&flat);
  tl_oip_request_free(&nested);
  ck_assert_ptr_null(flat.mem);
  ck_assert_int_eq(flat.n_inputs, 0);
}
END_TEST

/* Builds a binary request body: JSON then payload, at offset from a
 * 16-aligned allocation; returns the allocation. */
static char *binary_body(const char *json, const void *payload, size_t n, size_t offset,
                         char **body, size_t *len) {
  size_t j = strlen(json);
  char *buf = malloc(offset + j + n + 1);
  ck_assert_ptr_nonnull(buf);
  memcpy(buf + offset, json, j);
  memcpy(buf + offset + j, payload, n);
  *body = buf + offset;
  *len = j + n;
  return buf;
}

START_TEST(binary_tensors_point_into_the_body_when_aligned) {
  /* 84-byte JSON: the floats start 4-aligned */
  const char *json = "{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":"
                     "\"FP32\",\"parameters\":{\"binary_data_size\":12}}]}";
  size_t j = strlen(json);
  ck_assert_uint_eq(j % 4, 0);
  const float payload[3] = {1.5f, -2.0f, 1e-30f};
  for (size_t offset = 0; offset < 4; offset++) {
    char *body;
    size_t len;
    char *buf = binary_body(json, payload, sizeof payload, offset, &body, &len);
    struct tl_oip_request r;
    struct tl_error err = {{0}};
    ck_assert_msg(tl_oip_parse_infer(body, len, (int64_t)j, &r, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.n_inputs, 1);
    ck_assert_int_eq(r.inputs[0].binary, 1);
    ck_assert_uint_eq(r.inputs[0].nbytes, sizeof payload);
    ck_assert_mem_eq(r.inputs[0].data, payload, sizeof payload);
    ck_assert_uint_eq((uintptr_t)r.inputs[0].data % 4, 0);
    if (offset == 0)
      ck_assert_ptr_eq(r.inputs[0].data, body + j); /* in place */
    else
      ck_assert_ptr_ne(r.inputs[0].data, body + j); /* an aligned copy */
    tl_oip_request_free(&r);
    free(buf);
  }
}
END_TEST

START_TEST(binary_inputs_are_taken_in_input_order) {
  const char *json = "{\"inputs\":["
                     "{\"name\":\"a\",\"shape\":[2],\"datatype\":\"UINT8\","
                     "\"parameters\":{\"binary_data_size\":2}},"
                     "{\"name\":\"b\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[-3]},"
                     "{\"name\":\"c\",\"shape\":[1,1],\"datatype\":\"INT64\","
                     "\"parameters\":{\"binary_data_size\":8}}]}";
  unsigned char payload[10] = {7, 9};
  int64_t c = -123456789012345LL;
  memcpy(payload + 2, &c, 8);
  char *body;
  size_t len;
  char *buf = binary_body(json, payload, sizeof payload, 0, &body, &len);
  struct tl_oip_request r;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_oip_parse_infer(body, len, (int64_t)strlen(json), &r, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(r.n_inputs, 3);
  ck_assert_mem_eq(r.inputs[0].data, payload, 2);
  ck_assert_int_eq(((const int64_t *)r.inputs[1].data)[0], -3);
  ck_assert_int_eq(r.inputs[1].binary, 0);
  int64_t got;
  memcpy(&got, r.inputs[2].data, 8);
  ck_assert_int_eq(got, c);
  ck_assert_uint_eq((uintptr_t)r.inputs[2].data % 8, 0);
  tl_oip_request_free(&r);
  free(buf);
}
END_TEST

START_TEST(binary_sizes_must_add_up_exactly) {
  const char *json = "{\"inputs\":[{\"name\":\"a\",\"shape\":[4],\"datatype\":"
                     "\"UINT8\",\"parameters\":{\"binary_data_size\":4}}]}";
  const char payload[6] = "abcdef";
  int64_t j = (int64_t)strlen(json);
  struct tl_oip_request r = {0};
  struct tl_error err = {{0}};
  char *body;
  size_t len;
  char *buf = binary_body(json, payload, 6, 0, &body, &len);
  /* exact: 4 bytes */
  ck_assert_int_eq(tl_oip_parse_infer(body, len - 2, j, &r, &err), 0);
  tl_oip_request_free(&r);
  /* one short, one over */
  ck_assert_int_eq(tl_oip_parse_infer(body, len - 3, j, &r, &err), TL_EFORMAT);
  ck_assert_str_eq(err.msg, "input \"a\" needs 4 bytes of binary data but "
                            "only 3 are left after the JSON and the inputs "
                            "before it");
  ck_assert_int_eq(tl_oip_parse_infer(body, len - 1, j, &r, &err), TL_EFORMAT);
  ck_assert_str_eq(err.msg, "1 bytes after the JSON are not claimed by any "
                            "input's binary_data_size");
  free(buf);
}
END_TEST

START_TEST(schedule_parameters_and_subnet_are_read) {
  struct tl_oip_request r;
  parse_ok("{\"id\":\"q1\",\"parameters\":{\"timeout\":250000,\"priority\":1,"
           "\"subnet\":\"auto\",\"frobnicate\":true},"
           "\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
           "\"data\":[0]}]}",
           &r);
  ck_assert_str_eq(r.id, "q1");
  ck_assert_int_eq(r.timeout_us, 250000);
  ck_assert_int_eq(r.priority, 1);
  ck_assert_str_eq(r.subnet, "auto");
  ck_assert_int_eq(r.binary_output, 0);
  tl_oip_request_free(&r);

  parse_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
           "\"data\":[0]}]}",
           &r);
  ck_assert_ptr_null(r.id);
  ck_assert_ptr_null(r.subnet);
  ck_assert_int_eq(r.timeout_us, 0);
  ck_assert_int_eq(r.priority, 0);
  ck_assert_int_eq(r.n_outputs, 0);
  ck_assert_ptr_null(r.outputs);
  tl_oip_request_free(&r);
}
END_TEST

START_TEST(output_binary_follows_request_and_output_flags) {
  struct tl_oip_request r;
  parse_ok("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\","
           "\"data\":[0]}],\"outputs\":[{\"name\":\"a\",\"parameters\":"
           "{\"binary_data\":true}},{\"name\":\"b\",\"parameters\":"
           "{\"binary_data\":false}},{\"name\":\"c\"}]}",
           &r);
  ck_assert_int_eq(tl_oip_output_binary(&r, "a"), 1);
  ck_assert_int_eq(tl_oip_output_binary(&r, "b"), 0);
  ck_assert_int_eq(tl_oip_output_binary(&r, "c"), 0);
  ck_assert_int_eq(tl_oip_output_binary(&r, "zzz"), 0);
  tl_oip_request_free(&r);
  parse_ok("{\"parameters\":{\"binary_data_output\":true},\"inputs\":[{"
           "\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[0]}]}",
           &r);
  ck_assert_int_eq(tl_oip_output_binary(&r, "anything"), 1);
  tl_oip_request_free(&r);
}
END_TEST

/* A request with n inputs (or, if outputs, one input and n outputs). */
static char *many_tensors(int n, int outputs) {
  size_t size = 200 + (size_t)n * 100;
  char *s = malloc(size);
  ck_assert_ptr_nonnull(s);
  size_t at = (size_t)snprintf(s, size, "{\"inputs\":[");
  for (int i = 0; i < (outputs ? 1 : n); i++)
    at += (size_t)snprintf(s + at, size - at,
                           "%s{\"name\":\"x%d\",\"shape\":[1],"
                           "\"datatype\":\"UINT8\",\"data\":[%d]}",
                           i ? "," : "", i, i % 256);
  at += (size_t)snprintf(s + at, size - at, "]");
  if (outputs) {
    at += (size_t)snprintf(s + at, size - at, ",\"outputs\":[");
    for (int i = 0; i < n; i++)
      at += (size_t)snprintf(s + at, size - at, "%s{\"name\":\"y%d\"}", i ? "," : "", i);
    at += (size_t)snprintf(s + at, size - at, "]");
  }
  snprintf(s + at, size - at, "}");
  return s;
}

START_TEST(tensor_counts_are_bounded) {
  struct tl_oip_request r;
  struct tl_error err = {{0}};
  for (int outputs = 0; outputs < 2; outputs++) {
    char *json = many_tensors(TL_OIP_TENSORS_MAX, outputs);
    parse_ok(json, &r);
    ck_assert_int_eq(outputs ? r.n_outputs : r.n_inputs, TL_OIP_TENSORS_MAX);
    ck_assert_str_eq(outputs ? r.outputs[63].name : r.inputs[63].name, outputs ? "y63" : "x63");
    tl_oip_request_free(&r);
    free(json);
    json = many_tensors(TL_OIP_TENSORS_MAX + 1, outputs);
    ck_assert_int_eq(tl_oip_parse_infer(json, strlen(json), -1, &r, &err), TL_ERANGE);
    ck_assert_str_eq(err.msg, outputs ? "the request names 65 outputs; at most 64 are "
                                        "accepted"
                                      : "the request has 65 inputs; at most 64 are "
                                        "accepted");
    free(json);
  }
}
END_TEST

/* An empty tensor's other dims may be anything: their product overflows
 * int64, yet the tensor has 0 elements, and everything that counts them
 * must say 0 (tl_shape_numel() said -1, "unknown", found by fuzz_oip). */
START_TEST(empty_tensor_with_huge_dims_has_zero_elements) {
  const char *json = "{\"inputs\": [{\"name\": \"e\", \"shape\": "
                     "[4294967296, 4294967296, 0], \"datatype\": \"INT64\", "
                     "\"data\": []}]}";
  struct tl_oip_request r;
  parse_ok(json, &r);
  ck_assert_uint_eq(r.inputs[0].nbytes, 0);
  ck_assert_ptr_null(r.inputs[0].data);
  ck_assert_int_eq(tl_shape_numel(&r.inputs[0].shape), 0);
  tl_oip_request_free(&r);
}
END_TEST

START_TEST(parse_rejects_null_arguments) {
  struct tl_oip_request r;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_oip_parse_infer(NULL, 3, -1, &r, &err), TL_EINVAL);
  ck_assert_int_eq(tl_oip_parse_infer("{}", 2, -1, NULL, &err), TL_EINVAL);
  ck_assert_int_eq(tl_oip_error_status(TL_EINVAL), 500);
  tl_oip_request_free(NULL);
}
END_TEST

/* ---------------------------------------------------------- responses */

/* Finite floats of every kind: zeros, denormals, the extremes, values with
 * no short decimal form, and bit patterns from a fixed generator. */
static size_t test_floats(float *out, size_t max) {
  static const float fixed[] = {0.0f,        -0.0f,       1.0f,     -1.0f,   0.1f,   1.0f / 3,
                                FLT_MAX,     -FLT_MAX,    FLT_MIN,  1e-45f,  3e-44f, FLT_EPSILON,
                                16777217.0f, 123456.789f, 2.5e-38f, 6.02e23f};
  size_t n = 0;
  for (; n < sizeof fixed / sizeof fixed[0]; n++)
    out[n] = fixed[n];
  uint32_t s = 12345;
  while (n < max) {
    s = s * 1664525u + 1013904223u;
    float f;
    memcpy(&f, &s, 4);
    if (isfinite(f))
      out[n++] = f;
  }
  return n;
}

START_TEST(response_json_floats_read_back_bit_exact) {
  float v[4096];
  size_t n = test_floats(v, sizeof v / sizeof v[0]);
  struct tl_oip_output o = {"logits", {2, {2, (int64_t)n / 2}}, v, 0};
  struct tl_oip_response resp = {"tiny", NULL, "req-1", "r=24 d=2,1", 1, &o};
  struct tl_oip_body body;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_oip_response_build(&resp, &body, &err) == 0, "%s", err.msg);
  ck_assert_uint_eq(body.json_len, body.len);
  ck_assert_str_eq(body.content_type, "application/json");

  json_error_t je;
  json_t *root = json_loadb(body.data, body.len, 0, &je);
  ck_assert_msg(root != NULL, "%s", je.text);
  ck_assert_str_eq(json_string_value(json_object_get(root, "model_name")), "tiny");
  ck_assert_str_eq(json_string_value(json_object_get(root, "id")), "req-1");
  ck_assert_str_eq(
      json_string_value(json_object_get(json_object_get(root, "parameters"), "subnet")),
      "r=24 d=2,1");
  json_t *out0 = json_array_get(json_object_get(root, "outputs"), 0);
  ck_assert_str_eq(json_string_value(json_object_get(out0, "name")), "logits");
  ck_assert_str_eq(json_string_value(json_object_get(out0, "datatype")), "FP32");
  json_t *shape = json_object_get(out0, "shape");
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), 2);
  ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), (int)n / 2);
  json_t *data = json_object_get(out0, "data");
  ck_assert_uint_eq(json_array_size(data), n);
  for (size_t i = 0; i < n; i++) {
    float back = (float)json_number_value(json_array_get(data, i));
    uint32_t a, b;
    memcpy(&a, &v[i], 4);
    memcpy(&b, &back, 4);
    ck_assert_msg(a == b, "element %zu: %08x came back as %08x", i, a, b);
  }
  json_decref(root);
  tl_oip_body_free(&body);
  ck_assert_ptr_null(body.data);
}
END_TEST

START_TEST(response_exact_json_text) {
  const float a[2] = {0.5f, -2.0f};
  struct tl_oip_output o = {"y", {1, {2}}, a, 0};
  struct tl_oip_response resp = {"m", "1", NULL, NULL, 1, &o};
  struct tl_oip_body body;
  ck_assert_int_eq(tl_oip_response_build(&resp, &body, NULL), 0);
  const char *want = "{\"model_name\":\"m\",\"model_version\":\"1\","
                     "\"outputs\":[{\"name\":\"y\",\"datatype\":\"FP32\","
                     "\"shape\":[2],\"data\":[0.5,-2.0]}]}";
  ck_assert_uint_eq(body.len, strlen(want));
  ck_assert(memcmp(body.data, want, body.len) == 0);
  tl_oip_body_free(&body);
}
END_TEST

START_TEST(response_binary_outputs_follow_the_json_in_order) {
  const float a[3] = {1.0f, NAN, -INFINITY}; /* binary carries anything */
  const float b[2] = {0.25f, 4.0f};
  const float c[2] = {7.0f, 8.0f};
  struct tl_oip_output outs[3] = {
      {"a", {1, {3}}, a, 1}, {"b", {2, {1, 2}}, b, 0}, {"c", {1, {2}}, c, 1}};
  struct tl_oip_response resp = {"m", NULL, "7", "r=8", 3, outs};
  struct tl_oip_body body;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_oip_response_build(&resp, &body, &err) == 0, "%s", err.msg);
  ck_assert_str_eq(body.content_type, "application/octet-stream");
  ck_assert_uint_eq(body.len, body.json_len + sizeof a + sizeof c);
  ck_assert_mem_eq(body.data + body.json_len, a, sizeof a);
  ck_assert_mem_eq(body.data + body.json_len + sizeof a, c, sizeof c);

  const char *want = "{\"model_name\":\"m\",\"id\":\"7\",\"parameters\":{\"subnet\":\"r=8\"},"
                     "\"outputs\":[{\"name\":\"a\",\"datatype\":\"FP32\",\"shape\":[3],"
                     "\"parameters\":{\"binary_data_size\":12}},"
                     "{\"name\":\"b\",\"datatype\":\"FP32\",\"shape\":[1,2],"
                     "\"data\":[0.25,4.0]},"
                     "{\"name\":\"c\",\"datatype\":\"FP32\",\"shape\":[2],"
                     "\"parameters\":{\"binary_data_size\":8}}]}";
  ck_assert_uint_eq(body.json_len, strlen(want));
  ck_assert(memcmp(body.data, want, body.json_len) == 0);
  tl_oip_body_free(&body);
}
END_TEST

START_TEST(response_refuses_non_finite_json_floats) {
  const float a[2] = {1.0f, NAN};
  struct tl_oip_output o = {"y", {1, {2}}, a, 0};
  struct tl_oip_response resp = {"m", NULL, NULL, NULL, 1, &o};
  struct tl_oip_body body = {(char *)"sentinel", 1, 1, NULL};
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_oip_response_build(&resp, &body, &err), TL_ERANGE);
  ck_assert_str_eq(err.msg, "output \"y\": element 1 is NaN, which JSON "
                            "cannot carry; ask for the output in binary");
  ck_assert_str_eq(body.data, "sentinel");
  ck_assert_int_eq(tl_oip_error_status(TL_ERANGE), 400);
}
END_TEST

START_TEST(response_rejects_bad_outputs) {
  struct tl_oip_output o = {"y", {1, {2}}, NULL, 0};
  struct tl_oip_response resp = {"m", NULL, NULL, NULL, 1, &o};
  struct tl_oip_body body;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_oip_response_build(&resp, &body, &err), TL_EINVAL);
  o.shape.dims[0] = -1;
  ck_assert_int_eq(tl_oip_response_build(&resp, &body, &err), TL_EINVAL);
  resp.model_name = NULL;
  ck_assert_int_eq(tl_oip_response_build(&resp, &body, &err), TL_EINVAL);
}
END_TEST

START_TEST(error_body_is_escaped_json_and_sanitizes_bad_utf8) {
  struct tl_oip_body body;
  ck_assert_int_eq(tl_oip_error_body("input \"x\": bad\n", &body, NULL), 0);
  const char *want = "{\"error\":\"input \\\"x\\\": bad\\n\"}";
  ck_assert_uint_eq(body.len, strlen(want));
  ck_assert(memcmp(body.data, want, body.len) == 0);
  ck_assert_str_eq(body.content_type, "application/json");
  tl_oip_body_free(&body);

  /* a lone continuation byte, a truncated sequence, an overlong form and a
   * surrogate are replaced; the valid "é" and "€" stay */
  ck_assert_int_eq(tl_oip_error_body("a\x80"
                                     "b\xc3"
                                     "c\xc0\xaf"
                                     "d\xed\xa0\x80"
                                     "e\xc3\xa9\xe2\x82\xac",
                                     &body, NULL),
                   0);
  json_t *root = json_loadb(body.data, body.len, 0, NULL);
  ck_assert_ptr_nonnull(root);
  ck_assert_str_eq(json_string_value(json_object_get(root, "error")),
                   "a?b?c??d???e\xc3\xa9\xe2\x82\xac");
  json_decref(root);
  tl_oip_body_free(&body);
}
END_TEST

START_TEST(server_metadata_exact_json) {
  const char *ext[] = {"binary_tensor_data", "schedule_policy"};
  const char *models[] = {"fmnist", "resnet18"};
  struct tl_oip_server_meta m = {"tailor", "0.1.0", ext, 2, models, 2};
  struct tl_oip_body body;
  ck_assert_int_eq(tl_oip_server_metadata(&m, &body, NULL), 0);
  const char *want = "{\"name\":\"tailor\",\"version\":\"0.1.0\","
                     "\"extensions\":[\"binary_tensor_data\","
                     "\"schedule_policy\"],\"models\":[\"fmnist\",\"resnet18\"]}";
  ck_assert_uint_eq(body.len, strlen(want));
  ck_assert(memcmp(body.data, want, body.len) == 0);
  tl_oip_body_free(&body);
  models[1] = NULL;
  ck_assert_int_eq(tl_oip_server_metadata(&m, &body, NULL), TL_EINVAL);
  m.version = NULL;
  ck_assert_int_eq(tl_oip_server_metadata(&m, &body, NULL), TL_EINVAL);
}
END_TEST

START_TEST(model_metadata_exact_json) {
  const char *versions[] = {"1"};
  struct tl_oip_tensor_meta in = {"input", TL_DTYPE_FLOAT32, {4, {-1, 1, 28, 28}}};
  struct tl_oip_tensor_meta out = {"logits", TL_DTYPE_FLOAT32, {2, {-1, 10}}};
  struct tl_oip_model_meta m = {"fmnist", versions, 1, NULL, &in, 1, &out, 1};
  struct tl_oip_body body;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_oip_model_metadata(&m, &body, &err) == 0, "%s", err.msg);
  const char *want = "{\"name\":\"fmnist\",\"versions\":[\"1\"],\"platform\":"
                     "\"tailor_supernet\",\"inputs\":[{\"name\":\"input\",\"datatype\":"
                     "\"FP32\",\"shape\":[-1,1,28,28]}],\"outputs\":[{\"name\":\"logits\","
                     "\"datatype\":\"FP32\",\"shape\":[-1,10]}]}";
  ck_assert_uint_eq(body.len, strlen(want));
  ck_assert(memcmp(body.data, want, body.len) == 0);
  tl_oip_body_free(&body);

  in.dtype = TL_DTYPE_FLOAT16;
  ck_assert_int_eq(tl_oip_model_metadata(&m, &body, &err), TL_EINVAL);
  ck_assert_str_eq(err.msg, "input \"input\" is float16, which is not served");
}
END_TEST

START_TEST(dtype_names_follow_the_protocol) {
  ck_assert_str_eq(tl_oip_dtype_name(TL_DTYPE_FLOAT32), "FP32");
  ck_assert_str_eq(tl_oip_dtype_name(TL_DTYPE_UINT8), "UINT8");
  ck_assert_str_eq(tl_oip_dtype_name(TL_DTYPE_INT32), "INT32");
  ck_assert_str_eq(tl_oip_dtype_name(TL_DTYPE_INT64), "INT64");
  ck_assert_ptr_null(tl_oip_dtype_name(TL_DTYPE_FLOAT64));
}
END_TEST

/* -------------------------------------------------------------- routes */

static const struct {
  const char *method, *path;
  int rc;
  enum tl_oip_route route;
  const char *model;
  const char *allow;
} route_cases[] = {
    {"GET", "/v2", 0, TL_OIP_ROUTE_SERVER_METADATA, "", ""},
    {"HEAD", "/v2", 0, TL_OIP_ROUTE_SERVER_METADATA, "", ""},
    {"GET", "/v2/health/live", 0, TL_OIP_ROUTE_HEALTH_LIVE, "", ""},
    {"GET", "/v2/health/ready", 0, TL_OIP_ROUTE_HEALTH_READY, "", ""},
    {"GET", "/v2/models/fmnist", 0, TL_OIP_ROUTE_MODEL_METADATA, "fmnist", ""},
    {"GET", "/v2/models/fmnist/ready", 0, TL_OIP_ROUTE_MODEL_READY, "fmnist", ""},
    {"POST", "/v2/models/res.net-50_v1/infer", 0, TL_OIP_ROUTE_MODEL_INFER, "res.net-50_v1", ""},
    {"GET", "/metrics", 0, TL_OIP_ROUTE_METRICS, "", ""},
    {"GET", "/v2/models/m/subnets", 0, TL_OIP_ROUTE_MODEL_SUBNETS, "m", ""},
    {"GET", "/v2/models/m/state", 0, TL_OIP_ROUTE_MODEL_STATE, "m", ""},
    {"POST", "/v2/models/m/pin", 0, TL_OIP_ROUTE_MODEL_PIN, "m", ""},
    {"GET", "/v2/models/m/events", 0, TL_OIP_ROUTE_MODEL_EVENTS, "m", ""},
    /* a model may be called "ready": the segment count decides */
    {"GET", "/v2/models/ready", 0, TL_OIP_ROUTE_MODEL_METADATA, "ready", ""},
    {"GET", "/v2/models/m/infer", TL_EUNSUPPORTED, 0, "", "POST"},
    {"POST", "/v2/health/live", TL_EUNSUPPORTED, 0, "", "GET, HEAD"},
    {"DELETE", "/v2/models/m", TL_EUNSUPPORTED, 0, "", "GET, HEAD"},
    {"PUT", "/v2/models/m/pin", TL_EUNSUPPORTED, 0, "", "POST"},
    {"GET", "/", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/models", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/models/", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/models//ready", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/models/m/ready/", TL_ENOENT, 0, "", ""},
    {"POST", "/v2/models/m/infer/x", TL_ENOENT, 0, "", ""},
    {"GET", "/v2/health", TL_ENOENT, 0, "", ""},
    {"GET", "/V2", TL_ENOENT, 0, "", ""},
    {"GET", "/metricsx", TL_ENOENT, 0, "", ""},
};

START_TEST(routes_match_the_table) {
  struct tl_oip_route_match m;
  struct tl_error err = {{0}};
  int rc = tl_oip_route_match(route_cases[_i].method, route_cases[_i].path, &m, &err);
  ck_assert_msg(rc == route_cases[_i].rc, "%s %s: %d (%s)", route_cases[_i].method,
                route_cases[_i].path, rc, err.msg);
  if (rc == 0) {
    ck_assert_int_eq(m.route, route_cases[_i].route);
    ck_assert_str_eq(m.model, route_cases[_i].model);
  } else if (rc == TL_EUNSUPPORTED) {
    ck_assert_str_eq(m.allow, route_cases[_i].allow);
    ck_assert_int_eq(tl_oip_error_status(rc), 405);
  } else {
    ck_assert_int_eq(tl_oip_error_status(rc), 404);
  }
}
END_TEST

START_TEST(route_errors_say_why) {
  struct tl_oip_route_match m;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_oip_route_match("GET", "/v2/nope", &m, &err), TL_ENOENT);
  ck_assert_str_eq(err.msg, "no such endpoint: /v2/nope");
  ck_assert_int_eq(tl_oip_route_match("GET", "/v2/models/m/infer", &m, &err), TL_EUNSUPPORTED);
  ck_assert_str_eq(err.msg, "GET is not allowed on /v2/models/m/infer; use POST");

  char path[400] = "/v2/models/";
  memset(path + 11, 'n', 255);
  ck_assert_int_eq(tl_oip_route_match("GET", path, &m, &err), 0);
  ck_assert_uint_eq(strlen(m.model), 255);
  strcat(path, "n/ready");
  ck_assert_int_eq(tl_oip_route_match("GET", path, &m, &err), TL_ENOENT);
  ck_assert(strstr(err.msg, "is longer than 255 bytes") != NULL);
  ck_assert_int_eq(tl_oip_route_match(NULL, "/v2", &m, &err), TL_EINVAL);
}
END_TEST

START_TEST(route_names_cover_the_table) {
  ck_assert_str_eq(tl_oip_route_name(TL_OIP_ROUTE_MODEL_INFER), "model_infer");
  ck_assert_str_eq(tl_oip_route_name(TL_OIP_ROUTE_METRICS), "metrics");
  for (int r = 0; r < TL_OIP_ROUTE_COUNT; r++)
    ck_assert_str_ne(tl_oip_route_name((enum tl_oip_route)r), "unknown");
  ck_assert_str_eq(tl_oip_route_name(TL_OIP_ROUTE_COUNT), "unknown");
}
END_TEST

/* -------------------------------------------------------------- suite */

static Suite *oip_suite(void) {
  Suite *s = suite_create("oip");
  TCase *tc = tcase_create("corpus");
  tcase_add_test(tc, corpus_good_requests_parse_to_expected_tensors);
  tcase_add_test(tc, corpus_bad_requests_fail_with_expected_status_and_sentence);
  suite_add_tcase(s, tc);

  tc = tcase_create("requests");
  tcase_add_test(tc, flat_and_nested_data_give_the_same_tensor);
  tcase_add_test(tc, binary_tensors_point_into_the_body_when_aligned);
  tcase_add_test(tc, binary_inputs_are_taken_in_input_order);
  tcase_add_test(tc, binary_sizes_must_add_up_exactly);
  tcase_add_test(tc, schedule_parameters_and_subnet_are_read);
  tcase_add_test(tc, output_binary_follows_request_and_output_flags);
  tcase_add_test(tc, tensor_counts_are_bounded);
  tcase_add_test(tc, empty_tensor_with_huge_dims_has_zero_elements);
  tcase_add_test(tc, parse_rejects_null_arguments);
  suite_add_tcase(s, tc);

  tc = tcase_create("responses");
  tcase_add_test(tc, response_json_floats_read_back_bit_exact);
  tcase_add_test(tc, response_exact_json_text);
  tcase_add_test(tc, response_binary_outputs_follow_the_json_in_order);
  tcase_add_test(tc, response_refuses_non_finite_json_floats);
  tcase_add_test(tc, response_rejects_bad_outputs);
  tcase_add_test(tc, error_body_is_escaped_json_and_sanitizes_bad_utf8);
  tcase_add_test(tc, server_metadata_exact_json);
  tcase_add_test(tc, model_metadata_exact_json);
  tcase_add_test(tc, dtype_names_follow_the_protocol);
  suite_add_tcase(s, tc);

  tc = tcase_create("routes");
  tcase_add_loop_test(tc, routes_match_the_table, 0,
                      (int)(sizeof route_cases / sizeof route_cases[0]));
  tcase_add_test(tc, route_errors_say_why);
  tcase_add_test(tc, route_names_cover_the_table);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  int failures = tu_run(oip_suite());
  return failures ? 1 : 0;
}
