/*
 * fuzzutil.c - helpers of the fuzz targets (see fuzzutil.h).
 */
#include "fuzzutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void fuzz_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fuzz: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

const char *fuzz_source_root(void) {
  const char *env = getenv("TAILOR_SOURCE_ROOT");
  return env != NULL && env[0] != '\0' ? env : TAILOR_SOURCE_ROOT;
}

const char *fuzz_source_path(const char *rel) {
  static char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/%s", fuzz_source_root(), rel);
  if (n < 0 || (size_t)n >= sizeof path)
    fuzz_die("%s/%s: path too long", fuzz_source_root(), rel);
  return path;
}

/* ---------------------------------------------------- temporary directory */

static char tmpdir[PATH_MAX];
static pid_t tmpdir_owner;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0)
    fprintf(stderr, "fuzz: cannot remove %s: %s\n", path, strerror(errno));
  return 0;
}

static void remove_tmpdir(void) {
  /* A child that inherited the handler (none fork today) must not remove
   * its parent's directory. */
  if (tmpdir[0] != '\0' && getpid() == tmpdir_owner)
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void) {
  if (tmpdir[0] != '\0')
    return tmpdir;
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0')
    base = "/tmp";
  int n = snprintf(tmpdir, sizeof tmpdir, "%s/tailor-fuzz.XXXXXX", base);
  if (n < 0 || (size_t)n >= sizeof tmpdir)
    fuzz_die("%s: TMPDIR too long", base);
  if (mkdtemp(tmpdir) == NULL)
    fuzz_die("%s: mkdtemp: %s", tmpdir, strerror(errno));
  tmpdir_owner = getpid();
  if (atexit(remove_tmpdir) != 0)
    fuzz_die("atexit failed");
  return tmpdir;
}

/* ----------------------------------------------------------------- files */

static void write_all(int fd, const char *what, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      fuzz_die("%s: write: %s", what, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
}

const char *fuzz_memfile(const void *data, size_t n) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("tailor-fuzz", MFD_CLOEXEC);
    if (fd < 0)
      fuzz_die("memfd_create: %s", strerror(errno));
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
    fuzz_die("%s: truncate: %s", path, strerror(errno));
  write_all(fd, path, data, n);
  return path;
}

void fuzz_write_file(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    fuzz_die("%s: open: %s", path, strerror(errno));
  write_all(fd, path, data, n);
  if (close(fd) != 0)
    fuzz_die("%s: close: %s", path, strerror(errno));
}
