/*
 * store_internal.h - what the files of the store share and nothing else
 * sees: the statements every query runs (all of tailor's SQL but the
 * schema's migrations, in store.c), the connection, and the helpers that
 * bind, run and read them (store_stmt.c).  Only the store's files
 * (store*.c) include it.  Names with two underscores (tl__) are internal
 * to the library.
 */
#ifndef TL_STORE_INTERNAL_H
#define TL_STORE_INTERNAL_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "store.h"

/* ----------------------------------------------------------- statements */

/* XX(name, sql): every statement the store runs after opening. */
#define STMT_TABLE(XX)                                                                             \
  XX(BEGIN_READ, "BEGIN")                                                                          \
  XX(BEGIN_WRITE, "BEGIN IMMEDIATE")                                                               \
  XX(COMMIT, "COMMIT")                                                                             \
  XX(ROLLBACK, "ROLLBACK")                                                                         \
  XX(DEVICE_ADD, "INSERT INTO device (cpu_model, cores, max_freq_khz, blas, threads)"              \
                 " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING")                            \
  XX(DEVICE_FIND, "SELECT id FROM device WHERE cpu_model = ?1 AND cores = ?2"                      \
                  " AND max_freq_khz = ?3 AND blas = ?4 AND threads = ?5")                         \
  XX(OP_GET, "SELECT median_us, runs, measured_at FROM op_latency"                                 \
             " WHERE device_id = ?1 AND signature = ?2")                                           \
  XX(OP_PUT, "INSERT INTO op_latency (device_id, signature, median_us, runs,"                      \
             " measured_at) VALUES (?1, ?2, ?3, ?4, ?5)"                                           \
             " ON CONFLICT (device_id, signature) DO UPDATE SET"                                   \
             " median_us = excluded.median_us, runs = excluded.runs,"                              \
             " measured_at = excluded.measured_at")                                                \
  XX(OP_ALL, "SELECT signature, median_us, runs, measured_at FROM op_latency"                      \
             " WHERE device_id = ?1 ORDER BY signature")                                           \
  XX(SUBNET_PUT, "INSERT INTO subnet (model_hash, subnet_key, spec) VALUES (?1, ?2, ?3)"           \
                 " ON CONFLICT (model_hash, subnet_key) DO UPDATE SET"                             \
                 " spec = excluded.spec")                                                          \
  XX(ACCURACY_PUT, "INSERT INTO accuracy (model_hash, subnet_key, calib_hash, accuracy,"           \
                   " images, recalibrated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"                        \
                   " ON CONFLICT (model_hash, subnet_key, calib_hash) DO UPDATE SET"               \
                   " accuracy = excluded.accuracy, images = excluded.images,"                      \
                   " recalibrated = excluded.recalibrated")                                        \
  XX(ACCURACY_GET, "SELECT s.spec, a.accuracy, a.images, a.recalibrated"                           \
                   " FROM accuracy AS a JOIN subnet AS s USING (model_hash, subnet_key)"           \
                   " WHERE a.model_hash = ?1 AND a.subnet_key = ?2 AND a.calib_hash = ?3")         \
  XX(BN_PUT, "INSERT INTO bn_stats (model_hash, subnet_key, calib_hash, data)"                     \
             " VALUES (?1, ?2, ?3, ?4)"                                                            \
             " ON CONFLICT (model_hash, subnet_key, calib_hash) DO UPDATE SET"                     \
             " data = excluded.data")                                                              \
  XX(BN_GET, "SELECT data FROM bn_stats"                                                           \
             " WHERE model_hash = ?1 AND subnet_key = ?2 AND calib_hash = ?3")                     \
  XX(FRONTIER_ADD, "INSERT INTO frontier (model_hash, device_id, calib_hash, space)"               \
                   " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING")                              \
  XX(FRONTIER_FIND, "SELECT id FROM frontier WHERE model_hash = ?1 AND device_id = ?2"             \
                    " AND calib_hash = ?3 AND space = ?4")                                         \
  XX(FRONTIER_CLEAR, "DELETE FROM frontier_entry WHERE frontier_id = ?1")                          \
  XX(FRONTIER_ENTRY_ADD, "INSERT INTO frontier_entry (frontier_id, position, spec, subnet_key,"    \
                         " predicted_ms, predicted_mib, accuracy)"                                 \
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                                   \
  XX(FRONTIER_ENTRIES, "SELECT spec, subnet_key, predicted_ms, predicted_mib, accuracy"            \
                       " FROM frontier_entry WHERE frontier_id = ?1 ORDER BY position")            \
  XX(EVENT_ADD, "INSERT INTO event (time_ms, model, from_spec, to_spec, reason, state)"            \
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                                \
  XX(EVENT_LAST, "SELECT id, time_ms, model, from_spec, to_spec, reason, state"                    \
                 " FROM event WHERE ?1 IS NULL OR model = ?1"                                      \
                 " ORDER BY id DESC LIMIT ?2")                                                     \
  XX(EVENT_COUNT, "SELECT count(*) FROM event")                                                    \
  XX(EVENT_TRIM, "DELETE FROM event WHERE id <= (SELECT id FROM event"                             \
                 " ORDER BY id DESC LIMIT 1 OFFSET ?1)")

enum stmt {
#define STMT_ENUM(name, sql) STMT_##name,
  STMT_TABLE(STMT_ENUM)
#undef STMT_ENUM
      STMT_COUNT
};

/* One connection (see store.h on threads), its statements prepared. */
struct tl_store {
  sqlite3 *db;
  char *path; /* for messages; ":memory:" for a memory cache */
  sqlite3_stmt *stmt[STMT_COUNT];
};

/* --------------------------------------------------------------- errors */

/* Errors that say nothing about the file itself: waiting longer, having
 * memory or room on the disk would have worked, so they must never get a
 * file set aside. */
bool tl__store_is_transient(int sqlite_rc);

/* Fills err with "path: what: sqlite's message" and returns the code.
 * Call before resetting the statement that failed. */
int tl__store_sql_fail(struct tl_store *st, int sqlite_rc, const char *what, struct tl_error *err);

/* ------------------------------------------------------------- helpers */

/* Binds the arguments after types to parameters 1, 2, ... of s, one per
 * letter: 'i' int64_t, 'k' uint64_t (stored as the int64 with the same
 * bits), 'd' double, 't' const char * (NULL binds NULL), 'b' const void *
 * then size_t.  Strings and blobs are bound without copies; they must
 * outlive the statement's use.  Returns a SQLite code. */
int tl__store_bind(sqlite3_stmt *s, const char *types, ...);

/* Makes s ready for its next use. */
void tl__store_stmt_done(sqlite3_stmt *s);

/* Runs statement id to completion (one that returns no rows).  Bind its
 * parameters first. */
int tl__store_run(struct tl_store *st, enum stmt id, const char *what, struct tl_error *err);

int tl__store_txn_begin_write(struct tl_store *st, struct tl_error *err);
int tl__store_txn_begin_read(struct tl_store *st, struct tl_error *err);
int tl__store_txn_commit(struct tl_store *st, struct tl_error *err);

/* Undoes the open transaction, if any; for failure paths, whose error is
 * already in err. */
void tl__store_txn_abort(struct tl_store *st);

/* Column col of s as text: *text, or NULL for SQL NULL, and its length.
 * Returns a SQLite code (SQLITE_NOMEM if the text could not be had). */
int tl__store_column_text(sqlite3_stmt *s, int col, const char **text, size_t *len);

/* Copies column col's text to *cursor (which must stay below end),
 * advances it and points *dst at the copy (NULL for SQL NULL).  Returns
 * SQLITE_INTERNAL if the text does not fit. */
int tl__store_text_copy(sqlite3_stmt *s, int col, char **cursor, const char *end, const char **dst);

/* A required (NOT NULL) text column that came back NULL: damage. */
int tl__store_null_text(struct tl_store *st, const char *what, struct tl_error *err);

/* Copies one row of s into the struct at elem, its texts to *cursor
 * (below end; see tl__store_text_copy).  Returns SQLITE_OK, an SQLite
 * error, or ROW_NULL_TEXT when a required text is NULL. */
typedef int tl__store_row_fill_fn(sqlite3_stmt *s, void *elem, char **cursor, const char *end);
#define ROW_NULL_TEXT (-1)

/* The rows of s (bound, not yet stepped) as one malloc'd block: n structs
 * of elem_size, then their texts (columns text_from..text_to); what names
 * the rows in messages.  Returns 0 with *block (NULL when there are none)
 * and *n, or a negative code; s is done either way. */
int tl__store_read_rows(struct tl_store *st, sqlite3_stmt *s, size_t elem_size, int text_from,
                        int text_to, tl__store_row_fill_fn *fill, const char *what, void **block,
                        size_t *n, struct tl_error *err);

#endif
