/*
 * graph.h - the graph IR: values, nodes and attributes of one model.
 *
 * A graph is what the ONNX loader produces and what plans are built from.
 * Nodes are in topological order; every node input names a value that is a
 * graph input, a constant or the output of an earlier node.  The graph owns
 * every string, attribute and constant's data; plans and SuperNets borrow
 * them, so free those before the graph.  After loading, a graph is only
 * read (the SuperNet compiler's one-time channel sort aside), so any number
 * of threads may build plans from it at once.
 */
#ifndef TL_GRAPH_H
#define TL_GRAPH_H

#include <stdint.h>

#include "error.h"
#include "ops.h"
#include "tensor.h"

enum tl_attr_type {
  TL_ATTR_UNDEFINED = 0,
  TL_ATTR_FLOAT,
  TL_ATTR_INT,
  TL_ATTR_STRING,
  TL_ATTR_TENSOR,
  TL_ATTR_FLOATS,
  TL_ATTR_INTS,
  TL_ATTR_OTHER /* graphs, sparse tensors, ...: kept only by name */
};

struct tl_attr {
  char *name;
  enum tl_attr_type type;
  float f;
  int64_t i;
  char *s;            /* NUL-terminated copy of a STRING attribute */
  int n;              /* element count of floats/ints */
  float *floats;      /* (n) */
  int64_t *ints;      /* (n) */
  struct tl_tensor t; /* TENSOR: data owned by the graph */
};

struct tl_node {
  char *name;    /* as in the model; may be "" */
  char *op_type; /* as in the model, for messages */
  enum tl_op op;
  int n_in, n_out;
  int *in;  /* (n_in) value indices; -1 for an omitted optional input */
  int *out; /* (n_out) value indices; -1 for an omitted optional output */
  int n_attrs;
  struct tl_attr *attrs;
};

struct tl_value {
  char *name;
  enum tl_dtype dtype;   /* TL_DTYPE_UNDEFINED if the model does not say */
  struct tl_shape shape; /* ndim -1: rank unknown; dims < 0: symbolic */
  void *data;            /* a constant's data (owned by the graph), or NULL */
  int borrowed;          /* 1: data is another constant's (an exporter's
                          * duplicate, see tl_onnx_load); never freed here */
  int producer;          /* index of the producing node, -1 if none */
  int n_consumers;       /* node inputs reading it (graph outputs not counted) */
  int is_output;         /* 1 if a graph output */
};

struct tl_graph {
  char *path;    /* the file it came from, for messages */
  int64_t opset; /* version of the default (ai.onnx) domain */
  uint64_t hash; /* FNV-1a 64 of the file's bytes: identifies the model */
  int n_values;
  struct tl_value *values;
  int n_nodes;
  struct tl_node *nodes; /* topological order */
  int n_inputs;
  int *inputs; /* runtime inputs: graph inputs that are not initializers */
  int n_outputs;
  int *outputs;
};

/* Frees g and everything it owns.  NULL is allowed. */
void tl_graph_free(struct tl_graph *g);

/* The node's attribute called name, or NULL. */
const struct tl_attr *tl_node_attr(const struct tl_node *node, const char *name);

/* Writes `node "name" (OpType)` (or `node #i (OpType)` for an unnamed node)
 * into buf and returns buf; for messages. */
const char *tl_node_label(const struct tl_graph *g, const struct tl_node *node, char *buf,
                          int size);

/* Index of the value called name, or -1.  Linear: for tools and tests, not
 * for hot paths. */
int tl_graph_find_value(const struct tl_graph *g, const char *name);

/* Total bytes of constant data (weights) the graph holds. */
int64_t tl_graph_weight_bytes(const struct tl_graph *g);

#endif
