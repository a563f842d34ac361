/*
 * fuzz_config.c - the YAML config loader over arbitrary files: libyaml's
 * events, the schema table's types and ranges, the path checks and every
 * problem report.
 *
 * The loader reads a path and resolves the paths in the file against its
 * directory, so each input is written to <tmp>/conf/tailord.yaml beside a
 * <tmp>/files/ holding the files the corpus in tests/data/configs names
 * (a model, calibration x and y).  The loader only reads what the input
 * names.
 *
 * Checked besides memory safety: a config that loads is whole (every
 * string the header promises is there), and a failed load reports at
 * least one problem.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "error.h"
#include "fuzzutil.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char config_path[PATH_MAX];

static void make_dir(const char *dir) {
  if (mkdir(dir, 0755) != 0)
    fuzz_die("mkdir %s failed", dir);
}

/* Copies tests/data/configs/files/<name> into dir. */
static void copy_file(const char *dir, const char *name) {
  char rel[128], to[PATH_MAX];
  snprintf(rel, sizeof rel, "tests/data/configs/files/%s", name);
  const char *from = fuzz_source_path(rel);
  FILE *f = fopen(from, "rb");
  if (f == NULL)
    fuzz_die("cannot open %s", from);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  if (ferror(f) || !feof(f))
    fuzz_die("%s: cannot read it whole into %zu bytes", from, sizeof buf);
  fclose(f);
  snprintf(to, sizeof to, "%s/%s", dir, name);
  fuzz_write_file(to, buf, n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char dir[PATH_MAX];
  const char *tmp = fuzz_tmpdir();
  snprintf(dir, sizeof dir, "%s/files", tmp);
  make_dir(dir);
  copy_file(dir, "model.onnx");
  copy_file(dir, "calib-x.npy");
  copy_file(dir, "calib-y.npy");
  snprintf(dir, sizeof dir, "%s/conf", tmp);
  make_dir(dir);
  snprintf(config_path, sizeof config_path, "%s/tailord.yaml", dir);
  return 0;
}

static void count_report(void *ctx, const char *line) {
  if (line == NULL || line[0] == '\0')
    fuzz_die("an empty problem report");
  ++*(int *)ctx;
}

static void check_whole(const struct tl_config *cfg) {
  if (cfg->file == NULL || cfg->socket.path == NULL || cfg->database == NULL ||
      cfg->monitor.root == NULL || cfg->n_models < 1 || cfg->models == NULL)
    fuzz_die("a config loaded with a member missing");
  for (int i = 0; i < cfg->n_models; i++) {
    const struct tl_config_model *m = &cfg->models[i];
    if (m->name == NULL || m->path == NULL || m->path[0] != '/' ||
        (m->calibration.x == NULL) != (m->calibration.y == NULL) || m->space.widths.n < 1 ||
        m->space.widths.n > TL_CONFIG_MAX_WIDTHS)
      fuzz_die("model %d loaded with a member missing", i);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_write_file(config_path, data, size);
  struct tl_config *cfg = NULL;
  struct tl_error err;
  int reports = 0;
  int rc = tl_config_load_report(config_path, &cfg, count_report, &reports, &err);
  if (rc == 0) {
    check_whole(cfg);
    tl_config_free(cfg);
  } else if (reports == 0) {
    fuzz_die("load failed (%s) with nothing reported", err.msg);
  }
  return 0;
}
