/*
 * plan_info.c - what a built plan says about itself: each step's
 * signature (the latency predictor's key), its kind and multiply-adds,
 * the share of its work its busiest thread does, and the bytes one run
 * really touches.  Nothing here changes a plan's results.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "plan.h"

/* ----------------------------------------------------------- signatures */

/* Appends printf-style text at *pos of buf (len bytes), keeping track of
 * what would have been written so the caller can tell truncation. */
static void sig_add(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sig_add(char *buf, size_t len, size_t *pos, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
  va_end(ap);
  if (n > 0)
    *pos += (size_t)n;
}

static void sig_shape(char *buf, size_t len, size_t *pos, const struct tl_tensor *t) {
  sig_add(buf, len, pos, "%s", t->dtype == TL_DTYPE_FLOAT32 ? "f" : "x");
  for (int d = 0; d < t->shape.ndim; d++)
    sig_add(buf, len, pos, "%s%lld", d ? "x" : "", (long long)t->shape.dims[d]);
}

static void sig_conv(char *buf, size_t len, size_t *pos, const struct tl_conv_params *c) {
  sig_add(buf, len, pos, " conv%d k%lldx%lld s%lldx%lld d%lldx%lld p%lldx%lld g%lld", (int)c->kind,
          (long long)c->kh, (long long)c->kw, (long long)c->sh, (long long)c->sw, (long long)c->dh,
          (long long)c->dw, (long long)c->pt, (long long)c->pl, (long long)c->group);
}

int tl_plan_step_signature(const struct tl_plan *plan, int i, char *buf, size_t len) {
  assert(i >= 0 && i < plan->n_steps);
  const struct tl_step *s = &plan->steps[i];
  size_t pos = 0;
  if (len > 0)
    buf[0] = '\0';
  sig_add(buf, len, &pos, "%s", s->kind);
  for (int k = 0; k < s->n_in; k++) {
    sig_add(buf, len, &pos, k ? "," : " in=");
    if (s->in_val[k] < 0)
      sig_add(buf, len, &pos, "-");
    else
      sig_shape(buf, len, &pos, &s->in[k]);
  }
  for (int k = 0; k < s->n_out; k++) {
    sig_add(buf, len, &pos, k ? "," : " out=");
    if (s->out_val[k] >= 0)
      sig_shape(buf, len, &pos, &s->out[k]);
  }
  if (s->op == TL_OP_CONV) {
    sig_conv(buf, len, &pos, &s->p.conv);
    if (s->p.conv.x_dw != NULL)
      sig_conv(buf, len, &pos, s->p.conv.x_dw);
  } else if (s->op == TL_OP_MAXPOOL || s->op == TL_OP_AVGPOOL) {
    const struct tl_pool_params *q = &s->p.pool;
    sig_add(buf, len, &pos, " k%lldx%lld s%lldx%lld", (long long)q->kh, (long long)q->kw,
            (long long)q->sh, (long long)q->sw);
  }
  sig_add(buf, len, &pos, " t%d", plan->threads);
  return pos < len ? 0 : TL_ERANGE;
}

/* ---------------------------------------------------------- memory use */

/* Bytes of buf[0..n) that differ from the fill byte. */
static size_t count_written(const unsigned char *buf, size_t n, unsigned char fill) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    k += buf[i] != fill;
  return k;
}

int tl_plan_touched_bytes(struct tl_plan *plan, size_t *arena_bytes, size_t *scratch_bytes) {
  /* The inputs live in the arena: keep them across the fill. */
  size_t in_total = 0;
  for (int i = 0; i < plan->n_inputs; i++)
    in_total +=
        (size_t)tl_shape_numel(&plan->inputs[i].shape) * tl_dtype_size(plan->inputs[i].dtype);
  unsigned char *saved = malloc(in_total ? in_total : 1);
  if (saved == NULL)
    return TL_ENOMEM;
  size_t off = 0;
  for (int i = 0; i < plan->n_inputs; i++) {
    size_t n =
        (size_t)tl_shape_numel(&plan->inputs[i].shape) * tl_dtype_size(plan->inputs[i].dtype);
    memcpy(saved + off, plan->inputs[i].data, n);
    off += n;
  }
  const unsigned char fill = 0xa5; /* as a float, -2.9e-16: no kernel writes it by chance */
  if (plan->arena_bytes)
    memset(plan->arena, fill, plan->arena_bytes);
  if (plan->scratch_bytes)
    memset(plan->scratch, fill, plan->scratch_bytes);
  off = 0;
  for (int i = 0; i < plan->n_inputs; i++) {
    size_t n =
        (size_t)tl_shape_numel(&plan->inputs[i].shape) * tl_dtype_size(plan->inputs[i].dtype);
    memcpy(plan->inputs[i].data, saved + off, n);
    off += n;
  }
  free(saved);
  tl_plan_run(plan);
  *arena_bytes = plan->arena_bytes ? count_written(plan->arena, plan->arena_bytes, fill) : 0;
  *scratch_bytes =
      plan->scratch_bytes ? count_written(plan->scratch, plan->scratch_bytes, fill) : 0;
  return 0;
}

/* ------------------------------------------------------------ step info */

int tl_plan_n_steps(const struct tl_plan *plan) { return plan->n_steps; }

/* OpenBLAS splits what it finds large enough; assume it splits evenly. */
static double blas_busiest(const struct tl_step *s, int threads) {
  return s->macs > 65536 && threads > 1 ? 1.0 / threads : 1;
}

static double step_busiest(const struct tl_step *s, int threads) {
  switch (s->op) {
  case TL_OP_CONV: {
    const struct tl_conv_params *p = &s->p.conv;
    switch (p->kind) {
    case TL_CONV_DEPTHWISE: return tl__chunk_busiest(p->c, p->nt);
    case TL_CONV_IGEMM:
      return p->x_dw != NULL ? tl__expand_dw_busiest(p, p->x_nt) : tl__gemm_conv_busiest(p, p->nt);
    case TL_CONV_WINOGRAD: return tl__winograd_busiest(p, p->nt);
    case TL_CONV_GEMM:
    case TL_CONV_1X1: return blas_busiest(s, threads);
    case TL_CONV_REF: return 1;
    }
    return 1;
  }
  case TL_OP_MAXPOOL: /* nt is set on the windowed path only */
    return s->p.pool.nt > 1 ? tl__chunk_busiest(s->p.pool.n * s->p.pool.c, s->p.pool.nt) : 1;
  case TL_OP_GEMM:
    if (s->p.gemm.m == 1 && !s->p.gemm.reference && s->p.gemm.trans_b && !s->p.gemm.trans_a)
      return tl__gemv_busiest(s->p.gemm.n, s->p.gemm.k, threads);
    return blas_busiest(s, threads);
  case TL_OP_MATMUL: return blas_busiest(s, threads);
  default: return 1;
  }
}

void tl_plan_step_info(const struct tl_plan *plan, int i, struct tl_step_info *info) {
  assert(i >= 0 && i < plan->n_steps);
  const struct tl_step *s = &plan->steps[i];
  info->name = plan->g->nodes[s->node].name;
  info->kind = s->kind;
  info->macs = s->macs;
  info->busiest = step_busiest(s, plan->threads);
}
