/*
 * supernet.c - building a SuperNet from a graph, and what it says about
 * itself.
 *
 * Building finds the graph's elastic dimensions (supernet_graph.c), sorts
 * each width group's channels (supernet_sort.c) and chooses the
 * resolutions.  Subnet specs are in subnet_spec.c, subnet plans in
 * subnet_plan.c.  See supernet.h for what depth, width and resolution
 * mean.  Invariant after build: every width group's channels are sorted
 * by importance, descending, in every tensor that indexes them, so any
 * prefix is a valid narrower layer.
 */
#include "supernet.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "calib.h"
#include "supernet_internal.h"

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
 * change); otherwise only the native side is offered.  Sets *elastic_out;
 * returns 0, or TL_ENOMEM when a plan could not be had for lack of memory,
 * which says nothing about the model (taking it for "not elastic" would
 * quietly make a smaller SuperNet). */
static int check_resolution(struct tl_supernet *sn, int *elastic_out) {
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
    int rc = tl_subnet_plan(sn, &big, NULL, &pb, NULL);
    if (rc == 0)
      rc = tl_subnet_plan(sn, &small_, NULL, &ps, NULL);
    elastic = rc == 0;
    for (int i = 0; elastic && i < tl_plan_n_outputs(pb); i++)
      elastic = tl_shape_equal(&tl_plan_output(pb, i)->shape, &tl_plan_output(ps, i)->shape);
    tl_plan_free(pb);
    tl_plan_free(ps);
    if (rc == TL_ENOMEM)
      return rc;
  }
  if (!elastic) {
    sn->res[0] = sn->native_h;
    sn->n_res = 1;
  }
  *elastic_out = elastic;
  return 0;
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
  if ((rc = tl__supernet_find_consumers(sn)) != 0 || (rc = tl__supernet_find_blocks(sn)) != 0 ||
      (rc = tl__supernet_find_width_groups(sn, opts == NULL || !opts->no_sort)) != 0) {
    if (rc == TL_EUNSUPPORTED)
      tl_fail(err, rc, "%s: more than %d stages", g->path, TL_SN_MAX_STAGES);
    else
      tl_fail(err, rc, "%s: out of memory", g->path);
    goto fail;
  }
  if ((rc = choose_resolutions(sn, opts, err)) != 0)
    goto fail;
  int elastic_res = 0;
  if ((rc = check_resolution(sn, &elastic_res)) != 0) {
    tl_fail(err, rc, "%s: out of memory", g->path);
    goto fail;
  }
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
