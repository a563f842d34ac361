/*
 * tensor.h - data types, shapes and the plain tensor descriptor.
 *
 * A struct tl_tensor never owns its data: whoever filled in the pointer
 * (a graph for its constants, a plan for its arena, a caller for its input)
 * frees it.  Shapes are row-major (C order), at most TL_MAX_DIMS dims; a
 * dimension < 0 is unknown (a symbolic dimension in a model).
 */
#ifndef TL_TENSOR_H
#define TL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum tl_dtype {
  TL_DTYPE_UNDEFINED = 0,
  TL_DTYPE_FLOAT32,
  TL_DTYPE_UINT8,
  TL_DTYPE_INT8,
  TL_DTYPE_INT32,
  TL_DTYPE_INT64,
  TL_DTYPE_BOOL,
  TL_DTYPE_FLOAT16,
  TL_DTYPE_FLOAT64,
  TL_DTYPE_OTHER, /* anything else a model may declare (strings, ...) */
  TL_DTYPE_COUNT
};

#define TL_MAX_DIMS 8

struct tl_shape {
  int ndim;
  int64_t dims[TL_MAX_DIMS];
};

struct tl_tensor {
  enum tl_dtype dtype;
  struct tl_shape shape;
  void *data; /* borrowed; see the file comment */
};

/* "float32", "uint8", ...; never NULL. */
const char *tl_dtype_name(enum tl_dtype dtype);

/* Bytes per element, 0 for TL_DTYPE_UNDEFINED and TL_DTYPE_OTHER. */
size_t tl_dtype_size(enum tl_dtype dtype);

/* Number of elements, or -1 if a dimension is unknown or the count would
 * overflow int64_t.  A 0-dim shape (a scalar) has one element. */
int64_t tl_shape_numel(const struct tl_shape *shape);

/* 1 if both shapes have the same rank and dims, else 0. */
int tl_shape_equal(const struct tl_shape *a, const struct tl_shape *b);

/* Writes "1x3x224x224" ("scalar" for rank 0, "?" for unknown dims) into
 * buf and returns buf.  Truncates to size; size must be > 0. */
char *tl_shape_str(const struct tl_shape *shape, char *buf, size_t size);

/* Builds a shape from n dims (n <= TL_MAX_DIMS). */
struct tl_shape tl_shape_make(int n, const int64_t *dims);

/* Product of dims [from, to). */
int64_t tl_shape_prod(const struct tl_shape *shape, int from, int to);

#endif
