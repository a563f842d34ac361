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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "hash.h"
#include "internal.h"

#define MAX_BRANCH_NODES 256
#define MAX_GROUP_NODES 32
#define WHY_MAX 192 /* a reason a node is not elastic, for inspect --why */

struct sn_block {
  int add;      /* the Add that closes the branch */
  int in;       /* the block's input value: the identity skip */
  int out;      /* the value consumers read: Add's output or post_act's */
  int post_act; /* a Relu after the Add, dropped with the block, or -1 */
  int n_nodes;
  int *nodes; /* branch nodes, the Add and post_act */
  int stage;
};

/* A width group: channels that one dense conv (c1) makes and that nothing
 * outside its block reads, up to the dense conv that consumes them (c2).
 * nodes[] is every node that touches them, c1 first, in graph order, each
 * with its role (enum sn_role below). */
struct sn_width {
  int c1, c2;
  int n_nodes;
  int nodes[MAX_GROUP_NODES];
  uint8_t role[MAX_GROUP_NODES];
  int64_t channels;
  int64_t unit; /* channels kept together: a grouped conv's group size, else 1 */
  int stage;
  char why[WHY_MAX]; /* while analysing: why the channels are not a group */
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
  int n_notes; /* why residual Adds and convs are not elastic */
  char **notes;
  /* The full model's conv statistics per calibration set (see
   * tl__supernet_conv_ref); the one mutable part, under ref_lock. */
  pthread_mutex_t ref_lock;
  struct conv_ref *refs;
};

struct conv_ref {
  uint64_t key;
  struct tl_bn_stats *stats;
  struct conv_ref *next;
};

/* ------------------------------------------------------------ helpers */

static int is_view_op(enum tl_op op) { return op == TL_OP_IDENTITY || op == TL_OP_DROPOUT; }

static int is_act_op(enum tl_op op) {
  return op == TL_OP_RELU || op == TL_OP_CLIP || op == TL_OP_HARDSWISH || op == TL_OP_HARDSIGMOID ||
         op == TL_OP_SIGMOID;
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

static int is_const(const struct tl_graph *g, int v) { return v >= 0 && g->values[v].data != NULL; }

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

/* A node's label for a reason, into buf. */
static const char *label(const struct tl_graph *g, int node, char *buf, int size) {
  return tl_node_label(g, &g->nodes[node], buf, size);
}

/* Keeps a line for `tailorctl inspect --why`; TL_ENOMEM if it cannot. */
static int add_note(struct tl_supernet *sn, int node, const char *why) {
  char a[160], line[WHY_MAX + 200];
  snprintf(line, sizeof line, "%s: %s", label(sn->g, node, a, sizeof a), why);
  char **grown = realloc(sn->notes, ((size_t)sn->n_notes + 1) * sizeof *grown);
  if (grown == NULL)
    return TL_ENOMEM;
  sn->notes = grown;
  if ((sn->notes[sn->n_notes] = strdup(line)) == NULL)
    return TL_ENOMEM;
  sn->n_notes++;
  return 0;
}

/* ---------------------------------------------------- residual blocks */

/* Writes a reason into why (size WHY_MAX) and returns 0. */
static int because(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int because(char *why, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, WHY_MAX, fmt, ap);
  va_end(ap);
  return 0;
}

/* Collects the branch that computes p from skip value s: every node on a
 * path from s to p, which must read nothing but s, constants and each
 * other, and whose results nobody outside reads.  Returns the node count
 * (sorted ascending into nodes[]), or 0 with the reason in why (WHY_MAX
 * bytes) if it is not such a branch. */
static int collect_branch(const struct tl_supernet *sn, int s, int p, int add, int *nodes,
                          char *why) {
  const struct tl_graph *g = sn->g;
  int n = 0, stack[MAX_BRANCH_NODES], top = 0;
  int rs = resolve(g, s);
  int sp = g->values[rs].producer;
  char a[160], b[160];
  if (g->values[p].producer < 0 || resolve(g, p) == rs)
    return because(why, "one input is the other one, or a graph input");
  stack[top++] = g->values[p].producer;
  while (top > 0) {
    int node = stack[--top];
    int seen = 0;
    for (int i = 0; i < n; i++)
      seen |= nodes[i] == node;
    if (seen)
      continue;
    if (n == MAX_BRANCH_NODES)
      return because(why, "the branch has more than %d nodes", MAX_BRANCH_NODES);
    if (node <= sp)
      return because(why, "neither input is the block's input: the skip is computed "
                          "(a projection or downsampling shortcut)");
    nodes[n++] = node;
    const struct tl_node *nd = &g->nodes[node];
    for (int k = 0; k < nd->n_in; k++) {
      int v = nd->in[k];
      if (v < 0 || is_const(g, v) || v == s || resolve(g, v) == rs)
        continue;
      int pr = g->values[v].producer;
      if (pr < 0)
        return because(why, "the branch reads the graph input \"%s\"", g->values[v].name);
      if (top == MAX_BRANCH_NODES)
        return because(why, "the branch has more than %d nodes", MAX_BRANCH_NODES);
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
        return because(why, "the branch's value \"%s\" is a graph output", g->values[v].name);
      for (int c = 0; c < n_consumers(sn, v); c++) {
        int q = consumer(sn, v, c), inside = q == add && v == p;
        for (int j = 0; j < n && !inside; j++)
          inside = nodes[j] == q;
        if (!inside)
          return because(why, "%s's output is also read by %s outside the branch",
                         tl_node_label(g, nd, a, sizeof a), label(g, q, b, sizeof b));
      }
    }
  }
  if (!has_conv)
    return because(why, "the branch has no conv");
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
    char why[2][WHY_MAX];
    int found = 0;
    for (int side = 0; side < 2 && !found; side++) {
      int s = add->in[side], p = add->in[1 - side];
      int n = collect_branch(sn, s, p, a, nodes, why[side]);
      if (n == 0) {
        if (side == 1) {
          /* The first side's reason, unless it only says what the second
           * says better. */
          int rc = add_note(sn, a, strstr(why[0], "projection") ? why[0] : why[1]);
          if (rc != 0)
            return rc;
        }
        continue;
      }
      found = 1;
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

/* What a node of a width group does with the group's channels, which
 * says which of its tensors the channel sort permutes and how a subnet
 * slices it. */
enum sn_role {
  ROLE_PLAIN,   /* channel-wise op with no per-channel parameters */
  ROLE_BN,      /* BatchNormalization: scale, bias, mean, var per channel */
  ROLE_OUT,     /* conv whose output channels are the group: rows, bias */
  ROLE_THROUGH, /* depthwise or grouped conv, group in and out: rows, bias */
  ROLE_IN       /* conv that reads the group as input channels: columns */
};

/* Sets w->why (the reason a group was not found) and returns 0. */
static int no_group(struct sn_width *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int no_group(struct sn_width *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->why, sizeof w->why, fmt, ap);
  va_end(ap);
  return 0;
}

static int add_node(struct sn_width *w, int node, enum sn_role role) {
  if (w->n_nodes == MAX_GROUP_NODES)
    return no_group(w, "more than %d nodes touch the channels", MAX_GROUP_NODES);
  w->nodes[w->n_nodes] = node;
  w->role[w->n_nodes++] = (uint8_t)role;
  return 1;
}

/* The only consumer of value v, or -1 (with w->why) when v has several,
 * none, or is a graph output. */
static int only_consumer(const struct tl_supernet *sn, int v, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  char a[160], b[160];
  if (g->values[v].is_output)
    return no_group(w, "value \"%s\" is a graph output", g->values[v].name) - 1;
  int nc = n_consumers(sn, v);
  if (nc != 1) {
    if (nc == 0)
      return no_group(w, "value \"%s\" is never read", g->values[v].name) - 1;
    return no_group(w, "value \"%s\" feeds both %s and %s", g->values[v].name,
                    label(g, consumer(sn, v, 0), a, sizeof a),
                    label(g, consumer(sn, v, 1), b, sizeof b)) -
           1;
  }
  return consumer(sn, v, 0);
}

/* 1 if node q reads v as its first input and everything else it reads
 * is constant; else 0 with w->why. */
static int reads_only(const struct tl_supernet *sn, int q, int v, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  const struct tl_node *nq = &g->nodes[q];
  char a[160];
  if (nq->n_out != 1 || nq->out[0] < 0 || nq->n_in < 1 || nq->in[0] != v)
    return no_group(w, "%s does not read the channels as its one data input",
                    label(g, q, a, sizeof a));
  for (int k = 1; k < nq->n_in; k++)
    if (nq->in[k] >= 0 && !is_const(g, nq->in[k]))
      return no_group(w, "%s also reads \"%s\", which is not constant", label(g, q, a, sizeof a),
                      g->values[nq->in[k]].name);
  return 1;
}

/* Activations written out as two nodes reading x: Mul(x, Sigmoid(x))
 * (SiLU) and Mul(x, HardSigmoid(x)) (HardSwish at opsets below 14).  a and
 * b are x's two consumers; returns the Mul and sets *gate, or -1. */
static int gated_act(const struct tl_supernet *sn, int x, int a, int b, int *gate) {
  const struct tl_graph *g = sn->g;
  for (int turn = 0; turn < 2; turn++) {
    int h = turn ? b : a, m = turn ? a : b;
    const struct tl_node *nh = &g->nodes[h], *nm = &g->nodes[m];
    if ((nh->op != TL_OP_SIGMOID && nh->op != TL_OP_HARDSIGMOID) || nh->n_out != 1 ||
        nh->out[0] < 0 || nm->op != TL_OP_MUL || nm->n_in != 2 || nm->n_out != 1 ||
        nm->out[0] < 0 || n_consumers(sn, nh->out[0]) != 1 || g->values[nh->out[0]].is_output)
      continue;
    if ((nm->in[0] == x && nm->in[1] == nh->out[0]) ||
        (nm->in[1] == x && nm->in[0] == nh->out[0])) {
      *gate = h;
      return m;
    }
  }
  return -1;
}

/* Follows activations on a value that is not the group's (the reduced
 * channels inside a squeeze-and-excitation gate); returns the value
 * after them. */
static int skip_acts(const struct tl_supernet *sn, int v) {
  const struct tl_graph *g = sn->g;
  for (int hops = 0; hops < 8 && !g->values[v].is_output; hops++) {
    int nc = n_consumers(sn, v), gate;
    if (nc == 1) {
      const struct tl_node *q = &g->nodes[consumer(sn, v, 0)];
      if (!is_act_op(q->op) || q->n_in != 1 || q->n_out != 1 || q->out[0] < 0)
        break;
      v = q->out[0];
    } else if (nc == 2) {
      int m = gated_act(sn, v, consumer(sn, v, 0), consumer(sn, v, 1), &gate);
      if (m < 0)
        break;
      v = g->nodes[m].out[0];
    } else {
      break;
    }
  }
  return v;
}

/* A squeeze-and-excitation gate on the group's channels x: pool reads x
 * (GlobalAveragePool) and mul is Mul(x, gate), where gate comes from
 * pool -> Conv (reduce) -> activations -> Conv (expand) -> Sigmoid or
 * HardSigmoid.  The reduce conv reads the group's channels and the expand
 * conv makes them again, so both take part in the group.  Returns 1 and
 * adds the gate's nodes to w, or 0 with w->why. */
static int follow_gate(const struct tl_supernet *sn, int x, int pool, int mul, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  const struct tl_node *nm = &g->nodes[mul];
  char a[160];
  if (nm->n_in != 2 || nm->n_out != 1 || nm->out[0] < 0 || (nm->in[0] != x && nm->in[1] != x))
    return no_group(w, "%s is not a gate on the channels", label(g, mul, a, sizeof a));
  const int gate = nm->in[0] == x ? nm->in[1] : nm->in[0];
  if (!reads_only(sn, pool, x, w) || !add_node(w, pool, ROLE_PLAIN))
    return 0;
  int reduce = only_consumer(sn, g->nodes[pool].out[0], w);
  if (reduce < 0)
    return 0;
  const struct tl_value *wr = conv_weights(g, &g->nodes[reduce]);
  if (wr == NULL || attr_int(&g->nodes[reduce], "group", 1) != 1 ||
      wr->shape.dims[1] != w->channels)
    return no_group(w, "%s after the pooling is not a dense conv of the channels",
                    label(g, reduce, a, sizeof a));
  if (!reads_only(sn, reduce, g->nodes[pool].out[0], w) || !add_node(w, reduce, ROLE_IN))
    return 0;
  int v = skip_acts(sn, g->nodes[reduce].out[0]);
  int expand = only_consumer(sn, v, w);
  if (expand < 0)
    return 0;
  const struct tl_value *we = conv_weights(g, &g->nodes[expand]);
  if (we == NULL || attr_int(&g->nodes[expand], "group", 1) != 1 ||
      we->shape.dims[0] != w->channels || we->shape.dims[1] != wr->shape.dims[0])
    return no_group(w, "%s is not the conv that expands the gate back to the channels",
                    label(g, expand, a, sizeof a));
  if (!reads_only(sn, expand, v, w) || !add_node(w, expand, ROLE_OUT))
    return 0;
  v = g->nodes[expand].out[0];
  while (v != gate) {
    int q = only_consumer(sn, v, w);
    if (q < 0)
      return 0;
    if (!is_act_op(g->nodes[q].op))
      return no_group(w, "%s between the gate's conv and its Mul is not an activation",
                      label(g, q, a, sizeof a));
    if (!reads_only(sn, q, v, w) || !add_node(w, q, ROLE_PLAIN))
      return 0;
    v = g->nodes[q].out[0];
  }
  if (n_consumers(sn, gate) != 1 || g->values[gate].is_output)
    return no_group(w, "the gate \"%s\" is read outside the block", g->values[gate].name);
  return add_node(w, mul, ROLE_PLAIN);
}

/* Follows the channels dense conv c1 produces to the conv that consumes
 * them; fills w and returns 1 if they are internal (see the file
 * comment), else 0 with the reason in w->why. */
static int follow_channels(const struct tl_supernet *sn, int c1, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  const struct tl_node *n1 = &g->nodes[c1];
  const struct tl_value *w1 = conv_weights(g, n1);
  char a[160];
  memset(w, 0, sizeof *w);
  w->c1 = c1;
  w->c2 = -1;
  w->unit = 1;
  if (w1 == NULL)
    return no_group(w, "its weights are not a constant 4-D float tensor");
  if (attr_int(n1, "group", 1) != 1)
    return no_group(w, "it is a grouped conv; its channels follow its input's");
  if (n1->n_out != 1 || n1->out[0] < 0)
    return no_group(w, "it has no single output");
  const int64_t ch = w1->shape.dims[0];
  if (ch < 2)
    return no_group(w, "it has one output channel");
  w->channels = ch;
  add_node(w, c1, ROLE_OUT);
  int cur = n1->out[0];
  for (;;) {
    if (g->values[cur].is_output)
      return no_group(w, "its channels reach the graph output \"%s\"", g->values[cur].name);
    int nc = n_consumers(sn, cur);
    if (nc == 2) {
      int p = consumer(sn, cur, 0), q = consumer(sn, cur, 1), gate, m;
      if ((m = gated_act(sn, cur, p, q, &gate)) >= 0) {
        if (!add_node(w, gate, ROLE_PLAIN) || !add_node(w, m, ROLE_PLAIN))
          return 0;
        cur = g->nodes[m].out[0];
        continue;
      }
      if (g->nodes[q].op == TL_OP_GLOBALAVGPOOL) {
        int t = p;
        p = q;
        q = t;
      }
      if (g->nodes[p].op == TL_OP_GLOBALAVGPOOL && g->nodes[q].op == TL_OP_MUL) {
        if (!follow_gate(sn, cur, p, q, w))
          return 0;
        cur = g->nodes[q].out[0];
        continue;
      }
    }
    int q = only_consumer(sn, cur, w);
    if (q < 0) {
      if (nc > 1 && g->nodes[consumer(sn, cur, 0)].op == TL_OP_ADD)
        no_group(w, "its channels feed the residual %s outside the block",
                 label(g, consumer(sn, cur, 0), a, sizeof a));
      else if (nc > 1 && g->nodes[consumer(sn, cur, 1)].op == TL_OP_ADD)
        no_group(w, "its channels feed the residual %s outside the block",
                 label(g, consumer(sn, cur, 1), a, sizeof a));
      return 0;
    }
    const struct tl_node *nq = &g->nodes[q];
    if (!reads_only(sn, q, cur, w)) {
      if (nq->op == TL_OP_ADD || nq->op == TL_OP_CONCAT)
        no_group(w, "its channels feed %s, which ties them to other channels",
                 label(g, q, a, sizeof a));
      return 0;
    }
    if (nq->op == TL_OP_BATCHNORM || is_act_op(nq->op) || is_view_op(nq->op) ||
        nq->op == TL_OP_MAXPOOL || nq->op == TL_OP_AVGPOOL) {
      if (nq->op == TL_OP_BATCHNORM && nq->n_in != 5)
        return no_group(w, "%s does not have 5 inputs", label(g, q, a, sizeof a));
      if (!add_node(w, q, nq->op == TL_OP_BATCHNORM ? ROLE_BN : ROLE_PLAIN))
        return 0;
      cur = nq->out[0];
      continue;
    }
    const struct tl_value *wq = conv_weights(g, nq);
    if (wq == NULL)
      return no_group(w,
                      "its channels reach %s, which is not a conv with constant weights "
                      "nor a channel-wise op",
                      label(g, q, a, sizeof a));
    const int64_t group = attr_int(nq, "group", 1);
    if (group > 1 && ch % group == 0 && wq->shape.dims[0] == ch &&
        wq->shape.dims[1] * group == ch) {
      /* Depthwise (one channel per group) or grouped: channels stay in
       * their group, so a subnet keeps whole groups. */
      const int64_t unit = ch / group;
      if (unit % w->unit != 0 && w->unit % unit != 0)
        return no_group(w, "%s groups the channels by %lld, which does not nest with %lld",
                        label(g, q, a, sizeof a), (long long)unit, (long long)w->unit);
      if (unit > w->unit)
        w->unit = unit;
      if (!add_node(w, q, ROLE_THROUGH))
        return 0;
      cur = nq->out[0];
      continue;
    }
    if (group == 1 && wq->shape.dims[1] == ch) {
      w->c2 = q;
      return add_node(w, q, ROLE_IN);
    }
    return no_group(w, "its channels reach %s, whose %lld groups do not match them",
                    label(g, q, a, sizeof a), (long long)group);
  }
}

/* The tensors indexed by a group's channels must be its own: a weight
 * shared with another node would be permuted under it.  (The loader gives
 * each node its own value; a node reading one constant twice remains.) */
static int group_owns_weights(const struct tl_supernet *sn, struct sn_width *w) {
  const struct tl_graph *g = sn->g;
  char a[160];
  for (int i = 0; i < w->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[w->nodes[i]];
    for (int k = 1; k < nd->n_in; k++)
      if (is_const(g, nd->in[k]) && g->values[nd->in[k]].n_consumers != 1)
        return no_group(w, "%s reads the constant \"%s\" more than once",
                        label(g, w->nodes[i], a, sizeof a), g->values[nd->in[k]].name);
  }
  return 1;
}

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
static int sort_group(struct tl_supernet *sn, const struct sn_width *w) {
  struct tl_graph *g = sn->g;
  const int64_t ch = w->channels, units = ch / w->unit;
  int64_t biggest = 0;
  for (int i = 0; i < w->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[w->nodes[i]];
    for (int k = 1; k < nd->n_in; k++)
      if (is_const(g, nd->in[k]) && tl_shape_numel(&g->values[nd->in[k]].shape) > biggest)
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
      if (rc == 0 && nd->n_in > 2 && is_const(g, nd->in[2]))
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
  /* Why each conv is not the producer of a group, kept until the end:
   * a conv that another group takes in says nothing. */
  char(*why)[WHY_MAX] = calloc((size_t)g->n_nodes + 1, sizeof *why);
  uint8_t *in_group = calloc((size_t)g->n_nodes + 1, 1);
  if (why == NULL || in_group == NULL) {
    free(why);
    free(in_group);
    free(node_block);
    return TL_ENOMEM;
  }
  int rc = 0;
  for (int i = 0; i < g->n_nodes && rc == 0; i++) {
    struct sn_width w;
    if (g->nodes[i].op != TL_OP_CONV)
      continue;
    if (!follow_channels(sn, i, &w) || !group_owns_weights(sn, &w)) {
      snprintf(why[i], WHY_MAX, "%s", w.why);
      continue;
    }
    for (int k = 0; k < w.n_nodes; k++)
      in_group[w.nodes[k]] = 1;
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
    if (sort && (rc = sort_group(sn, &w)) != 0)
      break;
    sn->wg[sn->n_wg++] = w;
  }
  for (int i = 0; i < g->n_nodes && rc == 0; i++)
    if (g->nodes[i].op == TL_OP_CONV && !in_group[i])
      rc = add_note(sn, i, why[i]);
  free(why);
  free(in_group);
  free(node_block);
  if (rc != 0)
    return rc;
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
    spec->width[s] =
        sn->stage_wg[s] > 0 ? (int)(next_random(seed) % (uint64_t)sn->n_widths) : sn->n_widths - 1;
  }
}

static void format_width(float w, char *buf, size_t size) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%g", (double)w);
  snprintf(buf, size, "%s", strncmp(tmp, "0.", 2) == 0 ? tmp + 1 : tmp);
}

char *tl_subnet_format(const struct tl_supernet *sn, const struct tl_subnet_spec *spec, char *buf,
                       size_t size) {
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
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": resolution %s is not offered (%s are)", text,
                       val, offered);
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
                           "subnet \"%s\": stage %d has no elastic width; its w must be 1", text,
                           s + 1);
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
                   !have_r   ? "r"
                   : !have_d ? "d"
                             : "w");
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
    int64_t k = w->unit * keep_channels(sn->widths[spec->width[w->stage]], w->channels / w->unit);
    for (int j = 0; j < w->n_nodes && k < w->channels; j++)
      if (w->role[j] == ROLE_OUT)
        conv_out[w->nodes[j]] = k;
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
  view->collect_conv = view->collect_bn;
  if (view->collect_conv && opts->conv_ref != NULL) {
    view->conv_ref_mean = (const float *const *)opts->conv_ref->mean;
    view->conv_ref_var = (const float *const *)opts->conv_ref->var;
  }
  if (spec->res != sn->native_h) {
    view->resize_h = spec->res;
    view->resize_w = (int)floor((double)sn->native_w * spec->res / sn->native_h + 0.5);
  }
  return 0;
}

int tl__subnet_view(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                    const struct tl_bn_stats *bn, struct tl_plan_view *view) {
  struct tl_subnet_plan_options po = {.bn = bn};
  return make_view(sn, spec, &po, view);
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
  struct tl_plan_options po = {
      .input_shapes = &shape, .view = &view, .reference = opts != NULL && opts->reference};
  int rc = tl_plan_build(g, &po, out, err);
  free(view.mem);
  return rc;
}

int tl_subnet_cost(const struct tl_supernet *sn, const struct tl_subnet_spec *spec, int64_t *macs,
                   int64_t *params, struct tl_error *err) {
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
  if (pthread_mutex_init(&sn->ref_lock, NULL) != 0) {
    free(sn);
    return tl_fail(err, TL_ENOMEM, "%s: cannot make a mutex", g->path);
  }
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
  for (int i = 0; i < sn->n_notes; i++)
    free(sn->notes[i]);
  free(sn->notes);
  while (sn->refs != NULL) {
    struct conv_ref *next = sn->refs->next;
    tl_bn_stats_free(sn->refs->stats);
    free(sn->refs);
    sn->refs = next;
  }
  pthread_mutex_destroy(&sn->ref_lock);
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

int tl_supernet_n_notes(const struct tl_supernet *sn) { return sn->n_notes; }

const char *tl_supernet_note(const struct tl_supernet *sn, int i) {
  return i >= 0 && i < sn->n_notes ? sn->notes[i] : NULL;
}

int tl__supernet_conv_ref(const struct tl_supernet *csn, uint64_t key,
                          int (*measure)(const struct tl_supernet *sn, void *arg,
                                         struct tl_bn_stats **stats, struct tl_error *err),
                          void *arg, const struct tl_bn_stats **out, struct tl_error *err) {
  struct tl_supernet *sn = (struct tl_supernet *)csn; /* the cache is the mutable part */
  int rc = 0;
  pthread_mutex_lock(&sn->ref_lock);
  struct conv_ref *r = sn->refs;
  while (r != NULL && r->key != key)
    r = r->next;
  if (r == NULL) {
    struct tl_bn_stats *stats = NULL;
    if ((rc = measure(csn, arg, &stats, err)) == 0) {
      if ((r = malloc(sizeof *r)) == NULL) {
        tl_bn_stats_free(stats);
        rc = tl_fail(err, TL_ENOMEM, "out of memory");
      } else {
        *r = (struct conv_ref){key, stats, sn->refs};
        sn->refs = r;
      }
    }
  }
  if (rc == 0)
    *out = r->stats;
  pthread_mutex_unlock(&sn->ref_lock);
  return rc;
}
