/*
 * runtime.c - generations of served models: each model's config, graph,
 * SuperNet and calibration data, and its frontiers with plans (see
 * runtime.h).  One request's admission, run and release are request.c;
 * the builder and search threads that make generations are builder.c;
 * what they share of this file is runtime_internal.h.
 *
 * The invariant: whatever a request was admitted with (generation,
 * frontier, member) stays alive and unchanged until the request is
 * released, whatever the loop swaps in meanwhile.
 */
#include "runtime.h"

#include <stdlib.h>
#include <string.h>

#include "onnx.h"
#include "runtime_internal.h"

/* -------------------------------------------------------------- models */

static char *dup_or_null(const char *s, int *failed) {
  if (s == NULL)
    return NULL;
  char *d = strdup(s);
  if (d == NULL)
    *failed = 1;
  return d;
}

void tl__rt_model_cfg_free(struct tl_config_model *c) {
  free(c->name);
  free(c->path);
  free(c->calibration.x);
  free(c->calibration.y);
  memset(c, 0, sizeof *c);
}

/* A deep copy of src into *dst; TL_ENOMEM leaves *dst zeroed. */
int tl__rt_model_cfg_copy(struct tl_config_model *dst, const struct tl_config_model *src) {
  int failed = 0;
  *dst = *src;
  dst->name = dup_or_null(src->name, &failed);
  dst->path = dup_or_null(src->path, &failed);
  dst->calibration.x = dup_or_null(src->calibration.x, &failed);
  dst->calibration.y = dup_or_null(src->calibration.y, &failed);
  if (failed) {
    tl__rt_model_cfg_free(dst);
    return TL_ENOMEM;
  }
  return 0;
}

/* Loads model m's graph, SuperNet and calibration data, and checks its
 * input. */
int tl__rt_model_load(struct tl_rt_model *m, struct tl_error *err) {
  m->accuracy_metric = "top-1";
  int rc = tl_onnx_load(m->cfg.path, &m->g, err);
  if (rc != 0)
    return rc;
  const struct tl_graph *g = m->g;
  if (g->n_inputs != 1)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: tailord serves models with one input; this one has %d", m->cfg.path,
                   g->n_inputs);
  const struct tl_value *v = &g->values[g->inputs[0]];
  if (v->dtype != TL_DTYPE_FLOAT32 && v->dtype != TL_DTYPE_UNDEFINED)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: input \"%s\" is %s; tailord serves float32 models",
                   m->cfg.path, v->name, tl_dtype_name(v->dtype));
  if (v->shape.ndim != 4 || v->shape.dims[1] <= 0 || v->shape.dims[2] <= 0 || v->shape.dims[3] <= 0)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: input \"%s\" is not an image batch N x C x H x W with known C, H, W",
                   m->cfg.path, v->name);
  for (int d = 0; d < 3; d++)
    m->in_chw[d] = v->shape.dims[d + 1];
  if ((m->input_name = strdup(v->name)) == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");

  /* The config's space, as tailorctl's --widths and --res-steps:
   * resolutions from 50 % to 100 % of the native side in resolution_steps
   * steps (0: the native side only), so that both share cached
   * frontiers. */
  struct tl_supernet_options so = {0};
  so.n_widths = m->cfg.space.widths.n;
  for (int i = 0; i < so.n_widths; i++)
    so.widths[i] = (float)m->cfg.space.widths.v[i];
  if (m->cfg.space.resolution_steps == 0) {
    so.n_res = 1;
    so.res[0] = 1.f;
  } else {
    so.res_steps = m->cfg.space.resolution_steps;
  }
  if ((rc = tl_supernet_build(m->g, &so, &m->sn, err)) != 0)
    return rc;

  if (m->cfg.calibration.x != NULL) {
    rc = tl_calib_load(m->cfg.calibration.x, m->cfg.calibration.y, (float)m->cfg.calibration.scale,
                       &m->calib, err);
    if (rc != 0)
      return rc;
    m->has_calib = 1;
    m->accuracy_metric = tl_calib_metric(&m->calib);
    const struct tl_shape *s = &m->calib.x.shape;
    if (s->ndim != 4 || s->dims[1] != m->in_chw[0] || s->dims[2] != m->in_chw[1] ||
        s->dims[3] != m->in_chw[2]) {
      char a[64];
      return tl_fail(err, TL_ESHAPE,
                     "%s: calibration images are %s but model %s takes N x %lld x %lld x %lld",
                     m->cfg.calibration.x, tl_shape_str(s, a, sizeof a), m->cfg.path,
                     (long long)m->in_chw[0], (long long)m->in_chw[1], (long long)m->in_chw[2]);
    }
  }
  return 0;
}

/* ------------------------------------------------------------ frontier */

struct tl_rt_frontier *tl_rt_frontier_ref(struct tl_rt_frontier *f) {
  atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
  return f;
}

static void frontier_free(struct tl_rt_frontier *f) {
  for (int i = 0; i < f->n; i++) {
    struct tl_rt_member *m = &f->m[i];
    if (m->plans != NULL)
      for (int w = 0; w < f->n_workers; w++)
        tl_plan_free(m->plans[w]);
    free(m->plans);
    tl_bn_stats_free(m->bn);
  }
  free(f->m);
  free(f);
}

void tl_rt_frontier_unref(struct tl_rt_frontier *f) {
  if (f != NULL && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
    frontier_free(f);
}

int tl_rt_more_accurate(const struct tl_rt_frontier *f, int a, int b) {
  double x = f->m[a].accuracy, y = f->m[b].accuracy;
  if (x >= 0 && y >= 0 && x != y)
    return x > y;
  return a > b;
}

int tl_rt_frontier_find(const struct tl_rt_frontier *f, const struct tl_supernet *sn,
                        const char *text, struct tl_error *err) {
  struct tl_subnet_spec spec;
  if (tl_subnet_parse(sn, text, &spec, err) != 0)
    return TL_EINVAL;
  uint64_t key = tl_subnet_key(sn, &spec);
  for (int i = 0; i < f->n; i++)
    if (f->m[i].key == key)
      return i;
  char canon[TL_RT_SPEC_MAX];
  return tl_fail(err, TL_ENOENT, "subnet \"%s\" is not on the frontier (GET .../subnets lists it)",
                 tl_subnet_format(sn, &spec, canon, sizeof canon));
}

/* Checks the outputs of a model's first plan and records their names and
 * one-image shapes in m. */
static int record_outputs(struct tl_rt_model *m, const struct tl_plan *plan, struct tl_error *err) {
  int n = tl_plan_n_outputs(plan);
  if (n < 1 || n > TL_OIP_TENSORS_MAX)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: the model has %d outputs; tailord serves 1 to %d",
                   m->cfg.path, n, TL_OIP_TENSORS_MAX);
  for (int i = 0; i < n; i++) {
    const struct tl_tensor *t = tl_plan_output(plan, i);
    char s[64];
    if (t->dtype != TL_DTYPE_FLOAT32)
      return tl_fail(err, TL_EUNSUPPORTED, "%s: output \"%s\" is %s; tailord serves float32",
                     m->cfg.path, tl_plan_output_name(plan, i), tl_dtype_name(t->dtype));
    if (t->shape.ndim < 1 || t->shape.dims[0] != 1)
      return tl_fail(err, TL_EUNSUPPORTED,
                     "%s: output \"%s\" has shape %s; tailord needs a leading batch "
                     "dimension of 1",
                     m->cfg.path, tl_plan_output_name(plan, i),
                     tl_shape_str(&t->shape, s, sizeof s));
  }
  m->output_names = calloc((size_t)n, sizeof *m->output_names);
  m->output_shapes = calloc((size_t)n, sizeof *m->output_shapes);
  if (m->output_names == NULL || m->output_shapes == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  m->n_outputs = n;
  for (int i = 0; i < n; i++) {
    m->output_shapes[i] = tl_plan_output(plan, i)->shape;
    if ((m->output_names[i] = strdup(tl_plan_output_name(plan, i))) == NULL)
      return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  return 0;
}

/* A frontier of model m from members src[0..n) (their bn is taken: set
 * to NULL in src), with plans for every worker. */
int tl__rt_frontier_build(struct tl_rt_model *m, struct tl_frontier_member *src, int n,
                          int provisional, int partial, int n_workers, struct tl_rt_frontier **out,
                          struct tl_error *err) {
  struct tl_rt_frontier *f = calloc(1, sizeof *f);
  if (f == NULL || (f->m = calloc((size_t)n, sizeof *f->m)) == NULL) {
    free(f);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  atomic_init(&f->refs, 1);
  f->provisional = provisional;
  f->partial = partial;
  f->n_workers = n_workers;
  f->n = n;
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    struct tl_rt_member *mm = &f->m[i];
    mm->spec = src[i].spec;
    tl_subnet_format(m->sn, &mm->spec, mm->text, sizeof mm->text);
    mm->key = tl_subnet_key(m->sn, &mm->spec);
    mm->predicted_ms = src[i].predicted_ms;
    mm->predicted_mib = src[i].predicted_mib;
    mm->accuracy = src[i].accuracy;
    mm->bn = src[i].bn;
    src[i].bn = NULL;
    if ((mm->plans = calloc((size_t)n_workers, sizeof *mm->plans)) == NULL) {
      rc = tl_fail(err, TL_ENOMEM, "out of memory");
      break;
    }
    struct tl_subnet_plan_options po = {.batch = 1, .bn = mm->bn};
    for (int w = 0; w < n_workers && rc == 0; w++) {
      rc = tl_subnet_plan(m->sn, &mm->spec, &po, &mm->plans[w], err);
      if (rc == 0 && m->output_names == NULL)
        rc = record_outputs(m, mm->plans[w], err);
    }
  }
  if (rc != 0) {
    frontier_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

/* ---------------------------------------------------------- generations */

struct tl_runtime *tl_runtime_ref(struct tl_runtime *rt) {
  atomic_fetch_add_explicit(&rt->refs, 1, memory_order_relaxed);
  return rt;
}

static void model_free(struct tl_rt_model *m) {
  tl_rt_frontier_unref(m->frontier); /* plans first: they borrow the graph */
  m->frontier = NULL;
  tl_supernet_free(m->sn);
  tl_graph_free(m->g);
  if (m->has_calib)
    tl_calib_free(&m->calib);
  free(m->input_name);
  for (int i = 0; i < m->n_outputs && m->output_names != NULL; i++)
    free(m->output_names[i]);
  free(m->output_names);
  free(m->output_shapes);
  tl__rt_model_cfg_free(&m->cfg);
}

static void runtime_free(struct tl_runtime *rt) {
  for (int i = 0; i < rt->n_models; i++)
    model_free(&rt->models[i]);
  free(rt->models);
  free(rt);
}

void tl_runtime_unref(struct tl_runtime *rt) {
  if (rt != NULL && atomic_fetch_sub_explicit(&rt->refs, 1, memory_order_acq_rel) == 1)
    runtime_free(rt);
}

struct tl_rt_model *tl_runtime_model(struct tl_runtime *rt, const char *name) {
  if (rt == NULL)
    return NULL;
  for (int i = 0; i < rt->n_models; i++)
    if (strcmp(rt->models[i].cfg.name, name) == 0)
      return &rt->models[i];
  return NULL;
}

int tl_runtime_ready(const struct tl_runtime *rt) {
  if (rt == NULL)
    return 0;
  for (int i = 0; i < rt->n_models; i++)
    if (rt->models[i].frontier == NULL)
      return 0;
  return 1;
}
