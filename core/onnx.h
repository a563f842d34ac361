/*
 * onnx.h - reading ONNX models and tensors into tailor's graph IR.
 *
 * The parser is protobuf-c over a subset of onnx.proto kept in this folder;
 * everything it reads is validated here (data types, sizes, references
 * between nodes), so the rest of the engine may trust a loaded graph.
 */
#ifndef TL_ONNX_H
#define TL_ONNX_H

#include "error.h"
#include "graph.h"

/* Loads the model at path into *out (free with tl_graph_free()).
 *
 * Checks that the file parses, the default-domain opset is one tailor
 * reads, every op is one the engine runs, every node input is defined
 * before use (nodes are sorted topologically if the file is not), and every
 * initializer's data matches its declared shape and type.  On failure
 * returns a TL_E* code, leaves *out untouched and writes a sentence naming
 * the file and, where it applies, the node into err. */
int tl_onnx_load(const char *path, struct tl_graph **out, struct tl_error *err);

/* Reads a serialized TensorProto (the input_N.pb / output_N.pb files of
 * ONNX's conformance tests) into *out; out->data is malloc'd and owned by
 * the caller.  If name is not NULL it receives a malloc'd copy of the
 * tensor's name ("" if none).  Only numeric types are read. */
int tl_onnx_read_tensor(const char *path, struct tl_tensor *out, char **name, struct tl_error *err);

#endif
