/*
 * export.h - one subnet of a SuperNet as a standalone ONNX model.
 *
 * The model written is the subnet itself, for any ONNX runtime: the nodes
 * of skipped residual blocks are gone (their readers read the block's
 * input), every weight is cut to the rows, input channels and groups the
 * subnet uses, and BatchNormalization carries the statistics the subnet
 * was recalibrated with.  It takes the model's native input, as tailor's
 * subnet plans do: when the subnet runs at a smaller side, a Resize
 * (mode linear, half-pixel coordinates) comes first.  Run by tailor or
 * by ONNX Runtime, it gives what tl_subnet_plan() gives for the same
 * spec and statistics, to float rounding.
 */
#ifndef TL_EXPORT_H
#define TL_EXPORT_H

#include "error.h"
#include "supernet.h"

/* Writes subnet spec of sn to path as an ONNX model (the source model's
 * opset, IR version 8).  bn is the subnet's recalibrated statistics
 * (tl_subnet_recalibrate) or NULL for the model's own: a BN node's entry
 * replaces its mean and variance; a conv's entry (a model whose BN was
 * folded into its convs) is folded into that conv's weights and bias.
 *
 * The file appears whole or not at all: it is written beside path and
 * renamed over it.  Returns 0, or a TL_E* code with a sentence naming the
 * model, node or file in err: TL_EUNSUPPORTED for what ONNX cannot say in
 * the model's opset (a resize before opset 11) or an attribute the
 * exporter cannot write, TL_EIO for the file.  sn and bn are only read;
 * threads may export from one SuperNet at once. */
int tl_subnet_export(const struct tl_supernet *sn, const struct tl_subnet_spec *spec,
                     const struct tl_bn_stats *bn, const char *path, struct tl_error *err);

#endif
