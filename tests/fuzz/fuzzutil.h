/*
 * fuzzutil.h - what the fuzz targets share: where the source tree is, a
 * temporary directory of their own, and an in-memory file for the loaders
 * that take a path.
 *
 * Targets run in libFuzzer's process for millions of inputs, so nothing
 * here may leak per input; set-up failures abort with a sentence (a target
 * that cannot start has nothing useful to fuzz).
 */
#ifndef TL_FUZZUTIL_H
#define TL_FUZZUTIL_H

#include <stddef.h>

/* Prints "fuzz: <sentence>" on stderr and aborts. */
void fuzz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* The source tree: $TAILOR_SOURCE_ROOT, else the tree the target was
 * built from.  Static; never NULL. */
const char *fuzz_source_root(void);

/* source root + "/" + rel, in a static buffer (one at a time). */
const char *fuzz_source_path(const char *rel);

/* A directory made once per process under $TMPDIR (default /tmp) and
 * removed, with what is in it, when the process exits normally.  The only
 * place targets write to. */
const char *fuzz_tmpdir(void);

/* An anonymous in-memory file (memfd) whose contents are replaced by each
 * call: it then holds exactly data[0..n).  Returns its path
 * ("/proc/self/fd/N"), which stays the same for the life of the process;
 * loaders open it as a regular file. */
const char *fuzz_memfile(const void *data, size_t n);

/* Replaces the file at path with data[0..n). */
void fuzz_write_file(const char *path, const void *data, size_t n);

#endif
