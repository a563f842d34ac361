/*
 * onnx.c - ONNX model and tensor loader.
 *
 * The file is mapped, parsed by protobuf-c into the generated structs of
 * onnx.proto, and converted into a struct tl_graph.  To keep the peak
 * memory near one copy of the weights, each initializer's raw_data buffer
 * (allocated by protobuf-c with malloc) is taken over by the graph instead
 * of copied, and the file mapping is dropped right after parsing.
 * protobuf-c allocates through pb_alloc(), which is malloc, so the
 * graph's free() releases the buffers it takes over.
 *
 * Constant nodes are turned into constant values here, so the rest of the
 * engine sees every constant the same way.
 */
#include "onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hash.h"
#include "internal.h"
#include "onnx.pb-c.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "raw_data is little endian; tailor reads it in place");

/* Opsets of the default domain whose semantics the ops implement. */
#define TL_OPSET_MIN 1
#define TL_OPSET_MAX 17

/* ---------------------------------------------------------------- file */

struct mapped_file {
  const uint8_t *data;
  size_t len;
};

static int map_file(const char *path, struct mapped_file *mf, struct tl_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return tl_fail(err, errno == ENOENT ? TL_ENOENT : TL_EIO, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return tl_fail(err, TL_EIO, "%s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return tl_fail(err, TL_EIO, "%s: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return tl_fail(err, TL_EFORMAT, "%s: empty file", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED)
    return tl_fail(err, TL_EIO, "%s: mmap: %s", path, strerror(e));
  madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
  mf->data = p;
  mf->len = (size_t)st.st_size;
  return 0;
}

static void unmap_file(struct mapped_file *mf) {
  if (mf->data != NULL)
    munmap((void *)mf->data, mf->len);
  mf->data = NULL;
}

/* ------------------------------------------------------ protobuf memory */

/* protobuf-c allocates what it parses through these rather than its
 * default allocator, for two reasons: a parse that ran out of memory is
 * then told apart from a file that does not parse (unpack returns NULL
 * for both), and the allocations are malloc calls of this file, which a
 * test that fails the n-th allocation of a load counts and fails like
 * the loader's own.  They must stay malloc and free: the graph takes
 * initializers' raw_data buffers over and frees them with free(). */
struct pb_memory {
  ProtobufCAllocator allocator;
  int exhausted; /* an allocation failed */
};

static void *pb_alloc(void *data, size_t size) {
  void *p = malloc(size ? size : 1);
  if (p == NULL)
    ((struct pb_memory *)data)->exhausted = 1;
  return p;
}

static void pb_free(void *data, void *p) {
  (void)data;
  free(p);
}

static void pb_memory_init(struct pb_memory *pm) {
  pm->allocator = (ProtobufCAllocator){pb_alloc, pb_free, pm};
  pm->exhausted = 0;
}

/* ------------------------------------------------------------- tensors */

static enum tl_dtype dtype_from_onnx(int32_t t) {
  switch (t) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: return TL_DTYPE_FLOAT32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: return TL_DTYPE_UINT8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return TL_DTYPE_INT8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: return TL_DTYPE_INT32;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: return TL_DTYPE_INT64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return TL_DTYPE_BOOL;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: return TL_DTYPE_FLOAT16;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: return TL_DTYPE_FLOAT64;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UNDEFINED: return TL_DTYPE_UNDEFINED;
  default: return TL_DTYPE_OTHER;
  }
}

static const char *onnx_type_name(int32_t t) {
  static const char *const names[] = {"UNDEFINED",  "FLOAT",   "UINT8",  "INT8",   "UINT16",
                                      "INT16",      "INT32",   "INT64",  "STRING", "BOOL",
                                      "FLOAT16",    "DOUBLE",  "UINT32", "UINT64", "COMPLEX64",
                                      "COMPLEX128", "BFLOAT16"};
  if (t >= 0 && t < (int32_t)(sizeof names / sizeof names[0]))
    return names[t];
  return "unknown";
}

/* Converts tp into *out, taking tp's raw_data buffer when it can (tp is
 * left without it).  where names the tensor for messages. */
static int tensor_from_proto(Onnx__TensorProto *tp, struct tl_tensor *out, const char *where,
                             struct tl_error *err) {
  struct tl_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dtype_from_onnx(tp->data_type);
  size_t esize = tl_dtype_size(t.dtype);
  if (esize == 0)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: data type %s is not supported", where,
                   onnx_type_name(tp->data_type));
  if (tp->n_dims > TL_MAX_DIMS)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: %zu dimensions (at most %d supported)", where,
                   tp->n_dims, TL_MAX_DIMS);
  t.shape.ndim = (int)tp->n_dims;
  for (size_t i = 0; i < tp->n_dims; i++) {
    if (tp->dims[i] < 0)
      return tl_fail(err, TL_EFORMAT, "%s: negative dimension %lld", where, (long long)tp->dims[i]);
    t.shape.dims[i] = tp->dims[i];
  }
  int64_t numel = tl_shape_numel(&t.shape);
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / 16)
    return tl_fail(err, TL_EFORMAT, "%s: element count overflows", where);
  size_t bytes = (size_t)numel * esize;
  if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: external data files are not supported; save the model "
                   "with its weights inside",
                   where);

  if (tp->has_raw_data && (tp->raw_data.len > 0 || numel == 0)) {
    if (tp->raw_data.len != bytes)
      return tl_fail(err, TL_EFORMAT, "%s: raw_data has %zu bytes but shape %s of %s needs %zu",
                     where, tp->raw_data.len, tl_shape_str(&t.shape, (char[96]){0}, 96),
                     tl_dtype_name(t.dtype), bytes);
    if (bytes > 0 && ((uintptr_t)tp->raw_data.data % 16) == 0) {
      t.data = tp->raw_data.data; /* take it over: no copy */
      tp->raw_data.data = NULL;
      tp->raw_data.len = 0;
      tp->has_raw_data = 0;
    } else {
      t.data = malloc(bytes ? bytes : 1);
      if (t.data == NULL)
        return tl_fail(err, TL_ENOMEM, "%s: out of memory (%zu bytes)", where, bytes);
      if (bytes)
        memcpy(t.data, tp->raw_data.data, bytes);
    }
    *out = t;
    return 0;
  }

  size_t have;
  switch (tp->data_type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = tp->n_float_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = tp->n_int64_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = tp->n_double_data; break;
  default: have = tp->n_int32_data; break;
  }
  if (have != (size_t)numel)
    return tl_fail(err, TL_EFORMAT, "%s: has %zu values but shape %s needs %lld", where, have,
                   tl_shape_str(&t.shape, (char[96]){0}, 96), (long long)numel);
  t.data = malloc(bytes ? bytes : 1);
  if (t.data == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory (%zu bytes)", where, bytes);
  for (size_t i = 0; i < (size_t)numel; i++) {
    switch (t.dtype) {
    case TL_DTYPE_FLOAT32: ((float *)t.data)[i] = tp->float_data[i]; break;
    case TL_DTYPE_INT64: ((int64_t *)t.data)[i] = tp->int64_data[i]; break;
    case TL_DTYPE_FLOAT64: ((double *)t.data)[i] = tp->double_data[i]; break;
    case TL_DTYPE_INT32: ((int32_t *)t.data)[i] = tp->int32_data[i]; break;
    case TL_DTYPE_FLOAT16: ((uint16_t *)t.data)[i] = (uint16_t)tp->int32_data[i]; break;
    case TL_DTYPE_UINT8:
    case TL_DTYPE_BOOL: ((uint8_t *)t.data)[i] = (uint8_t)tp->int32_data[i]; break;
    case TL_DTYPE_INT8: ((int8_t *)t.data)[i] = (int8_t)tp->int32_data[i]; break;
    default: break;
    }
  }
  *out = t;
  return 0;
}

int tl_onnx_read_tensor(const char *path, struct tl_tensor *out, char **name,
                        struct tl_error *err) {
  struct mapped_file mf = {0};
  int rc = map_file(path, &mf, err);
  if (rc != 0)
    return rc;
  struct pb_memory pm;
  pb_memory_init(&pm);
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(&pm.allocator, mf.len, mf.data);
  unmap_file(&mf);
  if (tp == NULL && pm.exhausted)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory parsing the tensor", path);
  if (tp == NULL)
    return tl_fail(err, TL_EFORMAT, "%s: not a valid serialized TensorProto", path);
  char *nm = NULL;
  if (name != NULL) {
    nm = strdup(tp->name ? tp->name : "");
    if (nm == NULL) {
      onnx__tensor_proto__free_unpacked(tp, &pm.allocator);
      return tl_fail(err, TL_ENOMEM, "%s: out of memory", path);
    }
  }
  struct tl_tensor t;
  rc = tensor_from_proto(tp, &t, path, err);
  onnx__tensor_proto__free_unpacked(tp, &pm.allocator);
  if (rc != 0) {
    free(nm);
    return rc;
  }
  *out = t;
  if (name != NULL)
    *name = nm;
  return 0;
}

/* ----------------------------------------------------------- name map */

/* Open addressing from value name to value index; built once per load. */
struct name_map {
  int *slots; /* value index + 1; 0 = empty */
  size_t mask;
};

static int name_map_init(struct name_map *m, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n + 1)
    cap *= 2;
  m->slots = calloc(cap, sizeof *m->slots);
  m->mask = cap - 1;
  return m->slots ? 0 : TL_ENOMEM;
}

static int name_map_get(const struct name_map *m, const struct tl_value *values, const char *name) {
  for (size_t i = tl_hash_str(name) & m->mask;; i = (i + 1) & m->mask) {
    int v = m->slots[i];
    if (v == 0)
      return -1;
    if (strcmp(values[v - 1].name, name) == 0)
      return v - 1;
  }
}

/* The caller has checked that name is absent and the map has room. */
static void name_map_put(struct name_map *m, const char *name, int index) {
  size_t i = tl_hash_str(name) & m->mask;
  while (m->slots[i] != 0)
    i = (i + 1) & m->mask;
  m->slots[i] = index + 1;
}

/* -------------------------------------------------------------- loader */

struct loader {
  const char *path;
  struct tl_graph *g;
  struct name_map names;
  int cap_values;
  struct tl_error *err;
};

/* Appends a value called name; returns its index or a negative code. */
static int add_value(struct loader *L, const char *name) {
  struct tl_graph *g = L->g;
  if (g->n_values == L->cap_values)
    return tl_fail(L->err, TL_EINTERNAL, "%s: value table overflow", L->path);
  struct tl_value *v = &g->values[g->n_values];
  memset(v, 0, sizeof *v);
  v->name = strdup(name);
  if (v->name == NULL)
    return tl_fail(L->err, TL_ENOMEM, "%s: out of memory", L->path);
  v->producer = -1;
  v->shape.ndim = -1;
  name_map_put(&L->names, v->name, g->n_values);
  return g->n_values++;
}

static int type_from_proto(struct loader *L, const Onnx__ValueInfoProto *vi, struct tl_value *v) {
  const Onnx__TypeProto *tp = vi->type;
  if (tp == NULL)
    return 0; /* not said */
  if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || tp->tensor_type == NULL)
    return tl_fail(
        L->err, TL_EUNSUPPORTED,
        "%s: value \"%s\" is not a tensor (sequence, map and optional types are not supported)",
        L->path, v->name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  if (tt->has_elem_type)
    v->dtype = dtype_from_onnx(tt->elem_type);
  if (tt->shape == NULL)
    return 0;
  if (tt->shape->n_dim > TL_MAX_DIMS)
    return tl_fail(L->err, TL_EUNSUPPORTED,
                   "%s: value \"%s\" has %zu dimensions (at most %d supported)", L->path, v->name,
                   tt->shape->n_dim, TL_MAX_DIMS);
  v->shape.ndim = (int)tt->shape->n_dim;
  for (size_t i = 0; i < tt->shape->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    v->shape.dims[i] = -1;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value >= 0)
      v->shape.dims[i] = d->dim_value;
  }
  return 0;
}

/* Fills what convert_attr() gives at besides its name.  On failure at
 * holds nothing of its own to free (only the name). */
static int convert_attr_value(struct loader *L, const char *label, Onnx__AttributeProto *ap,
                              struct tl_attr *at) {
  int type = ap->has_type ? (int)ap->type : 0;
  if (type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) {
    /* IR versions before 3 did not always set the type. */
    if (ap->has_f)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    else if (ap->has_i)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    else if (ap->has_s)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    else if (ap->t)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    else if (ap->n_floats)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    else if (ap->n_ints)
      type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
  }
  switch (type) {
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
    at->type = TL_ATTR_FLOAT;
    at->f = ap->f;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
    at->type = TL_ATTR_INT;
    at->i = ap->i;
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
    at->type = TL_ATTR_STRING;
    at->s = malloc(ap->s.len + 1);
    if (at->s == NULL)
      return TL_ENOMEM;
    if (ap->s.len)
      memcpy(at->s, ap->s.data, ap->s.len);
    at->s[ap->s.len] = '\0';
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
    if (ap->t == NULL)
      return tl_fail(L->err, TL_EFORMAT, "%s: %s: attribute \"%s\" has no tensor", L->path, label,
                     at->name);
    char where[TL_ERROR_MAX / 2];
    snprintf(where, sizeof where, "%s: %s: attribute \"%s\"", L->path, label, at->name);
    int rc = tensor_from_proto(ap->t, &at->t, where, L->err);
    if (rc != 0)
      return rc;
    at->type = TL_ATTR_TENSOR;
    break;
  }
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
    at->type = TL_ATTR_FLOATS;
    at->n = (int)ap->n_floats;
    at->floats = malloc((ap->n_floats ? ap->n_floats : 1) * sizeof(float));
    if (at->floats == NULL)
      return TL_ENOMEM;
    if (ap->n_floats)
      memcpy(at->floats, ap->floats, ap->n_floats * sizeof(float));
    break;
  case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
    at->type = TL_ATTR_INTS;
    at->n = (int)ap->n_ints;
    at->ints = malloc((ap->n_ints ? ap->n_ints : 1) * sizeof(int64_t));
    if (at->ints == NULL)
      return TL_ENOMEM;
    if (ap->n_ints)
      memcpy(at->ints, ap->ints, ap->n_ints * sizeof(int64_t));
    break;
  default: at->type = TL_ATTR_OTHER; break;
  }
  return 0;
}

/* Converts one attribute into at.  On failure at holds nothing to free:
 * the caller counts an attribute in n_attrs (which tl_graph_free() frees)
 * only once it is whole, so the name is freed here. */
static int convert_attr(struct loader *L, const char *label, Onnx__AttributeProto *ap,
                        struct tl_attr *at) {
  at->name = strdup(ap->name ? ap->name : "");
  if (at->name == NULL)
    return TL_ENOMEM;
  int rc = convert_attr_value(L, label, ap, at);
  if (rc != 0) {
    free(at->name);
    at->name = NULL;
  }
  return rc;
}

/* Turns a Constant node into a constant value (its single output). */
static int fold_constant_node(struct loader *L, const char *label, struct tl_node *n) {
  struct tl_graph *g = L->g;
  if (n->n_out != 1 || n->n_attrs != 1 || n->out[0] < 0)
    return tl_fail(L->err, TL_EFORMAT, "%s: %s: needs one output and one value attribute", L->path,
                   label);
  struct tl_attr *at = &n->attrs[0];
  struct tl_value *v = &g->values[n->out[0]];
  struct tl_tensor t;
  memset(&t, 0, sizeof t);
  if (strcmp(at->name, "value") == 0 && at->type == TL_ATTR_TENSOR) {
    t = at->t;
    at->t.data = NULL;
  } else if (strcmp(at->name, "value_float") == 0 && at->type == TL_ATTR_FLOAT) {
    t.dtype = TL_DTYPE_FLOAT32;
    if ((t.data = malloc(sizeof(float))) == NULL)
      return TL_ENOMEM;
    *(float *)t.data = at->f;
  } else if (strcmp(at->name, "value_int") == 0 && at->type == TL_ATTR_INT) {
    t.dtype = TL_DTYPE_INT64;
    if ((t.data = malloc(sizeof(int64_t))) == NULL)
      return TL_ENOMEM;
    *(int64_t *)t.data = at->i;
  } else if (strcmp(at->name, "value_floats") == 0 && at->type == TL_ATTR_FLOATS) {
    t.dtype = TL_DTYPE_FLOAT32;
    t.shape.ndim = 1;
    t.shape.dims[0] = at->n;
    t.data = at->floats;
    at->floats = NULL;
  } else if (strcmp(at->name, "value_ints") == 0 && at->type == TL_ATTR_INTS) {
    t.dtype = TL_DTYPE_INT64;
    t.shape.ndim = 1;
    t.shape.dims[0] = at->n;
    t.data = at->ints;
    at->ints = NULL;
  } else {
    return tl_fail(
        L->err, TL_EUNSUPPORTED,
        "%s: %s: attribute \"%s\" is not supported (value, value_float(s), value_int(s) are)",
        L->path, label, at->name);
  }
  v->dtype = t.dtype;
  v->shape = t.shape;
  v->data = t.data;
  return 0;
}

static int64_t find_opset(const Onnx__ModelProto *m) {
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (o->domain == NULL || o->domain[0] == '\0' || strcmp(o->domain, "ai.onnx") == 0)
      return o->has_version ? o->version : -1;
  }
  return -1;
}

/* Kahn's algorithm over the nodes; a cycle is an error. */
static int sort_nodes(struct loader *L) {
  struct tl_graph *g = L->g;
  int n = g->n_nodes, rc = TL_ENOMEM;
  int *indeg = calloc((size_t)n + 1, sizeof *indeg);
  int *order = malloc(((size_t)n + 1) * sizeof *order);
  int *producer = malloc(((size_t)g->n_values + 1) * sizeof *producer);
  struct tl_node *sorted = malloc(((size_t)n + 1) * sizeof *sorted);
  if (!indeg || !order || !producer || !sorted)
    goto done;
  for (int v = 0; v < g->n_values; v++)
    producer[v] = g->values[v].producer;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) {
      int v = g->nodes[i].in[k];
      if (v >= 0 && producer[v] >= 0)
        indeg[i]++;
    }
  int head = 0, tail = 0;
  for (int i = 0; i < n; i++)
    if (indeg[i] == 0)
      order[tail++] = i;
  while (head < tail) {
    int i = order[head++];
    for (int k = 0; k < g->nodes[i].n_out; k++) {
      int v = g->nodes[i].out[k];
      if (v < 0)
        continue;
      /* A consumer reading v twice was counted twice; release it as often. */
      for (int j = 0; j < n; j++)
        for (int q = 0; q < g->nodes[j].n_in; q++)
          if (g->nodes[j].in[q] == v && --indeg[j] == 0)
            order[tail++] = j;
    }
  }
  if (tail != n) {
    rc = tl_fail(L->err, TL_EFORMAT, "%s: the graph has a cycle", L->path);
    goto done;
  }
  int *newpos = indeg; /* reuse: old index -> new index */
  for (int i = 0; i < n; i++) {
    sorted[i] = g->nodes[order[i]];
    newpos[order[i]] = i;
  }
  for (int v = 0; v < g->n_values; v++)
    if (g->values[v].producer >= 0)
      g->values[v].producer = newpos[g->values[v].producer];
  free(g->nodes);
  g->nodes = sorted;
  sorted = NULL;
  rc = 0;
done:
  free(indeg);
  free(order);
  free(producer);
  free(sorted);
  return rc != TL_ENOMEM ? rc : tl_fail(L->err, TL_ENOMEM, "%s: out of memory", L->path);
}

static int is_sorted(const struct tl_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) {
      int v = g->nodes[i].in[k];
      if (v >= 0 && g->values[v].producer >= i)
        return 0;
    }
  return 1;
}

static int convert_graph(struct loader *L, Onnx__ModelProto *m) {
  struct tl_graph *g = L->g;
  Onnx__GraphProto *gp = m->graph;
  struct tl_error *err = L->err;
  char label[200];
  int rc;

  size_t n_outs = 0;
  for (size_t i = 0; i < gp->n_node; i++)
    n_outs += gp->node[i]->n_output;
  size_t cap = gp->n_initializer + gp->n_input + n_outs + 1;
  if (cap > (size_t)1 << 26)
    return tl_fail(err, TL_EFORMAT, "%s: too many values (%zu)", L->path, cap);
  L->cap_values = (int)cap;
  g->values = calloc(cap, sizeof *g->values);
  g->nodes = calloc(gp->n_node + 1, sizeof *g->nodes);
  g->inputs = calloc(gp->n_input + 1, sizeof *g->inputs);
  g->outputs = calloc(gp->n_output + 1, sizeof *g->outputs);
  if (!g->values || !g->nodes || !g->inputs || !g->outputs || name_map_init(&L->names, cap) != 0)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", L->path);

  /* Initializers: the weights. */
  for (size_t i = 0; i < gp->n_initializer; i++) {
    Onnx__TensorProto *tp = gp->initializer[i];
    const char *name = tp->name ? tp->name : "";
    if (name[0] == '\0')
      return tl_fail(err, TL_EFORMAT, "%s: initializer #%zu has no name", L->path, i);
    if (name_map_get(&L->names, g->values, name) >= 0)
      return tl_fail(err, TL_EFORMAT, "%s: initializer \"%s\" is defined twice", L->path, name);
    int v = add_value(L, name);
    if (v < 0)
      return v;
    char where[TL_ERROR_MAX / 2];
    snprintf(where, sizeof where, "%s: initializer \"%s\"", L->path, name);
    struct tl_tensor t;
    if ((rc = tensor_from_proto(tp, &t, where, err)) != 0)
      return rc;
    g->values[v].dtype = t.dtype;
    g->values[v].shape = t.shape;
    g->values[v].data = t.data;
  }

  /* Graph inputs; those with an initializer are constants. */
  for (size_t i = 0; i < gp->n_input; i++) {
    const Onnx__ValueInfoProto *vi = gp->input[i];
    const char *name = vi->name ? vi->name : "";
    if (name[0] == '\0')
      return tl_fail(err, TL_EFORMAT, "%s: graph input #%zu has no name", L->path, i);
    int v = name_map_get(&L->names, g->values, name);
    if (v >= 0) {
      if (g->values[v].data != NULL)
        continue;
      return tl_fail(err, TL_EFORMAT, "%s: graph input \"%s\" is listed twice", L->path, name);
    }
    if ((v = add_value(L, name)) < 0)
      return v;
    if ((rc = type_from_proto(L, vi, &g->values[v])) != 0)
      return rc;
    g->inputs[g->n_inputs++] = v;
  }

  /* Nodes: outputs first, so that inputs may refer to later nodes. */
  g->n_nodes = (int)gp->n_node;
  for (size_t i = 0; i < gp->n_node; i++) {
    Onnx__NodeProto *np = gp->node[i];
    struct tl_node *n = &g->nodes[i];
    n->name = strdup(np->name ? np->name : "");
    n->op_type = strdup(np->op_type ? np->op_type : "");
    n->in = malloc((np->n_input + 1) * sizeof *n->in);
    n->out = malloc((np->n_output + 1) * sizeof *n->out);
    n->attrs = calloc(np->n_attribute + 1, sizeof *n->attrs);
    if (!n->name || !n->op_type || !n->in || !n->out || !n->attrs)
      return tl_fail(err, TL_ENOMEM, "%s: out of memory", L->path);
    n->n_in = (int)np->n_input;
    n->n_out = (int)np->n_output;
    tl_node_label(g, n, label, sizeof label);
    if (np->domain != NULL && np->domain[0] != '\0' && strcmp(np->domain, "ai.onnx") != 0)
      return tl_fail(err, TL_EUNSUPPORTED, "%s: %s: domain \"%s\" is not supported", L->path, label,
                     np->domain);
    n->op = tl_op_lookup(n->op_type);
    if (n->op == TL_OP_COUNT)
      return tl_fail(err, TL_EUNSUPPORTED, "%s: %s: op %s is not supported", L->path, label,
                     n->op_type);
    for (size_t k = 0; k < np->n_output; k++) {
      const char *name = np->output[k];
      if (name == NULL || name[0] == '\0') {
        n->out[k] = -1;
        continue;
      }
      if (name_map_get(&L->names, g->values, name) >= 0)
        return tl_fail(err, TL_EFORMAT, "%s: %s: output \"%s\" is already defined", L->path, label,
                       name);
      int v = add_value(L, name);
      if (v < 0)
        return v;
      g->values[v].producer = (int)i;
      n->out[k] = v;
    }
  }
  for (size_t i = 0; i < gp->n_node; i++) {
    Onnx__NodeProto *np = gp->node[i];
    struct tl_node *n = &g->nodes[i];
    tl_node_label(g, n, label, sizeof label);
    for (size_t k = 0; k < np->n_input; k++) {
      const char *name = np->input[k];
      if (name == NULL || name[0] == '\0') {
        n->in[k] = -1;
        continue;
      }
      int v = name_map_get(&L->names, g->values, name);
      if (v < 0)
        return tl_fail(
            err, TL_EFORMAT,
            "%s: %s: input \"%s\" is not produced by any node, graph input or initializer", L->path,
            label, name);
      n->in[k] = v;
    }
    for (size_t a = 0; a < np->n_attribute; a++) {
      if ((rc = convert_attr(L, label, np->attribute[a], &n->attrs[a])) != 0)
        return rc == TL_ENOMEM ? tl_fail(err, rc, "%s: out of memory", L->path) : rc;
      n->n_attrs++;
    }
  }

  /* Type hints for intermediate values. */
  for (size_t i = 0; i < gp->n_value_info; i++) {
    const Onnx__ValueInfoProto *vi = gp->value_info[i];
    int v = vi->name ? name_map_get(&L->names, g->values, vi->name) : -1;
    if (v >= 0 && g->values[v].data == NULL && (rc = type_from_proto(L, vi, &g->values[v])) != 0)
      return rc;
  }

  for (size_t i = 0; i < gp->n_output; i++) {
    const Onnx__ValueInfoProto *vi = gp->output[i];
    const char *name = vi->name ? vi->name : "";
    int v = name_map_get(&L->names, g->values, name);
    if (v < 0)
      return tl_fail(err, TL_EFORMAT,
                     "%s: graph output \"%s\" is not produced by any node, input or initializer",
                     L->path, name);
    if (g->values[v].data == NULL && (rc = type_from_proto(L, vi, &g->values[v])) != 0)
      return rc;
    g->values[v].is_output = 1;
    g->outputs[g->n_outputs++] = v;
  }
  if (g->n_outputs == 0)
    return tl_fail(err, TL_EFORMAT, "%s: the graph has no outputs", L->path);

  if (!is_sorted(g) && (rc = sort_nodes(L)) != 0)
    return rc;

  /* Constant nodes become constant values; drop them from the node list. */
  for (int i = 0; i < g->n_nodes; i++) {
    struct tl_node *n = &g->nodes[i];
    if (n->op == TL_OP_CONSTANT) {
      tl_node_label(g, n, label, sizeof label);
      if ((rc = fold_constant_node(L, label, n)) != 0)
        return rc;
      g->values[n->out[0]].producer = -1;
      tl__node_clear(n);
    }
  }
  tl__graph_compact(g);

  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] >= 0)
        g->values[g->nodes[i].in[k]].n_consumers++;
  return tl__graph_normalize(g, err);
}

int tl_onnx_load(const char *path, struct tl_graph **out, struct tl_error *err) {
  struct mapped_file mf = {0};
  struct loader L = {.path = path, .err = err};
  struct pb_memory pm;
  Onnx__ModelProto *m = NULL;
  int rc = map_file(path, &mf, err);
  if (rc != 0)
    return rc;
  uint64_t hash = tl_hash_bytes(TL_HASH_INIT, mf.data, mf.len);
  pb_memory_init(&pm);
  m = onnx__model_proto__unpack(&pm.allocator, mf.len, mf.data);
  unmap_file(&mf);
  if (m == NULL && pm.exhausted)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory parsing the model", path);
  if (m == NULL)
    return tl_fail(
        err, TL_EFORMAT,
        "%s: not a valid ONNX model (the protobuf does not parse; truncated or corrupt?)", path);
  if (m->graph == NULL) {
    rc = tl_fail(err, TL_EFORMAT, "%s: the model has no graph", path);
    goto fail;
  }
  int64_t opset = find_opset(m);
  if (opset < TL_OPSET_MIN || opset > TL_OPSET_MAX) {
    if (opset < 0)
      rc = tl_fail(err, m->n_opset_import ? TL_EUNSUPPORTED : TL_EFORMAT,
                   "%s: the model imports no opset of the default (ai.onnx) domain", path);
    else
      rc = tl_fail(err, TL_EUNSUPPORTED, "%s: opset %lld is not supported (%d to %d are)", path,
                   (long long)opset, TL_OPSET_MIN, TL_OPSET_MAX);
    goto fail;
  }
  L.g = calloc(1, sizeof *L.g);
  if (L.g == NULL || (L.g->path = strdup(path)) == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "%s: out of memory", path);
    goto fail;
  }
  L.g->opset = opset;
  L.g->hash = hash;
  if ((rc = convert_graph(&L, m)) != 0) {
    if (rc == TL_ENOMEM)
      tl_fail(err, rc, "%s: out of memory", path);
    goto fail;
  }
  free(L.names.slots);
  onnx__model_proto__free_unpacked(m, &pm.allocator);
  *out = L.g;
  return 0;
fail:
  free(L.names.slots);
  tl_graph_free(L.g);
  if (m != NULL)
    onnx__model_proto__free_unpacked(m, &pm.allocator);
  return rc;
}
