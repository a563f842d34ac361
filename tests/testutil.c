/*
 * testutil.c - the check suites' shared fixtures and file helpers (see
 * testutil.h).
 */
#define _POSIX_C_SOURCE 200809L

#include "testutil.h"

#include "onnx.h"
#include "supernet.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char suite_name[32];
static char base_dir[PATH_MAX];
static char tmpdir[PATH_MAX];

static void base_setup(void) {
  char made[PATH_MAX];
  snprintf(made, sizeof made, "/tmp/test_%s.XXXXXX", suite_name);
  /* canonical, for tests that compare paths a program made absolute */
  if (mkdtemp(made) == NULL || realpath(made, base_dir) == NULL) {
    perror(made);
    abort();
  }
}

static void base_teardown(void) { tu_remove_tree(base_dir); }

static void tmpdir_setup(void) {
  snprintf(tmpdir, sizeof tmpdir, "%s/t.XXXXXX", base_dir);
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmpdir_teardown(void) {
  chmod(tmpdir, 0700); /* a test may have taken the write bit away */
  tu_remove_tree(tmpdir);
}

void tu_add_tmpdir(TCase *tc, const char *suite) {
  snprintf(suite_name, sizeof suite_name, "%s", suite);
  tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
  tcase_add_checked_fixture(tc, tmpdir_setup, tmpdir_teardown);
}

const char *tu_tmpdir(void) { return tmpdir; }

const char *tu_tmp_path(const char *name) {
  static char p[PATH_MAX * 2];
  snprintf(p, sizeof p, "%s/%s", tmpdir, name);
  return p;
}

int tu_roots(const char *suite, char *source, char *build) {
  const char *src = getenv("TAILOR_SOURCE_ROOT"), *bld = getenv("TAILOR_BUILD_ROOT");
  if (realpath(src != NULL ? src : ".", source) == NULL ||
      realpath(bld != NULL ? bld : "build", build) == NULL) {
    fprintf(stderr, "test_%s: set TAILOR_SOURCE_ROOT and TAILOR_BUILD_ROOT\n", suite);
    return -1;
  }
  return 0;
}

void tu_remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return;
  struct dirent *e;
  char p[PATH_MAX * 2];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (unlink(p) < 0)
      tu_remove_tree(p);
  }
  closedir(d);
  rmdir(dir);
}

int tu_count_entries(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

void tu_write_bytes(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

unsigned char *tu_read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot read %s", path);
  ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  ck_assert_int_ge(n, 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  buf[n] = '\0';
  if (len != NULL)
    *len = (size_t)n;
  return buf;
}

int tu_emulated(void) {
  const char *e = getenv("TAILOR_TEST_EMULATED");
  return e != NULL && *e != '\0' && strcmp(e, "0") != 0;
}

double tu_time_scale(void) {
  const char *e = getenv("CK_TIMEOUT_MULTIPLIER");
  char *end = NULL;
  double v = e != NULL ? strtod(e, &end) : 1;
  return e != NULL && end != e && *end == '\0' && v >= 1 ? v : 1;
}

int tu_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed;
}

struct tl_graph *tu_load(const char *path) {
  struct tl_graph *g = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_onnx_load(path, &g, &err) == 0, "%s", err.msg);
  return g;
}

struct tl_supernet *tu_supernet(struct tl_graph *g) {
  struct tl_supernet *sn = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_supernet_build(g, NULL, &sn, &err) == 0, "%s", err.msg);
  return sn;
}
