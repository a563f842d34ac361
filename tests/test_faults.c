/*
 * test_faults.c - injected faults: what tailor does when memory or the
 * disk fails it (SQLite's malloc and I/O error tests are the model).
 *
 * Allocation failure at each point, one walk per operation: the n-th
 * allocation fails, for n = 0, 1, 2, ... until the operation gets through
 * without meeting the failure.  Walked: loading the bundled models (the
 * ONNX loader and normalization; fmnist.onnx and its export with BN
 * folded into the convs), building their SuperNets, plans of the whole
 * model and of a subnet, recalibrating a subnet, reading and writing a
 * .npy file; and in the SQLite cache, opening a new and an existing
 * cache, writing latencies, a frontier and an event.  Each failure must
 * be TL_ENOMEM with a sentence that says so, leave the outputs alone and
 * leak nothing (the sanitizer run sees that; the walks are too long for
 * the quick suites under valgrind); what gets through must give bit for
 * bit the result of a run that never failed.
 *
 * Where the failures come from: the test links with -Wl,--wrap for malloc
 * and its kin (tests/meson.build), so every allocation of core and
 * predictors, static libraries linked in here, goes through the counting
 * wrappers below (protobuf-c allocates through core's malloc, onnx.c
 * says why); SQLite's allocations reach the same counter through its
 * SQLITE_CONFIG_MALLOC hooks.
 *
 * The disk: a VFS registered as SQLite's default wraps "unix" and makes
 * the disk full after a budget of bytes (the write that crosses it writes
 * what fits, then SQLITE_FULL, as write(2) does) or read-only from there
 * on (opens for writing fall back to reading, as unix does on EROFS;
 * writes fail; rename(2), which the store calls itself, is wrapped to fail
 * too).  The same cache operations are walked over a budget ending in
 * each write they make in turn; a read-only disk from the start fails
 * them all.  Failures there must be TL_EIO.
 *
 * After every failure the cache must open as it is (not set aside, not
 * rebuilt) and hold its old content, or after a success its new one,
 * never a mix; the connection a write failed on must still read, and
 * write once the fault is gone, as the daemon keeps its connection.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "error.h"
#include "frontier.h"
#include "npy.h"
#include "onnx.h"
#include "plan.h"
#include "store.h"
#include "supernet.h"
#include "testutil.h"

/* Stands for "not written" in outputs a failure must leave alone. */
#define SENTINEL ((void *)&sentinel_byte)
static char sentinel_byte;

/* No walk of these operations comes near it: a walk that does loops. */
#define WALK_MAX 200000

/* ------------------------------------------------ allocation failures */

/* The allocation counter.  fail_allocation(n) arms it: allocations are
 * counted from 0 and the n-th one fails (NULL), once; the ones after it
 * succeed, so the code's error path runs with memory to spare and a
 * failure that is swallowed shows up in the result.  -1 disarms it.  One
 * thread: the engine runs single-threaded here and SQLite is used from
 * the test's thread only. */
static long alloc_seen;
static long alloc_fail_at = -1;
static int alloc_hit;

static void fail_allocation(long n) {
  alloc_seen = 0;
  alloc_fail_at = n;
  alloc_hit = 0;
}

/* Whether the allocation being made must fail. */
static int allocation_refused(void) {
  if (alloc_fail_at < 0 || alloc_seen++ != alloc_fail_at)
    return 0;
  alloc_hit = 1;
  return 1;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n) { return allocation_refused() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t count, size_t size) {
  return allocation_refused() ? NULL : __real_calloc(count, size);
}
void *__wrap_realloc(void *p, size_t n) {
  return allocation_refused() ? NULL : __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t align, size_t n) {
  return allocation_refused() ? NULL : __real_aligned_alloc(align, n);
}
char *__wrap_strdup(const char *s) { return allocation_refused() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) {
  return allocation_refused() ? NULL : __real_strndup(s, n);
}

/* SQLite's own allocations, counted by the same counter. */
static sqlite3_mem_methods sqlite_mem;

static void *sqlite_malloc(int n) { return allocation_refused() ? NULL : sqlite_mem.xMalloc(n); }
static void *sqlite_realloc(void *p, int n) {
  return allocation_refused() ? NULL : sqlite_mem.xRealloc(p, n);
}

/* Installs the hooks; before SQLite initializes, so main() calls it. */
static void hook_sqlite_allocations(void) {
  if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem) != SQLITE_OK)
    abort();
  sqlite3_mem_methods hooked = sqlite_mem;
  hooked.xMalloc = sqlite_malloc;
  hooked.xRealloc = sqlite_realloc;
  if (sqlite3_config(SQLITE_CONFIG_MALLOC, &hooked) != SQLITE_OK)
    abort();
}

/* One operation for a walk.  before() (may be NULL) sets the scene with
 * no fault; run() does the operation, faults armed, so it does nothing
 * else, and returns its code; after() checks what it left with no fault:
 * on failure that its outputs are untouched, on success that the result
 * is right, and frees it. */
struct op {
  const char *name;
  void (*before)(void *ctx);
  int (*run)(void *ctx, struct tl_error *err);
  void (*after)(void *ctx, int rc);
  void *ctx;
};

/* Walks op's allocations (see the file comment) and returns how many
 * points it failed. */
static long walk_allocations(const struct op *op) {
  for (long n = 0;; n++) {
    ck_assert_msg(n < WALK_MAX, "%s: no end to its allocations", op->name);
    struct tl_error err = {{0}};
    if (op->before != NULL)
      op->before(op->ctx);
    fail_allocation(n);
    int rc = op->run(op->ctx, &err);
    int hit = alloc_hit;
    fail_allocation(-1);
    if (rc != 0) {
      ck_assert_msg(hit, "%s: failed with no allocation failing: %s", op->name, err.msg);
      ck_assert_msg(rc == TL_ENOMEM, "%s: allocation %ld failed: code %d (%s): %s", op->name, n, rc,
                    tl_strerror(rc), err.msg);
      ck_assert_msg(strstr(err.msg, "out of memory") != NULL,
                    "%s: allocation %ld failed: the sentence does not say so: %s", op->name, n,
                    err.msg);
    }
    op->after(op->ctx, rc);
    if (!hit)
      return n;
  }
}

/* -------------------------------------------------------------- the disk */

/* The faulty VFS: "unix" with a disk that fails after a budget of bytes
 * written, counted over every file SQLite writes since disk_fail_after().
 * DISK_FULL: the write that crosses the budget writes what fits and
 * returns SQLITE_FULL, as unix does when write(2) stops short with
 * ENOSPC, and so does every write after it.  DISK_READ_ONLY: from the
 * budget on the file system is read-only: writes, truncations and
 * deletions fail as unix reports EROFS, opens for writing fall back to
 * reading (the database) or fail (a journal or WAL to create), and
 * rename(2) fails.  The sizes of the writes are recorded, for a walk to
 * know its budgets. */
enum disk_fault { DISK_FULL, DISK_READ_ONLY };

#define MAX_WRITES 4096
static struct {
  int armed;
  enum disk_fault fault;
  sqlite3_int64 budget, used;
  int hit; /* something was refused */
  int n_writes;
  int sizes[MAX_WRITES];
} disk;

static sqlite3_vfs *unix_vfs;

static void disk_fail_after(enum disk_fault fault, sqlite3_int64 budget) {
  memset(&disk, 0, sizeof disk);
  disk.armed = budget >= 0;
  disk.fault = fault;
  disk.budget = budget;
}

/* Whether the disk is read-only now: the budget is spent. */
static int disk_read_only(void) {
  return disk.armed && disk.fault == DISK_READ_ONLY && disk.used >= disk.budget;
}

/* Refuses what a read-only disk refuses: 1 (and hit) if it is one. */
static int refused_read_only(void) {
  if (!disk_read_only())
    return 0;
  disk.hit = 1;
  return 1;
}

struct faulty_file {
  sqlite3_file base;  /* methods: faulty_io */
  sqlite3_file *real; /* unix's file, right after this struct */
};

static sqlite3_file *real_file(sqlite3_file *f) { return ((struct faulty_file *)f)->real; }

static int f_close(sqlite3_file *f) { return real_file(f)->pMethods->xClose(real_file(f)); }
static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off) {
  return real_file(f)->pMethods->xRead(real_file(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off) {
  sqlite3_file *r = real_file(f);
  if (disk.n_writes < MAX_WRITES)
    disk.sizes[disk.n_writes++] = n;
  if (refused_read_only())
    return SQLITE_IOERR_WRITE;
  if (disk.armed && disk.used + n > disk.budget) {
    if (disk.fault == DISK_READ_ONLY) { /* the budget ends inside this write */
      disk.used = disk.budget;
      disk.hit = 1;
      return SQLITE_IOERR_WRITE;
    }
    int fits = (int)(disk.budget - disk.used);
    disk.used = disk.budget;
    disk.hit = 1;
    if (fits > 0)
      (void)r->pMethods->xWrite(r, buf, fits, off); /* short, as write(2) */
    return SQLITE_FULL;
  }
  disk.used += n;
  return r->pMethods->xWrite(r, buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size) {
  if (refused_read_only())
    return SQLITE_IOERR_TRUNCATE;
  return real_file(f)->pMethods->xTruncate(real_file(f), size);
}

/* No walk here loses power: syncs would only make the walks slow. */
static int f_sync(sqlite3_file *f, int flags) {
  (void)f;
  (void)flags;
  return SQLITE_OK;
}
static int f_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  return real_file(f)->pMethods->xFileSize(real_file(f), size);
}
static int f_lock(sqlite3_file *f, int lock) {
  return real_file(f)->pMethods->xLock(real_file(f), lock);
}
static int f_unlock(sqlite3_file *f, int lock) {
  return real_file(f)->pMethods->xUnlock(real_file(f), lock);
}
static int f_check_reserved(sqlite3_file *f, int *out) {
  return real_file(f)->pMethods->xCheckReservedLock(real_file(f), out);
}
static int f_file_control(sqlite3_file *f, int op, void *arg) {
  return real_file(f)->pMethods->xFileControl(real_file(f), op, arg);
}
static int f_sector_size(sqlite3_file *f) {
  return real_file(f)->pMethods->xSectorSize(real_file(f));
}
static int f_device_characteristics(sqlite3_file *f) {
  return real_file(f)->pMethods->xDeviceCharacteristics(real_file(f));
}
/* The WAL index is shared memory: a read-only disk does not stop it. */
static int f_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **p) {
  return real_file(f)->pMethods->xShmMap(real_file(f), region, size, extend, p);
}
static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  return real_file(f)->pMethods->xShmLock(real_file(f), offset, n, flags);
}
static void f_shm_barrier(sqlite3_file *f) { real_file(f)->pMethods->xShmBarrier(real_file(f)); }
static int f_shm_unmap(sqlite3_file *f, int delete_flag) {
  return real_file(f)->pMethods->xShmUnmap(real_file(f), delete_flag);
}
static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **p) {
  return real_file(f)->pMethods->xFetch(real_file(f), off, n, p);
}
static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
  return real_file(f)->pMethods->xUnfetch(real_file(f), off, p);
}

static const sqlite3_io_methods faulty_io = {
    .iVersion = 3,
    .xClose = f_close,
    .xRead = f_read,
    .xWrite = f_write,
    .xTruncate = f_truncate,
    .xSync = f_sync,
    .xFileSize = f_file_size,
    .xLock = f_lock,
    .xUnlock = f_unlock,
    .xCheckReservedLock = f_check_reserved,
    .xFileControl = f_file_control,
    .xSectorSize = f_sector_size,
    .xDeviceCharacteristics = f_device_characteristics,
    .xShmMap = f_shm_map,
    .xShmLock = f_shm_lock,
    .xShmBarrier = f_shm_barrier,
    .xShmUnmap = f_shm_unmap,
    .xFetch = f_fetch,
    .xUnfetch = f_unfetch,
};

static int f_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                  int *out_flags) {
  (void)vfs;
  struct faulty_file *f = (struct faulty_file *)file;
  f->real = (sqlite3_file *)(f + 1);
  if ((flags & SQLITE_OPEN_READWRITE) && refused_read_only()) {
    if (!(flags & SQLITE_OPEN_MAIN_DB)) {
      file->pMethods = NULL;
      return SQLITE_CANTOPEN;
    }
    flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  }
  int rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out_flags);
  file->pMethods = f->real->pMethods != NULL ? &faulty_io : NULL;
  return rc;
}

static int f_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  if (refused_read_only())
    return SQLITE_IOERR_DELETE;
  return unix_vfs->xDelete(unix_vfs, name, sync_dir);
}

static sqlite3_vfs faulty_vfs;

/* Makes the faulty VFS SQLite's default; in main(), after the malloc
 * hooks (which must come before SQLite initializes). */
static void register_faulty_vfs(void) {
  unix_vfs = sqlite3_vfs_find("unix");
  if (unix_vfs == NULL)
    abort();
  faulty_vfs = *unix_vfs;
  faulty_vfs.pNext = NULL;
  faulty_vfs.zName = "faulty";
  faulty_vfs.szOsFile = (int)sizeof(struct faulty_file) + unix_vfs->szOsFile;
  faulty_vfs.xOpen = f_open;
  faulty_vfs.xDelete = f_delete;
  if (sqlite3_vfs_register(&faulty_vfs, 1) != SQLITE_OK)
    abort();
}

/* The store renames a file it sets aside itself, with rename(2). */
int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);

int __wrap_rename(const char *from, const char *to) {
  if (refused_read_only()) {
    errno = EROFS;
    return -1;
  }
  return __real_rename(from, to);
}

/* ------------------------------------------------------ the bundled model */

static char models_dir[PATH_MAX];

/* The bundled model, with BatchNormalization nodes and with BN folded
 * into its convs by the exporter (whose zero biases are then one shared
 * tensor the loader and the channel sort must treat with care). */
static const char *const model_names[] = {"fmnist.onnx", "fmnist-folded.onnx"};
#define N_MODELS ((int)(sizeof model_names / sizeof model_names[0]))

/* The model's input side and one fixed image, pixels in [0, 1). */
#define SIDE 28
static float image[SIDE * SIDE];

static void make_image(void) {
  uint64_t s = 0x9e3779b97f4a7c15u;
  for (int i = 0; i < SIDE * SIDE; i++) {
    s = s * 6364136223846793005u + 1442695040888963407u;
    image[i] = (float)(s >> 40) / (float)(1u << 24);
  }
}

/* Its outputs, which a run of the same plan must give bit for bit. */
#define CLASSES 10
struct answer {
  float y[CLASSES];
};

static void run_plan(struct tl_plan *p, struct answer *a) {
  struct tl_tensor *x = tl_plan_input(p, 0);
  ck_assert_int_eq(tl_shape_numel(&x->shape), SIDE * SIDE);
  memcpy(x->data, image, sizeof image);
  tl_plan_run(p);
  const struct tl_tensor *y = tl_plan_output(p, 0);
  ck_assert_int_eq(tl_shape_numel(&y->shape), CLASSES);
  memcpy(a->y, y->data, sizeof a->y);
}

static void assert_same_answer(const struct answer *got, const struct answer *want,
                               const char *what) {
  for (int i = 0; i < CLASSES; i++)
    ck_assert_msg(got->y[i] == want->y[i], "%s: class %d: %g, a run with no failure gave %g", what,
                  i, (double)got->y[i], (double)want->y[i]);
}

/* A subnet that cuts every elastic dimension: resized input, skipped
 * blocks, narrowed channels. */
static const char *const subnet_text = "r=21 d=1,2,0 w=.5,1,.25";

/* The answers of a run that never failed: the whole model's, the
 * largest subnet's and the subnet's. */
struct baseline {
  struct answer model, largest, subnet;
};

/* The whole model's plan for one image (its batch is left open). */
static const struct tl_shape one_image = {4, {1, 1, SIDE, SIDE}};
static const struct tl_plan_options model_options = {.input_shapes = &one_image};

static struct tl_plan *plan_ok(const struct tl_graph *g) {
  struct tl_plan *p = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_plan_build(g, &model_options, &p, &err) == 0, "%s", err.msg);
  return p;
}

static struct tl_plan *subnet_plan_ok(const struct tl_supernet *sn, const char *text) {
  struct tl_subnet_spec spec;
  struct tl_plan *p = NULL;
  struct tl_error err = {{0}};
  if (text != NULL)
    ck_assert_msg(tl_subnet_parse(sn, text, &spec, &err) == 0, "%s", err.msg);
  else
    tl_subnet_largest(sn, &spec);
  ck_assert_msg(tl_subnet_plan(sn, &spec, NULL, &p, &err) == 0, "%s", err.msg);
  return p;
}

/* The answers of sn's largest subnet and of subnet_text. */
static void supernet_answers(const struct tl_supernet *sn, struct answer *largest,
                             struct answer *subnet) {
  struct tl_plan *p = subnet_plan_ok(sn, NULL);
  run_plan(p, largest);
  tl_plan_free(p);
  p = subnet_plan_ok(sn, subnet_text);
  run_plan(p, subnet);
  tl_plan_free(p);
}

static void make_baseline(const char *path, struct baseline *b) {
  struct tl_graph *g = tu_load(path);
  struct tl_plan *p = plan_ok(g);
  run_plan(p, &b->model);
  tl_plan_free(p);
  struct tl_supernet *sn = tu_supernet(g);
  supernet_answers(sn, &b->largest, &b->subnet);
  tl_supernet_free(sn);
  tl_graph_free(g);
}

/* ------------------------------------------------------ core operations */

struct core_ctx {
  char path[PATH_MAX * 2]; /* the model */
  struct baseline want;
  struct tl_graph *g;     /* a loaded model, for the walks that need one */
  struct tl_supernet *sn; /* its SuperNet */
  struct tl_subnet_spec spec;
  struct tl_calib calib;  /* a few images for recalibration */
  struct tl_graph *g_out; /* what an operation made */
  struct tl_supernet *sn_out;
  struct tl_plan *p_out;
  struct tl_bn_stats *bn_out;
};

static int run_load(void *ctx, struct tl_error *err) {
  struct core_ctx *c = ctx;
  c->g_out = SENTINEL;
  return tl_onnx_load(c->path, &c->g_out, err);
}

/* A model that loaded must plan and answer as one that never failed. */
static void after_load(void *ctx, int rc) {
  struct core_ctx *c = ctx;
  if (rc != 0) {
    ck_assert_ptr_eq(c->g_out, SENTINEL);
    return;
  }
  struct tl_plan *p = plan_ok(c->g_out);
  struct answer a;
  run_plan(p, &a);
  assert_same_answer(&a, &c->want.model, "a model loaded after failures");
  tl_plan_free(p);
  tl_graph_free(c->g_out);
}

static int run_supernet(void *ctx, struct tl_error *err) {
  struct core_ctx *c = ctx;
  c->sn_out = SENTINEL;
  return tl_supernet_build(c->g, NULL, &c->sn_out, err);
}

/* The walk builds every SuperNet on one graph, so a failed build that
 * left the graph's weights half sorted would show in these answers. */
static void after_supernet(void *ctx, int rc) {
  struct core_ctx *c = ctx;
  if (rc != 0) {
    ck_assert_ptr_eq(c->sn_out, SENTINEL);
    return;
  }
  struct answer largest, subnet;
  supernet_answers(c->sn_out, &largest, &subnet);
  assert_same_answer(&largest, &c->want.largest, "the largest subnet after failed builds");
  assert_same_answer(&subnet, &c->want.subnet, "a subnet after failed builds");
  tl_supernet_free(c->sn_out);
}

static int run_model_plan(void *ctx, struct tl_error *err) {
  struct core_ctx *c = ctx;
  c->p_out = SENTINEL;
  return tl_plan_build(c->g, &model_options, &c->p_out, err);
}

static int run_subnet_plan(void *ctx, struct tl_error *err) {
  struct core_ctx *c = ctx;
  c->p_out = SENTINEL;
  return tl_subnet_plan(c->sn, &c->spec, NULL, &c->p_out, err);
}

static void after_plan(struct core_ctx *c, int rc, const struct answer *want) {
  if (rc != 0) {
    ck_assert_ptr_eq(c->p_out, SENTINEL);
    return;
  }
  struct answer a;
  run_plan(c->p_out, &a);
  assert_same_answer(&a, want, "a plan built after failures");
  tl_plan_free(c->p_out);
}

static void after_model_plan(void *ctx, int rc) {
  struct core_ctx *c = ctx;
  after_plan(c, rc, &c->want.model);
}

static void after_subnet_plan(void *ctx, int rc) {
  struct core_ctx *c = ctx;
  after_plan(c, rc, &c->want.subnet);
}

#define CALIB_IMAGES 4
#define CALIB_BATCH 2

static int run_recalibrate(void *ctx, struct tl_error *err) {
  struct core_ctx *c = ctx;
  c->bn_out = SENTINEL;
  return tl_subnet_recalibrate(c->sn, &c->spec, &c->calib, CALIB_IMAGES, CALIB_BATCH, NULL,
                               &c->bn_out, err);
}

/* Statistics recalibrated after failures equal those of a first try. */
static void after_recalibrate(void *ctx, int rc) {
  struct core_ctx *c = ctx;
  if (rc != 0) {
    ck_assert_ptr_eq(c->bn_out, SENTINEL);
    return;
  }
  struct tl_bn_stats *want = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_subnet_recalibrate(c->sn, &c->spec, &c->calib, CALIB_IMAGES, CALIB_BATCH, NULL,
                                      &want, &err) == 0,
                "%s", err.msg);
  void *got_bytes = NULL, *want_bytes = NULL;
  size_t got_len = 0, want_len = 0;
  ck_assert_int_eq(tl_bn_stats_serialize(c->sn, c->bn_out, &got_bytes, &got_len, &err), 0);
  ck_assert_int_eq(tl_bn_stats_serialize(c->sn, want, &want_bytes, &want_len, &err), 0);
  ck_assert_uint_eq(got_len, want_len);
  ck_assert_int_eq(memcmp(got_bytes, want_bytes, got_len), 0);
  free(got_bytes);
  free(want_bytes);
  tl_bn_stats_free(want);
  tl_bn_stats_free(c->bn_out);
}

/* The context of the core walks: the baseline, the model, its SuperNet
 * and calibration images, made with no failure. */
static void core_setup(struct core_ctx *c, int model) {
  memset(c, 0, sizeof *c);
  snprintf(c->path, sizeof c->path, "%s/%s", models_dir, model_names[model]);
  make_baseline(c->path, &c->want);
  c->g = tu_load(c->path);
  c->sn = tu_supernet(c->g);
  struct tl_error err = {{0}};
  ck_assert_msg(tl_subnet_parse(c->sn, subnet_text, &c->spec, &err) == 0, "%s", err.msg);
  struct tl_calib *k = &c->calib;
  k->x.dtype = TL_DTYPE_FLOAT32;
  k->x.shape = (struct tl_shape){4, {CALIB_IMAGES, 1, SIDE, SIDE}};
  k->x.data = malloc(CALIB_IMAGES * sizeof image);
  k->labels = calloc(CALIB_IMAGES, sizeof *k->labels);
  ck_assert(k->x.data != NULL && k->labels != NULL);
  for (int i = 0; i < CALIB_IMAGES; i++) {
    float *x = (float *)k->x.data + i * SIDE * SIDE;
    for (int j = 0; j < SIDE * SIDE; j++)
      x[j] = image[(j + 97 * i) % (SIDE * SIDE)];
    k->labels[i] = i;
  }
  k->scale = 1;
  k->n = CALIB_IMAGES;
}

static void core_teardown(struct core_ctx *c) {
  tl_calib_free(&c->calib);
  tl_supernet_free(c->sn);
  tl_graph_free(c->g);
}

/* One walk over the core: what it does, and the fewest allocation points
 * it must fail at (so that it fails at many, not the first only). */
struct core_walk {
  const char *name;
  int (*run)(void *, struct tl_error *);
  void (*after)(void *, int);
  long at_least;
};

static void walk_core(struct core_ctx *c, const struct core_walk *w) {
  const struct op op = {w->name, NULL, w->run, w->after, c};
  long points = walk_allocations(&op);
  fprintf(stderr, "test_faults: %s: %s: %ld allocation points\n", c->path, w->name, points);
  ck_assert_msg(points >= w->at_least, "%s: only %ld allocation points", w->name, points);
}

/* Walks the n walks over one context of the model. */
static void walk_core_all(int model, const struct core_walk *walks, int n) {
  struct core_ctx c;
  core_setup(&c, model);
  for (int k = 0; k < n; k++)
    walk_core(&c, &walks[k]);
  core_teardown(&c);
}

START_TEST(a_failed_allocation_in_the_loader_is_enomem_and_leaks_nothing) {
  static const struct core_walk w = {"loading the model", run_load, after_load, 100};
  walk_core_all(_i, &w, 1);
}
END_TEST

START_TEST(a_failed_allocation_building_the_supernet_leaves_the_graph_whole) {
  static const struct core_walk w = {"building the SuperNet", run_supernet, after_supernet, 20};
  struct core_ctx c;
  core_setup(&c, _i);
  /* a graph of its own, not yet sorted by a SuperNet */
  tl_supernet_free(c.sn);
  tl_graph_free(c.g);
  c.g = tu_load(c.path);
  c.sn = NULL;
  walk_core(&c, &w);
  tl_graph_free(c.g);
  c.g = NULL;
  tl_calib_free(&c.calib);
}
END_TEST

START_TEST(a_failed_allocation_building_a_plan_is_enomem_and_leaks_nothing) {
  static const struct core_walk w[] = {
      {"planning the whole model", run_model_plan, after_model_plan, 20},
      {"planning a subnet", run_subnet_plan, after_subnet_plan, 20},
  };
  walk_core_all(_i, w, 2);
}
END_TEST

START_TEST(a_failed_allocation_recalibrating_a_subnet_is_enomem_and_leaks_nothing) {
  static const struct core_walk w = {"recalibrating a subnet", run_recalibrate, after_recalibrate,
                                     20};
  walk_core_all(_i, &w, 1);
}
END_TEST

/* ------------------------------------------------------------------ npy */

struct npy_ctx {
  char path[PATH_MAX];
  struct tl_tensor t; /* what the file holds */
  struct tl_tensor out;
  const struct tl_tensor *old; /* a write walk: what the file held before */
};

static int run_npy_read(void *ctx, struct tl_error *err) {
  struct npy_ctx *c = ctx;
  c->out.data = SENTINEL;
  return tl_npy_read(c->path, &c->out, err);
}

static void assert_same_tensor(const struct tl_tensor *got, const struct tl_tensor *want) {
  ck_assert_int_eq(got->dtype, want->dtype);
  ck_assert(tl_shape_equal(&got->shape, &want->shape));
  size_t bytes = (size_t)tl_shape_numel(&want->shape) * tl_dtype_size(want->dtype);
  ck_assert_int_eq(memcmp(got->data, want->data, bytes), 0);
}

static void after_npy_read(void *ctx, int rc) {
  struct npy_ctx *c = ctx;
  if (rc != 0) {
    ck_assert_ptr_eq(c->out.data, SENTINEL);
    return;
  }
  assert_same_tensor(&c->out, &c->t);
  free(c->out.data);
}

static int run_npy_write(void *ctx, struct tl_error *err) {
  struct npy_ctx *c = ctx;
  return tl_npy_write(c->path, &c->t, err);
}

/* A failed write leaves the old file and no temporary one. */
static void after_npy_write(void *ctx, int rc) {
  struct npy_ctx *c = ctx;
  struct tl_tensor back;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tu_count_entries(tu_tmpdir()), 1);
  ck_assert_msg(tl_npy_read(c->path, &back, &err) == 0, "%s", err.msg);
  assert_same_tensor(&back, rc == 0 ? &c->t : c->old);
  free(back.data);
  if (rc == 0) { /* the next try writes over the old contents again */
    ck_assert_int_eq(tl_npy_write(c->path, c->old, &err), 0);
  }
}

START_TEST(a_failed_allocation_reading_or_writing_npy_is_enomem_and_leaks_nothing) {
  struct npy_ctx c = {0};
  snprintf(c.path, sizeof c.path, "%s", tu_tmp_path("images.npy"));
  c.t.dtype = TL_DTYPE_FLOAT32;
  c.t.shape = (struct tl_shape){4, {1, 1, SIDE, SIDE}};
  c.t.data = image;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_npy_write(c.path, &c.t, &err) == 0, "%s", err.msg);
  const struct op read = {"reading a .npy file", NULL, run_npy_read, after_npy_read, &c};
  long points = walk_allocations(&read);
  fprintf(stderr, "test_faults: reading a .npy file: %ld allocation points\n", points);
  ck_assert_int_ge(points, 1);

  float zeros[SIDE * SIDE] = {0};
  struct tl_tensor old = c.t;
  old.data = zeros;
  ck_assert_int_eq(tl_npy_write(c.path, &old, &err), 0);
  c.old = &old;
  const struct op write = {"writing a .npy file", NULL, run_npy_write, after_npy_write, &c};
  points = walk_allocations(&write);
  fprintf(stderr, "test_faults: writing a .npy file: %ld allocation points\n", points);
  ck_assert_int_ge(points, 1);
}
END_TEST

/* ---------------------------------------------------------------- store */

/* The device the store's walks write for. */
static const struct tl_device_fp test_fp = {
    .cpu_model = "a CPU of the faults test", .cores = 2, .blas = "test", .threads = 1};

/* The keys of the frontier the cache holds. */
#define MODEL_HASH "00c0ffee00c0ffee"
#define CALIB_HASH "0123456789abcdef"
#define SPACE "w=0.25,0.5,0.75,1 r=14,18,21,25,28"

/* Latencies enough to fill a few pages, so a write spans several. */
#define N_LATENCIES 60

/* A cache's content as text: its latencies, frontier and events, read
 * through st. */
#define TEXT_MAX 16384
struct text {
  char s[TEXT_MAX];
  size_t len;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(t->s + t->len, sizeof t->s - t->len, fmt, ap);
  va_end(ap);
  ck_assert(n >= 0 && (size_t)n < sizeof t->s - t->len);
  t->len += (size_t)n;
}

static int add_latency(void *ctx, const struct tl_op_latency *row) {
  text_add(ctx, "latency %s %.17g %lld %lld\n", row->signature, row->median_us,
           (long long)row->runs, (long long)row->measured_at_s);
  return 0;
}

/* Device 1 is the only one the caches here hold. */
static void cache_text(struct tl_store *st, struct text *t) {
  struct tl_error err = {{0}};
  t->len = 0;
  t->s[0] = '\0';
  ck_assert_msg(tl_store_op_foreach(st, 1, add_latency, t, &err) == 0, "%s", err.msg);
  struct tl_frontier_entry *f = NULL;
  size_t n = 0;
  int rc = tl_store_frontier_get(st, MODEL_HASH, 1, CALIB_HASH, SPACE, &f, &n, &err);
  ck_assert_msg(rc == 0 || rc == TL_ENOENT, "%s", err.msg);
  if (rc == TL_ENOENT)
    text_add(t, "no frontier\n");
  for (size_t i = 0; i < n; i++)
    text_add(t, "frontier %s %llu %.17g %.17g %.17g\n", f[i].spec,
             (unsigned long long)f[i].subnet_key, f[i].predicted_ms, f[i].predicted_mib,
             f[i].accuracy);
  free(f);
  struct tl_switch_event *ev = NULL;
  ck_assert_msg(tl_store_event_last(st, NULL, 100, &ev, &n, &err) == 0, "%s", err.msg);
  for (size_t i = 0; i < n; i++)
    text_add(t, "event %lld %lld %s %s %s %s %s\n", (long long)ev[i].id, (long long)ev[i].time_ms,
             ev[i].model, ev[i].from_spec ? ev[i].from_spec : "-", ev[i].to_spec, ev[i].reason,
             ev[i].state ? ev[i].state : "-");
  free(ev);
}

/* The writes the walks make, each what the daemon writes: a profile's
 * latencies (some replacing rows, most new), a searched frontier, a
 * switch event. */
static char latency_sigs[N_LATENCIES][96];
static struct tl_op_latency latencies[N_LATENCIES];

static int put_latencies(struct tl_store *st, int first, int n, double base, struct tl_error *err) {
  for (int i = 0; i < n; i++) {
    int k = first + i;
    snprintf(latency_sigs[i], sizeof latency_sigs[i],
             "Conv+BN+Relu in 1x%dx28x28 w %dx%dx3x3 out 1x%dx28x28 igemm t1", k + 1, k + 2, k + 1,
             k + 2);
    latencies[i] = (struct tl_op_latency){latency_sigs[i], base + k, 9 + k, 1700000000 + k};
  }
  return tl_store_op_put_batch(st, 1, latencies, (size_t)n, err);
}

static int put_frontier(struct tl_store *st, int n, double base, struct tl_error *err) {
  static const char *const specs[] = {"r=14 d=0,0,0 w=.25,.25,.25", "r=18 d=1,0,1 w=.5,.25,.5",
                                      "r=21 d=1,2,0 w=.5,1,.25", "r=25 d=2,1,2 w=.75,.75,1",
                                      "r=28 d=2,2,2 w=1,1,1"};
  struct tl_frontier_entry e[5];
  for (int i = 0; i < n && i < 5; i++)
    e[i] = (struct tl_frontier_entry){specs[i], 1000u + (uint64_t)i, base + i, 2.5 + i,
                                      0.5 + 0.09 * i};
  return tl_store_frontier_put(st, MODEL_HASH, 1, CALIB_HASH, SPACE, e, (size_t)n, err);
}

static int put_event(struct tl_store *st, int64_t time_ms, struct tl_error *err) {
  const struct tl_switch_event ev = {0,
                                     time_ms,
                                     "fmnist",
                                     "r=28 d=2,2,2 w=1,1,1",
                                     "r=21 d=1,2,0 w=.5,1,.25",
                                     "latency over budget",
                                     "{\"freq_ratio\":0.5,\"load\":1.75}"};
  return tl_store_event_append(st, &ev, NULL, err);
}

static int write_latencies(struct tl_store *st, struct tl_error *err) {
  return put_latencies(st, 2, N_LATENCIES, 40, err);
}

static int write_frontier(struct tl_store *st, struct tl_error *err) {
  return put_frontier(st, 5, 3.25, err);
}

static int write_event(struct tl_store *st, struct tl_error *err) {
  return put_event(st, 1700000009000, err);
}

/* What a walk does to the cache: open it (none: there is no file yet;
 * or the old cache), or write to the old cache once opened. */
struct store_case {
  const char *name;
  int opens;
  int fresh;
  int (*write)(struct tl_store *st, struct tl_error *err);
  long allocations; /* at least, SQLite's and the store's */
};

static const struct store_case store_cases[] = {
    {"opening a new cache", 1, 1, NULL, 1000},
    {"opening an existing cache", 1, 0, NULL, 300},
    {"writing latencies", 0, 0, write_latencies, 100},
    {"writing a frontier", 0, 0, write_frontier, 20},
    {"writing an event", 0, 0, write_event, 5},
};
#define N_STORE_CASES ((int)(sizeof store_cases / sizeof store_cases[0]))

struct store_ctx {
  const struct store_case *kase;
  char path[PATH_MAX];
  unsigned char *old_file; /* the old cache's bytes */
  size_t old_len;
  struct text old, new; /* the content before and after the operation */
  struct tl_store *st;  /* the connection written through, or opened */
};

static struct tl_store *open_ok(const char *path, enum tl_store_outcome *outcome) {
  struct tl_store *st = NULL;
  struct tl_store_open_report rep;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_store_open(path, &st, &rep, &err) == 0, "%s", err.msg);
  if (outcome != NULL)
    *outcome = rep.outcome;
  return st;
}

static void remove_cache(const char *path) {
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  char p[PATH_MAX + 16];
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
    ck_assert_msg(unlink(p) == 0 || errno == ENOENT, "%s: %s", p, strerror(errno));
  }
}

/* Nothing beside the cache was set aside (a "<path>.corrupt-..."). */
static void assert_nothing_set_aside(void) {
  DIR *d = opendir(tu_tmpdir());
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    ck_assert_msg(strstr(e->d_name, ".corrupt-") == NULL &&
                      strstr(e->d_name, ".foreign-") == NULL &&
                      strstr(e->d_name, ".newer-") == NULL,
                  "the cache was set aside as %s", e->d_name);
  ck_assert_int_eq(closedir(d), 0);
}

/* A new connection finds the cache as it was (the file is checked on
 * opening: it must be used as it is, not rebuilt) with content want. */
static void assert_cache_holds(const struct store_ctx *c, const struct text *want) {
  enum tl_store_outcome outcome;
  struct tl_store *st = open_ok(c->path, &outcome);
  ck_assert_msg(outcome == TL_STORE_OPENED || (c->kase->fresh && outcome == TL_STORE_CREATED),
                "%s: the cache was not used as it was (outcome %d)", c->kase->name, outcome);
  struct text got;
  cache_text(st, &got);
  ck_assert_str_eq(got.s, want->s);
  tl_store_close(st);
  assert_nothing_set_aside();
}

static void store_before(void *ctx) {
  struct store_ctx *c = ctx;
  remove_cache(c->path);
  if (!c->kase->fresh)
    tu_write_bytes(c->path, c->old_file, c->old_len);
  c->st = c->kase->opens ? SENTINEL : open_ok(c->path, NULL);
}

static int store_run(void *ctx, struct tl_error *err) {
  struct store_ctx *c = ctx;
  if (c->kase->opens)
    return tl_store_open(c->path, &c->st, NULL, err);
  return c->kase->write(c->st, err);
}

/* After a failed write the connection still reads the old content and
 * writes again once the fault is gone, and a new connection meanwhile
 * finds the old content: the daemon keeps its connection for good. */
static void store_after(void *ctx, int rc) {
  struct store_ctx *c = ctx;
  struct text got;
  if (c->kase->opens) {
    if (rc != 0) {
      ck_assert_ptr_eq(c->st, SENTINEL);
    } else {
      cache_text(c->st, &got);
      ck_assert_str_eq(got.s, c->old.s);
      tl_store_close(c->st);
    }
    c->st = NULL;
    assert_cache_holds(c, &c->old);
    return;
  }
  if (rc != 0) {
    cache_text(c->st, &got);
    ck_assert_str_eq(got.s, c->old.s);
    assert_cache_holds(c, &c->old);
    struct tl_error err = {{0}};
    ck_assert_msg(c->kase->write(c->st, &err) == 0, "%s again: %s", c->kase->name, err.msg);
  }
  cache_text(c->st, &got);
  ck_assert_str_eq(got.s, c->new.s);
  tl_store_close(c->st);
  c->st = NULL;
  assert_cache_holds(c, &c->new);
}

/* The old cache: a device, latencies, a frontier and two events; its
 * file's bytes and its content, and the content after the case's
 * operation. */
static void store_setup(struct store_ctx *c, const struct store_case *kase) {
  memset(c, 0, sizeof *c);
  c->kase = kase;
  snprintf(c->path, sizeof c->path, "%s", tu_tmp_path("cache.db"));
  struct tl_error err = {{0}};
  if (!kase->fresh) {
    struct tl_store *st = open_ok(c->path, NULL);
    int64_t dev = 0;
    ck_assert_msg(tl_store_device(st, &test_fp, &dev, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(dev, 1);
    ck_assert_int_eq(put_latencies(st, 0, 3, 10, &err), 0);
    ck_assert_int_eq(put_frontier(st, 2, 1.25, &err), 0);
    ck_assert_int_eq(put_event(st, 1700000000000, &err), 0);
    ck_assert_int_eq(put_event(st, 1700000001000, &err), 0);
    tl_store_close(st); /* checkpoints: the file alone holds it all */
    c->old_file = tu_read_bytes(c->path, &c->old_len);
  }
  store_before(c);
  if (kase->opens) {
    ck_assert_int_eq(store_run(c, &err), 0);
  }
  cache_text(c->st, &c->old);
  if (!kase->opens)
    ck_assert_msg(store_run(c, &err) == 0, "%s", err.msg);
  cache_text(c->st, &c->new);
  tl_store_close(c->st);
  c->st = NULL;
  if (!kase->opens)
    ck_assert_str_ne(c->old.s, c->new.s);
}

static void store_teardown(struct store_ctx *c) {
  if (c->st != NULL && c->st != SENTINEL)
    tl_store_close(c->st);
  free(c->old_file);
}

START_TEST(a_failed_allocation_in_the_store_is_enomem_and_keeps_the_cache_whole) {
  struct store_ctx c;
  store_setup(&c, &store_cases[_i]);
  const struct op op = {store_cases[_i].name, store_before, store_run, store_after, &c};
  long points = walk_allocations(&op);
  fprintf(stderr, "test_faults: %s: %ld allocation points\n", op.name, points);
  ck_assert_msg(points >= c.kase->allocations, "%s: only %ld allocation points", op.name, points);
  store_teardown(&c);
}
END_TEST

/* Walks op on a disk that fails after each write in turn (the budget
 * ends halfway into it; for a read-only disk, before it), and on one that
 * fails from the start; returns how many budgets failed it. */
static int walk_disk(const struct op *op, enum disk_fault fault) {
  /* a run on a good disk: the writes the operation makes */
  struct tl_error err = {{0}};
  op->before(op->ctx);
  disk_fail_after(fault, -1);
  ck_assert_msg(op->run(op->ctx, &err) == 0, "%s: %s", op->name, err.msg);
  int n_writes = disk.n_writes;
  ck_assert_int_lt(n_writes, MAX_WRITES);
  int sizes[MAX_WRITES];
  memcpy(sizes, disk.sizes, sizeof sizes);
  op->after(op->ctx, 0);

  int failed = 0;
  sqlite3_int64 before = 0;
  for (int k = 0; k <= n_writes; k++) {
    sqlite3_int64 budget = before + (fault == DISK_FULL && k < n_writes ? sizes[k] / 2 : 0);
    if (k < n_writes)
      before += sizes[k];
    memset(&err, 0, sizeof err);
    op->before(op->ctx);
    disk_fail_after(fault, budget);
    int rc = op->run(op->ctx, &err);
    int hit = disk.hit;
    disk_fail_after(fault, -1);
    if (rc != 0) {
      ck_assert_msg(hit, "%s: failed with no fault: %s", op->name, err.msg);
      ck_assert_msg(rc == TL_EIO, "%s: a %s disk at write %d: code %d (%s): %s", op->name,
                    fault == DISK_FULL ? "full" : "read-only", k, rc, tl_strerror(rc), err.msg);
      ck_assert_msg(fault != DISK_FULL || strstr(err.msg, "full") != NULL,
                    "%s: a full disk at write %d: the sentence does not say so: %s", op->name, k,
                    err.msg);
      failed++;
    }
    op->after(op->ctx, rc);
  }
  return failed;
}

START_TEST(a_full_disk_under_the_store_is_eio_and_keeps_the_cache_whole) {
  struct store_ctx c;
  store_setup(&c, &store_cases[_i]);
  const struct op op = {store_cases[_i].name, store_before, store_run, store_after, &c};
  int failed = walk_disk(&op, DISK_FULL);
  fprintf(stderr, "test_faults: %s: a full disk at %d points\n", op.name, failed);
  if (!c.kase->opens || c.kase->fresh)
    ck_assert_int_ge(failed, 1);
  store_teardown(&c);
}
END_TEST

START_TEST(a_read_only_disk_under_the_store_is_eio_and_keeps_the_cache_whole) {
  struct store_ctx c;
  store_setup(&c, &store_cases[_i]);
  const struct op op = {store_cases[_i].name, store_before, store_run, store_after, &c};
  int failed = walk_disk(&op, DISK_READ_ONLY);
  fprintf(stderr, "test_faults: %s: a read-only disk at %d points\n", op.name, failed);
  ck_assert_int_ge(failed, 1); /* read-only from the start fails every one */
  store_teardown(&c);
}
END_TEST

/* A search the cache cannot keep: the daemon serves the frontier it
 * found, so the search returns it, and says why the cache lost it. */
static const struct tl_search_options tiny_search = {
    .k = 2, .est_images = 4, .recalib_images = 4, .final_recalib = 4, .candidates = 4, .batch = 2};
static const struct tl_profile_options tiny_profile = {
    .warmup = 1, .repeats = 1, .passes = 1, .patience = 2};

START_TEST(a_search_the_disk_cannot_keep_is_returned_all_the_same) {
  const enum disk_fault fault = _i ? DISK_READ_ONLY : DISK_FULL;
  struct core_ctx c;
  core_setup(&c, 0);
  struct tl_store *st = open_ok(tu_tmp_path("cache.db"), NULL);
  struct tl_error err = {{0}};
  int64_t dev = 0;
  ck_assert_msg(tl_store_device(st, &test_fp, &dev, &err) == 0, "%s", err.msg);

  struct tl_frontier_member *f = NULL;
  struct tl_frontier_report rep;
  int n = 0;
  disk_fail_after(fault, 0);
  int rc = tl_frontier_obtain(c.sn, c.g, st, dev, &c.calib, &tiny_search, &tiny_profile, NULL, &f,
                              &n, &rep, &err);
  int hit = disk.hit;
  disk_fail_after(fault, -1);
  ck_assert_msg(rc == 0, "%s", err.msg);
  ck_assert(hit);
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(rep.cached, 0);
  ck_assert_msg(strstr(rep.not_cached, fault == DISK_FULL ? "full" : "I/O error") != NULL, "%s",
                rep.not_cached);
  tl_frontier_free(f, n);
  int cached = -1;
  ck_assert_int_eq(tl_frontier_cached(c.sn, c.g, st, dev, &c.calib, &tiny_search, &cached, &err),
                   0);
  ck_assert_int_eq(cached, 0);

  /* the disk back, the next search is kept */
  ck_assert_msg(tl_frontier_obtain(c.sn, c.g, st, dev, &c.calib, &tiny_search, &tiny_profile, NULL,
                                   &f, &n, &rep, &err) == 0,
                "%s", err.msg);
  ck_assert_str_eq(rep.not_cached, "");
  tl_frontier_free(f, n);
  ck_assert_int_eq(tl_frontier_cached(c.sn, c.g, st, dev, &c.calib, &tiny_search, &cached, &err),
                   0);
  ck_assert_int_eq(cached, n);
  tl_store_close(st);
  core_teardown(&c);
}
END_TEST

/* ---------------------------------------------------------------- main */

static Suite *faults_suite(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, a_failed_allocation_in_the_loader_is_enomem_and_leaks_nothing, 0,
                      N_MODELS);
  tcase_add_loop_test(tc, a_failed_allocation_building_the_supernet_leaves_the_graph_whole, 0,
                      N_MODELS);
  tcase_add_loop_test(tc, a_failed_allocation_building_a_plan_is_enomem_and_leaks_nothing, 0,
                      N_MODELS);
  tcase_add_loop_test(tc, a_failed_allocation_recalibrating_a_subnet_is_enomem_and_leaks_nothing, 0,
                      N_MODELS);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);

  tc = tcase_create("npy");
  tu_add_tmpdir(tc, "faults");
  tcase_add_test(tc, a_failed_allocation_reading_or_writing_npy_is_enomem_and_leaks_nothing);
  suite_add_tcase(s, tc);

  tc = tcase_create("store");
  tu_add_tmpdir(tc, "faults");
  tcase_add_loop_test(tc, a_failed_allocation_in_the_store_is_enomem_and_keeps_the_cache_whole, 0,
                      N_STORE_CASES);
  tcase_add_loop_test(tc, a_full_disk_under_the_store_is_eio_and_keeps_the_cache_whole, 0,
                      N_STORE_CASES);
  tcase_add_loop_test(tc, a_read_only_disk_under_the_store_is_eio_and_keeps_the_cache_whole, 0,
                      N_STORE_CASES);
  tcase_add_loop_test(tc, a_search_the_disk_cannot_keep_is_returned_all_the_same, 0, 2);
  tcase_set_timeout(tc, 300);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  char src[PATH_MAX], build[PATH_MAX];
  if (tu_roots("test_faults", src, build) != 0)
    return 1;
  snprintf(models_dir, sizeof models_dir, "%s/models", src);
  make_image();
  hook_sqlite_allocations();
  register_faulty_vfs();
  return tu_run(faults_suite()) == 0 ? 0 : 1;
}
