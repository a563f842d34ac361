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

void tl_graph_free(struct tl_graph *g) {
  if (g == NULL)
    return;
  for (int i = 0; i < g->n_nodes; i++)
    tl__node_clear(&g->nodes[i]);
  for (int i = 0; i < g->n_values; i++) {
    free(g->values[i].name);
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

const char *tl_node_label(const struct tl_graph *g, const struct tl_node *node,
                          char *buf, int size) {
  if (node->name != NULL && node->name[0] != '\0')
    snprintf(buf, (size_t)size, "node \"%s\" (%s)", node->name, node->op_type);
  else
    snprintf(buf, (size_t)size, "node #%d (%s)", (int)(node - g->nodes),
             node->op_type);
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
    if (v->data != NULL)
      total += tl_shape_numel(&v->shape) * (int64_t)tl_dtype_size(v->dtype);
  }
  return total;
}
