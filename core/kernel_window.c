/*
 * kernel_window.c - sliding-window kernels over one channel at a time:
 * depthwise convolution and max pooling, any window size, stride,
 * dilation and padding.
 *
 * Each input channel is first copied into a padded plane in scratch (the
 * padding holds 0 for a conv, -inf for max pooling), its columns split by
 * phase (padded column c goes to phase c % sw at c / sw), so that for
 * every tap the inputs of consecutive output columns are consecutive
 * floats.  The plane is large enough that no tap needs a bounds check,
 * including the columns and rows that round the output up to whole
 * vectors.  Output is computed in units of VL columns of one row, UNITS
 * units at a time (independent accumulators hide the FMA latency), into a
 * row-padded plane; the conv epilogue (or a copy) then writes the output.
 *
 * Invariant: within one run, everything in the padded plane outside the
 * copied input keeps the padding value (set once at the start), because
 * every channel copies to the same positions.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

#define VL 8         /* floats per unit: one AVX2 register */
#define UNITS 8      /* units computed together */
#define MAX_TAPS 121 /* windows up to 11x11 take the vector path */

typedef float vfloat __attribute__((vector_size(VL * sizeof(float)), aligned(4)));

/* The shapes of the padded plane and of the output plane in scratch. */
struct geom {
  int64_t owp;   /* output columns rounded up to VL */
  int64_t cpr;   /* units per output row */
  int64_t nu;    /* units to compute, rounded up to UNITS */
  int64_t ohx;   /* output rows those units span (>= oh) */
  int64_t hp;    /* padded plane rows */
  int64_t lp;    /* floats per phase of a padded row */
  int64_t rs;    /* floats per padded row (sw phases) */
  int64_t plane; /* floats of the padded plane, rounded to 16 */
};

static void geom(const struct tl_window *p, struct geom *g) {
  g->owp = (p->ow + VL - 1) / VL * VL;
  g->cpr = g->owp / VL;
  g->nu = (p->oh * g->cpr + UNITS - 1) / UNITS * UNITS;
  g->ohx = (g->nu + g->cpr - 1) / g->cpr;
  g->hp = (g->ohx - 1) * p->sh + (p->kh - 1) * p->dh + 1;
  const int64_t wp = (g->owp - 1) * p->sw + (p->kw - 1) * p->dw + 1;
  g->lp = (wp + p->sw - 1) / p->sw;
  g->rs = g->lp * p->sw;
  g->plane = (g->hp * g->rs + 15) / 16 * 16;
}

/* Scratch bytes of one share: the padded plane and the output plane. */
static size_t share_bytes(const struct tl_window *p) {
  struct geom g;
  geom(p, &g);
  return ((size_t)(g.plane + g.ohx * g.owp) * sizeof(float) + 63) / 64 * 64;
}

size_t tl__window_scratch_bytes(const struct tl_window *p, int nt) {
  return share_bytes(p) * (size_t)(nt < 1 ? 1 : nt);
}

/* Copies one input channel into the padded plane's interior. */
static inline __attribute__((always_inline)) void
fill(const struct tl_window *p, const struct geom *g, const float *x, float *plane) {
  const int64_t sw = p->sw;
  /* Input columns that land inside the plane: ix in [0, nx). */
  int64_t nx = g->rs - p->pl;
  nx = nx > p->w ? p->w : nx;
  for (int64_t r = 0; r < g->hp; r++) {
    const int64_t iy = r - p->pt;
    if (iy < 0 || iy >= p->h)
      continue;
    const float *src = x + iy * p->w;
    float *row = plane + r * g->rs;
    if (sw == 1) {
      float *dst = row + p->pl;
      for (int64_t i = 0; i < nx; i++)
        dst[i] = src[i];
      continue;
    }
    for (int64_t q = 0; q < sw; q++) {
      /* Padded columns c = q + sw*i, that is ix = c - pl: i in [i0, i1). */
      const int64_t i0 = q >= p->pl ? 0 : (p->pl - q + sw - 1) / sw;
      const int64_t i1 = nx + p->pl - q <= 0 ? 0 : (nx + p->pl - q + sw - 1) / sw;
      float *dst = row + q * g->lp + i0;
      const float *s0 = src + q + sw * i0 - p->pl;
      if (sw == 2) {
        for (int64_t i = 0; i < i1 - i0; i++)
          dst[i] = s0[2 * i];
      } else {
        for (int64_t i = 0; i < i1 - i0; i++)
          dst[i] = s0[sw * i];
      }
    }
  }
}

/* Offsets into the plane of each tap, for output (0, 0). */
static void tap_offsets(const struct tl_window *p, const struct geom *g, int64_t *off) {
  for (int64_t ky = 0, t = 0; ky < p->kh; ky++)
    for (int64_t kx = 0; kx < p->kw; kx++, t++) {
      const int64_t col = kx * p->dw;
      off[t] = ky * p->dh * g->rs + (col % p->sw) * g->lp + col / p->sw;
    }
}

typedef int32_t vint __attribute__((vector_size(VL * sizeof(int32_t))));

/* The output plane of one channel into out (ohx rows of owp floats),
 * UNITS units of VL columns at a time: over the taps, acc += w*v (a conv:
 * wk set) or acc = max(acc, v) (wk NULL).  ntaps is a constant in the
 * specialized callers so that the tap loop unrolls.  (An epilogue on the
 * registers here measured slower than the vectorized pass after it.) */
static inline __attribute__((always_inline)) void
plane_units(const struct geom *g, int64_t sh, const float *plane, const int64_t *tap_off,
            const float *wk, int ntaps, float *out) {
  /* Units run row-major over (oy, chunk); (oy, c) of the group's first. */
  int64_t oy = 0, c = 0;
  for (int64_t u0 = 0; u0 < g->nu; u0 += UNITS) {
    const float *base[UNITS];
    float *dst[UNITS];
    vfloat acc[UNITS];
    for (int u = 0; u < UNITS; u++) {
      base[u] = plane + oy * sh * g->rs + c * VL;
      dst[u] = out + oy * g->owp + c * VL;
      if (++c == g->cpr)
        c = 0, oy++;
    }
    if (wk != NULL) {
      for (int u = 0; u < UNITS; u++)
        acc[u] = (vfloat){0};
      for (int t = 0; t < ntaps; t++) {
        const float wt = wk[t];
        const int64_t off = tap_off[t];
        for (int u = 0; u < UNITS; u++) {
          vfloat v;
          memcpy(&v, base[u] + off, sizeof v);
          acc[u] += wt * v;
        }
      }
    } else {
      for (int u = 0; u < UNITS; u++)
        memcpy(&acc[u], base[u] + tap_off[0], sizeof acc[u]);
      for (int t = 1; t < ntaps; t++) {
        const int64_t off = tap_off[t];
        for (int u = 0; u < UNITS; u++) {
          vfloat v;
          memcpy(&v, base[u] + off, sizeof v);
          /* max without a vector ?: (C has none): v > acc selects v. */
          vint gt = v > acc[u];
          acc[u] = (vfloat)(((vint)v & gt) | ((vint)acc[u] & ~gt));
        }
      }
    }
    for (int u = 0; u < UNITS; u++)
      memcpy(dst[u], &acc[u], sizeof acc[u]);
  }
}

/* Windows larger than MAX_TAPS (rare): plain loops, still bounds-free. */
static void plane_big(const struct tl_window *win, const struct geom *g, const float *plane,
                      const float *wk, float *out) {
  for (int64_t oy = 0; oy < win->oh; oy++)
    for (int64_t ox = 0; ox < win->ow; ox++) {
      float acc = wk != NULL ? 0.f : -INFINITY;
      for (int64_t ky = 0; ky < win->kh; ky++)
        for (int64_t kx = 0; kx < win->kw; kx++) {
          const int64_t col = ox * win->sw + kx * win->dw;
          const float v = plane[(oy * win->sh + ky * win->dh) * g->rs + (col % win->sw) * g->lp +
                                col / win->sw];
          if (wk != NULL)
            acc += wk[ky * win->kw + kx] * v;
          else
            acc = v > acc ? v : acc;
        }
      out[oy * g->owp + ox] = acc;
    }
}

/* Copies the oh x ow output out of the row-padded plane. */
static inline __attribute__((always_inline)) void
copy_rows(const struct tl_window *win, const struct geom *g, const float *out, float *y) {
  for (int64_t oy = 0; oy < win->oh; oy++)
    for (int64_t ox = 0; ox < win->ow; ox++)
      y[oy * win->ow + ox] = out[oy * g->owp + ox];
}

/* Input channels [c0, c1) of n_img images of a depthwise conv p over win:
 * channel planes xs floats apart in x (whose first plane is input channel
 * xbase), ys apart in y and res. */
TL_CLONES
static void dw_channels(const struct tl_conv_params *p, const struct tl_window *win, const float *x,
                        int64_t xs, int64_t xbase, const float *w, const float *shift,
                        const float *res, float *y, int64_t ys, int64_t n_img, float *scratch,
                        int64_t c0, int64_t c1) {
  struct geom g;
  geom(win, &g);
  float *plane = scratch;
  float *out = plane + g.plane;
  const int ntaps = (int)(win->kh * win->kw);
  int64_t tap_off[MAX_TAPS];
  if (ntaps <= MAX_TAPS)
    tap_offsets(win, &g, tap_off);
  memset(plane, 0, (size_t)g.plane * sizeof *plane);
  const int64_t mult = p->m / p->c, ohw = win->oh * win->ow;
  for (int64_t n = 0; n < n_img; n++)
    for (int64_t k = c0 * mult; k < c1 * mult; k++) {
      const float *wk = w + k * p->ldw;
      const float *rk = res ? res + (n * p->m + k) * ys : NULL;
      float *yk = y + (n * p->m + k) * ys;
      if (k % mult == 0)
        fill(win, &g, x + (n * p->c + k / mult - xbase) * xs, plane);
      if (ntaps == 9)
        plane_units(&g, win->sh, plane, tap_off, wk, 9, out);
      else if (ntaps == 25)
        plane_units(&g, win->sh, plane, tap_off, wk, 25, out);
      else if (ntaps <= MAX_TAPS)
        plane_units(&g, win->sh, plane, tap_off, wk, ntaps, out);
      else
        plane_big(win, &g, plane, wk, out);
      if (g.owp == win->ow) {
        tl__conv_epilogue(p, shift, k, 1, 1, ohw, out, 0, 0, yk, 0, 0, rk);
      } else if (rk == NULL) {
        /* Rows shorter than a few vectors would run the epilogue's scalar
         * tails: run it over the whole padded plane instead, then copy. */
        tl__conv_epilogue(p, shift, k, 1, 1, win->oh * g.owp, out, 0, 0, out, 0, 0, NULL);
        copy_rows(win, &g, out, yk);
      } else {
        tl__conv_epilogue(p, shift, k, 1, win->oh, win->ow, out, 0, g.owp, yk, 0, win->ow, rk);
      }
    }
}

/* Channels [c0, c1) of max pooling. */
TL_CLONES
static void max_channels(const struct tl_window *win, const float *x, float *y, float *scratch,
                         int64_t c0, int64_t c1) {
  struct geom g;
  geom(win, &g);
  float *plane = scratch;
  float *out = plane + g.plane;
  const int ntaps = (int)(win->kh * win->kw);
  int64_t tap_off[MAX_TAPS];
  if (ntaps <= MAX_TAPS)
    tap_offsets(win, &g, tap_off);
  for (int64_t i = 0; i < g.plane; i++)
    plane[i] = -INFINITY;
  for (int64_t ch = c0; ch < c1; ch++) {
    fill(win, &g, x + ch * win->h * win->w, plane);
    if (ntaps == 9)
      plane_units(&g, win->sh, plane, tap_off, NULL, 9, out);
    else if (ntaps <= MAX_TAPS)
      plane_units(&g, win->sh, plane, tap_off, NULL, ntaps, out);
    else
      plane_big(win, &g, plane, NULL, out);
    copy_rows(win, &g, out, y + ch * win->oh * win->ow);
  }
}

/* A window step as its shares see it: each takes a slice of the channels
 * and its own scratch. */
struct window_job {
  const struct tl_conv_params *p; /* NULL for max pooling */
  const struct tl_window *win;
  const float *x, *w, *shift, *res;
  float *y;
  char *scratch;
  size_t share_bytes;
  int64_t channels;
};

static void window_share(void *ctx, int i, int n) {
  const struct window_job *j = ctx;
  const int64_t c0 = j->channels * i / n, c1 = j->channels * (i + 1) / n;
  float *scratch = (float *)(j->scratch + (size_t)i * j->share_bytes);
  if (c0 >= c1)
    return;
  if (j->p != NULL)
    dw_channels(j->p, j->win, j->x, j->win->h * j->win->w, 0, j->w, j->shift, j->res, j->y,
                j->win->oh * j->win->ow, j->p->n, scratch, c0, c1);
  else
    max_channels(j->win, j->x, j->y, scratch, c0, c1);
}

void tl__dw_run(const struct tl_conv_params *p, const struct tl_window *win, const float *x,
                const float *w, const float *shift, const float *res, float *y, void *scratch) {
  struct window_job j = {p, win, x, w, shift, res, y, scratch, share_bytes(win), p->c};
  tl__parallel_run(tl__parallel_threads(p->nt), window_share, &j);
}

void tl__dw_band(const struct tl_conv_params *p, const struct tl_window *win, const float *x,
                 int64_t xs, const float *shift, float *y, int64_t ys, void *scratch, int64_t c0,
                 int64_t c1) {
  dw_channels(p, win, x, xs, c0, p->weight, shift, NULL, y, ys, 1, scratch, c0, c1);
}

void tl__maxpool_run(const struct tl_window *win, int64_t nc, int nt, const float *x, float *y,
                     void *scratch) {
  struct window_job j = {NULL, win, x, NULL, NULL, NULL, y, scratch, share_bytes(win), nc};
  tl__parallel_run(tl__parallel_threads(nt), window_share, &j);
}
