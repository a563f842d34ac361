/*
 * kernel_epilogue.c - the vectorized tail of every fast conv kernel (per
 * channel scale and shift, activation, residual add, second activation)
 * and the activations on their own, for standalone unary ops.
 *
 * Each activation has its own loop (the type is switched once per row,
 * never per element) so that the compiler vectorizes it.  On x86-64 the
 * entry points are built for AVX-512, AVX2+FMA and baseline SSE2 and the
 * best is picked when the library loads (TL_CLONES), so one binary runs
 * on any x86-64 CPU.  Results match op_conv.c's reference epilogue up to
 * the rounding of a fused multiply-add.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* Rows are processed in pieces this long so that the passes of the
 * multi-pass cases (act1, then residual, then act2) stay in L1. */
#define PIECE 512

/* Applies one activation to x[0..n) in place. */
static inline __attribute__((always_inline)) void act_inplace(enum tl_act type, float a, float b,
                                                              float *x, int64_t n) {
  switch (type) {
  case TL_ACT_NONE: return;
  case TL_ACT_RELU:
    for (int64_t i = 0; i < n; i++)
      x[i] = x[i] > 0.f ? x[i] : 0.f;
    return;
  case TL_ACT_CLIP:
    for (int64_t i = 0; i < n; i++) {
      float v = x[i] < a ? a : x[i];
      x[i] = v > b ? b : v;
    }
    return;
  case TL_ACT_HARDSWISH:
    for (int64_t i = 0; i < n; i++) {
      float t = x[i] * (1.f / 6.f) + 0.5f;
      t = t < 0.f ? 0.f : t;
      t = t > 1.f ? 1.f : t;
      x[i] *= t;
    }
    return;
  case TL_ACT_HARDSIGMOID:
    for (int64_t i = 0; i < n; i++) {
      float t = a * x[i] + b;
      t = t < 0.f ? 0.f : t;
      x[i] = t > 1.f ? 1.f : t;
    }
    return;
  case TL_ACT_SIGMOID:
    for (int64_t i = 0; i < n; i++)
      x[i] = 1.f / (1.f + expf(-x[i]));
    return;
  }
}

/* The clamp bounds of an activation that is a clamp (none, Relu, Clip);
 * 0 for the others.  Infinite bounds leave every number (and NaN) alone. */
static inline __attribute__((always_inline)) int act_bounds(const struct tl_act_params *act,
                                                            float *lo, float *hi) {
  *lo = -INFINITY;
  *hi = INFINITY;
  switch (act->type) {
  case TL_ACT_NONE: return 1;
  case TL_ACT_RELU: *lo = 0.f; return 1;
  case TL_ACT_CLIP: *lo = act->a, *hi = act->b; return 1;
  default: return 0;
  }
}

TL_CLONES
void tl__act_run(const struct tl_act_params *act, const float *x, float *y, int64_t n) {
  float lo, hi;
  if (act_bounds(act, &lo, &hi)) {
    for (int64_t i = 0; i < n; i++) {
      float v = x[i] < lo ? lo : x[i];
      y[i] = v > hi ? hi : v;
    }
    return;
  }
  if (x != y)
    memcpy(y, x, (size_t)n * sizeof *y);
  act_inplace(act->type, act->a, act->b, y, n);
}

void tl__act_apply(const struct tl_act_params *act, float *x, int64_t n) {
  if (act->type != TL_ACT_NONE)
    tl__act_run(act, x, x, n);
}

TL_CLONES
void tl__conv_epilogue(const struct tl_conv_params *p, const float *shift, int64_t k0, int64_t nk,
                       int64_t rows, int64_t n, const float *src, int64_t src_ch, int64_t src_row,
                       float *y, int64_t y_ch, int64_t y_row, const float *res) {
  float lo1, hi1, lo2, hi2;
  const int simple1 = act_bounds(&p->act1, &lo1, &hi1);
  const int simple = act_bounds(&p->act2, &lo2, &hi2) && simple1;
  const int hswish = p->act1.type == TL_ACT_HARDSWISH;
  for (int64_t q = 0; q < nk * rows; q++) {
    const int64_t k = q / rows, rr = q - k * rows;
    const float s = p->scale ? p->scale[k0 + k] : 1.f;
    const float t = shift ? shift[k0 + k] : 0.f;
    const float *x = src + k * src_ch + rr * src_row;
    float *row = y + k * y_ch + rr * y_row;
    const float *r = res ? res + k * y_ch + rr * y_row : NULL;
    if (simple && r == NULL) {
      for (int64_t i = 0; i < n; i++) {
        float v = x[i] * s + t;
        v = v < lo1 ? lo1 : v;
        row[i] = v > hi1 ? hi1 : v;
      }
    } else if (hswish && r == NULL) {
      /* Hardswish (MobileNetV3) in the same single pass. */
      for (int64_t i = 0; i < n; i++) {
        float v = x[i] * s + t;
        float g = v * (1.f / 6.f) + 0.5f;
        g = g < 0.f ? 0.f : g;
        row[i] = v * (g > 1.f ? 1.f : g);
      }
    } else if (simple) {
      for (int64_t i = 0; i < n; i++) {
        float v = x[i] * s + t;
        v = v < lo1 ? lo1 : v;
        v = (v > hi1 ? hi1 : v) + r[i];
        v = v < lo2 ? lo2 : v;
        row[i] = v > hi2 ? hi2 : v;
      }
    } else {
      for (int64_t i0 = 0; i0 < n; i0 += PIECE) {
        const int64_t m = n - i0 < PIECE ? n - i0 : PIECE;
        float *d = row + i0;
        for (int64_t i = 0; i < m; i++)
          d[i] = x[i0 + i] * s + t;
        act_inplace(p->act1.type, p->act1.a, p->act1.b, d, m);
        if (r != NULL) {
          for (int64_t i = 0; i < m; i++)
            d[i] += r[i0 + i];
          act_inplace(p->act2.type, p->act2.a, p->act2.b, d, m);
        }
      }
    }
  }
}
