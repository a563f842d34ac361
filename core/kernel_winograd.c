/*
 * kernel_winograd.c - 3x3 stride-1 convolution by Winograd F(4x4, 3x3).
 *
 * Each 4x4 block of outputs (a tile) is computed from the 6x6 input patch
 * under it as Y = A^T [U . V] A, where V = B^T d B is the transformed
 * patch, U = G g G^T the transformed 3x3 filter and . the elementwise
 * product.  Summed over input channels, the 36 elementwise products become
 * 36 independent GEMMs, M[xi] (m x tiles) = U[xi] (m x c) * V[xi]
 * (c x tiles), which run on kernel_gemm.c's micro-kernels: 4x fewer
 * multiplications than direct convolution, for the price of the
 * transforms and of rounding (errors stay near 1e-6 relative).
 *
 * U is computed once, when the plan is built, into plan-owned memory
 * (36 * m * c floats, 4x the weights): the shared weights are only read.
 * A run goes over groups of tile rows: transform the group's input
 * patches into V (vectorized over the tiles of a row: the input rows are
 * first split into four column phases so that every tap of consecutive
 * tiles is a consecutive float), run the 36 GEMMs into M, transform M back
 * into output rows and apply the conv epilogue to them.
 *
 * It pays when there are enough tiles for the GEMMs to run near peak;
 * tl__winograd_prepare decides, and the caller falls back to the implicit
 * GEMM otherwise.
 */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define ALPHA 6 /* input patch side */
#define NPOS 36 /* ALPHA * ALPHA transformed positions */
#define TWV 8   /* the transforms' vector length, in tiles */

/* The transforms' matrices, points 0, +-1, +-2 and infinity:
 *   B^T rows: [4 0 -5 0 1 0] [0 -4 -4 1 1 0] [0 4 -4 -1 1 0]
 *             [0 -2 -1 2 1 0] [0 2 -1 -2 1 0] [0 4 0 -5 0 1]
 *   G rows:   [1/4 0 0] [-1/6 -1/6 -1/6] [-1/6 1/6 -1/6]
 *             [1/24 1/12 1/6] [1/24 -1/12 1/6] [0 0 1]
 *   A^T rows: [1 1 1 1 1 0] [0 1 -1 2 -2 0] [0 1 1 4 4 0] [0 1 -1 8 -8 1] */
static const double G[ALPHA][3] = {{1. / 4, 0, 0},
                                   {-1. / 6, -1. / 6, -1. / 6},
                                   {-1. / 6, 1. / 6, -1. / 6},
                                   {1. / 24, 1. / 12, 1. / 6},
                                   {1. / 24, -1. / 12, 1. / 6},
                                   {0, 0, 1}};

/* ------------------------------------------------------------- prepare */

/* Scratch: V (36 x c x ntp) and M (36 x m x ntp), shared; then per share
 * the phase rows and their vertical transform (2 x 6 x 4 x (twp + 1)),
 * the output transform's rows (4 x 6 x twp) and output rows (4 x 4twp). */
static int64_t wino_shared_floats(const struct tl_conv_params *p) {
  return NPOS * (p->c + p->m) * p->w_ntp;
}

static int64_t wino_thread_floats(const struct tl_conv_params *p) {
  const int64_t lq = p->w_twp + 1;
  const int64_t n = 2 * ALPHA * 4 * lq + 4 * ALPHA * p->w_twp + 4 * 4 * p->w_twp;
  return (n + 15) / 16 * 16; /* shares never share a cache line */
}

int tl__winograd_prepare(struct tl_prep *c, struct tl_conv_params *p, size_t *scratch) {
  if (p->weight == NULL || p->group != 1 || p->kh != 3 || p->kw != 3 || p->sh != 1 || p->sw != 1 ||
      p->dh != 1 || p->dw != 1 || p->c < 16 || p->m < 16)
    return TL_EUNSUPPORTED;
  p->w_th = (p->oh + 3) / 4;
  p->w_tw = (p->ow + 3) / 4;
  const int64_t tiles = p->w_th * p->w_tw;
  /* The transforms run over whole vectors of tiles: tw rounded up to 8
   * (4 for narrow images); a row's extra tiles land on the next row's
   * (written after them) or past the group's last tile (never read back). */
  p->w_twp = (p->w_tw + 3) / 4 * 4;
  if (p->w_tw >= 8)
    p->w_twp = (p->w_tw + 7) / 8 * 8;
  /* Tile rows per group: the fewest GEMM columns in all (each group's V
   * and M are rounded up to whole micro-kernel panels), with V and M
   * within about 2 MiB; among those, the widest micro-kernel (it runs
   * faster), then the smallest group (it stays in cache). */
  int64_t best = -1, rows = 1, best_nr = 0;
  for (int64_t r = 1; r <= p->w_th; r++) {
    struct tl_ukr u;
    tl__ukr_pick((r - 1) * p->w_tw + p->w_twp, 1, &u);
    const int64_t ntp = ((r - 1) * p->w_tw + p->w_twp + u.nr - 1) / u.nr * u.nr;
    const int64_t total = (p->w_th + r - 1) / r * ntp;
    if (r > 1 && NPOS * (p->c + p->m) * ntp * (int64_t)sizeof(float) > 2 * 1024 * 1024)
      break;
    if (best < 0 || total < best || (total == best && u.nr > best_nr))
      best = total, rows = r, best_nr = u.nr;
  }
  p->w_rows = rows;
  tl__ukr_pick((rows - 1) * p->w_tw + p->w_twp, 1, &p->w_ukr);
  p->w_ntp = ((rows - 1) * p->w_tw + p->w_twp + p->w_ukr.nr - 1) / p->w_ukr.nr * p->w_ukr.nr;
  /* Multiply-adds of the GEMMs against those of the implicit GEMM (which
   * computes a grid of oh x (ow + 2) outputs); the transforms cost about
   * as much as another 40 % of the GEMMs. */
  const double wino = NPOS * (double)best * 1.4;
  const double direct = 9.0 * (double)(p->oh * (p->ow + 2));
  if (wino >= direct || tiles < 4)
    return TL_EUNSUPPORTED;
  if (NPOS * p->m * p->w_ntp > INT32_MAX / 2 || p->c * p->w_ntp > INT32_MAX / 2)
    return TL_EUNSUPPORTED;

  /* U[xi][k][ci] = (G g G^T)[xi] for filter (k, ci), from the weights as
   * the plan sees them (rows of ldw floats). */
  /* Per position, filters in panels of mr rows, the last one padded. */
  const int64_t mr = p->w_ukr.mr, mp = (p->m + mr - 1) / mr * mr;
  float *u = tl__mem_alloc(c->mem, (size_t)(NPOS * mp * p->c) * sizeof *u);
  int32_t *boff = tl__mem_alloc(c->mem, (size_t)p->c * sizeof *boff);
  if (u == NULL || boff == NULL)
    return TL_ENOMEM;
  const float *w = p->weight;
  for (int64_t k = 0; k < p->m; k++)
    for (int64_t ci = 0; ci < p->c; ci++) {
      const float *g = w + k * p->ldw + ci * 9;
      double gg[ALPHA][3]; /* G g */
      for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < 3; j++)
          gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      /* Packed for tl__gemm_panels: panels of mr rows (filters), k-major. */
      const int64_t at = (k / mr) * mr * p->c + ci * mr + k % mr;
      for (int i = 0; i < ALPHA; i++)
        for (int j = 0; j < ALPHA; j++)
          u[(int64_t)(i * ALPHA + j) * mp * p->c + at] =
              (float)(gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2]);
    }
  for (int64_t ci = 0; ci < p->c; ci++)
    boff[ci] = (int32_t)(ci * p->w_ntp);
  p->w_u = u;
  p->w_boff = boff;
  p->nt = c->threads;
  if (p->nt > 1 && tl__parallel_reserve(p->nt) != 0)
    p->nt = tl__parallel_threads(p->nt);
  *scratch = (size_t)(wino_shared_floats(p) + p->nt * wino_thread_floats(p)) * sizeof(float);
  return 0;
}

/* ----------------------------------------------------- input transform */

/* The six input rows of tile row ty of one channel, split by column phase:
 * P[r][ph][q] = x(4*ty + r - pt, 4*q + ph - pl), zero outside the input,
 * for q < lq = twp + 1. */
static inline __attribute__((always_inline)) void
gather_rows(const struct tl_conv_params *p, const float *xc, int64_t ty, int64_t lq, float *P) {
  for (int r = 0; r < ALPHA; r++) {
    const int64_t iy = 4 * ty + r - p->pt;
    float *pr = P + r * 4 * lq;
    if (iy < 0 || iy >= p->h) {
      for (int64_t q = 0; q < 4 * lq; q++)
        pr[q] = 0.f;
      continue;
    }
    const float *row = xc + iy * p->w;
    for (int ph = 0; ph < 4; ph++) {
      float *dst = pr + ph * lq;
      /* Inside the row for q in [q0, q1): 0 <= 4q + ph - pl < w. */
      const int64_t off = ph - p->pl;
      int64_t q0 = off >= 0 ? 0 : (-off + 3) / 4;
      int64_t q1 = p->w - off <= 0 ? 0 : (p->w - off + 3) / 4;
      q1 = q1 > lq ? lq : q1;
      q0 = q0 > q1 ? q1 : q0;
      for (int64_t q = 0; q < q0; q++)
        dst[q] = 0.f;
      const float *src = row + off;
      for (int64_t q = q0; q < q1; q++)
        dst[q] = src[4 * q];
      for (int64_t q = q1; q < lq; q++)
        dst[q] = 0.f;
    }
  }
}

/* o_i[x] = sum_j B^T[i][j] d_j[x] for x < n. */
static inline __attribute__((always_inline)) void
bt6_cols(const float *restrict d0, const float *restrict d1, const float *restrict d2,
         const float *restrict d3, const float *restrict d4, const float *restrict d5,
         float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
         float *restrict o4, float *restrict o5, int64_t n) {
  for (int64_t x = 0; x < n; x++) {
    const float a = d4[x] - 4.f * d2[x], b = d3[x] - 4.f * d1[x];
    const float c = d4[x] - d2[x], d = 2.f * (d3[x] - d1[x]);
    o0[x] = 4.f * d0[x] - 5.f * d2[x] + d4[x];
    o1[x] = a + b;
    o2[x] = a - b;
    o3[x] = c + d;
    o4[x] = c - d;
    o5[x] = 4.f * d1[x] - 5.f * d3[x] + d5[x];
  }
}

/* out[0..5] = B^T in[0..5], each a vector of n floats (in rows at stride
 * is, out rows at stride os). */
static inline __attribute__((always_inline)) void bt6(const float *restrict in, int64_t is,
                                                      float *restrict out, int64_t os, int64_t n) {
  const float *restrict d0 = in, *restrict d1 = in + is, *restrict d2 = in + 2 * is,
                        *restrict d3 = in + 3 * is, *restrict d4 = in + 4 * is,
                        *restrict d5 = in + 5 * is;
  float *restrict o0 = out, *restrict o1 = out + os, *restrict o2 = out + 2 * os,
                  *restrict o3 = out + 3 * os, *restrict o4 = out + 4 * os,
                  *restrict o5 = out + 5 * os;
  bt6_cols(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5, n);
}

/* V for the tiles of tile row ty of channel ci, at column t0 of V (and
 * junk for the twp - tw tiles after them). */
static inline __attribute__((always_inline)) void input_tile_row(const struct tl_conv_params *p,
                                                                 const float *xc, int64_t ty,
                                                                 float *v, int64_t ci, int64_t t0,
                                                                 float *P, float *T) {
  const int64_t lq = p->w_twp + 1, tw = p->w_twp, vpos = p->c * p->w_ntp;
  gather_rows(p, xc, ty, lq, P);
  /* Rows: T[i] = sum_r B^T[i][r] P[r], over all phases and q at once. */
  bt6(P, 4 * lq, T, 4 * lq, 4 * lq);
  /* Columns: tile tx's column j is phase j % 4 at q = tx + j / 4. */
  for (int i = 0; i < ALPHA; i++) {
    const float *ti = T + i * 4 * lq;
    const float *restrict c0 = ti, *restrict c1 = ti + lq, *restrict c2 = ti + 2 * lq,
                          *restrict c3 = ti + 3 * lq, *restrict c4 = ti + 1,
                          *restrict c5 = ti + lq + 1;
    float *o = v + (int64_t)(i * ALPHA) * vpos + ci * p->w_ntp + t0;
    bt6_cols(c0, c1, c2, c3, c4, c5, o, o + vpos, o + 2 * vpos, o + 3 * vpos, o + 4 * vpos,
             o + 5 * vpos, tw);
  }
}

/* ---------------------------------------------------- output transform */

/* Output rows 4*ty.. of channel k from M (tiles at column t0): the 4 x 4
 * tiles side by side in rows of 4*twp floats at out.  S holds 4 x 6 x twp
 * floats. */
static inline __attribute__((always_inline)) void output_tile_row(const struct tl_conv_params *p,
                                                                  const float *mb, int64_t k,
                                                                  int64_t t0, float *restrict S,
                                                                  float *restrict out) {
  const int64_t tw = p->w_twp, mpos = p->m * p->w_ntp;
  const float *base = mb + k * p->w_ntp + t0;
  /* Rows: S[a][j] = sum_i A^T[a][i] M[i][j]. */
  for (int j = 0; j < ALPHA; j++) {
    const float *restrict m0 = base + (int64_t)j * mpos, *restrict m1 = m0 + ALPHA * mpos,
                          *restrict m2 = m1 + ALPHA * mpos, *restrict m3 = m2 + ALPHA * mpos,
                          *restrict m4 = m3 + ALPHA * mpos, *restrict m5 = m4 + ALPHA * mpos;
    float *restrict s0 = S + j * tw, *restrict s1 = s0 + ALPHA * tw, *restrict s2 = s1 + ALPHA * tw,
                    *restrict s3 = s2 + ALPHA * tw;
    for (int64_t x = 0; x < tw; x++) {
      const float a = m1[x] + m2[x], b = m1[x] - m2[x], c = m3[x] + m4[x], d = m3[x] - m4[x];
      s0[x] = m0[x] + a + c;
      s1[x] = b + 2.f * d;
      s2[x] = a + 4.f * c;
      s3[x] = b + 8.f * d + m5[x];
    }
  }
  /* Columns, interleaved into output rows: row a, column 4x + b. */
  for (int a = 0; a < 4; a++) {
    const float *restrict t0p = S + a * ALPHA * tw, *restrict t1 = t0p + tw, *restrict t2 = t1 + tw,
                          *restrict t3 = t2 + tw, *restrict t4 = t3 + tw, *restrict t5 = t4 + tw;
    float *restrict row = out + a * 4 * tw;
    for (int64_t x = 0; x < tw; x++) {
      const float pa = t1[x] + t2[x], pb = t1[x] - t2[x], pc = t3[x] + t4[x], pd = t3[x] - t4[x];
      row[4 * x] = t0p[x] + pa + pc;
      row[4 * x + 1] = pb + 2.f * pd;
      row[4 * x + 2] = pa + 4.f * pc;
      row[4 * x + 3] = pb + 8.f * pd + t5[x];
    }
  }
}

/* ------------------------------------------------------------------ run */

/* One group of tile rows of one image, as the shares see it. */
struct wino_job {
  const struct tl_conv_params *p;
  const float *x, *shift, *res;
  float *y, *v, *mb, *thread_scratch;
  int64_t ty0, nty, mp;
};

/* Share i of the input transform: input channels [c0, c1). */
TL_CLONES
static void input_share(void *ctx, int i, int n) {
  const struct wino_job *j = ctx;
  const struct tl_conv_params *p = j->p;
  float *P = j->thread_scratch + i * wino_thread_floats(p);
  float *T = P + ALPHA * 4 * (p->w_twp + 1);
  const int64_t c0 = p->c * i / n, c1 = p->c * (i + 1) / n;
  for (int64_t ci = c0; ci < c1; ci++)
    for (int64_t r = 0; r < j->nty; r++)
      input_tile_row(p, j->x + ci * p->h * p->w, j->ty0 + r, j->v, ci, r * p->w_tw, P, T);
}

/* Share i of the GEMMs: positions [x0, x1). */
static void gemm_share(void *ctx, int i, int n) {
  const struct wino_job *j = ctx;
  const struct tl_conv_params *p = j->p;
  const int64_t ntp = p->w_ntp;
  for (int64_t xi = NPOS * i / n; xi < NPOS * (i + 1) / n; xi++)
    tl__gemm_panels(&p->w_ukr, p->m, ntp, p->c, p->w_u + xi * j->mp * p->c, j->v + xi * p->c * ntp,
                    p->w_boff, j->mb + xi * p->m * ntp, ntp);
}

/* Share i of the output transform and epilogue: output channels [m0, m1). */
TL_CLONES
static void output_share(void *ctx, int i, int n) {
  const struct wino_job *j = ctx;
  const struct tl_conv_params *p = j->p;
  const int64_t ohw = p->oh * p->ow, lq = p->w_twp + 1;
  float *S = j->thread_scratch + i * wino_thread_floats(p) + 2 * ALPHA * 4 * lq;
  float *rows = S + 4 * ALPHA * p->w_twp;
  const int64_t m0 = p->m * i / n, m1 = p->m * (i + 1) / n;
  for (int64_t k = m0; k < m1; k++)
    for (int64_t r = 0; r < j->nty; r++) {
      const int64_t oy = 4 * (j->ty0 + r);
      const int64_t n_rows = p->oh - oy < 4 ? p->oh - oy : 4;
      output_tile_row(p, j->mb, k, r * p->w_tw, S, rows);
      tl__conv_epilogue(p, j->shift, k, 1, n_rows, p->ow, rows, 0, 4 * p->w_twp,
                        j->y + k * ohw + oy * p->ow, 0, p->ow,
                        j->res ? j->res + k * ohw + oy * p->ow : NULL);
    }
}

double tl__winograd_busiest(const struct tl_conv_params *p, int n) {
  /* three sections: input transforms by input channel, the GEMMs by
   * position, output transforms by output channel; weighted by their
   * flops per tile (a 6x6 transform each way, the GEMMs' multiply-adds) */
  const double w_in = 432.0 * (double)p->c, w_out = 480.0 * (double)p->m;
  const double w_gemm = 2.0 * NPOS * (double)p->m * (double)p->c;
  return (w_in * tl__chunk_busiest(p->c, n) + w_gemm * tl__chunk_busiest(NPOS, n) +
          w_out * tl__chunk_busiest(p->m, n)) /
         (w_in + w_gemm + w_out);
}

void tl__winograd_run(const struct tl_conv_params *p, const float *x, const float *shift,
                      const float *res, float *y, void *scratch) {
  const int64_t ntp = p->w_ntp;
  const int nt = tl__parallel_threads(p->nt);
  struct wino_job j = {.p = p, .shift = shift};
  j.v = scratch;
  j.mb = j.v + NPOS * p->c * ntp;
  j.thread_scratch = (float *)scratch + wino_shared_floats(p);
  j.mp = (p->m + p->w_ukr.mr - 1) / p->w_ukr.mr * p->w_ukr.mr;
  const int64_t hw = p->h * p->w, ohw = p->oh * p->ow;
  /* Columns past a group's tiles are computed but never read back; zero
   * them once so that nothing reads uninitialized memory. */
  memset(j.v, 0, (size_t)(NPOS * p->c * ntp) * sizeof(float));
  for (int64_t n = 0; n < p->n; n++) {
    j.x = x + n * p->c * hw;
    j.y = y + n * p->m * ohw;
    j.res = res ? res + n * p->m * ohw : NULL;
    for (j.ty0 = 0; j.ty0 < p->w_th; j.ty0 += p->w_rows) {
      j.nty = p->w_th - j.ty0 < p->w_rows ? p->w_th - j.ty0 : p->w_rows;
      tl__parallel_run(nt, input_share, &j);
      tl__parallel_run(nt, gemm_share, &j);
      tl__parallel_run(nt, output_share, &j);
    }
  }
}
