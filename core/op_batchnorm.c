/*
 * op_batchnorm.c - BatchNormalization, folded into the conv before it or
 * run alone.
 *
 * Folded, it becomes the conv's per-channel scale and shift (computed
 * once at plan time from constant parameters, or a subnet's recalibrated
 * statistics, so the shared weights are never rewritten; op_conv.c
 * applies them in its epilogue).  Alone, its parameters may be runtime
 * inputs; in collect mode (recalibration) it normalizes by each batch's
 * statistics, as training does, and sums them.
 */
#include <math.h>
#include <stdint.h>

#include "internal.h"

/* BatchNormalization attributes and parameter checks shared by the fused
 * and standalone forms.  params[0..3] = scale, B, mean, var. */
static int bn_check(struct tl_prep *c, const struct tl_node *bn, int64_t channels,
                    const struct tl_tensor *params, float *eps) {
  const struct tl_attr *a;
  *eps = 1e-5f;
  if ((a = tl_node_attr(bn, "epsilon")) != NULL) {
    if (a->type != TL_ATTR_FLOAT)
      return tl__prep_fail(c, TL_EFORMAT, "BatchNormalization epsilon must be a float");
    *eps = a->f;
  }
  if ((a = tl_node_attr(bn, "training_mode")) != NULL && a->type == TL_ATTR_INT && a->i != 0)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "BatchNormalization in training mode is not supported");
  if ((a = tl_node_attr(bn, "spatial")) != NULL && a->type == TL_ATTR_INT && a->i != 1)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "BatchNormalization with spatial=0 is not supported");
  if (bn->n_in != 5 || bn->n_out < 1)
    return tl__prep_fail(c, TL_EFORMAT, "BatchNormalization needs 5 inputs");
  if (bn->n_out > 1)
    for (int k = 1; k < bn->n_out; k++)
      if (bn->out[k] >= 0)
        return tl__prep_fail(c, TL_EUNSUPPORTED,
                             "BatchNormalization with training outputs is not supported");
  for (int k = 0; k < 4; k++) {
    if (params[k].dtype != TL_DTYPE_FLOAT32)
      return tl__prep_fail(c, TL_EUNSUPPORTED,
                           "BatchNormalization input %d is %s; only float32 is supported", k + 1,
                           tl_dtype_name(params[k].dtype));
    /* A subnet's channel slice reads the first `channels` values. */
    int64_t have = tl_shape_numel(&params[k].shape);
    if (have != channels && !(c->view != NULL && c->view->sliced && have > channels))
      return tl__prep_fail(c, TL_ESHAPE,
                           "BatchNormalization input %d has %lld values for %lld channels", k + 1,
                           (long long)tl_shape_numel(&params[k].shape), (long long)channels);
  }
  return 0;
}

int tl__conv_fuse_bn(struct tl_prep *c, const struct tl_node *bn) {
  struct tl_step *s = c->step;
  struct tl_conv_params *p = &s->p.conv;
  const struct tl_graph *g = c->g;
  struct tl_tensor params[4];
  if (bn->n_in != 5 || p->scale != NULL)
    return TL_EUNSUPPORTED;
  for (int k = 0; k < 4; k++) {
    int v = bn->in[k + 1];
    if (v < 0 || g->values[v].data == NULL)
      return TL_EUNSUPPORTED; /* not constant: run it on its own */
    params[k] = (struct tl_tensor){g->values[v].dtype, g->values[v].shape, g->values[v].data};
  }
  const int bi = (int)(bn - g->nodes);
  if (c->view != NULL && c->view->bn_mean != NULL && c->view->bn_mean[bi] != NULL) {
    params[2].data = (void *)c->view->bn_mean[bi]; /* recalibrated for this subnet */
    params[3].data = (void *)c->view->bn_var[bi];
  }
  float eps;
  struct tl_error *saved = c->err;
  c->err = NULL; /* a BN that cannot fuse is prepared (and reported) alone */
  int rc = bn_check(c, bn, p->m, params, &eps);
  c->err = saved;
  if (rc != 0)
    return rc;
  const float *bias = NULL;
  if (p->has_bias) {
    if (s->in[2].data == NULL)
      return TL_EUNSUPPORTED;
    bias = s->in[2].data;
  }
  float *scale = tl__mem_alloc(c->mem, (size_t)p->m * sizeof(float));
  float *shift = tl__mem_alloc(c->mem, (size_t)p->m * sizeof(float));
  if (scale == NULL || shift == NULL)
    return TL_ENOMEM;
  const float *gam = params[0].data, *beta = params[1].data, *mean = params[2].data,
              *var = params[3].data;
  for (int64_t k = 0; k < p->m; k++) {
    float sc = gam[k] / sqrtf(var[k] + eps);
    scale[k] = sc;
    shift[k] = ((bias ? bias[k] : 0.f) - mean[k]) * sc + beta[k];
  }
  p->scale = scale;
  p->shift = shift;
  return 0;
}

/* Standalone BatchNormalization: parameters may be runtime inputs. */
static void run_batchnorm(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_unary_params *p = &s->p.unary;
  const float *x = s->in[0].data;
  const float *gam = s->in[1].data, *beta = s->in[2].data;
  const float *mean = p->mean ? p->mean : s->in[3].data, *var = p->var ? p->var : s->in[4].data;
  float *y = s->out[0].data;
  const float eps = p->act.a;
  const int64_t nb = tl_shape_numel(&s->in[0].shape) / (p->channels * p->inner);
  for (int64_t n = 0; n < nb; n++)
    for (int64_t k = 0; k < p->channels; k++) {
      const float sc = gam[k] / sqrtf(var[k] + eps);
      const float sh = beta[k] - mean[k] * sc;
      const int64_t off = (n * p->channels + k) * p->inner;
      for (int64_t i = 0; i < p->inner; i++)
        y[off + i] = x[off + i] * sc + sh;
    }
}

/* Collect mode (BN recalibration): normalize by this batch's statistics,
 * as training does, and add its mean and unbiased variance to the sums. */
static void run_batchnorm_collect(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_unary_params *p = &s->p.unary;
  const float *x = s->in[0].data;
  const float *gam = s->in[1].data, *beta = s->in[2].data;
  float *y = s->out[0].data;
  const float eps = p->act.a;
  const int64_t nb = tl_shape_numel(&s->in[0].shape) / (p->channels * p->inner);
  const double count = (double)(nb * p->inner);
  for (int64_t k = 0; k < p->channels; k++) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < nb; n++) {
      const float *xc = x + (n * p->channels + k) * p->inner;
      for (int64_t i = 0; i < p->inner; i++)
        sum += xc[i];
    }
    const double mean = sum / count;
    for (int64_t n = 0; n < nb; n++) {
      const float *xc = x + (n * p->channels + k) * p->inner;
      for (int64_t i = 0; i < p->inner; i++)
        sq += (xc[i] - mean) * (xc[i] - mean);
    }
    const double var = sq / count;
    p->sum_mean[k] += mean;
    p->sum_var[k] += count > 1 ? sq / (count - 1) : var;
    const float sc = (float)(gam[k] / sqrt(var + eps));
    const float sh = (float)(beta[k] - mean * sc);
    for (int64_t n = 0; n < nb; n++) {
      const int64_t off = (n * p->channels + k) * p->inner;
      for (int64_t i = 0; i < p->inner; i++)
        y[off + i] = x[off + i] * sc + sh;
    }
  }
  (*p->batches)++;
}

int tl__prepare_batchnorm(struct tl_prep *c) {
  struct tl_step *s = c->step;
  int rc;
  for (int k = 0; k < 5; k++)
    if ((rc = tl__need_float(c, k)) != 0)
      return rc;
  const struct tl_shape *xs = &s->in[0].shape;
  if (xs->ndim < 2)
    return tl__prep_fail(c, TL_ESHAPE, "input must have at least 2 dimensions");
  float eps;
  if ((rc = bn_check(c, c->node, xs->dims[1], &s->in[1], &eps)) != 0)
    return rc;
  s->p.unary.channels = xs->dims[1];
  s->p.unary.inner = tl_shape_prod(xs, 2, xs->ndim);
  s->p.unary.act.a = eps;
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = *xs;
  s->n_out = 1;
  s->run = run_batchnorm;
  const struct tl_plan_view *vw = c->view;
  const int bi = (int)(c->node - c->g->nodes);
  if (vw != NULL && vw->collect_bn) {
    const size_t ch = (size_t)xs->dims[1];
    s->p.unary.sum_mean = tl__mem_alloc(c->mem, ch * sizeof(double));
    s->p.unary.sum_var = tl__mem_alloc(c->mem, ch * sizeof(double));
    s->p.unary.batches = tl__mem_alloc(c->mem, sizeof(int));
    if (!s->p.unary.sum_mean || !s->p.unary.sum_var || !s->p.unary.batches)
      return tl__prep_fail(c, TL_ENOMEM, "out of memory");
    s->run = run_batchnorm_collect;
  } else if (vw != NULL && vw->bn_mean != NULL && vw->bn_mean[bi] != NULL) {
    s->p.unary.mean = vw->bn_mean[bi];
    s->p.unary.var = vw->bn_var[bi];
  }
  return 0;
}
