/*
 * test_corpus.c - the SuperNet compiler on torchvision models exported the
 * ways users export them.
 *
 * scripts/make-corpus.py (Debian's python3-torch and torchvision, fixed
 * seeds, random weights, 10 classes, 1x3x64x64) writes seven
 * architectures, each exported six ways: torch.onnx.export's defaults at
 * opset 13 (BatchNorm folded into the convs), the same for the model as
 * torchvision builds it (untrained, so equal tensors are shared through
 * Identity nodes), TrainingMode.PRESERVE (BatchNorm kept), a dynamic batch
 * axis, and the defaults at opsets 11 and 17.  The files take more than a
 * gigabyte, so they are made when missing rather than committed, once for
 * the release and the sanitizer builds together (see find_corpus_dir).
 *
 * Every file must load as the export its name says, show elastic depth,
 * width and resolution, reproduce PyTorch's output with its largest subnet
 * (max abs error <= 1e-3 x max |ref|) and run its smallest and 10 random
 * subnets to finite outputs.  The two plain default exports must also have
 * a width group in every residual block that has internal channels, both
 * as the library reports it and as `tailorctl inspect --json` does.
 */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "supernet.h"
#include "testutil.h"

static const char *const archs[] = {
    "resnet18",        "resnet34",       "mobilenet_v2",    "mobilenet_v3_large",
    "efficientnet_b0", "regnet_x_400mf", "resnext50_32x4d",
};
static const char *const variants[] = {
    "default", "untrained", "preserve", "dynbatch", "opset11", "opset17",
};
/* The variants that are torch.onnx.export(model, x, path, opset_version=13)
 * and nothing else: the first two of variants[]. */
#define N_DEFAULT_VARIANTS 2
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))
#define N_FILES (N_ARCHS * N_VARIANTS)

#define SIDE 64 /* the corpus's input side */
#define N_CLASSES 10
#define N_RANDOM 10 /* random subnets run per file */
#define RANDOM_SEED 20240613u

static char corpus_dir[PATH_MAX];
static char tailorctl[PATH_MAX + 32];
static int corpus_status = -1; /* make-corpus.py's exit status; -1: not run */

struct corpus_file {
  const char *arch, *variant;
  char name[96]; /* "resnet18.default.onnx", for messages */
  char path[PATH_MAX + 128];
};

static void corpus_file(const char *arch, const char *variant, struct corpus_file *f) {
  f->arch = arch;
  f->variant = variant;
  snprintf(f->name, sizeof f->name, "%s.%s.onnx", arch, variant);
  snprintf(f->path, sizeof f->path, "%s/%s", corpus_dir, f->name);
}

/* Loop index i over every file, and over the default exports only. */
static void any_file(int i, struct corpus_file *f) {
  corpus_file(archs[i / N_VARIANTS], variants[i % N_VARIANTS], f);
}

static void default_file(int i, struct corpus_file *f) {
  corpus_file(archs[i / N_DEFAULT_VARIANTS], variants[i % N_DEFAULT_VARIANTS], f);
}

/* What to add to a message about a missing or unreadable file. */
static const char *corpus_hint(void) {
  static char hint[128];
  if (corpus_status == 0)
    return "";
  snprintf(hint, sizeof hint, " (scripts/make-corpus.py %s; its output is above)",
           corpus_status < 0 ? "could not be run" : "failed");
  return hint;
}

/* ----------------------------------------------------------- helpers */

static struct tl_graph *load(const struct corpus_file *f) {
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_onnx_load(f->path, &g, &err) == 0, "%s: load: %s%s", f->name, err.msg,
                corpus_hint());
  return g;
}

static struct tl_supernet *compile(const struct corpus_file *f, struct tl_graph *g) {
  struct tl_supernet *sn = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_supernet_build(g, NULL, &sn, &err) == 0, "%s: tl_supernet_build: %s", f->name,
                err.msg);
  return sn;
}

/* The corpus's fixed input, or PyTorch's output for the model f came from
 * (the untrained model's own for the untrained export). */
static struct tl_tensor read_npy(const struct corpus_file *f, const char *what) {
  char path[PATH_MAX + 128];
  int untrained_output = strcmp(what, "output") == 0 && strcmp(f->variant, "untrained") == 0;
  snprintf(path, sizeof path, "%s/%s%s.%s.npy", corpus_dir, f->arch,
           untrained_output ? ".untrained" : "", what);
  struct tl_tensor t;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_read(path, &t, &err) == 0, "%s: %s%s", f->name, err.msg, corpus_hint());
  ck_assert_msg(t.dtype == TL_DTYPE_FLOAT32, "%s: %s is not float32", f->name, path);
  return t;
}

/* Plans spec, runs it on x and returns the output; the plan goes to *p. */
static const struct tl_tensor *run_subnet(const struct corpus_file *f, const struct tl_supernet *sn,
                                          const struct tl_subnet_spec *spec,
                                          const struct tl_tensor *x, struct tl_plan **p) {
  char text[512];
  struct tl_error err = {{0}};
  tl_subnet_format(sn, spec, text, sizeof text);
  ck_assert_msg(tl_subnet_plan(sn, spec, NULL, p, &err) == 0, "%s: subnet \"%s\": plan: %s",
                f->name, text, err.msg);
  ck_assert_msg(tl_plan_n_inputs(*p) == 1 && tl_plan_n_outputs(*p) >= 1,
                "%s: subnet \"%s\": %d inputs, %d outputs", f->name, text, tl_plan_n_inputs(*p),
                tl_plan_n_outputs(*p));
  struct tl_tensor *in = tl_plan_input(*p, 0);
  char want[64], got[64];
  ck_assert_msg(tl_shape_equal(&in->shape, &x->shape), "%s: subnet \"%s\": input %s, not %s",
                f->name, text, tl_shape_str(&in->shape, got, sizeof got),
                tl_shape_str(&x->shape, want, sizeof want));
  memcpy(in->data, x->data, (size_t)tl_shape_numel(&x->shape) * sizeof(float));
  tl_plan_run(*p);
  return tl_plan_output(*p, 0);
}

static int count_op(const struct tl_graph *g, enum tl_op op) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    n += g->nodes[i].op == op;
  return n;
}

/* ------------------------------------------- residual blocks, by graph */

/*
 * Which blocks must hold a width group cannot come from the SuperNet: it
 * reports only the blocks it found, so a compiler that finds none would
 * pass.  The graph is read here on its own, without the compiler and
 * without knowing the model:
 *
 *  - Every Add of two values computed from the input closes a block.  Its
 *    nodes are those leading to one of the Add's inputs but not to the
 *    other (a node leading to both is upstream of where the paths part):
 *    the residual branch and, in a projection block, the shortcut's conv.
 *    Weights and nodes that only compute constants (the exporter's
 *    Identity over an initializer) are not part of any block.
 *  - The block has internal channels when one of its convs with group 1
 *    feeds another of its convs through nodes of the block.  (A grouped or
 *    depthwise conv's channels are tied to its input's, so it cannot be
 *    where they start: MobileNetV3's first block, depthwise then project,
 *    has none.)
 *  - A width group is in the block when both its producing and its
 *    consuming conv are nodes of the block.
 *
 * Blocks with no Add (MobileNet's strided blocks) cannot be told from the
 * chain around them without knowing the model; they are not counted here.
 */

struct block_scan {
  const struct tl_graph *g;
  char *live;  /* (n_nodes) the node reads the runtime input, directly or not */
  char *a, *b; /* (n_nodes) ancestors of each side of an Add */
  int *stack;  /* (n_nodes) */
};

static void *zalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  ck_assert_msg(p != NULL, "out of memory");
  return p;
}

static void scan_init(struct block_scan *s, const struct tl_graph *g) {
  s->g = g;
  s->live = zalloc((size_t)g->n_nodes, 1);
  s->a = zalloc((size_t)g->n_nodes, 1);
  s->b = zalloc((size_t)g->n_nodes, 1);
  s->stack = zalloc((size_t)g->n_nodes, sizeof *s->stack);
  char *live_value = zalloc((size_t)g->n_values, 1);
  for (int i = 0; i < g->n_inputs; i++)
    live_value[g->inputs[i]] = 1;
  for (int i = 0; i < g->n_nodes; i++) { /* topological order */
    const struct tl_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_in && !s->live[i]; k++)
      s->live[i] = n->in[k] >= 0 && live_value[n->in[k]];
    for (int k = 0; s->live[i] && k < n->n_out; k++)
      if (n->out[k] >= 0)
        live_value[n->out[k]] = 1;
  }
  free(live_value);
}

static void scan_free(struct block_scan *s) {
  free(s->live);
  free(s->a);
  free(s->b);
  free(s->stack);
}

/* Marks in mark[] every live node that value v depends on. */
static void mark_ancestors(struct block_scan *s, int v, char *mark) {
  const struct tl_graph *g = s->g;
  memset(mark, 0, (size_t)g->n_nodes);
  int top = 0, p = g->values[v].producer;
  if (p >= 0 && s->live[p]) {
    mark[p] = 1;
    s->stack[top++] = p;
  }
  while (top > 0) {
    const struct tl_node *n = &g->nodes[s->stack[--top]];
    for (int k = 0; k < n->n_in; k++) {
      int q = n->in[k] >= 0 ? g->values[n->in[k]].producer : -1;
      if (q >= 0 && s->live[q] && !mark[q]) {
        mark[q] = 1;
        s->stack[top++] = q; /* each node once: the stack cannot overflow */
      }
    }
  }
}

static int in_block(const struct block_scan *s, int node) {
  return node >= 0 && s->a[node] != s->b[node];
}

static int conv_group(const struct tl_node *n) {
  const struct tl_attr *a = tl_node_attr(n, "group");
  return a != NULL && a->type == TL_ATTR_INT ? (int)a->i : 1;
}

/* A conv of the block with group 1 that feeds conv c2 through nodes of
 * the block, or -1. */
static int internal_producer(struct block_scan *s, int c2) {
  const struct tl_graph *g = s->g;
  char *seen = zalloc((size_t)g->n_nodes, 1);
  int top = 0, found = -1;
  s->stack[top++] = c2;
  seen[c2] = 1;
  while (top > 0 && found < 0) {
    const struct tl_node *n = &g->nodes[s->stack[--top]];
    for (int k = 0; k < n->n_in && found < 0; k++) {
      int q = n->in[k] >= 0 ? g->values[n->in[k]].producer : -1;
      if (!in_block(s, q) || seen[q])
        continue;
      seen[q] = 1;
      if (g->nodes[q].op == TL_OP_CONV && conv_group(&g->nodes[q]) == 1)
        found = q;
      else
        s->stack[top++] = q;
    }
  }
  free(seen);
  return found;
}

static int node_named(const struct tl_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0)
      return i;
  return -1;
}

/* Fails unless every residual block of g with internal channels holds one
 * of the n width groups, given by the names of their producing and
 * consuming convs (as `source` reported them). */
static void check_width_group_in_every_block(const struct corpus_file *f, const struct tl_graph *g,
                                             int n, const char *const *producer,
                                             const char *const *consumer, const char *source) {
  /* Width groups name their convs: names must say which node they mean.
   * (One assert at the end: each ck_assert costs a write to check.) */
  int unnamed = -1, twice = -1;
  for (int i = 0; i < g->n_nodes && unnamed < 0 && twice < 0; i++) {
    if (g->nodes[i].name[0] == '\0')
      unnamed = i;
    for (int j = 0; j < i && twice < 0; j++)
      if (strcmp(g->nodes[i].name, g->nodes[j].name) == 0)
        twice = i;
  }
  ck_assert_msg(unnamed < 0, "%s: node %d has no name", f->name, unnamed);
  ck_assert_msg(twice < 0, "%s: two nodes are called \"%s\"", f->name,
                twice < 0 ? "" : g->nodes[twice].name);
  int *prod = zalloc((size_t)n, sizeof *prod), *cons = zalloc((size_t)n, sizeof *cons);
  for (int i = 0; i < n; i++) {
    prod[i] = node_named(g, producer[i]);
    cons[i] = node_named(g, consumer[i]);
    ck_assert_msg(prod[i] >= 0 && cons[i] >= 0,
                  "%s: %s names width group %d as \"%s\" -> \"%s\", not nodes of the graph",
                  f->name, source, i, producer[i], consumer[i]);
  }

  struct block_scan s;
  scan_init(&s, g);
  int blocks = 0, with_internal = 0, missing = 0;
  char list[1024] = "";
  size_t used = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const struct tl_node *add = &g->nodes[i];
    if (add->op != TL_OP_ADD || add->n_in != 2 || !s.live[i] || add->in[0] < 0 || add->in[1] < 0)
      continue;
    int p0 = g->values[add->in[0]].producer, p1 = g->values[add->in[1]].producer;
    if (p0 < 0 || p1 < 0 || !s.live[p0] || !s.live[p1])
      continue; /* a bias or a constant added, not two paths meeting */
    blocks++;
    mark_ancestors(&s, add->in[0], s.a);
    mark_ancestors(&s, add->in[1], s.b);
    int c1 = -1, c2 = -1;
    for (int k = 0; k < g->n_nodes && c1 < 0; k++)
      if (in_block(&s, k) && g->nodes[k].op == TL_OP_CONV && (c1 = internal_producer(&s, k)) >= 0)
        c2 = k;
    if (c1 < 0)
      continue;
    with_internal++;
    int has_group = 0;
    for (int w = 0; w < n && !has_group; w++)
      has_group = in_block(&s, prod[w]) && in_block(&s, cons[w]);
    if (has_group)
      continue;
    if (missing++ < 3 && used < sizeof list) {
      int len = snprintf(list + used, sizeof list - used,
                         "%sthe block closed by \"%s\" "
                         "(internal channels \"%s\" -> \"%s\")",
                         used ? "; " : "", add->name, g->nodes[c1].name, g->nodes[c2].name);
      used += len > 0 ? (size_t)len : 0;
    }
  }
  scan_free(&s);
  free(prod);
  free(cons);
  /* Every architecture of the corpus has residual blocks with internal
   * channels: finding none means this reading of the graph went wrong. */
  ck_assert_msg(with_internal > 0, "%s: no residual block with internal channels among %d Adds",
                f->name, blocks);
  ck_assert_msg(missing == 0,
                "%s: %d of %d residual blocks with internal channels have no width group "
                "in %s (%d groups in all): %s%s",
                f->name, missing, with_internal, source, n, list, missing > 3 ? "; ..." : "");
}

/* ------------------------------------------------------------- tests */

START_TEST(every_export_loads_as_the_variant_its_name_says) {
  struct corpus_file f;
  any_file(_i, &f);
  struct tl_graph *g = load(&f);
  int opset = strcmp(f.variant, "opset11") == 0 ? 11 : strcmp(f.variant, "opset17") == 0 ? 17 : 13;
  ck_assert_msg(g->opset == opset, "%s: opset %lld, expected %d", f.name, (long long)g->opset,
                opset);
  int bns = count_op(g, TL_OP_BATCHNORM);
  if (strcmp(f.variant, "preserve") == 0)
    ck_assert_msg(bns > 0, "%s: TrainingMode.PRESERVE left no BatchNormalization", f.name);
  else
    ck_assert_msg(bns == 0, "%s: %d BatchNormalization nodes were not folded", f.name, bns);
  ck_assert_msg(g->n_inputs == 1, "%s: %d runtime inputs", f.name, g->n_inputs);
  const struct tl_shape *in = &g->values[g->inputs[0]].shape;
  char shape[64];
  tl_shape_str(in, shape, sizeof shape);
  ck_assert_msg(in->ndim == 4 && in->dims[1] == 3 && in->dims[2] == SIDE && in->dims[3] == SIDE,
                "%s: input %s, expected Nx3x%dx%d", f.name, shape, SIDE, SIDE);
  if (strcmp(f.variant, "dynbatch") == 0)
    ck_assert_msg(in->dims[0] < 0, "%s: input %s has no symbolic batch", f.name, shape);
  else
    ck_assert_msg(in->dims[0] == 1, "%s: input %s, expected batch 1", f.name, shape);
  tl_graph_free(g);
}
END_TEST

/* Depth: at least one skippable block; width: at least one width group;
 * resolution: sides from half the native one (32) to it (64). */
START_TEST(every_export_has_elastic_depth_width_and_resolution) {
  struct corpus_file f;
  any_file(_i, &f);
  struct tl_graph *g = load(&f);
  struct tl_supernet *sn = compile(&f, g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  int blocks = 0;
  for (int s = 0; s < info.n_stages; s++)
    blocks += info.blocks[s];
  char found[256];
  snprintf(found, sizeof found,
           "%d skippable blocks and %d width groups in %d stages, %d sides from %d to %d", blocks,
           info.n_width_groups, info.n_stages, info.n_res, info.res[0],
           info.res[info.n_res > 0 ? info.n_res - 1 : 0]);
  ck_assert_msg(blocks > 0, "%s: no elastic depth: %s", f.name, found);
  ck_assert_msg(info.n_width_groups > 0, "%s: no elastic width: %s", f.name, found);
  ck_assert_msg(info.n_res > 1 && info.res[0] == SIDE / 2 && info.res[info.n_res - 1] == SIDE,
                "%s: resolution not elastic from %d to %d: %s", f.name, SIDE / 2, SIDE, found);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

START_TEST(every_default_export_has_a_width_group_in_every_block) {
  struct corpus_file f;
  default_file(_i, &f);
  struct tl_graph *g = load(&f);
  struct tl_supernet *sn = compile(&f, g);
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  int n = info.n_width_groups;
  const char **prod = zalloc((size_t)n, sizeof *prod), **cons = zalloc((size_t)n, sizeof *cons);
  for (int i = 0; i < n; i++) {
    int64_t channels;
    int stage;
    tl_supernet_width_group(sn, i, &prod[i], &cons[i], &channels, &stage);
  }
  check_width_group_in_every_block(&f, g, n, prod, cons, "tl_supernet_build");
  free(prod);
  free(cons);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* Runs `tailorctl inspect --json model` with stdout and stderr into files;
 * returns its exit status, or -1 if it did not exit. */
static int run_inspect(const char *model, const char *out, const char *err) {
  pid_t pid = fork();
  ck_assert_msg(pid >= 0, "fork failed");
  if (pid == 0) {
    if (freopen(out, "w", stdout) == NULL || freopen(err, "w", stderr) == NULL)
      _exit(127);
    execl(tailorctl, tailorctl, "inspect", "--json", model, (char *)NULL);
    _exit(127);
  }
  int st;
  ck_assert_msg(waitpid(pid, &st, 0) == pid, "waitpid failed");
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(inspect_json_reports_elastic_depth_and_width_of_every_default_export) {
  struct corpus_file f;
  default_file(_i, &f);
  char out[PATH_MAX], err[PATH_MAX];
  snprintf(out, sizeof out, "%s", tu_tmp_path("inspect.json"));
  snprintf(err, sizeof err, "%s", tu_tmp_path("inspect.err"));
  int status = run_inspect(f.path, out, err);
  if (status != 0) {
    unsigned char *text = tu_read_bytes(err, NULL);
    ck_abort_msg("%s: tailorctl inspect --json exited with %d: %s", f.name, status, text);
  }
  json_error_t jerr;
  json_t *root = json_load_file(out, 0, &jerr);
  ck_assert_msg(root != NULL, "%s: inspect --json: line %d: %s", f.name, jerr.line, jerr.text);
  json_t *depth = json_object_get(json_object_get(root, "elastic"), "depth");
  json_t *width = json_object_get(json_object_get(root, "elastic"), "width");
  json_t *groups = json_object_get(root, "width_groups");
  ck_assert_msg(json_is_boolean(depth) && json_is_boolean(width) && json_is_array(groups),
                "%s: inspect --json has no elastic.depth, elastic.width or width_groups", f.name);
  ck_assert_msg(json_is_true(depth), "%s: inspect --json reports no elastic depth", f.name);
  ck_assert_msg(json_is_true(width), "%s: inspect --json reports no elastic width", f.name);

  int n = (int)json_array_size(groups);
  const char **prod = zalloc((size_t)n, sizeof *prod), **cons = zalloc((size_t)n, sizeof *cons);
  for (int i = 0; i < n; i++) {
    prod[i] = json_string_value(json_object_get(json_array_get(groups, (size_t)i), "producer"));
    cons[i] = json_string_value(json_object_get(json_array_get(groups, (size_t)i), "consumer"));
    ck_assert_msg(prod[i] != NULL && cons[i] != NULL,
                  "%s: inspect --json width group %d has no producer or consumer", f.name, i);
  }
  struct tl_graph *g = load(&f);
  check_width_group_in_every_block(&f, g, n, prod, cons, "tailorctl inspect --json");
  tl_graph_free(g);
  free(prod);
  free(cons);
  json_decref(root);
}
END_TEST

START_TEST(largest_subnet_matches_pytorch) {
  struct corpus_file f;
  any_file(_i, &f);
  struct tl_graph *g = load(&f);
  struct tl_supernet *sn = compile(&f, g);
  struct tl_tensor x = read_npy(&f, "input"), ref = read_npy(&f, "output");
  struct tl_subnet_spec spec;
  tl_subnet_largest(sn, &spec);
  struct tl_plan *p = NULL;
  const struct tl_tensor *y = run_subnet(&f, sn, &spec, &x, &p);
  char want[64], got[64];
  ck_assert_msg(tl_shape_equal(&y->shape, &ref.shape), "%s: largest subnet: output %s, not %s",
                f.name, tl_shape_str(&y->shape, got, sizeof got),
                tl_shape_str(&ref.shape, want, sizeof want));
  double max_ref = 0, max_err = 0;
  int64_t n = tl_shape_numel(&ref.shape), worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double r = ((const float *)ref.data)[i], v = ((const float *)y->data)[i];
    ck_assert_msg(isfinite(v), "%s: largest subnet: output %lld is %g", f.name, (long long)i, v);
    max_ref = fmax(max_ref, fabs(r));
    if (fabs(v - r) > max_err) {
      max_err = fabs(v - r);
      worst = i;
    }
  }
  ck_assert_msg(max_err <= 1e-3 * max_ref,
                "%s: largest subnet: max abs error %.4g (output %lld: %.6g, PyTorch %.6g) "
                "> 1e-3 x max |ref| %.4g",
                f.name, max_err, (long long)worst, (double)((const float *)y->data)[worst],
                (double)((const float *)ref.data)[worst], max_ref);
  tl_plan_free(p);
  free(x.data);
  free(ref.data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* The smallest subnet (every dimension at its least) and N_RANDOM random
 * ones from a fixed seed: each gives N_CLASSES finite numbers. */
START_TEST(smallest_and_random_subnets_run_to_finite_outputs) {
  struct corpus_file f;
  any_file(_i, &f);
  struct tl_graph *g = load(&f);
  struct tl_supernet *sn = compile(&f, g);
  struct tl_tensor x = read_npy(&f, "input");
  uint64_t seed = RANDOM_SEED;
  for (int k = 0; k <= N_RANDOM; k++) {
    struct tl_subnet_spec spec;
    if (k == 0)
      tl_subnet_smallest(sn, &spec);
    else
      tl_subnet_random(sn, &seed, &spec);
    char text[512], shape[64];
    tl_subnet_format(sn, &spec, text, sizeof text);
    struct tl_plan *p = NULL;
    const struct tl_tensor *y = run_subnet(&f, sn, &spec, &x, &p);
    ck_assert_msg(tl_shape_numel(&y->shape) == N_CLASSES, "%s: subnet \"%s\": output %s", f.name,
                  text, tl_shape_str(&y->shape, shape, sizeof shape));
    for (int i = 0; i < N_CLASSES; i++)
      ck_assert_msg(isfinite(((const float *)y->data)[i]), "%s: subnet \"%s\": output %d is %g",
                    f.name, text, i, (double)((const float *)y->data)[i]);
    tl_plan_free(p);
  }
  free(x.data);
  tl_supernet_free(sn);
  tl_graph_free(g);
}
END_TEST

/* ------------------------------------------------------------ corpus */

/* The corpus lives in $TAILOR_CORPUS_DIR when that is set.  Otherwise in
 * the release build's corpus/ ($TAILOR_SOURCE_ROOT/build, the folder
 * scripts/setup makes) when that build exists, so that the sanitizer
 * build's run finds the files the release build's run made instead of
 * making its own gigabyte; else in this build's own corpus/.  Returns 0,
 * or -1 after saying why on stderr. */
static int find_corpus_dir(char *source) {
  char build[PATH_MAX], release[PATH_MAX + 32];
  if (tu_roots("corpus", source, build) != 0)
    return -1;
  snprintf(tailorctl, sizeof tailorctl, "%s/tailorctl/tailorctl", build);
  const char *env = getenv("TAILOR_CORPUS_DIR");
  snprintf(release, sizeof release, "%s/build/build.ninja", source);
  struct stat st;
  if (env != NULL && env[0] != '\0')
    snprintf(corpus_dir, sizeof corpus_dir, "%s", env);
  else if (stat(release, &st) == 0)
    snprintf(corpus_dir, sizeof corpus_dir, "%s/build/corpus", source);
  else
    snprintf(corpus_dir, sizeof corpus_dir, "%s/corpus", build);
  if (strlen(corpus_dir) + 64 >= sizeof corpus_dir) {
    fprintf(stderr, "test_corpus: corpus path too long: %s\n", corpus_dir);
    return -1;
  }
  return 0;
}

/* Runs scripts/make-corpus.py on corpus_dir: it returns at once when the
 * corpus is up to date, and waits for another run making it (a lock). */
static int make_corpus(const char *source) {
  char script[PATH_MAX + 32];
  snprintf(script, sizeof script, "%s/scripts/make-corpus.py", source);
  fprintf(stderr, "test_corpus: /usr/bin/python3 %s %s\n", script, corpus_dir);
  pid_t pid = fork();
  if (pid < 0) {
    perror("test_corpus: fork");
    return -1;
  }
  if (pid == 0) {
    /* The script's progress goes with the test's own log, after ours. */
    fflush(stderr);
    if (dup2(2, 1) < 0)
      _exit(127);
    execl("/usr/bin/python3", "python3", script, corpus_dir, (char *)NULL);
    perror("test_corpus: /usr/bin/python3");
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) != pid) {
    perror("test_corpus: waitpid");
    return -1;
  }
  int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (status != 0)
    fprintf(stderr, "test_corpus: make-corpus.py failed with status %d\n", status);
  return status;
}

int main(void) {
  char source[PATH_MAX];
  if (find_corpus_dir(source) != 0)
    return 1;
  corpus_status = make_corpus(source);

  Suite *s = suite_create("corpus");
  TCase *tc = tcase_create("exports");
  /* Per test, one file: the largest (ResNeXt-50, 92 MB) takes seconds in
   * the release build and several times that under the sanitizers. */
  tcase_set_timeout(tc, 300);
  tu_add_tmpdir(tc, "corpus");
  tcase_add_loop_test(tc, every_export_loads_as_the_variant_its_name_says, 0, N_FILES);
  tcase_add_loop_test(tc, every_export_has_elastic_depth_width_and_resolution, 0, N_FILES);
  tcase_add_loop_test(tc, every_default_export_has_a_width_group_in_every_block, 0,
                      N_ARCHS * N_DEFAULT_VARIANTS);
  tcase_add_loop_test(tc, inspect_json_reports_elastic_depth_and_width_of_every_default_export, 0,
                      N_ARCHS * N_DEFAULT_VARIANTS);
  tcase_add_loop_test(tc, largest_subnet_matches_pytorch, 0, N_FILES);
  tcase_add_loop_test(tc, smallest_and_random_subnets_run_to_finite_outputs, 0, N_FILES);
  suite_add_tcase(s, tc);
  return tu_run(s) ? 1 : 0;
}
