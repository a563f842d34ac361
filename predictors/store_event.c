/*
 * store_event.c - the daemon's switch events in the cache: appended,
 * read newest first, trimmed (see store.h).
 */
#include "store.h"

#include <sqlite3.h>
#include <stdlib.h>

#include "store_internal.h"

/* -------------------------------------------------------------- events */

int tl_store_event_append(struct tl_store *st, const struct tl_switch_event *ev, int64_t *id,
                          struct tl_error *err) {
  if (st == NULL || ev == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_event_append: NULL argument");
  if (ev->model == NULL || ev->to_spec == NULL || ev->reason == NULL)
    return tl_fail(err, TL_EINVAL,
                   "%s: a switch event needs a model, a to_spec and a "
                   "reason",
                   st->path);
  sqlite3_stmt *s = st->stmt[STMT_EVENT_ADD];
  int sr = tl__store_bind(s, "ittttt", ev->time_ms, ev->model, ev->from_spec, ev->to_spec,
                          ev->reason, ev->state);
  if (sr != SQLITE_OK) {
    int rc = tl__store_sql_fail(st, sr, "cannot store a switch event", err);
    tl__store_stmt_done(s);
    return rc;
  }
  int rc = tl__store_run(st, STMT_EVENT_ADD, "cannot store a switch event", err);
  if (rc < 0)
    return rc;
  if (id != NULL)
    *id = sqlite3_last_insert_rowid(st->db);
  return 0;
}

/* Reads the event row s is on into *e, strings into the block. */
/* One row of STMT_EVENT_LAST (a tl__store_row_fill_fn). */
static int event_row(sqlite3_stmt *s, void *elem, char **cursor, const char *end) {
  struct tl_switch_event *e = elem;
  e->id = sqlite3_column_int64(s, 0);
  e->time_ms = sqlite3_column_int64(s, 1);
  int sr = tl__store_text_copy(s, 2, cursor, end, &e->model);
  if (sr == SQLITE_OK)
    sr = tl__store_text_copy(s, 3, cursor, end, &e->from_spec);
  if (sr == SQLITE_OK)
    sr = tl__store_text_copy(s, 4, cursor, end, &e->to_spec);
  if (sr == SQLITE_OK)
    sr = tl__store_text_copy(s, 5, cursor, end, &e->reason);
  if (sr == SQLITE_OK)
    sr = tl__store_text_copy(s, 6, cursor, end, &e->state);
  if (sr == SQLITE_OK && (e->model == NULL || e->to_spec == NULL || e->reason == NULL))
    return ROW_NULL_TEXT;
  return sr;
}

int tl_store_event_last(struct tl_store *st, const char *model, int64_t max,
                        struct tl_switch_event **events, size_t *count, struct tl_error *err) {
  if (st == NULL || events == NULL || count == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_event_last: NULL argument");
  if (max < 0)
    return tl_fail(err, TL_EINVAL, "%s: cannot list %lld events", st->path, (long long)max);
  sqlite3_stmt *s = st->stmt[STMT_EVENT_LAST];
  struct tl_switch_event *block = NULL;
  size_t n = 0;

  int rc = tl__store_txn_begin_read(st, err);
  if (rc < 0)
    return rc;
  int sr = tl__store_bind(s, "ti", model, max);
  if (sr != SQLITE_OK) {
    rc = tl__store_sql_fail(st, sr, "cannot read switch events", err);
    tl__store_stmt_done(s);
    goto fail;
  }
  rc = tl__store_read_rows(st, s, sizeof *block, 2, 6, event_row, "switch events", (void **)&block,
                           &n, err);
  if (rc < 0)
    goto fail;
  rc = tl__store_txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *events = block;
  *count = n;
  return 0;

fail:
  tl__store_txn_abort(st);
  free(block);
  return rc;
}

int tl_store_event_count(struct tl_store *st, int64_t *count, struct tl_error *err) {
  if (st == NULL || count == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_event_count: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_EVENT_COUNT];
  int rc = 0;
  int sr = sqlite3_step(s);
  if (sr == SQLITE_ROW)
    *count = sqlite3_column_int64(s, 0);
  else
    rc = tl__store_sql_fail(st, sr, "cannot count switch events", err);
  tl__store_stmt_done(s);
  return rc;
}

int tl_store_event_trim(struct tl_store *st, int64_t keep, struct tl_error *err) {
  if (st == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_event_trim: NULL argument");
  if (keep < 0)
    return tl_fail(err, TL_EINVAL, "%s: cannot keep %lld events", st->path, (long long)keep);
  int sr = tl__store_bind(st->stmt[STMT_EVENT_TRIM], "i", keep);
  if (sr != SQLITE_OK) {
    int rc = tl__store_sql_fail(st, sr, "cannot trim switch events", err);
    tl__store_stmt_done(st->stmt[STMT_EVENT_TRIM]);
    return rc;
  }
  return tl__store_run(st, STMT_EVENT_TRIM, "cannot trim switch events", err);
}
