/*
 * supernet_graph.c - finding a graph's elastic dimensions: the consumers
 * of each value, residual blocks and their stages, and width groups.
 *
 * The analysis only reads the graph's structure (producers, consumers, op
 * types, constant weights); it knows no model by name.  See supernet.h for
 * what depth, width and resolution mean.  What it finds goes into struct
 * tl_supernet (supernet_internal.h); a group it finds is sorted (supernet_sort.c)
 * before the next is looked for.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supernet_internal.h"

#define MAX_BRANCH_NODES 256

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

static int64_t attr_int(const struct tl_node *n, const char *name, int64_t def) {
  const struct tl_attr *a = tl_node_attr(n, name);
  return a != NULL && a->type == TL_ATTR_INT ? a->i : def;
}

/* The conv's constant 4-D float weights, or NULL. */
static const struct tl_value *conv_weights(const struct tl_graph *g, const struct tl_node *n) {
  if (n->op != TL_OP_CONV || n->n_in < 2 || !tl__value_is_const(g, n->in[1]))
    return NULL;
  const struct tl_value *w = &g->values[n->in[1]];
  return w->dtype == TL_DTYPE_FLOAT32 && w->shape.ndim == 4 ? w : NULL;
}

int tl__supernet_find_consumers(struct tl_supernet *sn) {
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
  char a[160], line[TL_SN_WHY_MAX + 200];
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

/* Writes a reason into why (size TL_SN_WHY_MAX) and returns 0. */
static int because(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int because(char *why, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, TL_SN_WHY_MAX, fmt, ap);
  va_end(ap);
  return 0;
}

/* Collects the branch that computes p from skip value s: every node on a
 * path from s to p, which must read nothing but s, constants and each
 * other, and whose results nobody outside reads.  Returns the node count
 * (sorted ascending into nodes[]), or 0 with the reason in why (TL_SN_WHY_MAX
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
      if (v < 0 || tl__value_is_const(g, v) || v == s || resolve(g, v) == rs)
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

int tl__supernet_find_blocks(struct tl_supernet *sn) {
  const struct tl_graph *g = sn->g;
  int cap = 16;
  sn->blocks = calloc((size_t)cap, sizeof *sn->blocks);
  if (sn->blocks == NULL)
    return TL_ENOMEM;
  int nodes[MAX_BRANCH_NODES];
  for (int a = 0; a < g->n_nodes; a++) {
    const struct tl_node *add = &g->nodes[a];
    if (add->op != TL_OP_ADD || add->n_in != 2 || add->n_out != 1 || add->in[0] < 0 ||
        add->in[1] < 0 || tl__value_is_const(g, add->in[0]) || tl__value_is_const(g, add->in[1]))
      continue;
    char why[2][TL_SN_WHY_MAX];
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
  if (w->n_nodes == TL_SN_MAX_GROUP_NODES)
    return no_group(w, "more than %d nodes touch the channels", TL_SN_MAX_GROUP_NODES);
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
    if (nq->in[k] >= 0 && !tl__value_is_const(g, nq->in[k]))
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
      if (tl__value_is_const(g, nd->in[k]) && g->values[nd->in[k]].n_consumers != 1)
        return no_group(w, "%s reads the constant \"%s\" more than once",
                        label(g, w->nodes[i], a, sizeof a), g->values[nd->in[k]].name);
  }
  return 1;
}

int tl__supernet_find_width_groups(struct tl_supernet *sn, int sort) {
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
  char(*why)[TL_SN_WHY_MAX] = calloc((size_t)g->n_nodes + 1, sizeof *why);
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
      snprintf(why[i], TL_SN_WHY_MAX, "%s", w.why);
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
    if (sort && (rc = tl__supernet_sort_group(sn, &w)) != 0)
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
