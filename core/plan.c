/*
 * plan.c - building and running plans.
 *
 * Build walks the graph's nodes in topological order, prepares one step
 * per node (or per fused group), folds steps whose inputs are all
 * constant, turns view ops (Reshape, Flatten, ...) into aliases of their
 * input's buffer, and finally lays every activation buffer out in one
 * arena by liveness: two buffers share bytes only if no step reads or
 * writes both.  Run calls each step's kernel in order.
 *
 * The plan takes the engine's thread count when it is built and hands it,
 * with the plan's own memory, to every prepare function (struct tl_prep):
 * ops and kernels never reach back into the plan (op.c holds the op
 * table they are called from).
 *
 * Invariant: after build, every step's in[]/out[] data pointers are bound
 * (into the arena, the graph's constants or plan-owned constants), so run
 * does no lookups and no allocation.
 */
#include "plan.h"

#include <assert.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "internal.h"

void tl_engine_set_threads(int n) {
  if (n <= 0)
    n = 1;
  tl__parallel_set_threads(n);
  openblas_set_num_threads(n);
}

int tl_engine_threads(void) { return tl__parallel_max_threads(); }

/* ---------------------------------------------------------------- build */

static int plan_fail_nomem(struct tl_plan *p, struct tl_error *err) {
  return tl_fail(err, TL_ENOMEM, "%s: out of memory while building the plan", p->g->path);
}

static int root_of(const struct tl_plan *p, int v) {
  while (p->vals[v].root != v)
    v = p->vals[v].root;
  return v;
}

static int init_inputs(struct tl_plan *p, const struct tl_plan_options *opts,
                       struct tl_error *err) {
  const struct tl_graph *g = p->g;
  for (int i = 0; i < g->n_inputs; i++) {
    int v = g->inputs[i];
    const struct tl_value *gv = &g->values[v];
    struct tl_plan_value *pv = &p->vals[v];
    char want[96], have[96];
    if (gv->dtype != TL_DTYPE_FLOAT32 && gv->dtype != TL_DTYPE_INT64 &&
        gv->dtype != TL_DTYPE_UNDEFINED)
      return tl_fail(err, TL_EUNSUPPORTED,
                     "%s: input \"%s\" is %s; only float32 inputs are supported", g->path, gv->name,
                     tl_dtype_name(gv->dtype));
    pv->dtype = gv->dtype == TL_DTYPE_UNDEFINED ? TL_DTYPE_FLOAT32 : gv->dtype;
    if (opts != NULL && opts->input_shapes != NULL) {
      const struct tl_shape *s = &opts->input_shapes[i];
      int ok = s->ndim >= 0 && tl_shape_numel(s) >= 0;
      if (ok && gv->shape.ndim >= 0) {
        /* A subnet's plan may batch images whatever the model declares. */
        int from = opts->view != NULL ? 1 : 0;
        ok = s->ndim == gv->shape.ndim;
        for (int d = from; ok && d < s->ndim; d++)
          ok = gv->shape.dims[d] < 0 || gv->shape.dims[d] == s->dims[d];
      }
      if (!ok)
        return tl_fail(err, TL_ESHAPE, "%s: input \"%s\" must be %s, not %s", g->path, gv->name,
                       tl_shape_str(&gv->shape, want, sizeof want),
                       tl_shape_str(s, have, sizeof have));
      pv->shape = *s;
    } else {
      if (gv->shape.ndim < 0 || tl_shape_numel(&gv->shape) < 0)
        return tl_fail(
            err, TL_ESHAPE, "%s: input \"%s\" has shape %s with unknown dimensions; give its shape",
            g->path, gv->name,
            gv->shape.ndim < 0 ? "(unknown)" : tl_shape_str(&gv->shape, want, sizeof want));
      pv->shape = gv->shape;
    }
    if (opts != NULL && opts->input_values != NULL && opts->input_values[i] != NULL) {
      pv->is_const = 1;
      pv->data = (void *)opts->input_values[i];
    } else {
      pv->defined = 1;
    }
  }
  return 0;
}

/* Appends *s to the plan's step list. */
static int push_step(struct tl_plan *p, const struct tl_step *s) {
  if (p->n_steps == p->cap_steps) {
    int cap = p->cap_steps ? 2 * p->cap_steps : 64;
    struct tl_step *n = realloc(p->steps, (size_t)cap * sizeof *n);
    if (n == NULL)
      return TL_ENOMEM;
    p->steps = n;
    p->cap_steps = cap;
  }
  p->steps[p->n_steps++] = *s;
  return 0;
}

static void append_kind(struct tl_step *s, const char *name) {
  size_t len = strlen(s->kind);
  snprintf(s->kind + len, sizeof s->kind - len, "%s%s", len ? "+" : "", name);
}

static int all_inputs_const(const struct tl_step *s) {
  for (int i = 0; i < s->n_in; i++)
    if (s->in_val[i] >= 0 && s->in[i].data == NULL)
      return 0;
  return 1;
}

/* Allocates plan-owned memory for each output and marks it constant. */
static int alloc_const_outputs(struct tl_plan *p, struct tl_step *s) {
  for (int k = 0; k < s->n_out; k++) {
    if (s->out_val[k] < 0)
      continue;
    int64_t n = tl_shape_numel(&s->out[k].shape);
    size_t bytes = (size_t)n * tl_dtype_size(s->out[k].dtype);
    if (n < 0 || (s->out[k].data = tl__mem_alloc(&p->mem, bytes)) == NULL)
      return TL_ENOMEM;
  }
  return 0;
}

/* Fuses the nodes after a conv step (BatchNormalization, activation,
 * residual Add, activation) into it while each is the only consumer of
 * the value before it.  The first activation may also be the two-node
 * hardswish pattern (see tl__hardswish_pattern).  absorbed[] marks the nodes
 * taken. */
static int fuse_after_conv(struct tl_plan *p, struct tl_prep *c, const int *consumer,
                           char *absorbed) {
  const struct tl_graph *g = p->g;
  struct tl_step *s = c->step;
  struct tl_conv_params *cp = &s->p.conv;
  int cur = s->out_val[0];
  int stage = 0; /* 0: BN allowed, 1: act1, 2: residual, 3: act2, 4: done */
  while (stage < 4) {
    const struct tl_value *gv = &g->values[cur];
    int hsig, mul;
    if (stage <= 1 && (mul = tl__hardswish_pattern(g, cur, &hsig)) >= 0) {
      cp->act1 = (struct tl_act_params){TL_ACT_HARDSWISH, 0.f, 0.f};
      absorbed[hsig] = absorbed[mul] = 1;
      append_kind(s, g->nodes[hsig].op_type);
      append_kind(s, g->nodes[mul].op_type);
      cur = g->nodes[mul].out[0];
      stage = 2;
      continue;
    }
    if (gv->is_output || gv->n_consumers != 1)
      break;
    int j = consumer[cur];
    const struct tl_node *nx = &g->nodes[j];
    if (nx->n_out != 1 || nx->out[0] < 0)
      break;
    struct tl_act_params act;
    if (nx->op == TL_OP_BATCHNORM && stage == 0) {
      /* out of memory is an error, not a reason to leave BN unfused:
       * the plan would run other steps than the same plan built with
       * memory to spare, and give other bits */
      int rc = tl__conv_fuse_bn(c, nx);
      if (rc == TL_ENOMEM)
        return rc;
      if (rc != 0)
        break;
      stage = 1;
    } else if (stage <= 1 && tl__act_from_node(c, nx, &act)) {
      cp->act1 = act;
      stage = 2;
    } else if (nx->op == TL_OP_ADD && stage <= 2 && nx->n_in == 2) {
      int other = nx->in[0] == cur ? nx->in[1] : nx->in[0];
      if (other < 0 || other == cur || p->vals[other].is_const || !p->vals[other].defined ||
          p->vals[other].dtype != TL_DTYPE_FLOAT32 ||
          !tl_shape_equal(&p->vals[other].shape, &s->out[0].shape))
        break;
      s->in_val[s->n_in] = other;
      s->in[s->n_in] = (struct tl_tensor){TL_DTYPE_FLOAT32, p->vals[other].shape, NULL};
      cp->res_index = s->n_in++;
      cp->has_res = 1;
      stage = 3;
    } else if (stage == 3 && tl__act_from_node(c, nx, &act)) {
      cp->act2 = act;
      stage = 4;
    } else {
      break;
    }
    absorbed[j] = 1;
    append_kind(s, nx->op_type);
    cur = nx->out[0];
  }
  /* An expansion conv and the depthwise conv reading it run as one step,
   * in bands, so that the expanded tensor stays in cache (op_conv.c). */
  if (stage < 3) {
    int rc = tl__conv_fuse_dw(c, consumer, absorbed, &cur);
    if (rc < 0)
      return rc;
  }
  s->out_val[0] = cur;
  return 0;
}

/* Weights a step reads (what a subnet's parameter count is made of). */
static int64_t step_weight_elems(const struct tl_step *s) {
  if (s->op == TL_OP_CONV) {
    const struct tl_conv_params *c = &s->p.conv;
    return c->m * (c->c / c->group) * c->kh * c->kw + (c->has_bias ? c->m : 0);
  }
  if (s->op == TL_OP_GEMM) {
    const struct tl_gemm_params *gm = &s->p.gemm;
    return (s->in[1].data != NULL ? gm->k * gm->n : 0) + (gm->has_c ? gm->n : 0);
  }
  return 0;
}

/* A conv of a subnet: present its weights (and bias) as the slice the
 * subnet uses -- the first conv_out rows, the columns of the input
 * channels it gets -- with rows still as far apart as in the full tensor. */
static void view_conv(const struct tl_plan *p, const struct tl_plan_view *view, int node,
                      struct tl_prep *c) {
  const struct tl_node *nd = &p->g->nodes[node];
  struct tl_step *s = c->step;
  if (!view->sliced || nd->n_in < 2 || s->in[1].data == NULL || s->in[1].shape.ndim != 4 ||
      s->in[0].shape.ndim != 4)
    return;
  struct tl_shape *ws = &s->in[1].shape;
  const int64_t m_full = ws->dims[0], cg_full = ws->dims[1], khw = ws->dims[2] * ws->dims[3];
  const int64_t c_in = s->in[0].shape.dims[1];
  const struct tl_attr *ga = tl_node_attr(nd, "group");
  const int64_t group = ga != NULL && ga->type == TL_ATTR_INT ? ga->i : 1;
  int64_t m = m_full;
  if (group > 1 && m_full % group == 0 && c_in < cg_full * group && c_in % cg_full == 0) {
    /* Depthwise or grouped over the first c_in channels: whole groups,
     * and the rows of the groups kept (a prefix). */
    c->group_override = c_in / cg_full;
    m = m_full / group * c->group_override;
  } else if (group == 1 && c_in < cg_full) {
    ws->dims[1] = c_in;
    c->weight_ldw = cg_full * khw;
  }
  if (view->conv_out[node] > 0 && view->conv_out[node] < m) {
    m = view->conv_out[node];
    c->weight_ldw = cg_full * khw;
  }
  ws->dims[0] = m;
  if (nd->n_in > 2 && s->in_val[2] >= 0 && s->in[2].shape.ndim == 1)
    s->in[2].shape.dims[0] = m;
}

/* The first step of a subnet at another resolution: the native input,
 * resized into a value of the plan's own (index n_values). */
static int add_resize_step(struct tl_plan *p, const struct tl_plan_view *view,
                           struct tl_error *err) {
  const struct tl_graph *g = p->g;
  int in = g->inputs[0], out = g->n_values;
  const struct tl_plan_value *pin = &p->vals[in];
  if (pin->shape.ndim != 4 || pin->dtype != TL_DTYPE_FLOAT32)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: only NCHW float32 inputs can be resized", g->path);
  struct tl_step s;
  memset(&s, 0, sizeof s);
  s.op = TL_OP_COUNT;
  s.node = 0;
  s.n_in = s.n_out = 1;
  s.in_val = tl__mem_alloc(&p->mem, sizeof *s.in_val);
  s.out_val = tl__mem_alloc(&p->mem, sizeof *s.out_val);
  s.in = tl__mem_alloc(&p->mem, sizeof *s.in);
  s.out = tl__mem_alloc(&p->mem, sizeof *s.out);
  if (!s.in_val || !s.out_val || !s.in || !s.out)
    return plan_fail_nomem(p, err);
  snprintf(s.kind, sizeof s.kind, "Resize");
  struct tl_pool_params *pp = &s.p.pool;
  pp->n = pin->shape.dims[0], pp->c = pin->shape.dims[1];
  pp->h = pin->shape.dims[2], pp->w = pin->shape.dims[3];
  pp->oh = view->resize_h > 0 ? view->resize_h : pp->h;
  pp->ow = view->resize_w > 0 ? view->resize_w : pp->w;
  s.in_val[0] = in;
  s.out_val[0] = out;
  s.in[0] = (struct tl_tensor){TL_DTYPE_FLOAT32, pin->shape, NULL};
  s.out[0] = (struct tl_tensor){TL_DTYPE_FLOAT32, {4, {pp->n, pp->c, pp->oh, pp->ow}}, NULL};
  s.run = tl__run_resize;
  struct tl_plan_value *pv = &p->vals[out];
  pv->dtype = TL_DTYPE_FLOAT32;
  pv->shape = s.out[0].shape;
  pv->defined = 1;
  p->resized = out;
  return push_step(p, &s) != 0 ? plan_fail_nomem(p, err) : 0;
}

static int build_steps(struct tl_plan *p, const struct tl_plan_options *opts,
                       struct tl_error *err) {
  const struct tl_graph *g = p->g;
  int reference = opts != NULL && opts->reference;
  int rc = TL_ENOMEM;
  int *consumer = malloc(((size_t)g->n_values + 1) * sizeof *consumer);
  char *absorbed = calloc((size_t)g->n_nodes + 1, 1);
  if (consumer == NULL || absorbed == NULL)
    goto done;
  /* Each value's first consumer, for fusion. */
  for (int v = 0; v < g->n_values; v++)
    consumer[v] = -1;
  for (int i = g->n_nodes - 1; i >= 0; i--)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] >= 0)
        consumer[g->nodes[i].in[k]] = i;

  /* A subnet at another resolution reads its input resized. */
  const struct tl_plan_view *view = opts != NULL ? opts->view : NULL;
  if (view != NULL && (view->resize_h > 0 || view->resize_w > 0) &&
      (rc = add_resize_step(p, view, err)) != 0)
    goto done;

  /* One step per node (or fused group), in topological order. */
  for (int i = 0; i < g->n_nodes; i++) {
    if (absorbed[i])
      continue;
    const struct tl_node *node = &g->nodes[i];
    if (view != NULL && view->skip[i]) {
      /* Not in the subnet: a skipped block's output becomes its input. */
      for (int k = 0; k < node->n_out; k++) {
        int v = node->out[k];
        if (v < 0 || view->alias[v] < 0)
          continue;
        const struct tl_plan_value *src = &p->vals[view->alias[v]];
        struct tl_plan_value *pv = &p->vals[v];
        pv->dtype = src->dtype;
        pv->shape = src->shape;
        if (src->is_const) {
          pv->is_const = 1;
          pv->data = src->data;
        } else {
          pv->root = root_of(p, view->alias[v]);
          pv->defined = 1;
        }
      }
      continue;
    }
    /* The step and its prepare context. */
    struct tl_step s;
    memset(&s, 0, sizeof s);
    s.op = node->op;
    s.node = i;
    s.n_in = node->n_in;
    s.n_out = node->n_out;
    int cap_in = node->n_in + 1; /* room for a fused residual */
    s.in_val = tl__mem_alloc(&p->mem, (size_t)cap_in * sizeof *s.in_val);
    s.in = tl__mem_alloc(&p->mem, (size_t)cap_in * sizeof *s.in);
    s.out_val = tl__mem_alloc(&p->mem, ((size_t)node->n_out + 1) * sizeof *s.out_val);
    s.out = tl__mem_alloc(&p->mem, ((size_t)node->n_out + 1) * sizeof *s.out);
    if (!s.in_val || !s.in || !s.out_val || !s.out) {
      rc = TL_ENOMEM;
      goto done;
    }
    append_kind(&s, node->op_type);

    struct tl_prep c = {.g = g,
                        .node = node,
                        .step = &s,
                        .mem = &p->mem,
                        .threads = p->threads,
                        .err = err,
                        .reference = reference,
                        .view = view};
    snprintf(c.label, sizeof c.label, "%s: ", g->path);
    tl_node_label(g, node, c.label + strlen(c.label), (int)(sizeof c.label - strlen(c.label)));

    /* Inputs: their shapes, and data for constants. */
    for (int k = 0; k < node->n_in; k++) {
      int v = node->in[k];
      if (v >= 0 && v == g->inputs[0] && p->resized >= 0)
        v = p->resized; /* the subnet reads its input resized */
      s.in_val[k] = v;
      if (v < 0)
        continue;
      const struct tl_plan_value *pv = &p->vals[v];
      if (!pv->defined && !pv->is_const) {
        rc = tl_fail(err, TL_EINTERNAL, "%s: input %d is used before it is computed", c.label, k);
        goto done;
      }
      s.in[k].dtype = pv->dtype;
      s.in[k].shape = pv->shape;
      s.in[k].data = pv->is_const ? pv->data : NULL;
    }
    for (int k = 0; k < node->n_out; k++)
      s.out_val[k] = node->out[k];

    if (view != NULL && node->op == TL_OP_CONV)
      view_conv(p, view, i, &c);

    /* Prepare: validate, infer the outputs, pick the kernel. */
    tl_prepare_fn prep = tl__op_prepare(node->op);
    if (prep == NULL) {
      rc = tl_fail(err, TL_EINTERNAL, "%s: has no prepare function", c.label);
      goto done;
    }
    if ((rc = prep(&c)) != 0)
      goto done;

    if (!c.out_const && s.run != tl__run_alias && all_inputs_const(&s) && s.n_in > 0) {
      /* Constant folding: run the step now, on plan-owned outputs. */
      void *scratch = NULL;
      if (alloc_const_outputs(p, &s) != 0 ||
          (s.scratch_bytes && (scratch = malloc(s.scratch_bytes)) == NULL)) {
        rc = TL_ENOMEM;
        goto done;
      }
      s.run(&s, scratch);
      free(scratch);
      c.out_const = 1;
    }
    if (c.out_const) {
      for (int k = 0; k < s.n_out; k++) {
        if (s.out_val[k] < 0)
          continue;
        struct tl_plan_value *pv = &p->vals[s.out_val[k]];
        pv->dtype = s.out[k].dtype;
        pv->shape = s.out[k].shape;
        pv->data = s.out[k].data;
        pv->is_const = 1;
      }
      continue;
    }
    if (s.run == tl__run_alias) {
      /* A view: the output is the input's buffer (or constant) reshaped. */
      struct tl_plan_value *in = &p->vals[s.in_val[0]];
      for (int k = 0; k < s.n_out; k++) {
        if (s.out_val[k] < 0)
          continue;
        struct tl_plan_value *pv = &p->vals[s.out_val[k]];
        pv->dtype = s.out[k].dtype;
        pv->shape = s.out[k].shape;
        if (in->is_const) {
          pv->is_const = 1;
          pv->data = in->data;
        } else {
          pv->root = root_of(p, s.in_val[0]);
          pv->defined = 1;
        }
      }
      continue;
    }
    /* A computed step: fuse what follows a conv, define the outputs. */
    if (node->op == TL_OP_CONV && !reference &&
        !(view != NULL && (view->collect_bn || view->collect_conv)) &&
        (rc = fuse_after_conv(p, &c, consumer, absorbed)) != 0)
      goto done;
    for (int k = 0; k < s.n_out; k++) {
      if (s.out_val[k] < 0)
        continue;
      struct tl_plan_value *pv = &p->vals[s.out_val[k]];
      pv->dtype = s.out[k].dtype;
      pv->shape = s.out[k].shape;
      pv->defined = 1;
    }
    p->macs += s.macs;
    p->weight_elems += step_weight_elems(&s);
    if (push_step(p, &s) != 0) {
      rc = TL_ENOMEM;
      goto done;
    }
  }
  rc = 0;
done:
  free(consumer);
  free(absorbed);
  if (rc == TL_ENOMEM)
    return plan_fail_nomem(p, err);
  return rc;
}

/* ---------------------------------------------------------------- arena */

static size_t value_bytes(const struct tl_plan_value *v) {
  int64_t n = tl_shape_numel(&v->shape);
  return n < 0 ? 0 : (size_t)n * tl_dtype_size(v->dtype);
}

static size_t align_up(size_t n) {
  return (n + TL_ARENA_ALIGN - 1) & ~(size_t)(TL_ARENA_ALIGN - 1);
}

static int cmp_by_size_desc(const void *a, const void *b, void *ctx) {
  const struct tl_plan *p = ctx;
  size_t sa = value_bytes(&p->vals[*(const int *)a]);
  size_t sb = value_bytes(&p->vals[*(const int *)b]);
  if (sa != sb)
    return sa < sb ? 1 : -1;
  return *(const int *)a - *(const int *)b;
}

/* Greedy layout: biggest buffers first, each at the lowest offset that
 * does not overlap a placed buffer alive at the same time. */
static int layout_arena(struct tl_plan *p) {
  int n = p->n_vals, n_roots = 0;
  int *roots = malloc(((size_t)n + 1) * sizeof *roots);
  if (roots == NULL)
    return TL_ENOMEM;
  for (int v = 0; v < n; v++) {
    p->vals[v].first = p->n_steps + 1;
    p->vals[v].last = -2;
  }
  /* Inputs live through the whole run, so a plan can be rerun on the same
   * input (and a caller may read it back) at the cost of never reusing it. */
  for (int i = 0; i < p->g->n_inputs; i++) {
    if (p->vals[p->g->inputs[i]].is_const)
      continue;
    int r = root_of(p, p->g->inputs[i]);
    p->vals[r].first = -1;
    p->vals[r].last = p->n_steps;
  }
  for (int s = 0; s < p->n_steps; s++) {
    const struct tl_step *st = &p->steps[s];
    for (int k = 0; k < st->n_in; k++) {
      int v = st->in_val[k];
      if (v < 0 || p->vals[v].is_const)
        continue;
      int r = root_of(p, v);
      if (p->vals[r].last < s)
        p->vals[r].last = s;
    }
    for (int k = 0; k < st->n_out; k++) {
      int v = st->out_val[k];
      if (v < 0)
        continue;
      int r = root_of(p, v);
      if (p->vals[r].first > s)
        p->vals[r].first = s;
      if (p->vals[r].last < s)
        p->vals[r].last = s;
    }
  }
  for (int i = 0; i < p->g->n_outputs; i++) {
    int v = p->g->outputs[i];
    if (!p->vals[v].is_const)
      p->vals[root_of(p, v)].last = p->n_steps;
  }
  for (int v = 0; v < n; v++)
    if (!p->vals[v].is_const && p->vals[v].root == v && p->vals[v].last >= -1 &&
        p->vals[v].first <= p->n_steps)
      roots[n_roots++] = v;
  /* An alias's buffer must hold the largest view of it. */
  size_t *need = calloc((size_t)n + 1, sizeof *need);
  if (need == NULL) {
    free(roots);
    return TL_ENOMEM;
  }
  for (int v = 0; v < n; v++)
    if (!p->vals[v].is_const && (p->vals[v].defined)) {
      int r = root_of(p, v);
      size_t b = value_bytes(&p->vals[v]);
      if (b > need[r])
        need[r] = b;
    }
  qsort_r(roots, (size_t)n_roots, sizeof *roots, cmp_by_size_desc, p);
  size_t total = 0;
  for (int a = 0; a < n_roots; a++) {
    struct tl_plan_value *va = &p->vals[roots[a]];
    size_t size = align_up(need[roots[a]] ? need[roots[a]] : 1);
    size_t off = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int b = 0; b < a; b++) {
        const struct tl_plan_value *vb = &p->vals[roots[b]];
        if (vb->last < va->first || va->last < vb->first)
          continue; /* not alive together */
        size_t bsize = align_up(need[roots[b]] ? need[roots[b]] : 1);
        if (off < vb->offset + bsize && vb->offset < off + size) {
          off = vb->offset + bsize;
          moved = 1;
        }
      }
    }
    va->offset = off;
    if (off + size > total)
      total = off + size;
  }
  free(need);
  free(roots);
  p->arena_bytes = total;
  return 0;
}

static void *value_data(struct tl_plan *p, int v) {
  if (v < 0)
    return NULL;
  if (p->vals[v].is_const)
    return p->vals[v].data;
  return (char *)p->arena + p->vals[root_of(p, v)].offset;
}

static int bind(struct tl_plan *p) {
  if (p->arena_bytes > 0) {
    if ((p->arena = aligned_alloc(TL_ARENA_ALIGN, align_up(p->arena_bytes))) == NULL)
      return TL_ENOMEM;
    memset(p->arena, 0, align_up(p->arena_bytes)); /* inputs start as zeros */
  }
  for (int s = 0; s < p->n_steps; s++) {
    struct tl_step *st = &p->steps[s];
    if (st->scratch_bytes > p->scratch_bytes)
      p->scratch_bytes = st->scratch_bytes;
    for (int k = 0; k < st->n_in; k++)
      st->in[k].data = value_data(p, st->in_val[k]);
    for (int k = 0; k < st->n_out; k++)
      st->out[k].data = value_data(p, st->out_val[k]);
  }
  if (p->scratch_bytes > 0 &&
      (p->scratch = aligned_alloc(TL_ARENA_ALIGN, align_up(p->scratch_bytes))) == NULL)
    return TL_ENOMEM;
  for (int i = 0; i < p->n_inputs; i++) {
    int v = p->input_vals[i];
    p->inputs[i] = (struct tl_tensor){p->vals[v].dtype, p->vals[v].shape, value_data(p, v)};
  }
  for (int i = 0; i < p->n_outputs; i++) {
    int v = p->output_vals[i];
    p->outputs[i] = (struct tl_tensor){p->vals[v].dtype, p->vals[v].shape, value_data(p, v)};
  }
  return 0;
}

int tl_plan_build(const struct tl_graph *g, const struct tl_plan_options *opts,
                  struct tl_plan **out, struct tl_error *err) {
  int rc = TL_ENOMEM;
  struct tl_plan *p = calloc(1, sizeof *p);
  if (p == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory while building the plan", g->path);
  p->g = g;
  p->threads = tl_engine_threads();
  p->n_vals = g->n_values + 1; /* and a resized input, when a view asks */
  p->vals = calloc((size_t)g->n_values + 2, sizeof *p->vals);
  p->resized = -1;
  p->n_inputs = g->n_inputs;
  p->n_outputs = g->n_outputs;
  p->inputs = calloc((size_t)g->n_inputs + 1, sizeof *p->inputs);
  p->outputs = calloc((size_t)g->n_outputs + 1, sizeof *p->outputs);
  p->input_vals = g->inputs;
  p->output_vals = g->outputs;
  if (!p->vals || !p->inputs || !p->outputs)
    goto fail;
  p->vals[g->n_values].root = g->n_values;
  for (int v = 0; v < g->n_values; v++) {
    const struct tl_value *gv = &g->values[v];
    struct tl_plan_value *pv = &p->vals[v];
    pv->root = v;
    if (gv->data != NULL) {
      pv->is_const = 1;
      pv->data = gv->data;
      pv->dtype = gv->dtype;
      pv->shape = gv->shape;
    }
  }
  if ((rc = init_inputs(p, opts, err)) != 0)
    goto fail_quiet;
  if ((rc = build_steps(p, opts, err)) != 0)
    goto fail_quiet;
  for (int i = 0; i < g->n_outputs; i++) {
    const struct tl_plan_value *pv = &p->vals[g->outputs[i]];
    if (!pv->is_const && !pv->defined) {
      rc = tl_fail(err, TL_EFORMAT, "%s: output \"%s\" is never computed", g->path,
                   g->values[g->outputs[i]].name);
      goto fail_quiet;
    }
  }
  if ((rc = layout_arena(p)) != 0 || (rc = bind(p)) != 0)
    goto fail;
  *out = p;
  return 0;
fail:
  rc = plan_fail_nomem(p, err);
fail_quiet:
  tl_plan_free(p);
  return rc;
}

void tl_plan_free(struct tl_plan *plan) {
  if (plan == NULL)
    return;
  tl__mem_free(&plan->mem);
  free(plan->steps);
  free(plan->vals);
  free(plan->inputs);
  free(plan->outputs);
  free(plan->arena);
  free(plan->scratch);
  free(plan);
}

/* ------------------------------------------------------------------ run */

void tl_plan_run(struct tl_plan *plan) {
  for (int s = 0; s < plan->n_steps; s++)
    plan->steps[s].run(&plan->steps[s], plan->scratch);
}

void tl_plan_run_timed(struct tl_plan *plan, double *step_us) {
  for (int s = 0; s < plan->n_steps; s++) {
    uint64_t t0 = tl_now_ns();
    plan->steps[s].run(&plan->steps[s], plan->scratch);
    step_us[s] += (double)(tl_now_ns() - t0) / 1e3;
  }
}

void tl_plan_run_step(struct tl_plan *plan, int i) {
  assert(i >= 0 && i < plan->n_steps);
  plan->steps[i].run(&plan->steps[i], plan->scratch);
}

/* ------------------------------------------------------------- queries */

int tl_plan_n_inputs(const struct tl_plan *plan) { return plan->n_inputs; }
int tl_plan_n_outputs(const struct tl_plan *plan) { return plan->n_outputs; }

struct tl_tensor *tl_plan_input(struct tl_plan *plan, int i) {
  assert(i >= 0 && i < plan->n_inputs);
  return &plan->inputs[i];
}

const char *tl_plan_input_name(const struct tl_plan *plan, int i) {
  assert(i >= 0 && i < plan->n_inputs);
  return plan->g->values[plan->input_vals[i]].name;
}

const struct tl_tensor *tl_plan_output(const struct tl_plan *plan, int i) {
  assert(i >= 0 && i < plan->n_outputs);
  return &plan->outputs[i];
}

const char *tl_plan_output_name(const struct tl_plan *plan, int i) {
  assert(i >= 0 && i < plan->n_outputs);
  return plan->g->values[plan->output_vals[i]].name;
}

size_t tl_plan_arena_bytes(const struct tl_plan *plan) { return plan->arena_bytes; }
size_t tl_plan_scratch_bytes(const struct tl_plan *plan) { return plan->scratch_bytes; }

size_t tl_plan_meta_bytes(const struct tl_plan *plan) {
  return plan->mem.bytes + (size_t)plan->cap_steps * sizeof *plan->steps +
         (size_t)plan->n_vals * sizeof *plan->vals;
}
int64_t tl_plan_macs(const struct tl_plan *plan) { return plan->macs; }
int64_t tl__plan_weight_elems(const struct tl_plan *plan) { return plan->weight_elems; }

const struct tl_shape *tl__plan_value_shape(const struct tl_plan *plan, int v) {
  if (v < 0 || v >= plan->n_vals)
    return NULL;
  const struct tl_plan_value *pv = &plan->vals[v];
  return pv->defined || pv->is_const ? &pv->shape : NULL;
}

int tl__plan_bn_collected(const struct tl_plan *plan, int node, const double **sum_mean,
                          const double **sum_var, int *batches, int64_t *channels) {
  for (int i = 0; i < plan->n_steps; i++) {
    const struct tl_step *s = &plan->steps[i];
    if (s->op == TL_OP_CONV && s->node == node && s->p.conv.collect != NULL) {
      *sum_mean = s->p.conv.collect->sum_mean;
      *sum_var = s->p.conv.collect->sum_var;
      *batches = s->p.conv.collect->batches;
      *channels = s->p.conv.m;
      return 1;
    }
    if (s->op != TL_OP_BATCHNORM || s->node != node || s->p.unary.batches == NULL)
      continue;
    *sum_mean = s->p.unary.sum_mean;
    *sum_var = s->p.unary.sum_var;
    *batches = *s->p.unary.batches;
    *channels = s->p.unary.channels;
    return 1;
  }
  return 0;
}
