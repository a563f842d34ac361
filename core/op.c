/*
 * op.c - the op table and what every op's prepare function uses.
 *
 * The table maps each op of TL_OP_MAP to its ONNX name and its prepare
 * function (op_*.c); the helpers read attributes and constant inputs and
 * report errors with the node's place.  Nothing here knows a plan: a
 * prepare function gets all it needs (the plan's memory, mem.c, and its
 * thread count) in its struct tl_prep.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---------------------------------------------------------- op table */
static const char *const op_names[] = {
#define TL__OP_NAME(e, name) name,
    TL_OP_MAP(TL__OP_NAME)
#undef TL__OP_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == TL_OP_COUNT, "every op needs a name");

static const tl_prepare_fn op_prepare[TL_OP_COUNT] = {
    [TL_OP_CONV] = tl__prepare_conv,
    [TL_OP_BATCHNORM] = tl__prepare_batchnorm,
    [TL_OP_RELU] = tl__prepare_unary,
    [TL_OP_CLIP] = tl__prepare_unary,
    [TL_OP_HARDSWISH] = tl__prepare_unary,
    [TL_OP_HARDSIGMOID] = tl__prepare_unary,
    [TL_OP_SIGMOID] = tl__prepare_unary,
    [TL_OP_ADD] = tl__prepare_binary,
    [TL_OP_SUB] = tl__prepare_binary,
    [TL_OP_MUL] = tl__prepare_binary,
    [TL_OP_DIV] = tl__prepare_binary,
    [TL_OP_MAXPOOL] = tl__prepare_pool,
    [TL_OP_AVGPOOL] = tl__prepare_pool,
    [TL_OP_GLOBALAVGPOOL] = tl__prepare_global_avgpool,
    [TL_OP_FLATTEN] = tl__prepare_reshape,
    [TL_OP_RESHAPE] = tl__prepare_reshape,
    [TL_OP_GEMM] = tl__prepare_gemm,
    [TL_OP_MATMUL] = tl__prepare_matmul,
    [TL_OP_CONCAT] = tl__prepare_concat,
    [TL_OP_SOFTMAX] = tl__prepare_softmax,
    [TL_OP_IDENTITY] = tl__prepare_reshape,
    [TL_OP_DROPOUT] = tl__prepare_reshape,
    [TL_OP_CONSTANT] = NULL, /* turned into constants by the loader */
    [TL_OP_SHAPE] = tl__prepare_shape,
    [TL_OP_GATHER] = tl__prepare_gather,
    [TL_OP_UNSQUEEZE] = tl__prepare_reshape,
    [TL_OP_SQUEEZE] = tl__prepare_reshape,
    [TL_OP_RESIZE] = tl__prepare_resize,
};

const char *tl_op_name(enum tl_op op) {
  if ((unsigned)op >= TL_OP_COUNT)
    return "?";
  return op_names[op];
}

enum tl_op tl_op_lookup(const char *name) {
  for (int i = 0; i < TL_OP_COUNT; i++)
    if (strcmp(op_names[i], name) == 0)
      return (enum tl_op)i;
  return TL_OP_COUNT;
}

tl_prepare_fn tl__op_prepare(enum tl_op op) {
  if ((unsigned)op >= TL_OP_COUNT)
    return NULL;
  return op_prepare[op];
}

/* ----------------------------------------------------- prepare helpers */

int tl__prep_fail(struct tl_prep *c, int code, const char *fmt, ...) {
  if (c->err == NULL)
    return code;
  char msg[TL_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tl_fail(c->err, code, "%s: %s", c->label, msg);
}

static const struct tl_attr *find_attr(struct tl_prep *c, const char *name, enum tl_attr_type want,
                                       int *rc) {
  const struct tl_attr *a = tl_node_attr(c->node, name);
  *rc = 0;
  if (a != NULL && a->type != want) {
    *rc = tl__prep_fail(c, TL_EFORMAT, "attribute \"%s\" has the wrong type", name);
    return NULL;
  }
  return a;
}

int tl__attr_int(struct tl_prep *c, const char *name, int64_t def, int64_t *out) {
  int rc;
  const struct tl_attr *a = find_attr(c, name, TL_ATTR_INT, &rc);
  *out = a ? a->i : def;
  return rc;
}

int tl__attr_float(struct tl_prep *c, const char *name, float def, float *out) {
  int rc;
  const struct tl_attr *a = find_attr(c, name, TL_ATTR_FLOAT, &rc);
  *out = a ? a->f : def;
  return rc;
}

int tl__attr_ints(struct tl_prep *c, const char *name, const int64_t **out, int *n) {
  int rc;
  const struct tl_attr *a = find_attr(c, name, TL_ATTR_INTS, &rc);
  *out = a ? a->ints : NULL;
  *n = a ? a->n : 0;
  return rc;
}

int tl__attr_string(struct tl_prep *c, const char *name, const char *def, const char **out) {
  int rc;
  const struct tl_attr *a = find_attr(c, name, TL_ATTR_STRING, &rc);
  *out = a ? a->s : def;
  return rc;
}

int tl__need_float(struct tl_prep *c, int i) {
  if (i >= c->step->n_in || c->step->in_val[i] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "input %d is missing", i);
  if (c->step->in[i].dtype != TL_DTYPE_FLOAT32)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "input %d is %s; only float32 is supported", i,
                         tl_dtype_name(c->step->in[i].dtype));
  return 0;
}

int tl__const_ints(struct tl_prep *c, int i, int64_t *vals, int max, int *n) {
  if (i >= c->step->n_in || c->step->in_val[i] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "input %d is missing", i);
  const struct tl_tensor *t = &c->step->in[i];
  if (t->data == NULL)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "input %d must be constant (computed shapes are not supported)", i);
  if (t->dtype != TL_DTYPE_INT64 && t->dtype != TL_DTYPE_INT32)
    return tl__prep_fail(c, TL_EFORMAT, "input %d must be int64, not %s", i,
                         tl_dtype_name(t->dtype));
  int64_t cnt = tl_shape_numel(&t->shape);
  if (cnt < 0 || cnt > max)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "input %d has %lld values (at most %d)", i,
                         (long long)cnt, max);
  for (int64_t k = 0; k < cnt; k++)
    vals[k] =
        t->dtype == TL_DTYPE_INT64 ? ((const int64_t *)t->data)[k] : ((const int32_t *)t->data)[k];
  *n = (int)cnt;
  return 0;
}

void tl__run_alias(const struct tl_step *s, void *scratch) {
  (void)s;
  (void)scratch;
}
