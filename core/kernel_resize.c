/*
 * kernel_resize.c - bilinear resizing of NCHW images, for the elastic
 * resolution of subnets.
 *
 * Matches PyTorch's interpolate(mode="bilinear", align_corners=False,
 * antialias=False), which is how tailor's bundled model was trained at
 * smaller sides: source coordinate (dst + 0.5) * in/out - 0.5, clamped at
 * 0, blending the two nearest pixels on each axis.
 *
 * The same kernel runs ONNX's Resize in the one form that means this
 * (mode "linear", coordinate_transformation_mode "half_pixel"), which is
 * how an exported subnet at another resolution starts (export.c).  ONNX
 * defines the coordinate as (dst + 0.5) / (out/in) - 0.5 and pads the
 * edges by repeating them, which for two-tap linear blending is the same
 * as the clamp here; only float rounding can differ (an ulp or so of the
 * coordinate, and the order the four products are summed in).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Source index and weight of the far pixel for each destination index. */
static void axis_coeffs(int64_t in, int64_t out, int64_t i, int64_t *i0, int64_t *i1,
                        float *lambda) {
  const float scale = (float)in / (float)out;
  float src = ((float)i + 0.5f) * scale - 0.5f;
  if (src < 0.f)
    src = 0.f;
  int64_t lo = (int64_t)src;
  if (lo > in - 1)
    lo = in - 1;
  *i0 = lo;
  *i1 = lo < in - 1 ? lo + 1 : lo;
  *lambda = src - (float)lo;
}

void tl__run_resize(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_pool_params *p = &s->p.pool;
  const float *x = s->in[0].data;
  float *y = s->out[0].data;
  for (int64_t oy = 0; oy < p->oh; oy++) {
    int64_t y0, y1;
    float ly;
    axis_coeffs(p->h, p->oh, oy, &y0, &y1, &ly);
    for (int64_t ox = 0; ox < p->ow; ox++) {
      int64_t x0, x1;
      float lx;
      axis_coeffs(p->w, p->ow, ox, &x0, &x1, &lx);
      for (int64_t nc = 0; nc < p->n * p->c; nc++) {
        const float *xc = x + nc * p->h * p->w;
        const float top = xc[y0 * p->w + x0] * (1.f - lx) + xc[y0 * p->w + x1] * lx;
        const float bot = xc[y1 * p->w + x0] * (1.f - lx) + xc[y1 * p->w + x1] * lx;
        y[(nc * p->oh + oy) * p->ow + ox] = top * (1.f - ly) + bot * ly;
      }
    }
  }
}

/* Resize, opset 11 and later: X, roi, scales, sizes.  Only what the
 * kernel computes is accepted -- bilinear with half-pixel centres over H
 * and W -- and anything else is refused by name rather than run
 * differently. */
int tl__prepare_resize(struct tl_prep *c) {
  struct tl_step *s = c->step;
  const char *mode, *ctm;
  int64_t exclude;
  int rc;
  if (c->g->opset < 11)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "Resize before opset 11 has no half-pixel coordinates; only 11 and "
                         "later are supported");
  if ((rc = tl__need_float(c, 0)) != 0 ||
      (rc = tl__attr_string(c, "mode", "nearest", &mode)) != 0 ||
      (rc = tl__attr_string(c, "coordinate_transformation_mode", "half_pixel", &ctm)) != 0 ||
      (rc = tl__attr_int(c, "exclude_outside", 0, &exclude)) != 0)
    return rc;
  if (strcmp(mode, "linear") != 0)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "mode \"%s\" is not supported (only \"linear\")",
                         mode);
  const int pytorch = strcmp(ctm, "pytorch_half_pixel") == 0;
  if (strcmp(ctm, "half_pixel") != 0 && !pytorch)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "coordinate_transformation_mode \"%s\" is not supported (only "
                         "\"half_pixel\")",
                         ctm);
  if (exclude != 0)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "exclude_outside=1 is not supported");
  const struct tl_shape *xs = &s->in[0].shape;
  if (xs->ndim != 4)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "only 4-D (NCHW) input is supported, not %d-D",
                         xs->ndim);
  int64_t out[4];
  int n = 0;
  if (s->n_in > 3 && s->in_val[3] >= 0 && tl_shape_numel(&s->in[3].shape) > 0) {
    if ((rc = tl__const_ints(c, 3, out, 4, &n)) != 0)
      return rc;
    if (n != 4)
      return tl__prep_fail(c, TL_ESHAPE, "sizes has %d values for a 4-D input", n);
  } else if (s->n_in > 2 && s->in_val[2] >= 0 && s->in[2].data != NULL &&
             s->in[2].dtype == TL_DTYPE_FLOAT32 && tl_shape_numel(&s->in[2].shape) == 4) {
    /* ONNX takes the coordinate from the scale given, the kernel from
     * in/out: the two agree only when the scale makes a whole size. */
    const float *sc = s->in[2].data;
    for (int d = 0; d < 4; d++) {
      const double o = (double)xs->dims[d] * sc[d];
      if (!(o >= 1) || o != floor(o))
        return tl__prep_fail(c, TL_EUNSUPPORTED,
                             "scale %g of dim %d does not make a whole size of %lld; give "
                             "sizes instead",
                             (double)sc[d], d, (long long)xs->dims[d]);
      out[d] = (int64_t)o;
    }
  } else {
    return tl__prep_fail(c, TL_EUNSUPPORTED, "needs constant sizes or scales (4 values)");
  }
  if (out[0] != xs->dims[0] || out[1] != xs->dims[1])
    return tl__prep_fail(c, TL_EUNSUPPORTED, "only H and W may be resized, not N or C");
  if (out[2] < 1 || out[3] < 1 || out[2] > (1 << 20) || out[3] > (1 << 20))
    return tl__prep_fail(c, TL_ERANGE, "output side %lldx%lld is out of range", (long long)out[2],
                         (long long)out[3]);
  if (pytorch && (out[2] == 1 || out[3] == 1))
    return tl__prep_fail(c, TL_EUNSUPPORTED, "pytorch_half_pixel to a side of 1 is not supported");
  struct tl_pool_params *pp = &s->p.pool;
  pp->n = xs->dims[0], pp->c = xs->dims[1], pp->h = xs->dims[2], pp->w = xs->dims[3];
  pp->oh = out[2], pp->ow = out[3];
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = (struct tl_shape){4, {pp->n, pp->c, pp->oh, pp->ow}};
  s->n_out = 1;
  s->run = tl__run_resize;
  return 0;
}
