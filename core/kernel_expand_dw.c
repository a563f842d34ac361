/*
 * kernel_expand_dw.c - a 1x1 expansion conv and the depthwise conv after
 * it (the first half of a MobileNet inverted-residual block) as one step,
 * in bands of rows, so that the expanded tensor, the largest of the block
 * (6x the channels), never leaves the cache.
 *
 * Each share of the engine's threads owns a slice of the expanded
 * channels: a depthwise output channel needs only its own expanded
 * channel, so the shares never wait for each other.  A share walks down
 * the image in bands of depthwise output rows; for each it computes the
 * expanded rows the band's taps need (epilogue included: BN and
 * activation) into a buffer that rolls: rows the next band needs again
 * are moved to the front, never recomputed.  The depthwise kernel then
 * runs on the buffer as on an image of that many rows.
 *
 * Invariant: the buffer holds expanded rows [base, next) of the share's
 * channels, row r at (r - base) * w, rows_cap rows per channel.
 */
#include <string.h>

#include "internal.h"

/* Per share, what the expanded rows of a band may take (bytes). */
#define BAND_BYTES (384 * 1024)
/* Expanded tensors smaller than this are left to the unfused steps. */
#define MIN_EXPANDED_BYTES (1536 * 1024)

/* Input rows (of the expanded tensor) that depthwise output rows
 * [oy0, oy1) read, clipped to the image: [*lo, *hi). */
static void band_rows(const struct tl_conv_params *d, int64_t oy0, int64_t oy1, int64_t *lo,
                      int64_t *hi) {
  *lo = oy0 * d->sh - d->pt;
  *hi = (oy1 - 1) * d->sh - d->pt + (d->kh - 1) * d->dh + 1;
  *lo = *lo < 0 ? 0 : *lo;
  *hi = *hi > d->h ? d->h : *hi;
}

/* Channels a share may own: the expanded channels split in whole
 * micro-kernel tiles over nt shares. */
static int64_t share_channels(const struct tl_conv_params *e, int nt) {
  const int64_t mr = e->g_ukr.mr, tiles = (e->m + mr - 1) / mr;
  return (tiles + nt - 1) / nt * mr;
}

/* The window of the depthwise conv over band [oy0, oy1) of output rows,
 * whose input is expanded rows [lo, hi). */
static struct tl_window band_window(const struct tl_conv_params *d, int64_t oy0, int64_t oy1,
                                    int64_t lo, int64_t hi) {
  return (struct tl_window){hi - lo,
                            d->w,
                            oy1 - oy0,
                            d->ow,
                            d->kh,
                            d->kw,
                            d->sh,
                            d->sw,
                            d->dh,
                            d->dw,
                            lo - (oy0 * d->sh - d->pt),
                            d->pl};
}

/* Expanded rows that `band` depthwise output rows read. */
static int64_t rows_for(const struct tl_conv_params *d, int64_t band) {
  return (band - 1) * d->sh + (d->kh - 1) * d->dh + 1;
}

/* The band height (output rows) and the scratch of one share: the GEMM's,
 * the rolling buffer, the depthwise window's; each a multiple of 64
 * bytes. */
static int64_t share_layout(const struct tl_conv_params *e, const struct tl_conv_params *d, int nt,
                            size_t *gemm, size_t *buf, size_t *win) {
  const int64_t ch = share_channels(e, nt);
  int64_t band = 1; /* as many output rows as fit, at least one */
  while (band < d->oh && (size_t)(rows_for(d, band + 1) * d->w * ch) * sizeof(float) <= BAND_BYTES)
    band++;
  *gemm = (tl__gemm_thread_bytes(e) + 63) / 64 * 64;
  *buf = ((size_t)(rows_for(d, band) * d->w * ch) * sizeof(float) + 63) / 64 * 64;
  /* The window's plane depends on the band's output rows, not its input
   * rows: the first band's covers every later (or shorter last) one. */
  const struct tl_window w = band_window(d, 0, band, 0, rows_for(d, band));
  *win = tl__window_scratch_bytes(&w, 1);
  return band;
}

int tl__expand_dw_prepare(struct tl_conv_params *e, struct tl_conv_params *d, size_t *scratch) {
  if (e->kind != TL_CONV_IGEMM || !e->g_direct || e->group != 1 || e->has_res ||
      d->kind != TL_CONV_DEPTHWISE || d->m != d->c || d->c != e->m || d->has_res ||
      d->weight == NULL || d->h != e->oh || d->w != e->ow)
    return TL_EUNSUPPORTED;
  /* It pays only when the expanded tensor would not stay in L2 anyway;
   * for smaller ones the bands' short GEMMs cost more than they save. */
  if ((size_t)(e->n * e->m * e->oh * e->ow) * sizeof(float) < MIN_EXPANDED_BYTES)
    return TL_EUNSUPPORTED;
  const int nt = e->nt < d->nt ? e->nt : d->nt;
  size_t gemm, buf, win;
  e->x_band = share_layout(e, d, nt, &gemm, &buf, &win);
  e->x_rows_cap = rows_for(d, e->x_band);
  e->x_nt = nt;
  *scratch = (gemm + buf + win) * (size_t)nt;
  return 0;
}

struct xdw_job {
  const struct tl_conv_params *e, *d;
  const float *x, *w, *shift_e, *shift_d;
  float *y;
  char *scratch;
  size_t gemm, buf, win;
  int nt;
};

static void xdw_share(void *ctx, int i, int n) {
  const struct xdw_job *j = ctx;
  const struct tl_conv_params *e = j->e, *d = j->d;
  const int64_t ch = share_channels(e, j->nt);
  const int64_t m0 = ch * i, m1 = ch * (i + 1) < e->m ? ch * (i + 1) : e->m;
  (void)n;
  if (m0 >= m1)
    return;
  char *base = j->scratch + (size_t)i * (j->gemm + j->buf + j->win);
  void *gemm_scratch = base;
  float *rows = (float *)(base + j->gemm);
  void *win_scratch = base + j->gemm + j->buf;
  const int64_t w = d->w, cap = e->x_rows_cap * w; /* floats per channel */
  const int64_t hw_e = e->h * e->w, ohw_d = d->oh * d->ow;
  for (int64_t img = 0; img < e->n; img++) {
    const float *x = j->x + img * e->c * hw_e;
    float *y = j->y + img * d->m * ohw_d;
    int64_t have0 = 0, have1 = 0; /* expanded rows in the buffer */
    for (int64_t oy0 = 0; oy0 < d->oh; oy0 += e->x_band) {
      const int64_t oy1 = oy0 + e->x_band < d->oh ? oy0 + e->x_band : d->oh;
      int64_t lo, hi;
      band_rows(d, oy0, oy1, &lo, &hi);
      if (lo >= have1 || lo < have0) {
        have0 = have1 = lo; /* nothing to keep */
      } else if (lo > have0) {
        /* Roll: the rows this band needs again go to the front. */
        for (int64_t c = 0; c < m1 - m0; c++)
          memmove(rows + c * cap, rows + c * cap + (lo - have0) * w,
                  (size_t)((have1 - lo) * w) * sizeof(float));
        have0 = lo;
      }
      if (hi > have1) {
        tl__gemm_1x1_cols(e, x, j->w, j->shift_e, have1 * w, (hi - have1) * w, m0, m1,
                          rows + (have1 - have0) * w, cap, gemm_scratch);
        have1 = hi;
      }
      const struct tl_window win = band_window(d, oy0, oy1, lo, hi);
      tl__dw_band(d, &win, rows, cap, j->shift_d, y + oy0 * d->ow, ohw_d, win_scratch, m0, m1);
    }
  }
}

double tl__expand_dw_busiest(const struct tl_conv_params *e, int n) {
  /* the shares are fixed at prepare: x_nt of them, share_channels each */
  (void)n;
  const int64_t ch = share_channels(e, e->x_nt);
  return e->x_nt <= 1 || e->m <= 0 ? 1 : (double)(ch < e->m ? ch : e->m) / (double)e->m;
}

void tl__expand_dw_run(const struct tl_conv_params *e, const struct tl_conv_params *d,
                       const float *x, const float *w, const float *shift_e, const float *shift_d,
                       float *y, void *scratch) {
  struct xdw_job j = {e, d, x, w, shift_e, shift_d, y, scratch, 0, 0, 0, e->x_nt};
  share_layout(e, d, e->x_nt, &j.gemm, &j.buf, &j.win);
  /* Shares are fixed by the scratch layout; with fewer threads now, the
   * pool runs the extra shares on the caller. */
  tl__parallel_run(j.nt, xdw_share, &j);
}
