/*
 * op_conv.c - Conv, and the activations and depthwise conv fused into it
 * (a BatchNormalization after it is folded in by op_batchnorm.c).
 *
 * Prepare picks one kernel per conv, in this order:
 *   - depthwise: the sliding-window kernel (kernel_window.c);
 *   - 3x3 stride 1 with enough channels and tiles: Winograd F(4x4, 3x3)
 *     (kernel_winograd.c), whose transformed weights are plan-owned;
 *   - everything else: the implicit GEMM (kernel_gemm.c);
 *   - shapes too large for that one's int32 offsets: im2col + cblas_sgemm,
 *     one block of output columns at a time (a 1x1 stride-1 conv
 *     multiplies the input directly).
 * The environment can take the first two fast kernels out of the running
 * (TL_NO_WINOGRAD=1, TL_NO_IGEMM=1) for tests and measurements.  Every
 * variant ends in one epilogue per output channel:
 *
 *     y = act2(act1(acc * scale[k] + shift[k]) + residual)
 *
 * where scale/shift come from a fused BatchNormalization (computed once at
 * plan time, so the shared weights are never rewritten) or the conv's own
 * bias, and act1, residual and act2 from fused Relu/Clip/HardSwish/... and
 * Add nodes.  Weights are read through a row stride (ldw), so a plan may
 * use a prefix of a larger weight tensor's rows and columns in place.
 * A plain reference kernel (TL_CONV_REF) computes the same thing without
 * tricks; tests compare the two.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---------------------------------------------------------- activations */

static inline float act1(enum tl_act type, float a, float b, float x) {
  switch (type) {
  case TL_ACT_RELU: return x > 0.f ? x : 0.f;
  case TL_ACT_CLIP: return x < a ? a : (x > b ? b : x);
  case TL_ACT_HARDSWISH: {
    float t = x * (1.f / 6.f) + 0.5f;
    t = t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
    return x * t;
  }
  case TL_ACT_HARDSIGMOID: {
    float t = a * x + b;
    return t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
  }
  case TL_ACT_SIGMOID: return 1.f / (1.f + expf(-x));
  case TL_ACT_NONE: break;
  }
  return x;
}

/* Reads a constant scalar bound of Clip; 1 if present and usable. */
static int clip_bound(const struct tl_graph *g, const struct tl_node *node, int k, float def,
                      float *out) {
  *out = def;
  if (k >= node->n_in || node->in[k] < 0)
    return 1;
  const struct tl_value *v = &g->values[node->in[k]];
  if (v->data == NULL || v->dtype != TL_DTYPE_FLOAT32 || tl_shape_numel(&v->shape) != 1)
    return 0;
  *out = *(const float *)v->data;
  return 1;
}

int tl__act_from_node(struct tl_prep *c, const struct tl_node *node, struct tl_act_params *act) {
  const struct tl_attr *at;
  memset(act, 0, sizeof *act);
  if (node->n_in < 1 || node->n_out != 1)
    return 0;
  switch (node->op) {
  case TL_OP_RELU: act->type = TL_ACT_RELU; return 1;
  case TL_OP_SIGMOID: act->type = TL_ACT_SIGMOID; return 1;
  case TL_OP_HARDSWISH: act->type = TL_ACT_HARDSWISH; return 1;
  case TL_OP_HARDSIGMOID:
    act->type = TL_ACT_HARDSIGMOID;
    act->a = 0.2f;
    act->b = 0.5f;
    if ((at = tl_node_attr(node, "alpha")) != NULL) {
      if (at->type != TL_ATTR_FLOAT)
        return 0;
      act->a = at->f;
    }
    if ((at = tl_node_attr(node, "beta")) != NULL) {
      if (at->type != TL_ATTR_FLOAT)
        return 0;
      act->b = at->f;
    }
    return 1;
  case TL_OP_CLIP:
    act->type = TL_ACT_CLIP;
    if (c->g->opset < 11) {
      act->a = -FLT_MAX;
      act->b = FLT_MAX;
      if ((at = tl_node_attr(node, "min")) != NULL && at->type == TL_ATTR_FLOAT)
        act->a = at->f;
      if ((at = tl_node_attr(node, "max")) != NULL && at->type == TL_ATTR_FLOAT)
        act->b = at->f;
      return 1;
    }
    return clip_bound(c->g, node, 1, -FLT_MAX, &act->a) &&
           clip_bound(c->g, node, 2, FLT_MAX, &act->b);
  default: return 0;
  }
}

/* The node index of the HardSigmoid(1/6, 1/2) -> Mul pair that computes
 * hardswish of value v, which is how exporters write HardSwish: v feeds
 * exactly the two nodes, the Mul multiplies v by the HardSigmoid's output
 * and nothing else reads that output.  Returns the Mul's index (and the
 * HardSigmoid's in *hsig), or -1. */
int tl__hardswish_pattern(const struct tl_graph *g, int v, int *hsig) {
  const struct tl_value *gv = &g->values[v];
  if (gv->is_output || gv->n_consumers != 2)
    return -1;
  int h = -1, m = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[i];
    for (int k = 0; k < nd->n_in; k++)
      if (nd->in[k] == v) {
        if (nd->op == TL_OP_HARDSIGMOID && h < 0 && nd->n_in == 1)
          h = i;
        else if (nd->op == TL_OP_MUL && m < 0 && nd->n_in == 2)
          m = i;
        else
          return -1;
        break;
      }
  }
  if (h < 0 || m < 0)
    return -1;
  const struct tl_node *hn = &g->nodes[h], *mn = &g->nodes[m];
  if (hn->n_out != 1 || hn->out[0] < 0 || mn->n_out != 1 || mn->out[0] < 0)
    return -1;
  const struct tl_value *hv = &g->values[hn->out[0]];
  if (hv->is_output || hv->n_consumers != 1)
    return -1;
  int other = mn->in[0] == v ? mn->in[1] : mn->in[0];
  if (other != hn->out[0])
    return -1;
  const struct tl_attr *a = tl_node_attr(hn, "alpha"), *b = tl_node_attr(hn, "beta");
  float alpha = a && a->type == TL_ATTR_FLOAT ? a->f : 0.2f;
  float beta = b && b->type == TL_ATTR_FLOAT ? b->f : 0.5f;
  if ((a && a->type != TL_ATTR_FLOAT) || (b && b->type != TL_ATTR_FLOAT) ||
      fabsf(alpha - 1.f / 6.f) > 1e-6f || beta != 0.5f)
    return -1;
  *hsig = h;
  return m;
}

/* ------------------------------------------------------------- epilogue */

/* The reference epilogue on output channels [k0, k0+nk) of one image: y
 * and res point at channel k0; hw elements per channel.  Element by
 * element, as the definition reads; the fast kernels use
 * tl__conv_epilogue (kernel_epilogue.c), and tests compare the two. */
static void epilogue_ref(const struct tl_conv_params *p, const float *shift, float *y,
                         const float *res, int64_t k0, int64_t nk, int64_t hw) {
  for (int64_t k = 0; k < nk; k++) {
    float *row = y + k * hw;
    const float s = p->scale ? p->scale[k0 + k] : 1.f;
    const float t = shift ? shift[k0 + k] : 0.f;
    for (int64_t i = 0; i < hw; i++) {
      float v = act1(p->act1.type, p->act1.a, p->act1.b, row[i] * s + t);
      if (res != NULL)
        v = act1(p->act2.type, p->act2.a, p->act2.b, v + res[k * hw + i]);
      row[i] = v;
    }
  }
}

/* --------------------------------------------------------------- kernels */

/* Unrolls output columns [j0, j0+nb) of one image's group (cg channels)
 * into col, nb floats per row: row (ci*kh+ky)*kw+kx holds, for output
 * position j = oy*ow+ox, the input under that tap, or 0 where the tap
 * falls in the padding.  A block of columns rather than the whole image,
 * so that col stays in cache between im2col, sgemm and the epilogue. */
static void im2col_block(const struct tl_conv_params *p, const float *x, int64_t cg, int64_t j0,
                         int64_t nb, float *col) {
  const int64_t h = p->h, w = p->w, ow = p->ow, sw = p->sw;
  for (int64_t ci = 0; ci < cg; ci++) {
    const float *xc = x + ci * h * w;
    for (int64_t ky = 0; ky < p->kh; ky++) {
      for (int64_t kx = 0; kx < p->kw; kx++) {
        float *dst = col + ((ci * p->kh + ky) * p->kw + kx) * nb;
        /* Output columns whose tap is inside the row: ox in [ox0, ox1). */
        const int64_t off = kx * p->dw - p->pl;
        int64_t ox0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
        int64_t ox1 = w - off <= 0 ? 0 : (w - off + sw - 1) / sw;
        if (ox1 > ow)
          ox1 = ow;
        if (ox0 > ox1)
          ox0 = ox1;
        for (int64_t j = j0; j < j0 + nb;) {
          const int64_t oy = j / ow, ox = j - oy * ow;
          const int64_t len = ow - ox < j0 + nb - j ? ow - ox : j0 + nb - j;
          const int64_t iy = oy * p->sh - p->pt + ky * p->dh;
          float *d = dst + (j - j0) - ox; /* indexed by ox */
          j += len;
          if (iy < 0 || iy >= h) {
            memset(d + ox, 0, (size_t)len * sizeof *d);
            continue;
          }
          const float *src = xc + iy * w + off;
          const int64_t end = ox + len;
          const int64_t a = ox0 < ox ? ox : (ox0 > end ? end : ox0);
          const int64_t b = ox1 < a ? a : (ox1 > end ? end : ox1);
          for (int64_t o = ox; o < a; o++)
            d[o] = 0.f;
          if (sw == 1) {
            memcpy(d + a, src + a, (size_t)(b - a) * sizeof *d);
          } else {
            for (int64_t o = a; o < b; o++)
              d[o] = src[o * sw];
          }
          for (int64_t o = b; o < end; o++)
            d[o] = 0.f;
        }
      }
    }
  }
}

static struct tl_window conv_window(const struct tl_conv_params *p) {
  return (struct tl_window){p->h,  p->w,  p->oh, p->ow, p->kh, p->kw,
                            p->sh, p->sw, p->dh, p->dw, p->pt, p->pl};
}

static const float *conv_shift(const struct tl_step *s) {
  const struct tl_conv_params *p = &s->p.conv;
  if (p->shift != NULL)
    return p->shift;
  return p->has_bias ? s->in[2].data : NULL;
}

static const float *conv_res(const struct tl_step *s) {
  return s->p.conv.has_res ? s->in[s->p.conv.res_index].data : NULL;
}

/* im2col (or the input itself for 1x1) + sgemm + epilogue, one block of
 * p->nb output columns at a time. */
static void run_conv_gemm(const struct tl_step *s, void *scratch) {
  const struct tl_conv_params *p = &s->p.conv;
  const float *x = s->in[0].data;
  const float *w = s->in[1].data;
  const float *shift = conv_shift(s);
  const float *res = conv_res(s);
  float *y = s->out[0].data;
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  const int64_t hw = p->h * p->w, ohw = p->oh * p->ow;
  const int64_t kdim = cg * p->kh * p->kw;
  for (int64_t n = 0; n < p->n; n++) {
    for (int64_t g = 0; g < p->group; g++) {
      const float *xg = x + (n * p->c + g * cg) * hw;
      float *yg = y + (n * p->m + g * mg) * ohw;
      const float *rg = res ? res + (n * p->m + g * mg) * ohw : NULL;
      for (int64_t j0 = 0; j0 < ohw; j0 += p->nb) {
        const int64_t nb = ohw - j0 < p->nb ? ohw - j0 : p->nb;
        const float *b = xg + j0;
        int64_t ldb = hw;
        if (p->kind == TL_CONV_GEMM) {
          im2col_block(p, xg, cg, j0, nb, scratch);
          b = scratch;
          ldb = nb;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)mg, (int)nb, (int)kdim, 1.f,
                    w + g * mg * p->ldw, (int)p->ldw, b, (int)ldb, 0.f, yg + j0, (int)ohw);
        tl__conv_epilogue(p, shift, g * mg, mg, 1, nb, yg + j0, ohw, 0, yg + j0, ohw, 0,
                          rg ? rg + j0 : NULL);
      }
    }
  }
}

static void run_conv_igemm(const struct tl_step *s, void *scratch) {
  tl__gemm_conv_run(&s->p.conv, s->in[0].data, s->in[1].data, conv_shift(s), conv_res(s),
                    s->out[0].data, scratch);
}

static void run_conv_winograd(const struct tl_step *s, void *scratch) {
  tl__winograd_run(&s->p.conv, s->in[0].data, conv_shift(s), conv_res(s), s->out[0].data, scratch);
}

static void run_conv_expand_dw(const struct tl_step *s, void *scratch) {
  const struct tl_conv_params *d = s->p.conv.x_dw;
  tl__expand_dw_run(&s->p.conv, d, s->in[0].data, s->in[1].data, conv_shift(s), d->shift,
                    s->out[0].data, scratch);
}

static void run_conv_depthwise(const struct tl_step *s, void *scratch) {
  const struct tl_window win = conv_window(&s->p.conv);
  tl__dw_run(&s->p.conv, &win, s->in[0].data, s->in[1].data, conv_shift(s), conv_res(s),
             s->out[0].data, scratch);
}

/* The reference: a direct loop nest, no fusion tricks beyond the epilogue. */
static void run_conv_ref(const struct tl_step *s, void *scratch) {
  (void)scratch;
  const struct tl_conv_params *p = &s->p.conv;
  const float *x = s->in[0].data;
  const float *w = s->in[1].data;
  const float *shift = conv_shift(s);
  const float *res = conv_res(s);
  float *y = s->out[0].data;
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t k = 0; k < p->m; k++) {
      int64_t g = k / mg;
      float *yk = y + (n * p->m + k) * p->oh * p->ow;
      for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox++) {
          double acc = 0.0;
          for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ky = 0; ky < p->kh; ky++)
              for (int64_t kx = 0; kx < p->kw; kx++) {
                int64_t iy = oy * p->sh - p->pt + ky * p->dh;
                int64_t ix = ox * p->sw - p->pl + kx * p->dw;
                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w)
                  continue;
                acc += (double)x[((n * p->c + g * cg + ci) * p->h + iy) * p->w + ix] *
                       w[k * p->ldw + (ci * p->kh + ky) * p->kw + kx];
              }
          yk[oy * p->ow + ox] = (float)acc;
        }
      epilogue_ref(p, shift, yk, res ? res + (n * p->m + k) * p->oh * p->ow : NULL, k, 1,
                   p->oh * p->ow);
    }
}

/* --------------------------------------------------------------- prepare */

/* Output size and padding of one spatial axis. */
static int conv_axis(struct tl_prep *c, const char *auto_pad, int64_t in, int64_t k, int64_t stride,
                     int64_t dil, int64_t *pad_begin, int64_t *pad_end, int ceil_mode,
                     int64_t *out) {
  int64_t ek = dil * (k - 1) + 1;
  if (strcmp(auto_pad, "SAME_UPPER") == 0 || strcmp(auto_pad, "SAME_LOWER") == 0) {
    int64_t o = (in + stride - 1) / stride;
    int64_t total = (o - 1) * stride + ek - in;
    if (total < 0)
      total = 0;
    if (auto_pad[5] == 'U') {
      *pad_begin = total / 2;
      *pad_end = total - total / 2;
    } else {
      *pad_end = total / 2;
      *pad_begin = total - total / 2;
    }
    *out = o;
    return 0;
  }
  if (strcmp(auto_pad, "VALID") == 0) {
    *pad_begin = *pad_end = 0;
  } else if (strcmp(auto_pad, "NOTSET") != 0) {
    return tl__prep_fail(c, TL_EFORMAT,
                         "auto_pad \"%s\" is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID",
                         auto_pad);
  }
  int64_t span = in + *pad_begin + *pad_end - ek;
  if (span < 0)
    return tl__prep_fail(c, TL_ESHAPE, "kernel %lld (dilated) is larger than the padded input %lld",
                         (long long)ek, (long long)(in + *pad_begin + *pad_end));
  int64_t o = ceil_mode ? (span + stride - 1) / stride + 1 : span / stride + 1;
  /* ceil_mode: the last window must start inside the input or left pad. */
  if (ceil_mode && (o - 1) * stride >= in + *pad_begin)
    o--;
  *out = o;
  return 0;
}

int tl__spatial_attrs(struct tl_prep *c, int64_t h, int64_t w, int64_t *kh, int64_t *kw,
                      int ceil_mode, int64_t out[2], int64_t strides[2], int64_t dils[2],
                      int64_t pads[4]) {
  const int64_t *v;
  int n, rc;
  const char *auto_pad;
  if ((rc = tl__attr_ints(c, "kernel_shape", &v, &n)) != 0)
    return rc;
  if (v != NULL) {
    if (n != 2)
      return tl__prep_fail(c, TL_EUNSUPPORTED, "kernel_shape has %d values; only 2-D is supported",
                           n);
    if ((*kh >= 0 && v[0] != *kh) || (*kw >= 0 && v[1] != *kw))
      return tl__prep_fail(c, TL_ESHAPE,
                           "kernel_shape %lldx%lld does not match the weights %lldx%lld",
                           (long long)v[0], (long long)v[1], (long long)*kh, (long long)*kw);
    *kh = v[0];
    *kw = v[1];
  }
  if (*kh <= 0 || *kw <= 0)
    return tl__prep_fail(c, TL_EFORMAT, "kernel_shape is missing or not positive");
  strides[0] = strides[1] = dils[0] = dils[1] = 1;
  pads[0] = pads[1] = pads[2] = pads[3] = 0;
  if ((rc = tl__attr_ints(c, "strides", &v, &n)) != 0)
    return rc;
  if (v != NULL) {
    if (n != 2 || v[0] <= 0 || v[1] <= 0)
      return tl__prep_fail(c, TL_EFORMAT, "strides must be 2 positive values");
    strides[0] = v[0], strides[1] = v[1];
  }
  if ((rc = tl__attr_ints(c, "dilations", &v, &n)) != 0)
    return rc;
  if (v != NULL) {
    if (n != 2 || v[0] <= 0 || v[1] <= 0)
      return tl__prep_fail(c, TL_EFORMAT, "dilations must be 2 positive values");
    dils[0] = v[0], dils[1] = v[1];
  }
  if ((rc = tl__attr_ints(c, "pads", &v, &n)) != 0)
    return rc;
  if (v != NULL) {
    if (n != 4)
      return tl__prep_fail(c, TL_EFORMAT, "pads must have 4 values, not %d", n);
    for (int i = 0; i < 4; i++) {
      if (v[i] < 0)
        return tl__prep_fail(c, TL_EFORMAT, "pads must not be negative");
      pads[i] = v[i];
    }
  }
  if ((rc = tl__attr_string(c, "auto_pad", "NOTSET", &auto_pad)) != 0)
    return rc;
  if ((rc = conv_axis(c, auto_pad, h, *kh, strides[0], dils[0], &pads[0], &pads[2], ceil_mode,
                      &out[0])) != 0 ||
      (rc = conv_axis(c, auto_pad, w, *kw, strides[1], dils[1], &pads[1], &pads[3], ceil_mode,
                      &out[1])) != 0)
    return rc;
  if (out[0] <= 0 || out[1] <= 0)
    return tl__prep_fail(c, TL_ESHAPE, "output would be empty (%lldx%lld)", (long long)out[0],
                         (long long)out[1]);
  return 0;
}

/* Output columns per GEMM block: the im2col block (kdim rows) should
 * stay in L2 until sgemm has read it; never fewer than 64 columns, which
 * sgemm needs to run near its peak. */
static int64_t gemm_block_cols(const struct tl_conv_params *p, int64_t kdim) {
  const int64_t ohw = p->oh * p->ow;
  int64_t nb = kdim > 0 ? (int64_t)(256 * 1024 / sizeof(float)) / kdim : ohw;
  nb = nb < 64 ? 64 : nb;
  return nb > ohw ? ohw : nb;
}

/* ------------------------------------------- statistics without BN */

/* 1 if the conv's output goes straight into a BatchNormalization, whose
 * own statistics recalibrate it. */
static int feeds_bn(const struct tl_graph *g, const struct tl_node *n) {
  const int v = n->n_out > 0 ? n->out[0] : -1;
  for (int i = (int)(n - g->nodes) + 1; v >= 0 && i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] == v && g->nodes[i].op == TL_OP_BATCHNORM)
        return 1;
  return 0;
}

/* Collect mode: the conv, then its output's statistics (see struct
 * tl_conv_collect). */
static void run_conv_collect(const struct tl_step *s, void *scratch) {
  const struct tl_conv_params *p = &s->p.conv;
  struct tl_conv_collect *cc = p->collect;
  cc->run(s, scratch);
  float *y = s->out[0].data;
  const int64_t inner = p->oh * p->ow;
  const double count = (double)(p->n * inner);
  for (int64_t k = 0; k < p->m; k++) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < p->n; n++) {
      const float *yc = y + (n * p->m + k) * inner;
      for (int64_t i = 0; i < inner; i++)
        sum += yc[i];
    }
    const double mean = sum / count;
    for (int64_t n = 0; n < p->n; n++) {
      const float *yc = y + (n * p->m + k) * inner;
      for (int64_t i = 0; i < inner; i++)
        sq += (yc[i] - mean) * (yc[i] - mean);
    }
    /* Unbiased, here as in the sums: the full model's own map is then
     * the identity on a single batch. */
    const double var = count > 1 ? sq / (count - 1) : sq / count;
    cc->sum_mean[k] += mean;
    cc->sum_var[k] += var;
    if (cc->ref_mean == NULL)
      continue;
    const float sc =
        (float)(sqrt((double)cc->ref_var[k] + TL_STATS_EPS) / sqrt(var + TL_STATS_EPS));
    const float sh = (float)(cc->ref_mean[k] - mean * sc);
    for (int64_t n = 0; n < p->n; n++) {
      float *yc = y + (n * p->m + k) * inner;
      for (int64_t i = 0; i < inner; i++)
        yc[i] = yc[i] * sc + sh;
    }
  }
  cc->batches++;
}

/* A conv with no BatchNormalization after it, in a subnet's view: in
 * collect mode, record its statistics (convs with a spatial output only:
 * a squeeze-and-excitation gate's convs see one value per image, and
 * had no BN to fold either); otherwise apply the map recalibration
 * stored for it, y = (conv + bias - mean) / sqrt(var), in its epilogue. */
static int prepare_conv_stats(struct tl_prep *c) {
  const struct tl_plan_view *vw = c->view;
  struct tl_step *s = c->step;
  struct tl_conv_params *p = &s->p.conv;
  const int node = (int)(c->node - c->g->nodes);
  if (vw == NULL)
    return 0;
  if (vw->collect_conv) {
    if (p->oh * p->ow <= 1 || feeds_bn(c->g, c->node))
      return 0;
    struct tl_conv_collect *cc = tl__mem_alloc(c->mem, sizeof *cc);
    double *sums = tl__mem_alloc(c->mem, 2 * (size_t)p->m * sizeof(double));
    if (cc == NULL || sums == NULL)
      return tl__prep_fail(c, TL_ENOMEM, "out of memory");
    cc->run = s->run;
    cc->sum_mean = sums;
    cc->sum_var = sums + p->m;
    if (vw->conv_ref_mean != NULL && vw->conv_ref_mean[node] != NULL) {
      cc->ref_mean = vw->conv_ref_mean[node];
      cc->ref_var = vw->conv_ref_var[node];
    }
    p->collect = cc;
    s->run = run_conv_collect;
    return 0;
  }
  if (vw->collect_bn || vw->bn_mean == NULL || vw->bn_mean[node] == NULL)
    return 0;
  if (p->has_bias && s->in[2].data == NULL)
    return tl__prep_fail(c, TL_EUNSUPPORTED, "recalibrated statistics need a constant bias");
  float *scale = tl__mem_alloc(c->mem, (size_t)p->m * sizeof(float));
  float *shift = tl__mem_alloc(c->mem, (size_t)p->m * sizeof(float));
  if (scale == NULL || shift == NULL)
    return tl__prep_fail(c, TL_ENOMEM, "out of memory");
  const float *bias = p->has_bias ? s->in[2].data : NULL;
  const float *mean = vw->bn_mean[node], *var = vw->bn_var[node];
  for (int64_t k = 0; k < p->m; k++) {
    scale[k] = 1.f / sqrtf(var[k]);
    shift[k] = ((bias ? bias[k] : 0.f) - mean[k]) * scale[k];
  }
  p->scale = scale;
  p->shift = shift;
  return 0;
}

int tl__prepare_conv(struct tl_prep *c) {
  struct tl_step *s = c->step;
  struct tl_conv_params *p = &s->p.conv;
  int rc;
  if ((rc = tl__need_float(c, 0)) != 0 || (rc = tl__need_float(c, 1)) != 0)
    return rc;
  const struct tl_shape *xs = &s->in[0].shape, *ws = &s->in[1].shape;
  if (xs->ndim != 4)
    return tl__prep_fail(c, TL_EUNSUPPORTED,
                         "only 2-D convolution (4-D input) is supported; input is %d-D", xs->ndim);
  if (ws->ndim != 4)
    return tl__prep_fail(c, TL_ESHAPE, "weights must be 4-D, not %d-D", ws->ndim);
  int64_t group;
  if ((rc = tl__attr_int(c, "group", 1, &group)) != 0)
    return rc;
  if (c->group_override > 0)
    group = c->group_override; /* a depthwise conv over a channel slice */
  p->n = xs->dims[0], p->c = xs->dims[1], p->h = xs->dims[2], p->w = xs->dims[3];
  p->m = ws->dims[0];
  if (group <= 0 || p->c % group != 0 || p->m % group != 0)
    return tl__prep_fail(c, TL_ESHAPE,
                         "group %lld does not divide %lld input and %lld output channels",
                         (long long)group, (long long)p->c, (long long)p->m);
  if (ws->dims[1] != p->c / group)
    return tl__prep_fail(c, TL_ESHAPE, "weights have %lld input channels per group; input has %lld",
                         (long long)ws->dims[1], (long long)(p->c / group));
  p->group = group;
  p->kh = ws->dims[2], p->kw = ws->dims[3];
  int64_t out[2], st[2], dil[2], pads[4];
  if ((rc = tl__spatial_attrs(c, p->h, p->w, &p->kh, &p->kw, 0, out, st, dil, pads)) != 0)
    return rc;
  p->oh = out[0], p->ow = out[1];
  p->sh = st[0], p->sw = st[1], p->dh = dil[0], p->dw = dil[1];
  p->pt = pads[0], p->pl = pads[1];
  p->ldw = ws->dims[1] * p->kh * p->kw;
  if (c->weight_ldw > 0) {
    if (c->weight_ldw < p->ldw)
      return tl__prep_fail(c, TL_EINTERNAL, "weight row stride %lld is shorter than a row (%lld)",
                           (long long)c->weight_ldw, (long long)p->ldw);
    p->ldw = c->weight_ldw;
  }
  if (s->n_in > 2 && s->in_val[2] >= 0) {
    if ((rc = tl__need_float(c, 2)) != 0)
      return rc;
    if (tl_shape_numel(&s->in[2].shape) != p->m)
      return tl__prep_fail(c, TL_ESHAPE, "bias has %lld values for %lld output channels",
                           (long long)tl_shape_numel(&s->in[2].shape), (long long)p->m);
    p->has_bias = 1;
  }
  const int64_t cg = p->c / group;
  p->weight = s->in[1].data;
  s->macs = p->n * p->m * p->oh * p->ow * cg * p->kh * p->kw;
  s->out[0].dtype = TL_DTYPE_FLOAT32;
  s->out[0].shape = (struct tl_shape){4, {p->n, p->m, p->oh, p->ow}};
  if (c->reference) {
    p->kind = TL_CONV_REF;
    s->run = run_conv_ref;
  } else if (cg == 1 && group == p->c) {
    p->kind = TL_CONV_DEPTHWISE;
    s->run = run_conv_depthwise;
    const struct tl_window win = conv_window(p);
    p->nt = c->threads;
    if (p->nt > 1 && tl__parallel_reserve(p->nt) != 0)
      p->nt = tl__parallel_threads(p->nt);
    s->scratch_bytes = tl__window_scratch_bytes(&win, p->nt);
  } else if (/* Winograd keeps transformed weights in plan memory, a copy:
              * subnets share the SuperNet's weights, so they take the
              * implicit GEMM until the transforms are shared too. */
             getenv("TL_NO_WINOGRAD") == NULL && c->view == NULL &&
             (rc = tl__winograd_prepare(c, p, &s->scratch_bytes)) != TL_EUNSUPPORTED) {
    if (rc != 0)
      return tl__prep_fail(c, rc, "out of memory");
    p->kind = TL_CONV_WINOGRAD;
    s->run = run_conv_winograd;
  } else if (getenv("TL_NO_IGEMM") == NULL &&
             (rc = tl__gemm_conv_prepare(c, p, &s->scratch_bytes)) != TL_EUNSUPPORTED) {
    if (rc != 0)
      return tl__prep_fail(c, rc, "out of memory");
    p->kind = TL_CONV_IGEMM;
    s->run = run_conv_igemm;
  } else if (p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pt == 0 && p->pl == 0 &&
             pads[2] == 0 && pads[3] == 0) {
    p->kind = TL_CONV_1X1;
    p->nb = gemm_block_cols(p, 0);
    s->run = run_conv_gemm;
  } else {
    p->kind = TL_CONV_GEMM;
    p->nb = gemm_block_cols(p, cg * p->kh * p->kw);
    s->run = run_conv_gemm;
    s->scratch_bytes = (size_t)(cg * p->kh * p->kw * p->nb) * sizeof(float);
  }
  return prepare_conv_stats(c);
}

/* Appends "+name" to the step's kind. */
static void kind_append(struct tl_step *s, const char *name) {
  size_t len = strlen(s->kind);
  snprintf(s->kind + len, sizeof s->kind - len, "+%s", name);
}

int tl__conv_fuse_dw(struct tl_prep *c, const int *consumer, char *absorbed, int *cur) {
  const struct tl_graph *g = c->g;
  struct tl_step *s = c->step;
  if (s->p.conv.kind != TL_CONV_IGEMM || !s->p.conv.g_direct || s->p.conv.has_res)
    return 0;
  const struct tl_value *gv = &g->values[*cur];
  const int j = consumer[*cur];
  if (gv->is_output || gv->n_consumers != 1 || j < 0)
    return 0;
  const struct tl_node *node = &g->nodes[j];
  if (node->op != TL_OP_CONV || node->n_in < 2 || node->n_in > 3 || node->n_out != 1 ||
      node->out[0] < 0 || node->in[0] != *cur || node->in[1] < 0 ||
      g->values[node->in[1]].data == NULL ||
      (node->n_in == 3 && node->in[2] >= 0 && g->values[node->in[2]].data == NULL))
    return 0;
  /* The depthwise conv as a step of its own, prepared quietly (a conv it
   * cannot take stays unfused), then its BN and activation folded in. */
  int in_val[3] = {*cur, node->in[1], node->n_in == 3 ? node->in[2] : -1};
  int out_val[1] = {node->out[0]};
  struct tl_tensor in[3], out[1];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  in[0] = (struct tl_tensor){TL_DTYPE_FLOAT32, s->out[0].shape, NULL};
  for (int k = 1; k < 3; k++)
    if (in_val[k] >= 0) {
      const struct tl_value *v = &g->values[in_val[k]];
      in[k] = (struct tl_tensor){v->dtype, v->shape, v->data};
    }
  struct tl_step ds;
  memset(&ds, 0, sizeof ds);
  ds.op = TL_OP_CONV;
  ds.n_in = node->n_in;
  ds.n_out = 1;
  ds.in_val = in_val, ds.out_val = out_val, ds.in = in, ds.out = out;
  struct tl_prep dc = *c;
  dc.node = node, dc.step = &ds, dc.err = NULL;
  int rc = tl__prepare_conv(&dc);
  if (rc == TL_ENOMEM)
    return rc;
  if (rc != 0 || ds.p.conv.kind != TL_CONV_DEPTHWISE)
    return 0;
  struct tl_conv_params *d = &ds.p.conv;
  int last = node->out[0], taken[3], n_taken = 0, stage = 0;
  while (stage < 2) {
    const struct tl_value *v = &g->values[last];
    int hsig, mul;
    struct tl_act_params act;
    if ((mul = tl__hardswish_pattern(g, last, &hsig)) >= 0) {
      d->act1 = (struct tl_act_params){TL_ACT_HARDSWISH, 0.f, 0.f};
      taken[n_taken++] = hsig; /* the Mul is taken below */
      last = g->nodes[mul].out[0];
      taken[n_taken++] = mul;
      break;
    }
    const int k = consumer[last];
    if (v->is_output || v->n_consumers != 1 || k < 0 || g->nodes[k].n_out != 1 ||
        g->nodes[k].out[0] < 0)
      break;
    if (g->nodes[k].op == TL_OP_BATCHNORM && stage == 0) {
      if ((rc = tl__conv_fuse_bn(&dc, &g->nodes[k])) == TL_ENOMEM)
        return rc;
      if (rc != 0)
        break;
      stage = 1;
    } else if (tl__act_from_node(&dc, &g->nodes[k], &act)) {
      d->act1 = act;
      stage = 2;
    } else {
      break;
    }
    taken[n_taken++] = k;
    last = g->nodes[k].out[0];
  }
  if (d->shift == NULL && d->has_bias)
    d->shift = in[2].data; /* the fused step has no input for it */
  size_t scratch;
  if (tl__expand_dw_prepare(&s->p.conv, d, &scratch) != 0)
    return 0;
  struct tl_conv_params *keep = tl__mem_alloc(c->mem, sizeof *keep);
  if (keep == NULL)
    return TL_ENOMEM;
  *keep = *d;
  s->p.conv.x_dw = keep;
  s->run = run_conv_expand_dw;
  s->scratch_bytes = scratch;
  s->macs += ds.macs;
  s->out[0].shape = ds.out[0].shape;
  absorbed[j] = 1;
  kind_append(s, node->op_type);
  for (int k = 0; k < n_taken; k++) {
    absorbed[taken[k]] = 1;
    kind_append(s, g->nodes[taken[k]].op_type);
  }
  /* The output value is the last node's: shape as the depthwise conv's. */
  *cur = last;
  return 1;
}
