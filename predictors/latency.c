/*
 * latency.c - latency and memory prediction (see latency.h): a subnet's
 * plan is built, not run, and its steps' medians are summed.
 */
#include "latency.h"

#include "internal.h"
#include "plan.h"

/* ========================================================= prediction */

int tl_latency_predict(const struct tl_supernet *sn, const struct tl_op_table *t,
                       const struct tl_subnet_spec *spec, struct tl_prediction *out,
                       struct tl_error *err) {
  struct tl_plan *plan = NULL;
  int rc = tl__build_plan(sn, spec, &plan, err);
  if (rc != 0)
    return rc;
  char sig[SIG_MAX];
  double sum = 0;
  int ns = tl_plan_n_steps(plan);
  for (int s = 0; s < ns; s++) {
    double us;
    if (tl_plan_step_signature(plan, s, sig, sizeof sig) != 0 || !tl_op_table_get(t, sig, &us)) {
      rc = tl_fail(err, TL_ENOENT, "no latency measured for step %d (%s): profile the model first",
                   s, sig);
      tl_plan_free(plan);
      return rc;
    }
    sum += us;
  }
  int64_t macs, params;
  rc = tl_subnet_cost(sn, spec, &macs, &params, err);
  if (rc != 0) {
    tl_plan_free(plan);
    return rc;
  }
  int64_t io = 0;
  for (int i = 0; i < tl_plan_n_inputs(plan); i++) {
    struct tl_tensor *in = tl_plan_input(plan, i);
    io += tl_shape_numel(&in->shape) * (int64_t)tl_dtype_size(in->dtype);
  }
  for (int i = 0; i < tl_plan_n_outputs(plan); i++) {
    const struct tl_tensor *o = tl_plan_output(plan, i);
    io += tl_shape_numel(&o->shape) * (int64_t)tl_dtype_size(o->dtype);
  }
  out->steps = ns;
  out->latency_ms = (sum + ns * tl_op_table_overhead_us(t)) / 1e3;
  out->weight_bytes = params * (int64_t)sizeof(float);
  out->arena_bytes = (int64_t)(tl_plan_arena_bytes(plan) + tl_plan_scratch_bytes(plan));
  out->io_bytes = io;
  out->mem_mib = (double)(out->weight_bytes + out->arena_bytes + out->io_bytes) / (1 << 20);
  tl_plan_free(plan);
  return 0;
}

static double clamp_factor(double f) {
  if (!(f > 0))
    return 1;
  return f < 0.05 ? 0.05 : f > 20 ? 20 : f;
}

double tl_latency_scale(double base_ms, const struct tl_device_scale *s) {
  if (s == NULL)
    return base_ms;
  return base_ms / clamp_factor(s->freq_ratio) / clamp_factor(s->cpu_share) *
         clamp_factor(s->correction);
}
