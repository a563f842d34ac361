/*
 * plan.h - executable plans: a graph bound to concrete input shapes.
 *
 * Building a plan infers every shape, folds what is constant (Shape,
 * Gather, Unsqueeze, Concat chains and anything else whose inputs are all
 * known), fuses Conv + BatchNormalization + activation + residual Add into
 * one step, chooses a kernel per step, and lays all activations out in one
 * static arena where buffers whose lifetimes do not overlap share memory.
 * Running a plan allocates nothing.
 *
 * A plan borrows the graph's weights: free the plan before the graph.  A
 * plan runs on one thread at a time (its arena is its state); build one
 * plan per worker to run in parallel.
 */
#ifndef TL_PLAN_H
#define TL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "graph.h"
#include "tensor.h"

struct tl_plan;
struct tl_plan_view;

struct tl_plan_options {
  /* Shapes of the graph's runtime inputs, in graph order; NULL to use the
   * shapes the model declares (every dimension must then be known). */
  const struct tl_shape *input_shapes;
  /* Optional, per runtime input: data to bind as a constant at build time
   * (for inputs that carry shapes or axes, as in ONNX's conformance tests).
   * NULL entries stay runtime inputs.  Borrowed: must outlive the plan. */
  const void *const *input_values;
  /* Use the plain reference kernels and no fusion (for tests). */
  int reference;
  /* A subnet of a SuperNet (supernet.h builds these); NULL for the whole
   * graph. */
  const struct tl_plan_view *view;
};

/* Builds a plan for g.  opts may be NULL for the defaults.  On failure
 * returns a TL_E* code (TL_EUNSUPPORTED for valid models using something
 * the engine does not run, TL_ESHAPE for inputs of the wrong shape), leaves
 * *out untouched and writes a sentence naming the model and node. */
int tl_plan_build(const struct tl_graph *g, const struct tl_plan_options *opts,
                  struct tl_plan **out, struct tl_error *err);

/* Frees the plan; NULL is allowed. */
void tl_plan_free(struct tl_plan *plan);

int tl_plan_n_inputs(const struct tl_plan *plan);
int tl_plan_n_outputs(const struct tl_plan *plan);

/* The i-th runtime input: fill t->data (numel * dtype size bytes, inside
 * the arena) before tl_plan_run().  Runs never write it, so one input can
 * be run again.  The name is the graph's. */
struct tl_tensor *tl_plan_input(struct tl_plan *plan, int i);
const char *tl_plan_input_name(const struct tl_plan *plan, int i);

/* The i-th output; its data stays valid until the next run or the free. */
const struct tl_tensor *tl_plan_output(const struct tl_plan *plan, int i);
const char *tl_plan_output_name(const struct tl_plan *plan, int i);

/* Runs the plan on the data in its inputs.  Cannot fail and allocates
 * nothing; not reentrant (one thread per plan at a time). */
void tl_plan_run(struct tl_plan *plan);

/* Bytes of the activation arena and of the kernels' shared scratch. */
size_t tl_plan_arena_bytes(const struct tl_plan *plan);
size_t tl_plan_scratch_bytes(const struct tl_plan *plan);

/* Measures what one run really uses: fills the arena and the scratch
 * with a pattern (keeping the inputs), runs the plan, and counts the
 * bytes of each that the run wrote.  For benchmarks of the memory
 * predictor; TL_ENOMEM if the inputs cannot be saved. */
int tl_plan_touched_bytes(struct tl_plan *plan, size_t *arena_bytes, size_t *scratch_bytes);

/* Bytes of everything else the plan owns: its steps, their parameters,
 * BN scale/shift vectors, any transformed weights. */
size_t tl_plan_meta_bytes(const struct tl_plan *plan);

/* Multiply-adds of one run, summed over steps (a conv counts
 * n*m*oh*ow*(c/group)*kh*kw). */
int64_t tl_plan_macs(const struct tl_plan *plan);

/* Per-step introspection, for `tailorctl bench --per-op` and predictors. */
struct tl_step_info {
  const char *name; /* the first graph node's name (may be "") */
  const char *kind; /* "Conv+BN+Relu", "MaxPool", ... */
  int64_t macs;
  /* The share of the step's work its busiest thread does at the threads
   * the plan was built for: 1 when its kernel keeps it on one thread (or
   * its work does not divide), 1/n for an even split over n.  From the
   * kernels' own partition rules, without running anything; OpenBLAS's
   * (im2col convs too large for the implicit GEMM, MatMul) is taken as
   * an even split above 65536 multiply-adds. */
  double busiest;
};
int tl_plan_n_steps(const struct tl_plan *plan);
void tl_plan_step_info(const struct tl_plan *plan, int i, struct tl_step_info *info);

/* Writes into buf a text that identifies the work of step i: its fused
 * kind, the shapes of its inputs (weights included) and outputs, the
 * kernel chosen with its geometry, and the engine's thread count when the
 * plan was built.  Two
 * steps with equal signatures run the same code on the same sizes, so
 * they take the same time on one device (the latency predictor's key).
 * Returns 0, or TL_ERANGE when len was too small (buf then holds a
 * truncated, NUL-terminated prefix). */
int tl_plan_step_signature(const struct tl_plan *plan, int i, char *buf, size_t len);

/* Runs step i alone on whatever its inputs hold in the arena (run the
 * whole plan once first).  For micro-benchmarks; not reentrant. */
void tl_plan_run_step(struct tl_plan *plan, int i);

/* Runs the plan like tl_plan_run() and adds each step's wall time in
 * microseconds into step_us[i] (tl_plan_n_steps() entries). */
void tl_plan_run_timed(struct tl_plan *plan, double *step_us);

/* Sets the number of threads the engine's kernels use (OpenBLAS is
 * process-wide, so this is too).  n <= 0 means 1.  A plan takes the count
 * when it is built.  Call before running, never while a plan runs. */
void tl_engine_set_threads(int n);
int tl_engine_threads(void);

#endif
