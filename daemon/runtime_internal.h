/*
 * runtime_internal.h - what runtime.c lends builder.c: copies of a
 * model's config, loading a model, building a frontier with plans.
 * Private to daemon/; runtime.h is the API.
 */
#ifndef TL_RUNTIME_INTERNAL_H
#define TL_RUNTIME_INTERNAL_H

#include "frontier.h"
#include "runtime.h"

/* Frees the strings of a config copy and zeroes it. */
void tl__rt_model_cfg_free(struct tl_config_model *c);

/* A deep copy of src into *dst; TL_ENOMEM leaves *dst zeroed. */
int tl__rt_model_cfg_copy(struct tl_config_model *dst, const struct tl_config_model *src);

/* Loads model m's graph, SuperNet and calibration data (m->cfg says
 * which), and checks its input. */
int tl__rt_model_load(struct tl_rt_model *m, struct tl_error *err);

/* A frontier of model m from members src[0..n) (their bn is taken: set
 * to NULL in src), with plans for every worker. */
int tl__rt_frontier_build(struct tl_rt_model *m, struct tl_frontier_member *src, int n,
                          int provisional, int partial, int n_workers, struct tl_rt_frontier **out,
                          struct tl_error *err);

#endif
