/*
 * kernel_resize.c - bilinear resizing of NCHW images, for the elastic
 * resolution of subnets.
 *
 * Matches PyTorch's interpolate(mode="bilinear", align_corners=False,
 * antialias=False), which is how tailor's bundled model was trained at
 * smaller sides: source coordinate (dst + 0.5) * in/out - 0.5, clamped at
 * 0, blending the two nearest pixels on each axis.
 */
#include <math.h>

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
