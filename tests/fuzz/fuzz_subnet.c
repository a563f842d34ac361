/*
 * fuzz_subnet.c - the subnet spec parser ("r=24 d=2,1,2 w=1,.5,.75") over
 * arbitrary text, against the SuperNet of the bundled model (four stages,
 * every kind of choice), built once.
 *
 * Checked besides memory safety: a spec that parses formats to its
 * canonical text, which parses back to the same spec with the same key.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzzutil.h"
#include "graph.h"
#include "onnx.h"
#include "supernet.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tl_graph *graph;
static struct tl_supernet *supernet;

static void free_supernet(void) {
  tl_supernet_free(supernet);
  tl_graph_free(graph);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  struct tl_error err;
  const char *path = fuzz_source_path("models/fmnist.onnx");
  if (tl_onnx_load(path, &graph, &err) != 0)
    fuzz_die("%s", err.msg);
  if (tl_supernet_build(graph, NULL, &supernet, &err) != 0)
    fuzz_die("%s: %s", path, err.msg);
  /* Freed at exit so that LeakSanitizer's report shows only what an input
   * leaked. */
  if (atexit(free_supernet) != 0)
    fuzz_die("atexit failed");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The parser takes a C string: the input up to its first NUL. */
  char *text = malloc(size + 1);
  if (text == NULL)
    fuzz_die("out of memory");
  memcpy(text, data, size);
  text[size] = '\0';

  struct tl_subnet_spec spec, again;
  struct tl_error err;
  if (tl_subnet_parse(supernet, text, &spec, &err) == 0) {
    char canonical[1024];
    tl_subnet_format(supernet, &spec, canonical, sizeof canonical);
    if (tl_subnet_parse(supernet, canonical, &again, &err) != 0)
      fuzz_die("\"%s\" parsed, its canonical \"%s\" did not: %s", text, canonical, err.msg);
    if (memcmp(&spec, &again, sizeof spec) != 0 ||
        tl_subnet_key(supernet, &spec) != tl_subnet_key(supernet, &again))
      fuzz_die("\"%s\" and its canonical \"%s\" differ", text, canonical);
  }
  free(text);
  return 0;
}
