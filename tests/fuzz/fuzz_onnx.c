/*
 * fuzz_onnx.c - the ONNX loader over arbitrary bytes: the protobuf-c
 * decoding, the checks of every node, initializer and reference, the
 * constant folding and the topological sort.  The same bytes are also
 * read as a lone TensorProto, the conformance tests' format.
 *
 * The loaders take a path, so each input is put in an in-memory file
 * (fuzzutil.h): nothing is written to disk.
 */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "fuzzutil.h"
#include "graph.h"
#include "onnx.h"
#include "tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_memfile(data, size);
  struct tl_error err;
  struct tl_graph *g = NULL;
  if (tl_onnx_load(path, &g, &err) == 0)
    tl_graph_free(g);

  struct tl_tensor t;
  char *name = NULL;
  if (tl_onnx_read_tensor(path, &t, &name, &err) == 0) {
    free(t.data);
    free(name);
  }
  return 0;
}
