/*
 * test_store.c - the SQLite cache: that every value round-trips exactly,
 * that writes are all or nothing, that events come newest first, and that
 * a file which is damaged, truncated, another program's, or from a newer
 * schema is set aside with its bytes intact while an empty cache takes its
 * place - and that only a cache that cannot be created at all is an error.
 *
 * Bad files are made here with the sqlite3 API and plain writes.  Files go
 * to a mkdtemp() directory of their own per test, removed afterwards.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "store.h"
#include "testutil.h"

/* -------------------------------------------------------------- helpers */

static bool file_exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

/* Opens path, which must succeed, with report filled. */
static struct tl_store *open_ok(const char *path, struct tl_store_open_report *report) {
  struct tl_store *st = NULL;
  struct tl_error err = {{0}};
  int rc = tl_store_open(path, &st, report, &err);
  ck_assert_msg(rc == 0, "tl_store_open(%s) = %d: %s", path, rc, err.msg);
  ck_assert_ptr_nonnull(st);
  return st;
}

/* One integer from a query on the file at path, through plain sqlite3. */
static int sqlite_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *s = NULL;
  ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
  int v = sqlite3_column_int(s, 0);
  ck_assert_int_eq(sqlite3_finalize(s), SQLITE_OK);
  ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
  return v;
}

/* Runs sql on the file at path (created if missing) through plain sqlite3. */
static void sqlite_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg != NULL ? msg : "?");
  ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}

static const struct tl_device_fp test_fp = {
    .cpu_model = "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
    .cores = 2,
    .max_freq_khz = 3300000,
    .blas = "OpenBLAS 0.3.21",
    .threads = 1,
};

static int64_t device_of(struct tl_store *st) {
  int64_t id = -1;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_store_device(st, &test_fp, &id, &err) == 0, "%s", err.msg);
  ck_assert_int_gt(id, 0);
  return id;
}

static int64_t event_count(struct tl_store *st) {
  int64_t n = -1;
  ck_assert_int_eq(tl_store_event_count(st, &n, NULL), 0);
  return n;
}

/* A cache at path holding one device, a latency, an accuracy, BN bytes, a
 * frontier and an event, closed again. */
static void make_filled_cache(const char *path) {
  struct tl_store *st = open_ok(path, NULL);
  int64_t dev = device_of(st);
  struct tl_op_latency rows[200];
  char sigs[200][48];
  for (int i = 0; i < 200; i++) {
    snprintf(sigs[i], sizeof sigs[i], "conv 1x%dx56x56 k3 s1 g1 t1", i + 1);
    rows[i] = (struct tl_op_latency){sigs[i], 10.0 + i, 50, 1700000000};
  }
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, 200, NULL), 0);
  struct tl_subnet_accuracy acc = {"r=24 d=2,1 w=1,.5", 0.875, 512, 1};
  ck_assert_int_eq(tl_store_accuracy_put(st, "m0", 7, "c0", &acc, NULL), 0);
  unsigned char blob[20000];
  for (size_t i = 0; i < sizeof blob; i++)
    blob[i] = (unsigned char)(i * 31);
  ck_assert_int_eq(tl_store_bn_put(st, "m0", 7, "c0", blob, sizeof blob, NULL), 0);
  struct tl_frontier_entry fe = {"r=24 d=2,1 w=1,.5", 7, 4.5, 12.25, 0.875};
  ck_assert_int_eq(tl_store_frontier_put(st, "m0", dev, "c0", "space", &fe, 1, NULL), 0);
  struct tl_switch_event ev = {0, 1700000000000, "m", NULL, "r=24", "start", "{}"};
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, NULL), 0);
  tl_store_close(st);
}

/* ----------------------------------------------------------- lifecycle */

START_TEST(fresh_file_gets_schema_version_in_wal_mode_and_mode_0600) {
  const char *path = tu_tmp_path("cache.db");
  struct tl_store_open_report rep;
  memset(&rep, 0x55, sizeof rep);
  struct tl_store *st = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_CREATED);
  ck_assert_int_eq(rep.found_version, 0);
  ck_assert_str_eq(rep.aside_path, "");
  ck_assert_ptr_nonnull(strstr(rep.message, path));
  ck_assert_ptr_nonnull(strstr(rep.message, "created a new cache"));
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_int_eq(sb.st_mode & 0777, 0600);
  tl_store_close(st);

  ck_assert_int_eq(sqlite_int(path, "PRAGMA user_version"), TL_STORE_SCHEMA_VERSION);
  ck_assert_int_eq(sqlite_int(path, "PRAGMA application_id"), TL_STORE_APPLICATION_ID);
  /* WAL is a property of the file: it stays after close */
  ck_assert_int_eq(sqlite_int(path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
}
END_TEST

START_TEST(reopen_uses_the_file_without_rebuilding) {
  const char *path = tu_tmp_path("cache.db");
  struct tl_store *st = open_ok(path, NULL);
  struct tl_switch_event ev = {0, 5, "m", NULL, "b", "r", NULL};
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, NULL), 0);
  tl_store_close(st);

  struct tl_store_open_report rep;
  st = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_OPENED);
  ck_assert_int_eq(rep.found_version, TL_STORE_SCHEMA_VERSION);
  ck_assert_str_eq(rep.aside_path, "");
  ck_assert_ptr_nonnull(strstr(rep.message, "opened"));
  ck_assert_int_eq(event_count(st), 1);
  tl_store_close(st);
  /* the closed cache is one file: no companions, nothing set aside */
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
}
END_TEST

START_TEST(empty_existing_file_becomes_a_cache) {
  const char *path = tu_tmp_path("cache.db");
  tu_write_bytes(path, "", 0);
  struct tl_store_open_report rep;
  struct tl_store *st = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_CREATED);
  ck_assert_str_eq(rep.aside_path, "");
  ck_assert_int_eq(event_count(st), 0);
  tl_store_close(st);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
}
END_TEST

START_TEST(memory_cache_works_without_a_file) {
  struct tl_store_open_report rep;
  struct tl_store *st = open_ok(":memory:", &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_CREATED);
  int64_t dev = device_of(st);
  struct tl_op_latency row = {"relu 1x8", 1.5, 3, 9};
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, &row, 1, NULL), 0);
  struct tl_op_latency got;
  ck_assert_int_eq(tl_store_op_get(st, dev, "relu 1x8", &got, NULL), 0);
  ck_assert_double_eq(got.median_us, 1.5);
  tl_store_close(st);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);
}
END_TEST

START_TEST(data_survives_close_and_reopen) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  struct tl_store *st = open_ok(path, NULL);
  int64_t dev = device_of(st);

  struct tl_op_latency got;
  ck_assert_int_eq(tl_store_op_get(st, dev, "conv 1x200x56x56 k3 s1 g1 t1", &got, NULL), 0);
  ck_assert_double_eq(got.median_us, 209.0);
  struct tl_subnet_accuracy *acc = NULL;
  ck_assert_int_eq(tl_store_accuracy_get(st, "m0", 7, "c0", &acc, NULL), 0);
  ck_assert_str_eq(acc->spec, "r=24 d=2,1 w=1,.5");
  ck_assert_double_eq(acc->accuracy, 0.875);
  free(acc);
  void *blob = NULL;
  size_t len = 0;
  ck_assert_int_eq(tl_store_bn_get(st, "m0", 7, "c0", &blob, &len, NULL), 0);
  ck_assert_uint_eq(len, 20000);
  ck_assert_uint_eq(((unsigned char *)blob)[19999], (unsigned char)(19999 * 31));
  free(blob);
  struct tl_frontier_entry *fe = NULL;
  size_t n = 0;
  ck_assert_int_eq(tl_store_frontier_get(st, "m0", dev, "c0", "space", &fe, &n, NULL), 0);
  ck_assert_uint_eq(n, 1);
  ck_assert_double_eq(fe[0].predicted_mib, 12.25);
  free(fe);
  ck_assert_int_eq(event_count(st), 1);
  tl_store_close(st);
}
END_TEST

START_TEST(two_connections_share_one_file) {
  const char *path = tu_tmp_path("cache.db");
  struct tl_store *a = open_ok(path, NULL);
  struct tl_store_open_report rep;
  struct tl_store *b = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_OPENED);

  int64_t dev_a = device_of(a), dev_b = device_of(b);
  ck_assert_int_eq(dev_a, dev_b);
  struct tl_op_latency row = {"add 1x64x56x56", 7.25, 10, 1};
  ck_assert_int_eq(tl_store_op_put_batch(a, dev_a, &row, 1, NULL), 0);
  struct tl_op_latency got;
  ck_assert_int_eq(tl_store_op_get(b, dev_b, "add 1x64x56x56", &got, NULL), 0);
  ck_assert_double_eq(got.median_us, 7.25);

  struct tl_switch_event ev = {0, 1, "m", NULL, "x", "r", NULL};
  ck_assert_int_eq(tl_store_event_append(b, &ev, NULL, NULL), 0);
  ck_assert_int_eq(event_count(a), 1);
  tl_store_close(a);
  tl_store_close(b);
}
END_TEST

START_TEST(commits_left_in_the_wal_by_a_killed_process_are_kept) {
  const char *path = tu_tmp_path("cache.db");
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    struct tl_store *st = NULL;
    struct tl_switch_event ev = {0, 1, "m", NULL, "s", "r", NULL};
    if (tl_store_open(path, &st, NULL, NULL) != 0 ||
        tl_store_event_append(st, &ev, NULL, NULL) != 0)
      _exit(1);
    /* killed with the store open: no close, no checkpoint, so the
     * commits live only in the -wal */
    kill(getpid(), SIGKILL);
    _exit(2);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", path);
  ck_assert(file_exists(wal));

  struct tl_store_open_report rep;
  struct tl_store *st = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_OPENED);
  ck_assert_int_eq(event_count(st), 1);
  tl_store_close(st);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
}
END_TEST

START_TEST(close_accepts_null) { tl_store_close(NULL); }
END_TEST

START_TEST(null_arguments_are_einval) {
  struct tl_store *st = (struct tl_store *)0x1;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_open(NULL, &st, NULL, &err), TL_EINVAL);
  ck_assert_ptr_eq(st, (struct tl_store *)0x1);
  ck_assert_int_eq(tl_store_open(tu_tmp_path("x.db"), NULL, NULL, &err), TL_EINVAL);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 0);

  st = open_ok(":memory:", NULL);
  int64_t id;
  ck_assert_int_eq(tl_store_device(st, NULL, &id, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_op_get(st, 1, NULL, NULL, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_op_put_batch(st, 1, NULL, 1, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_bn_put(st, "m", 1, "c", NULL, 4, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_event_append(st, NULL, NULL, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_frontier_put(st, "m", 1, NULL, "s", NULL, 0, NULL), TL_EINVAL);
  tl_store_close(st);
}
END_TEST

/* -------------------------------------------------------------- device */

START_TEST(device_is_found_or_added_with_a_stable_id) {
  const char *path = tu_tmp_path("cache.db");
  struct tl_store *st = open_ok(path, NULL);
  int64_t first = device_of(st);
  ck_assert_int_eq(device_of(st), first);

  struct tl_device_fp other = test_fp;
  other.threads = 2; /* another thread count is another device */
  int64_t second = -1;
  ck_assert_int_eq(tl_store_device(st, &other, &second, NULL), 0);
  ck_assert_int_gt(second, 0);
  ck_assert_int_ne(second, first);
  other = test_fp;
  snprintf(other.blas, sizeof other.blas, "OpenBLAS 0.3.26");
  int64_t third = -1;
  ck_assert_int_eq(tl_store_device(st, &other, &third, NULL), 0);
  ck_assert_int_ne(third, first);
  ck_assert_int_ne(third, second);
  tl_store_close(st);

  st = open_ok(path, NULL);
  ck_assert_int_eq(device_of(st), first);
  tl_store_close(st);
}
END_TEST

START_TEST(device_rejects_unterminated_text_and_negative_numbers) {
  struct tl_store *st = open_ok(":memory:", NULL);
  struct tl_error err = {{0}};
  int64_t id = 42;
  struct tl_device_fp fp = test_fp;
  memset(fp.cpu_model, 'x', sizeof fp.cpu_model);
  ck_assert_int_eq(tl_store_device(st, &fp, &id, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "not terminated"));
  fp = test_fp;
  fp.cores = -1;
  ck_assert_int_eq(tl_store_device(st, &fp, &id, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "cores -1"));
  ck_assert_int_eq(id, 42);
  tl_store_close(st);
}
END_TEST

/* ---------------------------------------------------------- op latency */

START_TEST(op_latencies_round_trip_exactly) {
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  int64_t dev = device_of(st);
  const struct tl_op_latency rows[] = {
      {"conv a", 0.1, 1, 0},
      {"conv b", 1e-300, INT64_MAX, INT64_MIN},
      {"conv c", DBL_MAX, (int64_t)1 << 62, 1700000000},
      {"conv d", 12345.678901234567, 7, -1},
      {"conv e", 3.0, 0, 1},
      {"conv \xc3\xa9\"'; DROP TABLE op_latency; --", -2.5, 5, 5},
  };
  size_t n = sizeof rows / sizeof rows[0];
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, n, NULL), 0);
  for (size_t i = 0; i < n; i++) {
    struct tl_op_latency got = {0};
    ck_assert_int_eq(tl_store_op_get(st, dev, rows[i].signature, &got, NULL), 0);
    ck_assert_ptr_eq(got.signature, rows[i].signature);
    ck_assert_mem_eq(&got.median_us, &rows[i].median_us, sizeof(double));
    ck_assert_int_eq(got.runs, rows[i].runs);
    ck_assert_int_eq(got.measured_at_s, rows[i].measured_at_s);
  }
  tl_store_close(st);
}
END_TEST

START_TEST(op_put_replaces_a_signature_and_get_of_a_missing_one_is_enoent) {
  struct tl_store *st = open_ok(":memory:", NULL);
  int64_t dev = device_of(st);
  struct tl_op_latency row = {"pool", 2.0, 3, 4};
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, &row, 1, NULL), 0);
  row.median_us = 2.5;
  row.runs = 30;
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, &row, 1, NULL), 0);
  struct tl_op_latency got;
  ck_assert_int_eq(tl_store_op_get(st, dev, "pool", &got, NULL), 0);
  ck_assert_double_eq(got.median_us, 2.5);
  ck_assert_int_eq(got.runs, 30);

  struct tl_error err = {{0}};
  struct tl_op_latency untouched = {"keep", 1, 2, 3};
  ck_assert_int_eq(tl_store_op_get(st, dev, "gemm", &untouched, &err), TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "\"gemm\""));
  ck_assert_str_eq(untouched.signature, "keep");
  ck_assert_int_eq(tl_store_op_get(st, dev + 1, "pool", &got, NULL), TL_ENOENT);
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, NULL, 0, NULL), 0);
  tl_store_close(st);
}
END_TEST

START_TEST(op_put_batch_is_all_or_nothing) {
  struct tl_store *st = open_ok(":memory:", NULL);
  int64_t dev = device_of(st);
  struct tl_op_latency rows[] = {{"a", 1, 1, 1}, {"b", 2, 1, 1}, {"c", NAN, 1, 1}, {"d", 4, 1, 1}};
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, 4, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "row 2"));
  struct tl_op_latency got;
  ck_assert_int_eq(tl_store_op_get(st, dev, "a", &got, NULL), TL_ENOENT);
  ck_assert_int_eq(tl_store_op_get(st, dev, "b", &got, NULL), TL_ENOENT);

  rows[2].signature = NULL;
  rows[2].median_us = 3;
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, 4, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "no signature"));

  /* a device the store did not give */
  rows[2].signature = "c";
  ck_assert_int_eq(tl_store_op_put_batch(st, dev + 100, rows, 4, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "device"));

  /* the store is still usable after the failures */
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, 4, &err), 0);
  ck_assert_int_eq(tl_store_op_get(st, dev, "d", &got, NULL), 0);
  tl_store_close(st);
}
END_TEST

struct collected {
  int n;
  int stop_after; /* 0: never */
  char sig[8][32];
  double median[8];
};

static int collect(void *ctx, const struct tl_op_latency *row) {
  struct collected *c = ctx;
  ck_assert_int_lt(c->n, 8);
  snprintf(c->sig[c->n], sizeof c->sig[c->n], "%s", row->signature);
  c->median[c->n] = row->median_us;
  c->n++;
  return c->stop_after > 0 && c->n == c->stop_after ? 77 : 0;
}

START_TEST(op_foreach_visits_one_device_in_signature_order) {
  struct tl_store *st = open_ok(":memory:", NULL);
  int64_t dev = device_of(st);
  struct tl_device_fp other_fp = test_fp;
  other_fp.cores = 4;
  int64_t other = 0;
  ck_assert_int_eq(tl_store_device(st, &other_fp, &other, NULL), 0);
  struct tl_op_latency rows[] = {{"c", 3, 1, 1}, {"a", 1, 1, 1}, {"b", 2, 1, 1}};
  struct tl_op_latency foreign_row = {"aa", 9, 1, 1};
  ck_assert_int_eq(tl_store_op_put_batch(st, dev, rows, 3, NULL), 0);
  ck_assert_int_eq(tl_store_op_put_batch(st, other, &foreign_row, 1, NULL), 0);

  struct collected c = {0};
  ck_assert_int_eq(tl_store_op_foreach(st, dev, collect, &c, NULL), 0);
  ck_assert_int_eq(c.n, 3);
  ck_assert_str_eq(c.sig[0], "a");
  ck_assert_str_eq(c.sig[1], "b");
  ck_assert_str_eq(c.sig[2], "c");
  ck_assert_double_eq(c.median[2], 3);

  struct collected stop = {.stop_after = 2};
  ck_assert_int_eq(tl_store_op_foreach(st, dev, collect, &stop, NULL), 77);
  ck_assert_int_eq(stop.n, 2);

  struct collected none = {0};
  ck_assert_int_eq(tl_store_op_foreach(st, other + 1, collect, &none, NULL), 0);
  ck_assert_int_eq(none.n, 0);
  /* a stopped walk leaves the statement ready for the next one */
  struct collected again = {0};
  ck_assert_int_eq(tl_store_op_foreach(st, dev, collect, &again, NULL), 0);
  ck_assert_int_eq(again.n, 3);
  tl_store_close(st);
}
END_TEST

/* ------------------------------------------------------------ subnets */

START_TEST(accuracy_round_trips_with_keys_above_2_pow_53) {
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  const uint64_t keys[] = {((uint64_t)1 << 53) + 1, ((uint64_t)1 << 63) + 5, UINT64_MAX, 0};
  for (size_t i = 0; i < 4; i++) {
    char spec[32];
    snprintf(spec, sizeof spec, "r=%zu", i);
    struct tl_subnet_accuracy acc = {spec, 0.1 * (double)(i + 1), 100 + (int64_t)i, (int)(i % 2)};
    ck_assert_int_eq(tl_store_accuracy_put(st, "abcdef0123456789", keys[i], "c1", &acc, NULL), 0);
  }
  for (size_t i = 0; i < 4; i++) {
    struct tl_subnet_accuracy *got = NULL;
    char spec[32];
    snprintf(spec, sizeof spec, "r=%zu", i);
    double want = 0.1 * (double)(i + 1);
    ck_assert_int_eq(tl_store_accuracy_get(st, "abcdef0123456789", keys[i], "c1", &got, NULL), 0);
    ck_assert_str_eq(got->spec, spec);
    ck_assert_mem_eq(&got->accuracy, &want, sizeof want);
    ck_assert_int_eq(got->images, 100 + (int64_t)i);
    ck_assert_int_eq(got->recalibrated, (int)(i % 2));
    free(got);
  }
  /* the key is the whole triple */
  struct tl_subnet_accuracy *got = (struct tl_subnet_accuracy *)0x1;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_accuracy_get(st, "abcdef0123456789", keys[0], "c2", &got, &err),
                   TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "0020000000000001"));
  ck_assert_int_eq(tl_store_accuracy_get(st, "other", keys[0], "c1", &got, NULL), TL_ENOENT);
  ck_assert_int_eq(tl_store_accuracy_get(st, "abcdef0123456789", keys[0] + 1, "c1", &got, NULL),
                   TL_ENOENT);
  ck_assert_ptr_eq(got, (struct tl_subnet_accuracy *)0x1);
  tl_store_close(st);
}
END_TEST

START_TEST(accuracy_put_replaces_and_rejects_bad_values) {
  struct tl_store *st = open_ok(":memory:", NULL);
  struct tl_subnet_accuracy acc = {"r=16", 0.5, 64, 0};
  ck_assert_int_eq(tl_store_accuracy_put(st, "m", 3, "c", &acc, NULL), 0);
  acc = (struct tl_subnet_accuracy){"r=16 ", 0.75, 1024, 1};
  ck_assert_int_eq(tl_store_accuracy_put(st, "m", 3, "c", &acc, NULL), 0);
  struct tl_subnet_accuracy *got = NULL;
  ck_assert_int_eq(tl_store_accuracy_get(st, "m", 3, "c", &got, NULL), 0);
  ck_assert_str_eq(got->spec, "r=16 ");
  ck_assert_double_eq(got->accuracy, 0.75);
  ck_assert_int_eq(got->images, 1024);
  ck_assert_int_eq(got->recalibrated, 1);
  free(got);

  acc.accuracy = NAN;
  ck_assert_int_eq(tl_store_accuracy_put(st, "m", 3, "c", &acc, NULL), TL_EINVAL);
  acc.accuracy = 0.1;
  acc.recalibrated = 2;
  ck_assert_int_eq(tl_store_accuracy_put(st, "m", 3, "c", &acc, NULL), TL_EINVAL);
  acc.recalibrated = 0;
  acc.spec = NULL;
  ck_assert_int_eq(tl_store_accuracy_put(st, "m", 3, "c", &acc, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_store_accuracy_get(st, "m", 3, "c", &got, NULL), 0);
  ck_assert_double_eq(got->accuracy, 0.75);
  free(got);
  tl_store_close(st);
}
END_TEST

START_TEST(bn_stats_round_trip_blobs_with_nul_bytes) {
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  unsigned char blob[1000];
  for (size_t i = 0; i < sizeof blob; i++)
    blob[i] = (unsigned char)(i % 3 == 0 ? 0 : i);
  uint64_t key = UINT64_MAX - 1;
  ck_assert_int_eq(tl_store_bn_put(st, "m", key, "c", blob, sizeof blob, NULL), 0);
  void *got = NULL;
  size_t len = 0;
  ck_assert_int_eq(tl_store_bn_get(st, "m", key, "c", &got, &len, NULL), 0);
  ck_assert_uint_eq(len, sizeof blob);
  ck_assert_mem_eq(got, blob, sizeof blob);
  free(got);

  /* replace with fewer bytes, then with none */
  ck_assert_int_eq(tl_store_bn_put(st, "m", key, "c", "\0\1\0", 3, NULL), 0);
  ck_assert_int_eq(tl_store_bn_get(st, "m", key, "c", &got, &len, NULL), 0);
  ck_assert_uint_eq(len, 3);
  ck_assert_mem_eq(got, "\0\1\0", 3);
  free(got);
  ck_assert_int_eq(tl_store_bn_put(st, "m", key, "c", NULL, 0, NULL), 0);
  got = NULL;
  len = 99;
  ck_assert_int_eq(tl_store_bn_get(st, "m", key, "c", &got, &len, NULL), 0);
  ck_assert_ptr_nonnull(got);
  ck_assert_uint_eq(len, 0);
  free(got);

  got = (void *)0x1;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_bn_get(st, "m", key, "c0", &got, &len, &err), TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "BN statistics"));
  ck_assert_ptr_eq(got, (void *)0x1);
  tl_store_close(st);
}
END_TEST

/* ------------------------------------------------------------ frontier */

static void assert_frontier(struct tl_store *st, int64_t dev, const struct tl_frontier_entry *want,
                            size_t n) {
  struct tl_frontier_entry *got = NULL;
  size_t count = 99;
  struct tl_error err = {{0}};
  int rc = tl_store_frontier_get(st, "m", dev, "c", "d=1,2 w=.5,1", &got, &count, &err);
  ck_assert_msg(rc == 0, "%d: %s", rc, err.msg);
  ck_assert_uint_eq(count, n);
  if (n == 0)
    ck_assert_ptr_null(got);
  for (size_t i = 0; i < n; i++) {
    ck_assert_str_eq(got[i].spec, want[i].spec);
    ck_assert_uint_eq(got[i].subnet_key, want[i].subnet_key);
    ck_assert_mem_eq(&got[i].predicted_ms, &want[i].predicted_ms, sizeof(double));
    ck_assert_mem_eq(&got[i].predicted_mib, &want[i].predicted_mib, sizeof(double));
    ck_assert_mem_eq(&got[i].accuracy, &want[i].accuracy, sizeof(double));
  }
  free(got);
}

START_TEST(frontier_put_replaces_the_old_list) {
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  int64_t dev = device_of(st);
  const char *space = "d=1,2 w=.5,1";
  const struct tl_frontier_entry first[] = {
      {"r=32 d=2 w=1", UINT64_MAX, 8.125, 40.5, 0.91},
      {"r=24 d=2 w=.5", ((uint64_t)1 << 53) + 3, 4.0000001, 22.0, 0.875},
      {"r=16 d=1 w=.5", 1, 1.5, 10.75, 0.5},
  };
  ck_assert_int_eq(tl_store_frontier_put(st, "m", dev, "c", space, first, 3, NULL), 0);
  assert_frontier(st, dev, first, 3);

  const struct tl_frontier_entry second[] = {
      {"r=16 d=1 w=.5", 1, 1.25, 10.5, 0.51},
      {"r=32 d=2 w=1", UINT64_MAX, 7.0, 40.0, 0.9},
  };
  ck_assert_int_eq(tl_store_frontier_put(st, "m", dev, "c", space, second, 2, NULL), 0);
  assert_frontier(st, dev, second, 2);

  /* a failed put leaves the list as it was */
  struct tl_frontier_entry bad[] = {second[0], second[1]};
  bad[1].predicted_ms = NAN;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_frontier_put(st, "m", dev, "c", space, bad, 2, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "entry 1"));
  assert_frontier(st, dev, second, 2);
  ck_assert_int_eq(tl_store_frontier_put(st, "m", dev + 9, "c", space, second, 2, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "device"));

  /* an empty frontier is stored, and differs from none */
  ck_assert_int_eq(tl_store_frontier_put(st, "m", dev, "c", space, NULL, 0, NULL), 0);
  assert_frontier(st, dev, NULL, 0);
  struct tl_frontier_entry *got = (struct tl_frontier_entry *)0x1;
  size_t count = 99;
  ck_assert_int_eq(tl_store_frontier_get(st, "m", dev, "c", "d=1", &got, &count, &err), TL_ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "no frontier"));
  ck_assert_ptr_eq(got, (struct tl_frontier_entry *)0x1);
  ck_assert_uint_eq(count, 99);
  tl_store_close(st);
}
END_TEST

/* -------------------------------------------------------------- events */

START_TEST(events_come_newest_first_and_up_to_the_limit) {
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  char to[5][16];
  int64_t ids[5];
  for (int i = 0; i < 5; i++) {
    snprintf(to[i], sizeof to[i], "r=%d", 16 + 4 * i);
    struct tl_switch_event ev = {
        .id = 999,                                 /* ignored */
        .time_ms = 1700000000000 + 1000 * (5 - i), /* time may go backwards */
        .model = "mnv2",
        .from_spec = i == 0 ? NULL : to[i - 1],
        .to_spec = to[i],
        .reason = i % 2 ? "budget at risk" : "stable, going up",
        .state = i == 4 ? NULL : "{\"freq_ratio\":0.5,\"cpu_share\":1}",
    };
    ck_assert_int_eq(tl_store_event_append(st, &ev, &ids[i], NULL), 0);
    if (i > 0)
      ck_assert_int_gt(ids[i], ids[i - 1]);
  }
  ck_assert_int_eq(event_count(st), 5);

  struct tl_switch_event *ev = NULL;
  size_t n = 0;
  ck_assert_int_eq(tl_store_event_last(st, NULL, 3, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 3);
  for (size_t k = 0; k < 3; k++) {
    int i = 4 - (int)k;
    ck_assert_int_eq(ev[k].id, ids[i]);
    ck_assert_int_eq(ev[k].time_ms, 1700000000000 + 1000 * (5 - i));
    ck_assert_str_eq(ev[k].model, "mnv2");
    ck_assert_str_eq(ev[k].from_spec, to[i - 1]);
    ck_assert_str_eq(ev[k].to_spec, to[i]);
    ck_assert_str_eq(ev[k].reason, i % 2 ? "budget at risk" : "stable, going up");
  }
  ck_assert_ptr_null(ev[0].state);
  ck_assert_str_eq(ev[1].state, "{\"freq_ratio\":0.5,\"cpu_share\":1}");
  free(ev);

  ck_assert_int_eq(tl_store_event_last(st, NULL, 100, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 5);
  ck_assert_int_eq(ev[4].id, ids[0]);
  ck_assert_ptr_null(ev[4].from_spec);
  free(ev);

  /* another model's events are not this one's */
  struct tl_switch_event other = {0, 1700000009000, "resnet", NULL, "r=224", "start", NULL};
  ck_assert_int_eq(tl_store_event_append(st, &other, NULL, NULL), 0);
  ck_assert_int_eq(tl_store_event_last(st, "mnv2", 2, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 2);
  ck_assert_int_eq(ev[0].id, ids[4]);
  ck_assert_int_eq(ev[1].id, ids[3]);
  free(ev);
  ck_assert_int_eq(tl_store_event_last(st, "resnet", 10, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 1);
  ck_assert_str_eq(ev[0].to_spec, "r=224");
  free(ev);
  ck_assert_int_eq(tl_store_event_last(st, NULL, 10, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 6);
  ck_assert_str_eq(ev[0].model, "resnet");
  free(ev);
  ck_assert_int_eq(tl_store_event_last(st, "vgg", 10, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 0);

  ev = (struct tl_switch_event *)0x1;
  ck_assert_int_eq(tl_store_event_last(st, NULL, 0, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 0);
  ck_assert_ptr_null(ev);
  ck_assert_int_eq(tl_store_event_last(st, NULL, -1, &ev, &n, NULL), TL_EINVAL);
  tl_store_close(st);
}
END_TEST

START_TEST(event_trim_keeps_the_newest_and_ids_are_not_reused) {
  struct tl_store *st = open_ok(":memory:", NULL);
  int64_t last = 0;
  for (int i = 0; i < 6; i++) {
    struct tl_switch_event ev = {0, i, "m", NULL, "s", "r", NULL};
    ck_assert_int_eq(tl_store_event_append(st, &ev, &last, NULL), 0);
  }
  ck_assert_int_eq(tl_store_event_trim(st, 10, NULL), 0);
  ck_assert_int_eq(event_count(st), 6);
  ck_assert_int_eq(tl_store_event_trim(st, 2, NULL), 0);
  ck_assert_int_eq(event_count(st), 2);
  struct tl_switch_event *ev = NULL;
  size_t n = 0;
  ck_assert_int_eq(tl_store_event_last(st, NULL, 10, &ev, &n, NULL), 0);
  ck_assert_uint_eq(n, 2);
  ck_assert_int_eq(ev[0].id, last);
  ck_assert_int_eq(ev[1].time_ms, 4);
  free(ev);

  ck_assert_int_eq(tl_store_event_trim(st, 0, NULL), 0);
  ck_assert_int_eq(event_count(st), 0);
  struct tl_switch_event next = {0, 9, "m", NULL, "s", "r", NULL};
  int64_t id = 0;
  ck_assert_int_eq(tl_store_event_append(st, &next, &id, NULL), 0);
  ck_assert_int_gt(id, last);
  ck_assert_int_eq(tl_store_event_trim(st, -1, NULL), TL_EINVAL);
  tl_store_close(st);
}
END_TEST

START_TEST(event_append_needs_model_to_spec_and_reason) {
  struct tl_store *st = open_ok(":memory:", NULL);
  struct tl_error err = {{0}};
  struct tl_switch_event ev = {0, 1, NULL, NULL, "s", "r", NULL};
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "needs a model"));
  ev.model = "m";
  ev.reason = NULL;
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, NULL), TL_EINVAL);
  ev.reason = "r";
  ev.to_spec = NULL;
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, NULL), TL_EINVAL);
  ck_assert_int_eq(event_count(st), 0);
  tl_store_close(st);
}
END_TEST

/* ------------------------------------------------------ bad files found */

/* Opens path, which holds a bad file with the given bytes, and checks that
 * it was set aside as kind with those bytes intact and that the new cache
 * is empty, usable and reopens as is. */
static void assert_set_aside(const char *path, const char *kind, enum tl_store_outcome outcome,
                             const unsigned char *bytes, size_t len,
                             struct tl_store_open_report *rep) {
  struct tl_store *st = open_ok(path, rep);
  ck_assert_int_eq(rep->outcome, outcome);
  char prefix[PATH_MAX + 32];
  snprintf(prefix, sizeof prefix, "%s.%s-", path, kind);
  ck_assert_msg(strncmp(rep->aside_path, prefix, strlen(prefix)) == 0, "aside %s", rep->aside_path);
  ck_assert_ptr_nonnull(strstr(rep->message, rep->aside_path));
  ck_assert_ptr_nonnull(strstr(rep->message, "started an empty cache"));

  size_t got_len = 0;
  unsigned char *got = tu_read_bytes(rep->aside_path, &got_len);
  ck_assert_uint_eq(got_len, len);
  ck_assert_mem_eq(got, bytes, len);
  free(got);

  ck_assert_int_eq(event_count(st), 0);
  struct tl_switch_event ev = {0, 1, "m", NULL, "s", "r", NULL};
  ck_assert_int_eq(tl_store_event_append(st, &ev, NULL, NULL), 0);
  tl_store_close(st);
  struct tl_store_open_report again;
  st = open_ok(path, &again);
  ck_assert_int_eq(again.outcome, TL_STORE_OPENED);
  ck_assert_int_eq(event_count(st), 1);
  tl_store_close(st);
  ck_assert_int_eq(sqlite_int(path, "PRAGMA application_id"), TL_STORE_APPLICATION_ID);
}

START_TEST(garbage_file_is_set_aside_and_replaced) {
  const char *path = tu_tmp_path("cache.db");
  unsigned char garbage[8192];
  for (size_t i = 0; i < sizeof garbage; i++)
    garbage[i] = (unsigned char)(i * 7 + 3);
  tu_write_bytes(path, garbage, sizeof garbage);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, garbage, sizeof garbage, &rep);
  ck_assert_int_eq(rep.found_version, 0);
  ck_assert_ptr_nonnull(strstr(rep.message, "not an SQLite database"));
}
END_TEST

START_TEST(short_text_file_is_set_aside) {
  const char *path = tu_tmp_path("cache.db");
  const char text[] = "not a database\n";
  tu_write_bytes(path, text, sizeof text - 1);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, (const unsigned char *)text,
                   sizeof text - 1, &rep);
}
END_TEST

START_TEST(truncated_database_is_set_aside) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  size_t len = 0;
  unsigned char *whole = tu_read_bytes(path, &len);
  ck_assert_uint_ge(len, 16 * 4096); /* enough pages that half is missing some */
  ck_assert_int_eq(truncate(path, (off_t)(len / 2)), 0);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, whole, len / 2, &rep);
  ck_assert_ptr_nonnull(strstr(rep.message, "damaged"));
  free(whole);
}
END_TEST

START_TEST(foreign_database_is_set_aside) {
  const char *path = tu_tmp_path("cache.db");
  sqlite_exec(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
                    "INSERT INTO notes (body) VALUES ('keep me'), ('and me');");
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "foreign", TL_STORE_REBUILT_FOREIGN, bytes, len, &rep);
  free(bytes);
  ck_assert_int_eq(rep.found_version, 0);
  ck_assert_ptr_nonnull(strstr(rep.message, "another program's"));
  /* still the other program's data */
  ck_assert_int_eq(sqlite_int(rep.aside_path, "SELECT count(*) FROM notes"), 2);
}
END_TEST

START_TEST(database_with_another_application_id_is_foreign) {
  const char *path = tu_tmp_path("cache.db");
  sqlite_exec(path, "PRAGMA application_id = 305419896"); /* 0x12345678 */
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "foreign", TL_STORE_REBUILT_FOREIGN, bytes, len, &rep);
  free(bytes);
  ck_assert_ptr_nonnull(strstr(rep.message, "0x12345678"));
}
END_TEST

START_TEST(newer_schema_version_is_set_aside) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", TL_STORE_SCHEMA_VERSION + 1);
  sqlite_exec(path, sql);
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "newer", TL_STORE_REBUILT_NEWER, bytes, len, &rep);
  free(bytes);
  ck_assert_int_eq(rep.found_version, TL_STORE_SCHEMA_VERSION + 1);
  ck_assert_ptr_nonnull(strstr(rep.message, "newer tailor"));
  ck_assert_int_eq(sqlite_int(rep.aside_path, "PRAGMA user_version"), TL_STORE_SCHEMA_VERSION + 1);
}
END_TEST

START_TEST(changed_schema_is_set_aside_as_corrupt) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  sqlite_exec(path, "DROP TABLE event");
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, bytes, len, &rep);
  free(bytes);
  ck_assert_ptr_nonnull(strstr(rep.message, "it lacks table \"event\""));
}
END_TEST

START_TEST(redefined_table_is_set_aside_as_corrupt) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  sqlite_exec(path, "DROP TABLE event; CREATE TABLE event (id INTEGER PRIMARY KEY)");
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, bytes, len, &rep);
  free(bytes);
  ck_assert_ptr_nonnull(strstr(rep.message, "it changed table \"event\""));
}
END_TEST

START_TEST(extra_table_with_our_id_is_set_aside_as_corrupt) {
  const char *path = tu_tmp_path("cache.db");
  make_filled_cache(path);
  sqlite_exec(path, "CREATE TABLE zzz (x)");
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(path, &len);
  struct tl_store_open_report rep;
  assert_set_aside(path, "corrupt", TL_STORE_REBUILT_CORRUPT, bytes, len, &rep);
  free(bytes);
  ck_assert_ptr_nonnull(strstr(rep.message, "it has an unexpected table \"zzz\""));
}
END_TEST

START_TEST(companion_files_move_with_the_file) {
  const char *path = tu_tmp_path("cache.db");
  tu_write_bytes(path, "garbage garbage garbage", 23);
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", path);
  tu_write_bytes(wal, "old wal bytes", 13);
  char journal[PATH_MAX + 16];
  snprintf(journal, sizeof journal, "%s-journal", path);
  tu_write_bytes(journal, "old journal", 11);

  struct tl_store_open_report rep;
  struct tl_store *st = open_ok(path, &rep);
  ck_assert_int_eq(rep.outcome, TL_STORE_REBUILT_CORRUPT);
  ck_assert_int_eq(event_count(st), 0);
  tl_store_close(st);

  char moved[PATH_MAX + 16];
  snprintf(moved, sizeof moved, "%s-wal", rep.aside_path);
  size_t len = 0;
  unsigned char *got = tu_read_bytes(moved, &len);
  ck_assert_uint_eq(len, 13);
  ck_assert_mem_eq(got, "old wal bytes", 13);
  free(got);
  snprintf(moved, sizeof moved, "%s-journal", rep.aside_path);
  ck_assert(file_exists(moved));
  ck_assert(!file_exists(journal));
}
END_TEST

START_TEST(set_aside_never_overwrites_an_earlier_one) {
  const char *path = tu_tmp_path("cache.db");
  struct tl_store_open_report rep1, rep2;
  tu_write_bytes(path, "first garbage", 13);
  tl_store_close(open_ok(path, &rep1));
  tu_write_bytes(path, "second garbage", 14);
  tl_store_close(open_ok(path, &rep2));
  ck_assert_int_eq(rep2.outcome, TL_STORE_REBUILT_CORRUPT);
  ck_assert_str_ne(rep1.aside_path, rep2.aside_path);
  size_t len = 0;
  unsigned char *got = tu_read_bytes(rep1.aside_path, &len);
  ck_assert_uint_eq(len, 13);
  ck_assert_mem_eq(got, "first garbage", 13);
  free(got);
  got = tu_read_bytes(rep2.aside_path, &len);
  ck_assert_uint_eq(len, 14);
  free(got);
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 3);
}
END_TEST

/* ------------------------------------------------- no cache to be had */

START_TEST(missing_directory_is_eio_naming_the_path) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/no/such/dir/cache.db", tu_tmpdir());
  struct tl_store *st = (struct tl_store *)0x1;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_open(path, &st, NULL, &err), TL_EIO);
  ck_assert_ptr_eq(st, (struct tl_store *)0x1);
  ck_assert_ptr_nonnull(strstr(err.msg, path));
  ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

START_TEST(unwritable_directory_is_eio_naming_the_path) {
  if (geteuid() == 0)
    return; /* root writes anyway; nothing to see */
  ck_assert_int_eq(chmod(tu_tmpdir(), 0500), 0);
  const char *path = tu_tmp_path("cache.db");
  struct tl_store *st = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_open(path, &st, NULL, &err), TL_EIO);
  ck_assert_ptr_null(st);
  ck_assert_ptr_nonnull(strstr(err.msg, path));
  ck_assert_ptr_nonnull(strstr(err.msg, "Permission denied"));
}
END_TEST

START_TEST(directory_at_the_path_is_eio) {
  const char *path = tu_tmp_path("cache.db");
  ck_assert_int_eq(mkdir(path, 0700), 0);
  struct tl_store *st = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_store_open(path, &st, NULL, &err), TL_EIO);
  ck_assert_ptr_null(st);
  ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
}
END_TEST

/* --------------------------------------------------------------- suite */

static Suite *store_suite(void) {
  Suite *s = suite_create("store");

  TCase *tc = tcase_create("lifecycle");
  tu_add_tmpdir(tc, "store");
  tcase_add_test(tc, fresh_file_gets_schema_version_in_wal_mode_and_mode_0600);
  tcase_add_test(tc, reopen_uses_the_file_without_rebuilding);
  tcase_add_test(tc, empty_existing_file_becomes_a_cache);
  tcase_add_test(tc, memory_cache_works_without_a_file);
  tcase_add_test(tc, data_survives_close_and_reopen);
  tcase_add_test(tc, two_connections_share_one_file);
  tcase_add_test(tc, commits_left_in_the_wal_by_a_killed_process_are_kept);
  tcase_add_test(tc, close_accepts_null);
  tcase_add_test(tc, null_arguments_are_einval);
  suite_add_tcase(s, tc);

  tc = tcase_create("values");
  tu_add_tmpdir(tc, "store");
  tcase_add_test(tc, device_is_found_or_added_with_a_stable_id);
  tcase_add_test(tc, device_rejects_unterminated_text_and_negative_numbers);
  tcase_add_test(tc, op_latencies_round_trip_exactly);
  tcase_add_test(tc, op_put_replaces_a_signature_and_get_of_a_missing_one_is_enoent);
  tcase_add_test(tc, op_put_batch_is_all_or_nothing);
  tcase_add_test(tc, op_foreach_visits_one_device_in_signature_order);
  tcase_add_test(tc, accuracy_round_trips_with_keys_above_2_pow_53);
  tcase_add_test(tc, accuracy_put_replaces_and_rejects_bad_values);
  tcase_add_test(tc, bn_stats_round_trip_blobs_with_nul_bytes);
  tcase_add_test(tc, frontier_put_replaces_the_old_list);
  tcase_add_test(tc, events_come_newest_first_and_up_to_the_limit);
  tcase_add_test(tc, event_trim_keeps_the_newest_and_ids_are_not_reused);
  tcase_add_test(tc, event_append_needs_model_to_spec_and_reason);
  suite_add_tcase(s, tc);

  tc = tcase_create("bad_files");
  tu_add_tmpdir(tc, "store");
  tcase_add_test(tc, garbage_file_is_set_aside_and_replaced);
  tcase_add_test(tc, short_text_file_is_set_aside);
  tcase_add_test(tc, truncated_database_is_set_aside);
  tcase_add_test(tc, foreign_database_is_set_aside);
  tcase_add_test(tc, database_with_another_application_id_is_foreign);
  tcase_add_test(tc, newer_schema_version_is_set_aside);
  tcase_add_test(tc, changed_schema_is_set_aside_as_corrupt);
  tcase_add_test(tc, redefined_table_is_set_aside_as_corrupt);
  tcase_add_test(tc, extra_table_with_our_id_is_set_aside_as_corrupt);
  tcase_add_test(tc, companion_files_move_with_the_file);
  tcase_add_test(tc, set_aside_never_overwrites_an_earlier_one);
  tcase_add_test(tc, missing_directory_is_eio_naming_the_path);
  tcase_add_test(tc, unwritable_directory_is_eio_naming_the_path);
  tcase_add_test(tc, directory_at_the_path_is_eio);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  int failures = tu_run(store_suite());
  return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
