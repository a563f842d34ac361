/*
 * calib.h - calibration data, BatchNorm recalibration and top-1 accuracy
 * of subnets.
 *
 * Calibration data is the operator's own: images x (N x C x H x W,
 * float32, or uint8 times a scale) and, when the operator has them,
 * labels y (N, int64 or int32), each a .npy file.  It never leaves the
 * box.  Without labels, the largest subnet's own answers stand in for
 * them (tl_calib_agreement_labels): every "accuracy" is then the top-1
 * agreement with the full model, which is what a smaller subnet loses
 * against the model the operator trained.  Recalibration recomputes a subnet's
 * BatchNorm statistics on it (the subnet's channels see other inputs than
 * the full network's did), the way PyTorch does with momentum=None: each
 * BN normalizes with its batch's statistics while the batches' means and
 * unbiased variances are averaged.
 *
 * A model exported with BN folded into its convs has no BN left; there,
 * each conv with a spatial output is recalibrated in BN's folded form: its
 * per-channel output statistics in the subnet are mapped onto the full
 * model's on the same images (a per-channel scale and shift in the conv's
 * epilogue, kept in struct tl_bn_stats like BN's statistics).
 */
#ifndef TL_CALIB_H
#define TL_CALIB_H

/* Changes whenever recalibration gives other statistics for the same
 * model and data (2: convs without BN are recalibrated too); caches of
 * accuracies and statistics key on it with the data. */
#define TL_RECALIB_VERSION 2

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "supernet.h"
#include "tensor.h"

struct tl_calib {
  struct tl_tensor x; /* (n, c, h, w) float32 or uint8; owned */
  float scale;        /* multiplies uint8 pixels (1 for float32) */
  int64_t *labels;    /* (n) owned; NULL for unlabelled data until
                       * tl_calib_agreement_labels() */
  int64_t n;
  int agreement; /* no labels were given: accuracies are agreements */
};

/* Loads images from x_path and labels from y_path, or no labels when
 * y_path is NULL (then agreement is set).  scale applies to uint8 images
 * (0 means 1/255).  Errors name the file: wrong dtype or rank, counts
 * that differ, labels out of [0, 65535].  On failure *out is untouched. */
int tl_calib_load(const char *x_path, const char *y_path, float scale, struct tl_calib *out,
                  struct tl_error *err);

void tl_calib_free(struct tl_calib *c);

/* For unlabelled data (agreement set, labels NULL): labels become the
 * top-1 class of sn's largest subnet with the model's own statistics,
 * computed in batches of `batch` (0 = 64).  Does nothing for labelled
 * data or when already done.  The name to report such accuracies by is
 * tl_calib_metric(). */
int tl_calib_agreement_labels(const struct tl_supernet *sn, struct tl_calib *c, int batch,
                              const atomic_int *stop, struct tl_error *err);

/* What accuracies on c are: "top-1", or "agreement" (with the largest
 * subnet) for data without labels.  A static string. */
const char *tl_calib_metric(const struct tl_calib *c);

/* Recalibrates spec's BatchNorm statistics on the first `images` images of
 * data (0 = all; only whole batches are used) in batches of `batch`.
 * *out gets statistics for every BN node of the subnet (free with
 * tl_bn_stats_free()).  When *stop (may be NULL) becomes nonzero, it
 * returns TL_ECANCELED at its next batch. */
int tl_subnet_recalibrate(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                          const struct tl_calib *data, int64_t images, int batch,
                          const atomic_int *stop, struct tl_bn_stats **out, struct tl_error *err);

void tl_bn_stats_free(struct tl_bn_stats *s);

/* Statistics as bytes for a cache (*data malloc'd, the caller frees it),
 * and back.  Deserialising checks the record against sn's graph (node
 * count, BatchNorm nodes, channel counts): a record that does not match
 * is TL_EFORMAT, never a crash. */
int tl_bn_stats_serialize(const struct tl_supernet *sn, const struct tl_bn_stats *s, void **data,
                          size_t *len, struct tl_error *err);
int tl_bn_stats_deserialize(const struct tl_supernet *sn, const void *data, size_t len,
                            struct tl_bn_stats **out, struct tl_error *err);

/* Top-1 accuracy (a fraction) of spec with statistics bn (NULL: the
 * model's own) over images [first, first + count) of data (count 0 = to
 * the end); for data without labels, its agreement with the largest
 * subnet (TL_EINVAL until tl_calib_agreement_labels()).  Stops as
 * tl_subnet_recalibrate() does. */
int tl_subnet_accuracy(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                       const struct tl_bn_stats *bn, const struct tl_calib *data, int64_t first,
                       int64_t count, int batch, const atomic_int *stop, double *acc,
                       struct tl_error *err);

#endif
