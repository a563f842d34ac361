/*
 * testutil.h - what the check suites share: a temporary directory of its
 * own for each test, and whole-file reads and writes that fail the test
 * when they cannot be done.
 *
 * tu_run() runs a suite the way every test binary does.
 *
 * tu_add_tmpdir() gives a test case two fixtures: an unchecked one that
 * makes /tmp/test_<suite>.XXXXXX once per case (it runs in the parent, so
 * the tree is removed even when a test in a forked child fails before its
 * own cleanup) and a checked one that makes an empty t.XXXXXX inside it
 * for each test, so tests can count what a write left behind.
 */
#ifndef TL_TESTUTIL_H
#define TL_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* Runs s in check's default mode (forking; CK_FORK=no, which the
 * valgrind setup sets, is honoured) and returns how many tests failed. */
int tu_run(Suite *s);

/* Adds the fixtures to tc; suite names the base directory. */
void tu_add_tmpdir(TCase *tc, const char *suite);

/* The current test's directory (a canonical path), and dir/name in a
 * static buffer (one at a time). */
const char *tu_tmpdir(void);
const char *tu_tmp_path(const char *name);

/* $TAILOR_SOURCE_ROOT and $TAILOR_BUILD_ROOT (meson test sets both; "."
 * and "build" otherwise) as canonical paths, into source and build
 * (PATH_MAX bytes each).  Returns 0, or -1 after saying on stderr, as
 * test_<suite>, that they cannot be resolved. */
int tu_roots(const char *suite, char *source, char *build);

/* Whether the suite runs under an emulator: $TAILOR_TEST_EMULATED set and
 * not "0", as scripts/test sets it for the aarch64 build under qemu-user,
 * where floating point costs some hundred times what it costs natively.
 * Suites then leave out whole-model work on the largest models and run
 * fewer random subnets, and say so on stderr; what does run asserts
 * exactly what it asserts natively. */
int tu_emulated(void);

/* How many times slower than a release build on a quiet machine the
 * suite is expected to run: $CK_TIMEOUT_MULTIPLIER (check's own, which
 * scripts/test sets for the sanitizer and emulated runs), 1 when unset.
 * Deadlines a test waits by (a daemon's readiness, a metric, a switch)
 * stretch by it; what a test asserts does not change. */
double tu_time_scale(void);

/* The model at path, or the test fails with the loader's sentence. */
struct tl_graph *tu_load(const char *path);

/* g's SuperNet with the default options, or the test fails with the
 * compiler's sentence.  Free it before g. */
struct tl_supernet *tu_supernet(struct tl_graph *g);

/* Removes dir and everything under it; no error when it does not exist. */
void tu_remove_tree(const char *dir);

/* Entries in dir but "." and "..". */
int tu_count_entries(const char *dir);

/* Replaces the file at path with len bytes of buf. */
void tu_write_bytes(const char *path, const void *buf, size_t len);

/* The whole file, malloc'd with a NUL after its last byte; *len (may be
 * NULL) is its size. */
unsigned char *tu_read_bytes(const char *path, size_t *len);

#endif
