/*
 * supernet_internal.h - what the SuperNet's files share and nothing else
 * sees: the SuperNet's layout and the stages of building one.
 *
 * supernet_graph.c finds the elastic dimensions, supernet_sort.c sorts
 * each width group's channels, subnet_spec.c and subnet_plan.c read the
 * result, supernet.c builds and frees it.  Kept apart from internal.h,
 * which the ops and kernels include: this layout needs supernet.h (and so
 * plan.h), which they must not see.
 */
#ifndef TL_SUPERNET_INTERNAL_H
#define TL_SUPERNET_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "internal.h"
#include "supernet.h"

#define TL_SN_MAX_GROUP_NODES 32
#define TL_SN_WHY_MAX 192 /* a reason a node is not elastic, for inspect --why */

struct sn_block {
  int add;      /* the Add that closes the branch */
  int in;       /* the block's input value: the identity skip */
  int out;      /* the value consumers read: Add's output or post_act's */
  int post_act; /* a Relu after the Add, dropped with the block, or -1 */
  int n_nodes;
  int *nodes; /* branch nodes, the Add and post_act */
  int stage;
};

/* A width group: channels that one dense conv (c1) makes and that nothing
 * outside its block reads, up to the dense conv that consumes them (c2).
 * nodes[] is every node that touches them, c1 first, in graph order, each
 * with its role (enum sn_role below). */
struct sn_width {
  int c1, c2;
  int n_nodes;
  int nodes[TL_SN_MAX_GROUP_NODES];
  uint8_t role[TL_SN_MAX_GROUP_NODES];
  int64_t channels;
  int64_t unit; /* channels kept together: a grouped conv's group size, else 1 */
  int stage;
  char why[TL_SN_WHY_MAX]; /* while analysing: why the channels are not a group */
};

struct tl_supernet {
  struct tl_graph *g;
  int n_stages;
  int stage_first[TL_SN_MAX_STAGES]; /* first block of each stage */
  int stage_n[TL_SN_MAX_STAGES];     /* blocks per stage */
  int stage_wg[TL_SN_MAX_STAGES];    /* width groups per stage */
  int n_blocks;
  struct sn_block *blocks;
  int n_wg;
  struct sn_width *wg;
  int n_widths;
  float widths[TL_SN_MAX_CHOICES];
  int n_res;
  int res[TL_SN_MAX_CHOICES];
  int native_h, native_w;
  /* Per-node and per-value tables for building views. */
  int *consumers_start; /* CSR over values: consumer nodes of each value */
  int *consumers;
  int n_notes; /* why residual Adds and convs are not elastic */
  char **notes;
  /* The full model's conv statistics per calibration set (see
   * tl__supernet_conv_ref); the one mutable part, under ref_lock. */
  pthread_mutex_t ref_lock;
  struct conv_ref *refs;
};

struct conv_ref {
  uint64_t key;
  struct tl_bn_stats *stats;
  struct conv_ref *next;
};

/* What a node of a width group does with the group's channels, which
 * says which of its tensors the channel sort permutes and how a subnet
 * slices it. */
enum sn_role {
  ROLE_PLAIN,   /* channel-wise op with no per-channel parameters */
  ROLE_BN,      /* BatchNormalization: scale, bias, mean, var per channel */
  ROLE_OUT,     /* conv whose output channels are the group: rows, bias */
  ROLE_THROUGH, /* depthwise or grouped conv, group in and out: rows, bias */
  ROLE_IN       /* conv that reads the group as input channels: columns */
};

/* The stages of tl_supernet_build, each 0 or a TL_E* code (TL_ENOMEM;
 * TL_EUNSUPPORTED for more than TL_SN_MAX_STAGES stages)
 * (supernet_graph.c).  find_consumers indexes each value's consumer
 * nodes; find_blocks finds the residual blocks and their stages, noting
 * why each residual Add that is not one is not; find_width_groups finds
 * the width groups (sorting each when sort is set), noting why each conv
 * that makes none does not. */
int tl__supernet_find_consumers(struct tl_supernet *sn);
int tl__supernet_find_blocks(struct tl_supernet *sn);
int tl__supernet_find_width_groups(struct tl_supernet *sn, int sort);

/* Sorts a group's channels by importance, descending, whole units at a
 * time, in every tensor that indexes them (see enum sn_role).  0 or
 * TL_ENOMEM (supernet_sort.c). */
int tl__supernet_sort_group(struct tl_supernet *sn, const struct sn_width *w);

/* Channels a width fraction w keeps of ch: rounded, at least 1, at most
 * ch (subnet_spec.c). */
int tl__subnet_keep_channels(float w, int64_t ch);

#endif
