/*
 * supernet_sort.c - the channel sort: a width group's channels ordered by
 * importance (L1 norm of each filter times its BN scale), descending, in
 * every tensor that indexes them, so any prefix is a valid narrower layer.
 *
 * Tensors are given data of their own before they are permuted
 * (tl__value_unshare), so a permutation never reorders a tensor another
 * node reads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "supernet_internal.h"

/* Permutes the first dimension of constant vi (rows of `row` floats),
 * after giving it data of its own. */
static int permute_rows(struct tl_graph *g, int vi, const int64_t *order, int64_t n, int64_t row,
                        float *tmp) {
  struct tl_value *v = &g->values[vi];
  if (v->dtype != TL_DTYPE_FLOAT32 || tl_shape_numel(&v->shape) != n * row)
    return TL_ESHAPE;
  int rc = tl__value_unshare(g, vi);
  if (rc != 0)
    return rc;
  float *d = v->data;
  memcpy(tmp, d, (size_t)(n * row) * sizeof *d);
  for (int64_t i = 0; i < n; i++)
    memcpy(d + i * row, tmp + order[i] * row, (size_t)row * sizeof *d);
  return 0;
}

/* Permutes the input channels of conv weights vi (m, n, kh, kw): the n
 * blocks of kh*kw floats inside each of the m rows. */
static int permute_cols(struct tl_graph *g, int vi, const int64_t *order, int64_t n, float *tmp) {
  struct tl_value *v = &g->values[vi];
  if (v->dtype != TL_DTYPE_FLOAT32 || v->shape.ndim != 4 || v->shape.dims[1] != n)
    return TL_ESHAPE;
  int rc = tl__value_unshare(g, vi);
  if (rc != 0)
    return rc;
  const int64_t m = v->shape.dims[0], khw = v->shape.dims[2] * v->shape.dims[3];
  float *d = v->data;
  for (int64_t r = 0; r < m; r++) {
    float *rowp = d + r * n * khw;
    memcpy(tmp, rowp, (size_t)(n * khw) * sizeof *tmp);
    for (int64_t i = 0; i < n; i++)
      memcpy(rowp + i * khw, tmp + order[i] * khw, (size_t)khw * sizeof *tmp);
  }
  return 0;
}

struct imp_index {
  double imp;
  int64_t i;
};

static int cmp_importance(const void *a, const void *b) {
  const struct imp_index *x = a, *y = b;
  if (x->imp != y->imp)
    return x->imp > y->imp ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i; /* stable */
}

/* Importance of each of the group's w->unit-channel units: the L1 norm of
 * c1's filters, times the BN scale |gamma|/sqrt(var+eps) of a BN right
 * after c1 (in a folded export that scale is already in the filters). */
static void unit_importance(const struct tl_graph *g, const struct sn_width *w,
                            struct imp_index *imp) {
  const struct tl_value *w1 = &g->values[g->nodes[w->c1].in[1]];
  const int64_t ch = w->channels, row = tl_shape_numel(&w1->shape) / ch;
  const float *gamma = NULL, *var = NULL;
  float eps = 1e-5f;
  if (w->n_nodes > 1 && w->role[1] == ROLE_BN) {
    const struct tl_node *bn = &g->nodes[w->nodes[1]];
    gamma = g->values[bn->in[1]].data;
    var = g->values[bn->in[4]].data;
    const struct tl_attr *a = tl_node_attr(bn, "epsilon");
    if (a != NULL && a->type == TL_ATTR_FLOAT)
      eps = a->f;
  }
  const float *wd = w1->data;
  for (int64_t u = 0; u < ch / w->unit; u++)
    imp[u] = (struct imp_index){0, u};
  for (int64_t i = 0; i < ch; i++) {
    double l1 = 0;
    for (int64_t k = 0; k < row; k++)
      l1 += fabs(wd[i * row + k]);
    if (gamma != NULL)
      l1 *= fabs(gamma[i]) / sqrt((double)var[i] + eps);
    imp[i / w->unit].imp += l1;
  }
}

/* Sorts a group's channels by importance, descending, whole units at a
 * time, in every tensor that indexes them (see enum sn_role). */
int tl__supernet_sort_group(struct tl_supernet *sn, const struct sn_width *w) {
  struct tl_graph *g = sn->g;
  const int64_t ch = w->channels, units = ch / w->unit;
  int64_t biggest = 0;
  for (int i = 0; i < w->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[w->nodes[i]];
    for (int k = 1; k < nd->n_in; k++)
      if (tl__value_is_const(g, nd->in[k]) && tl_shape_numel(&g->values[nd->in[k]].shape) > biggest)
        biggest = tl_shape_numel(&g->values[nd->in[k]].shape);
  }
  struct imp_index *imp = malloc((size_t)units * sizeof *imp);
  int64_t *order = malloc((size_t)ch * sizeof *order);
  float *tmp = malloc((size_t)(biggest > ch ? biggest : ch) * sizeof *tmp);
  int rc = TL_ENOMEM;
  if (imp == NULL || order == NULL || tmp == NULL)
    goto done;
  unit_importance(g, w, imp);
  qsort(imp, (size_t)units, sizeof *imp, cmp_importance);
  int identity = 1;
  for (int64_t i = 0; i < ch; i++) {
    order[i] = imp[i / w->unit].i * w->unit + i % w->unit;
    identity &= order[i] == i;
  }
  rc = 0;
  for (int i = 0; i < w->n_nodes && !identity && rc == 0; i++) {
    const struct tl_node *nd = &g->nodes[w->nodes[i]];
    switch ((enum sn_role)w->role[i]) {
    case ROLE_PLAIN: break;
    case ROLE_BN:
      for (int k = 1; k < 5 && rc == 0; k++)
        rc = permute_rows(g, nd->in[k], order, ch, 1, tmp);
      break;
    case ROLE_OUT:
    case ROLE_THROUGH:
      rc = permute_rows(g, nd->in[1], order, ch, tl_shape_numel(&g->values[nd->in[1]].shape) / ch,
                        tmp);
      if (rc == 0 && nd->n_in > 2 && tl__value_is_const(g, nd->in[2]))
        rc = permute_rows(g, nd->in[2], order, ch, 1, tmp);
      break;
    case ROLE_IN: rc = permute_cols(g, nd->in[1], order, ch, tmp); break;
    }
  }
done:
  free(imp);
  free(order);
  free(tmp);
  return rc;
}
