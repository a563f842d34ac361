/*
 * store.h - the predictors' persistent cache: one SQLite file.
 *
 * What is slow to learn about this device and this model is kept here so a
 * restart does not learn it again: the device's fingerprint, the measured
 * latency of every op signature, the accuracy and BatchNorm statistics of
 * subnets measured on the operator's calibration data, the frontier a
 * search found, and the daemon's switch events.  All SQL of tailor lives in
 * the store's files: store.c (opening, migrations, devices), store_stmt.c
 * (running statements), store_latency.c, store_frontier.c and
 * store_event.c.
 *
 * The file is a cache, never a source of truth: one that is damaged, is not
 * a database, belongs to another program or was written by a newer tailor
 * is renamed aside and an empty cache takes its place (tl_store_open says
 * so in its report).  Only a cache that cannot be created at all is an
 * error.
 *
 * Hashes (model_hash, calib_hash) are hex text computed by the callers, for
 * example from tl_graph's FNV-1a hash of the model file; the store only
 * compares them.  Subnet keys are the 64-bit keys of tl_subnet_key(); they
 * are stored bit for bit, keys of 2^63 and above included.
 *
 * Results that hold strings (tl_store_accuracy_get, tl_store_frontier_get,
 * tl_store_event_last) are one malloc'd block with the strings inside it:
 * the caller releases everything with a single free().
 *
 * Errors: 0, or a negative TL_E* code with a sentence naming the file:
 * TL_EINVAL (bad arguments, or a device id the store does not know),
 * TL_ENOENT (nothing stored under that key), TL_EBUSY (another connection
 * held the file locked for longer than TL_STORE_BUSY_TIMEOUT_MS), TL_EFORMAT
 * (damage found after opening), TL_ENOMEM, TL_EIO (anything else SQLite or
 * the system reported).  On failure outputs are untouched and a write has
 * changed nothing.
 *
 * Threading: a struct tl_store is a single connection; one thread at a time
 * may use it (calls on it must not overlap).  Threads and processes that
 * need the cache at the same time each open their own store on the same
 * file: the file is in WAL mode, so readers run alongside one writer, and a
 * writer waits up to TL_STORE_BUSY_TIMEOUT_MS for another.
 */
#ifndef TL_STORE_H
#define TL_STORE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "error.h"

/* The schema version this code writes (PRAGMA user_version).  Files with a
 * lower version are upgraded in place when opened; a higher one is set
 * aside. */
#define TL_STORE_SCHEMA_VERSION 1

/* PRAGMA application_id of every tailor cache: "TLRD". */
#define TL_STORE_APPLICATION_ID 0x544c5244

/* How long a call waits for a lock another connection holds. */
#define TL_STORE_BUSY_TIMEOUT_MS 5000

struct tl_store;

/* ------------------------------------------------------------- opening */

enum tl_store_outcome {
  TL_STORE_OPENED,          /* an existing cache, used as it was */
  TL_STORE_CREATED,         /* no cache (or an empty file): a new one */
  TL_STORE_MIGRATED,        /* an older schema upgraded in place */
  TL_STORE_REBUILT_CORRUPT, /* damaged or not a database: set aside */
  TL_STORE_REBUILT_FOREIGN, /* another program's database: set aside */
  TL_STORE_REBUILT_NEWER    /* written by a newer tailor: set aside */
};

/* What tl_store_open found and did, for the caller to log. */
struct tl_store_open_report {
  enum tl_store_outcome outcome;
  int found_version;          /* the file's schema version; 0 if new or unreadable */
  char aside_path[PATH_MAX];  /* where the old file went; "" if nowhere */
  char message[TL_ERROR_MAX]; /* one sentence saying what happened */
};

/* Opens the cache at path, creating it (mode 0600) if it does not exist;
 * the directory must exist.  path ":memory:" opens a private cache that
 * lives in memory until closed.
 *
 * The file is checked before use: its application_id, its schema version,
 * PRAGMA quick_check, and that its tables are exactly those this code's
 * migrations create.  A file that fails is renamed, with its -wal, -shm and
 * -journal companions, to "<path>.corrupt-<unix time>" (damaged, or not a
 * database), "<path>.foreign-<unix time>" (another program's database) or
 * "<path>.newer-<unix time>" (a schema version above
 * TL_STORE_SCHEMA_VERSION), with "-2", "-3"... appended if that name is
 * taken, and a new empty cache is created in its place.  A file with an
 * older version is upgraded in one transaction.  report (may be NULL) is
 * filled on success.
 *
 * *out is the new store, closed with tl_store_close().  Returns 0, or
 * TL_EIO when no cache can be had: the directory is missing or not
 * writable, path is not a regular file, or a bad file cannot be renamed;
 * TL_EBUSY when another connection keeps the file locked; TL_ENOMEM;
 * TL_EINVAL for NULL arguments.  The message names path and the reason. */
int tl_store_open(const char *path, struct tl_store **out, struct tl_store_open_report *report,
                  struct tl_error *err);

/* Closes st and frees it.  NULL is allowed.  Cannot fail: the cache's
 * writes were committed when the calls that made them returned. */
void tl_store_close(struct tl_store *st);

/* -------------------------------------------------------------- device */

/* Sets *device_id to the id of the device fp (device.h) describes, adding it if the
 * store has not seen it.  Ids are positive and never change.  Returns
 * TL_EINVAL if a text field is not NUL-terminated in its array or a number
 * is negative. */
int tl_store_device(struct tl_store *st, const struct tl_device_fp *fp, int64_t *device_id,
                    struct tl_error *err);

/* ---------------------------------------------------------- op latency */

/* The measured latency of one op signature on one device. */
struct tl_op_latency {
  const char *signature; /* the op signature's canonical text */
  double median_us;
  int64_t runs;          /* timed runs behind the median */
  int64_t measured_at_s; /* unix time of the measurement */
};

/* Fills *out with the latency of signature on device_id; out->signature is
 * set to signature (borrowed).  Returns TL_ENOENT if none is stored. */
int tl_store_op_get(struct tl_store *st, int64_t device_id, const char *signature,
                    struct tl_op_latency *out, struct tl_error *err);

/* Stores rows[0..n) for device_id in one transaction, replacing rows with
 * the same signature: all of them are stored or, on error, none.  Returns
 * TL_EINVAL for a NULL signature, a NaN median (SQLite cannot store NaN)
 * or a device_id that tl_store_device() did not give. */
int tl_store_op_put_batch(struct tl_store *st, int64_t device_id, const struct tl_op_latency *rows,
                          size_t n, struct tl_error *err);

/* Calls fn(ctx, row) for every stored latency of device_id, in signature
 * order (byte order).  row and its signature are valid only during the
 * call; fn must not use st.  fn returns 0 to go on; any other value stops
 * the walk and is returned.  Returns 0 when the walk ends (also when there
 * are no rows). */
int tl_store_op_foreach(struct tl_store *st, int64_t device_id,
                        int (*fn)(void *ctx, const struct tl_op_latency *row), void *ctx,
                        struct tl_error *err);

/* ------------------------------------------------------------ subnets */

/* A subnet's top-1 accuracy measured on calibration data. */
struct tl_subnet_accuracy {
  const char *spec; /* the subnet's canonical spec text */
  double accuracy;  /* a fraction in [0, 1] */
  int64_t images;   /* calibration images it was measured on */
  int recalibrated; /* 1 if BatchNorm was recalibrated first, else 0 */
};

/* Stores *acc for (model_hash, subnet_key, calib_hash), replacing what was
 * there; the spec text is kept per (model_hash, subnet_key).  Returns
 * TL_EINVAL for NULL strings, a NaN accuracy or recalibrated not 0 or 1. */
int tl_store_accuracy_put(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                          const char *calib_hash, const struct tl_subnet_accuracy *acc,
                          struct tl_error *err);

/* Sets *out to a malloc'd copy of what is stored for the key, spec text
 * included in the same block: free(*out) releases all.  Returns TL_ENOENT
 * if nothing is. */
int tl_store_accuracy_get(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                          const char *calib_hash, struct tl_subnet_accuracy **out,
                          struct tl_error *err);

/* -------------------------------------------------------- BN statistics */

/* Stores data[0..len) (opaque bytes the caller serialised; len 0 is
 * allowed) as the BatchNorm statistics of (model_hash, subnet_key,
 * calib_hash), replacing what was there. */
int tl_store_bn_put(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                    const char *calib_hash, const void *data, size_t len, struct tl_error *err);

/* Sets *data to a malloc'd copy of the stored bytes (never NULL, even for
 * len 0; the caller frees it) and *len to their count.  Returns TL_ENOENT
 * if nothing is stored. */
int tl_store_bn_get(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                    const char *calib_hash, void **data, size_t *len, struct tl_error *err);

/* ------------------------------------------------------------ frontier */

/* One subnet of a frontier, with its predictions. */
struct tl_frontier_entry {
  const char *spec; /* canonical spec text */
  uint64_t subnet_key;
  double predicted_ms;
  double predicted_mib;
  double accuracy; /* a fraction in [0, 1] */
};

/* Replaces the frontier of (model_hash, device_id, calib_hash, space) by
 * entries[0..n) in this order, atomically: readers see the old list or the
 * new one.  space is the canonical text of the search space's choices.
 * n may be 0 (a search that found nothing is remembered too).  Returns
 * TL_EINVAL for NULL strings, NaN numbers or an unknown device_id. */
int tl_store_frontier_put(struct tl_store *st, const char *model_hash, int64_t device_id,
                          const char *calib_hash, const char *space,
                          const struct tl_frontier_entry *entries, size_t n, struct tl_error *err);

/* Sets *entries to a malloc'd array of the stored frontier in the order it
 * was put, spec texts in the same block (free(*entries) releases all), and
 * *count to its length.  A stored empty frontier gives *entries NULL and
 * *count 0.  Returns TL_ENOENT if no frontier was ever put for the key. */
int tl_store_frontier_get(struct tl_store *st, const char *model_hash, int64_t device_id,
                          const char *calib_hash, const char *space,
                          struct tl_frontier_entry **entries, size_t *count, struct tl_error *err);

/* -------------------------------------------------------------- events */

/* A switch of the active subnet, as the daemon logs it. */
struct tl_switch_event {
  int64_t id;      /* given by the store, increasing; never reused */
  int64_t time_ms; /* unix time in milliseconds */
  const char *model;
  const char *from_spec; /* NULL when no subnet was active before */
  const char *to_spec;
  const char *reason;
  const char *state; /* the device state as JSON text, or NULL */
};

/* Appends *ev (its id is ignored) and sets *id (may be NULL) to the id it
 * got.  Returns TL_EINVAL if model, to_spec or reason is NULL. */
int tl_store_event_append(struct tl_store *st, const struct tl_switch_event *ev, int64_t *id,
                          struct tl_error *err);

/* Sets *events to a malloc'd array of the last max events appended (of
 * the model named, or of every model when model is NULL), newest first,
 * strings in the same block (free(*events) releases all), and *count to
 * how many there are (fewer than max if fewer are stored; with none,
 * *events is NULL).  "Last" is by append order, not by time_ms, which a
 * clock change can make go backwards.  Returns TL_EINVAL if max < 0. */
int tl_store_event_last(struct tl_store *st, const char *model, int64_t max,
                        struct tl_switch_event **events, size_t *count, struct tl_error *err);

/* Sets *count to the number of stored events. */
int tl_store_event_count(struct tl_store *st, int64_t *count, struct tl_error *err);

/* Deletes all but the last keep events, so a daemon that runs for years
 * keeps a bounded log.  Returns TL_EINVAL if keep < 0. */
int tl_store_event_trim(struct tl_store *st, int64_t keep, struct tl_error *err);

#endif
