/*
 * faults.c - tailord when what is under it fails.
 *
 * Its sockets: reads and writes that move a few bytes, and calls that
 * fail with EINTR or EAGAIN (tests/tailord/sockfault.c, preloaded), on
 * every path an answer takes (the loop's, the worker's own write, a
 * leased connection's reads).  No byte of a request or an answer is lost.
 *
 * The disk under its cache: full while it serves, full at start for a
 * device the cache has not seen, read-only at start.  The cache is then
 * never a reason not to serve: tailord keeps serving (from a cache in
 * memory when it must), says why in its log, and stores again once the
 * disk has room; the file itself is never touched by a disk that refuses
 * writes.
 *
 * The cache's directory is a tmpfs of a few pages, mounted in a mount
 * namespace of the test's own (each test runs in a child of its own, so
 * the mount goes with it whatever happens), holding a copy of the shared
 * cache.  As root this is the deterministic way to a full or read-only
 * disk: permissions do not bind root.  A process that may not mount
 * (no CAP_SYS_ADMIN) says so on stderr and skips these tests.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------ sockets */

/* Launches d (prepared) with the socket faults preloaded and their counts
 * reported to report at its exit (sockfault.c).  A sanitizer's runtime
 * would refuse a preload before it: it is told not to mind. */
static void launch_with_socket_faults(struct daemon *d, const char *report) {
  char so[PATH_MAX + 32], asan[2048];
  snprintf(so, sizeof so, "%s/tests/libsockfault.so", build_root);
  ck_assert_msg(access(so, R_OK) == 0, "%s: %s", so, strerror(errno));
  const char *was = getenv("ASAN_OPTIONS");
  char *saved = was != NULL ? strdup(was) : NULL;
  snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", was != NULL ? was : "",
           was != NULL && was[0] != '\0' ? ":" : "");
  ck_assert(setenv("LD_PRELOAD", so, 1) == 0 && setenv("TAILOR_SOCKFAULT_REPORT", report, 1) == 0 &&
            setenv("ASAN_OPTIONS", asan, 1) == 0);
  daemon_launch(d);
  unsetenv("LD_PRELOAD");
  unsetenv("TAILOR_SOCKFAULT_REPORT");
  if (saved != NULL)
    ck_assert_int_eq(setenv("ASAN_OPTIONS", saved, 1), 0);
  else
    unsetenv("ASAN_OPTIONS");
  free(saved);
}

/* How many calls the preload faulted with kind, from its report. */
static long faulted(const char *report_text, const char *kind) {
  const char *p = strstr(report_text, kind);
  ck_assert_msg(p != NULL, "the socket faults' report has no \"%s\": %s", kind, report_text);
  return strtol(p + strlen(kind), NULL, 10);
}

/* Checks one binary answer on c: 200, its id, and logits equal to want. */
static void expect_logits(struct client *c, const char *id, const unsigned char want[40]) {
  struct resp r;
  ck_assert_int_eq(client_read(c, &r), 0);
  ck_assert_msg(r.status == 200, "%s: %d %s", id, r.status, r.body);
  ck_assert_uint_eq(r.len, r.json_len + 40);
  json_t *v = json_loadb(r.body, r.json_len, 0, NULL);
  ck_assert_ptr_nonnull(v);
  ck_assert_str_eq(json_string_value(json_object_get(v, "id")), id);
  json_decref(v);
  ck_assert_msg(memcmp(r.body + r.json_len, want, 40) == 0, "%s: other logits", id);
  resp_free(&r);
}

START_TEST(sockets_that_move_few_bytes_or_fail_with_eintr_or_eagain_lose_nothing) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  struct daemon d;
  daemon_prepare(&d, &o, NULL);
  char report[PATH_MAX + 32];
  snprintf(report, sizeof report, "%s/sockfault.txt", d.dir);
  launch_with_socket_faults(&d, report);
  daemon_wait_ready(&d, READY_DEADLINE_S);
  /* one subnet answers all, so that every answer to an image is the same */
  json_decref(pin_fmnist(&d, warm.spec[warm.n - 1]));

  /* each image alone, on a connection of its own: what it must get */
  unsigned char want[N_IMAGES][40];
  for (int k = 0; k < N_IMAGES; k++) {
    struct client c = client_open(d.sock);
    struct resp r;
    ck_assert_int_eq(binary_infer(&c, "fmnist", k, "alone", &r), 0);
    ck_assert_msg(r.status == 200 && r.len == r.json_len + 40, "image %d: %d %s", k, r.status,
                  r.body);
    memcpy(want[k], r.body + r.json_len, 40);
    resp_free(&r);
    client_close(&c);
  }
  /* every image pipelined in one write on a keep-alive connection, again
   * and again: answered in order, each as alone */
  enum { ROUNDS = 25 };
  static char all[N_IMAGES * BINARY_MSG_MAX];
  struct client c = client_open(d.sock);
  for (int round = 0; round < ROUNDS; round++) {
    size_t len = 0;
    char id[N_IMAGES][32];
    for (int k = 0; k < N_IMAGES; k++) {
      snprintf(id[k], sizeof id[k], "r%d-%d", round, k);
      len += binary_message(all + len, "fmnist", k, id[k]);
    }
    ck_assert_int_eq(write_all(c.fd, all, len), 0);
    for (int k = 0; k < N_IMAGES; k++)
      expect_logits(&c, id[k], want[k]);
  }
  client_close(&c);
  /* and as JSON, a connection per request */
  for (int k = 0; k < N_IMAGES; k++) {
    json_t *r = infer_ok(&d, k);
    float got[10], alone[10];
    ck_assert_str_eq(logits_of(r, got), warm.spec[warm.n - 1]);
    memcpy(alone, want[k], sizeof alone);
    for (int j = 0; j < 10; j++)
      ck_assert_msg(fabsf(got[j] - alone[j]) <= 1e-6f * fmaxf(1, fabsf(alone[j])),
                    "image %d, logit %d: %g as JSON, %g alone", k, j, got[j], alone[j]);
    json_decref(r);
  }
  daemon_stop_ok(&d);

  /* the faults did happen, of every kind */
  char *text = read_text(report);
  long shorts = faulted(text, "short "), eintr = faulted(text, "eintr "),
       eagain = faulted(text, "eagain ");
  /* and on the paths: the loop reads (read) and writes (write, writev),
   * a worker writes its own answer (send) and reads a leased
   * connection's next request (recv) */
  long reads = faulted(text, "\nread "),
       loop_writes = faulted(text, "\nwrite ") + faulted(text, "\nwritev "),
       sends = faulted(text, "\nsend "), recvs = faulted(text, "\nrecv ");
  fprintf(stderr,
          "test_tailord: socket faults: %ld short, %ld EINTR, %ld EAGAIN; by call: %ld read, "
          "%ld write(v), %ld send, %ld recv\n",
          shorts, eintr, eagain, reads, loop_writes, sends, recvs);
  ck_assert_msg(shorts > 100 && eintr > 50 && eagain > 50, "too few faults: %s", text);
  ck_assert_msg(reads > 0 && loop_writes > 0 && sends > 0 && recvs > 0, "a path without faults: %s",
                text);
  free(text);
}
END_TEST

/* --------------------------------------------------------------- disk */

/* Room the copied cache gets beside its own size: its -wal and -shm
 * (32 KiB), with pages to spare, until a test fills them. */
#define SLACK_BYTES (256 * 1024)

/* Mounts a tmpfs at dir (made here) big enough for the shared cache and
 * SLACK_BYTES, in a mount namespace of this process's own, and copies
 * the shared cache into it as dir/cache.db, path into db.  Returns 1, or
 * 0 after saying on stderr that this process may not mount. */
static int cache_on_tmpfs(const char *test, const char *dir, char *db, size_t size) {
  ck_assert_msg(mkdir(dir, 0700) == 0, "%s: %s", dir, strerror(errno));
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
    ck_assert_msg(errno == EPERM, "a mount namespace of its own: %s", strerror(errno));
    fprintf(stderr, "test_tailord: %s: skipped: this process may not mount (%s)\n", test,
            strerror(errno));
    return 0;
  }
  size_t len = 0;
  unsigned char *bytes = tu_read_bytes(shared_db, &len);
  char opts[64];
  snprintf(opts, sizeof opts, "size=%zu,mode=0700", (len + 4095) / 4096 * 4096 + SLACK_BYTES);
  ck_assert_msg(mount("tailor-test", dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0,
                "a tmpfs at %s: %s", dir, strerror(errno));
  snprintf(db, size, "%s/cache.db", dir);
  tu_write_bytes(db, bytes, len);
  free(bytes);
  return 1;
}

/* A daemon whose cache is on a tmpfs of its own. */
struct on_tmpfs {
  struct daemon d;
  char dir[PATH_MAX + 16]; /* the tmpfs: d.dir/cache */
  char db[PATH_MAX + 32];  /* the cache in it: dir/cache.db */
};

/* daemon_prepare() with the default options, the cache on a tmpfs of its
 * own (cache_on_tmpfs) and the config saying so, after checking that the
 * shared first start worked.  Returns 1, or 0 when this process may not
 * mount (said on stderr). */
static int prepare_on_tmpfs(struct on_tmpfs *t, const char *test) {
  ck_assert_msg(warm.ok, "the first start failed: %s", warm.why);
  struct opts o;
  opts_default(&o);
  char text[4096];
  daemon_prepare(&t->d, &o, NULL);
  snprintf(t->dir, sizeof t->dir, "%s/cache", t->d.dir);
  if (!cache_on_tmpfs(test, t->dir, t->db, sizeof t->db))
    return 0;
  config_text(&t->d, &o, t->db, text, sizeof text);
  ck_assert_int_eq(write_file(t->d.cfg, text), 0);
  return 1;
}

/* Writes a file at path until the disk is full, to the last byte. */
static void fill_disk(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
  static const char zeros[65536];
  for (size_t chunk = sizeof zeros; chunk > 0;) {
    ssize_t w = write(fd, zeros, chunk);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      ck_assert_msg(errno == ENOSPC, "%s: %s", path, strerror(errno));
      chunk /= 2;
    }
  }
  ck_assert_int_eq(close(fd), 0);
}

/* One inference answered, by the subnet active. */
static void assert_serving(const struct daemon *d) {
  json_t *r = infer_ok(d, 3);
  float logits[10];
  ck_assert_ptr_nonnull(logits_of(r, logits));
  json_decref(r);
}

static void wait_log(const struct daemon *d, const char *text) {
  double t0 = now_s();
  while (!log_has(d, text)) {
    if (now_s() - t0 > wait_s(30)) {
      char *log = read_text(d->log);
      ck_abort_msg("the log does not say \"%s\":\n%s", text, log);
    }
    sleep_ms(50);
  }
}

/* The first member of the frontier served (malloc'd). */
static char *first_member(const struct daemon *d) {
  json_t *v = get_ok(d, "/v2/models/fmnist/subnets");
  json_t *e = json_array_get(json_object_get(v, "subnets"), 0);
  const char *spec = json_string_value(json_object_get(e, "subnet"));
  ck_assert_ptr_nonnull(spec);
  char *copy = strdup(spec);
  json_decref(v);
  return copy;
}

/* The newest stored event's "to" (malloc'd), or NULL when there is none. */
static char *newest_event_to(const struct daemon *d) {
  json_t *v = get_ok(d, "/v2/models/fmnist/events?limit=1");
  json_t *e = json_array_get(json_object_get(v, "events"), 0);
  const char *to = json_string_value(json_object_get(e, "to"));
  char *copy = to != NULL ? strdup(to) : NULL;
  json_decref(v);
  return copy;
}

START_TEST(a_disk_that_fills_up_leaves_tailord_serving_and_storing_again_with_room) {
  struct on_tmpfs t;
  if (!prepare_on_tmpfs(&t, "a disk that fills up"))
    return;
  struct daemon *d = &t.d;
  const char *dir = t.dir;
  daemon_launch(d);
  daemon_wait_ready(d, wait_s(READY_DEADLINE_S));

  char filler[PATH_MAX + 32];
  snprintf(filler, sizeof filler, "%s/filler", dir);
  fill_disk(filler);
  json_decref(pin_fmnist(d, warm.spec[0]));
  wait_log(d, "storing the switch event");
  ck_assert_msg(log_has(d, "database or disk is full"), "the log does not say the disk is full");
  assert_serving(d);
  char *active = active_of(d, "fmnist");
  ck_assert_str_eq(active, warm.spec[0]);
  free(active);
  /* the switch the disk could not take is not in the cache */
  char *to = newest_event_to(d);
  ck_assert(to == NULL || strcmp(to, warm.spec[0]) != 0);
  free(to);

  ck_assert_int_eq(unlink(filler), 0);
  json_decref(pin_fmnist(d, warm.spec[1]));
  to = newest_event_to(d);
  ck_assert_ptr_nonnull(to);
  ck_assert_str_eq(to, warm.spec[1]);
  free(to);
  assert_serving(d);
  daemon_stop_ok(d);
}
END_TEST

START_TEST(a_full_disk_at_start_with_a_new_device_keeps_the_cache_in_memory) {
  struct on_tmpfs t;
  if (!prepare_on_tmpfs(&t, "a full disk at start"))
    return;
  struct daemon *d = &t.d;
  const char *dir = t.dir, *db = t.db;
  /* another CPU: the cache must add a device row, which is a write */
  char cpuinfo[PATH_MAX + 32];
  snprintf(cpuinfo, sizeof cpuinfo, "%s/proc/cpuinfo", d->root);
  ck_assert_int_eq(write_file(cpuinfo, "processor\t: 0\nmodel name\t: a CPU of the faults test\n"),
                   0);
  /* A connection of the test's own keeps the cache's -shm (its WAL
   * index, which readers need) in place and sized, so the full disk
   * refuses tailord's writes only, as on a disk that filled up while
   * the cache was in use. */
  sqlite3 *keep = NULL;
  ck_assert_int_eq(sqlite3_open_v2(db, &keep, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  ck_assert_int_eq(sqlite3_exec(keep, "SELECT count(*) FROM device", NULL, NULL, NULL), SQLITE_OK);
  char filler[PATH_MAX + 32];
  snprintf(filler, sizeof filler, "%s/filler", dir);
  fill_disk(filler);

  daemon_launch(d);
  daemon_wait_ready(d, wait_s(READY_DEADLINE_S));
  wait_log(d, "keeping latencies and frontiers in memory");
  assert_serving(d);
  daemon_stop_ok(d);
  ck_assert_int_eq(sqlite3_close(keep), SQLITE_OK);
}
END_TEST

START_TEST(a_read_only_disk_at_start_is_left_alone_and_a_cache_in_memory_serves) {
  struct on_tmpfs t;
  if (!prepare_on_tmpfs(&t, "a read-only disk at start"))
    return;
  struct daemon *d = &t.d;
  const char *dir = t.dir, *db = t.db;
  size_t want_len = 0;
  unsigned char *want = tu_read_bytes(db, &want_len);
  ck_assert_msg(mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) == 0,
                "remounting %s read-only: %s", dir, strerror(errno));

  daemon_launch(d);
  daemon_wait_ready(d, wait_s(READY_DEADLINE_S));
  wait_log(d, "using a cache in memory");
  assert_serving(d);
  /* the frontier is provisional (the cache in memory has none), and the
   * events go to memory */
  char *spec = first_member(d);
  json_decref(pin_fmnist(d, spec));
  char *to = newest_event_to(d);
  ck_assert_ptr_nonnull(to);
  ck_assert_str_eq(to, spec);
  free(to);
  free(spec);
  daemon_stop_ok(d);

  /* the cache is as it was, where it was */
  size_t got_len = 0;
  unsigned char *got = tu_read_bytes(db, &got_len);
  ck_assert_uint_eq(got_len, want_len);
  ck_assert_int_eq(memcmp(got, want, want_len), 0);
  free(want);
  free(got);
}
END_TEST

TCase *tailord_faults_case(void) {
  TCase *tc = tcase_create("faults");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, sockets_that_move_few_bytes_or_fail_with_eintr_or_eagain_lose_nothing);
  tcase_add_test(tc, a_disk_that_fills_up_leaves_tailord_serving_and_storing_again_with_room);
  tcase_add_test(tc, a_full_disk_at_start_with_a_new_device_keeps_the_cache_in_memory);
  tcase_add_test(tc, a_read_only_disk_at_start_is_left_alone_and_a_cache_in_memory_serves);
  return tc;
}
