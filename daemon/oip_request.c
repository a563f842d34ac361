/*
 * oip_request.c - inference requests in: the JSON body and the binary
 * tensor extension that may follow it.
 *
 * A request is read in two passes over the same jansson tree.  The first
 * checks everything - structure, names, datatypes, shapes, every element's
 * type and range, the binary sizes - and adds up the bytes the parsed
 * request needs; then one allocation is made and the second pass fills it.
 * The second pass takes the same decisions on the same input and cannot
 * fail, so a request either comes out whole or not at all, and nothing is
 * allocated for a request that is refused.
 */
#include "oip_internal.h"

#include <assert.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every tensor in a parsed request's allocation starts on this boundary,
 * enough for any dtype served. */
#define DATA_ALIGN 8

/* "[2,3]" into buf. */
static const char *shape_text(const struct tl_shape *s, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < s->ndim && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? "," : "", (long long)s->dims[i]);
  if (n < size)
    snprintf(buf + n, size - n, "]");
  return buf;
}
#define SHAPE_TEXT_MAX (TL_MAX_DIMS * 21 + 3)

/* ---------------------------------------------------- request: inputs */

/* What one input of the request says. */
struct input_info {
  const char *name;
  enum tl_dtype dtype;
  struct tl_shape shape;
  size_t nbytes;
  json_t *data; /* the "data" array, NULL for a binary input */
};

/* Reads inputs[i] (in) into *info: everything but the data elements. */
static int input_read(json_t *in, size_t i, int64_t json_len, struct input_info *info,
                      struct tl_error *err) {
  char sh[SHAPE_TEXT_MAX];
  memset(info, 0, sizeof *info);
  if (!json_is_object(in))
    return tl_fail(err, TL_EFORMAT, "inputs[%zu] is not an object", i);
  json_t *name = json_object_get(in, "name");
  if (!json_is_string(name) || json_string_length(name) == 0)
    return tl_fail(err, TL_EFORMAT, "inputs[%zu] has no \"name\" string", i);
  const char *nm = info->name = json_string_value(name);

  json_t *dt = json_object_get(in, "datatype");
  if (!json_is_string(dt))
    return tl_fail(err, TL_EFORMAT, "input \"%s\" has no \"datatype\" string", nm);
  info->dtype = tl__oip_dtype_from_name(json_string_value(dt));
  if (info->dtype == TL_DTYPE_UNDEFINED)
    return tl_fail(err, TL_EDTYPE,
                   "input \"%s\": datatype \"%s\" is not supported; use " SUPPORTED_DTYPES, nm,
                   json_string_value(dt));

  json_t *shape = json_object_get(in, "shape");
  if (!json_is_array(shape))
    return tl_fail(err, TL_EFORMAT, "input \"%s\" has no \"shape\" array", nm);
  size_t ndim = json_array_size(shape);
  if (ndim > TL_MAX_DIMS)
    return tl_fail(err, TL_ESHAPE,
                   "input \"%s\": shape has %zu dimensions; at most %d are "
                   "supported",
                   nm, ndim, TL_MAX_DIMS);
  info->shape.ndim = (int)ndim;
  for (size_t d = 0; d < ndim; d++) {
    json_t *v = json_array_get(shape, d);
    if (!json_is_integer(v))
      return tl_fail(err, TL_EFORMAT, "input \"%s\": \"shape\" must be an array of integers", nm);
    json_int_t dim = json_integer_value(v);
    if (dim < 0)
      return tl_fail(err, TL_ESHAPE,
                     "input \"%s\": shape dimension %zu is %lld; dimensions "
                     "must be >= 0",
                     nm, d, (long long)dim);
    info->shape.dims[d] = dim;
  }
  /* A zero dimension makes the count 0, whatever the partial products of
   * the others did. */
  int64_t numel = 1;
  int overflow = 0, zero = 0;
  for (int d = 0; d < info->shape.ndim; d++) {
    zero |= info->shape.dims[d] == 0;
    overflow |= __builtin_mul_overflow(numel, info->shape.dims[d], &numel);
  }
  if (zero) {
    numel = 0;
    overflow = 0;
  }
  size_t nbytes = 0;
  if (overflow || __builtin_mul_overflow((uint64_t)numel, tl_dtype_size(info->dtype), &nbytes))
    return tl_fail(err, TL_ERANGE, "input \"%s\": shape %s is too large to address", nm,
                   shape_text(&info->shape, sh, sizeof sh));
  info->nbytes = nbytes;

  json_t *params = json_object_get(in, "parameters");
  if (params != NULL && !json_is_object(params))
    return tl_fail(err, TL_EFORMAT, "input \"%s\": \"parameters\" must be an object", nm);
  json_t *bsize = params ? json_object_get(params, "binary_data_size") : NULL;
  json_t *data = json_object_get(in, "data");
  if (bsize != NULL) {
    if (!json_is_integer(bsize) || json_integer_value(bsize) < 0)
      return tl_fail(err, TL_EFORMAT,
                     "input \"%s\": parameters.binary_data_size must be a "
                     "non-negative integer",
                     nm);
    if (data != NULL)
      return tl_fail(err, TL_EFORMAT,
                     "input \"%s\" has both \"data\" and "
                     "parameters.binary_data_size; send one of them",
                     nm);
    if (json_len < 0)
      return tl_fail(err, TL_EFORMAT,
                     "input \"%s\" has parameters.binary_data_size but the "
                     "request has no Inference-Header-Content-Length header",
                     nm);
    if ((uint64_t)json_integer_value(bsize) != nbytes)
      return tl_fail(err, TL_ESHAPE,
                     "input \"%s\": binary_data_size is %lld bytes but shape "
                     "%s of %s takes %zu",
                     nm, (long long)json_integer_value(bsize),
                     shape_text(&info->shape, sh, sizeof sh), json_string_value(dt), nbytes);
    return 0;
  }
  if (data == NULL)
    return tl_fail(err, TL_EFORMAT,
                   "input \"%s\" has no \"data\" and no "
                   "parameters.binary_data_size",
                   nm);
  if (!json_is_array(data))
    return tl_fail(err, TL_EFORMAT, "input \"%s\": \"data\" must be an array", nm);
  info->data = data;
  return 0;
}

/* Walks an input's "data" elements in row-major order, checking each
 * and, when dst is set, storing it converted to dtype. */
struct walk {
  const char *name;
  enum tl_dtype dtype;
  void *dst;     /* NULL: only check and count */
  int64_t count; /* elements seen so far */
};

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  default: return "a number";
  }
}

/* Converts the element v, the w->count'th. */
static int element_read(struct walk *w, const json_t *v, struct tl_error *err) {
  const char *nm = w->name;
  long long idx = (long long)w->count;
  if (!json_is_number(v))
    return tl_fail(err, TL_EDTYPE, "input \"%s\": element %lld is %s, not a number", nm, idx,
                   json_kind(v));
  if (w->dtype == TL_DTYPE_FLOAT32) {
    double d = json_number_value(v);
    /* Past FLT_MAX by half an ulp or more rounds to infinity; between,
     * it rounds to FLT_MAX (done by hand: the cast is undefined there). */
    if (fabs(d) >= 0x1.ffffffp+127)
      return tl_fail(err, TL_ERANGE,
                     "input \"%s\": element %lld (%g) is out of range for "
                     "FP32",
                     nm, idx, d);
    if (w->dst != NULL) {
      float f = d > FLT_MAX ? FLT_MAX : d < -FLT_MAX ? -FLT_MAX : (float)d;
      ((float *)w->dst)[w->count] = f;
    }
    return 0;
  }
  if (!json_is_integer(v))
    return tl_fail(err, TL_EDTYPE, "input \"%s\": element %lld (%.17g) is not an integer", nm, idx,
                   json_real_value(v));
  json_int_t x = json_integer_value(v);
  switch (w->dtype) {
  case TL_DTYPE_UINT8:
    if (x < 0 || x > UINT8_MAX)
      return tl_fail(err, TL_ERANGE,
                     "input \"%s\": element %lld (%lld) is out of range for "
                     "UINT8",
                     nm, idx, (long long)x);
    if (w->dst != NULL)
      ((uint8_t *)w->dst)[w->count] = (uint8_t)x;
    return 0;
  case TL_DTYPE_INT32:
    if (x < INT32_MIN || x > INT32_MAX)
      return tl_fail(err, TL_ERANGE,
                     "input \"%s\": element %lld (%lld) is out of range for "
                     "INT32",
                     nm, idx, (long long)x);
    if (w->dst != NULL)
      ((int32_t *)w->dst)[w->count] = (int32_t)x;
    return 0;
  case TL_DTYPE_INT64:
    if (w->dst != NULL)
      ((int64_t *)w->dst)[w->count] = (int64_t)x;
    return 0;
  default:
    return tl_fail(err, TL_EINTERNAL, "input \"%s\": no reader for %s", nm,
                   tl_dtype_name(w->dtype));
  }
}

/* Walks array a; depth_left is how many more levels of nesting the shape
 * allows (a flat array of a 1-D or 0-D tensor has 1). */
static int data_walk(struct walk *w, const json_t *a, int depth_left, int64_t numel,
                     struct tl_error *err) {
  size_t i;
  json_t *v;
  json_array_foreach(a, i, v) {
    int rc;
    if (json_is_array(v)) {
      if (depth_left <= 1)
        return tl_fail(err, TL_ESHAPE,
                       "input \"%s\": \"data\" is nested deeper than its "
                       "shape has dimensions",
                       w->name);
      rc = data_walk(w, v, depth_left - 1, numel, err);
    } else {
      /* When writing, the count was checked by the first pass. */
      assert(w->dst == NULL || w->count < numel);
      rc = element_read(w, v, err);
      w->count++;
    }
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ------------------------------------------------- request: the passes */

/* The two passes share this: the first fills in the sizes, the second
 * (with r set) hands out room from mem. */
struct build {
  size_t n_inputs;
  size_t n_outputs;
  size_t data_bytes;        /* tensors, each rounded up to DATA_ALIGN */
  size_t string_bytes;      /* names, id and subnet with their NULs */
  struct tl_oip_request *r; /* NULL in the first pass */
  char *data_at;
  char *string_at;
};

static size_t align_up(size_t n) { return (n + DATA_ALIGN - 1) / DATA_ALIGN * DATA_ALIGN; }

/* Room for n bytes of tensor data: counted, or taken. */
static void *data_room(struct build *b, size_t n) {
  size_t a = align_up(n);
  if (b->r == NULL) {
    b->data_bytes += a;
    return NULL;
  }
  void *p = b->data_at;
  b->data_at += a;
  return n > 0 ? p : NULL;
}

/* A copy of s: counted, or made. */
static const char *string_room(struct build *b, const char *s) {
  size_t n = strlen(s) + 1;
  if (b->r == NULL) {
    b->string_bytes += n;
    return NULL;
  }
  char *p = b->string_at;
  memcpy(p, s, n);
  b->string_at += n;
  return p;
}

/* Reads a parameter that must be a non-negative integer. */
static int param_count(json_t *params, const char *key, const char *unit, int64_t *out,
                       struct tl_error *err) {
  json_t *v = json_object_get(params, key);
  if (v == NULL)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return tl_fail(err, TL_EFORMAT, "parameters.%s must be a non-negative integer%s", key, unit);
  *out = json_integer_value(v);
  return 0;
}

static int request_params(json_t *root, struct build *b, struct tl_error *err) {
  struct tl_oip_request *r = b->r;
  json_t *id = json_object_get(root, "id");
  if (id != NULL && !json_is_string(id))
    return tl_fail(err, TL_EFORMAT, "\"id\" must be a string");
  if (id != NULL) {
    const char *s = string_room(b, json_string_value(id));
    if (r != NULL)
      r->id = s;
  }
  json_t *params = json_object_get(root, "parameters");
  if (params == NULL)
    return 0;
  if (!json_is_object(params))
    return tl_fail(err, TL_EFORMAT, "\"parameters\" must be an object");
  int64_t timeout_us = 0, priority = 0;
  int rc = param_count(params, "timeout", " (microseconds)", &timeout_us, err);
  if (rc == 0)
    rc = param_count(params, "priority", "", &priority, err);
  if (rc != 0)
    return rc;
  json_t *subnet = json_object_get(params, "subnet");
  if (subnet != NULL && !json_is_string(subnet))
    return tl_fail(err, TL_EFORMAT, "parameters.subnet must be a string, a subnet spec");
  json_t *bin = json_object_get(params, "binary_data_output");
  if (bin != NULL && !json_is_boolean(bin))
    return tl_fail(err, TL_EFORMAT, "parameters.binary_data_output must be true or false");
  const char *s = subnet ? string_room(b, json_string_value(subnet)) : NULL;
  if (r != NULL) {
    r->timeout_us = timeout_us;
    r->priority = priority;
    r->subnet = s;
    r->binary_output = bin != NULL && json_is_true(bin);
  }
  return 0;
}

static int request_inputs(json_t *root, const char *body, size_t len, size_t jlen, int64_t json_len,
                          struct build *b, struct tl_error *err) {
  json_t *inputs = json_object_get(root, "inputs");
  if (!json_is_array(inputs))
    return tl_fail(err, TL_EFORMAT, "the request has no \"inputs\" array");
  size_t n = json_array_size(inputs);
  if (n == 0)
    return tl_fail(err, TL_EFORMAT, "the request's \"inputs\" array is empty");
  if (n > TL_OIP_TENSORS_MAX)
    return tl_fail(err, TL_ERANGE, "the request has %zu inputs; at most %d are accepted", n,
                   TL_OIP_TENSORS_MAX);
  b->n_inputs = n;

  size_t bin_at = jlen; /* the next binary input's first byte */
  for (size_t i = 0; i < n; i++) {
    struct input_info info;
    int rc = input_read(json_array_get(inputs, i), i, json_len, &info, err);
    if (rc != 0)
      return rc;
    for (size_t j = 0; j < i; j++) {
      json_t *o = json_object_get(json_array_get(inputs, j), "name");
      if (strcmp(json_string_value(o), info.name) == 0)
        return tl_fail(err, TL_EFORMAT, "input \"%s\" is given twice", info.name);
    }

    const void *data;
    if (info.data == NULL) {
      if (info.nbytes > len - bin_at)
        return tl_fail(err, TL_EFORMAT,
                       "input \"%s\" needs %zu bytes of binary data but only "
                       "%zu are left after the JSON and the inputs before it",
                       info.name, info.nbytes, len - bin_at);
      const char *at = body + bin_at;
      bin_at += info.nbytes;
      /* In place when aligned for its type; copied otherwise, since a
       * misaligned float is no float to the compiler. */
      if ((uintptr_t)at % tl_dtype_size(info.dtype) == 0) {
        data = info.nbytes > 0 ? at : NULL;
      } else {
        void *copy = data_room(b, info.nbytes);
        if (copy != NULL)
          memcpy(copy, at, info.nbytes);
        data = copy;
      }
    } else {
      int64_t numel = (int64_t)(info.nbytes / tl_dtype_size(info.dtype));
      struct walk w = {info.name, info.dtype, data_room(b, info.nbytes), 0};
      int depth = info.shape.ndim > 0 ? info.shape.ndim : 1;
      rc = data_walk(&w, info.data, depth, numel, err);
      if (rc != 0)
        return rc;
      if (w.count != numel) {
        char sh[SHAPE_TEXT_MAX];
        return tl_fail(err, TL_ESHAPE,
                       "input \"%s\": shape %s needs %lld elements but "
                       "\"data\" has %lld",
                       info.name, shape_text(&info.shape, sh, sizeof sh), (long long)numel,
                       (long long)w.count);
      }
      data = w.dst;
    }

    const char *name = string_room(b, info.name);
    if (b->r != NULL) {
      struct tl_oip_input *in = &b->r->inputs[i];
      in->name = name;
      in->dtype = info.dtype;
      in->shape = info.shape;
      in->data = data;
      in->nbytes = info.nbytes;
      in->binary = info.data == NULL;
    }
  }
  if (bin_at != len)
    return tl_fail(err, TL_EFORMAT,
                   "%zu bytes after the JSON are not claimed by any input's "
                   "binary_data_size",
                   len - bin_at);
  return 0;
}

static int request_outputs(json_t *root, struct build *b, struct tl_error *err) {
  json_t *outputs = json_object_get(root, "outputs");
  if (outputs == NULL)
    return 0;
  if (!json_is_array(outputs))
    return tl_fail(err, TL_EFORMAT, "\"outputs\" must be an array");
  size_t n = json_array_size(outputs);
  if (n > TL_OIP_TENSORS_MAX)
    return tl_fail(err, TL_ERANGE, "the request names %zu outputs; at most %d are accepted", n,
                   TL_OIP_TENSORS_MAX);
  b->n_outputs = n;
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(outputs, i);
    json_t *name = json_object_get(o, "name");
    if (!json_is_object(o) || !json_is_string(name) || json_string_length(name) == 0)
      return tl_fail(err, TL_EFORMAT, "outputs[%zu] has no \"name\" string", i);
    const char *nm = json_string_value(name);
    for (size_t j = 0; j < i; j++)
      if (strcmp(json_string_value(json_object_get(json_array_get(outputs, j), "name")), nm) == 0)
        return tl_fail(err, TL_EFORMAT, "output \"%s\" is asked for twice", nm);
    json_t *params = json_object_get(o, "parameters");
    if (params != NULL && !json_is_object(params))
      return tl_fail(err, TL_EFORMAT, "output \"%s\": \"parameters\" must be an object", nm);
    json_t *bin = params ? json_object_get(params, "binary_data") : NULL;
    if (bin != NULL && !json_is_boolean(bin))
      return tl_fail(err, TL_EFORMAT,
                     "output \"%s\": parameters.binary_data must be true or "
                     "false",
                     nm);
    const char *s = string_room(b, nm);
    if (b->r != NULL) {
      b->r->outputs[i].name = s;
      b->r->outputs[i].binary = bin != NULL && json_is_true(bin);
    }
  }
  return 0;
}

/* One pass over the request: checks and counts (b->r NULL) or fills. */
static int request_pass(json_t *root, const char *body, size_t len, size_t jlen, int64_t json_len,
                        struct build *b, struct tl_error *err) {
  int rc = request_params(root, b, err);
  if (rc == 0)
    rc = request_inputs(root, body, len, jlen, json_len, b, err);
  if (rc == 0)
    rc = request_outputs(root, b, err);
  return rc;
}

int tl_oip_parse_infer(const char *body, size_t len, int64_t json_len, struct tl_oip_request *out,
                       struct tl_error *err) {
  json_t *root = NULL;
  char *mem = NULL;
  int rc;
  if (out == NULL || (body == NULL && len > 0))
    return tl_fail(err, TL_EINVAL, "tl_oip_parse_infer: NULL argument");

  size_t jlen = len;
  if (json_len >= 0) {
    if ((uint64_t)json_len > len)
      return tl_fail(err, TL_EFORMAT,
                     "Inference-Header-Content-Length is %lld but the body "
                     "is only %zu bytes",
                     (long long)json_len, len);
    jlen = (size_t)json_len;
  }
  if (jlen == 0)
    return tl_fail(err, TL_EFORMAT,
                   "the request body is empty; an inference request is a "
                   "JSON object");
  json_error_t je;
  root = json_loadb(body, jlen, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    if (json_error_code(&je) == json_error_out_of_memory)
      return tl_fail(err, TL_ENOMEM, "out of memory reading the request");
    return tl_fail(err, TL_EFORMAT,
                   "the request body is not valid JSON: %s (line %d, column "
                   "%d)",
                   je.text, je.line, je.column);
  }
  if (!json_is_object(root)) {
    rc =
        tl_fail(err, TL_EFORMAT, "the request body is JSON but %s, not an object", json_kind(root));
    goto fail;
  }

  struct build b = {0};
  rc = request_pass(root, body, len, jlen, json_len, &b, err);
  if (rc != 0)
    goto fail;

  /* inputs, outputs, tensors (each aligned), strings */
  size_t in_bytes = align_up(b.n_inputs * sizeof(struct tl_oip_input));
  size_t out_bytes = align_up(b.n_outputs * sizeof(struct tl_oip_requested_output));
  size_t total = in_bytes + out_bytes + b.data_bytes + b.string_bytes;
  mem = malloc(total);
  if (mem == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "out of memory for a %zu-byte request", total);
    goto fail;
  }
  struct tl_oip_request r = {0};
  r.mem = mem;
  r.inputs = (struct tl_oip_input *)mem;
  r.n_inputs = (int)b.n_inputs;
  r.outputs = b.n_outputs > 0 ? (struct tl_oip_requested_output *)(mem + in_bytes) : NULL;
  r.n_outputs = (int)b.n_outputs;
  memset(mem, 0, in_bytes + out_bytes);
  struct build fill = {.r = &r,
                       .data_at = mem + in_bytes + out_bytes,
                       .string_at = mem + in_bytes + out_bytes + b.data_bytes};
  rc = request_pass(root, body, len, jlen, json_len, &fill, err);
  /* the same input, the same decisions: cannot fail now */
  assert(rc == 0);
  assert(fill.string_at == mem + total);
  if (rc != 0)
    goto fail;
  json_decref(root);
  *out = r;
  return 0;

fail:
  free(mem);
  json_decref(root);
  return rc;
}

void tl_oip_request_free(struct tl_oip_request *r) {
  if (r == NULL)
    return;
  free(r->mem);
  memset(r, 0, sizeof *r);
}

int tl_oip_output_binary(const struct tl_oip_request *r, const char *name) {
  if (r == NULL || name == NULL)
    return 0;
  if (r->binary_output)
    return 1;
  for (int i = 0; i < r->n_outputs; i++)
    if (strcmp(r->outputs[i].name, name) == 0)
      return r->outputs[i].binary;
  return 0;
}
