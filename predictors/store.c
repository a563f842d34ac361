/*
 * store.c - the SQLite cache: schema, migrations, checks on open, the
 * device rows, and the statements prepared on opening.  The store's other
 * files hold its other queries: store_latency.c (op latencies),
 * store_frontier.c (subnets, accuracies, BN statistics, frontiers) and
 * store_event.c (switch events), over the helpers of store_stmt.c.  No
 * other file holds SQL.
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

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_internal.h"

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

/* The text of every statement of STMT_TABLE (store_internal.h), prepared
 * when the store opens. */
static const char *const stmt_sql[STMT_COUNT] = {
#define STMT_SQL(name, sql) [STMT_##name] = sql,
    STMT_TABLE(STMT_SQL)
#undef STMT_SQL
};

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
  if (tl__store_is_transient(rc))
    return tl__store_sql_fail(st, rc, doing, err);
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
    return tl__store_sql_fail(st, rc, "cannot set up the connection", err);
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
    rc = tl__store_column_text(s, 0, &t, &n);
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
      return tl__store_sql_fail(st, rc, "cannot prepare a statement", err);
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
      rc = tl__store_sql_fail(st, sr, "cannot set up the connection", err);
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

  int rc = tl__store_txn_begin_write(st, err);
  if (rc < 0)
    return rc;
  /* add if new, then look up: one path for both cases */
  sqlite3_stmt *s = st->stmt[STMT_DEVICE_ADD];
  int sr = tl__store_bind(s, "tiiti", fp->cpu_model, (int64_t)fp->cores, fp->max_freq_khz, fp->blas,
                          (int64_t)fp->threads);
  if (sr != SQLITE_OK) {
    rc = tl__store_sql_fail(st, sr, "cannot add the device", err);
    tl__store_stmt_done(s);
    goto fail;
  }
  rc = tl__store_run(st, STMT_DEVICE_ADD, "cannot add the device", err);
  if (rc < 0)
    goto fail;

  s = st->stmt[STMT_DEVICE_FIND];
  int64_t id = 0;
  sr = tl__store_bind(s, "tiiti", fp->cpu_model, (int64_t)fp->cores, fp->max_freq_khz, fp->blas,
                      (int64_t)fp->threads);
  if (sr == SQLITE_OK)
    sr = sqlite3_step(s);
  if (sr == SQLITE_ROW)
    id = sqlite3_column_int64(s, 0);
  else if (sr == SQLITE_DONE)
    rc = tl_fail(err, TL_EINTERNAL, "%s: the device just added is not found", st->path);
  else
    rc = tl__store_sql_fail(st, sr, "cannot look the device up", err);
  tl__store_stmt_done(s);
  if (rc < 0)
    goto fail;

  rc = tl__store_txn_commit(st, err);
  if (rc < 0)
    goto fail;
  *device_id = id;
  return 0;

fail:
  tl__store_txn_abort(st);
  return rc;
}
