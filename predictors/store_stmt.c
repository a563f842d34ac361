/*
 * store_stmt.c - what every file of the store runs its statements with:
 * SQLite's errors as TL_E* codes with a sentence, binding, running,
 * transactions, and rows read into one malloc'd block (see
 * store_internal.h).
 */
#include <assert.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* --------------------------------------------------------------- errors */

/* The TL_E* code for a SQLite result code. */
static int code_of(int sqlite_rc) {
  switch (sqlite_rc & 0xff) {
  case SQLITE_NOMEM: return TL_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return TL_EBUSY;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB: return TL_EFORMAT;
  case SQLITE_CONSTRAINT: return TL_EINVAL;
  default: return TL_EIO;
  }
}

/* Errors that say nothing about the file itself: waiting longer, having
 * memory or room on the disk would have worked, so they must never get a
 * file set aside. */
bool tl__store_is_transient(int sqlite_rc) {
  int primary = sqlite_rc & 0xff;
  return primary == SQLITE_NOMEM || primary == SQLITE_BUSY || primary == SQLITE_LOCKED ||
         primary == SQLITE_FULL;
}

/* Fills err with "path: what: sqlite's message" and returns the code.
 * Call before resetting the statement that failed. */
int tl__store_sql_fail(struct tl_store *st, int sqlite_rc, const char *what, struct tl_error *err) {
  /* codes made up here rather than by SQLite have no message in the
   * connection: use the code's own text; so for a failed allocation,
   * whose message may be another one's (PRAGMA quick_check short of
   * memory leaves "unable to open a temporary database file") */
  bool from_db =
      (sqlite3_errcode(st->db) & 0xff) == (sqlite_rc & 0xff) && (sqlite_rc & 0xff) != SQLITE_NOMEM;
  return tl_fail(err, code_of(sqlite_rc), "%s: %s: %s", st->path, what,
                 from_db ? sqlite3_errmsg(st->db) : sqlite3_errstr(sqlite_rc));
}

/* ------------------------------------------------------------- helpers */

/* Binds the arguments after types to parameters 1, 2, ... of s, one per
 * letter: 'i' int64_t, 'k' uint64_t (stored as the int64 with the same
 * bits), 'd' double, 't' const char * (NULL binds NULL), 'b' const void *
 * then size_t.  Strings and blobs are bound without copies; they must
 * outlive the statement's use.  Returns a SQLite code. */
int tl__store_bind(sqlite3_stmt *s, const char *types, ...) {
  va_list ap;
  int rc = SQLITE_OK;
  va_start(ap, types);
  for (int i = 0; types[i] != '\0' && rc == SQLITE_OK; i++) {
    int idx = i + 1;
    switch (types[i]) {
    case 'i': rc = sqlite3_bind_int64(s, idx, va_arg(ap, int64_t)); break;
    case 'k': rc = sqlite3_bind_int64(s, idx, (sqlite3_int64)va_arg(ap, uint64_t)); break;
    case 'd': rc = sqlite3_bind_double(s, idx, va_arg(ap, double)); break;
    case 't': {
      const char *t = va_arg(ap, const char *);
      rc = t != NULL ? sqlite3_bind_text(s, idx, t, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
      break;
    }
    case 'b': {
      const void *p = va_arg(ap, const void *);
      size_t n = va_arg(ap, size_t);
      /* a NULL pointer would bind SQL NULL, not an empty blob */
      rc = sqlite3_bind_blob64(s, idx, n > 0 ? p : "", n, SQLITE_STATIC);
      break;
    }
    default: assert(!"bad bind type"); rc = SQLITE_MISUSE;
    }
  }
  va_end(ap);
  return rc;
}

/* Makes s ready for its next use.  sqlite3_reset() repeats the error of
 * the last step, which the caller has already handled; clearing bindings
 * cannot fail. */
void tl__store_stmt_done(sqlite3_stmt *s) {
  (void)sqlite3_reset(s);
  (void)sqlite3_clear_bindings(s);
}

/* Runs statement id to completion (one that returns no rows).  Bind its
 * parameters first. */
int tl__store_run(struct tl_store *st, enum stmt id, const char *what, struct tl_error *err) {
  sqlite3_stmt *s = st->stmt[id];
  int rc = sqlite3_step(s);
  int ret = rc == SQLITE_DONE ? 0 : tl__store_sql_fail(st, rc, what, err);
  tl__store_stmt_done(s);
  return ret;
}

int tl__store_txn_begin_write(struct tl_store *st, struct tl_error *err) {
  return tl__store_run(st, STMT_BEGIN_WRITE, "cannot start a transaction", err);
}

int tl__store_txn_begin_read(struct tl_store *st, struct tl_error *err) {
  return tl__store_run(st, STMT_BEGIN_READ, "cannot start a transaction", err);
}

int tl__store_txn_commit(struct tl_store *st, struct tl_error *err) {
  return tl__store_run(st, STMT_COMMIT, "cannot commit", err);
}

/* Undoes the open transaction, if any (a failed COMMIT may already have
 * rolled back).  Called on failure paths, whose error is already in err: a
 * failing ROLLBACK has nothing to add, and SQLite rolls back on its own
 * when the connection's next transaction starts or it closes. */
void tl__store_txn_abort(struct tl_store *st) {
  if (sqlite3_get_autocommit(st->db))
    return;
  sqlite3_stmt *s = st->stmt[STMT_ROLLBACK];
  (void)sqlite3_step(s);
  tl__store_stmt_done(s);
}

/* Column col of s as text: *text, or NULL for SQL NULL, and its length.
 * Returns a SQLite code (SQLITE_NOMEM if the text could not be had). */
int tl__store_column_text(sqlite3_stmt *s, int col, const char **text, size_t *len) {
  if (sqlite3_column_type(s, col) == SQLITE_NULL) {
    *text = NULL;
    *len = 0;
    return SQLITE_OK;
  }
  const unsigned char *t = sqlite3_column_text(s, col); /* before _bytes() */
  if (t == NULL)
    return SQLITE_NOMEM;
  *text = (const char *)t;
  *len = (size_t)sqlite3_column_bytes(s, col);
  return SQLITE_OK;
}

/* Adds the room column col's text needs in a result block to *bytes. */
static int text_room(sqlite3_stmt *s, int col, size_t *bytes) {
  const char *t;
  size_t n;
  int rc = tl__store_column_text(s, col, &t, &n);
  if (rc == SQLITE_OK && t != NULL)
    *bytes += n + 1;
  return rc;
}

/* Copies column col's text to *cursor (which must stay below end),
 * advances it and points *dst at the copy (NULL for SQL NULL).  Returns
 * SQLITE_INTERNAL if the text does not fit: the rows changed between the
 * two passes, which the read transaction rules out. */
int tl__store_text_copy(sqlite3_stmt *s, int col, char **cursor, const char *end,
                        const char **dst) {
  const char *t;
  size_t n;
  int rc = tl__store_column_text(s, col, &t, &n);
  if (rc != SQLITE_OK)
    return rc;
  if (t == NULL) {
    *dst = NULL;
    return SQLITE_OK;
  }
  if ((size_t)(end - *cursor) < n + 1)
    return SQLITE_INTERNAL;
  memcpy(*cursor, t, n);
  (*cursor)[n] = '\0';
  *dst = *cursor;
  *cursor += n + 1;
  return SQLITE_OK;
}

/* A required (NOT NULL) text column that came back NULL: damage. */
int tl__store_null_text(struct tl_store *st, const char *what, struct tl_error *err) {
  return tl_fail(err, TL_EFORMAT, "%s: %s: a required text is NULL", st->path, what);
}

/* The rows of s (bound, not yet stepped) as one malloc'd block: n structs
 * of elem_size, then their texts (columns text_from..text_to).  Two
 * passes, one to size the block and one to fill it; the caller's read
 * transaction keeps the rows the same in between.  what names the rows in
 * messages.  Returns 0 with *block (NULL when there are none) and *n, or a
 * negative code; s is done either way. */
int tl__store_read_rows(struct tl_store *st, sqlite3_stmt *s, size_t elem_size, int text_from,
                        int text_to, tl__store_row_fill_fn *fill, const char *what, void **block,
                        size_t *n, struct tl_error *err) {
  size_t rows = 0, bytes = 0;
  char *mem = NULL;
  int rc = 0, sr;
  while ((sr = sqlite3_step(s)) == SQLITE_ROW) {
    rows++;
    int tr = SQLITE_OK;
    for (int col = text_from; col <= text_to && tr == SQLITE_OK; col++)
      tr = text_room(s, col, &bytes);
    if (tr != SQLITE_OK) {
      sr = tr;
      break;
    }
  }
  if (sr == SQLITE_DONE && rows > 0) {
    (void)sqlite3_reset(s); /* repeats the DONE; the bindings stay */
    mem = malloc(rows * elem_size + bytes);
    if (mem == NULL) {
      tl__store_stmt_done(s);
      return tl_fail(err, TL_ENOMEM, "%s: out of memory reading %zu %s", st->path, rows, what);
    }
    char *cursor = mem + rows * elem_size;
    const char *end = cursor + bytes;
    size_t i = 0;
    while ((sr = sqlite3_step(s)) == SQLITE_ROW && i < rows) {
      sr = fill(s, mem + i++ * elem_size, &cursor, end);
      if (sr == ROW_NULL_TEXT) {
        rc = tl__store_null_text(st, what, err);
        break;
      }
      if (sr != SQLITE_OK)
        break;
    }
    if (rc == 0 && (sr == SQLITE_ROW || i != rows))
      sr = SQLITE_INTERNAL; /* the rows changed between the passes */
  }
  if (rc == 0 && sr != SQLITE_DONE) {
    char msg[96];
    snprintf(msg, sizeof msg, "cannot read %s", what);
    rc = tl__store_sql_fail(st, sr, msg, err);
  }
  tl__store_stmt_done(s);
  if (rc < 0) {
    free(mem);
    return rc;
  }
  *block = mem;
  *n = rows;
  return 0;
}
