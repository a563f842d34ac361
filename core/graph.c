/*
 * graph.c - lifetime and small queries of the graph IR.
 */
#include "graph.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tl__node_clear(struct tl_node *n) {
  for (int a = 0; a < n->n_attrs; a++) {
    struct tl_attr *at = &n->attrs[a];
    free(at->name);
    free(at->s);
    free(at->floats);
    free(at->ints);
    free(at->t.data);
  }
  free(n->attrs);
  free(n->name);
  free(n->op_type);
  free(n->in);
  free(n->out);
  memset(n, 0, sizeof *n);
}

void tl__graph_compact(struct tl_graph *g) {
  int kept = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    struct tl_node *n = &g->nodes[i];
    if (n->op_type == NULL)
      continue; /* cleared */
    if (kept != i) {
      g->nodes[kept] = *n;
      for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0)
          g->values[n->out[k]].producer = kept;
    }
    kept++;
  }
  g->n_nodes = kept;
}

void tl_graph_free(struct tl_graph *g) {
  if (g == NULL)
    return;
  for (int i = 0; i < g->n_nodes; i++)
    tl__node_clear(&g->nodes[i]);
  for (int i = 0; i < g->n_values; i++) {
    free(g->values[i].name);
    if (!g->values[i].borrowed)
      free(g->values[i].data);
  }
  free(g->nodes);
  free(g->values);
  free(g->inputs);
  free(g->outputs);
  free(g->path);
  free(g);
}

const struct tl_attr *tl_node_attr(const struct tl_node *node, const char *name) {
  for (int i = 0; i < node->n_attrs; i++)
    if (strcmp(node->attrs[i].name, name) == 0)
      return &node->attrs[i];
  return NULL;
}

const char *tl_node_label(const struct tl_graph *g, const struct tl_node *node, char *buf,
                          int size) {
  if (node->name != NULL && node->name[0] != '\0')
    snprintf(buf, (size_t)size, "node \"%s\" (%s)", node->name, node->op_type);
  else
    snprintf(buf, (size_t)size, "node #%d (%s)", (int)(node - g->nodes), node->op_type);
  return buf;
}

int tl_graph_find_value(const struct tl_graph *g, const char *name) {
  for (int i = 0; i < g->n_values; i++)
    if (strcmp(g->values[i].name, name) == 0)
      return i;
  return -1;
}

int64_t tl_graph_weight_bytes(const struct tl_graph *g) {
  int64_t total = 0;
  for (int i = 0; i < g->n_values; i++) {
    const struct tl_value *v = &g->values[i];
    if (v->data != NULL && !v->borrowed)
      total += tl_shape_numel(&v->shape) * (int64_t)tl_dtype_size(v->dtype);
  }
  return total;
}

int tl__value_unshare(struct tl_graph *g, int v) {
  struct tl_value *val = &g->values[v];
  if (val->data == NULL)
    return 0;
  int heir = -1; /* another value with the same data, which keeps it */
  for (int i = 0; i < g->n_values && heir < 0; i++)
    if (i != v && g->values[i].data == val->data)
      heir = i;
  if (heir < 0) {
    val->borrowed = 0;
    return 0;
  }
  size_t bytes = (size_t)tl_shape_numel(&val->shape) * tl_dtype_size(val->dtype);
  void *copy = malloc(bytes ? bytes : 1);
  if (copy == NULL)
    return TL_ENOMEM;
  memcpy(copy, val->data, bytes);
  if (!val->borrowed)
    g->values[heir].borrowed = 0; /* the heir frees the shared data now */
  val->data = copy;
  val->borrowed = 0;
  return 0;
}

int tl__value_is_const(const struct tl_graph *g, int v) {
  return v >= 0 && g->values[v].data != NULL;
}
