/*
 * export.c - writing one subnet as a standalone ONNX model.
 *
 * The subnet is what tl_subnet_plan() runs, so the export reads the same
 * two things the plan is built from: the view (subnet_plan.c: nodes skipped,
 * skipped blocks' outputs aliased to their inputs, output channels kept
 * per conv, the resolution) and the shapes a plan of the subnet gives
 * each value (plan.c), from which every weight is cut exactly as the
 * plan's view_conv() and BatchNormalization see it.  Nothing about the
 * SuperNet's structure is worked out twice.
 *
 * The model is built as protobuf-c structs whose every byte -- strings,
 * arrays, sliced weights -- comes from one list of blocks that is freed
 * at the end, whatever happened, so no path leaks and none frees twice.
 * Constants the subnet reads unchanged are written once even when the
 * loader gave several nodes their own value of them (shared weights).
 */
#include "export.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "internal.h"
#include "onnx.pb-c.h"

/* IR version 8 (ONNX 1.10 and later) reads every opset the loader does. */
#define EXPORT_IR_VERSION 8

/* ------------------------------------------------------------ memory */

struct xblock {
  struct xblock *next;
  max_align_t data[];
};

/* A constant already written unchanged, by its data. */
struct written {
  const void *data;
  int64_t numel;
  enum tl_dtype dtype;
  const char *name;
};

struct exporter {
  const struct tl_graph *g;
  const struct tl_bn_stats *bn;
  struct tl_plan_view view;
  struct tl_plan *plan; /* the subnet's plan: the shape of every value */
  struct xblock *mem;
  struct tl_error *err;
  /* Names used in the model written, so that new ones stay unique. */
  const char **names; /* open addressing; NULL = empty */
  size_t names_mask, n_names;
  /* What the graph being written holds (as void * for push(); typed
   * when the graph is made, in build_graph). */
  void **nodes;
  size_t n_nodes, cap_nodes;
  void **inits;
  size_t n_inits, cap_inits;
  struct written *written;
  size_t n_written, cap_written;
  const char *resized; /* the resized input's name, or NULL */
};

/* Zeroed bytes that live until the export ends; NULL when out of memory. */
static void *xalloc(struct exporter *X, size_t bytes) {
  if (bytes > SIZE_MAX - sizeof(struct xblock))
    return NULL;
  struct xblock *b = calloc(1, sizeof *b + (bytes ? bytes : 1));
  if (b == NULL)
    return NULL;
  b->next = X->mem;
  X->mem = b;
  return b->data;
}

static char *xstrdup(struct exporter *X, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = xalloc(X, n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* Appends p to a growing array of pointers (the arrays live in the
 * blocks too: a grown array leaves the old one there, which is cheap
 * next to the weights). */
static int push(struct exporter *X, void ***arr, size_t *n, size_t *cap, void *p) {
  if (p == NULL)
    return TL_ENOMEM;
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    void **grown = xalloc(X, nc * sizeof *grown);
    if (grown == NULL)
      return TL_ENOMEM;
    if (*n)
      memcpy(grown, *arr, *n * sizeof *grown);
    *arr = grown;
    *cap = nc;
  }
  (*arr)[(*n)++] = p;
  return 0;
}

static int nomem(struct exporter *X) {
  return tl_fail(X->err, TL_ENOMEM, "%s: out of memory while exporting", X->g->path);
}

/* ------------------------------------------------------------- names */

static int name_taken(const struct exporter *X, const char *name) {
  for (size_t i = tl_hash_str(name) & X->names_mask;; i = (i + 1) & X->names_mask) {
    if (X->names[i] == NULL)
      return 0;
    if (strcmp(X->names[i], name) == 0)
      return 1;
  }
}

/* Records name (which lives as long as the export); the table was sized
 * for every name the model can have. */
static void name_add(struct exporter *X, const char *name) {
  if (name_taken(X, name))
    return;
  size_t i = tl_hash_str(name) & X->names_mask;
  while (X->names[i] != NULL)
    i = (i + 1) & X->names_mask;
  X->names[i] = name;
  X->n_names++;
}

/* A name not used yet: base itself, else base_1, base_2, ...; recorded. */
static const char *unique_name(struct exporter *X, const char *base) {
  if (!name_taken(X, base)) {
    char *s = xstrdup(X, base);
    if (s != NULL)
      name_add(X, s);
    return s;
  }
  size_t len = strlen(base) + 24;
  char *s = xalloc(X, len);
  if (s == NULL)
    return NULL;
  for (unsigned k = 1;; k++) {
    snprintf(s, len, "%s_%u", base, k);
    if (!name_taken(X, s))
      break;
  }
  name_add(X, s);
  return s;
}

/* The name readers of value v read in the subnet: a skipped block's
 * output is its input (through any chain of skipped blocks), and the
 * model's input is its resized form when the subnet resizes. */
static const char *value_name(const struct exporter *X, int v) {
  for (int hops = 0; X->view.alias[v] >= 0 && hops <= X->g->n_values; hops++)
    v = X->view.alias[v];
  if (X->resized != NULL && v == X->g->inputs[0])
    return X->resized;
  return X->g->values[v].name;
}

/* ----------------------------------------------------------- tensors */

static int onnx_type(enum tl_dtype t) {
  switch (t) {
  case TL_DTYPE_FLOAT32: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
  case TL_DTYPE_UINT8: return ONNX__TENSOR_PROTO__DATA_TYPE__UINT8;
  case TL_DTYPE_INT8: return ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
  case TL_DTYPE_INT32: return ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
  case TL_DTYPE_INT64: return ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
  case TL_DTYPE_BOOL: return ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
  case TL_DTYPE_FLOAT16: return ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16;
  case TL_DTYPE_FLOAT64: return ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
  default: return -1;
  }
}

/* A TensorProto of shape and dtype whose raw data (bytes long) the
 * caller fills through *data; NULL when out of memory. */
static Onnx__TensorProto *new_tensor(struct exporter *X, const char *name, enum tl_dtype dtype,
                                     const struct tl_shape *shape, void **data) {
  Onnx__TensorProto *t = xalloc(X, sizeof *t);
  int64_t *dims = xalloc(X, (size_t)(shape->ndim + 1) * sizeof *dims);
  size_t bytes = (size_t)tl_shape_numel(shape) * tl_dtype_size(dtype);
  uint8_t *raw = xalloc(X, bytes);
  if (t == NULL || dims == NULL || raw == NULL)
    return NULL;
  *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
  t->name = (char *)name;
  t->n_dims = (size_t)shape->ndim;
  for (int d = 0; d < shape->ndim; d++)
    dims[d] = shape->dims[d];
  t->dims = dims;
  t->has_data_type = 1;
  t->data_type = onnx_type(dtype);
  t->has_raw_data = 1;
  t->raw_data.len = bytes;
  t->raw_data.data = raw;
  *data = raw;
  return t;
}

/* Adds an initializer called (a unique form of) base; *name gets the
 * name written, *data the bytes to fill. */
static int add_init(struct exporter *X, const char *base, enum tl_dtype dtype,
                    const struct tl_shape *shape, const char **name, void **data) {
  if (onnx_type(dtype) < 0)
    return tl_fail(X->err, TL_EUNSUPPORTED, "%s: constant \"%s\" is %s, which ONNX cannot hold",
                   X->g->path, base, tl_dtype_name(dtype));
  const char *nm = unique_name(X, base);
  Onnx__TensorProto *t = nm ? new_tensor(X, nm, dtype, shape, data) : NULL;
  if (t == NULL || push(X, &X->inits, &X->n_inits, &X->cap_inits, t) != 0)
    return nomem(X);
  *name = nm;
  return 0;
}

/* The name of constant v written unchanged, writing it the first time
 * its data is seen. */
static int const_unchanged(struct exporter *X, int v, const char **name) {
  const struct tl_value *val = &X->g->values[v];
  const int64_t numel = tl_shape_numel(&val->shape);
  for (size_t i = 0; i < X->n_written; i++) {
    const struct written *w = &X->written[i];
    if (w->data == val->data && w->numel == numel && w->dtype == val->dtype) {
      *name = w->name;
      return 0;
    }
  }
  void *data;
  int rc = add_init(X, val->name, val->dtype, &val->shape, name, &data);
  if (rc != 0)
    return rc;
  memcpy(data, val->data, (size_t)numel * tl_dtype_size(val->dtype));
  if (X->n_written == X->cap_written) {
    size_t nc = X->cap_written ? X->cap_written * 2 : 64;
    struct written *grown = xalloc(X, nc * sizeof *grown);
    if (grown == NULL)
      return nomem(X);
    if (X->n_written)
      memcpy(grown, X->written, X->n_written * sizeof *grown);
    X->written = grown;
    X->cap_written = nc;
  }
  X->written[X->n_written++] = (struct written){val->data, numel, val->dtype, *name};
  return 0;
}

/* ------------------------------------------------------------- nodes */

static Onnx__NodeProto *new_node(struct exporter *X, const char *name, const char *op_type,
                                 int n_in, int n_out) {
  Onnx__NodeProto *n = xalloc(X, sizeof *n);
  char **in = xalloc(X, (size_t)(n_in + 1) * sizeof *in);
  char **out = xalloc(X, (size_t)(n_out + 1) * sizeof *out);
  if (n == NULL || in == NULL || out == NULL)
    return NULL;
  *n = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
  n->name = (char *)name;
  n->op_type = (char *)op_type;
  n->n_input = (size_t)n_in;
  n->input = in;
  n->n_output = (size_t)n_out;
  n->output = out;
  for (int k = 0; k < n_in; k++)
    in[k] = "";
  for (int k = 0; k < n_out; k++)
    out[k] = "";
  return n;
}

static Onnx__AttributeProto *new_attr(struct exporter *X, const char *name,
                                      Onnx__AttributeProto__AttributeType type) {
  Onnx__AttributeProto *a = xalloc(X, sizeof *a);
  if (a == NULL)
    return NULL;
  *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
  a->name = (char *)name;
  a->has_type = 1;
  a->type = type;
  return a;
}

/* Node nd's attribute at as an AttributeProto; a conv's group is given
 * as group (the groups a subnet keeps), other values are copied. */
static int copy_attr(struct exporter *X, const struct tl_node *nd, const struct tl_attr *at,
                     int64_t group, Onnx__AttributeProto **out) {
  Onnx__AttributeProto *a = NULL;
  char lb[160];
  switch (at->type) {
  case TL_ATTR_FLOAT:
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT)) == NULL)
      break;
    a->has_f = 1;
    a->f = at->f;
    break;
  case TL_ATTR_INT:
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)) == NULL)
      break;
    a->has_i = 1;
    a->i = nd->op == TL_OP_CONV && strcmp(at->name, "group") == 0 ? group : at->i;
    break;
  case TL_ATTR_STRING:
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)) == NULL)
      break;
    a->has_s = 1;
    a->s.data = (uint8_t *)at->s;
    a->s.len = strlen(at->s);
    break;
  case TL_ATTR_FLOATS:
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS)) == NULL)
      break;
    a->n_floats = (size_t)at->n;
    a->floats = at->floats;
    break;
  case TL_ATTR_INTS:
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS)) == NULL)
      break;
    a->n_ints = (size_t)at->n;
    a->ints = at->ints;
    break;
  case TL_ATTR_TENSOR: {
    void *data;
    if (onnx_type(at->t.dtype) < 0)
      return tl_fail(X->err, TL_EUNSUPPORTED, "%s: %s: attribute \"%s\" is a %s tensor", X->g->path,
                     tl_node_label(X->g, nd, lb, sizeof lb), at->name, tl_dtype_name(at->t.dtype));
    if ((a = new_attr(X, at->name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR)) == NULL ||
        (a->t = new_tensor(X, NULL, at->t.dtype, &at->t.shape, &data)) == NULL)
      return nomem(X);
    memcpy(data, at->t.data, a->t->raw_data.len);
    break;
  }
  default:
    return tl_fail(X->err, TL_EUNSUPPORTED,
                   "%s: %s: attribute \"%s\" (a graph or another kind the loader keeps by "
                   "name only) cannot be exported",
                   X->g->path, tl_node_label(X->g, nd, lb, sizeof lb), at->name);
  }
  if (a == NULL)
    return nomem(X);
  *out = a;
  return 0;
}

/* ------------------------------------------------------------ slicing */

/* How the subnet's plan reads conv node i's weights: m rows, cg input
 * channels per group out of each row's first ones, group groups (the
 * rule of plan.c's view_conv(), applied to the plan's own shapes). */
static int conv_slice(const struct exporter *X, int i, int64_t *m, int64_t *cg, int64_t *group) {
  const struct tl_graph *g = X->g;
  const struct tl_node *nd = &g->nodes[i];
  const struct tl_shape *ws = &g->values[nd->in[1]].shape;
  const struct tl_shape *xs = tl__plan_value_shape(X->plan, nd->in[0]);
  const struct tl_attr *ga = tl_node_attr(nd, "group");
  char lb[160];
  if (xs == NULL || xs->ndim != 4)
    return tl_fail(X->err, TL_EINTERNAL, "%s: %s: the subnet's plan has no 4-D input for it",
                   g->path, tl_node_label(g, nd, lb, sizeof lb));
  const int64_t m_full = ws->dims[0], cg_full = ws->dims[1], c_in = xs->dims[1];
  *group = ga != NULL && ga->type == TL_ATTR_INT ? ga->i : 1;
  *m = m_full;
  *cg = cg_full;
  if (*group > 1 && m_full % *group == 0 && c_in < cg_full * *group && c_in % cg_full == 0) {
    /* Whole groups over the first c_in channels: the rows of those. */
    const int64_t kept = c_in / cg_full;
    *m = m_full / *group * kept;
    *group = kept;
  } else if (*group == 1 && c_in < cg_full) {
    *cg = c_in;
  }
  const int64_t out = X->view.conv_out[i];
  if (out > 0 && out < *m)
    *m = out;
  return 0;
}

/* Writes conv node i's weights and bias as the subnet reads them, with
 * a recalibrated map y = (conv + bias - mean) / sqrt(var) folded in when
 * the statistics hold one for it.  in[1] and in[2] get the names; *bias
 * says whether the node needs a third input it did not have. */
static int write_conv(struct exporter *X, int i, int64_t m, int64_t cg, const char **in,
                      int *bias_added) {
  const struct tl_graph *g = X->g;
  const struct tl_node *nd = &g->nodes[i];
  const struct tl_value *wv = &g->values[nd->in[1]];
  const int64_t m_full = wv->shape.dims[0], cg_full = wv->shape.dims[1];
  const int64_t khw = wv->shape.dims[2] * wv->shape.dims[3];
  const int has_bias = nd->n_in > 2 && nd->in[2] >= 0;
  const float *mean = X->bn != NULL ? X->bn->mean[i] : NULL;
  const float *var = X->bn != NULL ? X->bn->var[i] : NULL;
  char lb[160];
  *bias_added = 0;
  if (has_bias &&
      (g->values[nd->in[2]].data == NULL || g->values[nd->in[2]].dtype != TL_DTYPE_FLOAT32 ||
       tl_shape_numel(&g->values[nd->in[2]].shape) != m_full))
    return tl_fail(X->err, TL_EUNSUPPORTED, "%s: %s: its bias is not %lld constant floats", g->path,
                   tl_node_label(g, nd, lb, sizeof lb), (long long)m_full);
  const int whole = m == m_full && cg == cg_full && mean == NULL;
  int rc;
  if (whole) {
    if ((rc = const_unchanged(X, nd->in[1], &in[1])) != 0)
      return rc;
    return has_bias ? const_unchanged(X, nd->in[2], &in[2]) : 0;
  }
  struct tl_shape ws = {4, {m, cg, wv->shape.dims[2], wv->shape.dims[3]}};
  struct tl_shape bs = {1, {m}};
  float *w, *b = NULL;
  if ((rc = add_init(X, wv->name, TL_DTYPE_FLOAT32, &ws, &in[1], (void **)&w)) != 0)
    return rc;
  if ((has_bias || mean != NULL) &&
      (rc = add_init(X, has_bias ? g->values[nd->in[2]].name : wv->name, TL_DTYPE_FLOAT32, &bs,
                     &in[2], (void **)&b)) != 0)
    return rc;
  const float *wf = wv->data, *bf = has_bias ? g->values[nd->in[2]].data : NULL;
  for (int64_t k = 0; k < m; k++) {
    /* The engine's epilogue for the map: scale 1/sqrt(var), shift
     * (bias - mean) * scale; here the scale goes into the filter. */
    const float scale = mean != NULL ? 1.f / sqrtf(var[k]) : 1.f;
    const float *src = wf + k * cg_full * khw;
    float *dst = w + k * cg * khw;
    for (int64_t j = 0; j < cg * khw; j++)
      dst[j] = mean != NULL ? src[j] * scale : src[j];
    if (b != NULL)
      b[k] = mean != NULL ? ((bf ? bf[k] : 0.f) - mean[k]) * scale : bf[k];
  }
  *bias_added = !has_bias && b != NULL;
  return 0;
}

/* Writes BatchNormalization node i's four parameters cut to the channels
 * the subnet gives it, mean and variance from the statistics if any. */
static int write_bn(struct exporter *X, int i, const char **in) {
  const struct tl_graph *g = X->g;
  const struct tl_node *nd = &g->nodes[i];
  const struct tl_shape *xs = tl__plan_value_shape(X->plan, nd->in[0]);
  char lb[160];
  if (xs == NULL || xs->ndim < 2 || nd->n_in != 5)
    return tl_fail(X->err, TL_EINTERNAL, "%s: %s: the subnet's plan has no input for it", g->path,
                   tl_node_label(g, nd, lb, sizeof lb));
  const int64_t c = xs->dims[1];
  for (int k = 1; k < 5; k++) {
    const struct tl_value *pv = nd->in[k] >= 0 ? &g->values[nd->in[k]] : NULL;
    if (pv == NULL || pv->data == NULL || pv->dtype != TL_DTYPE_FLOAT32 ||
        tl_shape_numel(&pv->shape) < c)
      return tl_fail(X->err, TL_EUNSUPPORTED, "%s: %s: input %d is not %lld constant floats",
                     g->path, tl_node_label(g, nd, lb, sizeof lb), k, (long long)c);
    const float *stat = NULL;
    if (X->bn != NULL && X->bn->mean[i] != NULL)
      stat = k == 3 ? X->bn->mean[i] : k == 4 ? X->bn->var[i] : NULL;
    if (stat == NULL && tl_shape_numel(&pv->shape) == c) {
      int rc = const_unchanged(X, nd->in[k], &in[k]);
      if (rc != 0)
        return rc;
      continue;
    }
    struct tl_shape s = {1, {c}};
    float *d;
    int rc = add_init(X, pv->name, TL_DTYPE_FLOAT32, &s, &in[k], (void **)&d);
    if (rc != 0)
      return rc;
    memcpy(d, stat != NULL ? stat : pv->data, (size_t)c * sizeof *d);
  }
  return 0;
}

/* Writes node i of the subnet: its inputs renamed past skipped blocks,
 * its constants cut to what the subnet reads. */
static int write_node(struct exporter *X, int i) {
  const struct tl_graph *g = X->g;
  const struct tl_node *nd = &g->nodes[i];
  int64_t m = 0, cg = 0, group = 1;
  int rc = 0, bias_added = 0;
  const int is_conv = nd->op == TL_OP_CONV && nd->n_in >= 2 && nd->in[1] >= 0 &&
                      g->values[nd->in[1]].data != NULL &&
                      g->values[nd->in[1]].dtype == TL_DTYPE_FLOAT32 &&
                      g->values[nd->in[1]].shape.ndim == 4;
  if (is_conv && (rc = conv_slice(X, i, &m, &cg, &group)) != 0)
    return rc;
  const int n_in = nd->n_in < 3 && is_conv ? 3 : nd->n_in;
  Onnx__NodeProto *n = new_node(X, nd->name, nd->op_type, n_in, nd->n_out);
  Onnx__AttributeProto **attrs = xalloc(X, (size_t)(nd->n_attrs + 1) * sizeof *attrs);
  if (n == NULL || attrs == NULL)
    return nomem(X);
  const char **in = (const char **)n->input;
  if (is_conv && (rc = write_conv(X, i, m, cg, in, &bias_added)) != 0)
    return rc;
  if (nd->op == TL_OP_BATCHNORM && (rc = write_bn(X, i, in)) != 0)
    return rc;
  for (int k = 0; k < nd->n_in; k++) {
    const int v = nd->in[k];
    if (v < 0 || in[k][0] != '\0')
      continue; /* omitted, or written above */
    if (g->values[v].data != NULL)
      rc = const_unchanged(X, v, &in[k]);
    else
      in[k] = value_name(X, v);
    if (rc != 0)
      return rc;
  }
  if (is_conv && !bias_added && nd->n_in < 3)
    n->n_input = (size_t)nd->n_in; /* no bias, none added */
  for (int k = 0; k < nd->n_out; k++)
    n->output[k] = nd->out[k] >= 0 ? g->values[nd->out[k]].name : "";
  for (int a = 0; a < nd->n_attrs; a++)
    if ((rc = copy_attr(X, nd, &nd->attrs[a], group, &attrs[a])) != 0)
      return rc;
  n->n_attribute = (size_t)nd->n_attrs;
  n->attribute = attrs;
  return push(X, &X->nodes, &X->n_nodes, &X->cap_nodes, n) != 0 ? nomem(X) : 0;
}

/* The nodes that resize the model's input to the subnet's side first:
 * Resize(x, roi, scales, sizes) with sizes = Shape(x)[0:2] ++ (h, w), so
 * the batch may stay symbolic. */
static int write_resize(struct exporter *X) {
  const struct tl_graph *g = X->g;
  const char *x = g->values[g->inputs[0]].name;
  if (g->opset < 11)
    return tl_fail(X->err, TL_EUNSUPPORTED,
                   "%s: opset %lld has no Resize with half-pixel coordinates (11 and later "
                   "have); export this subnet at the native side %lld",
                   g->path, (long long)g->opset, (long long)g->values[g->inputs[0]].shape.dims[2]);
  const char *shape = unique_name(X, "tailor_resize_shape");
  const char *nc = unique_name(X, "tailor_resize_nc");
  const char *sizes = unique_name(X, "tailor_resize_sizes");
  char base[256];
  snprintf(base, sizeof base, "%s_resized", x);
  X->resized = unique_name(X, base);
  if (shape == NULL || nc == NULL || sizes == NULL || X->resized == NULL)
    return nomem(X);
  const char *idx, *hw, *roi = "", *scales = "";
  int64_t *d;
  struct tl_shape two = {1, {2}};
  int rc;
  if ((rc = add_init(X, "tailor_resize_index", TL_DTYPE_INT64, &two, &idx, (void **)&d)) != 0)
    return rc;
  d[0] = 0, d[1] = 1;
  if ((rc = add_init(X, "tailor_resize_hw", TL_DTYPE_INT64, &two, &hw, (void **)&d)) != 0)
    return rc;
  d[0] = X->view.resize_h, d[1] = X->view.resize_w;
  if (g->opset < 13) {
    /* roi and scales are required inputs before opset 13: empty tensors. */
    struct tl_shape none = {1, {0}};
    void *unused;
    if ((rc = add_init(X, "tailor_resize_roi", TL_DTYPE_FLOAT32, &none, &roi, &unused)) != 0 ||
        (rc = add_init(X, "tailor_resize_scales", TL_DTYPE_FLOAT32, &none, &scales, &unused)) != 0)
      return rc;
  }
  Onnx__NodeProto *ns = new_node(X, "tailor_resize_shape", "Shape", 1, 1);
  Onnx__NodeProto *ng = new_node(X, "tailor_resize_gather", "Gather", 2, 1);
  Onnx__NodeProto *ncat = new_node(X, "tailor_resize_concat", "Concat", 2, 1);
  Onnx__NodeProto *nr = new_node(X, "tailor_resize", "Resize", 4, 1);
  Onnx__AttributeProto **ga = xalloc(X, sizeof *ga), **ca = xalloc(X, sizeof *ca);
  Onnx__AttributeProto **ra = xalloc(X, 2 * sizeof *ra);
  if (!ns || !ng || !ncat || !nr || !ga || !ca || !ra ||
      !(ga[0] = new_attr(X, "axis", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)) ||
      !(ca[0] = new_attr(X, "axis", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)) ||
      !(ra[0] = new_attr(X, "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)) ||
      !(ra[1] = new_attr(X, "coordinate_transformation_mode",
                         ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING)))
    return nomem(X);
  ga[0]->has_i = ca[0]->has_i = 1; /* axis 0 */
  ra[0]->has_s = ra[1]->has_s = 1;
  ra[0]->s = (ProtobufCBinaryData){6, (uint8_t *)"linear"};
  ra[1]->s = (ProtobufCBinaryData){10, (uint8_t *)"half_pixel"};
  ns->input[0] = (char *)x, ns->output[0] = (char *)shape;
  ng->input[0] = (char *)shape, ng->input[1] = (char *)idx, ng->output[0] = (char *)nc;
  ng->n_attribute = 1, ng->attribute = ga;
  ncat->input[0] = (char *)nc, ncat->input[1] = (char *)hw, ncat->output[0] = (char *)sizes;
  ncat->n_attribute = 1, ncat->attribute = ca;
  nr->input[0] = (char *)x, nr->input[1] = (char *)roi, nr->input[2] = (char *)scales;
  nr->input[3] = (char *)sizes, nr->output[0] = (char *)X->resized;
  nr->n_attribute = 2, nr->attribute = ra;
  Onnx__NodeProto *all[] = {ns, ng, ncat, nr};
  for (int k = 0; k < 4; k++)
    if (push(X, &X->nodes, &X->n_nodes, &X->cap_nodes, all[k]) != 0)
      return nomem(X);
  return 0;
}

/* A graph input or output: value v's name, element type and shape, with
 * unknown dims as named parameters so that the batch stays free. */
static Onnx__ValueInfoProto *value_info(struct exporter *X, int v) {
  const struct tl_value *val = &X->g->values[v];
  Onnx__ValueInfoProto *vi = xalloc(X, sizeof *vi);
  Onnx__TypeProto *tp = xalloc(X, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = xalloc(X, sizeof *tt);
  if (vi == NULL || tp == NULL || tt == NULL)
    return NULL;
  *vi = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
  *tp = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
  *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
  vi->name = val->name;
  vi->type = tp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  tt->has_elem_type = 1;
  tt->elem_type = onnx_type(val->dtype == TL_DTYPE_UNDEFINED ? TL_DTYPE_FLOAT32 : val->dtype);
  if (val->shape.ndim < 0)
    return vi;
  Onnx__TensorShapeProto *sp = xalloc(X, sizeof *sp);
  Onnx__TensorShapeProto__Dimension **dims =
      xalloc(X, (size_t)(val->shape.ndim + 1) * sizeof *dims);
  if (sp == NULL || dims == NULL)
    return NULL;
  *sp = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
  for (int d = 0; d < val->shape.ndim; d++) {
    Onnx__TensorShapeProto__Dimension *dim = xalloc(X, sizeof *dim);
    if (dim == NULL)
      return NULL;
    *dim = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
    if (val->shape.dims[d] >= 0) {
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      dim->dim_value = val->shape.dims[d];
    } else {
      char p[24];
      snprintf(p, sizeof p, d == 0 ? "batch" : "dim%d", d);
      dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      if ((dim->dim_param = xstrdup(X, p)) == NULL)
        return NULL;
    }
    dims[d] = dim;
  }
  sp->n_dim = (size_t)val->shape.ndim;
  sp->dim = dims;
  tt->shape = sp;
  return vi;
}

/* --------------------------------------------------------------- file */

/* Writes len bytes to path through a temporary file beside it, renamed
 * over path once complete. */
static int write_file(const char *path, const uint8_t *buf, size_t len, struct tl_error *err) {
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  if (tmp == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", path);
  snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int rc = tl_fail(err, TL_EIO, "%s: cannot create %s beside it: %s", path, tmp, strerror(errno));
    free(tmp);
    return rc;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(fd, buf + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      int e = w < 0 ? errno : EIO;
      close(fd);
      unlink(tmp);
      int rc = tl_fail(err, TL_EIO, "%s: writing %s: %s", path, tmp, strerror(e));
      free(tmp);
      return rc;
    }
    done += (size_t)w;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return tl_fail(err, TL_EIO, "%s: %s", path, strerror(e));
  }
  free(tmp);
  return 0;
}

/* -------------------------------------------------------------- model */

static int build_graph(struct exporter *X, const struct tl_supernet *sn,
                       const struct tl_subnet_spec *spec, Onnx__GraphProto *gp) {
  const struct tl_graph *g = X->g;
  int rc;
  if (X->view.resize_h > 0 && (rc = write_resize(X)) != 0)
    return rc;
  for (int i = 0; i < g->n_nodes; i++)
    if (!X->view.skip[i] && (rc = write_node(X, i)) != 0)
      return rc;
  /* An output that a skipped block left as another value's alias is
   * still produced under its own name. */
  Onnx__ValueInfoProto **outs = xalloc(X, (size_t)(g->n_outputs + 1) * sizeof *outs);
  Onnx__ValueInfoProto **ins = xalloc(X, sizeof *ins);
  if (outs == NULL || ins == NULL || (ins[0] = value_info(X, g->inputs[0])) == NULL)
    return nomem(X);
  for (int k = 0; k < g->n_outputs; k++) {
    const int v = g->outputs[k];
    if ((outs[k] = value_info(X, v)) == NULL)
      return nomem(X);
    const char *src = value_name(X, v);
    if (strcmp(src, g->values[v].name) == 0)
      continue;
    Onnx__NodeProto *id = new_node(X, unique_name(X, "tailor_output"), "Identity", 1, 1);
    if (id == NULL || id->name == NULL)
      return nomem(X);
    id->input[0] = (char *)src;
    id->output[0] = g->values[v].name;
    if (push(X, &X->nodes, &X->n_nodes, &X->cap_nodes, id) != 0)
      return nomem(X);
  }
  char text[1024], name[1100];
  tl_subnet_format(sn, spec, text, sizeof text);
  snprintf(name, sizeof name, "tailor subnet %s", text);
  if ((gp->name = xstrdup(X, name)) == NULL)
    return nomem(X);
  /* The lists were kept as void *; protobuf-c reads them as arrays of
   * their own pointer type, so they are copied into such arrays. */
  Onnx__NodeProto **nodes = xalloc(X, (X->n_nodes + 1) * sizeof *nodes);
  Onnx__TensorProto **inits = xalloc(X, (X->n_inits + 1) * sizeof *inits);
  if (nodes == NULL || inits == NULL)
    return nomem(X);
  for (size_t i = 0; i < X->n_nodes; i++)
    nodes[i] = X->nodes[i];
  for (size_t i = 0; i < X->n_inits; i++)
    inits[i] = X->inits[i];
  gp->n_node = X->n_nodes;
  gp->node = nodes;
  gp->n_initializer = X->n_inits;
  gp->initializer = inits;
  gp->n_input = 1;
  gp->input = ins;
  gp->n_output = (size_t)g->n_outputs;
  gp->output = outs;
  return 0;
}

int tl_subnet_export(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                     const struct tl_bn_stats *bn, const char *path, struct tl_error *err) {
  const struct tl_graph *g = tl__supernet_graph(sn);
  struct exporter X;
  memset(&X, 0, sizeof X);
  X.g = g;
  X.bn = bn;
  X.err = err;
  uint8_t *buf = NULL;
  int rc;
  if (bn != NULL && bn->n_nodes != g->n_nodes)
    return tl_fail(err, TL_EINVAL, "%s: statistics for %d nodes, the model has %d", g->path,
                   bn->n_nodes, g->n_nodes);
  /* The plan gives every value its shape in the subnet; batch 1 and the
   * reference kernels keep it small and quick to build. */
  struct tl_subnet_plan_options po = {.batch = 1, .reference = 1, .bn = bn};
  if ((rc = tl_subnet_plan(sn, spec, &po, &X.plan, err)) != 0)
    return rc;
  if (tl__subnet_view(sn, spec, bn, &X.view) != 0) {
    tl_plan_free(X.plan);
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
  }
  /* Every name the model can hold: the graph's values, and per node a
   * few made here (sliced constants, the resize, output renames). */
  size_t cap = 64;
  while (cap < 4 * ((size_t)g->n_values + 2 * (size_t)g->n_nodes + 16))
    cap *= 2;
  X.names_mask = cap - 1;
  if ((X.names = calloc(cap, sizeof *X.names)) == NULL) {
    rc = nomem(&X);
    goto done;
  }
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].data == NULL)
      name_add(&X, g->values[v].name); /* node outputs and the input keep theirs */

  Onnx__GraphProto gp = ONNX__GRAPH_PROTO__INIT;
  if ((rc = build_graph(&X, sn, spec, &gp)) != 0)
    goto done;
  Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
  Onnx__OperatorSetIdProto *opsets[1] = {&opset};
  opset.domain = "";
  opset.has_version = 1;
  opset.version = g->opset;
  Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
  model.has_ir_version = 1;
  model.ir_version = EXPORT_IR_VERSION;
  model.n_opset_import = 1;
  model.opset_import = opsets;
  model.producer_name = "tailor";
  model.producer_version = "1";
  model.graph = &gp;
  size_t len = onnx__model_proto__get_packed_size(&model);
  if ((buf = malloc(len ? len : 1)) == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "%s: out of memory (%zu bytes for the model)", path, len);
    goto done;
  }
  if (onnx__model_proto__pack(&model, buf) != len) {
    rc = tl_fail(err, TL_EINTERNAL, "%s: the model packed to another size than measured", path);
    goto done;
  }
  rc = write_file(path, buf, len, err);
done:
  free(buf);
  free(X.names);
  free(X.view.mem);
  tl_plan_free(X.plan);
  while (X.mem != NULL) {
    struct xblock *next = X.mem->next;
    free(X.mem);
    X.mem = next;
  }
  return rc;
}
