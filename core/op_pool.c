/*
 * op_pool.c - MaxPool, AveragePool and GlobalAveragePool over NCHW.
 *
 * Each op has a clear loop nest that is the reference.  MaxPool without
 * an Indices output also has a fast kernel (kernel_window.c: a padded
 * plane per channel, vectorized over output columns, channels split over
 * the engine's threads), GlobalAveragePool a vectorized sum; plans built
 * with reference=1 use the loop nests, and tests compare the two.
 */
#include <float.h>
#include <string.h>

#include "internal.h"

static void run_maxpool(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_pool_params *p = &s->p.pool;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  int64_t *idx = s->n_out > 1 && s->out_val[1] >= 0 ? s->out[1].data : NULL;
  for (int64_t nc = 0; nc < p->n * p->c; nc++) {
    const float *xc = x + nc * p->h * p->w;
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        float best = -FLT_MAX;
        int64_t at = -1;
        for (int64_t ky = 0; ky < p->kh; ky++) {
          int64_t iy = oy * p->sh - p->pt + ky * p->dh;
          if (iy < 0 || iy >= p->h)
            continue;
          for (int64_t kx = 0; kx < p->kw; kx++) {
            int64_t ix = ox * p->sw - p->pl + kx * p->dw;
            if (ix < 0 || ix >= p->w)
              continue;
            float v = xc[iy * p->w + ix];
            if (at < 0 || v > best) {
              best = v;
              at = p->storage_order ? ix * p->h + iy : iy * p->w + ix;
            }
          }
        }
        int64_t o = (nc * p->oh + oy) * p->ow + ox;
        y[o] = best;
        if (idx != NULL)
          idx[o] = nc * p->h * p->w + at;
      }
  }
}

static struct tl_window pool_window(const struct tl_pool_params *p) {
  return (struct tl_window){p->h,  p->w,  p->oh, p->ow, p->kh, p->kw,
                            p->sh, p->sw, p->dh, p->dw, p->pt, p->pl};
}

static void run_maxpool_fast(const struct tl_step *s, void *scratch) {
  const struct tl_pool_params *p = &s->p.pool;
  const struct tl_window win = pool_window(p);
  tl__maxpool_run(&win, p->n * p->c, p->nt, s->in[0].data, s->out[0].data, scratch);
}

static void run_avgpool(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_pool_params *p = &s->p.pool;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  for (int64_t nc = 0; nc < p->n * p->c; nc++) {
    const float *xc = x + nc * p->h * p->w;
    for (int64_t oy = 0; oy < p->oh; oy++)
      for (int64_t ox = 0; ox < p->ow; ox++) {
        float sum = 0.f;
        int64_t count = 0, padded = 0;
        for (int64_t ky = 0; ky < p->kh; ky++) {
          int64_t iy = oy * p->sh - p->pt + ky * p->dh;
          int in_y = iy >= 0 && iy < p->h;
          int pad_y = iy >= -p->pt && iy < p->h + p->pb;
          for (int64_t kx = 0; kx < p->kw; kx++) {
            int64_t ix = ox * p->sw - p->pl + kx * p->dw;
            if (pad_y && ix >= -p->pl && ix < p->w + p->pr)
              padded++;
            if (in_y && ix >= 0 && ix < p->w) {
              sum += xc[iy * p->w + ix];
              count++;
            }
          }
        }
        int64_t div = p->count_include_pad ? padded : count;
        y[(nc * p->oh + oy) * p->ow + ox] = div > 0 ? sum / (float)div : 0.f;
      }
  }
}

int tl__prepare_pool(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_pool_params *p = &s->p.pool;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0)
    return rc;
  const struct tl_shape *xs = &s->in[0].shape;
  if (xs->ndim != 4)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "only 2-D pooling (4-D input) is supported; input is %d-D", xs->ndim);
  int64_t ceil_mode, cip, order;
  if ((rc = tl__attr_int(c, "ceil_mode", 0, &ceil_mode)) != 0 ||
      (rc = tl__attr_int(c, "count_include_pad", 0, &cip)) != 0 ||
      (rc = tl__attr_int(c, "storage_order", 0, &order)) != 0)
    return rc;
  p->n = xs->dims[0], p->c = xs->dims[1], p->h = xs->dims[2], p->w = xs->dims[3];
  p->kh = p->kw = -1;
  int64_t out[2], st[2], dil[2], pads[4];
  if ((rc = tl__spatial_attrs(c, p->h, p->w, &p->kh, &p->kw, ceil_mode != 0, out, st, dil, pads)) !=
      0)
    return rc;
  p->oh = out[0], p->ow = out[1];
  p->sh = st[0], p->sw = st[1], p->dh = dil[0], p->dw = dil[1];
  p->pt = pads[0], p->pl = pads[1], p->pb = pads[2], p->pr = pads[3];
  p->count_include_pad = cip != 0;
  p->storage_order = order != 0;
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = (struct tl_shape){4, {p->n, p->c, p->oh, p->ow}};
  s->macs = p->n * p->c * p->oh * p->ow * p->kh * p->kw;
  if (s->op == TL_OP_MAXPOOL) {
    if (s->n_out > 1 && s->out_val[1] >= 0) {
      s->out[1].dtype = TL_DTYPE_INT64;
      s->out[1].shape = s->out[0].shape;
    }
    s->run = run_maxpool;
    if (!c->reference && !(s->n_out > 1 && s->out_val[1] >= 0)) {
      const struct tl_window win = pool_window(p);
      s->run = run_maxpool_fast;
      p->nt = c->threads;
      if (p->nt > 1 && tl__parallel_reserve(p->nt) != 0)
        p->nt = tl__parallel_threads(p->nt);
      s->scratch_bytes = tl__window_scratch_bytes(&win, p->nt);
    }
  } else {
    if (s->n_out > 1)
      return tl__prep_fail(c, TL_EFORMAT, "AveragePool has one output");
    s->run = run_avgpool;
  }
  return 0;
}

/* Sum of n floats in eight interleaved partial sums, so that the loop
 * vectorizes (a single running float sum cannot be reordered). */
TL_CLONES
static float sum_floats(const float *x, int64_t n) {
  float part[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++)
      part[l] += x[i + l];
  float sum = 0.f;
  for (int l = 0; l < 8; l++)
    sum += part[l];
  for (; i < n; i++)
    sum += x[i];
  return sum;
}

static void run_global_avgpool(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  const int64_t inner = s->p.unary.inner, nc = s->p.unary.channels;
  const float inv = 1.f / (float)inner;
  for (int64_t i = 0; i < nc; i++)
    y[i] = sum_floats(x + i * inner, inner) * inv;
}

static void run_global_avgpool_ref(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  const int64_t inner = s->p.unary.inner, nc = s->p.unary.channels;
  for (int64_t i = 0; i < nc; i++) {
    float sum = 0.f;
    for (int64_t k = 0; k < inner; k++)
      sum += x[i * inner + k];
    y[i] = sum / (float)inner;
  }
}

int tl__prepare_global_avgpool(struct tl_prep *c) {
  struct tl_step *s = c->step;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0)
    return rc;
  const struct tl_shape *xs = &s->in[0].shape;
  if (xs->ndim < 3)
    return tl__prep_fail(c, TL_ESHAPE, "input must have at least 3 dimensions, not %d", xs->ndim);
  s->p.unary.channels = xs->dims[0] * xs->dims[1];
  s->p.unary.inner = tl_shape_prod(xs, 2, xs->ndim);
  if (s->p.unary.inner == 0)
    return tl__prep_fail(c, TL_ESHAPE, "input has no spatial elements");
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = *xs;
  for (int d = 2; d < xs->ndim; d++)
    s->out[0].shape.dims[d] = 1;
  s->macs = s->p.unary.channels * s->p.unary.inner;
  s->run = c->reference ? run_global_avgpool_ref : run_global_avgpool;
  return 0;
}
