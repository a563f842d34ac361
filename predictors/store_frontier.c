/*
 * store_frontier.c - what a search learns, in the cache: subnets and their
 * accuracies, BatchNorm statistics, and frontiers (see store.h).
 */
#include "store.h"

#include <math.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* ------------------------------------------------------------ subnets */

int tl_store_accuracy_put(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                          const char *calib_hash, const struct tl_subnet_accuracy *acc,
                          struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || acc == NULL || acc->spec == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_accuracy_put: NULL argument");
  if (isnan(acc->accuracy) || (acc->recalibrated != 0 && acc->recalibrated != 1))
    return tl_fail(err, TL_EINVAL,
                   "%s: accuracy of \"%s\" must be a number and recalibrated 0 or 1", st->path,
                   acc->spec);

  int rc = tl__store_txn_begin_write(st, err);
  if (rc < 0)
    return rc;
  int sr = tl__store_bind(st->stmt[STMT_SUBNET_PUT], "tkt", model_hash, subnet_key, acc->spec);
  if (sr == SQLITE_OK) {
    rc = tl__store_run(st, STMT_SUBNET_PUT, "cannot store a subnet", err);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot store a subnet", err);
    tl__store_stmt_done(st->stmt[STMT_SUBNET_PUT]);
  }
  if (rc < 0)
    goto fail;
  sr = tl__store_bind(st->stmt[STMT_ACCURACY_PUT], "tktdii", model_hash, subnet_key, calib_hash,
                      acc->accuracy, acc->images, (int64_t)acc->recalibrated);
  if (sr == SQLITE_OK) {
    rc = tl__store_run(st, STMT_ACCURACY_PUT, "cannot store an accuracy", err);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot store an accuracy", err);
    tl__store_stmt_done(st->stmt[STMT_ACCURACY_PUT]);
  }
  if (rc < 0)
    goto fail;
  rc = tl__store_txn_commit(st, err);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  tl__store_txn_abort(st);
  return rc;
}

int tl_store_accuracy_get(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                          const char *calib_hash, struct tl_subnet_accuracy **out,
                          struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_accuracy_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_ACCURACY_GET];
  struct tl_subnet_accuracy *acc = NULL;
  int rc = 0;
  int sr = tl__store_bind(s, "tkt", model_hash, subnet_key, calib_hash);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    const char *spec;
    size_t len;
    sr = tl__store_column_text(s, 0, &spec, &len);
    if (sr != SQLITE_OK) {
      rc = tl__store_sql_fail(st, sr, "cannot read an accuracy", err);
    } else if (spec == NULL) {
      rc = tl__store_null_text(st, "reading an accuracy", err);
    } else if ((acc = malloc(sizeof *acc + len + 1)) == NULL) {
      rc = tl_fail(err, TL_ENOMEM, "%s: out of memory reading an accuracy", st->path);
    } else {
      char *text = (char *)(acc + 1);
      memcpy(text, spec, len + 1);
      acc->spec = text;
      acc->accuracy = sqlite3_column_double(s, 1);
      acc->images = sqlite3_column_int64(s, 2);
      acc->recalibrated = sqlite3_column_int(s, 3);
    }
  } else if (sr == SQLITE_DONE) {
    rc = tl_fail(err, TL_ENOENT,
                 "%s: no accuracy for subnet %016llx of model %s on "
                 "calibration data %s",
                 st->path, (unsigned long long)subnet_key, model_hash, calib_hash);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot read an accuracy", err);
  }
  tl__store_stmt_done(s);
  if (rc == 0)
    *out = acc;
  return rc;
}

/* -------------------------------------------------------- BN statistics */

int tl_store_bn_put(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                    const char *calib_hash, const void *data, size_t len, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || (data == NULL && len > 0))
    return tl_fail(err, TL_EINVAL, "tl_store_bn_put: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_BN_PUT];
  int sr = tl__store_bind(s, "tktb", model_hash, subnet_key, calib_hash, data, len);
  if (sr != SQLITE_OK) {
    int rc = tl__store_sql_fail(st, sr, "cannot store BN statistics", err);
    tl__store_stmt_done(s);
    return rc;
  }
  /* one statement: atomic without a transaction of our own */
  return tl__store_run(st, STMT_BN_PUT, "cannot store BN statistics", err);
}

int tl_store_bn_get(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                    const char *calib_hash, void **data, size_t *len, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || data == NULL || len == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_bn_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_BN_GET];
  void *copy = NULL;
  size_t n = 0;
  int rc = 0;
  int sr = tl__store_bind(s, "tkt", model_hash, subnet_key, calib_hash);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    const void *blob = sqlite3_column_blob(s, 0); /* NULL for 0 bytes */
    n = (size_t)sqlite3_column_bytes(s, 0);
    if (blob == NULL && n > 0)
      rc = tl_fail(err, TL_ENOMEM, "%s: out of memory reading BN statistics", st->path);
    else if ((copy = malloc(n > 0 ? n : 1)) == NULL)
      rc = tl_fail(err, TL_ENOMEM, "%s: out of memory reading %zu bytes of BN statistics", st->path,
                   n);
    else if (n > 0)
      memcpy(copy, blob, n);
  } else if (sr == SQLITE_DONE) {
    rc = tl_fail(err, TL_ENOENT,
                 "%s: no BN statistics for subnet %016llx of model %s "
                 "on calibration data %s",
                 st->path, (unsigned long long)subnet_key, model_hash, calib_hash);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot read BN statistics", err);
  }
  tl__store_stmt_done(s);
  if (rc < 0) {
    free(copy);
    return rc;
  }
  *data = copy;
  *len = n;
  return 0;
}

/* ------------------------------------------------------------ frontier */

/* Finds the id of the frontier row for the key: 0 and *found, or 0 and
 * !*found when there is none. */
static int frontier_find(struct tl_store *st, const char *model_hash, int64_t device_id,
                         const char *calib_hash, const char *space, int64_t *id, bool *found,
                         struct tl_error *err) {
  sqlite3_stmt *s = st->stmt[STMT_FRONTIER_FIND];
  int rc = 0;
  *found = false;
  int sr = tl__store_bind(s, "titt", model_hash, device_id, calib_hash, space);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    *id = sqlite3_column_int64(s, 0);
    *found = true;
  } else if (sr != SQLITE_DONE) {
    rc = tl__store_sql_fail(st, sr, "cannot look a frontier up", err);
  }
  tl__store_stmt_done(s);
  return rc;
}

int tl_store_frontier_put(struct tl_store *st, const char *model_hash, int64_t device_id,
                          const char *calib_hash, const char *space,
                          const struct tl_frontier_entry *entries, size_t n, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || space == NULL ||
      (entries == NULL && n > 0))
    return tl_fail(err, TL_EINVAL, "tl_store_frontier_put: NULL argument");
  int rc = tl__store_txn_begin_write(st, err);
  if (rc < 0)
    return rc;

  sqlite3_stmt *s = st->stmt[STMT_FRONTIER_ADD];
  int sr = tl__store_bind(s, "titt", model_hash, device_id, calib_hash, space);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_CONSTRAINT_FOREIGNKEY)
    rc = tl_fail(err, TL_EINVAL, "%s: device %lld is not in the cache", st->path,
                 (long long)device_id);
  else if (sr != SQLITE_DONE)
    rc = tl__store_sql_fail(st, sr, "cannot store a frontier", err);
  tl__store_stmt_done(s);
  if (rc < 0)
    goto fail;

  int64_t id = 0;
  bool found;
  rc = frontier_find(st, model_hash, device_id, calib_hash, space, &id, &found, err);
  if (rc == 0 && !found)
    rc = tl_fail(err, TL_EINTERNAL, "%s: the frontier just added is not found", st->path);
  if (rc < 0)
    goto fail;

  sr = tl__store_bind(st->stmt[STMT_FRONTIER_CLEAR], "i", id);
  if (sr == SQLITE_OK) {
    rc = tl__store_run(st, STMT_FRONTIER_CLEAR, "cannot replace a frontier", err);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot replace a frontier", err);
    tl__store_stmt_done(st->stmt[STMT_FRONTIER_CLEAR]);
  }
  if (rc < 0)
    goto fail;

  s = st->stmt[STMT_FRONTIER_ENTRY_ADD];
  for (size_t i = 0; i < n; i++) {
    const struct tl_frontier_entry *e = &entries[i];
    if (e->spec == NULL || isnan(e->predicted_ms) || isnan(e->predicted_mib) ||
        isnan(e->accuracy)) {
      rc = tl_fail(err, TL_EINVAL, "%s: frontier entry %zu has %s", st->path, i,
                   e->spec == NULL ? "no spec" : "a NaN number");
      goto fail;
    }
    sr = tl__store_bind(s, "iitkddd", id, (int64_t)i, e->spec, e->subnet_key, e->predicted_ms,
                        e->predicted_mib, e->accuracy);
    if (sr == SQLITE_OK)
      sr = sqlite3_step(s);
    if (sr != SQLITE_DONE)
      rc = tl__store_sql_fail(st, sr, "cannot store a frontier", err);
    tl__store_stmt_done(s);
    if (rc < 0)
      goto fail;
  }
  rc = tl__store_txn_commit(st, err);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  tl__store_txn_abort(st);
  return rc;
}

/* One row of STMT_FRONTIER_ENTRIES (a tl__store_row_fill_fn). */
static int frontier_row(sqlite3_stmt *s, void *elem, char **cursor, const char *end) {
  struct tl_frontier_entry *e = elem;
  int sr = tl__store_text_copy(s, 0, cursor, end, &e->spec);
  e->subnet_key = (uint64_t)sqlite3_column_int64(s, 1);
  e->predicted_ms = sqlite3_column_double(s, 2);
  e->predicted_mib = sqlite3_column_double(s, 3);
  e->accuracy = sqlite3_column_double(s, 4);
  return sr == SQLITE_OK && e->spec == NULL ? ROW_NULL_TEXT : sr;
}

int tl_store_frontier_get(struct tl_store *st, const char *model_hash, int64_t device_id,
                          const char *calib_hash, const char *space,
                          struct tl_frontier_entry **entries, size_t *count, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || space == NULL || entries == NULL ||
      count == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_frontier_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_FRONTIER_ENTRIES];
  struct tl_frontier_entry *block = NULL;
  size_t n = 0;
  int64_t id = 0;
  bool found;

  int rc = tl__store_txn_begin_read(st, err);
  if (rc < 0)
    return rc;
  rc = frontier_find(st, model_hash, device_id, calib_hash, space, &id, &found, err);
  if (rc < 0)
    goto fail;
  if (!found) {
    rc = tl_fail(err, TL_ENOENT,
                 "%s: no frontier for model %s on device %lld with calibration "
                 "data %s and space \"%s\"",
                 st->path, model_hash, (long long)device_id, calib_hash, space);
    goto fail;
  }

  int sr = tl__store_bind(s, "i", id);
  if (sr != SQLITE_OK) {
    rc = tl__store_sql_fail(st, sr, "cannot read a frontier", err);
    tl__store_stmt_done(s);
    goto fail;
  }
  rc = tl__store_read_rows(st, s, sizeof *block, 0, 0, frontier_row, "a frontier", (void **)&block,
                           &n, err);
  if (rc < 0)
    goto fail;
  rc = tl__store_txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *entries = block;
  *count = n;
  return 0;

fail:
  tl__store_txn_abort(st);
  free(block);
  return rc;
}
