/*
 * supernet.h - a model's weight-shared SuperNet and its subnets.
 *
 * tl_supernet_build() analyses a loaded graph, with no knowledge of any
 * model by name, for three elastic dimensions:
 *
 *  - depth: a residual block is a branch that starts at a value x and ends
 *    in Add(branch, x) with an identity skip; consecutive blocks form a
 *    stage, and a subnet keeps the first d blocks of each stage.
 *  - width: channels produced by a dense conv and consumed only by the
 *    next dense conv of the same block -- through BatchNormalization,
 *    activations (SiLU and HardSwish written as Mul(x, Sigmoid(x)) too),
 *    depthwise and grouped convs, and squeeze-and-excitation gates, whose
 *    reduce conv reads them and whose expand conv makes them again -- are
 *    internal; a subnet keeps the first k of them (whole groups of a
 *    grouped conv).  At build time they are sorted by importance (L1 norm
 *    of each filter times its BN scale |gamma|/sqrt(var+eps); per group
 *    for grouped convs), with every tensor that indexes them permuted to
 *    match, so "the first k" are the k that matter most.  Channels tied
 *    through an Add stay whole.
 *  - resolution: when the graph collapses space by global pooling before
 *    its classifier, the input may be resized (bilinear) to a smaller side.
 *
 * A subnet is a spec with one canonical text form, e.g.
 * "r=24 d=2,1,2 w=1,.5,.75": r the input side, d the blocks kept and w the
 * width kept per stage.  Plans for subnets are views into the SuperNet's
 * weights: no weight is copied.
 *
 * The SuperNet borrows the graph and, when sorting channels, rewrites the
 * graph's weights in place once; free the SuperNet (and its plans) before
 * the graph.  After build it is only read, so threads may share it.
 */
#ifndef TL_SUPERNET_H
#define TL_SUPERNET_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "graph.h"
#include "plan.h"

#define TL_SN_MAX_STAGES 32
#define TL_SN_MAX_CHOICES 16

struct tl_supernet;

struct tl_supernet_options {
  /* Width choices as fractions in (0, 1], ascending; 0 entries = the
   * default .25 .5 .75 1. */
  int n_widths;
  float widths[TL_SN_MAX_CHOICES];
  /* Resolution choices as fractions of the native side, or 0 entries for
   * the default: 50 % to 100 % in res_steps equal steps (default 4, so
   * .5 .625 .75 .875 1).  A side is floor(native * f + 0.5). */
  int n_res;
  float res[TL_SN_MAX_CHOICES];
  int res_steps;
  /* Leave the channel order as it is (for tests of the sort itself). */
  int no_sort;
};

/* The spec of one subnet.  depth[s] blocks and width[s] (an index into the
 * width choices) per stage; res is the input side in pixels. */
struct tl_subnet_spec {
  int res;
  int depth[TL_SN_MAX_STAGES];
  int width[TL_SN_MAX_STAGES];
};

/* Analyses g and builds its SuperNet (see the file comment).  g must stay
 * alive and unchanged by others while the SuperNet lives.  A graph with no
 * elastic dimension at all is an error (TL_EUNSUPPORTED) that says so. */
int tl_supernet_build(struct tl_graph *g, const struct tl_supernet_options *opts,
                      struct tl_supernet **out, struct tl_error *err);

void tl_supernet_free(struct tl_supernet *sn);

/* What was found, for `tailorctl inspect`. */
struct tl_supernet_info {
  int n_stages;
  int blocks[TL_SN_MAX_STAGES];       /* skippable blocks per stage */
  int width_groups[TL_SN_MAX_STAGES]; /* elastic channel groups per stage */
  int n_width_groups;
  int n_widths;
  float widths[TL_SN_MAX_CHOICES];
  int n_res;                  /* 1 when resolution is not elastic */
  int res[TL_SN_MAX_CHOICES]; /* sides, ascending */
  int native_res;
  double space_size; /* number of distinct subnets */
};
void tl_supernet_info(const struct tl_supernet *sn, struct tl_supernet_info *info);

/* Description of width group i (0 <= i < n_width_groups) for inspect:
 * the producing and consuming conv nodes and the channel count. */
void tl_supernet_width_group(const struct tl_supernet *sn, int i, const char **producer,
                             const char **consumer, int64_t *channels, int *stage);

/* Why parts of the model are not elastic, for `tailorctl inspect --why`:
 * one line per residual Add that is not a skippable block and per conv
 * that takes part in no width group, e.g. `node "conv3" (Conv): its
 * channels feed the residual node "add2" (Add) outside the block`.  The
 * lines belong to the SuperNet. */
int tl_supernet_n_notes(const struct tl_supernet *sn);
const char *tl_supernet_note(const struct tl_supernet *sn, int i);

/* The largest and smallest subnets, and a uniformly random one (seed is
 * advanced). */
void tl_subnet_largest(const struct tl_supernet *sn, struct tl_subnet_spec *spec);
void tl_subnet_smallest(const struct tl_supernet *sn, struct tl_subnet_spec *spec);
void tl_subnet_random(const struct tl_supernet *sn, uint64_t *seed, struct tl_subnet_spec *spec);

/* Parses text ("r=24 d=2,1,2 w=1,.5,.75"; keys in any order, each once,
 * all required) into *spec.  Unknown keys, values not offered, depths out
 * of range or a wrong count per stage are TL_EINVAL with a sentence. */
int tl_subnet_parse(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec,
                    struct tl_error *err);

/* Writes the canonical text of spec into buf (always "r=.. d=.. w=.."
 * with widths as ".25", ".5", "1") and returns buf. */
char *tl_subnet_format(const struct tl_supernet *sn, const struct tl_subnet_spec *spec, char *buf,
                       size_t size);

/* A stable 64-bit key: FNV-1a of the canonical text. */
uint64_t tl_subnet_key(const struct tl_supernet *sn, const struct tl_subnet_spec *spec);

/* Per-subnet BatchNormalization statistics from recalibration: mean and
 * var of each BN node of the graph (NULL for nodes that are not BN or not
 * in the subnet), each as long as the node's full channel count.  A conv
 * with no BN after it (BN folded in by the exporter) has an entry too:
 * the map y = (conv + bias - mean) / sqrt(var) that gives its output the
 * full model's statistics (see calib.h). */
struct tl_bn_stats {
  int n_nodes;
  float **mean;
  float **var;
};

struct tl_subnet_plan_options {
  int batch;                    /* images per run; 0 means 1 */
  const struct tl_bn_stats *bn; /* recalibrated statistics, or NULL */
  int collect_bn;               /* train-mode BN that records batch stats */
  /* In collect mode, convs with no BN after them record their output's
   * statistics too and map it onto these (the full model's, per conv
   * node), or only record them when NULL.  Borrowed. */
  const struct tl_bn_stats *conv_ref;
  int reference; /* reference kernels, no fusion */
};

/* Builds a plan running subnet spec.  Its input is the model's native
 * shape (with the batch given); resizing to spec->res happens inside the
 * plan.  The plan borrows the graph's weights and opts->bn. */
int tl_subnet_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   const struct tl_subnet_plan_options *opts, struct tl_plan **out,
                   struct tl_error *err);

/* MACs and parameters (weights read) of a subnet. */
int tl_subnet_cost(const struct tl_supernet *sn, const struct tl_subnet_spec *spec, int64_t *macs,
                   int64_t *params, struct tl_error *err);

#endif
