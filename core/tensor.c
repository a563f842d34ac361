/*
 * tensor.c - dtype tables and shape helpers.
 */
#include "tensor.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[] = {
    [TL_DTYPE_UNDEFINED] = {"undefined", 0}, [TL_DTYPE_FLOAT32] = {"float32", 4},
    [TL_DTYPE_UINT8] = {"uint8", 1},         [TL_DTYPE_INT8] = {"int8", 1},
    [TL_DTYPE_INT32] = {"int32", 4},         [TL_DTYPE_INT64] = {"int64", 8},
    [TL_DTYPE_BOOL] = {"bool", 1},           [TL_DTYPE_FLOAT16] = {"float16", 2},
    [TL_DTYPE_FLOAT64] = {"float64", 8},     [TL_DTYPE_OTHER] = {"other", 0},
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == TL_DTYPE_COUNT,
               "dtype_info must name every dtype");

const char *tl_dtype_name(enum tl_dtype dtype) {
  if ((unsigned)dtype >= TL_DTYPE_COUNT)
    return "invalid";
  return dtype_info[dtype].name;
}

size_t tl_dtype_size(enum tl_dtype dtype) {
  if ((unsigned)dtype >= TL_DTYPE_COUNT)
    return 0;
  return dtype_info[dtype].size;
}

int64_t tl_shape_numel(const struct tl_shape *shape) {
  /* A zero dimension anywhere makes the count 0, even when the product of
   * the dims before it would overflow (a request may send [2^32, 2^32, 0],
   * which oip_request.c accepts as empty); so zeros are looked for first. */
  int zero = 0;
  for (int i = 0; i < shape->ndim; i++) {
    if (shape->dims[i] < 0)
      return -1;
    zero |= shape->dims[i] == 0;
  }
  if (zero)
    return 0;
  int64_t n = 1;
  for (int i = 0; i < shape->ndim; i++) {
    int64_t d = shape->dims[i];
    if (n > INT64_MAX / d)
      return -1;
    n *= d;
  }
  return n;
}

int64_t tl_shape_prod(const struct tl_shape *shape, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++)
    n *= shape->dims[i];
  return n;
}

int tl_shape_equal(const struct tl_shape *a, const struct tl_shape *b) {
  if (a->ndim != b->ndim)
    return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->dims[i] != b->dims[i])
      return 0;
  return 1;
}

char *tl_shape_str(const struct tl_shape *shape, char *buf, size_t size) {
  assert(size > 0);
  buf[0] = '\0';
  if (shape->ndim == 0) {
    snprintf(buf, size, "scalar");
    return buf;
  }
  size_t used = 0;
  for (int i = 0; i < shape->ndim && used < size; i++) {
    int n;
    if (shape->dims[i] < 0)
      n = snprintf(buf + used, size - used, "%s?", i ? "x" : "");
    else
      n = snprintf(buf + used, size - used, "%s%lld", i ? "x" : "", (long long)shape->dims[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
  return buf;
}

struct tl_shape tl_shape_make(int n, const int64_t *dims) {
  struct tl_shape s;
  memset(&s, 0, sizeof s);
  assert(n >= 0 && n <= TL_MAX_DIMS);
  s.ndim = n;
  for (int i = 0; i < n; i++)
    s.dims[i] = dims[i];
  return s;
}
