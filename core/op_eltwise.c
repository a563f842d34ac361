/*
 * op_eltwise.c - elementwise ops: activations, broadcasting arithmetic
 * (Add, Sub, Mul, Div) and Softmax.
 *
 * Binary ops follow numpy broadcasting (and the older opset-6 "broadcast"
 * attribute).  At plan time the output's dims are collapsed wherever both
 * inputs stay contiguous or both stay broadcast, so the common CNN cases
 * (same shape, per-channel scale of an SE block, a scalar) become one
 * or two flat loops.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------- unary */

/* The step's activation; Clip bounds given as runtime inputs are read at
 * run time. */
static struct tl_act_params unary_act(const struct tl_step *s) {
  struct tl_act_params act = s->p.unary.act;
  if (s->op == TL_OP_CLIP) {
    if (s->n_in > 1 && s->in_val[1] >= 0)
      act.a = *(const float *)s->in[1].data;
    if (s->n_in > 2 && s->in_val[2] >= 0)
      act.b = *(const float *)s->in[2].data;
  }
  return act;
}

/* One pass, one vectorized loop per activation type (kernel_epilogue.c). */
static void run_unary(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_act_params act = unary_act(s);
  tl__act_run(&act, s->in[0].data, s->out[0].data, tl_shape_numel(&s->out[0].shape));
}

/* The reference: element by element, as the definitions read. */
static void run_unary_ref(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_act_params act = unary_act(s);
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  const int64_t n = tl_shape_numel(&s->out[0].shape);
  for (int64_t i = 0; i < n; i++) {
    float v = x[i], t;
    switch (act.type) {
    case TL_ACT_RELU: v = v > 0.f ? v : 0.f; break;
    case TL_ACT_CLIP: v = v < act.a ? act.a : (v > act.b ? act.b : v); break;
    case TL_ACT_HARDSWISH:
      t = v / 6.f + 0.5f;
      v *= t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
      break;
    case TL_ACT_HARDSIGMOID:
      t = act.a * v + act.b;
      v = t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
      break;
    case TL_ACT_SIGMOID: v = 1.f / (1.f + expf(-v)); break;
    case TL_ACT_NONE: break;
    }
    y[i] = v;
  }
}

int tl__prepare_unary(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_act_params *act = &s->p.unary.act;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0)
    return rc;
  switch (s->op) {
  case TL_OP_RELU: act->type = TL_ACT_RELU; break;
  case TL_OP_SIGMOID: act->type = TL_ACT_SIGMOID; break;
  case TL_OP_HARDSWISH: act->type = TL_ACT_HARDSWISH; break;
  case TL_OP_HARDSIGMOID:
    act->type = TL_ACT_HARDSIGMOID;
    if ((rc = tl__attr_float(c, "alpha", 0.2f, &act->a)) != 0 ||
        (rc = tl__attr_float(c, "beta", 0.5f, &act->b)) != 0)
      return rc;
    break;
  case TL_OP_CLIP:
    act->type = TL_ACT_CLIP;
    if (c->g->opset < 11) {
      if ((rc = tl__attr_float(c, "min", -FLT_MAX, &act->a)) != 0 ||
          (rc = tl__attr_float(c, "max", FLT_MAX, &act->b)) != 0)
        return rc;
    } else {
      act->a = -FLT_MAX;
      act->b = FLT_MAX;
      for (int k = 1; k < s->n_in && k < 3; k++) {
        if (s->in_val[k] < 0)
          continue;
        if (s->in[k].dtype != TL_DTYPE_FLOAT32 || tl_shape_numel(&s->in[k].shape) != 1)
          return tl__prep_fail(c, TL_EFORMAT, "Clip %s must be a float32 scalar",
                               k == 1 ? "min" : "max");
        if (s->in[k].data != NULL)
          *(k == 1 ? &act->a : &act->b) = *(const float *)s->in[k].data;
      }
    }
    break;
  default: return tl__prep_fail(c, TL_EINTERNAL, "not a unary op");
  }
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = s->in[0].shape;
  s->run = c->reference ? run_unary_ref : run_unary;
  return 0;
}

/* ------------------------------------------------------------ binary */

#define BINARY_LOOP(T, OP)                                                                         \
  do {                                                                                             \
    const T *A = a, *B = b;                                                                        \
    T *Y = y;                                                                                      \
    if (sa && sb)                                                                                  \
      for (int64_t i = 0; i < len; i++)                                                            \
        Y[i] = A[i] OP B[i];                                                                       \
    else if (sa)                                                                                   \
      for (int64_t i = 0; i < len; i++)                                                            \
        Y[i] = A[i] OP B[0];                                                                       \
    else if (sb)                                                                                   \
      for (int64_t i = 0; i < len; i++)                                                            \
        Y[i] = A[0] OP B[i];                                                                       \
    else                                                                                           \
      for (int64_t i = 0; i < len; i++)                                                            \
        Y[i] = A[0] OP B[0];                                                                       \
  } while (0)

/* y[0..len) = a op b where a, b advance by sa, sb (each 0 or 1). */
static void binary_row(enum tl_op op, enum tl_dtype dt, const void *a, int64_t sa, const void *b,
                       int64_t sb, void *y, int64_t len) {
  if (dt == TL_DTYPE_FLOAT32) {
    switch (op) {
    case TL_OP_ADD: BINARY_LOOP(float, +); break;
    case TL_OP_SUB: BINARY_LOOP(float, -); break;
    case TL_OP_MUL: BINARY_LOOP(float, *); break;
    default: BINARY_LOOP(float, /); break;
    }
  } else {
    switch (op) {
    case TL_OP_ADD: BINARY_LOOP(int64_t, +); break;
    case TL_OP_SUB: BINARY_LOOP(int64_t, -); break;
    case TL_OP_MUL: BINARY_LOOP(int64_t, *); break;
    default: {
      const int64_t *A = a, *B = b;
      int64_t *Y = y;
      for (int64_t i = 0; i < len; i++) {
        int64_t d = B[i * sb];
        Y[i] = d != 0 ? A[i * sa] / d : 0; /* a model dividing by 0 gets 0 */
      }
    }
    }
  }
}

static void run_binary(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_binary_params *p = &s->p.bin;
  const enum tl_dtype dt = s->out[0].dtype;
  const size_t es = tl_dtype_size(dt);
  const char *a = s->in[0].data, *b = s->in[1].data;
  char *y = s->out[0].data;
  const int nd = p->ndim;
  const int64_t len = nd > 0 ? p->dims[nd - 1] : 1;
  const int64_t sa = nd > 0 ? p->astride[nd - 1] : 0, sb = nd > 0 ? p->bstride[nd - 1] : 0;
  const int64_t rows = len > 0 ? tl_shape_numel(&s->out[0].shape) / len : 0;
  int64_t idx[TL_MAX_DIMS] = {0};
  int64_t ao = 0, bo = 0;
  for (int64_t r = 0; r < rows; r++) {
    binary_row(s->op, dt, a + ao * (int64_t)es, sa, b + bo * (int64_t)es, sb,
               y + r * len * (int64_t)es, len);
    /* Advance the index over the outer dims (odometer). */
    for (int d = nd - 2; d >= 0; d--) {
      ao += p->astride[d];
      bo += p->bstride[d];
      if (++idx[d] < p->dims[d])
        break;
      ao -= p->astride[d] * p->dims[d];
      bo -= p->bstride[d] * p->dims[d];
      idx[d] = 0;
    }
  }
}

int tl__prepare_binary(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_binary_params *p = &s->p.bin;
  int rc;
  if (s->n_in != 2 || s->in_val[0] < 0 || s->in_val[1] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "needs 2 inputs");
  enum tl_dtype dt = s->in[0].dtype;
  if (dt != s->in[1].dtype)
    return tl__prep_fail(c, TL_EDTYPE, "inputs are %s and %s", tl_dtype_name(dt),
                         tl_dtype_name(s->in[1].dtype));
  if (dt != TL_DTYPE_FLOAT32 && dt != TL_DTYPE_INT64)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "%s inputs are not supported (float32 and int64 are)",
                         tl_dtype_name(dt));
  struct tl_shape as = s->in[0].shape, bs = s->in[1].shape;
  if (c->g->opset < 7) {
    int64_t bc, axis;
    if ((rc = tl__attr_int(c, "broadcast", 0, &bc)) != 0 ||
        (rc = tl__attr_int(c, "axis", -1, &axis)) != 0)
      return rc;
    if (bc) {
      /* Opset 6: B's dims match A's starting at axis (default: the tail). */
      if (axis < 0)
        axis = as.ndim - bs.ndim;
      if (axis < 0 || axis + bs.ndim > as.ndim)
        return tl__prep_fail(c, TL_ESHAPE, "broadcast axis %lld out of range", (long long)axis);
      struct tl_shape nb = {as.ndim, {0}};
      for (int d = 0; d < as.ndim; d++)
        nb.dims[d] = (d >= axis && d < axis + bs.ndim) ? bs.dims[d - axis] : 1;
      bs = nb;
    } else if (!tl_shape_equal(&as, &bs)) {
      return tl__prep_fail(c, TL_ESHAPE, "shapes differ and broadcast is not set");
    }
  }
  int nd = as.ndim > bs.ndim ? as.ndim : bs.ndim;
  struct tl_shape os = {nd, {0}};
  int64_t ad[TL_MAX_DIMS], bd[TL_MAX_DIMS];
  for (int d = 0; d < nd; d++) {
    int ia = d - (nd - as.ndim), ib = d - (nd - bs.ndim);
    ad[d] = ia >= 0 ? as.dims[ia] : 1;
    bd[d] = ib >= 0 ? bs.dims[ib] : 1;
    if (ad[d] != bd[d] && ad[d] != 1 && bd[d] != 1) {
      char sa[96], sb[96];
      return tl__prep_fail(c, TL_ESHAPE, "shapes %s and %s do not broadcast",
                           tl_shape_str(&s->in[0].shape, sa, sizeof sa),
                           tl_shape_str(&s->in[1].shape, sb, sizeof sb));
    }
    os.dims[d] = ad[d] == 1 ? bd[d] : ad[d];
  }
  /* Element strides, then collapse neighbouring dims that stay flat. */
  int64_t ast[TL_MAX_DIMS], bst[TL_MAX_DIMS], acc_a = 1, acc_b = 1;
  for (int d = nd - 1; d >= 0; d--) {
    ast[d] = ad[d] == 1 ? 0 : acc_a;
    bst[d] = bd[d] == 1 ? 0 : acc_b;
    acc_a *= ad[d];
    acc_b *= bd[d];
  }
  int m = 0;
  for (int d = 0; d < nd; d++) {
    if (os.dims[d] == 1)
      continue; /* size-1 dims move nothing */
    if (m > 0) {
      int k = m - 1;
      int a_ok = (p->astride[k] == 0 && ast[d] == 0) ||
                 (ast[d] != 0 && p->astride[k] == ast[d] * os.dims[d]);
      int b_ok = (p->bstride[k] == 0 && bst[d] == 0) ||
                 (bst[d] != 0 && p->bstride[k] == bst[d] * os.dims[d]);
      if (a_ok && b_ok) {
        p->dims[k] *= os.dims[d];
        p->astride[k] = ast[d];
        p->bstride[k] = bst[d];
        continue;
      }
    }
    p->dims[m] = os.dims[d];
    p->astride[m] = ast[d];
    p->bstride[m] = bst[d];
    m++;
  }
  p->ndim = m;
  s->out[0].dtype = dt;
  s->out[0].shape = os;
  s->run = run_binary;
  return 0;
}

/* ------------------------------------------------------------ softmax */

static void run_softmax(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_softmax_params *p = &s->p.softmax;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  for (int64_t o = 0; o < p->outer; o++)
    for (int64_t i = 0; i < p->inner; i++) {
      const float *xr = x + o * p->len * p->inner + i;
      float *yr = y + o * p->len * p->inner + i;
      float mx = -INFINITY;
      for (int64_t k = 0; k < p->len; k++)
        mx = xr[k * p->inner] > mx ? xr[k * p->inner] : mx;
      float sum = 0.f;
      for (int64_t k = 0; k < p->len; k++) {
        float e = expf(xr[k * p->inner] - mx);
        yr[k * p->inner] = e;
        sum += e;
      }
      const float inv = 1.f / sum;
      for (int64_t k = 0; k < p->len; k++)
        yr[k * p->inner] *= inv;
    }
}

int tl__prepare_softmax(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_softmax_params *p = &s->p.softmax;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0)
    return rc;
  const struct tl_shape *xs = &s->in[0].shape;
  int legacy = c->g->opset < 13;
  int64_t axis;
  if ((rc = tl__attr_int(c, "axis", legacy ? 1 : -1, &axis)) != 0)
    return rc;
  int r = xs->ndim;
  if (axis < -r || axis >= (r ? r : 1))
    return tl__prep_fail(c, TL_EFORMAT, "axis %lld is out of range for a %d-D input",
                         (long long)axis, r);
  if (axis < 0)
    axis += r;
  p->outer = tl_shape_prod(xs, 0, (int)axis);
  if (legacy) {
    /* Before opset 13 the input is seen as 2-D: [outer, everything else]. */
    p->len = tl_shape_prod(xs, (int)axis, r);
    p->inner = 1;
  } else {
    p->len = r ? xs->dims[axis] : 1;
    p->inner = tl_shape_prod(xs, (int)axis + 1, r);
  }
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = *xs;
  s->run = run_softmax;
  return 0;
}
