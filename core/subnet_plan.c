/*
 * subnet_plan.c - subnet plans: a spec seen as a view of the SuperNet's
 * graph (blocks skipped, channels kept, statistics, resolution), which
 * the plan builder honours, and what a subnet costs.
 */
#include "supernet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "supernet_internal.h"

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
    int64_t k = w->unit *
                tl__subnet_keep_channels(sn->widths[spec->width[w->stage]], w->channels / w->unit);
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
