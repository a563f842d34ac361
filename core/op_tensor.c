/*
 * op_tensor.c - ops that move or reinterpret data rather than compute on
 * it (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Shape,
 * Gather, Concat), and the dense products Gemm and MatMul.
 *
 * The view ops never copy: their run is tl__run_alias and the plan makes
 * their output share the input's buffer.  Shape is always constant at plan
 * time (plans have concrete shapes), which is what lets the Shape -> Gather
 * -> Unsqueeze -> Concat -> Reshape chains of exported models fold away.
 */
#include <cblas.h>
#include <string.h>

#include "internal.h"

/* --------------------------------------------------------------- views */

static int norm_axis(struct tl_prep *c, int64_t axis, int rank, int64_t *out) {
  if (axis < -rank || axis >= rank)
    return tl__prep_fail(c, TL_EFORMAT, "axis %lld is out of range for rank %d", (long long)axis,
                         rank);
  *out = axis < 0 ? axis + rank : axis;
  return 0;
}

static int reshape_shape(struct tl_prep *c, const struct tl_shape *in, struct tl_shape *out) {
  int64_t want[TL_MAX_DIMS];
  int n, rc;
  if (c->g->opset < 5) {
    const int64_t *v;
    if ((rc = tl__attr_ints(c, "shape", &v, &n)) != 0)
      return rc;
    if (n > TL_MAX_DIMS)
      return tl__prep_fail(c, TL_EUNSUPPORTED, "shape has %d dims (at most %d)", n, TL_MAX_DIMS);
    for (int i = 0; i < n; i++)
      want[i] = v[i];
  } else if ((rc = tl__const_ints(c, 1, want, TL_MAX_DIMS, &n)) != 0) {
    return rc;
  }
  int64_t allowzero;
  if ((rc = tl__attr_int(c, "allowzero", 0, &allowzero)) != 0)
    return rc;
  int infer = -1;
  int64_t known = 1;
  out->ndim = n;
  for (int i = 0; i < n; i++) {
    int64_t d = want[i];
    if (d == 0 && !allowzero) {
      if (i >= in->ndim)
        return tl__prep_fail(c, TL_ESHAPE, "shape copies dim %d of a %d-D input", i, in->ndim);
      d = in->dims[i];
    }
    if (d == -1) {
      if (infer >= 0)
        return tl__prep_fail(c, TL_ESHAPE, "shape has more than one -1");
      infer = i;
      d = 1;
    } else if (d < 0) {
      return tl__prep_fail(c, TL_ESHAPE, "shape has a negative dim %lld", (long long)d);
    }
    out->dims[i] = d;
    known *= d;
  }
  int64_t total = tl_shape_numel(in);
  if (infer >= 0) {
    if (known == 0 || total % known != 0)
      return tl__prep_fail(c, TL_ESHAPE, "cannot infer -1: %lld elements into blocks of %lld",
                           (long long)total, (long long)known);
    out->dims[infer] = total / known;
  }
  if (tl_shape_numel(out) != total) {
    char a[96], b[96];
    return tl__prep_fail(c, TL_ESHAPE, "cannot reshape %s into %s", tl_shape_str(in, a, sizeof a),
                         tl_shape_str(out, b, sizeof b));
  }
  return 0;
}

static int axes_list(struct tl_prep *c, int64_t *axes, int *n) {
  int rc;
  *n = 0;
  if (c->g->opset < 13) {
    const int64_t *v;
    if ((rc = tl__attr_ints(c, "axes", &v, n)) != 0)
      return rc;
    if (*n > TL_MAX_DIMS)
      return tl__prep_fail(c, TL_EUNSUPPORTED, "too many axes");
    for (int i = 0; i < *n; i++)
      axes[i] = v[i];
    return 0;
  }
  if (c->step->n_in > 1 && c->step->in_val[1] >= 0)
    return tl__const_ints(c, 1, axes, TL_MAX_DIMS, n);
  return 0;
}

static void run_dropout_mask(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const int64_t n = tl_shape_numel(&s->in[0].shape);
  memcpy(s->out[0].data, s->in[0].data, (size_t)n * tl_dtype_size(s->in[0].dtype));
  memset(s->out[1].data, 1, (size_t)n);
}

int tl__prepare_reshape(struct tl_prep *c) {
  struct tl_step *s = c->step;
  const struct tl_shape *in = &s->in[0].shape;
  struct tl_shape out = *in;
  int rc;
  if (s->n_in < 1 || s->in_val[0] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "input 0 is missing");
  switch (s->op) {
  case TL_OP_RESHAPE:
    if ((rc = reshape_shape(c, in, &out)) != 0)
      return rc;
    break;
  case TL_OP_FLATTEN: {
    int64_t axis;
    if ((rc = tl__attr_int(c, "axis", 1, &axis)) != 0)
      return rc;
    if (axis < -in->ndim || axis > in->ndim)
      return tl__prep_fail(c, TL_EFORMAT, "axis %lld is out of range for rank %d", (long long)axis,
                           in->ndim);
    if (axis < 0)
      axis += in->ndim;
    out = (struct tl_shape){
        2, {tl_shape_prod(in, 0, (int)axis), tl_shape_prod(in, (int)axis, in->ndim)}};
    break;
  }
  case TL_OP_SQUEEZE: {
    int64_t axes[TL_MAX_DIMS];
    int n;
    char drop[TL_MAX_DIMS] = {0};
    if ((rc = axes_list(c, axes, &n)) != 0)
      return rc;
    for (int i = 0; i < n; i++) {
      int64_t a = 0;
      if ((rc = norm_axis(c, axes[i], in->ndim, &a)) != 0)
        return rc;
      if (in->dims[a] != 1)
        return tl__prep_fail(c, TL_ESHAPE, "cannot squeeze axis %lld of size %lld", (long long)a,
                             (long long)in->dims[a]);
      drop[a] = 1;
    }
    out.ndim = 0;
    for (int d = 0; d < in->ndim; d++)
      if (!(n ? drop[d] : in->dims[d] == 1))
        out.dims[out.ndim++] = in->dims[d];
    break;
  }
  case TL_OP_UNSQUEEZE: {
    int64_t axes[TL_MAX_DIMS];
    int n;
    char add[TL_MAX_DIMS] = {0};
    if ((rc = axes_list(c, axes, &n)) != 0)
      return rc;
    int r = in->ndim + n;
    if (n == 0 || r > TL_MAX_DIMS)
      return tl__prep_fail(c, TL_EFORMAT, "needs 1 to %d axes", TL_MAX_DIMS - in->ndim);
    for (int i = 0; i < n; i++) {
      int64_t a = 0;
      if ((rc = norm_axis(c, axes[i], r, &a)) != 0)
        return rc;
      if (add[a])
        return tl__prep_fail(c, TL_EFORMAT, "axis %lld is repeated", (long long)a);
      add[a] = 1;
    }
    out.ndim = r;
    for (int d = 0, k = 0; d < r; d++)
      out.dims[d] = add[d] ? 1 : in->dims[k++];
    break;
  }
  case TL_OP_DROPOUT: {
    const struct tl_attr *a = tl_node_attr(c->node, "is_test");
    if (c->g->opset < 7 && a != NULL && a->type == TL_ATTR_INT && a->i == 0)
      return tl__prep_fail(c, TL_EUNSUPPORTED, "Dropout in training mode is not supported");
    if (s->n_in > 2 && s->in_val[2] >= 0) {
      const struct tl_tensor *t = &s->in[2];
      if (t->data == NULL || t->dtype != TL_DTYPE_BOOL)
        return tl__prep_fail(c, TL_EUNSUPPORTED, "Dropout training_mode must be a constant bool");
      if (*(const uint8_t *)t->data)
        return tl__prep_fail(c, TL_EUNSUPPORTED, "Dropout in training mode is not supported");
    }
    if (s->n_out > 1 && s->out_val[1] >= 0) {
      s->out[0] = (struct tl_tensor){s->in[0].dtype, *in, NULL};
      s->out[1] = (struct tl_tensor){TL_DTYPE_BOOL, *in, NULL};
      s->run = run_dropout_mask;
      return 0;
    }
    break;
  }
  default: break;
  }
  if (s->n_out != 1)
    return tl__prep_fail(c, TL_EFORMAT, "needs one output");
  s->out[0].dtype = s->in[0].dtype;
  s->out[0].shape = out;
  s->run = tl__run_alias;
  return 0;
}

/* --------------------------------------------------------------- Shape */

int tl__prepare_shape(struct tl_prep *c) {
  struct tl_step *s = c->step;
  if (s->n_in < 1 || s->in_val[0] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "input 0 is missing");
  const struct tl_shape *in = &s->in[0].shape;
  int64_t start, end;
  int rc;
  if ((rc = tl__attr_int(c, "start", 0, &start)) != 0 ||
      (rc = tl__attr_int(c, "end", in->ndim, &end)) != 0)
    return rc;
  if (start < 0)
    start += in->ndim;
  if (end < 0)
    end += in->ndim;
  start = start < 0 ? 0 : (start > in->ndim ? in->ndim : start);
  end = end < 0 ? 0 : (end > in->ndim ? in->ndim : end);
  int64_t n = end > start ? end - start : 0;
  int64_t *v = tl__mem_alloc(c->mem, (size_t)(n ? n : 1) * sizeof *v);
  if (v == NULL)
    return tl__prep_fail(c, TL_ENOMEM, "out of memory");
  for (int64_t i = 0; i < n; i++)
    v[i] = in->dims[start + i];
  s->out[0] = (struct tl_tensor){TL_DTYPE_INT64, {1, {n}}, v};
  c->out_const = 1;
  return 0;
}

/* -------------------------------------------------------------- Gather */

static void run_gather(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_gather_params *p = &s->p.gather;
  const size_t es = tl_dtype_size(s->in[0].dtype);
  const char *x = s->in[0].data;
  char *y = s->out[0].data;
  const size_t block = (size_t)p->inner * es;
  for (int64_t o = 0; o < p->outer; o++)
    for (int64_t j = 0; j < p->n_idx; j++) {
      int64_t k = p->idx_dtype == TL_DTYPE_INT64 ? ((const int64_t *)s->in[1].data)[j]
                                                 : ((const int32_t *)s->in[1].data)[j];
      if (k < 0)
        k += p->axis_len;
      char *dst = y + (size_t)(o * p->n_idx + j) * block;
      if (k < 0 || k >= p->axis_len)
        memset(dst, 0, block); /* out of range at run time: zeros, never a crash */
      else
        memcpy(dst, x + (size_t)(o * p->axis_len + k) * block, block);
    }
}

int tl__prepare_gather(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_gather_params *p = &s->p.gather;
  int rc;
  if (s->n_in != 2 || s->in_val[0] < 0 || s->in_val[1] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "needs 2 inputs");
  const struct tl_shape *xs = &s->in[0].shape, *is = &s->in[1].shape;
  if (tl_dtype_size(s->in[0].dtype) == 0)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "%s data is not supported",
                         tl_dtype_name(s->in[0].dtype));
  if (s->in[1].dtype != TL_DTYPE_INT64 && s->in[1].dtype != TL_DTYPE_INT32)
    return tl__prep_fail(c, TL_EFORMAT, "indices must be int64 or int32");
  int64_t axis;
  if ((rc = tl__attr_int(c, "axis", 0, &axis)) != 0 ||
      (rc = norm_axis(c, axis, xs->ndim, &axis)) != 0)
    return rc;
  if (xs->ndim - 1 + is->ndim > TL_MAX_DIMS)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "output would have too many dims");
  p->outer = tl_shape_prod(xs, 0, (int)axis);
  p->axis_len = xs->dims[axis];
  p->inner = tl_shape_prod(xs, (int)axis + 1, xs->ndim);
  p->n_idx = tl_shape_numel(is);
  p->idx_dtype = s->in[1].dtype;
  if (s->in[1].data != NULL)
    for (int64_t j = 0; j < p->n_idx; j++) {
      int64_t k = p->idx_dtype == TL_DTYPE_INT64 ? ((const int64_t *)s->in[1].data)[j]
                                                 : ((const int32_t *)s->in[1].data)[j];
      if (k < -p->axis_len || k >= p->axis_len)
        return tl__prep_fail(c, TL_ERANGE, "index %lld is out of range for axis of size %lld",
                             (long long)k, (long long)p->axis_len);
    }
  struct tl_shape os = {0, {0}};
  for (int d = 0; d < axis; d++)
    os.dims[os.ndim++] = xs->dims[d];
  for (int d = 0; d < is->ndim; d++)
    os.dims[os.ndim++] = is->dims[d];
  for (int d = (int)axis + 1; d < xs->ndim; d++)
    os.dims[os.ndim++] = xs->dims[d];
  s->out[0].dtype = s->in[0].dtype;
  s->out[0].shape = os;
  s->run = run_gather;
  return 0;
}

/* -------------------------------------------------------------- Concat */

static void run_concat(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_concat_params *p = &s->p.concat;
  const size_t es = tl_dtype_size(s->out[0].dtype);
  char *y = s->out[0].data;
  const int64_t out_axis = tl_shape_numel(&s->out[0].shape) / (p->outer ? p->outer : 1);
  for (int64_t o = 0; o < p->outer; o++) {
    char *dst = y + (size_t)(o * out_axis) * es;
    for (int i = 0; i < s->n_in; i++) {
      if (s->in_val[i] < 0)
        continue;
      const int64_t chunk = p->outer ? tl_shape_numel(&s->in[i].shape) / p->outer : 0;
      memcpy(dst, (const char *)s->in[i].data + (size_t)(o * chunk) * es, (size_t)chunk * es);
      dst += (size_t)chunk * es;
    }
  }
}

int tl__prepare_concat(struct tl_prep *c) {
  struct tl_step *s = c->step;
  int rc;
  if (s->n_in < 1 || s->in_val[0] < 0)
    return tl__prep_fail(c, TL_EFORMAT, "needs at least one input");
  const struct tl_tensor *first = &s->in[0];
  int r = first->shape.ndim;
  int64_t axis;
  if ((rc = tl__attr_int(c, "axis", c->g->opset < 4 ? 1 : 0, &axis)) != 0)
    return rc;
  if (tl_node_attr(c->node, "axis") == NULL && c->g->opset >= 4)
    return tl__prep_fail(c, TL_EFORMAT, "attribute \"axis\" is required");
  if ((rc = norm_axis(c, axis, r, &axis)) != 0)
    return rc;
  if (tl_dtype_size(first->dtype) == 0)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "%s data is not supported",
                         tl_dtype_name(first->dtype));
  struct tl_shape os = first->shape;
  os.dims[axis] = 0;
  for (int i = 0; i < s->n_in; i++) {
    const struct tl_tensor *t = &s->in[i];
    if (s->in_val[i] < 0)
      return tl__prep_fail(c, TL_EFORMAT, "input %d is missing", i);
    if (t->dtype != first->dtype || t->shape.ndim != r)
      return tl__prep_fail(c, TL_ESHAPE, "input %d differs in type or rank from input 0", i);
    for (int d = 0; d < r; d++)
      if (d != axis && t->shape.dims[d] != first->shape.dims[d])
        return tl__prep_fail(c, TL_ESHAPE, "input %d differs from input 0 in dim %d", i, d);
    os.dims[axis] += t->shape.dims[axis];
  }
  s->p.concat.outer = tl_shape_prod(&os, 0, (int)axis);
  s->p.concat.inner = tl_shape_prod(&os, (int)axis + 1, r);
  s->out[0].dtype = first->dtype;
  s->out[0].shape = os;
  s->run = run_concat;
  return 0;
}

/* ---------------------------------------------------------------- Gemm */

static void run_gemm(const struct tl_step *s, void *scratch) {
  const struct tl_gemm_params *p = &s->p.gemm;
  float *y = s->out[0].data;
  float beta = 0.f;
  if (p->has_c) {
    const float *cm = s->in[2].data;
    for (int64_t i = 0; i < p->m; i++)
      for (int64_t j = 0; j < p->n; j++)
        y[i * p->n + j] = cm[i * p->c_rs + j * p->c_cs];
    beta = p->beta;
  }
  if (p->m == 0 || p->n == 0)
    return;
  if (p->k == 0) {
    for (int64_t i = 0; i < p->m * p->n; i++)
      y[i] *= beta;
    return;
  }
  if (p->m == 1 && !p->reference) {
    /* One row (a classifier on one image): a matrix-vector product, which
     * sgemm runs several times slower.  B^T x (a Linear layer) on the
     * engine's own gemv (its threads, not OpenBLAS's), into scratch. */
    const int inc = p->trans_a ? (int)p->lda : 1;
    if (p->trans_b && inc == 1) {
      float *t = scratch;
      tl__gemv(s->in[1].data, p->ldb, p->n, p->k, s->in[0].data, t, p->nt);
      for (int64_t j = 0; j < p->n; j++)
        y[j] = p->alpha * t[j] + (p->has_c ? beta * y[j] : 0.f);
      return;
    }
    if (p->trans_b)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)p->n, (int)p->k, p->alpha, s->in[1].data,
                  (int)p->ldb, s->in[0].data, inc, beta, y, 1);
    else
      cblas_sgemv(CblasRowMajor, CblasTrans, (int)p->k, (int)p->n, p->alpha, s->in[1].data,
                  (int)p->ldb, s->in[0].data, inc, beta, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
              p->trans_b ? CblasTrans : CblasNoTrans, (int)p->m, (int)p->n, (int)p->k, p->alpha,
              s->in[0].data, (int)p->lda, s->in[1].data, (int)p->ldb, beta, y, (int)p->n);
}

int tl__prepare_gemm(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_gemm_params *p = &s->p.gemm;
  int rc;
  int64_t ta, tb;
  if ((rc = tl__need_float(c, 0)) != 0 || (rc = tl__need_float(c, 1)) != 0)
    return rc;
  if ((rc = tl__attr_int(c, "transA", 0, &ta)) != 0 ||
      (rc = tl__attr_int(c, "transB", 0, &tb)) != 0 ||
      (rc = tl__attr_float(c, "alpha", 1.f, &p->alpha)) != 0 ||
      (rc = tl__attr_float(c, "beta", 1.f, &p->beta)) != 0)
    return rc;
  const struct tl_shape *as = &s->in[0].shape, *bs = &s->in[1].shape;
  if (as->ndim != 2 || bs->ndim != 2)
    return tl__prep_fail(c, TL_ESHAPE, "A and B must be 2-D (they are %d-D and %d-D)", as->ndim,
                         bs->ndim);
  p->trans_a = ta != 0, p->trans_b = tb != 0;
  p->reference = c->reference;
  p->nt = c->threads;
  p->m = ta ? as->dims[1] : as->dims[0];
  p->k = ta ? as->dims[0] : as->dims[1];
  int64_t kb = tb ? bs->dims[1] : bs->dims[0];
  p->n = tb ? bs->dims[0] : bs->dims[1];
  if (kb != p->k)
    return tl__prep_fail(c, TL_ESHAPE, "A has %lld columns but B has %lld rows", (long long)p->k,
                         (long long)kb);
  p->lda = as->dims[1] ? as->dims[1] : 1;
  p->ldb = bs->dims[1] ? bs->dims[1] : 1;
  if (s->n_in > 2 && s->in_val[2] >= 0) {
    if ((rc = tl__need_float(c, 2)) != 0)
      return rc;
    const struct tl_shape *cs = &s->in[2].shape;
    int64_t cr = 1, cc = 1;
    if (cs->ndim > 2)
      return tl__prep_fail(c, TL_ESHAPE, "C must have at most 2 dims");
    if (cs->ndim == 2)
      cr = cs->dims[0], cc = cs->dims[1];
    else if (cs->ndim == 1)
      cc = cs->dims[0];
    if ((cr != 1 && cr != p->m) || (cc != 1 && cc != p->n))
      return tl__prep_fail(c, TL_ESHAPE, "C (%lldx%lld) does not broadcast to %lldx%lld",
                           (long long)cr, (long long)cc, (long long)p->m, (long long)p->n);
    p->c_rs = cr == 1 ? 0 : cc;
    p->c_cs = cc == 1 ? 0 : 1;
    p->has_c = 1;
  }
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = (struct tl_shape){2, {p->m, p->n}};
  s->macs = p->m * p->n * p->k;
  s->run = run_gemm;
  if (p->m == 1 && !p->reference)
    s->scratch_bytes = (size_t)p->n * sizeof(float);
  return 0;
}

/* -------------------------------------------------------------- MatMul */

static void run_matmul(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_matmul_params *p = &s->p.matmul;
  const float *a = s->in[0].data, *b = s->in[1].data;
  float *y = s->out[0].data;
  int64_t idx[TL_MAX_DIMS] = {0};
  for (int64_t bi = 0; bi < p->nbatch; bi++) {
    int64_t ao = 0, bo = 0;
    for (int d = 0; d < p->batch_ndim; d++) {
      ao += idx[d] * p->abatch_stride[d];
      bo += idx[d] * p->bbatch_stride[d];
    }
    float *yb = y + bi * p->m * p->n;
    if (p->k == 0)
      memset(yb, 0, (size_t)(p->m * p->n) * sizeof *yb);
    else if (p->m > 0 && p->n > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p->m, (int)p->n, (int)p->k, 1.f,
                  a + ao * p->m * p->k, (int)p->k, b + bo * p->k * p->n, (int)p->n, 0.f, yb,
                  (int)p->n);
    for (int d = p->batch_ndim - 1; d >= 0; d--) {
      if (++idx[d] < p->batch[d])
        break;
      idx[d] = 0;
    }
  }
}

int tl__prepare_matmul(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_matmul_params *p = &s->p.matmul;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0 || (rc = tl__need_float(c, 1)) != 0)
    return rc;
  struct tl_shape as = s->in[0].shape, bs = s->in[1].shape;
  if (as.ndim == 0 || bs.ndim == 0)
    return tl__prep_fail(c, TL_ESHAPE, "inputs must have at least 1 dim");
  int a1 = as.ndim == 1, b1 = bs.ndim == 1;
  if (a1)
    as = (struct tl_shape){2, {1, as.dims[0]}};
  if (b1)
    bs = (struct tl_shape){2, {bs.dims[0], 1}};
  p->m = as.dims[as.ndim - 2];
  p->k = as.dims[as.ndim - 1];
  p->n = bs.dims[bs.ndim - 1];
  if (bs.dims[bs.ndim - 2] != p->k)
    return tl__prep_fail(c, TL_ESHAPE, "A has %lld columns but B has %lld rows", (long long)p->k,
                         (long long)bs.dims[bs.ndim - 2]);
  int na = as.ndim - 2, nb = bs.ndim - 2;
  int nd = na > nb ? na : nb;
  int64_t acc_a = 1, acc_b = 1;
  p->batch_ndim = nd;
  p->nbatch = 1;
  for (int d = nd - 1; d >= 0; d--) {
    int ia = d - (nd - na), ib = d - (nd - nb);
    int64_t da = ia >= 0 ? as.dims[ia] : 1, db = ib >= 0 ? bs.dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return tl__prep_fail(c, TL_ESHAPE, "batch dims %lld and %lld do not broadcast", (long long)da,
                           (long long)db);
    p->batch[d] = da == 1 ? db : da;
    p->abatch_stride[d] = da == 1 ? 0 : acc_a;
    p->bbatch_stride[d] = db == 1 ? 0 : acc_b;
    acc_a *= da;
    acc_b *= db;
    p->nbatch *= p->batch[d];
  }
  struct tl_shape os = {0, {0}};
  for (int d = 0; d < nd; d++)
    os.dims[os.ndim++] = p->batch[d];
  if (!a1)
    os.dims[os.ndim++] = p->m;
  if (!b1)
    os.dims[os.ndim++] = p->n;
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = os;
  s->macs = p->nbatch * p->m * p->n * p->k;
  s->run = run_matmul;
  return 0;
}
