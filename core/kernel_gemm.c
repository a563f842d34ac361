/*
 * kernel_gemm.c - convolution as an implicit GEMM, without im2col.
 *
 * The output of a conv is C = A * B with A the weights (m rows of
 * cg*kh*kw, read in place through ldw) and B the im2col matrix: row k =
 * (ci, ky, kx), column j = (oy, ox).  Instead of building B, each input
 * channel is copied once into zero-padded *phase planes*: plane (py, px)
 * holds padded pixel (py + sh*i, px + sw*j) at (i, j), hq x wq floats.
 * Tap (ky, kx) of output (oy, ox) is then the pixel (oy + ky*dh/sh,
 * ox + kx*dw/sw) of plane (ky*dh % sh, kx*dw % sw), so on the *grid* of
 * oh x wq outputs (wq >= ow: the extra columns are computed and dropped)
 * row k of B is the padded buffer itself, shifted by an offset boff[k]
 * precomputed at plan time.  A 1x1 stride-1 conv without padding needs no
 * copy at all: B is the input.
 *
 * The micro-kernel keeps an MR x NR tile of C in registers and, for each
 * k, loads NR consecutive floats of B at boff[k] and broadcasts MR weights.
 * It is compiled for AVX-512 (8 x 32, and 16 x 16 for narrow outputs),
 * AVX2+FMA (6 x 16) and baseline SSE2 (4 x 8); the variant is picked once,
 * by CPU, when a plan is built.  For a 1x1 conv the epilogue (BN scale and
 * shift, activation, residual) runs on the registers before the store;
 * otherwise on each block of output columns while it is still in L2.
 *
 * Invariant: every read of B stays inside the padded buffer (the buffer
 * ends with gemm_slack() zero floats for the junk columns of the last
 * panel), and a 1x1 conv's last, partial panel is copied into scratch so
 * that no read passes the end of the input.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* --------------------------------------------------------- micro-kernels */

/* How a micro-kernel writes its tile: c[r][j] for r < mr, j < nvalid
 * (row stride ldc), adding to what c holds if accumulate; with epi, the
 * fused conv epilogue of the tile's rows (channels) is applied too. */
struct ukr_epi {
  const float *scale, *shift; /* at the tile's first channel; NULL: 1, 0 */
  const float *res;           /* the tile's residual, stride ldc; or NULL */
  float lo1, hi1, lo2, hi2;   /* act1 and act2 as clamps */
  int hardswish;              /* act1 is hardswish (after the clamp) */
};

typedef void (*ukr_fn)(int mr, int64_t kc, const float *a, int64_t lda, int64_t ldk, const float *b,
                       const int32_t *boff, float *c, int64_t ldc, int accumulate, int nvalid,
                       const struct ukr_epi *epi);

/* Defines NAME, an MR x (NV*VW) micro-kernel over the vector type VT of
 * VW floats: c[r][0..nvalid) (+)= sum_k a[r*lda + k*ldk] * b[boff[k] + j],
 * then the epilogue epi (if set) on the registers before the store.
 * VMAX(lo, x) and VMIN(hi, x) must return x when x is NaN.  The body is
 * instantiated for each row count 1..MR so that the tile always lives in
 * registers. */
#define TL_DEFINE_UKR(NAME, ATTR, VT, VW, MR, NV, VMAX, VMIN)                                      \
  static inline __attribute__((always_inline))                                                     \
  ATTR void NAME##_body(const int mr, int64_t kc, const float *a, int64_t lda, int64_t ldk,        \
                        const float *b, const int32_t *boff, float *c, int64_t ldc,                \
                        int accumulate, int nvalid, const struct ukr_epi *epi) {                   \
    VT acc[MR][NV];                                                                                \
    for (int r = 0; r < mr; r++)                                                                   \
      for (int v = 0; v < NV; v++)                                                                 \
        acc[r][v] = (VT){0};                                                                       \
    for (int64_t k = 0; k < kc; k++) {                                                             \
      const float *bk = b + boff[k];                                                               \
      VT bv[NV];                                                                                   \
      for (int v = 0; v < NV; v++)                                                                 \
        memcpy(&bv[v], bk + v * VW, sizeof(VT));                                                   \
      for (int r = 0; r < mr; r++) {                                                               \
        const float av = a[r * lda + k * ldk];                                                     \
        for (int v = 0; v < NV; v++)                                                               \
          acc[r][v] += av * bv[v];                                                                 \
      }                                                                                            \
    }                                                                                              \
    const int full = nvalid == NV * VW;                                                            \
    if (accumulate) {                                                                              \
      for (int r = 0; r < mr; r++)                                                                 \
        for (int v = 0; v < NV; v++) {                                                             \
          VT old = {0};                                                                            \
          if (full)                                                                                \
            memcpy(&old, c + r * ldc + v * VW, sizeof(VT));                                        \
          else                                                                                     \
            for (int j = 0; j < VW && v * VW + j < nvalid; j++)                                    \
              old[j] = c[r * ldc + v * VW + j];                                                    \
          acc[r][v] += old;                                                                        \
        }                                                                                          \
    }                                                                                              \
    if (epi != NULL) {                                                                             \
      const VT lo1 = (VT){0} + epi->lo1, hi1 = (VT){0} + epi->hi1;                                 \
      const VT lo2 = (VT){0} + epi->lo2, hi2 = (VT){0} + epi->hi2;                                 \
      const VT zero = {0}, one = zero + 1.f, sixth = zero + 1.f / 6.f, half = zero + .5f;          \
      for (int r = 0; r < mr; r++) {                                                               \
        const float sc = epi->scale ? epi->scale[r] : 1.f;                                         \
        const float sh = epi->shift ? epi->shift[r] : 0.f;                                         \
        for (int v = 0; v < NV; v++) {                                                             \
          VT x = acc[r][v] * sc + sh;                                                              \
          x = VMIN(hi1, VMAX(lo1, x));                                                             \
          if (epi->hardswish)                                                                      \
            x *= VMIN(one, VMAX(zero, x * sixth + half));                                          \
          if (epi->res != NULL) {                                                                  \
            VT rv = {0};                                                                           \
            const float *rp = epi->res + r * ldc + v * VW;                                         \
            if (full)                                                                              \
              memcpy(&rv, rp, sizeof(VT));                                                         \
            else                                                                                   \
              for (int j = 0; j < VW && v * VW + j < nvalid; j++)                                  \
                rv[j] = rp[j];                                                                     \
            x = VMIN(hi2, VMAX(lo2, x + rv));                                                      \
          }                                                                                        \
          acc[r][v] = x;                                                                           \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
    for (int r = 0; r < mr; r++)                                                                   \
      for (int v = 0; v < NV; v++) {                                                               \
        if (full)                                                                                  \
          memcpy(c + r * ldc + v * VW, &acc[r][v], sizeof(VT));                                    \
        else                                                                                       \
          for (int j = 0; j < VW && v * VW + j < nvalid; j++)                                      \
            c[r * ldc + v * VW + j] = acc[r][v][j];                                                \
      }                                                                                            \
  }                                                                                                \
  ATTR static void NAME(int mr, int64_t kc, const float *a, int64_t lda, int64_t ldk,              \
                        const float *b, const int32_t *boff, float *c, int64_t ldc,                \
                        int accumulate, int nvalid, const struct ukr_epi *epi) {                   \
    switch (mr) {                                                                                  \
    case MR:                                                                                       \
      NAME##_body(MR, kc, a, lda, ldk, b, boff, c, ldc, accumulate, nvalid, epi);                  \
      break;                                                                                       \
      TL_UKR_TAIL_CASES_##MR(NAME, kc, a, lda, ldk, b, boff, c, ldc, accumulate, nvalid, epi)      \
    }                                                                                              \
  }

/* The row counts below MR, one case each. */
/* clang-format off */
#define TL_UKR_CASE(NAME, R, ...) case R: NAME##_body(R, __VA_ARGS__); break;
#define TL_UKR_TAIL_CASES_4(N, ...)                                                                \
  TL_UKR_CASE(N, 1, __VA_ARGS__) TL_UKR_CASE(N, 2, __VA_ARGS__) TL_UKR_CASE(N, 3, __VA_ARGS__)
#define TL_UKR_TAIL_CASES_6(N, ...)                                                                \
  TL_UKR_TAIL_CASES_4(N, __VA_ARGS__) TL_UKR_CASE(N, 4, __VA_ARGS__)                               \
  TL_UKR_CASE(N, 5, __VA_ARGS__)
#define TL_UKR_TAIL_CASES_8(N, ...)                                                                \
  TL_UKR_TAIL_CASES_6(N, __VA_ARGS__) TL_UKR_CASE(N, 6, __VA_ARGS__)                               \
  TL_UKR_CASE(N, 7, __VA_ARGS__)
#define TL_UKR_TAIL_CASES_16(N, ...)                                                               \
  TL_UKR_TAIL_CASES_8(N, __VA_ARGS__) TL_UKR_CASE(N, 8, __VA_ARGS__)                               \
  TL_UKR_CASE(N, 9, __VA_ARGS__) TL_UKR_CASE(N, 10, __VA_ARGS__)                                   \
  TL_UKR_CASE(N, 11, __VA_ARGS__) TL_UKR_CASE(N, 12, __VA_ARGS__)                                  \
  TL_UKR_CASE(N, 13, __VA_ARGS__) TL_UKR_CASE(N, 14, __VA_ARGS__)                                  \
  TL_UKR_CASE(N, 15, __VA_ARGS__)
/* clang-format on */

typedef float v4f __attribute__((vector_size(16), aligned(4)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TL_NO_CLONES)
#include <immintrin.h>
#define TL_HAVE_X86_UKR 1
typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef float v16f __attribute__((vector_size(64), aligned(4)));
/* max/min return their second operand when either is NaN. */
#define MAX4(a, b) ((v4f)_mm_max_ps((a), (b)))
#define MIN4(a, b) ((v4f)_mm_min_ps((a), (b)))
#define MAX8(a, b) ((v8f)_mm256_max_ps((a), (b)))
#define MIN8(a, b) ((v8f)_mm256_min_ps((a), (b)))
#define MAX16(a, b) ((v16f)_mm512_max_ps((a), (b)))
#define MIN16(a, b) ((v16f)_mm512_min_ps((a), (b)))
TL_DEFINE_UKR(ukr_4x8, , v4f, 4, 4, 2, MAX4, MIN4)
TL_DEFINE_UKR(ukr_6x16, __attribute__((target("arch=x86-64-v3"))), v8f, 8, 6, 2, MAX8, MIN8)
TL_DEFINE_UKR(ukr_8x32, __attribute__((target("arch=x86-64-v4"))), v16f, 16, 8, 2, MAX16, MIN16)
#else
/* Elsewhere: plain element loops that the compiler may vectorize. */
static inline v4f max4(v4f lo, v4f x) {
  for (int j = 0; j < 4; j++)
    x[j] = x[j] < lo[j] ? lo[j] : x[j];
  return x;
}
static inline v4f min4(v4f hi, v4f x) {
  for (int j = 0; j < 4; j++)
    x[j] = x[j] > hi[j] ? hi[j] : x[j];
  return x;
}
TL_DEFINE_UKR(ukr_4x8, , v4f, 4, 4, 2, max4, min4)
#endif

/* ------------------------------------------------------------ selection */

#ifdef TL_HAVE_X86_UKR
TL_DEFINE_UKR(ukr_16x16, __attribute__((target("arch=x86-64-v4"))), v16f, 16, 16, 1, MAX16, MIN16)
TL_DEFINE_UKR(ukr_8x16, __attribute__((target("arch=x86-64-v4"))), v16f, 16, 8, 1, MAX16, MIN16)
#endif

/* For the last panel of a GEMM whose micro-kernel u is 32 columns wide:
 * the 16-column kernel with the same rows, which reads the same packed
 * panels; u itself when there is none. */
static struct tl_ukr ukr_narrow(const struct tl_ukr *u) {
#ifdef TL_HAVE_X86_UKR
  if (u->fn == (void (*)(void))ukr_8x32)
    return (struct tl_ukr){(void (*)(void))ukr_8x16, 8, 16};
#endif
  return *u;
}

/* The micro-kernel for a GEMM with n columns: the widest tile this CPU
 * runs, or, if tall (A is packed in panels, so that its 16 rows do not
 * fight over cache sets), the narrower AVX-512 one when it wastes fewer
 * columns.
 * TL_GEMM_ISA=sse|avx2 in the environment forces a lesser one (for tests:
 * this is how the portable kernels get exercised on an AVX-512 machine). */
void tl__ukr_pick(int64_t n, int tall, struct tl_ukr *u) {
  const char *force = getenv("TL_GEMM_ISA");
  int level = 3;
  if (force != NULL && strcmp(force, "sse") == 0)
    level = 1;
  else if (force != NULL && strcmp(force, "avx2") == 0)
    level = 2;
  *u = (struct tl_ukr){(void (*)(void))ukr_4x8, 4, 8};
#ifdef TL_HAVE_X86_UKR
  __builtin_cpu_init();
  if (level >= 3 && __builtin_cpu_supports("x86-64-v4")) {
    const int64_t w32 = (n + 31) / 32 * 32, w16 = (n + 15) / 16 * 16;
    if (tall && w16 < w32)
      *u = (struct tl_ukr){(void (*)(void))ukr_16x16, 16, 16};
    else
      *u = (struct tl_ukr){(void (*)(void))ukr_8x32, 8, 32};
  } else if (level >= 2 && __builtin_cpu_supports("x86-64-v3")) {
    *u = (struct tl_ukr){(void (*)(void))ukr_6x16, 6, 16};
  }
#endif
  (void)n;
  (void)level;
}

/* K is split in blocks of at most KC so that one panel's B stays in L1,
 * and A's rows in blocks of MC so that a block of weights stays in L2. */
#define KC 256
#define MC 192

void tl__gemm_panels(const struct tl_ukr *u, int64_t m, int64_t n, int64_t k, const float *a,
                     const float *b, const int32_t *boff, float *c, int64_t ldc) {
  const ukr_fn ukr = (ukr_fn)u->fn;
  for (int64_t k0 = 0; k0 < k; k0 += KC) {
    const int64_t kc = k - k0 < KC ? k - k0 : KC;
    for (int64_t jr = 0; jr < n; jr += u->nr)
      for (int64_t ir = 0; ir < m; ir += u->mr) {
        const int mr = (int)(m - ir < u->mr ? m - ir : u->mr);
        ukr(mr, kc, a + ir * k + k0 * u->mr, 1, u->mr, b + jr, boff + k0, c + ir * ldc + jr, ldc,
            k0 > 0, u->nr, NULL);
      }
  }
}

/* ------------------------------------------------------------ geometry */

/* Floats of zeros after the padded buffer: the last panel may run NR
 * columns past the grid, plus the largest tap offset within a plane. */
static int64_t gemm_slack(const struct tl_conv_params *p) {
  return p->g_ukr.nr + ((p->kh - 1) * p->dh / p->sh + 1) * p->g_wq + p->g_wq;
}

/* Floats of the padded buffer of one group, slack included. */
static int64_t gemm_buf_floats(const struct tl_conv_params *p) {
  if (p->g_direct)
    return 0;
  return p->c / p->group * p->g_nph * p->g_plane + gemm_slack(p);
}

/* Scratch bytes of one share: a C block (mg x ncr) and, for a 1x1 conv
 * on its input in place, a block's packed panels (min(KC, kdim) x ncr);
 * at least kdim floats for a gemv column. */
static size_t gemm_thread_bytes(const struct tl_conv_params *p) {
  const int64_t mg = p->m / p->group, kdim = p->c / p->group * p->kh * p->kw;
  const int64_t ncr = (p->nb + p->g_ukr.nr - 1) / p->g_ukr.nr * p->g_ukr.nr;
  /* Only a 1x1 conv reading its input in place packs panels (kc <=
   * min(KC, kdim) rows of ncr columns); the others read padded planes. */
  const int64_t kc = kdim < KC ? kdim : KC;
  const int64_t packed = p->g_direct && kc * ncr > kdim ? kc * ncr : kdim;
  const size_t bytes = (size_t)(mg * ncr + packed) * sizeof(float);
  return (bytes + 63) / 64 * 64; /* shares never share a cache line */
}

int tl__gemm_conv_prepare(struct tl_prep *c, struct tl_conv_params *p, size_t *scratch) {
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  const int64_t kdim = cg * p->kh * p->kw;
  p->g_direct = p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->pt == 0 && p->pl == 0 &&
                p->oh == p->h && p->ow == p->w;
  if (p->g_direct) {
    p->g_hq = p->h, p->g_wq = p->w;
  } else {
    p->g_hq = p->oh + (p->kh - 1) * p->dh / p->sh;
    p->g_wq = p->ow + (p->kw - 1) * p->dw / p->sw;
  }
  p->g_plane = p->g_hq * p->g_wq;
  tl__ukr_pick(p->oh * p->g_wq, 0, &p->g_ukr);
  p->g_narrow = ukr_narrow(&p->g_ukr);
  /* A 1x1 conv whose columns end one or two past a multiple of 16 (49 for
   * 7x7) computes those columns as matrix-vector products instead of a
   * mostly empty panel. */
  const int64_t tail = p->oh * p->ow % 16;
  p->g_gemv_cols = p->g_direct && p->oh * p->ow > 16 && tail <= 2 ? tail : 0;
  /* Only the phases some tap reads get a plane (a 1x1 stride-2 conv reads
   * one of four): phase_y/phase_x map a phase to its plane index, or -1. */
  int n_py = 0, n_px = 0;
  for (int i = 0; i < TL_MAX_PHASES; i++)
    p->g_phase_y[i] = p->g_phase_x[i] = -1;
  if (p->sh > TL_MAX_PHASES || p->sw > TL_MAX_PHASES)
    return TL_EUNSUPPORTED;
  for (int64_t ky = 0; ky < p->kh; ky++)
    if (p->g_phase_y[ky * p->dh % p->sh] < 0)
      p->g_phase_y[ky * p->dh % p->sh] = (int8_t)n_py++;
  for (int64_t kx = 0; kx < p->kw; kx++)
    if (p->g_phase_x[kx * p->dw % p->sw] < 0)
      p->g_phase_x[kx * p->dw % p->sw] = (int8_t)n_px++;
  p->g_nph = p->g_direct ? 1 : n_py * n_px;
  const int64_t buf = gemm_buf_floats(p);
  if (buf > INT32_MAX / 2 || cg * p->g_plane > INT32_MAX / 2)
    return TL_EUNSUPPORTED; /* offsets are int32: the caller uses im2col */
  int32_t *boff = tl__mem_alloc(c->mem, (size_t)(2 * kdim) * sizeof *boff);
  if (boff == NULL)
    return TL_ENOMEM;
  for (int64_t ci = 0, k = 0; ci < cg; ci++)
    for (int64_t ky = 0; ky < p->kh; ky++)
      for (int64_t kx = 0; kx < p->kw; kx++, k++) {
        const int64_t ry = ky * p->dh, rx = kx * p->dw;
        const int64_t ph =
            p->g_direct ? 0 : p->g_phase_y[ry % p->sh] * n_px + p->g_phase_x[rx % p->sw];
        boff[k] = (int32_t)((ci * p->g_nph + ph) * p->g_plane + ry / p->sh * p->g_wq + rx / p->sw);
        boff[kdim + k] = (int32_t)(k * p->g_ukr.nr); /* a packed panel */
      }
  p->g_boff = boff;
  /* Columns per block: whole grid rows, about 32K floats of C in all, so
   * that the block is still in L2 when the epilogue runs. */
  int64_t nc = (32 * 1024) / (mg > 0 ? mg : 1);
  nc = nc < 4 * p->g_ukr.nr ? 4 * p->g_ukr.nr : nc;
  int64_t rows = nc / p->g_wq;
  rows = rows < 1 ? 1 : (rows > p->oh ? p->oh : rows);
  p->nb = rows * p->g_wq;
  /* scratch: the padded planes, then per thread a C block and a panel. */
  p->nt = c->threads;
  if (p->nt > 1 && tl__parallel_reserve(p->nt) != 0)
    p->nt = tl__parallel_threads(p->nt);
  *scratch = (size_t)buf * sizeof(float) + (size_t)p->nt * gemm_thread_bytes(p);
  return 0;
}

/* ------------------------------------------------------------------ fill */

/* Copies input channels [c0, c1) of one group into the zero-padded planes
 * of the phases taps read. */
TL_CLONES
static void gemm_fill(const struct tl_conv_params *p, int64_t c0, int64_t c1, const float *x,
                      float *buf) {
  const int64_t hq = p->g_hq, wq = p->g_wq, sh = p->sh, sw = p->sw;
  float *dst = buf + c0 * p->g_nph * p->g_plane;
  for (int64_t ci = c0; ci < c1; ci++) {
    const float *xc = x + ci * p->h * p->w;
    for (int64_t py = 0; py < sh; py++) {
      if (p->g_phase_y[py] < 0)
        continue;
      for (int64_t px = 0; px < sw; px++) {
        if (p->g_phase_x[px] < 0)
          continue;
        /* Columns j with input column ix = px + sw*j - pl in [0, w). */
        int64_t j0 = px >= p->pl ? 0 : (p->pl - px + sw - 1) / sw;
        int64_t j1 = p->w + p->pl - px <= 0 ? 0 : (p->w + p->pl - px + sw - 1) / sw;
        j1 = j1 > wq ? wq : j1;
        j0 = j0 > j1 ? j1 : j0;
        for (int64_t i = 0; i < hq; i++, dst += wq) {
          const int64_t iy = py + sh * i - p->pt;
          if (iy < 0 || iy >= p->h) {
            for (int64_t j = 0; j < wq; j++)
              dst[j] = 0.f;
            continue;
          }
          const float *src = xc + iy * p->w + px - p->pl;
          for (int64_t j = 0; j < j0; j++)
            dst[j] = 0.f;
          if (sw == 1) {
            for (int64_t j = j0; j < j1; j++)
              dst[j] = src[j];
          } else if (sw == 2) {
            for (int64_t j = j0; j < j1; j++)
              dst[j] = src[2 * j];
          } else {
            for (int64_t j = j0; j < j1; j++)
              dst[j] = src[j * sw];
          }
          for (int64_t j = j1; j < wq; j++)
            dst[j] = 0.f;
        }
      }
    }
  }
}

/* ------------------------------------------------------------------- run */

/* Fills epi's clamps from p's activations; 0 if they are not clamps
 * (act1 may be hardswish). */
static int ukr_epi_acts(const struct tl_conv_params *p, struct ukr_epi *epi) {
  const struct tl_act_params *a[2] = {&p->act1, &p->act2};
  float lo[2], hi[2];
  memset(epi, 0, sizeof *epi);
  for (int i = 0; i < 2; i++) {
    lo[i] = -INFINITY, hi[i] = INFINITY;
    switch (a[i]->type) {
    case TL_ACT_NONE: break;
    case TL_ACT_RELU: lo[i] = 0.f; break;
    case TL_ACT_CLIP: lo[i] = a[i]->a, hi[i] = a[i]->b; break;
    case TL_ACT_HARDSWISH:
      if (i == 1)
        return 0;
      epi->hardswish = 1;
      break;
    default: return 0;
    }
  }
  epi->lo1 = lo[0], epi->hi1 = hi[0], epi->lo2 = lo[1], epi->hi2 = hi[1];
  return 1;
}

/* Copies a panel of kc rows of B (nvalid columns of row k at b + off[k])
 * into dst, nr floats per row, zero-filled past nvalid. */
TL_CLONES
static void pack_panel(int64_t kc, const float *b, const int32_t *off, int nvalid, int nr,
                       float *dst) {
  for (int64_t k = 0; k < kc; k++) {
    const float *src = b + off[k];
    float *d = dst + k * nr;
    int j = 0;
    for (; j < nvalid; j++)
      d[j] = src[j];
    for (; j < nr; j++)
      d[j] = 0.f;
  }
}

/* ------------------------------------------------------------------ gemv */

/* y[i] = sum_k a[i*lda + k] x[k] for rows [i0, i1): four rows at a time,
 * each summed in 8 lanes (independent sums hide the FMA latency). */
TL_CLONES
static void gemv_rows(const float *a, int64_t lda, const float *x, int64_t k, float *y, int64_t i0,
                      int64_t i1) {
  typedef float v8 __attribute__((vector_size(32), aligned(4)));
  const int64_t kv = k / 8 * 8;
  for (int64_t i = i0; i < i1; i += 4) {
    const int rows = i1 - i < 4 ? (int)(i1 - i) : 4;
    const float *ar[4];
    v8 acc[4] = {{0}};
    for (int r = 0; r < 4; r++)
      ar[r] = a + (i + (r < rows ? r : 0)) * lda;
    for (int64_t j = 0; j < kv; j += 8) {
      v8 xv;
      memcpy(&xv, x + j, sizeof xv);
      for (int r = 0; r < 4; r++) {
        v8 av;
        memcpy(&av, ar[r] + j, sizeof av);
        acc[r] += av * xv;
      }
    }
    for (int r = 0; r < rows; r++) {
      float sum = 0.f;
      for (int l = 0; l < 8; l++)
        sum += acc[r][l];
      for (int64_t j = kv; j < k; j++)
        sum += ar[r][j] * x[j];
      y[i + r] = sum;
    }
  }
}

struct gemv_job {
  const float *a, *x;
  int64_t lda, m, k;
  float *y;
};

static void gemv_share(void *ctx, int i, int n) {
  const struct gemv_job *j = ctx;
  /* Shares of whole groups of 4 rows. */
  const int64_t groups = (j->m + 3) / 4;
  const int64_t g0 = groups * i / n, g1 = groups * (i + 1) / n;
  const int64_t r0 = g0 * 4, r1 = g1 * 4 < j->m ? g1 * 4 : j->m;
  if (r0 < r1)
    gemv_rows(j->a, j->lda, j->x, j->k, j->y, r0, r1);
}

/* Split only when each share has real work (a classifier, not an SE
 * block's few hundred multiply-adds). */
#define GEMV_SPLIT_MACS 65536

void tl__gemv(const float *a, int64_t lda, int64_t m, int64_t k, const float *x, float *y,
              int threads) {
  struct gemv_job job = {a, x, lda, m, k, y};
  tl__parallel_run(m * k >= GEMV_SPLIT_MACS ? tl__parallel_threads(threads) : 1, gemv_share, &job);
}

double tl__gemv_busiest(int64_t m, int64_t k, int n) {
  return m * k >= GEMV_SPLIT_MACS ? tl__chunk_busiest((m + 3) / 4, n) : 1;
}

/* A 1x1 conv over a 1x1 image (SE blocks): one gemv per group. */
static void gemv_conv(const struct tl_conv_params *p, const float *x, const float *w,
                      const float *shift, const float *res, float *y) {
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t g = 0; g < p->group; g++) {
      float *yg = y + n * p->m + g * mg;
      tl__gemv(w + g * mg * p->ldw, p->ldw, mg, cg, x + n * p->c + g * cg, yg, p->nt);
      tl__conv_epilogue(p, shift, g * mg, mg, 1, 1, yg, 1, 0, yg, 1, 0,
                        res ? res + n * p->m + g * mg : NULL);
    }
}

/* ------------------------------------------------------------------ run */

/* One image and group of a conv, as the shares see it. */
struct gemm_job {
  const struct tl_conv_params *p;
  const float *x;         /* the group's input channels */
  const float *w;         /* the group's weight rows */
  const float *shift;     /* at the group's first channel */
  const float *res;       /* the group's residual channels, or NULL */
  float *y;               /* the group's output channels */
  int64_t ldy;            /* floats between y's channels (direct); oh * ow */
  int64_t y_col0, y_row0; /* the column and channel y starts at (direct) */
  const float *b;         /* B: the padded planes, or the input (direct) */
  float *buf;             /* the padded planes */
  char *thread_scratch;   /* per share: C block, then a packed panel */
  size_t thread_bytes;
  int64_t g; /* group, for the scale and shift index */
};

static void fill_share(void *ctx, int i, int n) {
  const struct gemm_job *j = ctx;
  const struct tl_conv_params *p = j->p;
  const int64_t cg = p->c / p->group;
  const int64_t c0 = cg * i / n, c1 = cg * (i + 1) / n;
  gemm_fill(p, c0, c1, j->x, j->buf);
  if (i == n - 1)
    memset(j->buf + cg * p->g_nph * p->g_plane, 0, (size_t)gemm_slack(p) * sizeof(float));
}

/* Output rows (channels) [m0, m1) of columns [j0, j0 + nb) of the grid,
 * epilogue included.  Loops as BLIS does: K in blocks of KC; B's panels
 * (copied, for a 1x1 conv) stay in L2 while the weights go by in blocks
 * of MC rows, each read once from memory and then from L2 for every
 * panel. */
static void gemm_cols(const struct gemm_job *j, int64_t j0, int64_t nb, int64_t m0, int64_t m1,
                      float *cblk, float *packed) {
  const struct tl_conv_params *p = j->p;
  const ukr_fn ukr = (ukr_fn)p->g_ukr.fn;
  const int64_t mr = p->g_ukr.mr, nr = p->g_ukr.nr;
  const int64_t mg = p->m / p->group, kdim = p->c / p->group * p->kh * p->kw;
  const int64_t ohw = p->oh * p->ow;
  const int64_t ncr = (p->nb + nr - 1) / nr * nr;
  const int32_t *boff = p->g_boff, *panel_off = p->g_boff + kdim;
  /* The epilogue runs in the micro-kernel when C is the output itself and
   * the activations are clamps (or hardswish first). */
  struct ukr_epi epi;
  const int fused = p->g_direct && ukr_epi_acts(p, &epi);
  /* Direct: C is y itself.  Otherwise a block of whole grid rows. */
  const int64_t ldc = p->g_direct ? j->ldy : ncr;
  const int64_t row0 = p->g_direct ? j->y_row0 : 0; /* C's first row is channel row0 */
  float *cb = p->g_direct ? j->y + (j0 - j->y_col0) : cblk;
  /* Input rows of a 1x1 conv are far apart (cache set conflicts) and the
   * last panel must not read past the input: copy the panels, unless so
   * few tiles read each that the copy costs more. */
  const int pack = p->g_direct && (nb % nr != 0 || m1 - m0 > 2 * mr);
  for (int64_t k0 = 0; k0 < kdim; k0 += KC) {
    const int64_t kc = kdim - k0 < KC ? kdim - k0 : KC;
    const int last = k0 + kc == kdim;
    if (pack)
      for (int64_t jr = 0; jr < nb; jr += nr)
        pack_panel(kc, j->b + j0 + jr, boff + k0, (int)(nb - jr < nr ? nb - jr : nr), (int)nr,
                   packed + jr * kc);
    for (int64_t ic = m0; ic < m1; ic += MC) {
      const int64_t ic1 = m1 - ic < MC ? m1 : ic + MC;
      for (int64_t jr = 0; jr < nb; jr += nr) {
        const int nvalid = (int)(nb - jr < nr ? nb - jr : nr);
        const float *bp = pack ? packed + jr * kc : j->b + j0 + jr;
        const int32_t *off = pack ? panel_off : boff + k0;
        const int nv = p->g_direct ? nvalid : (int)nr;
        /* A last panel of at most 16 columns: the narrow kernel. */
        const ukr_fn uk = nv <= p->g_narrow.nr ? (ukr_fn)p->g_narrow.fn : ukr;
        for (int64_t ir = ic; ir < ic1; ir += mr) {
          const int m = (int)(ic1 - ir < mr ? ic1 - ir : mr);
          struct ukr_epi *e = NULL;
          if (fused && last) {
            e = &epi;
            e->scale = p->scale ? p->scale + j->g * mg + ir : NULL;
            e->shift = j->shift ? j->shift + ir : NULL;
            e->res = j->res ? j->res + ir * ldc + j0 + jr : NULL;
          }
          uk(m, kc, j->w + ir * p->ldw + k0, p->ldw, 1, bp, off, cb + (ir - row0) * ldc + jr, ldc,
             k0 > 0, nv, e);
        }
      }
    }
  }
  if (fused)
    return; /* done in the micro-kernel */
  /* The epilogue takes the conv's shift from the group's first channel:
   * index k0 of tl__conv_epilogue counts from there. */
  const float *shift0 = j->shift ? j->shift - j->g * mg : NULL;
  if (p->g_direct) {
    tl__conv_epilogue(p, shift0, j->g * mg + m0, m1 - m0, 1, nb, cb + (m0 - row0) * ldc, ldc, 0,
                      cb + (m0 - row0) * ldc, ldc, 0, j->res ? j->res + m0 * ldc + j0 : NULL);
  } else {
    const int64_t oy0 = j0 / p->g_wq, rows = nb / p->g_wq;
    tl__conv_epilogue(p, shift0, j->g * mg + m0, m1 - m0, rows, p->ow, cblk + m0 * ncr, ncr,
                      p->g_wq, j->y + m0 * ohw + oy0 * p->ow, ohw, p->ow,
                      j->res ? j->res + m0 * ohw + oy0 * p->ow : NULL);
  }
}

/* Output rows (channels) [m0, m1) of the column block at j0: its panels,
 * and the gemv columns if the block holds them. */
static void gemm_block(const struct gemm_job *j, int64_t j0, int64_t m0, int64_t m1, float *cblk,
                       float *packed) {
  const struct tl_conv_params *p = j->p;
  const int64_t mg = p->m / p->group, kdim = p->c / p->group * p->kh * p->kw;
  const int64_t ohw = p->oh * p->ow, grid = p->oh * p->g_wq;
  const int64_t panels_end = grid - p->g_gemv_cols; /* columns the panels compute */
  const int64_t nb = panels_end - j0 < p->nb ? panels_end - j0 : p->nb;
  gemm_cols(j, j0, nb, m0, m1, cblk, packed);
  if (panels_end < j0 || panels_end >= j0 + p->nb)
    return;
  /* The gemv columns: gather column col of B, one dot product per output
   * channel into the C block, then the epilogue. */
  const float *shift0 = j->shift ? j->shift - j->g * mg : NULL;
  for (int64_t col = panels_end; col < grid; col++) {
    for (int64_t k = 0; k < kdim; k++)
      packed[k] = j->b[p->g_boff[k] + col];
    gemv_rows(j->w, p->ldw, packed, kdim, cblk, m0, m1);
    tl__conv_epilogue(p, shift0, j->g * mg + m0, m1 - m0, 1, 1, cblk + m0, 1, 0,
                      j->y + m0 * ohw + col, ohw, 0, j->res ? j->res + m0 * ohw + col : NULL);
  }
}

/* Share i of n: whole column blocks when there are enough of them, else
 * a slice of the output channels of every block. */
static void gemm_share(void *ctx, int i, int n) {
  const struct gemm_job *j = ctx;
  const struct tl_conv_params *p = j->p;
  const int64_t mr = p->g_ukr.mr, mg = p->m / p->group;
  const int64_t grid = p->oh * p->g_wq, nblk = (grid + p->nb - 1) / p->nb;
  const int64_t ncr = (p->nb + p->g_ukr.nr - 1) / p->g_ukr.nr * p->g_ukr.nr;
  float *cblk = (float *)(j->thread_scratch + (size_t)i * j->thread_bytes);
  float *packed = cblk + mg * ncr;
  if (nblk >= n || n == 1) {
    for (int64_t b = i; b < nblk; b += n)
      gemm_block(j, b * p->nb, 0, mg, cblk, packed);
    return;
  }
  const int64_t tiles = (mg + mr - 1) / mr;
  const int64_t m0 = tiles * i / n * mr, m1 = tiles * (i + 1) / n * mr;
  for (int64_t b = 0; b < nblk && m0 < mg; b++)
    gemm_block(j, b * p->nb, m0, m1 < mg ? m1 : mg, cblk, packed);
}

void tl__gemm_conv_run(const struct tl_conv_params *p, const float *x, const float *w,
                       const float *shift, const float *res, float *y, void *scratch) {
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  const int64_t hw = p->h * p->w, ohw = p->oh * p->ow;
  if (p->g_direct && ohw == 1) {
    gemv_conv(p, x, w, shift, res, y);
    return;
  }
  const int nt = tl__parallel_threads(p->nt);
  for (int64_t n = 0; n < p->n; n++)
    for (int64_t g = 0; g < p->group; g++) {
      struct gemm_job job = {
          .p = p,
          .x = x + (n * p->c + g * cg) * hw,
          .w = w + g * mg * p->ldw,
          .shift = shift ? shift + g * mg : NULL,
          .res = res ? res + (n * p->m + g * mg) * ohw : NULL,
          .y = y + (n * p->m + g * mg) * ohw,
          .ldy = ohw,
          .buf = scratch,
          .thread_scratch = (char *)scratch + gemm_buf_floats(p) * sizeof(float),
          .thread_bytes = gemm_thread_bytes(p),
          .g = g,
      };
      job.b = job.x;
      if (!p->g_direct) {
        tl__parallel_run(nt, fill_share, &job);
        job.b = job.buf;
      }
      tl__parallel_run(nt, gemm_share, &job);
    }
}

double tl__gemm_conv_busiest(const struct tl_conv_params *p, int n) {
  const int64_t cg = p->c / p->group, mg = p->m / p->group;
  if (p->g_direct && p->oh * p->ow == 1)
    return tl__gemv_busiest(mg, cg, n);
  /* as gemm_share: column blocks when there are enough, else row tiles */
  const int64_t grid = p->oh * p->g_wq, nblk = (grid + p->nb - 1) / p->nb;
  const double gemm = nblk >= n ? tl__chunk_busiest(nblk, n)
                                : tl__chunk_busiest((mg + p->g_ukr.mr - 1) / p->g_ukr.mr, n);
  if (p->g_direct)
    return gemm;
  /* and fill_share's input channels, weighted by the work of each */
  const double w_gemm = 2.0 * (double)(mg * cg * p->kh * p->kw) * (double)grid;
  const double w_fill = (double)(cg * p->g_nph) * (double)p->g_plane;
  return (w_gemm * gemm + w_fill * tl__chunk_busiest(cg, n)) / (w_gemm + w_fill);
}

void tl__gemm_1x1_cols(const struct tl_conv_params *p, const float *x, const float *w,
                       const float *shift, int64_t col0, int64_t ncols, int64_t m0, int64_t m1,
                       float *c, int64_t ldc, void *scratch) {
  /* C's column col0 is column 0 of c, and its row m0 is c's first. */
  struct gemm_job j = {.p = p,
                       .x = x,
                       .w = w,
                       .shift = shift,
                       .b = x,
                       .y = c,
                       .ldy = ldc,
                       .y_col0 = col0,
                       .y_row0 = m0};
  const int64_t ncr = (p->nb + p->g_ukr.nr - 1) / p->g_ukr.nr * p->g_ukr.nr;
  float *packed = (float *)scratch + (p->m / p->group) * ncr;
  for (int64_t j0 = col0; j0 < col0 + ncols; j0 += p->nb)
    gemm_cols(&j, j0, col0 + ncols - j0 < p->nb ? col0 + ncols - j0 : p->nb, m0, m1, NULL, packed);
}

size_t tl__gemm_thread_bytes(const struct tl_conv_params *p) { return gemm_thread_bytes(p); }
