/*
 * store_latency.c - op latencies in the cache: one row per device and op
 * signature (see store.h).
 */
#include "store.h"

#include <math.h>
#include <sqlite3.h>

#include "store_internal.h"

/* ---------------------------------------------------------- op latency */

int tl_store_op_get(struct tl_store *st, int64_t device_id, const char *signature,
                    struct tl_op_latency *out, struct tl_error *err) {
  if (st == NULL || signature == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_op_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_OP_GET];
  int rc = 0;
  int sr = tl__store_bind(s, "it", device_id, signature);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    out->signature = signature;
    out->median_us = sqlite3_column_double(s, 0);
    out->runs = sqlite3_column_int64(s, 1);
    out->measured_at_s = sqlite3_column_int64(s, 2);
  } else if (sr == SQLITE_DONE) {
    rc = tl_fail(err, TL_ENOENT, "%s: no latency for \"%s\" on device %lld", st->path, signature,
                 (long long)device_id);
  } else {
    rc = tl__store_sql_fail(st, sr, "cannot read an op latency", err);
  }
  tl__store_stmt_done(s);
  return rc;
}

int tl_store_op_put_batch(struct tl_store *st, int64_t device_id, const struct tl_op_latency *rows,
                          size_t n, struct tl_error *err) {
  if (st == NULL || (rows == NULL && n > 0))
    return tl_fail(err, TL_EINVAL, "tl_store_op_put_batch: NULL argument");
  int rc = tl__store_txn_begin_write(st, err);
  if (rc < 0)
    return rc;
  sqlite3_stmt *s = st->stmt[STMT_OP_PUT];
  for (size_t i = 0; i < n; i++) {
    const struct tl_op_latency *r = &rows[i];
    /* checked as they come: a bad row undoes the rows before it */
    if (r->signature == NULL || isnan(r->median_us)) {
      rc = tl_fail(err, TL_EINVAL, "%s: op latency row %zu has %s", st->path, i,
                   r->signature == NULL ? "no signature" : "a NaN median");
      goto fail;
    }
    int sr = tl__store_bind(s, "itdii", device_id, r->signature, r->median_us, r->runs,
                            r->measured_at_s);
    if (sr == SQLITE_OK)
      sr = sqlite3_step(s);
    if (sr == SQLITE_CONSTRAINT_FOREIGNKEY)
      rc = tl_fail(err, TL_EINVAL, "%s: device %lld is not in the cache", st->path,
                   (long long)device_id);
    else if (sr != SQLITE_DONE)
      rc = tl__store_sql_fail(st, sr, "cannot store op latencies", err);
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

int tl_store_op_foreach(struct tl_store *st, int64_t device_id,
                        int (*fn)(void *ctx, const struct tl_op_latency *row), void *ctx,
                        struct tl_error *err) {
  if (st == NULL || fn == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_op_foreach: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_OP_ALL];
  int rc = 0;
  int sr = tl__store_bind(s, "i", device_id);
  while (sr == SQLITE_OK && (sr = sqlite3_step(s)) == SQLITE_ROW) {
    struct tl_op_latency row;
    size_t len;
    sr = tl__store_column_text(s, 0, &row.signature, &len);
    if (sr != SQLITE_OK)
      break;
    if (row.signature == NULL) {
      rc = tl__store_null_text(st, "reading op latencies", err);
      break;
    }
    row.median_us = sqlite3_column_double(s, 1);
    row.runs = sqlite3_column_int64(s, 2);
    row.measured_at_s = sqlite3_column_int64(s, 3);
    rc = fn(ctx, &row);
    if (rc != 0)
      break;
  }
  if (rc == 0 && sr != SQLITE_DONE)
    rc = tl__store_sql_fail(st, sr, "cannot read op latencies", err);
  tl__store_stmt_done(s);
  return rc;
}
