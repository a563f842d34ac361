/*
 * supernet.c - finding a graph's elastic dimensions, sorting its internal
 * channels, and subnet specs.
 *
 * The analysis only reads the graph's structure (producers, consumers, op
 * types, constant weights); it knows no model by name.  See supernet.h for
 * what depth, width and resolution mean.  Invariant after build: every
 * width group's channels are sorted by importance, descending, in every
 * tensor that indexes them, so any prefix is a valid narrower layer.
 */
#include "supernet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "internal.h"

#define MAX_BRANCH_NODES 256
#define MAX_MID_NODES 16

struct sn_block {
  int add;       /* the Add that closes the branch */
  int in;        /* the block's input value: the identity skip */
  int out;       /* the value consumers read: Add's output or post_act's */
  int post_act;  /* a Relu after the Add, dropped with the block, or -1 */
  int n_nodes;
  int *nodes;    /* branch nodes, the Add and post_act */
  int stage;
};

struct sn_width {
  int c1, c2;    /* producing conv, consuming conv */
  int n_mid;
  int mid[MAX_MID_NODES];
  int64_t channels;
  int stage;
};

struct tl_supernet {
  struct tl_graph *g;
  int n_stages;
  int stage_first[TL_SN_MAX_STAGES]; /* first block of each stage */
  int stage_n[TL_SN_MAX_STAGES];     /* blocks per stage */
  int stage_wg[TL_SN_MAX_STAGES];    /* width groups per stage */
  int n_blocks;
  struct sn_block *blocks;
  int n_wg;
  struct sn_width *wg;
  int n_widths;
  float widths[TL_SN_MAX_CHOICES];
  int n_res;
  int res[TL_SN_MAX_CHOICES];
  int native_h, native_w;
  /* Per-node and per-value tables for building views. */
  int *consumers_start; /* CSR over values: consumer nodes of each value */
  int *consumers;
};

/* ------------------------------------------------------------ helpers */

static int is_view_op(enum tl_op op) {
  return op == TL_OP_IDENTITY || op == TL_OP_DROPOUT;
}

static int is_act_op(enum tl_op op) {
  return op == TL_OP_RELU || op == TL_OP_CLIP || op == TL_OP_HARDSWISH ||
         op == TL_OP_HARDSIGMOID || op == TL_OP_SIGMOID;
}

/* The value v stands for once Identity/Dropout are seen through. */
static int resolve(const struct tl_graph *g, int v) {
  for (int hops = 0; v >= 0 && hops < 64; hops++) {
    int p = g->values[v].producer;
    if (p < 0 || !is_view_op(g->nodes[p].op) || g->nodes[p].n_in < 1)
      break;
    v = g->nodes[p].in[0];
  }
  return v;
}

static int n_consumers(const struct tl_supernet *sn, int v) {
  return sn->consumers_start[v + 1] - sn->consumers_start[v];
}

static int consumer(const struct tl_supernet *sn, int v, int k) {
  return sn->consumers[sn->consumers_start[v] + k];
}

static int is_const(const struct tl_graph *g, int v) {
  return v >= 0 && g->values[v].data != NULL;
}

static int64_t attr_int(const struct tl_node *n, const char *name, int64_t def) {
  const struct tl_attr *a = tl_node_attr(n, name);
  return a != NULL && a->type == TL_ATTR_INT ? a->i : def;
}

/* The conv's constant 4-D float weights, or NULL. */
static const struct tl_value *conv_weights(const struct tl_graph *g, const struct tl_node *n) {
  if (n->op != TL_OP_CONV || n->n_in < 2 || !is_const(g, n->in[1]))
    return NULL;
  const struct tl_value *w = &g->values[n->in[1]];
  return w->dtype == TL_DTYPE_FLOAT32 && w->shape.ndim == 4 ? w : NULL;
}

static int build_consumers(struct tl_supernet *sn) {
  const struct tl_graph *g = sn->g;
  sn->consumers_start = calloc((size_t)g->n_values + 2, sizeof *sn->consumers_start);
  int total = 0;
  for (int i = 0; i < g->n_nodes; i++)
    total += g->nodes[i].n_in;
  sn->consumers = malloc(((size_t)total + 1) * sizeof *sn->consumers);
  if (sn->consumers_start == NULL || sn->consumers == NULL)
    return TL_ENOMEM;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] >= 0)
        sn->consumers_start[g->nodes[i].in[k] + 1]++;
  for (int v = 0; v < g->n_values; v++)
    sn->consumers_start[v + 1] += sn->consumers_start[v];
  int *fill = calloc((size_t)g->n_values + 1, sizeof *fill);
  if (fill == NULL)
    return TL_ENOMEM;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++) {
      int v = g->nodes[i].in[k];
      if (v < 0)
        continue;
      /* A node reading v twice is listed once. */
      int dup = 0;
      for (int q = 0; q < k; q++)
        dup |= g->nodes[i].in[q] == v;
      if (!dup)
        sn->consumers[sn->consumers_start[v] + fill[v]++] = i;
    }
  /* Close the gaps left by duplicates. */
  int w = 0;
  for (int v = 0; v < g->n_values; v++) {
    int start = sn->consumers_start[v];
    sn->consumers_start[v] = w;
    for (int k = 0; k < fill[v]; k++)
      sn->consumers[w++] = sn->consumers[start + k];
  }
  sn->consumers_start[g->n_values] = w;
  free(fill);
  return 0;
}

/* ---------------------------------------------------- residual blocks */

/* Collects the branch that computes p from skip value s: every node on a
 * path from s to p, which must read nothing but s, constants and each
 * other, and whose results nobody outside reads.  Returns the node count
 * (sorted ascending into nodes[]) or 0 if it is not such a branch. */
static int collect_branch(const struct tl_supernet *sn, int s, int p, int add, int *nodes) {
  const struct tl_graph *g = sn->g;
  int n = 0, stack[MAX_BRANCH_NODES], top = 0;
  int rs = resolve(g, s);
  int sp = g->values[rs].producer;
  if (g->values[p].producer < 0 || resolve(g, p) == rs)
    return 0;
  stack[top++] = g->values[p].producer;
  while (top > 0) {
    int node = stack[--top];
    int seen = 0;
    for (int i = 0; i < n; i++)
      seen |= nodes[i] == node;
    if (seen)
      continue;
    if (n == MAX_BRANCH_NODES || node <= sp)
      return 0;
    nodes[n++] = node;
    const struct tl_node *nd = &g->nodes[node];
    for (int k = 0; k < nd->n_in; k++) {
      int v = nd->in[k];
      if (v < 0 || is_const(g, v) || v == s || resolve(g, v) == rs)
        continue;
      int pr = g->values[v].producer;
      if (pr < 0 || top == MAX_BRANCH_NODES)
        return 0; /* reaches a graph input other than s */
      stack[top++] = pr;
    }
  }
  int has_conv = 0;
  for (int i = 0; i < n; i++) {
    const struct tl_node *nd = &g->nodes[nodes[i]];
    has_conv |= nd->op == TL_OP_CONV;
    for (int k = 0; k < nd->n_out; k++) {
      int v = nd->out[k];
      if (v < 0)
        continue;
      if (g->values[v].is_output)
        return 0;
      for (int c = 0; c < n_consumers(sn, v); c++) {
        int q = consumer(sn, v, c), inside = q == add && v == p;
        for (int j = 0; j < n && !inside; j++)
          inside = nodes[j] == q;
        if (!inside)
          return 0;
      }
    }
  }
  if (!has_conv)
    return 0;
  /* Ascending node order: the plan walks nodes in order. */
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && nodes[j - 1] > nodes[j]; j--) {
      int t = nodes[j];
      nodes[j] = nodes[j - 1];
      nodes[j - 1] = t;
    }
  return n;
}

/* 1 if v is provably >= 0: a Relu's output, or a pool, view or sum of
 * such values. */
static int never_negative(const struct tl_graph *g, int v, int depth) {
  v = resolve(g, v);
  int p = g->values[v].producer;
  if (p < 0 || depth > 16)
    return 0;
  const struct tl_node *n = &g->nodes[p];
  switch (n->op) {
  case TL_OP_RELU: return 1;
  case TL_OP_MAXPOOL:
  case TL_OP_AVGPOOL:
  case TL_OP_GLOBALAVGPOOL:
  case TL_OP_FLATTEN:
  case TL_OP_RESHAPE: return n->n_in > 0 && never_negative(g, n->in[0], depth + 1);
  case TL_OP_ADD:
    return n->n_in == 2 && never_negative(g, n->in[0], depth + 1) &&
           never_negative(g, n->in[1], depth + 1);
  default: return 0;
  }
}

static int find_blocks(struct tl_supernet *sn) {
  const struct tl_graph *g = sn->g;
  int cap = 16;
  sn->blocks = calloc((size_t)cap, sizeof *sn->blocks);
  if (sn->blocks == NULL)
    return TL_ENOMEM;
  int nodes[MAX_BRANCH_NODES];
  for (int a = 0; a < g->n_nodes; a++) {
    const struct tl_node *add = &g->nodes[a];
    if (add->op != TL_OP_ADD || add->n_in != 2 || add->n_out != 1 || add->in[0] < 0 ||
        add->in[1] < 0 || is_const(g, add->in[0]) || is_const(g, add->in[1]))
      continue;
    for (int side = 0; side < 2; side++) {
      int s = add->in[side], p = add->in[1 - side];
      int n = collect_branch(sn, s, p, a, nodes);
      if (n == 0)
        continue;
      if (sn->n_blocks == cap) {
        cap *= 2;
        struct sn_block *nb = realloc(sn->blocks, (size_t)cap * sizeof *nb);
        if (nb == NULL)
          return TL_ENOMEM;
        sn->blocks = nb;
      }
      struct sn_block *b = &sn->blocks[sn->n_blocks];
      memset(b, 0, sizeof *b);
      b->add = a;
      b->in = s;
      b->out = add->out[0];
      b->post_act = -1;
      /* A Relu after the Add of an input that is never negative is the
       * identity once the branch is gone: drop it with the block. */
      if (b->out >= 0 && !g->values[b->out].is_output && n_consumers(sn, b->out) == 1 &&
          never_negative(g, s, 0)) {
        int q = consumer(sn, b->out, 0);
        if (g->nodes[q].op == TL_OP_RELU && g->nodes[q].n_out == 1) {
          b->post_act = q;
          b->out = g->nodes[q].out[0];
        }
      }
      b->n_nodes = n + 1 + (b->post_act >= 0);
      b->nodes = malloc((size_t)b->n_nodes * sizeof *b->nodes);
      if (b->nodes == NULL)
        return TL_ENOMEM;
      memcpy(b->nodes, nodes, (size_t)n * sizeof *nodes);
      b->nodes[n] = a;
      if (b->post_act >= 0)
        b->nodes[n + 1] = b->post_act;
      sn->n_blocks++;
      break;
    }
  }
  /* Stages: maximal chains where each block reads the previous one's output. */
  for (int i = 0; i < sn->n_blocks; i++) {
    struct sn_block *b = &sn->blocks[i];
    int s = sn->n_stages - 1;
    if (s >= 0 && resolve(g, b->in) == resolve(g, sn->blocks[i - 1].out)) {
      sn->stage_n[s]++;
    } else {
      if (sn->n_stages == TL_SN_MAX_STAGES)
        return TL_EUNSUPPORTED;
      s = sn->n_stages++;
      sn->stage_first[s] = i;
      sn->stage_n[s] = 1;
    }
    b->stage = s;
  }
  return 0;
}

/* ------------------------------------------------------ width groups */

/* Follows the channels c1 produces to the conv that consumes them; fills
 * w and returns 1 if they are internal (see the file comment). */
static int follow_channels(const struct tl_supernet *sn, int c1, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  const struct tl_node *n1 = &g->nodes[c1];
  const struct tl_value *w1 = conv_weights(g, n1);
  if (w1 == NULL || attr_int(n1, "group", 1) != 1 || n1->n_out != 1 || n1->out[0] < 0)
    return 0;
  int64_t ch = w1->shape.dims[0];
  if (ch < 2)
    return 0;
  memset(w, 0, sizeof *w);
  w->c1 = c1;
  w->channels = ch;
  int cur = n1->out[0];
  for (;;) {
    if (g->values[cur].is_output || w->n_mid >= MAX_MID_NODES - 2)
      return 0;
    int nc = n_consumers(sn, cur);
    if (nc == 1) {
      int q = consumer(sn, cur, 0);
      const struct tl_node *nq = &g->nodes[q];
      if (nq->n_out != 1 || nq->out[0] < 0 || nq->in[0] != cur)
        return 0;
      for (int k = 1; k < nq->n_in; k++)
        if (nq->in[k] >= 0 && !is_const(g, nq->in[k]))
          return 0;
      if (nq->op == TL_OP_BATCHNORM || is_act_op(nq->op) || is_view_op(nq->op) ||
          nq->op == TL_OP_MAXPOOL || nq->op == TL_OP_AVGPOOL) {
        if (nq->op == TL_OP_BATCHNORM && nq->n_in != 5)
          return 0;
        w->mid[w->n_mid++] = q;
        cur = nq->out[0];
        continue;
      }
      const struct tl_value *wq = conv_weights(g, nq);
      if (wq == NULL)
        return 0;
      int64_t group = attr_int(nq, "group", 1);
      if (group == ch && wq->shape.dims[0] == ch && wq->shape.dims[1] == 1) {
        w->mid[w->n_mid++] = q; /* depthwise: channel k stays channel k */
        cur = nq->out[0];
        continue;
      }
      if (group == 1 && wq->shape.dims[1] == ch) {
        w->c2 = q;
        return 1;
      }
      return 0;
    }
    if (nc == 2) {
      /* HardSwish written as Mul(x, HardSigmoid(x)). */
      int a = consumer(sn, cur, 0), b = consumer(sn, cur, 1);
      if (g->nodes[a].op != TL_OP_HARDSIGMOID) {
        int t = a;
        a = b;
        b = t;
      }
      const struct tl_node *h = &g->nodes[a], *m = &g->nodes[b];
      if (h->op != TL_OP_HARDSIGMOID || m->op != TL_OP_MUL || h->n_out != 1 || m->n_out != 1 ||
          m->n_in != 2 || h->out[0] < 0 || n_consumers(sn, h->out[0]) != 1 ||
          !((m->in[0] == cur && m->in[1] == h->out[0]) ||
            (m->in[1] == cur && m->in[0] == h->out[0])))
        return 0;
      w->mid[w->n_mid++] = a;
      w->mid[w->n_mid++] = b;
      cur = m->out[0];
      continue;
    }
    return 0;
  }
}

/* The tensors indexed by a group's channels must be its own: a weight
 * shared with another node would be permuted under it. */
static int group_owns_weights(const struct tl_supernet *sn, const struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  int nodes[MAX_MID_NODES + 2], n = 0;
  nodes[n++] = w->c1;
  for (int i = 0; i < w->n_mid; i++)
    nodes[n++] = w->mid[i];
  nodes[n++] = w->c2;
  for (int i = 0; i < n; i++) {
    const struct tl_node *nd = &g->nodes[nodes[i]];
    for (int k = 1; k < nd->n_in; k++)
      if (is_const(g, nd->in[k]) && g->values[nd->in[k]].n_consumers != 1)
        return 0;
  }
  return 1;
}

/* Permutes the first dimension of a constant (rows of `row` floats). */
static int permute_rows(struct tl_value *v, const int64_t *order, int64_t n, int64_t row,
                        float *tmp) {
  if (v->dtype != TL_DTYPE_FLOAT32 || tl_shape_numel(&v->shape) != n * row)
    return TL_ESHAPE;
  float *d = v->data;
  memcpy(tmp, d, (size_t)(n * row) * sizeof *d);
  for (int64_t i = 0; i < n; i++)
    memcpy(d + i * row, tmp + order[i] * row, (size_t)row * sizeof *d);
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

/* Sorts a group's channels by importance, descending, in every tensor
 * that indexes them: c1's rows and bias, each mid BN's parameters, each mid
 * depthwise conv's rows and bias, and c2's input channels. */
static int sort_group(struct tl_supernet *sn, const struct sn_width *w) {
  struct tl_graph *g = sn->g;
  const struct tl_node *n1 = &g->nodes[w->c1];
  struct tl_value *w1 = &g->values[n1->in[1]];
  const int64_t ch = w->channels, row1 = tl_shape_numel(&w1->shape) / ch;
  struct imp_index *imp = malloc((size_t)ch * sizeof *imp);
  int64_t *order = malloc((size_t)ch * sizeof *order);
  struct tl_value *w2 = &g->values[g->nodes[w->c2].in[1]];
  int64_t biggest = tl_shape_numel(&w1->shape) > tl_shape_numel(&w2->shape)
                        ? tl_shape_numel(&w1->shape)
                        : tl_shape_numel(&w2->shape);
  float *tmp = malloc((size_t)biggest * sizeof *tmp);
  int rc = TL_ENOMEM;
  if (imp == NULL || order == NULL || tmp == NULL)
    goto done;
  /* BN scale of the first BN after c1, if it comes before any other op. */
  const float *gamma = NULL, *var = NULL;
  float eps = 1e-5f;
  if (w->n_mid > 0 && g->nodes[w->mid[0]].op == TL_OP_BATCHNORM) {
    const struct tl_node *bn = &g->nodes[w->mid[0]];
    gamma = g->values[bn->in[1]].data;
    var = g->values[bn->in[4]].data;
    const struct tl_attr *a = tl_node_attr(bn, "epsilon");
    if (a != NULL && a->type == TL_ATTR_FLOAT)
      eps = a->f;
  }
  const float *wd = w1->data;
  for (int64_t i = 0; i < ch; i++) {
    double l1 = 0;
    for (int64_t k = 0; k < row1; k++)
      l1 += fabs(wd[i * row1 + k]);
    if (gamma != NULL)
      l1 *= fabs(gamma[i]) / sqrt((double)var[i] + eps);
    imp[i] = (struct imp_index){l1, i};
  }
  qsort(imp, (size_t)ch, sizeof *imp, cmp_importance);
  int identity = 1;
  for (int64_t i = 0; i < ch; i++) {
    order[i] = imp[i].i;
    identity &= order[i] == i;
  }
  rc = 0;
  if (identity)
    goto done;
  if ((rc = permute_rows(w1, order, ch, row1, tmp)) != 0)
    goto done;
  if (n1->n_in > 2 && is_const(g, n1->in[2]) &&
      (rc = permute_rows(&g->values[n1->in[2]], order, ch, 1, tmp)) != 0)
    goto done;
  for (int m = 0; m < w->n_mid; m++) {
    const struct tl_node *nd = &g->nodes[w->mid[m]];
    if (nd->op == TL_OP_BATCHNORM) {
      for (int k = 1; k < 5; k++)
        if ((rc = permute_rows(&g->values[nd->in[k]], order, ch, 1, tmp)) != 0)
          goto done;
    } else if (nd->op == TL_OP_CONV) {
      struct tl_value *wv = &g->values[nd->in[1]];
      if ((rc = permute_rows(wv, order, ch, tl_shape_numel(&wv->shape) / ch, tmp)) != 0)
        goto done;
      if (nd->n_in > 2 && is_const(g, nd->in[2]) &&
          (rc = permute_rows(&g->values[nd->in[2]], order, ch, 1, tmp)) != 0)
        goto done;
    }
  }
  /* c2: (m, ch, kh, kw): permute the ch blocks inside each row. */
  {
    const int64_t m = w2->shape.dims[0], khw = w2->shape.dims[2] * w2->shape.dims[3];
    float *d = w2->data;
    for (int64_t r = 0; r < m; r++) {
      float *rowp = d + r * ch * khw;
      memcpy(tmp, rowp, (size_t)(ch * khw) * sizeof *tmp);
      for (int64_t i = 0; i < ch; i++)
        memcpy(rowp + i * khw, tmp + order[i] * khw, (size_t)khw * sizeof *tmp);
    }
  }
done:
  free(imp);
  free(order);
  free(tmp);
  return rc;
}

static int find_width_groups(struct tl_supernet *sn, int sort) {
  const struct tl_graph *g = sn->g;
  sn->wg = calloc((size_t)g->n_nodes + 1, sizeof *sn->wg);
  if (sn->wg == NULL)
    return TL_ENOMEM;
  int *node_block = malloc(((size_t)g->n_nodes + 1) * sizeof *node_block);
  if (node_block == NULL)
    return TL_ENOMEM;
  for (int i = 0; i < g->n_nodes; i++)
    node_block[i] = -1;
  for (int b = 0; b < sn->n_blocks; b++)
    for (int k = 0; k < sn->blocks[b].n_nodes; k++)
      node_block[sn->blocks[b].nodes[k]] = b;
  for (int i = 0; i < g->n_nodes; i++) {
    struct sn_width w;
    if (!follow_channels(sn, i, &w) || !group_owns_weights(sn, &w))
      continue;
    /* The stage of the block holding c2, else the next stage, else the last. */
    int b = node_block[w.c2];
    if (b >= 0) {
      w.stage = sn->blocks[b].stage;
    } else {
      w.stage = sn->n_stages > 0 ? sn->n_stages - 1 : 0;
      for (int s = 0; s < sn->n_stages; s++)
        if (sn->blocks[sn->stage_first[s]].nodes[0] > w.c2) {
          w.stage = s;
          break;
        }
    }
    if (sort) {
      int rc = sort_group(sn, &w);
      if (rc != 0) {
        free(node_block);
        return rc;
      }
    }
    sn->wg[sn->n_wg++] = w;
  }
  free(node_block);
  if (sn->n_stages == 0 && sn->n_wg > 0)
    sn->n_stages = 1; /* one stage that has widths but no blocks */
  for (int i = 0; i < sn->n_wg; i++)
    sn->stage_wg[sn->wg[i].stage]++;
  return 0;
}

/* ------------------------------------------------------------- specs */

static int keep_channels(float w, int64_t ch) {
  int64_t k = (int64_t)floorf(w * (float)ch + 0.5f);
  return (int)(k < 1 ? 1 : (k > ch ? ch : k));
}

void tl_subnet_largest(const struct tl_supernet *sn, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[sn->n_res - 1];
  for (int s = 0; s < sn->n_stages; s++) {
    spec->depth[s] = sn->stage_n[s];
    spec->width[s] = sn->n_widths - 1;
  }
}

void tl_subnet_smallest(const struct tl_supernet *sn, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[0];
  for (int s = 0; s < sn->n_stages; s++)
    spec->width[s] = sn->stage_wg[s] > 0 ? 0 : sn->n_widths - 1;
}

static uint64_t next_random(uint64_t *seed) {
  /* splitmix64 */
  uint64_t z = (*seed += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void tl_subnet_random(const struct tl_supernet *sn, uint64_t *seed, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[next_random(seed) % (uint64_t)sn->n_res];
  for (int s = 0; s < sn->n_stages; s++) {
    spec->depth[s] = (int)(next_random(seed) % (uint64_t)(sn->stage_n[s] + 1));
    spec->width[s] = sn->stage_wg[s] > 0 ? (int)(next_random(seed) % (uint64_t)sn->n_widths)
                                         : sn->n_widths - 1;
  }
}

static void format_width(float w, char *buf, size_t size) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%g", (double)w);
  snprintf(buf, size, "%s", strncmp(tmp, "0.", 2) == 0 ? tmp + 1 : tmp);
}

char *tl_subnet_format(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                       char *buf, size_t size) {
  size_t used = 0;
  int n = snprintf(buf, size, "r=%d d=", spec->res);
  used = n > 0 ? (size_t)n : 0;
  for (int s = 0; s < sn->n_stages && used < size; s++) {
    n = snprintf(buf + used, size - used, "%s%d", s ? "," : "", spec->depth[s]);
    used += n > 0 ? (size_t)n : 0;
  }
  if (used < size) {
    n = snprintf(buf + used, size - used, " w=");
    used += n > 0 ? (size_t)n : 0;
  }
  for (int s = 0; s < sn->n_stages && used < size; s++) {
    char w[32];
    format_width(sn->widths[spec->width[s]], w, sizeof w);
    n = snprintf(buf + used, size - used, "%s%s", s ? "," : "", w);
    used += n > 0 ? (size_t)n : 0;
  }
  return buf;
}

uint64_t tl_subnet_key(const struct tl_supernet *sn, const struct tl_subnet_spec *spec) {
  char text[1024];
  tl_subnet_format(sn, spec, text, sizeof text);
  return tl_hash_str(text);
}

/* Splits "a,b,c" into at most max items; returns the count or -1. */
static int split_list(char *s, char **items, int max) {
  int n = 0;
  for (char *tok = s;; n++) {
    if (n == max)
      return -1;
    items[n] = tok;
    char *comma = strchr(tok, ',');
    if (comma == NULL)
      return n + 1;
    *comma = '\0';
    tok = comma + 1;
  }
}

int tl_subnet_parse(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec,
                    struct tl_error *err) {
  char buf[1024];
  struct tl_subnet_spec out;
  int have_r = 0, have_d = 0, have_w = 0;
  memset(&out, 0, sizeof out);
  if (strlen(text) >= sizeof buf)
    return tl_fail(err, TL_EINVAL, "subnet spec is too long");
  strcpy(buf, text);
  char *save = NULL;
  for (char *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL)
      return tl_fail(err, TL_EINVAL, "subnet \"%s\": \"%s\" is not key=value", text, tok);
    *eq = '\0';
    char *val = eq + 1;
    char *items[TL_SN_MAX_STAGES + 1];
    if (strcmp(tok, "r") == 0) {
      if (have_r++)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": r is given twice", text);
      char *end;
      long r = strtol(val, &end, 10);
      int ok = *val && !*end;
      for (int i = 0; ok && i < sn->n_res; i++)
        if (sn->res[i] == r) {
          out.res = (int)r;
          break;
        }
      if (!ok || out.res == 0) {
        char offered[256] = "";
        for (int i = 0; i < sn->n_res; i++)
          snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%d",
                   i ? ", " : "", sn->res[i]);
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": resolution %s is not offered (%s are)",
                       text, val, offered);
      }
    } else if (strcmp(tok, "d") == 0 || strcmp(tok, "w") == 0) {
      int is_d = tok[0] == 'd';
      if (is_d ? have_d++ : have_w++)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s is given twice", text, tok);
      int n = split_list(val, items, TL_SN_MAX_STAGES + 1);
      if (n != sn->n_stages)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s needs %d value%s (one per stage), not %d",
                       text, tok, sn->n_stages, sn->n_stages == 1 ? "" : "s", n < 0 ? n : n);
      for (int s = 0; s < n; s++) {
        char *end;
        if (is_d) {
          long d = strtol(items[s], &end, 10);
          if (!*items[s] || *end || d < 0 || d > sn->stage_n[s])
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": depth \"%s\" of stage %d is out of range (0 to %d)",
                           text, items[s], s + 1, sn->stage_n[s]);
          out.depth[s] = (int)d;
        } else {
          double w = strtod(items[s], &end);
          int found = -1;
          for (int i = 0; *items[s] && !*end && i < sn->n_widths; i++)
            if (fabs(w - sn->widths[i]) < 1e-6)
              found = i;
          if (found >= 0 && sn->stage_wg[s] == 0 && found != sn->n_widths - 1)
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": stage %d has no elastic width; its w must be 1",
                           text, s + 1);
          if (found < 0) {
            char offered[256] = "";
            for (int i = 0; i < sn->n_widths; i++) {
              char one[32];
              format_width(sn->widths[i], one, sizeof one);
              snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%s",
                       i ? ", " : "", one);
            }
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": width \"%s\" of stage %d is not offered (%s are)", text,
                           items[s], s + 1, offered);
          }
          out.width[s] = found;
        }
      }
    } else {
      return tl_fail(err, TL_EINVAL, "subnet \"%s\": unknown key \"%s\" (r, d and w are)", text,
                     tok);
    }
  }
  if (!have_r || !have_d || !have_w)
    return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s is missing", text,
                   !have_r ? "r" : !have_d ? "d" : "w");
  *spec = out;
  return 0;
}

/* ------------------------------------------------------------- views */

/* Fills a plan view for spec; arrays come from a single allocation the
 * caller frees with free(view->mem). */
static int make_view(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                     const struct tl_subnet_plan_options *opts, struct tl_plan_view *view) {
  const struct tl_graph *g = sn->g;
  size_t nn = (size_t)g->n_nodes + 1, nv = (size_t)g->n_values + 1;
  memset(view, 0, sizeof *view);
  char *mem = calloc(1, nn * (sizeof(uint8_t) + sizeof(int64_t)) + nv * sizeof(int));
  if (mem == NULL)
    return TL_ENOMEM;
  view->mem = mem;
  int64_t *conv_out = (int64_t *)mem;
  int *alias = (int *)(mem + nn * sizeof(int64_t));
  uint8_t *skip = (uint8_t *)(mem + nn * sizeof(int64_t) + nv * sizeof(int));
  for (size_t v = 0; v < nv; v++)
    alias[v] = -1;
  for (int s = 0; s < sn->n_stages; s++)
    for (int k = spec->depth[s]; k < sn->stage_n[s]; k++) {
      const struct sn_block *b = &sn->blocks[sn->stage_first[s] + k];
      for (int i = 0; i < b->n_nodes; i++)
        skip[b->nodes[i]] = 1;
      alias[b->out] = b->in;
    }
  for (int i = 0; i < sn->n_wg; i++) {
    const struct sn_width *w = &sn->wg[i];
    int k = keep_channels(sn->widths[spec->width[w->stage]], w->channels);
    if (k < w->channels)
      conv_out[w->c1] = k;
  }
  view->skip = skip;
  view->alias = alias;
  view->conv_out = conv_out;
  view->sliced = 1;
  if (opts != NULL && opts->bn != NULL) {
    view->bn_mean = (const float *const *)opts->bn->mean;
    view->bn_var = (const float *const *)opts->bn->var;
  }
  view->collect_bn = opts != NULL && opts->collect_bn;
  if (spec->res != sn->native_h) {
    view->resize_h = spec->res;
    view->resize_w = (int)floor((double)sn->native_w * spec->res / sn->native_h + 0.5);
  }
  return 0;
}

int tl_subnet_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   const struct tl_subnet_plan_options *opts, struct tl_plan **out,
                   struct tl_error *err) {
  const struct tl_graph *g = sn->g;
  struct tl_plan_view view;
  if (make_view(sn, spec, opts, &view) != 0)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
  struct tl_shape shape = g->values[g->inputs[0]].shape;
  shape.dims[0] = opts != NULL && opts->batch > 0 ? opts->batch : 1;
  struct tl_plan_options po = {.input_shapes = &shape, .view = &view,
                               .reference = opts != NULL && opts->reference};
  int rc = tl_plan_build(g, &po, out, err);
  free(view.mem);
  return rc;
}

int tl_subnet_cost(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   int64_t *macs, int64_t *params, struct tl_error *err) {
  struct tl_plan *p = NULL;
  int rc = tl_subnet_plan(sn, spec, NULL, &p, err);
  if (rc != 0)
    return rc;
  *macs = tl_plan_macs(p);
  *params = tl__plan_weight_elems(p);
  tl_plan_free(p);
  return 0;
}

/* ------------------------------------------------------------- build */

static int choose_resolutions(struct tl_supernet *sn, const struct tl_supernet_options *opts,
                              struct tl_error *err) {
  const struct tl_graph *g = sn->g;
  float fr[TL_SN_MAX_CHOICES];
  int n = 0;
  if (opts != NULL && opts->n_res > 0) {
    n = opts->n_res > TL_SN_MAX_CHOICES ? TL_SN_MAX_CHOICES : opts->n_res;
    for (int i = 0; i < n; i++)
      fr[i] = opts->res[i];
  } else {
    int steps = opts != NULL && opts->res_steps > 0 ? opts->res_steps : 4;
    if (steps >= TL_SN_MAX_CHOICES)
      steps = TL_SN_MAX_CHOICES - 1;
    for (int i = 0; i <= steps; i++)
      fr[n++] = 0.5f + 0.5f * (float)i / (float)steps;
  }
  sn->n_res = 0;
  for (int i = 0; i < n; i++) {
    if (!(fr[i] > 0.f && fr[i] <= 1.f))
      return tl_fail(err, TL_EINVAL, "resolution fraction %g is not in (0, 1]", (double)fr[i]);
    int side = (int)floorf((float)sn->native_h * fr[i] + 0.5f);
    int dup = side < 1;
    for (int k = 0; k < sn->n_res; k++)
      dup |= sn->res[k] == side;
    if (!dup)
      sn->res[sn->n_res++] = side;
  }
  /* Ascending, and always including the native side. */
  int has_native = 0;
  for (int k = 0; k < sn->n_res; k++)
    has_native |= sn->res[k] == sn->native_h;
  if (!has_native && sn->n_res < TL_SN_MAX_CHOICES)
    sn->res[sn->n_res++] = sn->native_h;
  for (int i = 1; i < sn->n_res; i++)
    for (int j = i; j > 0 && sn->res[j - 1] > sn->res[j]; j--) {
      int t = sn->res[j];
      sn->res[j] = sn->res[j - 1];
      sn->res[j - 1] = t;
    }
  (void)g;
  return 0;
}

/* Resolution is elastic when the largest subnet plans at the smallest side
 * and still gives outputs of the native shape (global pooling absorbed the
 * change); otherwise only the native side is offered. */
static int check_resolution(struct tl_supernet *sn) {
  const struct tl_graph *g = sn->g;
  int has_gap = 0;
  for (int i = 0; i < g->n_nodes; i++)
    has_gap |= g->nodes[i].op == TL_OP_GLOBALAVGPOOL;
  int elastic = has_gap && sn->n_res > 1;
  if (elastic) {
    struct tl_subnet_spec big, small_;
    tl_subnet_largest(sn, &big);
    small_ = big;
    small_.res = sn->res[0];
    struct tl_plan *pb = NULL, *ps = NULL;
    elastic = tl_subnet_plan(sn, &big, NULL, &pb, NULL) == 0 &&
              tl_subnet_plan(sn, &small_, NULL, &ps, NULL) == 0;
    for (int i = 0; elastic && i < tl_plan_n_outputs(pb); i++)
      elastic = tl_shape_equal(&tl_plan_output(pb, i)->shape, &tl_plan_output(ps, i)->shape);
    tl_plan_free(pb);
    tl_plan_free(ps);
  }
  if (!elastic) {
    sn->res[0] = sn->native_h;
    sn->n_res = 1;
  }
  return elastic;
}

int tl_supernet_build(struct tl_graph *g, const struct tl_supernet_options *opts,
                      struct tl_supernet **out, struct tl_error *err) {
  int rc;
  if (g->n_inputs != 1)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: a SuperNet needs a model with one input, not %d",
                   g->path, g->n_inputs);
  const struct tl_value *in = &g->values[g->inputs[0]];
  if (in->shape.ndim != 4 || in->shape.dims[2] <= 0 || in->shape.dims[3] <= 0 ||
      in->shape.dims[1] <= 0)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: a SuperNet needs an NCHW image input with known C, H and W", g->path);
  struct tl_supernet *sn = calloc(1, sizeof *sn);
  if (sn == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", g->path);
  sn->g = g;
  sn->native_h = (int)in->shape.dims[2];
  sn->native_w = (int)in->shape.dims[3];
  if (opts != NULL && opts->n_widths > 0) {
    sn->n_widths = opts->n_widths > TL_SN_MAX_CHOICES ? TL_SN_MAX_CHOICES : opts->n_widths;
    for (int i = 0; i < sn->n_widths; i++) {
      sn->widths[i] = opts->widths[i];
      if (!(sn->widths[i] > 0.f && sn->widths[i] <= 1.f) ||
          (i > 0 && sn->widths[i] <= sn->widths[i - 1])) {
        rc = tl_fail(err, TL_EINVAL, "width choices must be ascending fractions in (0, 1]");
        goto fail;
      }
    }
    if (sn->widths[sn->n_widths - 1] != 1.f) {
      rc = tl_fail(err, TL_EINVAL, "width choices must end with 1 (the full width)");
      goto fail;
    }
  } else {
    const float def[] = {.25f, .5f, .75f, 1.f};
    sn->n_widths = 4;
    memcpy(sn->widths, def, sizeof def);
  }
  if ((rc = build_consumers(sn)) != 0 || (rc = find_blocks(sn)) != 0 ||
      (rc = find_width_groups(sn, opts == NULL || !opts->no_sort)) != 0) {
    if (rc == TL_EUNSUPPORTED)
      tl_fail(err, rc, "%s: more than %d stages", g->path, TL_SN_MAX_STAGES);
    else
      tl_fail(err, rc, "%s: out of memory", g->path);
    goto fail;
  }
  if ((rc = choose_resolutions(sn, opts, err)) != 0)
    goto fail;
  int elastic_res = check_resolution(sn);
  if (sn->n_blocks == 0 && sn->n_wg == 0 && !elastic_res) {
    rc = tl_fail(err, TL_EUNSUPPORTED,
                 "%s: no elastic dimension: no residual block with an identity skip, no "
                 "internal channels between two convs, and no global pooling before the "
                 "classifier",
                 g->path);
    goto fail;
  }
  if (sn->n_stages == 0)
    sn->n_stages = 1; /* resolution only */
  *out = sn;
  return 0;
fail:
  tl_supernet_free(sn);
  return rc;
}

void tl_supernet_free(struct tl_supernet *sn) {
  if (sn == NULL)
    return;
  for (int i = 0; i < sn->n_blocks; i++)
    free(sn->blocks[i].nodes);
  free(sn->blocks);
  free(sn->wg);
  free(sn->consumers_start);
  free(sn->consumers);
  free(sn);
}

void tl_supernet_info(const struct tl_supernet *sn, struct tl_supernet_info *info) {
  memset(info, 0, sizeof *info);
  info->n_stages = sn->n_stages;
  info->n_width_groups = sn->n_wg;
  double space = sn->n_res;
  for (int s = 0; s < sn->n_stages; s++) {
    info->blocks[s] = sn->stage_n[s];
    info->width_groups[s] = sn->stage_wg[s];
    space *= sn->stage_n[s] + 1;
    if (sn->stage_wg[s] > 0)
      space *= sn->n_widths;
  }
  info->n_widths = sn->n_widths;
  memcpy(info->widths, sn->widths, sizeof info->widths);
  info->n_res = sn->n_res;
  memcpy(info->res, sn->res, sizeof info->res);
  info->native_res = sn->native_h;
  info->space_size = space;
}

const struct tl_graph *tl__supernet_graph(const struct tl_supernet *sn) { return sn->g; }

void tl_supernet_width_group(const struct tl_supernet *sn, int i, const char **producer,
                             const char **consumer_name, int64_t *channels, int *stage) {
  const struct sn_width *w = &sn->wg[i];
  *producer = sn->g->nodes[w->c1].name;
  *consumer_name = sn->g->nodes[w->c2].name;
  *channels = w->channels;
  *stage = w->stage;
}
