/*
 * calib.c - calibration data, BN recalibration and accuracy of subnets.
 */
#include "calib.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "internal.h"
#include "npy.h"

int tl_calib_load(const char *x_path, const char *y_path, float scale, struct tl_calib *out,
                  struct tl_error *err) {
  struct tl_tensor x = {0}, y = {0};
  int rc = tl_npy_read(x_path, &x, err);
  if (rc != 0)
    return rc;
  if (y_path != NULL && (rc = tl_npy_read(y_path, &y, err)) != 0)
    goto fail;
  if (x.dtype != TL_DTYPE_FLOAT32 && x.dtype != TL_DTYPE_UINT8) {
    rc = tl_fail(err, TL_EDTYPE, "%s: images are %s; use float32, or uint8 with a scale", x_path,
                 tl_dtype_name(x.dtype));
    goto fail;
  }
  if (x.shape.ndim != 4) {
    rc =
        tl_fail(err, TL_ESHAPE, "%s: images must be N x C x H x W, not %d-D", x_path, x.shape.ndim);
    goto fail;
  }
  if (y_path == NULL) {
    *out = (struct tl_calib){
        .x = x,
        .scale = x.dtype == TL_DTYPE_UINT8 ? (scale > 0 ? scale : 1.f / 255.f) : 1.f,
        .n = x.shape.dims[0],
        .agreement = 1,
    };
    return 0;
  }
  if (y.dtype != TL_DTYPE_INT64 && y.dtype != TL_DTYPE_INT32) {
    rc = tl_fail(err, TL_EDTYPE, "%s: labels are %s; use int64 or int32", y_path,
                 tl_dtype_name(y.dtype));
    goto fail;
  }
  if (y.shape.ndim != 1 || y.shape.dims[0] != x.shape.dims[0]) {
    rc = tl_fail(err, TL_ESHAPE, "%s: %lld labels for %lld images in %s", y_path,
                 (long long)tl_shape_numel(&y.shape), (long long)x.shape.dims[0], x_path);
    goto fail;
  }
  int64_t n = x.shape.dims[0];
  int64_t *labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
  if (labels == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "%s: out of memory", y_path);
    goto fail;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t l = y.dtype == TL_DTYPE_INT64 ? ((int64_t *)y.data)[i] : ((int32_t *)y.data)[i];
    if (l < 0 || l > 65535) {
      free(labels);
      rc = tl_fail(err, TL_ERANGE, "%s: label %lld of image %lld is out of range", y_path,
                   (long long)l, (long long)i);
      goto fail;
    }
    labels[i] = l;
  }
  free(y.data);
  out->x = x;
  out->scale = x.dtype == TL_DTYPE_UINT8 ? (scale > 0 ? scale : 1.f / 255.f) : 1.f;
  out->labels = labels;
  out->n = n;
  out->agreement = 0;
  return 0;
fail:
  free(x.data);
  free(y.data);
  return rc;
}

void tl_calib_free(struct tl_calib *c) {
  if (c == NULL)
    return;
  free(c->x.data);
  free(c->labels);
  memset(c, 0, sizeof *c);
}

/* Copies images [first, first + count) into the plan's input (zeros past
 * the end of the data). */
static void fill_batch(const struct tl_calib *d, int64_t first, int64_t count, float *dst,
                       int64_t batch) {
  const int64_t per = d->x.shape.dims[1] * d->x.shape.dims[2] * d->x.shape.dims[3];
  for (int64_t b = 0; b < batch; b++) {
    float *o = dst + b * per;
    int64_t i = first + b;
    if (b >= count || i >= d->n) {
      memset(o, 0, (size_t)per * sizeof *o);
    } else if (d->x.dtype == TL_DTYPE_UINT8) {
      const uint8_t *s = (const uint8_t *)d->x.data + i * per;
      for (int64_t k = 0; k < per; k++)
        o[k] = (float)s[k] * d->scale;
    } else {
      memcpy(o, (const float *)d->x.data + i * per, (size_t)per * sizeof *o);
    }
  }
}

static int check_shape(const struct tl_supernet *sn, const struct tl_plan *p,
                       const struct tl_calib *d, struct tl_error *err) {
  const struct tl_tensor *in = tl_plan_input((struct tl_plan *)p, 0);
  for (int k = 1; k < 4; k++)
    if (in->shape.dims[k] != d->x.shape.dims[k]) {
      char a[96], b[96];
      return tl_fail(err, TL_ESHAPE, "calibration images are %s but the model takes %s",
                     tl_shape_str(&d->x.shape, a, sizeof a), tl_shape_str(&in->shape, b, sizeof b));
    }
  (void)sn;
  return 0;
}

/* A plan of spec with po whose input takes data's images. */
static int data_plan(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                     const struct tl_subnet_plan_options *po, const struct tl_calib *data,
                     struct tl_plan **out, struct tl_error *err) {
  struct tl_plan *p = NULL;
  int rc = tl_subnet_plan(sn, spec, po, &p, err);
  if (rc == 0 && (rc = check_shape(sn, p, data, err)) != 0) {
    tl_plan_free(p);
    p = NULL;
  }
  *out = p;
  return rc;
}

void tl_bn_stats_free(struct tl_bn_stats *s) {
  if (s == NULL)
    return;
  for (int i = 0; i < s->n_nodes; i++) {
    free(s->mean[i]);
    free(s->var[i]);
  }
  free(s->mean);
  free(s->var);
  free(s);
}

/* ----------------------------------------------------- recalibration */

/* Channels of node i's statistics: a BN's, or a conv's output channels. */
static int64_t stats_channels(const struct tl_graph *g, int i) {
  const struct tl_node *nd = &g->nodes[i];
  if (nd->op == TL_OP_BATCHNORM && nd->n_in == 5 && nd->in[3] >= 0)
    return tl_shape_numel(&g->values[nd->in[3]].shape);
  if (nd->op == TL_OP_CONV && nd->n_in >= 2 && nd->in[1] >= 0 &&
      g->values[nd->in[1]].shape.ndim == 4)
    return g->values[nd->in[1]].shape.dims[0];
  return 0;
}

static struct tl_bn_stats *stats_new(const struct tl_graph *g) {
  struct tl_bn_stats *s = calloc(1, sizeof *s);
  if (s == NULL || (s->mean = calloc((size_t)g->n_nodes + 1, sizeof *s->mean)) == NULL ||
      (s->var = calloc((size_t)g->n_nodes + 1, sizeof *s->var)) == NULL) {
    free(s ? s->mean : NULL);
    free(s);
    return NULL;
  }
  s->n_nodes = g->n_nodes;
  return s;
}

/* 0 to go on; TL_ECANCELED, after freeing p, once *stop (NULL: never)
 * reads nonzero. */
static int stop_asked(const atomic_int *stop, struct tl_plan *p, struct tl_error *err) {
  if (stop == NULL || atomic_load(stop) == 0)
    return 0;
  tl_plan_free(p);
  return tl_fail(err, TL_ECANCELED, "stopped before the next batch of images");
}

/* Runs spec in collect mode over n_batches batches of data; *out is the
 * plan holding the sums.  conv_ref as in tl_subnet_plan_options; stop as
 * in tl_subnet_recalibrate(). */
static int collect(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                   const struct tl_calib *data, int64_t n_batches, int batch,
                   const struct tl_bn_stats *conv_ref, const atomic_int *stop, struct tl_plan **out,
                   struct tl_error *err) {
  struct tl_plan *p = NULL;
  struct tl_subnet_plan_options po = {.batch = batch, .collect_bn = 1, .conv_ref = conv_ref};
  int rc = data_plan(sn, spec, &po, data, &p, err);
  if (rc != 0)
    return rc;
  float *in = tl_plan_input(p, 0)->data;
  for (int64_t b = 0; b < n_batches; b++) {
    if ((rc = stop_asked(stop, p, err)) != 0)
      return rc;
    fill_batch(data, b * batch, batch, in, batch);
    tl_plan_run(p);
  }
  *out = p;
  return 0;
}

/* The statistics a collect-mode plan recorded.  A BN node gets the mean
 * and variance; so does a conv without BN when conv_ref is NULL (the full
 * model's own, for the map), and otherwise the map onto conv_ref's:
 * y' = (y - mu) / sd * ref_sd + ref_mu, stored as mean = mu - ref_mu /
 * r and var = 1 / r^2 with r = ref_sd / sd, so that y' = (y - mean) /
 * sqrt(var) as a BN with unit scale would compute.  Channels the subnet
 * does not use keep the model's BN statistics, or the identity map. */
static int stats_from_plan(const struct tl_graph *g, const struct tl_plan *p,
                           const struct tl_bn_stats *conv_ref, struct tl_bn_stats **out) {
  struct tl_bn_stats *s = stats_new(g);
  if (s == NULL)
    return TL_ENOMEM;
  for (int i = 0; i < g->n_nodes; i++) {
    const double *msum, *vsum;
    int64_t used;
    int batches;
    if (!tl__plan_bn_collected(p, i, &msum, &vsum, &batches, &used) || batches == 0)
      continue;
    const struct tl_node *nd = &g->nodes[i];
    const int is_bn = nd->op == TL_OP_BATCHNORM;
    if (!is_bn && conv_ref != NULL && conv_ref->mean[i] == NULL)
      continue; /* the full model has no statistics to match here */
    const int64_t full = stats_channels(g, i);
    s->mean[i] = malloc((size_t)full * sizeof(float));
    s->var[i] = malloc((size_t)full * sizeof(float));
    if (s->mean[i] == NULL || s->var[i] == NULL) {
      tl_bn_stats_free(s);
      return TL_ENOMEM;
    }
    for (int64_t k = 0; k < full; k++) {
      s->mean[i][k] = is_bn ? ((const float *)g->values[nd->in[3]].data)[k] : 0.f;
      s->var[i][k] = is_bn ? ((const float *)g->values[nd->in[4]].data)[k] : 1.f;
    }
    for (int64_t k = 0; k < used && k < full; k++) {
      const double mu = msum[k] / batches, var = vsum[k] / batches;
      if (is_bn || conv_ref == NULL) {
        s->mean[i][k] = (float)mu;
        s->var[i][k] = (float)var;
      } else {
        const double r =
            sqrt((double)conv_ref->var[i][k] + TL_STATS_EPS) / sqrt(var + TL_STATS_EPS);
        s->mean[i][k] = (float)(mu - conv_ref->mean[i][k] / r);
        s->var[i][k] = (float)(1.0 / (r * r));
      }
    }
  }
  *out = s;
  return 0;
}

/* 1 if some conv has no BatchNormalization right after it. */
static int has_bare_convs(const struct tl_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    const struct tl_node *nd = &g->nodes[i];
    if (nd->op != TL_OP_CONV || nd->n_out < 1 || nd->out[0] < 0)
      continue;
    int bn = 0;
    for (int j = i + 1; j < g->n_nodes && !bn; j++)
      for (int k = 0; k < g->nodes[j].n_in; k++)
        bn |= g->nodes[j].in[k] == nd->out[0] && g->nodes[j].op == TL_OP_BATCHNORM;
    if (!bn)
      return 1;
  }
  return 0;
}

struct ref_args {
  const struct tl_calib *data;
  int64_t n_batches;
  int batch;
  const atomic_int *stop;
};

/* The full model's statistics on the recalibration images. */
static int measure_ref(const struct tl_supernet *sn, void *arg, struct tl_bn_stats **stats,
                       struct tl_error *err) {
  const struct ref_args *a = arg;
  struct tl_subnet_spec full;
  tl_subnet_largest(sn, &full);
  struct tl_plan *p = NULL;
  int rc = collect(sn, &full, a->data, a->n_batches, a->batch, NULL, a->stop, &p, err);
  if (rc != 0)
    return rc;
  rc = stats_from_plan(tl__supernet_graph(sn), p, NULL, stats);
  tl_plan_free(p);
  return rc != 0 ? tl_fail(err, rc, "out of memory") : 0;
}

int tl_subnet_recalibrate(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                          const struct tl_calib *data, int64_t images, int batch,
                          const atomic_int *stop, struct tl_bn_stats **out, struct tl_error *err) {
  const struct tl_graph *g = tl__supernet_graph(sn);
  if (batch <= 0)
    batch = 64;
  if (images <= 0 || images > data->n)
    images = data->n;
  int64_t n_batches = images / batch;
  if (n_batches == 0)
    return tl_fail(err, TL_EINVAL, "recalibration needs at least one batch of %d images, not %lld",
                   batch, (long long)images);
  int rc;
  const struct tl_bn_stats *ref = NULL;
  if (has_bare_convs(g)) {
    /* The key: the images used, as bytes, and how they are batched. */
    const int64_t per = data->x.shape.dims[1] * data->x.shape.dims[2] * data->x.shape.dims[3];
    uint64_t key = tl_hash_bytes(TL_HASH_INIT, data->x.data,
                                 (size_t)(n_batches * batch * per) * tl_dtype_size(data->x.dtype));
    key = tl_hash_bytes(key, &data->scale, sizeof data->scale);
    key = tl_hash_bytes(key, &batch, sizeof batch);
    struct ref_args a = {data, n_batches, batch, stop};
    if ((rc = tl__supernet_conv_ref(sn, key, measure_ref, &a, &ref, err)) != 0)
      return rc;
  }
  struct tl_plan *p = NULL;
  if ((rc = collect(sn, spec, data, n_batches, batch, ref, stop, &p, err)) != 0)
    return rc;
  rc = stats_from_plan(g, p, ref, out);
  tl_plan_free(p);
  return rc != 0 ? tl_fail(err, rc, "out of memory") : 0;
}

/* The class with the largest logit (the first of equals). */
static int64_t top1(const float *logits, int64_t classes) {
  int64_t best = 0;
  for (int64_t k = 1; k < classes; k++)
    if (logits[k] > logits[best])
      best = k;
  return best;
}

/* The top-1 class of spec (statistics bn, NULL: the model's own) for
 * images [first, first + count) of data, run in batches of `batch`, into
 * out[0..count); stop as in tl_subnet_recalibrate(). */
static int classify(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                    const struct tl_bn_stats *bn, const struct tl_calib *data, int64_t first,
                    int64_t count, int batch, const atomic_int *stop, int64_t *out,
                    struct tl_error *err) {
  struct tl_plan *p = NULL;
  struct tl_subnet_plan_options po = {.batch = batch, .bn = bn};
  int rc = data_plan(sn, spec, &po, data, &p, err);
  if (rc != 0)
    return rc;
  const struct tl_tensor *y = tl_plan_output(p, 0);
  const int64_t classes = y->shape.ndim == 2 ? y->shape.dims[1] : 0;
  if (classes < 1 || y->shape.dims[0] != batch) {
    tl_plan_free(p);
    return tl_fail(err, TL_ESHAPE, "top-1 needs a model output of shape (batch, classes)");
  }
  float *in = tl_plan_input(p, 0)->data;
  const float *logits = y->data;
  for (int64_t at = 0; at < count; at += batch) {
    if ((rc = stop_asked(stop, p, err)) != 0)
      return rc;
    int64_t now = count - at < batch ? count - at : batch;
    fill_batch(data, first + at, now, in, batch);
    tl_plan_run(p);
    for (int64_t b = 0; b < now; b++)
      out[at + b] = top1(logits + b * classes, classes);
  }
  tl_plan_free(p);
  return 0;
}

int tl_subnet_accuracy(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                       const struct tl_bn_stats *bn, const struct tl_calib *data, int64_t first,
                       int64_t count, int batch, const atomic_int *stop, double *acc,
                       struct tl_error *err) {
  if (batch <= 0)
    batch = 64;
  if (first < 0 || first > data->n)
    first = data->n;
  if (count <= 0 || first + count > data->n)
    count = data->n - first;
  if (count == 0)
    return tl_fail(err, TL_EINVAL, "no images to evaluate");
  if (data->labels == NULL)
    return tl_fail(err, TL_EINVAL,
                   "the calibration data has no labels: take the largest subnet's answers "
                   "for them first");
  int64_t *got = malloc((size_t)count * sizeof *got);
  if (got == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  int rc = classify(sn, spec, bn, data, first, count, batch, stop, got, err);
  int64_t right = 0;
  for (int64_t i = 0; i < count && rc == 0; i++)
    right += got[i] == data->labels[first + i];
  free(got);
  if (rc == 0)
    *acc = (double)right / (double)count;
  return rc;
}

const char *tl_calib_metric(const struct tl_calib *c) {
  return c->agreement ? "agreement" : "top-1";
}

int tl_calib_agreement_labels(const struct tl_supernet *sn, struct tl_calib *c, int batch,
                              const atomic_int *stop, struct tl_error *err) {
  if (!c->agreement || c->labels != NULL)
    return 0;
  if (batch <= 0)
    batch = 64;
  if (c->n == 0)
    return tl_fail(err, TL_EINVAL, "no calibration images");
  int64_t *labels = malloc((size_t)c->n * sizeof *labels);
  if (labels == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  struct tl_subnet_spec full;
  tl_subnet_largest(sn, &full);
  int rc = classify(sn, &full, NULL, c, 0, c->n, batch, stop, labels, err);
  if (rc != 0) {
    free(labels);
    return rc;
  }
  c->labels = labels;
  return 0;
}

/* ------------------------------------------------------ serialisation */

/* Layout, little-endian as the host (the cache never leaves the box):
 * "TLBN", u32 version 1, u32 n_nodes, then per node u32 channels (0 for
 * none) followed by channels floats of mean and channels floats of var. */
#define BN_MAGIC "TLBN"

static size_t bn_node_channels(const struct tl_graph *g, const struct tl_bn_stats *s, int i) {
  return s->mean[i] == NULL ? 0 : (size_t)stats_channels(g, i);
}

int tl_bn_stats_serialize(const struct tl_supernet *sn, const struct tl_bn_stats *s, void **data,
                          size_t *len, struct tl_error *err) {
  const struct tl_graph *g = tl__supernet_graph(sn);
  size_t n = 12;
  for (int i = 0; i < s->n_nodes; i++)
    n += 4 + 2 * bn_node_channels(g, s, i) * sizeof(float);
  unsigned char *buf = malloc(n), *p = buf;
  if (buf == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  uint32_t head[2] = {1, (uint32_t)s->n_nodes};
  memcpy(p, BN_MAGIC, 4);
  memcpy(p + 4, head, 8);
  p += 12;
  for (int i = 0; i < s->n_nodes; i++) {
    uint32_t c = (uint32_t)bn_node_channels(g, s, i);
    memcpy(p, &c, 4);
    p += 4;
    if (c == 0)
      continue;
    memcpy(p, s->mean[i], c * sizeof(float));
    p += c * sizeof(float);
    memcpy(p, s->var[i], c * sizeof(float));
    p += c * sizeof(float);
  }
  *data = buf;
  *len = n;
  return 0;
}

int tl_bn_stats_deserialize(const struct tl_supernet *sn, const void *data, size_t len,
                            struct tl_bn_stats **out, struct tl_error *err) {
  const struct tl_graph *g = tl__supernet_graph(sn);
  const unsigned char *p = data, *end = p + len;
  uint32_t head[2];
  if (len < 12 || memcmp(p, BN_MAGIC, 4) != 0)
    return tl_fail(err, TL_EFORMAT, "BatchNorm statistics: not a statistics record");
  memcpy(head, p + 4, 8);
  p += 12;
  if (head[0] != 1 || head[1] != (uint32_t)g->n_nodes)
    return tl_fail(err, TL_EFORMAT,
                   "BatchNorm statistics: version %u for %u nodes, the model has %d nodes", head[0],
                   head[1], g->n_nodes);
  struct tl_bn_stats *s = calloc(1, sizeof *s);
  if (s == NULL || (s->mean = calloc((size_t)g->n_nodes + 1, sizeof *s->mean)) == NULL ||
      (s->var = calloc((size_t)g->n_nodes + 1, sizeof *s->var)) == NULL) {
    free(s ? s->mean : NULL);
    free(s);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  s->n_nodes = g->n_nodes;
  int rc = 0;
  for (int i = 0; i < g->n_nodes && rc == 0; i++) {
    uint32_t c;
    if (end - p < 4) {
      rc = tl_fail(err, TL_EFORMAT, "BatchNorm statistics: truncated at node %d", i);
      break;
    }
    memcpy(&c, p, 4);
    p += 4;
    if (c == 0)
      continue;
    if ((int64_t)c != stats_channels(g, i) || (size_t)(end - p) < 2 * (size_t)c * sizeof(float)) {
      rc = tl_fail(err, TL_EFORMAT, "BatchNorm statistics: node %d does not match the model", i);
      break;
    }
    s->mean[i] = malloc(c * sizeof(float));
    s->var[i] = malloc(c * sizeof(float));
    if (s->mean[i] == NULL || s->var[i] == NULL) {
      rc = tl_fail(err, TL_ENOMEM, "out of memory");
      break;
    }
    memcpy(s->mean[i], p, c * sizeof(float));
    p += c * sizeof(float);
    memcpy(s->var[i], p, c * sizeof(float));
    p += c * sizeof(float);
  }
  if (rc == 0 && p != end)
    rc = tl_fail(err, TL_EFORMAT, "BatchNorm statistics: %zu bytes too many", (size_t)(end - p));
  if (rc != 0) {
    tl_bn_stats_free(s);
    return rc;
  }
  *out = s;
  return 0;
}
