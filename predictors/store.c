/*
 * store.c - the SQLite cache: schema, migrations, checks on open, and every
 * query tailor makes.  No other file holds SQL.
 *
 * The schema is written only as migrations, an ordered table of SQL steps:
 * version 1 creates everything, and a later version is one more row.  The
 * schema a file must have is whatever those steps produce, so opening a
 * file compares its tables with a throwaway in-memory database built by the
 * same steps; there is no second list of tables to keep in sync.
 *
 * Invariant: a connection that tl_store_open() hands out is on a file whose
 * application_id is TL_STORE_APPLICATION_ID, whose user_version is
 * TL_STORE_SCHEMA_VERSION, that passed PRAGMA quick_check, and whose schema
 * is exactly that of the migrations.  Anything else was renamed aside
 * before a single byte of it was written.
 *
 * All statements are prepared once when the store opens and reset after
 * each use.  Every write of more than one row runs in a BEGIN IMMEDIATE
 * transaction (taking the write lock up front, so two writers never
 * deadlock upgrading read locks); reads that return more than one row run
 * in a read transaction so both passes over the rows see one snapshot.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ----------------------------------------------------------- migrations */

/* Row i upgrades a file from version i to i + 1.  Never edit a row that
 * has shipped: files out there were made by it.  STRICT tables make SQLite
 * refuse a value of the wrong type instead of converting it. */
static const char *const migrations[] = {
    /* version 1 */
    "CREATE TABLE device ("
    " id INTEGER PRIMARY KEY,"
    " cpu_model TEXT NOT NULL,"
    " cores INTEGER NOT NULL,"
    " max_freq_khz INTEGER NOT NULL,"
    " blas TEXT NOT NULL,"
    " threads INTEGER NOT NULL,"
    " UNIQUE (cpu_model, cores, max_freq_khz, blas, threads)"
    ") STRICT;"
    "CREATE TABLE op_latency ("
    " device_id INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,"
    " signature TEXT NOT NULL,"
    " median_us REAL NOT NULL,"
    " runs INTEGER NOT NULL,"
    " measured_at INTEGER NOT NULL,"
    " PRIMARY KEY (device_id, signature)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE subnet ("
    " model_hash TEXT NOT NULL,"
    " subnet_key INTEGER NOT NULL,"
    " spec TEXT NOT NULL,"
    " PRIMARY KEY (model_hash, subnet_key)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE accuracy ("
    " model_hash TEXT NOT NULL,"
    " subnet_key INTEGER NOT NULL,"
    " calib_hash TEXT NOT NULL,"
    " accuracy REAL NOT NULL,"
    " images INTEGER NOT NULL,"
    " recalibrated INTEGER NOT NULL CHECK (recalibrated IN (0, 1)),"
    " PRIMARY KEY (model_hash, subnet_key, calib_hash),"
    " FOREIGN KEY (model_hash, subnet_key)"
    "  REFERENCES subnet (model_hash, subnet_key) ON DELETE CASCADE"
    ") STRICT, WITHOUT ROWID;"
    /* a rowid table: its rows are large blobs */
    "CREATE TABLE bn_stats ("
    " model_hash TEXT NOT NULL,"
    " subnet_key INTEGER NOT NULL,"
    " calib_hash TEXT NOT NULL,"
    " data BLOB NOT NULL,"
    " UNIQUE (model_hash, subnet_key, calib_hash)"
    ") STRICT;"
    /* a frontier row exists once put, even with no entries, so that
     * "searched, found nothing" differs from "never searched" */
    "CREATE TABLE frontier ("
    " id INTEGER PRIMARY KEY,"
    " model_hash TEXT NOT NULL,"
    " device_id INTEGER NOT NULL REFERENCES device (id) ON DELETE CASCADE,"
    " calib_hash TEXT NOT NULL,"
    " space TEXT NOT NULL,"
    " UNIQUE (model_hash, device_id, calib_hash, space)"
    ") STRICT;"
    "CREATE TABLE frontier_entry ("
    " frontier_id INTEGER NOT NULL REFERENCES frontier (id) ON DELETE CASCADE,"
    " position INTEGER NOT NULL,"
    " spec TEXT NOT NULL,"
    " subnet_key INTEGER NOT NULL,"
    " predicted_ms REAL NOT NULL,"
    " predicted_mib REAL NOT NULL,"
    " accuracy REAL NOT NULL,"
    " PRIMARY KEY (frontier_id, position)"
    ") STRICT, WITHOUT ROWID;"
    /* AUTOINCREMENT: ids are never reused after a trim, so "newest" is
     * always the largest id */
    "CREATE TABLE event ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time_ms INTEGER NOT NULL,"
    " model TEXT NOT NULL,"
    " from_spec TEXT,"
    " to_spec TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    " state TEXT"
    ") STRICT;",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == TL_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* The schema objects the checks compare, in a stable order.  SQLite's own
 * (sqlite_sequence, sqlite_autoindex_*) follow from the tables' SQL. */
#define SCHEMA_QUERY                                                                               \
  "SELECT type, name, tbl_name, sql FROM sqlite_schema"                                            \
  " WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY type, name"

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

static const char *const stmt_sql[STMT_COUNT] = {
#define STMT_SQL(name, sql) [STMT_##name] = sql,
    STMT_TABLE(STMT_SQL)
#undef STMT_SQL
};

struct tl_store {
  sqlite3 *db;
  char *path; /* for messages; ":memory:" for a memory cache */
  sqlite3_stmt *stmt[STMT_COUNT];
};

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

/* Errors that say nothing about the file itself: waiting longer or having
 * memory would have worked, so they must never get a file set aside. */
static bool is_transient(int sqlite_rc) {
  int primary = sqlite_rc & 0xff;
  return primary == SQLITE_NOMEM || primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

/* Fills err with "path: what: sqlite's message" and returns the code.
 * Call before resetting the statement that failed. */
static int sql_fail(struct tl_store *st, int sqlite_rc, const char *what, struct tl_error *err) {
  /* codes made up here rather than by SQLite have no message in the
   * connection: use the code's own text */
  bool from_db = (sqlite3_errcode(st->db) & 0xff) == (sqlite_rc & 0xff);
  return tl_fail(err, code_of(sqlite_rc), "%s: %s: %s", st->path, what,
                 from_db ? sqlite3_errmsg(st->db) : sqlite3_errstr(sqlite_rc));
}

/* ------------------------------------------------------------- helpers */

/* Binds the arguments after types to parameters 1, 2, ... of s, one per
 * letter: 'i' int64_t, 'k' uint64_t (stored as the int64 with the same
 * bits), 'd' double, 't' const char * (NULL binds NULL), 'b' const void *
 * then size_t.  Strings and blobs are bound without copies; they must
 * outlive the statement's use.  Returns a SQLite code. */
static int bind(sqlite3_stmt *s, const char *types, ...) {
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
static void stmt_done(sqlite3_stmt *s) {
  (void)sqlite3_reset(s);
  (void)sqlite3_clear_bindings(s);
}

/* Runs statement id to completion (one that returns no rows).  Bind its
 * parameters first. */
static int run(struct tl_store *st, enum stmt id, const char *what, struct tl_error *err) {
  sqlite3_stmt *s = st->stmt[id];
  int rc = sqlite3_step(s);
  int ret = rc == SQLITE_DONE ? 0 : sql_fail(st, rc, what, err);
  stmt_done(s);
  return ret;
}

static int txn_begin_write(struct tl_store *st, struct tl_error *err) {
  return run(st, STMT_BEGIN_WRITE, "cannot start a transaction", err);
}

static int txn_begin_read(struct tl_store *st, struct tl_error *err) {
  return run(st, STMT_BEGIN_READ, "cannot start a transaction", err);
}

static int txn_commit(struct tl_store *st, struct tl_error *err) {
  return run(st, STMT_COMMIT, "cannot commit", err);
}

/* Undoes the open transaction, if any (a failed COMMIT may already have
 * rolled back).  Called on failure paths, whose error is already in err: a
 * failing ROLLBACK has nothing to add, and SQLite rolls back on its own
 * when the connection's next transaction starts or it closes. */
static void txn_abort(struct tl_store *st) {
  if (sqlite3_get_autocommit(st->db))
    return;
  sqlite3_stmt *s = st->stmt[STMT_ROLLBACK];
  (void)sqlite3_step(s);
  stmt_done(s);
}

/* Column col of s as text: *text, or NULL for SQL NULL, and its length.
 * Returns a SQLite code (SQLITE_NOMEM if the text could not be had). */
static int column_text(sqlite3_stmt *s, int col, const char **text, size_t *len) {
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
  int rc = column_text(s, col, &t, &n);
  if (rc == SQLITE_OK && t != NULL)
    *bytes += n + 1;
  return rc;
}

/* Copies column col's text to *cursor (which must stay below end),
 * advances it and points *dst at the copy (NULL for SQL NULL).  Returns
 * SQLITE_INTERNAL if the text does not fit: the rows changed between the
 * two passes, which the read transaction rules out. */
static int text_copy(sqlite3_stmt *s, int col, char **cursor, const char *end, const char **dst) {
  const char *t;
  size_t n;
  int rc = column_text(s, col, &t, &n);
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
static int null_text(struct tl_store *st, const char *what, struct tl_error *err) {
  return tl_fail(err, TL_EFORMAT, "%s: %s: a required text is NULL", st->path, what);
}

/* Copies one row of s into the struct at elem, its texts to *cursor
 * (below end; see text_copy).  Returns SQLITE_OK, an SQLite error, or
 * ROW_NULL_TEXT when a required text is NULL. */
typedef int row_fill_fn(sqlite3_stmt *s, void *elem, char **cursor, const char *end);
#define ROW_NULL_TEXT (-1)

/* The rows of s (bound, not yet stepped) as one malloc'd block: n structs
 * of elem_size, then their texts (columns text_from..text_to).  Two
 * passes, one to size the block and one to fill it; the caller's read
 * transaction keeps the rows the same in between.  what names the rows in
 * messages.  Returns 0 with *block (NULL when there are none) and *n, or a
 * negative code; s is done either way. */
static int read_rows(struct tl_store *st, sqlite3_stmt *s, size_t elem_size, int text_from,
                     int text_to, row_fill_fn *fill, const char *what, void **block, size_t *n,
                     struct tl_error *err) {
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
      stmt_done(s);
      return tl_fail(err, TL_ENOMEM, "%s: out of memory reading %zu %s", st->path, rows, what);
    }
    char *cursor = mem + rows * elem_size;
    const char *end = cursor + bytes;
    size_t i = 0;
    while ((sr = sqlite3_step(s)) == SQLITE_ROW && i < rows) {
      sr = fill(s, mem + i++ * elem_size, &cursor, end);
      if (sr == ROW_NULL_TEXT) {
        rc = null_text(st, what, err);
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
    rc = sql_fail(st, sr, msg, err);
  }
  stmt_done(s);
  if (rc < 0) {
    free(mem);
    return rc;
  }
  *block = mem;
  *n = rows;
  return 0;
}

/* ---------------------------------------------------------------- files */

/* The companions SQLite may keep next to a database file; they go where
 * the file goes, or a new file would replay an old journal. */
static const char *const companions[] = {"-wal", "-shm", "-journal"};

/* Makes sure path is a regular file, creating it empty with mode 0600 if
 * it does not exist (SQLite would create it 0644).  Sets *created. */
static int ensure_file(const char *path, bool *created, struct tl_error *err) {
  struct stat sb;
  *created = false;
  if (stat(path, &sb) == 0) {
    if (!S_ISREG(sb.st_mode))
      return tl_fail(err, TL_EIO, "%s: cannot use as the cache: not a regular file", path);
    return 0;
  }
  if (errno != ENOENT)
    return tl_fail(err, TL_EIO, "%s: cannot use as the cache: %s", path, strerror(errno));
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) /* another process just made it */
      return 0;
    return tl_fail(err, TL_EIO, "%s: cannot create the cache: %s", path, strerror(errno));
  }
  if (close(fd) < 0)
    return tl_fail(err, TL_EIO, "%s: cannot create the cache: %s", path, strerror(errno));
  *created = true;
  return 0;
}

/* Renames path and its companions to "<path>.<kind>-<unix time>[-n]", the
 * first such name not taken, and writes it into aside. */
static int set_aside(const char *path, const char *kind, char aside[PATH_MAX],
                     struct tl_error *err) {
  char from[PATH_MAX + 16], to[PATH_MAX + 16];
  long long now = (long long)time(NULL);
  bool found = false;

  for (int n = 1; n <= 1000 && !found; n++) {
    int len = n == 1 ? snprintf(aside, PATH_MAX, "%s.%s-%lld", path, kind, now)
                     : snprintf(aside, PATH_MAX, "%s.%s-%lld-%d", path, kind, now, n);
    if (len < 0 || len >= PATH_MAX)
      return tl_fail(err, TL_EIO, "%s: cannot set the cache aside: path too long", path);
    found = true;
    for (int c = -1; c < (int)(sizeof companions / sizeof companions[0]); c++) {
      struct stat sb;
      snprintf(to, sizeof to, "%s%s", aside, c < 0 ? "" : companions[c]);
      if (lstat(to, &sb) == 0 || errno != ENOENT)
        found = false;
    }
  }
  if (!found)
    return tl_fail(err, TL_EIO, "%s: cannot set the cache aside: no free name like %s", path,
                   aside);

  if (rename(path, aside) < 0)
    return tl_fail(err, TL_EIO, "%s: cannot rename it to %s: %s", path, aside, strerror(errno));
  for (size_t c = 0; c < sizeof companions / sizeof companions[0]; c++) {
    snprintf(from, sizeof from, "%s%s", path, companions[c]);
    snprintf(to, sizeof to, "%s%s", aside, companions[c]);
    if (rename(from, to) == 0 || errno == ENOENT)
      continue;
    /* it must not stay next to the new file; losing it is fine */
    if (unlink(from) < 0 && errno != ENOENT)
      return tl_fail(err, TL_EIO, "%s: cannot move or remove %s: %s", path, from, strerror(errno));
  }
  return 0;
}

/* ---------------------------------------------------- checks on opening */

enum verdict {
  VERDICT_FRESH,   /* empty: no schema, no ids */
  VERDICT_OK,      /* ours, version 1..TL_STORE_SCHEMA_VERSION */
  VERDICT_CORRUPT, /* unreadable, damaged, or our id with a wrong schema */
  VERDICT_FOREIGN, /* a database of someone else's */
  VERDICT_NEWER    /* ours, from a newer schema */
};

/* What the checks found; why completes "the file ..." for the report. */
struct inspection {
  enum verdict verdict;
  int version;
  char why[TL_ERROR_MAX / 2];
};

/* SQLite's file header (fileformat.html): a magic string, then
 * big-endian fields at fixed offsets. */
#define HEADER_SIZE 100
#define HEADER_MAGIC "SQLite format 3" /* with its NUL: 16 bytes */
#define HEADER_CHANGE_COUNTER 24
#define HEADER_PAGE_COUNT 28
#define HEADER_APPLICATION_ID 68
#define HEADER_VERSION_VALID_FOR 92

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Classifies what the file's header alone shows, before SQLite opens it:
 * SQLite deletes a stray -wal or -journal and rolls a hot journal back into
 * any file it reads, which would change a file that is not ours before it
 * is set aside.  Leaves ins->verdict VERDICT_OK when SQLite must look (an
 * empty file, or one whose header says it may be ours). */
static void peek_header(const char *path, struct inspection *ins) {
  unsigned char h[HEADER_SIZE];
  size_t n = 0;
  int read_errno = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    read_errno = errno;
  } else {
    while (n < sizeof h) {
      ssize_t r = read(fd, h + n, sizeof h - n);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        read_errno = errno;
      if (r <= 0)
        break;
      n += (size_t)r;
    }
    (void)close(fd); /* opened read-only: a close error loses nothing */
  }
  if (read_errno != 0) {
    ins->verdict = VERDICT_CORRUPT;
    snprintf(ins->why, sizeof ins->why, "cannot be read (%s)", strerror(read_errno));
    return;
  }
  if (n == 0)
    return;
  if (n < sizeof h || memcmp(h, HEADER_MAGIC, sizeof HEADER_MAGIC) != 0) {
    ins->verdict = VERDICT_CORRUPT;
    snprintf(ins->why, sizeof ins->why, "is not an SQLite database (%s)",
             n < sizeof h ? "shorter than an SQLite header" : "no SQLite header");
    return;
  }
  uint32_t app_id = be32(h + HEADER_APPLICATION_ID);
  /* the page count is trusted only when the header says it is current */
  bool count_valid = be32(h + HEADER_CHANGE_COUNTER) == be32(h + HEADER_VERSION_VALID_FOR);
  uint32_t pages = be32(h + HEADER_PAGE_COUNT);
  if (app_id != 0 && app_id != TL_STORE_APPLICATION_ID) {
    ins->verdict = VERDICT_FOREIGN;
    snprintf(ins->why, sizeof ins->why,
             "is another program's SQLite database (application_id 0x%08x, not "
             "tailor's 0x%08x)",
             (unsigned)app_id, (unsigned)TL_STORE_APPLICATION_ID);
  } else if (app_id == 0 && count_valid && pages > 1) {
    /* a database with tables has more than its first page; ours set the
     * id in the transaction that made the tables */
    ins->verdict = VERDICT_FOREIGN;
    snprintf(ins->why, sizeof ins->why,
             "is another program's SQLite database (no application_id, %u pages)", (unsigned)pages);
  }
}

/* The single integer a query returns, through its own statement (the
 * store's are prepared only once the schema is known to be right). */
static int query_int(sqlite3 *db, const char *sql, int *value) {
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    *value = sqlite3_column_int(s, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_INTERNAL; /* every query here returns a row */
  }
  /* finalize keeps the error, if any, for sqlite3_errmsg() */
  (void)sqlite3_finalize(s);
  return rc;
}

/* A SQLite failure while checking the file: transient ones are errors for
 * the caller; anything else means the file cannot be used and is recorded
 * in ins as damage. */
static int damaged(struct tl_store *st, int rc, const char *doing, struct inspection *ins,
                   struct tl_error *err) {
  if (is_transient(rc))
    return sql_fail(st, rc, doing, err);
  ins->verdict = VERDICT_CORRUPT;
  snprintf(ins->why, sizeof ins->why, "is damaged or not a database (%s: %s)", doing,
           st->db != NULL ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
  return 0;
}

/* Opens st->db on st->path and sets the connection up; nothing is written.
 * A file SQLite cannot open is recorded as damage in ins. */
static int db_connect(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  int rc = sqlite3_open_v2(st->path, &st->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (st->db == NULL)
    return tl_fail(err, TL_ENOMEM, "%s: out of memory opening the cache", st->path);
  if (rc != SQLITE_OK)
    return damaged(st, rc, "opening it", ins, err);
  rc = sqlite3_extended_result_codes(st->db, 1);
  if (rc == SQLITE_OK)
    rc = sqlite3_busy_timeout(st->db, TL_STORE_BUSY_TIMEOUT_MS);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  /* a file that fails its checks is set aside as it is: no checkpoint
   * into it on close (turned back on once the file is accepted) */
  if (rc == SQLITE_OK)
    rc = sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
  if (rc != SQLITE_OK)
    return sql_fail(st, rc, "cannot set up the connection", err);
  /* SQLite silently opens a file it may not write read-only */
  if (sqlite3_db_readonly(st->db, "main") == 1) {
    ins->verdict = VERDICT_CORRUPT;
    snprintf(ins->why, sizeof ins->why, "is not writable by this process");
  }
  return 0;
}

static void db_disconnect(struct tl_store *st) {
  /* nothing is prepared yet, so the close cannot be refused */
  (void)sqlite3_close(st->db);
  st->db = NULL;
}

/* Classifies the file st->db is open on into ins, reading only. */
static int inspect(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  int app_id = 0, version = 0, objects = 0;
  int rc = query_int(st->db, "PRAGMA application_id", &app_id);
  if (rc == SQLITE_OK)
    rc = query_int(st->db, "PRAGMA user_version", &version);
  if (rc == SQLITE_OK)
    rc = query_int(st->db, "SELECT count(*) FROM sqlite_schema", &objects);
  if (rc != SQLITE_OK)
    return damaged(st, rc, "reading its header", ins, err);

  ins->version = version;
  if (app_id == 0 && version == 0 && objects == 0) {
    ins->verdict = VERDICT_FRESH;
    return 0;
  }
  if (app_id != TL_STORE_APPLICATION_ID) {
    ins->verdict = VERDICT_FOREIGN;
    ins->version = 0;
    snprintf(ins->why, sizeof ins->why,
             "is another program's SQLite database (application_id 0x%08x, "
             "not tailor's 0x%08x; %d schema objects)",
             (unsigned)app_id, (unsigned)TL_STORE_APPLICATION_ID, objects);
    return 0;
  }
  if (version > TL_STORE_SCHEMA_VERSION) {
    ins->verdict = VERDICT_NEWER;
    snprintf(ins->why, sizeof ins->why,
             "was written by a newer tailor (schema version %d; this one knows "
             "up to %d)",
             version, TL_STORE_SCHEMA_VERSION);
    return 0;
  }
  if (version < 1) {
    ins->verdict = VERDICT_CORRUPT;
    snprintf(ins->why, sizeof ins->why,
             "is damaged (tailor's application_id but schema version %d)", version);
    return 0;
  }

  /* quick_check(1): stop at the first problem; "ok" if there is none */
  sqlite3_stmt *s = NULL;
  rc = sqlite3_prepare_v2(st->db, "PRAGMA quick_check(1)", -1, &s, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    const char *t;
    size_t n;
    rc = column_text(s, 0, &t, &n);
    if (rc == SQLITE_OK && (t == NULL || strcmp(t, "ok") != 0)) {
      ins->verdict = VERDICT_CORRUPT;
      snprintf(ins->why, sizeof ins->why, "is damaged (PRAGMA quick_check: %s)",
               t != NULL ? t : "NULL");
      (void)sqlite3_finalize(s); /* the verdict is made; its result adds nothing */
      return 0;
    }
  }
  if (rc != SQLITE_OK) {
    int ret = damaged(st, rc, "checking it", ins, err);
    (void)sqlite3_finalize(s); /* after damaged() has read the message */
    return ret;
  }
  rc = sqlite3_finalize(s);
  if (rc != SQLITE_OK)
    return damaged(st, rc, "checking it", ins, err);
  ins->verdict = VERDICT_OK;
  return 0;
}

/* Runs migration steps above version on db (no transaction of its own). */
static int apply_migrations(sqlite3 *db, int version) {
  int rc = SQLITE_OK;
  for (int v = version; v < TL_STORE_SCHEMA_VERSION && rc == SQLITE_OK; v++)
    rc = sqlite3_exec(db, migrations[v], NULL, NULL, NULL);
  return rc;
}

/* Upgrades the file to TL_STORE_SCHEMA_VERSION in one transaction.  The
 * version is read again under the write lock: another process may have
 * upgraded the file since it was inspected. */
static int migrate(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  char sql[128];
  int version = 0;
  int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    rc = query_int(st->db, "PRAGMA user_version", &version);
  if (rc == SQLITE_OK && version < TL_STORE_SCHEMA_VERSION) {
    rc = apply_migrations(st->db, version);
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d",
             TL_STORE_APPLICATION_ID, TL_STORE_SCHEMA_VERSION);
    if (rc == SQLITE_OK)
      rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    return 0;

  int ret = damaged(st, rc, "upgrading its schema", ins, err);
  if (!sqlite3_get_autocommit(st->db))
    (void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL); /* error is made */
  return ret;
}

/* Orders column col of two schema rows as SQLite's BINARY collation does
 * (NULL first). */
static int compare_text(sqlite3_stmt *a, sqlite3_stmt *b, int col) {
  const unsigned char *x = sqlite3_column_text(a, col);
  const unsigned char *y = sqlite3_column_text(b, col);
  if (x == NULL || y == NULL)
    return (x != NULL) - (y != NULL);
  return strcmp((const char *)x, (const char *)y);
}

static bool same_text(sqlite3_stmt *a, sqlite3_stmt *b, int col) {
  return compare_text(a, b, col) == 0;
}

/* Checks that st->db's schema is exactly what the migrations make: the
 * same objects with the same SQL as a fresh in-memory database built by
 * them.  A difference is recorded in ins as damage. */
static int verify_schema(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  sqlite3 *ref = NULL;
  sqlite3_stmt *want = NULL, *have = NULL;
  int ret = 0;

  int rc = sqlite3_open_v2(":memory:", &ref,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = apply_migrations(ref, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(ref, SCHEMA_QUERY, -1, &want, NULL);
  if (rc != SQLITE_OK) {
    ret = tl_fail(err, rc == SQLITE_NOMEM ? TL_ENOMEM : TL_EINTERNAL,
                  "%s: cannot build the reference schema: %s", st->path,
                  ref != NULL ? sqlite3_errmsg(ref) : sqlite3_errstr(rc));
    goto done;
  }
  rc = sqlite3_prepare_v2(st->db, SCHEMA_QUERY, -1, &have, NULL);
  if (rc != SQLITE_OK) {
    ret = damaged(st, rc, "reading its schema", ins, err);
    goto done;
  }

  for (;;) {
    int w = sqlite3_step(want);
    int h = sqlite3_step(have);
    if (w != SQLITE_ROW && w != SQLITE_DONE) {
      ret = tl_fail(err, w == SQLITE_NOMEM ? TL_ENOMEM : TL_EINTERNAL,
                    "%s: cannot read the reference schema: %s", st->path, sqlite3_errmsg(ref));
      goto done;
    }
    if (h != SQLITE_ROW && h != SQLITE_DONE) {
      ret = damaged(st, h, "reading its schema", ins, err);
      goto done;
    }
    if (w == SQLITE_DONE && h == SQLITE_DONE)
      break;
    /* both lists are sorted by (type, name): the smaller of two rows that
     * differ is the object the other list lacks */
    int order = w == SQLITE_DONE ? 1 : h == SQLITE_DONE ? -1 : 0;
    for (int col = 0; col < 2 && order == 0; col++)
      order = compare_text(want, have, col);
    if (order == 0 && same_text(want, have, 2) && same_text(want, have, 3))
      continue;
    sqlite3_stmt *at = order > 0 ? have : want;
    const unsigned char *type = sqlite3_column_text(at, 0);
    const unsigned char *name = sqlite3_column_text(at, 1);
    ins->verdict = VERDICT_CORRUPT;
    snprintf(ins->why, sizeof ins->why,
             "is damaged (its schema differs from version %d: %s %s \"%s\")",
             TL_STORE_SCHEMA_VERSION,
             order < 0   ? "it lacks"
             : order > 0 ? "it has an unexpected"
                         : "it changed",
             type != NULL ? (const char *)type : "?", name != NULL ? (const char *)name : "?");
    break;
  }

done:
  /* read-only statements on a private database: nothing to report */
  (void)sqlite3_finalize(have);
  (void)sqlite3_finalize(want);
  (void)sqlite3_close(ref);
  return ret;
}

/* WAL: readers do not block the writer, and a commit costs one fsync of
 * the log.  NORMAL sync may lose the last commits on power loss, never
 * consistency - right for a cache.  A file system without WAL support
 * keeps its rollback journal, which is slower but correct. */
static int set_journal(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  int rc = sqlite3_exec(st->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL", NULL,
                        NULL, NULL);
  return rc == SQLITE_OK ? 0 : damaged(st, rc, "setting WAL mode", ins, err);
}

static int prepare_all(struct tl_store *st, struct tl_error *err) {
  for (int i = 0; i < STMT_COUNT; i++) {
    int rc =
        sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
    if (rc != SQLITE_OK)
      return sql_fail(st, rc, "cannot prepare a statement", err);
  }
  return 0;
}

/* ------------------------------------------------------- open and close */

static const char *aside_kind(enum verdict v) {
  switch (v) {
  case VERDICT_FOREIGN: return "foreign";
  case VERDICT_NEWER: return "newer";
  default: return "corrupt";
  }
}

static enum tl_store_outcome rebuilt_outcome(enum verdict v) {
  switch (v) {
  case VERDICT_FOREIGN: return TL_STORE_REBUILT_FOREIGN;
  case VERDICT_NEWER: return TL_STORE_REBUILT_NEWER;
  default: return TL_STORE_REBUILT_CORRUPT;
  }
}

static bool usable(const struct inspection *ins) {
  return ins->verdict == VERDICT_OK || ins->verdict == VERDICT_FRESH;
}

/* Opens, checks and if need be upgrades the file; on a usable file leaves
 * st->db open on it, else leaves it closed with the reason in ins. */
static int open_checked(struct tl_store *st, struct inspection *ins, struct tl_error *err) {
  ins->verdict = VERDICT_OK;
  ins->version = 0;
  ins->why[0] = '\0';
  /* each step runs only while the file still looks usable; a step that
   * finds it is not says why in ins */
  int rc = 0;
  if (strcmp(st->path, ":memory:") != 0)
    peek_header(st->path, ins);
  if (ins->verdict == VERDICT_OK)
    rc = db_connect(st, ins, err);
  if (rc == 0 && ins->verdict == VERDICT_OK)
    rc = inspect(st, ins, err);
  if (rc == 0 && usable(ins))
    rc = set_journal(st, ins, err);
  if (rc == 0 && usable(ins) && ins->version < TL_STORE_SCHEMA_VERSION)
    rc = migrate(st, ins, err);
  if (rc == 0 && usable(ins))
    rc = verify_schema(st, ins, err);
  if (rc == 0 && usable(ins)) {
    int sr = sqlite3_db_config(st->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, (int *)NULL);
    if (sr != SQLITE_OK)
      rc = sql_fail(st, sr, "cannot set up the connection", err);
  }
  if ((rc < 0 || !usable(ins)) && st->db != NULL)
    db_disconnect(st);
  return rc;
}

int tl_store_open(const char *path, struct tl_store **out, struct tl_store_open_report *report,
                  struct tl_error *err) {
  struct tl_store *st = NULL;
  struct inspection ins = {0}, first = {0};
  char aside[PATH_MAX] = "";
  bool memory, created = false;
  int rc;

  if (path == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_open: NULL path or out");
  st = calloc(1, sizeof *st);
  if (st == NULL || (st->path = strdup(path)) == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "%s: out of memory opening the cache", path);
    goto fail;
  }
  memory = strcmp(path, ":memory:") == 0;

  /* at most twice: the file as found, then a new one in its place */
  for (int attempt = 0;; attempt++) {
    if (!memory) {
      rc = ensure_file(path, &created, err);
      if (rc < 0)
        goto fail;
    }
    rc = open_checked(st, &ins, err);
    if (rc < 0)
      goto fail;
    if (attempt == 0)
      first = ins;
    if (st->db != NULL)
      break;
    if (attempt > 0 || memory) {
      rc = tl_fail(err, TL_EIO, "%s: a new cache fails its own checks: it %s", path, ins.why);
      goto fail;
    }
    rc = set_aside(path, aside_kind(ins.verdict), aside, err);
    if (rc < 0)
      goto fail;
  }

  rc = prepare_all(st, err);
  if (rc < 0)
    goto fail;

  if (report != NULL) {
    memset(report, 0, sizeof *report);
    report->found_version = first.version;
    snprintf(report->aside_path, sizeof report->aside_path, "%s", aside);
    if (aside[0] != '\0') {
      report->outcome = rebuilt_outcome(first.verdict);
      snprintf(report->message, sizeof report->message,
               "%s: the file %s; moved it to %s and started an empty cache", path, first.why,
               aside);
    } else if (first.verdict == VERDICT_FRESH) {
      report->outcome = TL_STORE_CREATED;
      snprintf(report->message, sizeof report->message,
               "%s: created a new cache (schema version %d)%s", path, TL_STORE_SCHEMA_VERSION,
               created || memory ? "" : " in the empty file");
    } else if (first.version < TL_STORE_SCHEMA_VERSION) {
      report->outcome = TL_STORE_MIGRATED;
      snprintf(report->message, sizeof report->message,
               "%s: upgraded the cache from schema version %d to %d", path, first.version,
               TL_STORE_SCHEMA_VERSION);
    } else {
      report->outcome = TL_STORE_OPENED;
      snprintf(report->message, sizeof report->message, "%s: opened the cache (schema version %d)",
               path, first.version);
    }
  }
  *out = st;
  return 0;

fail:
  tl_store_close(st);
  return rc;
}

void tl_store_close(struct tl_store *st) {
  if (st == NULL)
    return;
  /* finalize repeats errors of past steps, already reported; once all
   * statements are finalized the close cannot be refused */
  for (int i = 0; i < STMT_COUNT; i++)
    (void)sqlite3_finalize(st->stmt[i]);
  (void)sqlite3_close(st->db);
  free(st->path);
  free(st);
}

/* -------------------------------------------------------------- device */

/* True if the array text[0..size) holds a NUL. */
static bool terminated(const char *text, size_t size) { return memchr(text, '\0', size) != NULL; }

int tl_store_device(struct tl_store *st, const struct tl_device_fp *fp, int64_t *device_id,
                    struct tl_error *err) {
  if (st == NULL || fp == NULL || device_id == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_device: NULL argument");
  if (!terminated(fp->cpu_model, sizeof fp->cpu_model) || !terminated(fp->blas, sizeof fp->blas))
    return tl_fail(err, TL_EINVAL, "%s: device fingerprint text is not terminated", st->path);
  if (fp->cores < 0 || fp->max_freq_khz < 0 || fp->threads < 0)
    return tl_fail(err, TL_EINVAL,
                   "%s: device fingerprint has a negative number (cores %d, "
                   "max_freq_khz %lld, threads %d)",
                   st->path, fp->cores, (long long)fp->max_freq_khz, fp->threads);

  int rc = txn_begin_write(st, err);
  if (rc < 0)
    return rc;
  /* add if new, then look up: one path for both cases */
  sqlite3_stmt *s = st->stmt[STMT_DEVICE_ADD];
  int sr = bind(s, "tiiti", fp->cpu_model, (int64_t)fp->cores, fp->max_freq_khz, fp->blas,
                (int64_t)fp->threads);
  if (sr != SQLITE_OK) {
    rc = sql_fail(st, sr, "cannot add the device", err);
    stmt_done(s);
    goto fail;
  }
  rc = run(st, STMT_DEVICE_ADD, "cannot add the device", err);
  if (rc < 0)
    goto fail;

  s = st->stmt[STMT_DEVICE_FIND];
  int64_t id = 0;
  sr = bind(s, "tiiti", fp->cpu_model, (int64_t)fp->cores, fp->max_freq_khz, fp->blas,
            (int64_t)fp->threads);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW)
    id = sqlite3_column_int64(s, 0);
  else if (sr == SQLITE_DONE)
    rc = tl_fail(err, TL_EINTERNAL, "%s: the device just added is not found", st->path);
  else
    rc = sql_fail(st, sr, "cannot look the device up", err);
  stmt_done(s);
  if (rc < 0)
    goto fail;

  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *device_id = id;
  return 0;

fail:
  txn_abort(st);
  return rc;
}

/* ---------------------------------------------------------- op latency */

int tl_store_op_get(struct tl_store *st, int64_t device_id, const char *signature,
                    struct tl_op_latency *out, struct tl_error *err) {
  if (st == NULL || signature == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_op_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_OP_GET];
  int rc = 0;
  int sr = bind(s, "it", device_id, signature);
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
    rc = sql_fail(st, sr, "cannot read an op latency", err);
  }
  stmt_done(s);
  return rc;
}

int tl_store_op_put_batch(struct tl_store *st, int64_t device_id, const struct tl_op_latency *rows,
                          size_t n, struct tl_error *err) {
  if (st == NULL || (rows == NULL && n > 0))
    return tl_fail(err, TL_EINVAL, "tl_store_op_put_batch: NULL argument");
  int rc = txn_begin_write(st, err);
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
    int sr = bind(s, "itdii", device_id, r->signature, r->median_us, r->runs, r->measured_at_s);
    if (sr == SQLITE_OK)
      sr = sqlite3_step(s);
    if (sr == SQLITE_CONSTRAINT_FOREIGNKEY)
      rc = tl_fail(err, TL_EINVAL, "%s: device %lld is not in the cache", st->path,
                   (long long)device_id);
    else if (sr != SQLITE_DONE)
      rc = sql_fail(st, sr, "cannot store op latencies", err);
    stmt_done(s);
    if (rc < 0)
      goto fail;
  }
  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  txn_abort(st);
  return rc;
}

int tl_store_op_foreach(struct tl_store *st, int64_t device_id,
                        int (*fn)(void *ctx, const struct tl_op_latency *row), void *ctx,
                        struct tl_error *err) {
  if (st == NULL || fn == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_op_foreach: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_OP_ALL];
  int rc = 0;
  int sr = bind(s, "i", device_id);
  while (sr == SQLITE_OK && (sr = sqlite3_step(s)) == SQLITE_ROW) {
    struct tl_op_latency row;
    size_t len;
    sr = column_text(s, 0, &row.signature, &len);
    if (sr != SQLITE_OK)
      break;
    if (row.signature == NULL) {
      rc = null_text(st, "reading op latencies", err);
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
    rc = sql_fail(st, sr, "cannot read op latencies", err);
  stmt_done(s);
  return rc;
}

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

  int rc = txn_begin_write(st, err);
  if (rc < 0)
    return rc;
  int sr = bind(st->stmt[STMT_SUBNET_PUT], "tkt", model_hash, subnet_key, acc->spec);
  if (sr == SQLITE_OK) {
    rc = run(st, STMT_SUBNET_PUT, "cannot store a subnet", err);
  } else {
    rc = sql_fail(st, sr, "cannot store a subnet", err);
    stmt_done(st->stmt[STMT_SUBNET_PUT]);
  }
  if (rc < 0)
    goto fail;
  sr = bind(st->stmt[STMT_ACCURACY_PUT], "tktdii", model_hash, subnet_key, calib_hash,
            acc->accuracy, acc->images, (int64_t)acc->recalibrated);
  if (sr == SQLITE_OK) {
    rc = run(st, STMT_ACCURACY_PUT, "cannot store an accuracy", err);
  } else {
    rc = sql_fail(st, sr, "cannot store an accuracy", err);
    stmt_done(st->stmt[STMT_ACCURACY_PUT]);
  }
  if (rc < 0)
    goto fail;
  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  txn_abort(st);
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
  int sr = bind(s, "tkt", model_hash, subnet_key, calib_hash);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    const char *spec;
    size_t len;
    sr = column_text(s, 0, &spec, &len);
    if (sr != SQLITE_OK) {
      rc = sql_fail(st, sr, "cannot read an accuracy", err);
    } else if (spec == NULL) {
      rc = null_text(st, "reading an accuracy", err);
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
    rc = sql_fail(st, sr, "cannot read an accuracy", err);
  }
  stmt_done(s);
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
  int sr = bind(s, "tktb", model_hash, subnet_key, calib_hash, data, len);
  if (sr != SQLITE_OK) {
    int rc = sql_fail(st, sr, "cannot store BN statistics", err);
    stmt_done(s);
    return rc;
  }
  /* one statement: atomic without a transaction of our own */
  return run(st, STMT_BN_PUT, "cannot store BN statistics", err);
}

int tl_store_bn_get(struct tl_store *st, const char *model_hash, uint64_t subnet_key,
                    const char *calib_hash, void **data, size_t *len, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || data == NULL || len == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_bn_get: NULL argument");
  sqlite3_stmt *s = st->stmt[STMT_BN_GET];
  void *copy = NULL;
  size_t n = 0;
  int rc = 0;
  int sr = bind(s, "tkt", model_hash, subnet_key, calib_hash);
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
    rc = sql_fail(st, sr, "cannot read BN statistics", err);
  }
  stmt_done(s);
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
  int sr = bind(s, "titt", model_hash, device_id, calib_hash, space);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW) {
    *id = sqlite3_column_int64(s, 0);
    *found = true;
  } else if (sr != SQLITE_DONE) {
    rc = sql_fail(st, sr, "cannot look a frontier up", err);
  }
  stmt_done(s);
  return rc;
}

int tl_store_frontier_put(struct tl_store *st, const char *model_hash, int64_t device_id,
                          const char *calib_hash, const char *space,
                          const struct tl_frontier_entry *entries, size_t n, struct tl_error *err) {
  if (st == NULL || model_hash == NULL || calib_hash == NULL || space == NULL ||
      (entries == NULL && n > 0))
    return tl_fail(err, TL_EINVAL, "tl_store_frontier_put: NULL argument");
  int rc = txn_begin_write(st, err);
  if (rc < 0)
    return rc;

  sqlite3_stmt *s = st->stmt[STMT_FRONTIER_ADD];
  int sr = bind(s, "titt", model_hash, device_id, calib_hash, space);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_CONSTRAINT_FOREIGNKEY)
    rc = tl_fail(err, TL_EINVAL, "%s: device %lld is not in the cache", st->path,
                 (long long)device_id);
  else if (sr != SQLITE_DONE)
    rc = sql_fail(st, sr, "cannot store a frontier", err);
  stmt_done(s);
  if (rc < 0)
    goto fail;

  int64_t id = 0;
  bool found;
  rc = frontier_find(st, model_hash, device_id, calib_hash, space, &id, &found, err);
  if (rc == 0 && !found)
    rc = tl_fail(err, TL_EINTERNAL, "%s: the frontier just added is not found", st->path);
  if (rc < 0)
    goto fail;

  sr = bind(st->stmt[STMT_FRONTIER_CLEAR], "i", id);
  if (sr == SQLITE_OK) {
    rc = run(st, STMT_FRONTIER_CLEAR, "cannot replace a frontier", err);
  } else {
    rc = sql_fail(st, sr, "cannot replace a frontier", err);
    stmt_done(st->stmt[STMT_FRONTIER_CLEAR]);
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
    sr = bind(s, "iitkddd", id, (int64_t)i, e->spec, e->subnet_key, e->predicted_ms,
              e->predicted_mib, e->accuracy);
    if (sr == SQLITE_OK)
      sr = sqlite3_step(s);
    if (sr != SQLITE_DONE)
      rc = sql_fail(st, sr, "cannot store a frontier", err);
    stmt_done(s);
    if (rc < 0)
      goto fail;
  }
  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  return 0;

fail:
  txn_abort(st);
  return rc;
}

/* One row of STMT_FRONTIER_ENTRIES (a row_fill_fn). */
static int frontier_row(sqlite3_stmt *s, void *elem, char **cursor, const char *end) {
  struct tl_frontier_entry *e = elem;
  int sr = text_copy(s, 0, cursor, end, &e->spec);
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

  int rc = txn_begin_read(st, err);
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

  int sr = bind(s, "i", id);
  if (sr != SQLITE_OK) {
    rc = sql_fail(st, sr, "cannot read a frontier", err);
    stmt_done(s);
    goto fail;
  }
  rc = read_rows(st, s, sizeof *block, 0, 0, frontier_row, "a frontier", (void **)&block, &n, err);
  if (rc < 0)
    goto fail;
  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *entries = block;
  *count = n;
  return 0;

fail:
  txn_abort(st);
  free(block);
  return rc;
}

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
  int sr =
      bind(s, "ittttt", ev->time_ms, ev->model, ev->from_spec, ev->to_spec, ev->reason, ev->state);
  if (sr != SQLITE_OK) {
    int rc = sql_fail(st, sr, "cannot store a switch event", err);
    stmt_done(s);
    return rc;
  }
  int rc = run(st, STMT_EVENT_ADD, "cannot store a switch event", err);
  if (rc < 0)
    return rc;
  if (id != NULL)
    *id = sqlite3_last_insert_rowid(st->db);
  return 0;
}

/* Reads the event row s is on into *e, strings into the block. */
/* One row of STMT_EVENT_LAST (a row_fill_fn). */
static int event_row(sqlite3_stmt *s, void *elem, char **cursor, const char *end) {
  struct tl_switch_event *e = elem;
  e->id = sqlite3_column_int64(s, 0);
  e->time_ms = sqlite3_column_int64(s, 1);
  int sr = text_copy(s, 2, cursor, end, &e->model);
  if (sr == SQLITE_OK)
    sr = text_copy(s, 3, cursor, end, &e->from_spec);
  if (sr == SQLITE_OK)
    sr = text_copy(s, 4, cursor, end, &e->to_spec);
  if (sr == SQLITE_OK)
    sr = text_copy(s, 5, cursor, end, &e->reason);
  if (sr == SQLITE_OK)
    sr = text_copy(s, 6, cursor, end, &e->state);
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

  int rc = txn_begin_read(st, err);
  if (rc < 0)
    return rc;
  int sr = bind(s, "ti", model, max);
  if (sr != SQLITE_OK) {
    rc = sql_fail(st, sr, "cannot read switch events", err);
    stmt_done(s);
    goto fail;
  }
  rc = read_rows(st, s, sizeof *block, 2, 6, event_row, "switch events", (void **)&block, &n, err);
  if (rc < 0)
    goto fail;
  rc = txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *events = block;
  *count = n;
  return 0;

fail:
  txn_abort(st);
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
    rc = sql_fail(st, sr, "cannot count switch events", err);
  stmt_done(s);
  return rc;
}

int tl_store_event_trim(struct tl_store *st, int64_t keep, struct tl_error *err) {
  if (st == NULL)
    return tl_fail(err, TL_EINVAL, "tl_store_event_trim: NULL argument");
  if (keep < 0)
    return tl_fail(err, TL_EINVAL, "%s: cannot keep %lld events", st->path, (long long)keep);
  int sr = bind(st->stmt[STMT_EVENT_TRIM], "i", keep);
  if (sr != SQLITE_OK) {
    int rc = sql_fail(st, sr, "cannot trim switch events", err);
    stmt_done(st->stmt[STMT_EVENT_TRIM]);
    return rc;
  }
  return run(st, STMT_EVENT_TRIM, "cannot trim switch events", err);
}
