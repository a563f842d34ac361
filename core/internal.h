/*
 * internal.h - what the files of core/ share and nothing outside it sees:
 * plan steps, the prepare context, op parameters and kernel entry points.
 *
 * Each op has a prepare function (plan build time: validate attributes and
 * shapes, infer output shapes, precompute what run needs, pick a kernel)
 * and one or more run functions (inference time: only compute).  Names with
 * two underscores (tl__) are internal to the library.
 */
#ifndef TL_INTERNAL_H
#define TL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "graph.h"
#include "tensor.h"

struct tl_plan;

/* ---------------------------------------------------------- activations */

enum tl_act {
  TL_ACT_NONE = 0,
  TL_ACT_RELU,
  TL_ACT_CLIP,        /* a = min, b = max */
  TL_ACT_HARDSWISH,   /* x * clamp(x/6 + 1/2, 0, 1) */
  TL_ACT_HARDSIGMOID, /* clamp(a*x + b, 0, 1) */
  TL_ACT_SIGMOID
};

struct tl_act_params {
  enum tl_act type;
  float a, b;
};

/* Applies act to x[0..n) in place. */
void tl__act_apply(const struct tl_act_params *act, float *x, int64_t n);

/* y[i] = act(x[i]) for i in [0, n); x == y is allowed (kernel_epilogue.c). */
void tl__act_run(const struct tl_act_params *act, const float *x, float *y, int64_t n);

/* ------------------------------------------------------------- kernels */

/* Hand-vectorized kernels are compiled once per x86-64 level and the best
 * clone is chosen when the library loads (an ifunc), so the binary runs on
 * CPUs without AVX-512 or AVX2; never build core/ with -march=native. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(TL_NO_CLONES)
#define TL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TL_CLONES
#endif

/* --------------------------------------------------------------- params */

/* A GEMM micro-kernel (kernel_gemm.c): computes an mr x nr tile of C. */
struct tl_ukr {
  void (*fn)(void); /* cast back by kernel_gemm.c */
  int mr, nr;
};

/* Strides above this use im2col (the implicit GEMM keeps a plane per phase). */
#define TL_MAX_PHASES 8

/* y = A x for A m x k (row stride lda): split over up to `threads`
 * threads when large (kernel_gemm.c). */
void tl__gemv(const float *a, int64_t lda, int64_t m, int64_t k, const float *x, float *y,
              int threads);

/* Picks the micro-kernel for a GEMM with n output columns; tall allows a
 * taller tile, for A packed as tl__gemm_panels reads it. */
void tl__ukr_pick(int64_t n, int tall, struct tl_ukr *u);

/* C (m x n) = A (m x k) * B, where row kk of B is the n floats at
 * b + boff[kk] and A is packed in panels of u->mr rows: element (i, kk) at
 * a[(i / mr) * mr * k + kk * mr + i % mr] (a last partial panel is read
 * as mr rows of stride mr).  n must be a multiple of u->nr (pad B, C). */
void tl__gemm_panels(const struct tl_ukr *u, int64_t m, int64_t n, int64_t k, const float *a,
                     const float *b, const int32_t *boff, float *c, int64_t ldc);

enum tl_conv_kind {
  TL_CONV_GEMM,
  TL_CONV_1X1,
  TL_CONV_DEPTHWISE,
  TL_CONV_REF,
  TL_CONV_IGEMM,
  TL_CONV_WINOGRAD
};

struct tl_conv_params {
  enum tl_conv_kind kind;
  int64_t n, c, h, w; /* input (n, c, h, w) */
  int64_t m, oh, ow;  /* output (n, m, oh, ow) */
  int64_t kh, kw, sh, sw, dh, dw;
  int64_t pt, pl; /* top and left padding (bottom/right are implied) */
  int64_t group;
  const float *weight; /* (m, c/group, kh, kw): m rows of ldw floats */
  int64_t ldw;         /* >= (c/group)*kh*kw; larger for a channel slice */
  /* Epilogue, per output channel k: y = act2(act1(acc*scale[k] + shift[k])
   * + residual).  scale NULL means 1, shift NULL means 0. */
  const float *scale; /* (m) */
  const float *shift; /* (m) */
  struct tl_act_params act1, act2;
  int has_bias; /* step input 2 is the conv's bias */
  int has_res;  /* step input res_index is the residual, shaped like y */
  int res_index;
  int64_t nb; /* GEMM kinds: output columns per block (im2col, epilogue) */
  int nt;     /* threads the step's scratch has room for */
  /* TL_CONV_IGEMM (kernel_gemm.c): micro-kernel, padded phase planes. */
  struct tl_ukr g_ukr;
  struct tl_ukr g_narrow; /* for last panels of at most 16 columns */
  int64_t g_gemv_cols;    /* last columns done as matrix-vector products */
  int g_direct;           /* 1x1, stride 1, no padding: B is the input itself */
  int64_t g_hq, g_wq;     /* a phase plane: hq rows of wq floats (the grid's width) */
  int64_t g_plane;        /* hq * wq */
  int64_t g_nph;          /* planes per input channel */
  int8_t g_phase_y[TL_MAX_PHASES], g_phase_x[TL_MAX_PHASES]; /* phase -> plane, or -1 */
  const int32_t *g_boff; /* (2*kdim): B row offsets into the planes; then k*nr */
  /* TL_CONV_WINOGRAD (kernel_winograd.c): F(4x4, 3x3). */
  const float *w_u; /* (36, m, c) transformed weights, plan-owned, from
                       weight/ldw as they were at prepare */
  struct tl_ukr w_ukr;
  int64_t w_th, w_tw;    /* tile rows and columns (4 x 4 outputs each) */
  int64_t w_twp;         /* tw rounded up to the transforms' vector length */
  int64_t w_rows;        /* tile rows per group */
  int64_t w_ntp;         /* columns of V and M: a group's tiles, rounded to nr */
  const int32_t *w_boff; /* (c): ci * w_ntp */
  /* An expansion 1x1 conv with the depthwise conv after it fused in
   * (kernel_expand_dw.c): the depthwise conv's parameters, plan-owned. */
  const struct tl_conv_params *x_dw;
  int64_t x_band;     /* depthwise output rows per band */
  int64_t x_rows_cap; /* expanded rows a share's buffer holds */
  int x_nt;           /* shares (the scratch's layout) */
  /* Collect mode on a conv without BatchNormalization, or NULL. */
  struct tl_conv_collect *collect;
};

struct tl_step;

/* The epsilon of the statistics convs without BN get, as BN's default. */
#define TL_STATS_EPS 1e-5

/* Recalibration of a conv that has no BatchNormalization after it (a
 * folded export): the step runs the conv (run), then records the batch's
 * per-channel mean and unbiased variance of its output (before any
 * activation) and, when the full model's statistics are given, maps the
 * output onto them as a BN would: y = (y - mean) / sd * ref_sd + ref_mean.
 * Plan-owned. */
struct tl_conv_collect {
  void (*run)(const struct tl_step *step, void *scratch);
  const float *ref_mean, *ref_var; /* (m) or NULL: record only */
  double *sum_mean, *sum_var;      /* (m) */
  int batches;
};

/* The conv epilogue on output channels [k0, k0+nk) of one image, each
 * `rows` rows of n elements: element (k, r, i) is src[k*src_ch + r*src_row
 * + i] and likewise in y and in res (which has y's strides), and becomes
 *     y = act2(act1(src*scale[k0+k] + shift[k0+k]) + res).
 * src == y is allowed; res may be NULL; shift is the conv's BN shift or
 * bias (NULL for 0).  kernel_epilogue.c. */
void tl__conv_epilogue(const struct tl_conv_params *p, const float *shift, int64_t k0, int64_t nk,
                       int64_t rows, int64_t n, const float *src, int64_t src_ch, int64_t src_row,
                       float *y, int64_t y_ch, int64_t y_row, const float *res);

/* Implicit-GEMM conv (kernel_gemm.c), for any non-depthwise conv.
 * prepare fills p->g_* and the scratch size; TL_EUNSUPPORTED when the
 * shapes are too large for it (use im2col), TL_ENOMEM.  run computes the
 * whole step, epilogue included. */
struct tl_prep;
struct tl_supernet;
int tl__gemm_conv_prepare(struct tl_prep *c, struct tl_conv_params *p, size_t *scratch);
void tl__gemm_conv_run(const struct tl_conv_params *p, const float *x, const float *w,
                       const float *shift, const float *res, float *y, void *scratch);

/* One share's piece of a direct (1x1, stride 1, unpadded) implicit-GEMM
 * conv p on one image (group 0), on this thread: output channels [m0, m1)
 * of columns [col0, col0 + ncols), epilogue included, into c (channel m0
 * column col0 first, channels ldc floats apart).  scratch holds
 * tl__gemm_thread_bytes(p). */
void tl__gemm_1x1_cols(const struct tl_conv_params *p, const float *x, const float *w,
                       const float *shift, int64_t col0, int64_t ncols, int64_t m0, int64_t m1,
                       float *c, int64_t ldc, void *scratch);
size_t tl__gemm_thread_bytes(const struct tl_conv_params *p);

/* A direct 1x1 conv e followed by depthwise conv d on e's output, as one
 * step (kernel_expand_dw.c).  prepare: TL_EUNSUPPORTED unless e is a
 * group-1 direct implicit GEMM and d a multiplier-1 depthwise conv with
 * constant weights, neither with a residual; fills e->x_* and the scratch
 * size.  run: input x, e's weights w, the two convs' shifts (BN or bias),
 * output y (d's). */
int tl__expand_dw_prepare(struct tl_conv_params *e, struct tl_conv_params *d, size_t *scratch);
void tl__expand_dw_run(const struct tl_conv_params *e, const struct tl_conv_params *d,
                       const float *x, const float *w, const float *shift_e, const float *shift_d,
                       float *y, void *scratch);

/* Winograd F(4x4, 3x3) conv (kernel_winograd.c) for 3x3 stride-1 convs
 * where it pays: prepare transforms the weights into plan-owned memory
 * (36 * m * c floats) and fills p->w_*; TL_EUNSUPPORTED when the conv is
 * not one it takes.  run computes the step, epilogue included. */
int tl__winograd_prepare(struct tl_prep *c, struct tl_conv_params *p, size_t *scratch);
void tl__winograd_run(const struct tl_conv_params *p, const float *x, const float *shift,
                      const float *res, float *y, void *scratch);

struct tl_pool_params {
  int64_t n, c, h, w, oh, ow;
  int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  int count_include_pad;
  int storage_order; /* MaxPool Indices: 0 row major, 1 column major */
  int nt;            /* threads the step's scratch has room for */
};

/* Elementwise binary op with numpy broadcasting over the output's dims. */
struct tl_binary_params {
  int ndim;
  int64_t dims[TL_MAX_DIMS];    /* output */
  int64_t astride[TL_MAX_DIMS]; /* element strides of input 0, 0 = broadcast */
  int64_t bstride[TL_MAX_DIMS];
  int same;      /* both inputs have the output's shape */
  int64_t inner; /* b is a per-"channel" vector: see op_eltwise.c */
  int64_t channels;
};

struct tl_gemm_params {
  int64_t m, n, k;
  int trans_a, trans_b;
  float alpha, beta;
  int64_t lda, ldb;
  int64_t c_rs, c_cs; /* C's row/column strides (broadcast = 0) */
  int has_c;
  int reference; /* sgemm even for one row */
  int nt;        /* threads of the plan (the one-row product splits over them) */
};

struct tl_matmul_params {
  int64_t m, n, k;
  int batch_ndim;
  int64_t batch[TL_MAX_DIMS];
  int64_t abatch_stride[TL_MAX_DIMS], bbatch_stride[TL_MAX_DIMS];
  int64_t nbatch;
};

struct tl_concat_params {
  int64_t outer; /* product of dims before the axis */
  int64_t inner; /* product of dims after the axis */
};

struct tl_softmax_params {
  int64_t outer, len, inner;
};

struct tl_gather_params {
  int64_t outer, axis_len, inner, n_idx;
  int idx_dtype;
};

struct tl_unary_params {
  struct tl_act_params act;
  const float *scale, *shift; /* BatchNormalization outside a conv */
  int64_t channels, inner;
  /* BatchNormalization: statistics that replace inputs 3 and 4 (a
   * subnet's recalibrated ones), or NULL; and in collect mode the sums of
   * the batches' means and unbiased variances (plan-owned), and their
   * count. */
  const float *mean, *var;
  double *sum_mean, *sum_var;
  int *batches;
};

/* A sliding window over one channel plane (kernel_window.c): input h x w,
 * output oh x ow, window kh x kw, strides, dilations, top/left padding. */
struct tl_window {
  int64_t h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl;
};

/* What a window step split over nt threads needs in scratch. */
size_t tl__window_scratch_bytes(const struct tl_window *win, int nt);

/* Depthwise conv p (all images and channels, channel multipliers too)
 * over win, epilogue included: input x, weights w (rows of p->ldw),
 * residual res or NULL, output y. */
void tl__dw_run(const struct tl_conv_params *p, const struct tl_window *win, const float *x,
                const float *w, const float *shift, const float *res, float *y, void *scratch);

/* Channels [c0, c1) of depthwise conv p (weights p->weight, multiplier 1)
 * on one image, on this thread, over window win (which may be a band of
 * rows): x holds channel c0's plane first, planes xs floats apart; y is
 * channel 0's plane, planes ys apart; scratch as
 * tl__window_scratch_bytes(win, 1).  No residual. */
void tl__dw_band(const struct tl_conv_params *p, const struct tl_window *win, const float *x,
                 int64_t xs, const float *shift, float *y, int64_t ys, void *scratch, int64_t c0,
                 int64_t c1);

/* Max pooling of nc channel planes over win, split over up to nt threads
 * (scratch sized for nt); padding never wins. */
void tl__maxpool_run(const struct tl_window *win, int64_t nc, int nt, const float *x, float *y,
                     void *scratch);

/* ---------------------------------------------------------------- steps */

struct tl_step;
typedef void (*tl_run_fn)(const struct tl_step *step, void *scratch);

struct tl_step {
  enum tl_op op;
  tl_run_fn run;
  int node;      /* index of the (first) graph node it computes */
  char kind[96]; /* "Conv+BatchNormalization+Relu", for --per-op */
  int n_in, n_out;
  int *in_val, *out_val;      /* plan value indices, -1 for absent */
  struct tl_tensor *in, *out; /* shapes at prepare; data bound at layout */
  size_t scratch_bytes;       /* what run needs in the shared scratch buffer */
  int64_t macs;
  union {
    struct tl_conv_params conv;
    struct tl_pool_params pool;
    struct tl_binary_params bin;
    struct tl_gemm_params gemm;
    struct tl_matmul_params matmul;
    struct tl_concat_params concat;
    struct tl_softmax_params softmax;
    struct tl_gather_params gather;
    struct tl_unary_params unary;
  } p;
};

/* Memory that lives as long as its owner (a plan): blocks freed together
 * by tl__mem_free (mem.c). */
struct tl_mem_block;
struct tl_mem {
  struct tl_mem_block *blocks;
  size_t bytes; /* allocated, block headers included */
};

/* Alignment of a plan's arena and scratch, in bytes. */
#define TL_ARENA_ALIGN 64

/* What a prepare function gets.  in[] of the step have dtype and shape
 * set, and data set for constants; prepare fills out[] shapes and dtypes,
 * sets step->run, and may mark the outputs constant (filling their data
 * from tl__mem_alloc(c->mem)) by setting out_const. */
struct tl_prep {
  const struct tl_graph *g;
  const struct tl_node *node;
  struct tl_step *step;
  struct tl_mem *mem; /* the plan's: what prepare allocates lives as long */
  int threads;        /* the plan's thread count: kernels split over at most this */
  struct tl_error *err;
  int reference; /* use reference kernels */
  /* Conv only: when its weights are a view into a larger tensor (a
   * SuperNet's channel slice), the floats between the starts of two
   * output channels' rows; 0 when compact.  Must be set before prepare:
   * Winograd reads the weights through it then, to transform them. */
  int64_t weight_ldw;
  const struct tl_plan_view *view; /* a subnet's view, or NULL */
  int64_t group_override;          /* Conv: group to use instead of the attribute */
  int out_const;
  char label[160]; /* `model.onnx: node "x" (Conv)` */
};

typedef int (*tl_prepare_fn)(struct tl_prep *c);

/* The prepare function of op from the op table, or NULL (Constant, which
 * the loader turns into values) (op.c). */
tl_prepare_fn tl__op_prepare(enum tl_op op);

/* Fails with "<label>: <message>". */
int tl__prep_fail(struct tl_prep *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Zeroed memory that lives until tl__mem_free(mem); NULL when out of
 * memory.  tl__mem_free frees all of it and leaves mem empty (mem.c). */
void *tl__mem_alloc(struct tl_mem *mem, size_t bytes);
void tl__mem_free(struct tl_mem *mem);

/* Attribute readers: absent -> *out = def and 0; wrong type -> error. */
int tl__attr_int(struct tl_prep *c, const char *name, int64_t def, int64_t *out);
int tl__attr_float(struct tl_prep *c, const char *name, float def, float *out);
/* *out = NULL and *n = 0 when absent. */
int tl__attr_ints(struct tl_prep *c, const char *name, const int64_t **out, int *n);
/* *out = def when absent. */
int tl__attr_string(struct tl_prep *c, const char *name, const char *def, const char **out);

/* Requires input i to be present and of a float type. */
int tl__need_float(struct tl_prep *c, int i);

/* Reads a constant int64/int32 tensor input into at most max values. */
int tl__const_ints(struct tl_prep *c, int i, int64_t *vals, int max, int *n);

/* Reads kernel_shape/strides/dilations/pads/auto_pad, shared by Conv and
 * the pools, and computes the output size of an h x w input.  kh, kw are
 * the kernel from the weights, or -1 to take kernel_shape.  pads are
 * (top, left, bottom, right) after auto_pad. */
int tl__spatial_attrs(struct tl_prep *c, int64_t h, int64_t w, int64_t *kh, int64_t *kw,
                      int ceil_mode, int64_t out[2], int64_t strides[2], int64_t dils[2],
                      int64_t pads[4]);

/* Prepare functions, one per op (op_*.c). */
int tl__prepare_conv(struct tl_prep *c);
int tl__prepare_batchnorm(struct tl_prep *c);
int tl__prepare_unary(struct tl_prep *c);  /* Relu, Clip, HardSwish, HardSigmoid, Sigmoid */
int tl__prepare_binary(struct tl_prep *c); /* Add, Sub, Mul, Div */
int tl__prepare_pool(struct tl_prep *c);   /* MaxPool, AveragePool */
int tl__prepare_global_avgpool(struct tl_prep *c);
int tl__prepare_gemm(struct tl_prep *c);
int tl__prepare_matmul(struct tl_prep *c);
int tl__prepare_concat(struct tl_prep *c);
int tl__prepare_softmax(struct tl_prep *c);
int tl__prepare_reshape(
    struct tl_prep *c); /* Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout */
int tl__prepare_shape(struct tl_prep *c);
int tl__prepare_gather(struct tl_prep *c);
int tl__prepare_resize(struct tl_prep *c); /* bilinear, half-pixel centres (kernel_resize.c) */

/* Run function of the view ops: outputs alias input 0 (no work). */
void tl__run_alias(const struct tl_step *s, void *scratch);

/* Reads the activation a node computes, for fusing it into a conv: 1 and
 * *act filled if node is Relu/Clip(constant bounds)/HardSwish/HardSigmoid/
 * Sigmoid on float data, else 0. */
int tl__act_from_node(struct tl_prep *c, const struct tl_node *node, struct tl_act_params *act);

/* If value v feeds exactly a HardSigmoid(alpha 1/6, beta 1/2) and a Mul
 * of v by that HardSigmoid's output (nothing else reading either), which
 * is how exporters write HardSwish: returns the Mul's node index and sets
 * *hsig to the HardSigmoid's; else -1.  For fusing into a conv. */
int tl__hardswish_pattern(const struct tl_graph *g, int v, int *hsig);

/* Fuses the depthwise conv that is the only reader of value *cur (the
 * output of the conv step c prepares), and the BatchNormalization and
 * activation after it, into that step when tl__expand_dw_prepare takes
 * them: 1 and *cur, absorbed[] and the step updated, 0 and nothing
 * changed, or TL_ENOMEM (an error: a plan does not come out otherwise for
 * lack of memory).  consumer[v] is a value's first consumer. */
int tl__conv_fuse_dw(struct tl_prep *c, const int *consumer, char *absorbed, int *cur);

/* Folds BatchNormalization node bn (constant parameters) into the conv
 * step's epilogue; 0 on success, TL_EUNSUPPORTED if it cannot be fused,
 * TL_ENOMEM. */
int tl__conv_fuse_bn(struct tl_prep *c, const struct tl_node *bn);

/* Frees a node's allocations and zeroes it (graph.c). */
void tl__node_clear(struct tl_node *n);

/* Drops the nodes tl__node_clear() emptied, keeping the others' order
 * and their outputs' producer indices right (graph.c). */
void tl__graph_compact(struct tl_graph *g);

/* Gives constant v data of its own before it is rewritten in place: a copy
 * when another value shares its data (see tl__graph_normalize), and the
 * original stays with the others.  0 or TL_ENOMEM (v unchanged) (graph.c). */
int tl__value_unshare(struct tl_graph *g, int v);

/* Whether value v (-1 allowed) holds constant data (graph.c). */
int tl__value_is_const(const struct tl_graph *g, int v);

/* Rewrites what exporters emit into the form the rest of core/ reads
 * (normalize.c): an Identity or Dropout of a constant becomes a constant
 * that shares the data, and a constant read by several nodes becomes one
 * value per node, all sharing one copy of the data, so that each node's
 * weights are its own value.  Run once by the loader, after Constant nodes
 * became values and consumers were counted.  0, or TL_ENOMEM with err set. */
int tl__graph_normalize(struct tl_graph *g, struct tl_error *err);

/* A subnet seen as a view of the full graph (subnet_plan.c builds it; the
 * plan honours it).  Arrays are indexed by node or value of the graph. */
struct tl_plan_view {
  const uint8_t *skip;         /* (nodes) 1: not computed */
  const int *alias;            /* (values) a skipped block's output reads this value, or -1 */
  const int64_t *conv_out;     /* (nodes) output channels a conv keeps; 0 = all */
  int sliced;                  /* weights may be wider than their input */
  const float *const *bn_mean; /* (nodes) recalibrated BN statistics, or NULL */
  const float *const *bn_var;
  int collect_bn; /* BN normalizes by batch statistics and records them */
  /* Convs without BN (a folded export) get statistics too: in collect
   * mode each records its output's (collect_conv) and maps it onto the
   * full model's (conv_ref_*, per node, or NULL to record only); outside
   * it, bn_mean/bn_var of a conv node hold the map (see calib.c). */
  int collect_conv;
  const float *const *conv_ref_mean;
  const float *const *conv_ref_var;
  int resize_h, resize_w; /* input resized to this side first; 0 = native */
  void *mem;              /* what subnet_plan.c allocated for the arrays */
};

/* The view a plan of spec takes (what tl_subnet_plan builds with, bn the
 * statistics or NULL); free(view->mem) after.  0 or TL_ENOMEM
 * (subnet_plan.c). */
struct tl_subnet_spec;
struct tl_bn_stats;
int tl__subnet_view(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                    const struct tl_bn_stats *bn, struct tl_plan_view *view);

/* ---------------------------------------------------------------- plans */

/* A value as one plan sees it. */
struct tl_plan_value {
  enum tl_dtype dtype;
  struct tl_shape shape;
  void *data; /* constants: the graph's or plan-owned */
  int is_const;
  int defined;     /* a runtime input or the output of an earlier step */
  int root;        /* the value whose buffer this one uses (itself if owner) */
  int first, last; /* steps that define and last use the buffer (roots) */
  size_t offset;   /* into the arena (roots) */
};

/* A plan (plan.h): plan.c builds and runs it, plan_info.c describes it. */
struct tl_plan {
  const struct tl_graph *g;
  int n_vals;
  struct tl_plan_value *vals;
  int n_steps, cap_steps;
  struct tl_step *steps;
  int n_inputs, n_outputs;
  struct tl_tensor *inputs, *outputs; /* bound descriptors */
  int *input_vals, *output_vals;
  void *arena;
  size_t arena_bytes;
  void *scratch;
  size_t scratch_bytes;
  struct tl_mem mem; /* plan-owned: steps' parameters, BN vectors, ... */
  int threads;       /* the engine's thread count when the plan was built */
  int64_t macs;
  int64_t weight_elems;
  int resized; /* value that holds the resized input (view->resize_*), or -1 */
};

/* The shape value v has in plan (a subnet's sliced channels, its
 * resolution), or NULL if the plan never defines it (plan.c). */
const struct tl_shape *tl__plan_value_shape(const struct tl_plan *plan, int v);

/* The SuperNet's graph (supernet.c). */
const struct tl_graph *tl__supernet_graph(const struct tl_supernet *sn);

/* The full model's conv statistics on one calibration set (key names the
 * images, the batch and the count), which recalibration matches convs
 * without BN to (calib.c).  The SuperNet keeps each set's for its whole
 * life: the first caller for a key runs measure(sn, arg, &stats, err)
 * while others wait, later ones get the kept record.  0 and *out
 * (owned by sn), or measure's error (supernet.c). */
int tl__supernet_conv_ref(const struct tl_supernet *sn, uint64_t key,
                          int (*measure)(const struct tl_supernet *sn, void *arg,
                                         struct tl_bn_stats **stats, struct tl_error *err),
                          void *arg, const struct tl_bn_stats **out, struct tl_error *err);

/* Weights a plan reads, in elements (plan.c). */
int64_t tl__plan_weight_elems(const struct tl_plan *plan);

/* In a collect-mode plan, the sums BN node `node` recorded: 1 and the
 * pointers if it ran, else 0.  channels is how many it saw (plan.c). */
int tl__plan_bn_collected(const struct tl_plan *plan, int node, const double **sum_mean,
                          const double **sum_var, int *batches, int64_t *channels);

/* Bilinear resize of NCHW planes with half-pixel centres, as PyTorch's
 * interpolate(mode="bilinear", align_corners=False) (kernel_resize.c).
 * The step's pool params give n, c, h, w, oh, ow. */
void tl__run_resize(const struct tl_step *s, void *scratch);

/* The engine's thread pool (kernel_parallel.c).  tl__parallel_set_threads
 * sets the engine's thread count (n >= 1), which tl__parallel_max_threads
 * returns and plans take when they are built.  tl__parallel_reserve
 * makes sure n - 1 workers exist (plan build time; TL_ENOMEM if some
 * could not start: sections then use fewer).  tl__parallel_threads is the
 * number of shares a section should have now: at most want, the engine's
 * thread count and 1 + the workers.  tl__parallel_run calls fn(ctx, i, n)
 * for every i in [0, n), share 0 on the calling thread, and returns when
 * all are done; it never allocates. */
void tl__parallel_set_threads(int n);
int tl__parallel_max_threads(void);
int tl__parallel_reserve(int n);
int tl__parallel_threads(int want);
void tl__parallel_run(int n, void (*fn)(void *ctx, int i, int n), void *ctx);

/* The share of a step's work its busiest thread does at n threads, from
 * the partition rules the kernels use: 1 when the kernel keeps the step
 * on one thread (or its work does not divide), 1/n for an even split.
 * tl__chunk_busiest is the rule most kernels share: units split as
 * [units*i/n, units*(i+1)/n). */
double tl__chunk_busiest(int64_t units, int n);
double tl__gemv_busiest(int64_t m, int64_t k, int n);
double tl__gemm_conv_busiest(const struct tl_conv_params *p, int n);
double tl__winograd_busiest(const struct tl_conv_params *p, int n);
double tl__expand_dw_busiest(const struct tl_conv_params *e, int n);

#endif
