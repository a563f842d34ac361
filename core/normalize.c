/*
 * normalize.c - what exporters emit, rewritten into the form the rest of
 * core/ reads.
 *
 * torch.onnx.export with its defaults de-duplicates identical initializers
 * (after folding BatchNormalization into Conv, every zero bias of one
 * length is the same tensor) and gives each extra reader an Identity node
 * of the one it kept.  Seen as a graph, a conv's weights then come from a
 * node near the top of the graph instead of a constant: no residual
 * branch looks self-contained and no channel group looks owned, so the
 * SuperNet compiler finds nothing.  After this pass:
 *
 *  - an Identity (or Dropout) of a constant is gone; its output is a
 *    constant that shares the input's data;
 *  - a constant read by several nodes is one value per reading node, all
 *    sharing one buffer (value.borrowed marks the ones that do not free
 *    it), so each node's weights are a value of its own.
 *
 * Invariant: data is shared only between constants, and whoever rewrites
 * a constant in place (the channel sort) first calls tl__value_unshare(),
 * so a permutation never reorders a tensor another node reads.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* 1 if node n of g is an Identity or inference Dropout of a constant whose
 * output can become that constant (it is not a graph output, and a
 * Dropout's mask is not read). */
static int is_view_of_constant(const struct tl_graph *g, const struct tl_node *n) {
  if ((n->op != TL_OP_IDENTITY && n->op != TL_OP_DROPOUT) || n->n_in < 1 || n->n_out < 1 ||
      n->in[0] < 0 || n->out[0] < 0 || g->values[n->in[0]].data == NULL ||
      g->values[n->out[0]].is_output)
    return 0;
  for (int k = 1; k < n->n_out; k++) {
    int m = n->out[k];
    if (m >= 0 && (g->values[m].n_consumers > 0 || g->values[m].is_output))
      return 0;
  }
  /* Dropout's optional ratio and training_mode inputs: only the default
   * (inference) form is a view. */
  if (n->op == TL_OP_DROPOUT && n->n_in > 2 && n->in[2] >= 0) {
    const struct tl_value *t = &g->values[n->in[2]];
    if (t->data == NULL || t->dtype != TL_DTYPE_BOOL || *(const uint8_t *)t->data != 0)
      return 0;
  }
  return 1;
}

/* Replaces views of constants by the constants. */
static void inline_constant_views(struct tl_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    struct tl_node *n = &g->nodes[i];
    if (!is_view_of_constant(g, n))
      continue;
    const struct tl_value *src = &g->values[n->in[0]];
    struct tl_value *dst = &g->values[n->out[0]];
    dst->dtype = src->dtype;
    dst->shape = src->shape;
    dst->data = src->data;
    dst->borrowed = 1;
    dst->producer = -1;
    for (int k = 0; k < n->n_in; k++)
      if (n->in[k] >= 0)
        g->values[n->in[k]].n_consumers--;
    tl__node_clear(n);
  }
  tl__graph_compact(g);
}

/* 1 if node n reads value v through an input before k. */
static int read_before(const struct tl_node *n, int k, int v) {
  for (int q = 0; q < k; q++)
    if (n->in[q] == v)
      return 1;
  return 0;
}

/* Gives every node that reads a shared constant a value of its own. */
static int split_shared_constants(struct tl_graph *g, struct tl_error *err) {
  /* A constant's first reading node keeps it; count the others. */
  int *first = malloc(((size_t)g->n_values + 1) * sizeof *first);
  if (first == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
  for (int v = 0; v < g->n_values; v++)
    first[v] = -1;
  int extra = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const struct tl_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      if (v < 0 || g->values[v].data == NULL || read_before(n, k, v))
        continue;
      if (first[v] < 0)
        first[v] = i;
      else
        extra++;
    }
  }
  if (extra == 0) {
    free(first);
    return 0;
  }
  struct tl_value *grown =
      realloc(g->values, ((size_t)g->n_values + (size_t)extra) * sizeof *grown);
  if (grown == NULL) {
    free(first);
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
  }
  g->values = grown;
  const int n_orig = g->n_values;
  for (int i = 0; i < g->n_nodes; i++) {
    struct tl_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_in; k++) {
      int v = n->in[k];
      /* Values made here (>= n_orig) are this node's already. */
      if (v < 0 || v >= n_orig || g->values[v].data == NULL || first[v] == i)
        continue;
      struct tl_value *nv = &g->values[g->n_values];
      *nv = g->values[v];
      nv->name = strdup(g->values[v].name);
      if (nv->name == NULL) {
        free(first);
        return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
      }
      nv->borrowed = 1;
      nv->is_output = 0;
      nv->n_consumers = 0;
      for (int q = k; q < n->n_in; q++)
        if (n->in[q] == v) {
          n->in[q] = g->n_values;
          nv->n_consumers++;
          g->values[v].n_consumers--;
        }
      g->n_values++;
    }
  }
  free(first);
  return 0;
}

int tl__graph_normalize(struct tl_graph *g, struct tl_error *err) {
  inline_constant_views(g);
  return split_shared_constants(g, err);
}
