/*
 * latency.h - the learning-free latency and memory predictor.
 *
 * A subnet's plan is a list of steps, each a fused kernel (conv + BN +
 * activation + residual add is one step).  Every step has a signature
 * (tl_plan_step_signature: kind, shapes, kernel geometry, threads) and
 * steps with equal signatures take equal time on one device.  Profiling
 * (profile.h) times each distinct signature of a SuperNet's space once
 * and keeps the medians in an op table (op_table.h); a table made
 * elsewhere can be mapped here instead (transfer.h).  A subnet's latency
 * is then predicted without running it: the sum of its steps' medians
 * plus a per-step overhead, scaled by the device's state.
 *
 * Memory is analytic: the weights the subnet reads, its plan's arena and
 * scratch, and the request's input and output buffers.
 *
 * The functions that take a SuperNet only read it (see supernet.h for its
 * threading).
 */
#ifndef TL_LATENCY_H
#define TL_LATENCY_H

#include <stdint.h>

#include "device.h"
#include "error.h"
#include "op_table.h"
#include "supernet.h"

struct tl_prediction {
  double latency_ms;    /* sum of step medians + overhead, unscaled */
  double mem_mib;       /* weights + arena + scratch + request buffers */
  int64_t weight_bytes; /* weights the subnet reads */
  int64_t arena_bytes;  /* activations and the kernels' scratch */
  int64_t io_bytes;     /* one request's input and output tensors */
  int steps;
};

/* Predicts spec's latency and memory from t by building its plan (not
 * running it).  A step whose signature t lacks is TL_ENOENT, with a
 * sentence naming it (profile first). */
int tl_latency_predict(const struct tl_supernet *sn, const struct tl_op_table *t,
                       const struct tl_subnet_spec *spec, struct tl_prediction *out,
                       struct tl_error *err);

/* base_ms under state s: base / freq_ratio / cpu_share * correction, each
 * factor clamped to [0.05, 20] so one bad reading cannot run away. */
double tl_latency_scale(double base_ms, const struct tl_device_scale *s);

#endif
