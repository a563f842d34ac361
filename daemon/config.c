/*
 * config.c - reading tailord.yaml: the schema, the walk over libyaml's
 * events, and the checks.
 *
 * Every key the config may hold is a row of a schema table below (key,
 * type, range, default, the field it fills, a few words of help); a
 * mapping in the file is a table, and the walk is table driven: nothing
 * here knows what "workers" means beyond its row.  Defaults are written in
 * the rows as YAML text and go through the same conversion and range
 * checks as the file's own values, so a default cannot hold what the file
 * could not.
 *
 * The file is read whole into memory and walked event by event (libyaml's
 * parser API, not its document API), because events carry the line and
 * column a message needs.  The invariant of the walk: a problem in a value
 * never stops it.  Each problem is recorded with its place and the walk
 * goes on with the next key, so one load finds everything wrong with a
 * file; only a YAML syntax error ends it, because libyaml cannot go on
 * after one.  Problems are found out of file order (a missing key is only
 * known at the end of its mapping) and are sorted by place before they are
 * reported.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

/* A config is a few kilobytes; this bounds what a wrong path (a log, a
 * disk image) makes the loader read. */
#define CONFIG_MAX_BYTES (1 << 20)
/* Rows in one schema table (the top level has the most, 8). */
#define CFG_MAX_ROWS 16
/* "models[123].calibration.scale" and the like, with room to spare. */
#define CFG_FIELD_MAX 128
/* Quoted values in messages show at most this many bytes of the value. */
#define QUOTE_MAX_BYTES 60
#define QUOTE_BUF (QUOTE_MAX_BYTES * 4 + 32)
/* Keys longer than this get no "did you mean". */
#define SUGGEST_MAX_LEN 64
/* The longest path a Unix socket address holds (sun_path less its NUL). */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

_Static_assert(sizeof(enum tl_config_log_level) == sizeof(int),
               "log_level is stored through an int");

/* ---------------------------------------------------------- allocation */

/* Every allocation of the loader goes through here, so a test can make
 * the n-th one fail (tl__config_fail_alloc_after). */
static _Thread_local long alloc_budget = -1;

void tl__config_fail_alloc_after(long n) { alloc_budget = n < 0 ? -1 : n; }

static int alloc_allowed(void) {
  if (alloc_budget == 0)
    return 0;
  if (alloc_budget > 0)
    alloc_budget--;
  return 1;
}

static void *cfg_malloc(size_t n) { return alloc_allowed() ? malloc(n == 0 ? 1 : n) : NULL; }

static void *cfg_calloc(size_t count, size_t size) {
  return alloc_allowed() ? calloc(count == 0 ? 1 : count, size == 0 ? 1 : size) : NULL;
}

/* realloc of count * size bytes, NULL on overflow as on failure (p is
 * then left as it was). */
static void *cfg_reallocarray(void *p, size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size)
    return NULL;
  return alloc_allowed() ? realloc(p, count * size) : NULL;
}

static char *cfg_strndup(const char *s, size_t n) {
  char *d = cfg_malloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* -------------------------------------------------------------- schema */

enum cfg_type {
  CFG_INT,    /* int, decimal */
  CFG_SIZE,   /* size_t, decimal */
  CFG_MODE,   /* unsigned, octal: 0660 or 0o660 */
  CFG_NUMBER, /* double, decimal */
  CFG_ENUM,   /* int, one of row->choices by name */
  CFG_NAME,   /* char *, [A-Za-z0-9_.-], length min..max */
  CFG_PATH,   /* char *, made absolute; need not exist */
  CFG_SOCKET, /* CFG_PATH that fits in a Unix socket address */
  CFG_FILE,   /* CFG_PATH of a readable regular file */
  CFG_DIR,    /* CFG_PATH of a directory */
  CFG_WIDTHS, /* struct tl_config_widths: a sequence of numbers in range */
  CFG_TABLE,  /* a nested mapping, described by row->sub */
  CFG_MODELS, /* a sequence of mappings described by row->sub, into
                 tl_config.models */
};

/* Row flags. */
#define CFG_REQUIRED 1u /* the key must be given */
#define CFG_MIN_OPEN 2u /* numbers: the value must be > min, not >= */
#define CFG_UNIQUE 4u   /* names: unique among the models */

struct cfg_choice {
  const char *name;
  int value;
};

struct cfg_table;

struct cfg_row {
  const char *key;
  enum cfg_type type;
  double min, max;                  /* numbers: the range; names: the length range */
  const char *def;                  /* default, written as in YAML; NULL: none */
  size_t offset;                    /* of the field in the struct the table fills */
  unsigned flags;                   /* CFG_REQUIRED, ... */
  const char *help;                 /* what the key is, for messages */
  const struct cfg_table *sub;      /* CFG_TABLE, CFG_MODELS */
  const struct cfg_choice *choices; /* CFG_ENUM; ends with NULL */
};

struct cfg_table {
  const struct cfg_row *rows;
  int n;
};

#define TABLE(rows)                                                                                \
  { rows, (int)(sizeof rows / sizeof rows[0]) }
#define CHECK_ROWS(rows)                                                                           \
  _Static_assert(sizeof rows / sizeof rows[0] <= CFG_MAX_ROWS, #rows " has too many rows")

static const struct cfg_choice log_levels[] = {
    {"error", TL_CONFIG_LOG_ERROR},
    {"warning", TL_CONFIG_LOG_WARNING},
    {"info", TL_CONFIG_LOG_INFO},
    {"debug", TL_CONFIG_LOG_DEBUG},
    {NULL, 0},
};

#define F(type, field) offsetof(type, field)

static const struct cfg_row calibration_rows[] = {
    {.key = "x",
     .type = CFG_FILE,
     .offset = F(struct tl_config_calibration, x),
     .flags = CFG_REQUIRED,
     .help = "the .npy file of calibration images"},
    {.key = "y",
     .type = CFG_FILE,
     .offset = F(struct tl_config_calibration, y),
     .help = "the .npy file of calibration labels; without it, agreement with the full model"},
    {.key = "scale",
     .type = CFG_NUMBER,
     .min = 0,
     .max = 1e6,
     .def = "0.00392156862745098",
     .offset = F(struct tl_config_calibration, scale),
     .flags = CFG_MIN_OPEN,
     .help = "the factor that turns uint8 pixels into model input"},
};
CHECK_ROWS(calibration_rows);
static const struct cfg_table calibration_table = TABLE(calibration_rows);

static const struct cfg_row space_rows[] = {
    {.key = "widths",
     .type = CFG_WIDTHS,
     .min = 0,
     .max = 1,
     .def = "0.25, 0.5, 0.75, 1",
     .offset = F(struct tl_config_space, widths),
     .flags = CFG_MIN_OPEN,
     .help = "the channel fractions a subnet may use"},
    {.key = "resolution_steps",
     .type = CFG_INT,
     .min = 0,
     .max = 15,
     .def = "4",
     .offset = F(struct tl_config_space, resolution_steps),
     .help = "steps of input resolution from 50% to 100% of native"},
};
CHECK_ROWS(space_rows);
static const struct cfg_table space_table = TABLE(space_rows);

static const struct cfg_row search_rows[] = {
    {.key = "k",
     .type = CFG_INT,
     .min = 1,
     .max = 64,
     .def = "16",
     .offset = F(struct tl_config_search, k),
     .help = "the most subnets on the frontier"},
    {.key = "images",
     .type = CFG_INT,
     .min = 10,
     .max = 1000000,
     .def = "2000",
     .offset = F(struct tl_config_search, images),
     .help = "the calibration images each candidate is measured on"},
    {.key = "candidates",
     .type = CFG_INT,
     .min = 1,
     .max = 4096,
     .offset = F(struct tl_config_search, candidates),
     .help = "the subnets measured before the frontier is cut; 4 x k when absent"},
    {.key = "threads",
     .type = CFG_INT,
     .min = 0,
     .max = 256,
     .def = "0",
     .offset = F(struct tl_config_search, threads),
     .help = "subnets evaluated at once while searching; 0: one per CPU"},
    {.key = "time_budget_s",
     .type = CFG_NUMBER,
     .min = 0,
     .max = 1e7,
     .def = "0",
     .offset = F(struct tl_config_search, time_budget_s),
     .help = "seconds the search may take, then its best so far is the frontier; 0: no limit"},
};
CHECK_ROWS(search_rows);
static const struct cfg_table search_table = TABLE(search_rows);

static const struct cfg_row budget_rows[] = {
    {.key = "latency_p95_ms",
     .type = CFG_NUMBER,
     .min = 0,
     .max = INFINITY,
     .offset = F(struct tl_config_budget, latency_p95_ms),
     .flags = CFG_REQUIRED | CFG_MIN_OPEN,
     .help = "the 95th percentile latency to meet, in milliseconds"},
    {.key = "memory_mib",
     .type = CFG_INT,
     .min = 1,
     .max = 1 << 20,
     .offset = F(struct tl_config_budget, memory_mib),
     .help = "the memory budget in MiB; none when absent"},
    {.key = "min_accuracy",
     .type = CFG_NUMBER,
     .min = 0,
     .max = 1,
     .def = "0",
     .offset = F(struct tl_config_budget, min_accuracy),
     .help = "the lowest top-1 accuracy to serve, a fraction"},
    {.key = "margin",
     .type = CFG_NUMBER,
     .min = 0,
     .max = 0.9,
     .def = "0.1",
     .offset = F(struct tl_config_budget, margin),
     .help = "the fraction of the budget kept free"},
    {.key = "hysteresis_ms",
     .type = CFG_INT,
     .min = 0,
     .max = 3600000,
     .def = "5000",
     .offset = F(struct tl_config_budget, hysteresis_ms),
     .help = "how long the state must be stable before a more accurate subnet"},
    {.key = "deadline_ms",
     .type = CFG_NUMBER,
     .min = 0,
     .max = INFINITY,
     .offset = F(struct tl_config_budget, deadline_ms),
     .flags = CFG_MIN_OPEN,
     .help = "how long a request may take before it is shed; 10 x latency_p95_ms when absent"},
};
CHECK_ROWS(budget_rows);
static const struct cfg_table budget_table = TABLE(budget_rows);

static const struct cfg_row model_rows[] = {
    {.key = "name",
     .type = CFG_NAME,
     .min = 1,
     .max = TL_CONFIG_NAME_MAX,
     .offset = F(struct tl_config_model, name),
     .flags = CFG_REQUIRED | CFG_UNIQUE,
     .help = "the model's name in URLs"},
    {.key = "path",
     .type = CFG_FILE,
     .offset = F(struct tl_config_model, path),
     .flags = CFG_REQUIRED,
     .help = "the model's ONNX file"},
    {.key = "calibration",
     .type = CFG_TABLE,
     .offset = F(struct tl_config_model, calibration),
     .help = "the operator's calibration data",
     .sub = &calibration_table},
    {.key = "space",
     .type = CFG_TABLE,
     .offset = F(struct tl_config_model, space),
     .help = "the subnets to consider",
     .sub = &space_table},
    {.key = "search",
     .type = CFG_TABLE,
     .offset = F(struct tl_config_model, search),
     .help = "how the frontier is searched",
     .sub = &search_table},
    {.key = "budget",
     .type = CFG_TABLE,
     .offset = F(struct tl_config_model, budget),
     .flags = CFG_REQUIRED,
     .help = "what serving must meet",
     .sub = &budget_table},
};
CHECK_ROWS(model_rows);
static const struct cfg_table model_table = TABLE(model_rows);

static const struct cfg_row socket_rows[] = {
    {.key = "path",
     .type = CFG_SOCKET,
     .def = "/run/tailord/tailord.sock",
     .offset = F(struct tl_config_socket, path),
     .help = "the Unix socket clients connect to"},
    {.key = "mode",
     .type = CFG_MODE,
     .min = 0,
     .max = 0777,
     .def = "0660",
     .offset = F(struct tl_config_socket, mode),
     .help = "the socket file's permission bits"},
};
CHECK_ROWS(socket_rows);
static const struct cfg_table socket_table = TABLE(socket_rows);

static const struct cfg_row monitor_rows[] = {
    {.key = "interval_ms",
     .type = CFG_INT,
     .min = 10,
     .max = 60000,
     .def = "500",
     .offset = F(struct tl_config_monitor, interval_ms),
     .help = "the time between two samples of the device state"},
    {.key = "root",
     .type = CFG_DIR,
     .def = "/",
     .offset = F(struct tl_config_monitor, root),
     .help = "the directory proc/ and sys/ are read under"},
};
CHECK_ROWS(monitor_rows);
static const struct cfg_table monitor_table = TABLE(monitor_rows);

static const struct cfg_row limits_rows[] = {
    {.key = "max_connections",
     .type = CFG_INT,
     .min = 1,
     .max = 65536,
     .def = "64",
     .offset = F(struct tl_config_limits, max_connections),
     .help = "open connections at once"},
    {.key = "max_header_bytes",
     .type = CFG_SIZE,
     .min = 1024,
     .max = 81920,
     .def = "16384",
     .offset = F(struct tl_config_limits, max_header_bytes),
     .help = "the size of a request's header block"},
    {.key = "max_body_bytes",
     .type = CFG_SIZE,
     .min = 1024,
     .max = 1 << 30,
     .def = "16777216",
     .offset = F(struct tl_config_limits, max_body_bytes),
     .help = "the size of a request's body"},
    {.key = "idle_timeout_ms",
     .type = CFG_INT,
     .min = 100,
     .max = 86400000,
     .def = "30000",
     .offset = F(struct tl_config_limits, idle_timeout_ms),
     .help = "how long an idle connection stays open"},
    {.key = "request_timeout_ms",
     .type = CFG_INT,
     .min = 100,
     .max = 86400000,
     .def = "10000",
     .offset = F(struct tl_config_limits, request_timeout_ms),
     .help = "how long a request may take to arrive whole"},
    {.key = "queue_depth",
     .type = CFG_INT,
     .min = 1,
     .max = 65536,
     .def = "64",
     .offset = F(struct tl_config_limits, queue_depth),
     .help = "requests waiting for a worker before 503"},
};
CHECK_ROWS(limits_rows);
static const struct cfg_table limits_table = TABLE(limits_rows);

static const struct cfg_row top_rows[] = {
    {.key = "socket",
     .type = CFG_TABLE,
     .offset = F(struct tl_config, socket),
     .help = "where clients connect",
     .sub = &socket_table},
    {.key = "database",
     .type = CFG_PATH,
     .def = "/var/lib/tailord/cache.db",
     .offset = F(struct tl_config, database),
     .help = "the SQLite cache"},
    {.key = "workers",
     .type = CFG_INT,
     .min = 1,
     .max = 64,
     .def = "1",
     .offset = F(struct tl_config, workers),
     .help = "inference worker threads"},
    {.key = "threads",
     .type = CFG_INT,
     .min = 1,
     .max = 64,
     .def = "2",
     .offset = F(struct tl_config, threads),
     .help = "engine threads per worker"},
    {.key = "log_level",
     .type = CFG_ENUM,
     .def = "info",
     .offset = F(struct tl_config, log_level),
     .help = "the least important messages logged",
     .choices = log_levels},
    {.key = "monitor",
     .type = CFG_TABLE,
     .offset = F(struct tl_config, monitor),
     .help = "how the device state is sampled",
     .sub = &monitor_table},
    {.key = "limits",
     .type = CFG_TABLE,
     .offset = F(struct tl_config, limits),
     .help = "the server's bounds",
     .sub = &limits_table},
    {.key = "models",
     .type = CFG_MODELS,
     .flags = CFG_REQUIRED,
     .help = "the models to serve",
     .sub = &model_table},
};
CHECK_ROWS(top_rows);
static const struct cfg_table top_table = TABLE(top_rows);

#undef F

/* -------------------------------------------------------------- loader */

/* One problem found, kept until all are known and sorted. */
struct diag {
  size_t line, column; /* from 1; 0 when the problem has no place */
  size_t seq;          /* order found, to keep sorting stable */
  int missing_key;     /* a missing required key */
  char *text;          /* the whole line, "FILE:LINE:COLUMN: ..." */
};

struct loader {
  const char *file;   /* as given, for messages */
  char dir[PATH_MAX]; /* canonical directory of file, for relative paths */
  const char *text;   /* the file's bytes */
  size_t text_len;
  yaml_parser_t parser;
  struct diag *diags;
  size_t n_diags, cap_diags;
  int syntax_failed; /* the walk ended at a syntax error */
  int missing_key;   /* what is being recorded is a missing key */
  struct tl_config *cfg;
  int cap_models;
  yaml_mark_t *name_marks; /* (cap_models) where each model's name is */
  int model;               /* index of the model being read */
};

/* Records a problem; placed is 0 for one with no place in the text.
 * Returns 0 (the walk goes on) or TL_ENOMEM. */
static int vproblem(struct loader *ld, int placed, yaml_mark_t mark, const char *fmt, va_list ap) {
  if (ld->n_diags == ld->cap_diags) {
    size_t cap = ld->cap_diags ? ld->cap_diags * 2 : 16;
    struct diag *d = cfg_reallocarray(ld->diags, cap, sizeof *d);
    if (d == NULL)
      return TL_ENOMEM;
    ld->diags = d;
    ld->cap_diags = cap;
  }
  struct diag *d = &ld->diags[ld->n_diags];
  d->line = placed ? mark.line + 1 : 0;
  d->column = placed ? mark.column + 1 : 0;
  d->seq = ld->n_diags;
  d->missing_key = ld->missing_key;

  va_list aq;
  va_copy(aq, ap);
  int n = vsnprintf(NULL, 0, fmt, aq);
  va_end(aq);
  int p = placed ? snprintf(NULL, 0, "%s:%zu:%zu: ", ld->file, d->line, d->column)
                 : snprintf(NULL, 0, "%s: ", ld->file);
  if (n < 0 || p < 0)
    return TL_EINTERNAL;
  d->text = cfg_malloc((size_t)p + (size_t)n + 1);
  if (d->text == NULL)
    return TL_ENOMEM;
  if (placed)
    snprintf(d->text, (size_t)p + 1, "%s:%zu:%zu: ", ld->file, d->line, d->column);
  else
    snprintf(d->text, (size_t)p + 1, "%s: ", ld->file);
  vsnprintf(d->text + p, (size_t)n + 1, fmt, ap);
  ld->n_diags++;
  return 0;
}

static int problem(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int problem(struct loader *ld, yaml_mark_t mark, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = vproblem(ld, 1, mark, fmt, ap);
  va_end(ap);
  return rc;
}

/* A problem with the file as a whole (it cannot be read). */
static int problem_nowhere(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int problem_nowhere(struct loader *ld, const char *fmt, ...) {
  yaml_mark_t none = {0, 0, 0};
  va_list ap;
  va_start(ap, fmt);
  int rc = vproblem(ld, 0, none, fmt, ap);
  va_end(ap);
  return rc;
}

static int diag_cmp(const void *pa, const void *pb) {
  const struct diag *a = pa, *b = pb;
  if (a->line != b->line)
    return a->line < b->line ? -1 : 1;
  if (a->column != b->column)
    return a->column < b->column ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* ------------------------------------------------------------ wording */

/* Writes s (n bytes) into buf in double quotes, escaped so that a message
 * stays one printable line, and cut after QUOTE_MAX_BYTES bytes (at a
 * character boundary) with "...". */
static void quote(const char *s, size_t n, char *buf, size_t size) {
  size_t cut = n;
  if (cut > QUOTE_MAX_BYTES) {
    cut = QUOTE_MAX_BYTES;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
      cut--;
  }
  size_t o = 0;
#define PUT(...) o += (size_t)snprintf(buf + o, o < size ? size - o : 0, __VA_ARGS__)
  PUT("\"");
  for (size_t i = 0; i < cut; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      PUT("\\%c", c);
    else if (c == '\n')
      PUT("\\n");
    else if (c == '\t')
      PUT("\\t");
    else if (c < 0x20 || c == 0x7f)
      PUT("\\x%02x", c);
    else
      PUT("%c", c);
  }
  PUT(cut < n ? "...\"" : "\"");
#undef PUT
}

/* A plain scalar YAML would read as null: empty, "~" or null. */
static int is_null(const char *s, size_t n, yaml_scalar_style_t style) {
  if (style != YAML_PLAIN_SCALAR_STYLE)
    return 0;
  return n == 0 || (n == 1 && s[0] == '~') ||
         (n == 4 &&
          (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 || memcmp(s, "NULL", 4) == 0));
}

/* How a scalar reads in "expected X, got Y". */
static void describe_scalar(const char *s, size_t n, yaml_scalar_style_t style, char *buf,
                            size_t size) {
  char q[QUOTE_BUF];
  if (is_null(s, n, style)) {
    snprintf(buf, size, "%s", n == 0 ? "an empty value" : "null");
    return;
  }
  quote(s, n, q, sizeof q);
  if (style == YAML_PLAIN_SCALAR_STYLE)
    snprintf(buf, size, "%s", q);
  else if (style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
    snprintf(buf, size, "the quoted string %s", q);
  else
    snprintf(buf, size, "the block scalar %s", q);
}

/* How any node reads in "expected X, got Y". */
static void describe_node(const yaml_event_t *ev, char *buf, size_t size) {
  switch (ev->type) {
  case YAML_SCALAR_EVENT:
    describe_scalar((const char *)ev->data.scalar.value, ev->data.scalar.length,
                    ev->data.scalar.style, buf, size);
    break;
  case YAML_SEQUENCE_START_EVENT: snprintf(buf, size, "a sequence"); break;
  case YAML_MAPPING_START_EVENT: snprintf(buf, size, "a mapping"); break;
  default: snprintf(buf, size, "an alias"); break;
  }
}

/* "one of error, warning, info, debug" */
static void choices_text(const struct cfg_row *r, char *buf, size_t size) {
  size_t o = (size_t)snprintf(buf, size, "one of");
  for (int i = 0; r->choices[i].name != NULL && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s %s", i ? "," : "", r->choices[i].name);
}

/* What a row's value must be, for "expected X". */
static void expected_text(const struct cfg_row *r, char *buf, size_t size) {
  const char *s = "a value";
  switch (r->type) {
  case CFG_INT:
  case CFG_SIZE: s = "an integer"; break;
  case CFG_MODE: s = "an octal mode such as 0660"; break;
  case CFG_NUMBER: s = "a number"; break;
  case CFG_ENUM: choices_text(r, buf, size); return;
  case CFG_NAME: s = "a name"; break;
  case CFG_PATH:
  case CFG_SOCKET:
  case CFG_FILE:
  case CFG_DIR: s = "a path"; break;
  case CFG_WIDTHS: s = "a sequence of numbers"; break;
  case CFG_TABLE: s = "a mapping"; break;
  case CFG_MODELS: s = "a sequence of models"; break;
  }
  snprintf(buf, size, "%s", s);
}

/* The range of a row's numbers: "1..64", "> 0", "> 0 and <= 1", "0..0777". */
static void range_text(const struct cfg_row *r, char *buf, size_t size) {
  if (r->type == CFG_MODE)
    snprintf(buf, size, "%#o..%#o", (unsigned)r->min, (unsigned)r->max);
  else if ((r->flags & CFG_MIN_OPEN) && isinf(r->max))
    snprintf(buf, size, "> %.15g", r->min);
  else if (r->flags & CFG_MIN_OPEN)
    snprintf(buf, size, "> %.15g and <= %.15g", r->min, r->max);
  else
    snprintf(buf, size, "%.15g..%.15g", r->min, r->max);
}

static int in_range(const struct cfg_row *r, double v) {
  if (r->flags & CFG_MIN_OPEN ? !(v > r->min) : !(v >= r->min))
    return 0;
  return v <= r->max;
}

/* field = parent.key, or key at the top level. */
static void join_field(char *field, const char *parent, const char *key) {
  snprintf(field, CFG_FIELD_MAX, "%s%s%s", parent, parent[0] ? "." : "", key);
}

/* " in PATH", or "" at the top level. */
static void in_text(const char *path, char *buf, size_t size) {
  snprintf(buf, size, "%s%s", path[0] ? " in " : "", path);
}

/* libyaml allows only [0-9A-Za-z_-] in anchor names, so they print as is. */
static int alias_problem(struct loader *ld, const char *field, const yaml_event_t *ev) {
  return problem(ld, ev->start_mark, "%s%saliases are not supported (*%.64s)", field,
                 field[0] ? ": " : "", (const char *)ev->data.alias.anchor);
}

/* ------------------------------------------------------- "did you mean" */

/* Levenshtein distance; both lengths <= SUGGEST_MAX_LEN. */
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb) {
  size_t row[SUGGEST_MAX_LEN + 1];
  for (size_t j = 0; j <= nb; j++)
    row[j] = j;
  for (size_t i = 1; i <= na; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t up = row[j];
      size_t best = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[nb];
}

/* The name s (n bytes) was most likely meant to be, among names[0..count)
 * (spaced `stride` bytes apart, each a const char * at the start), or NULL
 * when none is close: fewer than half its characters differ, or s is the
 * start (3 or more characters) of it. */
static const char *nearest(const char *s, size_t n, const void *names, size_t stride, int count) {
  if (n == 0 || n > SUGGEST_MAX_LEN)
    return NULL;
  const char *best = NULL;
  size_t best_d = SIZE_MAX;
  for (int i = 0; i < count; i++) {
    const char *c = *(const char *const *)((const char *)names + (size_t)i * stride);
    size_t nc = strlen(c);
    if (nc > SUGGEST_MAX_LEN)
      continue;
    size_t d = edit_distance(s, n, c, nc);
    size_t longer = n > nc ? n : nc;
    int prefix = n >= 3 && n < nc && memcmp(s, c, n) == 0;
    if (n == nc && strncasecmp(s, c, n) == 0)
      d = 0; /* only the case differs */
    if ((2 * d < longer || prefix) && d < best_d) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

/* Reports key (n bytes) as unknown in table t at path, with what it most
 * likely should be: a key of a nested table spelt exactly so (it is in
 * the wrong place), else a close key of t, else the list of t's keys. */
static int unknown_key(struct loader *ld, const struct cfg_table *t, const char *path,
                       const char *key, size_t n, yaml_mark_t mark) {
  char q[QUOTE_BUF], in[CFG_FIELD_MAX + 8];
  quote(key, n, q, sizeof q);
  in_text(path, in, sizeof in);
  for (int i = 0; i < t->n; i++) {
    const struct cfg_row *r = &t->rows[i];
    if (r->type != CFG_TABLE)
      continue;
    for (int j = 0; j < r->sub->n; j++)
      if (strlen(r->sub->rows[j].key) == n && memcmp(r->sub->rows[j].key, key, n) == 0)
        return problem(ld, mark, "unknown key %s%s (did you mean \"%s.%s\"?)", q, in, r->key,
                       r->sub->rows[j].key);
  }
  const char *near = nearest(key, n, &t->rows[0].key, sizeof t->rows[0], t->n);
  if (near != NULL)
    return problem(ld, mark, "unknown key %s%s (did you mean \"%s\"?)", q, in, near);
  char known[512];
  size_t o = 0;
  for (int i = 0; i < t->n && o < sizeof known; i++)
    o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "", t->rows[i].key);
  return problem(ld, mark, "unknown key %s%s (known keys: %s)", q, in, known);
}

/* ------------------------------------------------------------- numbers */

enum { NUM_OK, NUM_BAD, NUM_LEADING_ZERO, NUM_RANGE };

/* A leading zero before more digits ("010"), which YAML 1.1 reads as
 * octal: refused rather than guessed at. */
static int leading_zero(const char *s, size_t n) {
  size_t i = n > 0 && (s[0] == '+' || s[0] == '-');
  return i + 1 < n && s[i] == '0' && s[i + 1] >= '0' && s[i + 1] <= '9';
}

/* A decimal integer: optional sign, digits. */
static int parse_integer(const char *s, size_t n, long long *v) {
  size_t i = n > 0 && (s[0] == '+' || s[0] == '-');
  if (i == n)
    return NUM_BAD;
  for (size_t j = i; j < n; j++)
    if (s[j] < '0' || s[j] > '9')
      return NUM_BAD;
  if (leading_zero(s, n))
    return NUM_LEADING_ZERO;
  char tmp[32];
  if (n >= sizeof tmp)
    return NUM_RANGE;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  errno = 0;
  *v = strtoll(tmp, NULL, 10);
  return errno == ERANGE ? NUM_RANGE : NUM_OK;
}

/* A finite decimal number: "8", "-0.5", ".25", "1e-3" (not YAML's .inf
 * or .nan, not hexadecimal). */
static int parse_number(const char *s, size_t n, double *v) {
  int digits = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] >= '0' && s[i] <= '9')
      digits = 1;
    else if (strchr("+-.eE", s[i]) == NULL || s[i] == '\0')
      return NUM_BAD;
  }
  char tmp[64];
  if (!digits || n >= sizeof tmp)
    return NUM_BAD;
  if (leading_zero(s, n))
    return NUM_LEADING_ZERO;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  char *end;
  *v = strtod(tmp, &end);
  if (end != tmp + n)
    return NUM_BAD;
  return isfinite(*v) ? NUM_OK : NUM_RANGE;
}

/* A permission mode in octal: "0660", "0o660", "0". */
static int parse_mode(const char *s, size_t n, long long *v) {
  size_t i;
  if (n >= 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
    i = 2;
  else if (n >= 1 && s[0] == '0')
    i = 1;
  else
    return NUM_BAD;
  if (i == n && i == 2)
    return NUM_BAD;
  long long m = 0;
  for (size_t j = i; j < n; j++) {
    if (s[j] < '0' || s[j] > '7')
      return NUM_BAD;
    if (m > 077777777)
      return NUM_RANGE;
    m = m * 8 + (s[j] - '0');
  }
  *v = m;
  return NUM_OK;
}

/* Reports why a number (text s) was not taken: status from parse_*. */
static int bad_number(struct loader *ld, const struct cfg_row *r, const char *field, int status,
                      const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark) {
  char q[QUOTE_BUF], want[96], range[96];
  quote(s, n, q, sizeof q);
  if (status == NUM_LEADING_ZERO)
    return problem(ld, mark, "%s: %s has a leading zero; write the number without it", field, q);
  if (status == NUM_RANGE) {
    range_text(r, range, sizeof range);
    return problem(ld, mark, "%s: %.*s is out of range (%s)", field, (int)(strlen(q) - 2), q + 1,
                   range);
  }
  char got[QUOTE_BUF + 32];
  describe_scalar(s, n, style, got, sizeof got);
  expected_text(r, want, sizeof want);
  return problem(ld, mark, "%s: expected %s, got %s", field, want, got);
}

/* --------------------------------------------------------------- paths */

/* Drops empty and "." components of the absolute path p, in place:
 * "/a//b/./c" becomes "/a/b/c".  ".." is kept: with symlinks it cannot be
 * taken away by looking at the text; so is a final "/", which asks for a
 * directory. */
static void tidy_path(char *p) {
  size_t len = strlen(p);
  int dir = len > 1 && (p[len - 1] == '/' || (p[len - 1] == '.' && p[len - 2] == '/'));
  char *w = p;
  const char *r = p;
  while (*r != '\0') {
    while (*r == '/')
      r++;
    if (*r == '\0')
      break;
    const char *e = strchr(r, '/');
    size_t n = e ? (size_t)(e - r) : strlen(r);
    if (!(n == 1 && r[0] == '.')) {
      *w++ = '/';
      memmove(w, r, n);
      w += n;
    }
    r += n;
  }
  if (w == p || dir)
    *w++ = '/';
  *w = '\0';
}

/* s (n bytes, as written) as an absolute path: relative to the config's
 * directory.  malloc'd; NULL when out of memory. */
static char *resolve(const struct loader *ld, const char *s, size_t n) {
  size_t dn = s[0] == '/' ? 0 : strlen(ld->dir) + 1;
  char *p = cfg_malloc(dn + n + 1);
  if (p == NULL)
    return NULL;
  if (dn > 0) {
    memcpy(p, ld->dir, dn - 1);
    p[dn - 1] = '/';
  }
  memcpy(p + dn, s, n);
  p[dn + n] = '\0';
  tidy_path(p);
  return p;
}

/* Checks that path names what row r needs: a readable regular file or a
 * directory. */
static int check_path(struct loader *ld, const struct cfg_row *r, const char *field,
                      const char *path, yaml_mark_t mark) {
  if (r->type != CFG_FILE && r->type != CFG_DIR)
    return 0;
  /* O_NONBLOCK: a FIFO named by mistake must not hang the loader. */
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  if (r->type == CFG_DIR)
    flags |= O_DIRECTORY;
  int fd = open(path, flags);
  if (fd < 0)
    return problem(ld, mark, "%s: cannot open \"%s\": %s", field, path, strerror(errno));
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0)
    rc = problem(ld, mark, "%s: cannot stat \"%s\": %s", field, path, strerror(errno));
  else if (r->type == CFG_FILE && !S_ISREG(st.st_mode))
    rc = problem(ld, mark, "%s: \"%s\" is not a regular file", field, path);
  close(fd);
  return rc;
}

/* ------------------------------------------------------------- scalars */

/* Takes the scalar s (n bytes, written in style at mark) as the value of
 * row r in the struct at base.  from_file is 0 for defaults: no files are
 * checked and names are not compared.  Problems are recorded; returns 0 or
 * TL_ENOMEM. */
static int set_scalar(struct loader *ld, const struct cfg_row *r, char *base, const char *field,
                      const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                      int from_file) {
  void *slot = base + r->offset;
  char want[96], got[QUOTE_BUF + 32], q[QUOTE_BUF];
  if (is_null(s, n, style)) {
    expected_text(r, want, sizeof want);
    describe_scalar(s, n, style, got, sizeof got);
    return problem(ld, mark, "%s: expected %s, got %s", field, want, got);
  }
  if (memchr(s, '\0', n) != NULL) {
    quote(s, n, q, sizeof q);
    return problem(ld, mark, "%s: %s holds a NUL character", field, q);
  }
  int plain = style == YAML_PLAIN_SCALAR_STYLE;
  long long i = 0;
  double d = 0;
  int status;

  switch (r->type) {
  case CFG_INT:
  case CFG_SIZE:
  case CFG_MODE:
    if (!plain)
      status = NUM_BAD;
    else
      status = r->type == CFG_MODE ? parse_mode(s, n, &i) : parse_integer(s, n, &i);
    if (status == NUM_OK && !in_range(r, (double)i))
      status = NUM_RANGE;
    if (status != NUM_OK)
      return bad_number(ld, r, field, status, s, n, style, mark);
    if (r->type == CFG_INT)
      *(int *)slot = (int)i;
    else if (r->type == CFG_SIZE)
      *(size_t *)slot = (size_t)i;
    else
      *(unsigned *)slot = (unsigned)i;
    return 0;

  case CFG_NUMBER:
    status = plain ? parse_number(s, n, &d) : NUM_BAD;
    if (status == NUM_OK && !in_range(r, d))
      status = NUM_RANGE;
    if (status != NUM_OK)
      return bad_number(ld, r, field, status, s, n, style, mark);
    *(double *)slot = d;
    return 0;

  case CFG_ENUM: {
    int count = 0;
    for (; r->choices[count].name != NULL; count++)
      if (strlen(r->choices[count].name) == n && memcmp(r->choices[count].name, s, n) == 0) {
        *(int *)slot = r->choices[count].value;
        return 0;
      }
    quote(s, n, q, sizeof q);
    choices_text(r, want, sizeof want);
    const char *near = nearest(s, n, &r->choices[0].name, sizeof r->choices[0], count);
    if (near != NULL)
      return problem(ld, mark, "%s: %s is not %s (did you mean \"%s\"?)", field, q, want, near);
    return problem(ld, mark, "%s: %s is not %s", field, q, want);
  }

  case CFG_NAME: {
    int ok = n >= (size_t)r->min && n <= (size_t)r->max;
    for (size_t k = 0; k < n && ok; k++)
      ok = (s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
           (s[k] >= '0' && s[k] <= '9') || s[k] == '_' || s[k] == '.' || s[k] == '-';
    quote(s, n, q, sizeof q);
    if (!ok)
      return problem(ld, mark,
                     "%s: %s is not a valid name (1 to %d characters from A-Z a-z 0-9 _ . -)",
                     field, q, (int)r->max);
    if (from_file && (r->flags & CFG_UNIQUE)) {
      for (int k = 0; k < ld->model; k++) {
        const char *other = ld->cfg->models[k].name;
        if (other != NULL && strlen(other) == n && memcmp(other, s, n) == 0)
          return problem(ld, mark, "%s: duplicate model name %s (first at %zu:%zu)", field, q,
                         ld->name_marks[k].line + 1, ld->name_marks[k].column + 1);
      }
      ld->name_marks[ld->model] = mark;
    }
    char *v = cfg_strndup(s, n);
    if (v == NULL)
      return TL_ENOMEM;
    free(*(char **)slot);
    *(char **)slot = v;
    return 0;
  }

  case CFG_PATH:
  case CFG_SOCKET:
  case CFG_FILE:
  case CFG_DIR: {
    if (n == 0)
      return problem(ld, mark, "%s: the path is empty", field);
    char *v = resolve(ld, s, n);
    if (v == NULL)
      return TL_ENOMEM;
    size_t len = strlen(v);
    int rc = 0;
    if (r->type == CFG_SOCKET && len > SOCKET_PATH_MAX)
      rc = problem(ld, mark, "%s: \"%s\" is %zu bytes long; a Unix socket path holds at most %zu",
                   field, v, len, (size_t)SOCKET_PATH_MAX);
    else if (len >= PATH_MAX)
      rc = problem(ld, mark, "%s: the path is %zu bytes long; at most %d are allowed", field, len,
                   PATH_MAX - 1);
    else if (from_file)
      rc = check_path(ld, r, field, v, mark);
    free(*(char **)slot);
    *(char **)slot = v;
    return rc;
  }

  case CFG_WIDTHS:
  case CFG_TABLE:
  case CFG_MODELS: break;
  }
  return TL_EINTERNAL;
}

/* ----------------------------------------------------------- sequences */

/* Takes the scalar s (n bytes) as width i of the list w, whose row is r;
 * *prev is the width before it (NAN for the first). */
static int add_width(struct loader *ld, const struct cfg_row *r, const char *field, int i,
                     const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                     struct tl_config_widths *w, double *prev) {
  char item[CFG_FIELD_MAX + 16], got[QUOTE_BUF + 32], q[QUOTE_BUF];
  snprintf(item, sizeof item, "%s[%d]", field, i);
  double v = 0;
  int status =
      style == YAML_PLAIN_SCALAR_STYLE && !is_null(s, n, style) ? parse_number(s, n, &v) : NUM_BAD;
  if (status == NUM_BAD) {
    describe_scalar(s, n, style, got, sizeof got);
    return problem(ld, mark, "%s: expected a number, got %s", item, got);
  }
  if (status == NUM_OK && !in_range(r, v))
    status = NUM_RANGE;
  if (status != NUM_OK)
    return bad_number(ld, r, item, status, s, n, style, mark);
  int rc = 0;
  if (!isnan(*prev) && v <= *prev) {
    quote(s, n, q, sizeof q);
    rc = problem(ld, mark, "%s: widths must ascend, but %.*s follows %.15g", item,
                 (int)(strlen(q) - 2), q + 1, *prev);
  }
  *prev = v;
  if (i < TL_CONFIG_MAX_WIDTHS)
    w->v[i] = v;
  return rc;
}

/* The default of a CFG_WIDTHS row: its def is "0.25, 0.5, ...". */
static int default_widths(struct loader *ld, const struct cfg_row *r, char *base) {
  struct tl_config_widths *w = (struct tl_config_widths *)(base + r->offset);
  yaml_mark_t none = {0, 0, 0};
  double prev = NAN;
  int i = 0;
  for (const char *p = r->def; *p != '\0'; i++) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, ",");
    int rc = add_width(ld, r, r->key, i, p, n, YAML_PLAIN_SCALAR_STYLE, none, w, &prev);
    if (rc != 0)
      return rc;
    p += n + (p[n] == ',');
  }
  w->n = i;
  return 0;
}

/* ------------------------------------------------------------- walking */

/* Where a libyaml reader error's byte offset is: the reader reports no
 * line and column of its own. */
static yaml_mark_t mark_at(const struct loader *ld, size_t offset) {
  yaml_mark_t m = {offset, 0, 0};
  size_t end = offset < ld->text_len ? offset : ld->text_len;
  for (size_t i = 0; i < end; i++) {
    unsigned char c = (unsigned char)ld->text[i];
    if (c == '\n' || (c == '\r' && (i + 1 >= ld->text_len || ld->text[i + 1] != '\n'))) {
      m.line++;
      m.column = 0;
    } else if ((c & 0xC0) != 0x80 && c != '\r') {
      m.column++;
    }
  }
  return m;
}

/* Records libyaml's error.  Returns TL_EFORMAT, which ends the walk, or
 * TL_ENOMEM. */
static int syntax_error(struct loader *ld) {
  const yaml_parser_t *p = &ld->parser;
  if (p->error == YAML_MEMORY_ERROR)
    return TL_ENOMEM;
  ld->syntax_failed = 1;
  const char *what = p->problem != NULL ? p->problem : "the text cannot be parsed";
  int rc;
  if (p->error == YAML_READER_ERROR) {
    yaml_mark_t mark = mark_at(ld, p->problem_offset);
    if (p->problem_value != -1)
      rc = problem(ld, mark, "syntax error: %s (0x%02X)", what, (unsigned)p->problem_value);
    else
      rc = problem(ld, mark, "syntax error: %s", what);
  } else if (p->context != NULL) {
    rc = problem(ld, p->problem_mark, "syntax error: %s (%s at %zu:%zu)", what, p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
  } else {
    rc = problem(ld, p->problem_mark, "syntax error: %s", what);
  }
  return rc != 0 ? rc : TL_EFORMAT;
}

/* The next event into *ev, which the caller then deletes.  Returns 0,
 * TL_EFORMAT (a syntax error, recorded) or TL_ENOMEM. */
static int next_event(struct loader *ld, yaml_event_t *ev) {
  if (yaml_parser_parse(&ld->parser, ev))
    return 0;
  return syntax_error(ld);
}

/* Reads past the rest of the node ev starts (ev stays the caller's). */
static int skip_node(struct loader *ld, const yaml_event_t *ev) {
  if (ev->type != YAML_SEQUENCE_START_EVENT && ev->type != YAML_MAPPING_START_EVENT)
    return 0;
  for (long depth = 1; depth > 0;) {
    yaml_event_t e;
    int rc = next_event(ld, &e);
    if (rc != 0)
      return rc;
    if (e.type == YAML_SEQUENCE_START_EVENT || e.type == YAML_MAPPING_START_EVENT)
      depth++;
    else if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT)
      depth--;
    yaml_event_delete(&e);
  }
  return 0;
}

/* "field: expected WANT, got ..." and the node is read past. */
static int wrong_node(struct loader *ld, const char *field, const char *want,
                      const yaml_event_t *ev) {
  char got[QUOTE_BUF + 32];
  describe_node(ev, got, sizeof got);
  int rc = problem(ld, ev->start_mark, "%s%sexpected %s, got %s", field, field[0] ? ": " : "", want,
                   got);
  return rc != 0 ? rc : skip_node(ld, ev);
}

static int wrong_type(struct loader *ld, const struct cfg_row *r, const char *field,
                      const yaml_event_t *ev) {
  char want[96];
  expected_text(r, want, sizeof want);
  return wrong_node(ld, field, want, ev);
}

static int read_value(struct loader *ld, const struct cfg_row *r, char *base, const char *path,
                      const yaml_event_t *ev);

/* Sets the defaults of every row of t (and of nested tables) in base. */
static int apply_defaults(struct loader *ld, const struct cfg_table *t, char *base) {
  yaml_mark_t none = {0, 0, 0};
  for (int i = 0; i < t->n; i++) {
    const struct cfg_row *r = &t->rows[i];
    int rc = 0;
    if (r->type == CFG_TABLE)
      rc = apply_defaults(ld, r->sub, base + r->offset);
    else if (r->def != NULL && r->type == CFG_WIDTHS)
      rc = default_widths(ld, r, base);
    else if (r->def != NULL)
      rc =
          set_scalar(ld, r, base, r->key, r->def, strlen(r->def), YAML_PLAIN_SCALAR_STYLE, none, 0);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int find_row(const struct cfg_table *t, const char *key, size_t n) {
  for (int i = 0; i < t->n; i++)
    if (strlen(t->rows[i].key) == n && memcmp(t->rows[i].key, key, n) == 0)
      return i;
  return -1;
}

/* Reads a mapping described by t into base; the MAPPING-START event (at
 * start) has been read.  path names the mapping in messages ("" at the
 * top).  Every key is looked at even after problems. */
static int read_mapping(struct loader *ld, const struct cfg_table *t, char *base, const char *path,
                        yaml_mark_t start) {
  int seen[CFG_MAX_ROWS] = {0};
  yaml_mark_t seen_at[CFG_MAX_ROWS];
  memset(seen_at, 0, sizeof seen_at);
  char in[CFG_FIELD_MAX + 8], q[QUOTE_BUF];
  in_text(path, in, sizeof in);
  for (;;) {
    yaml_event_t key, value;
    int rc = next_event(ld, &key);
    if (rc != 0)
      return rc;
    if (key.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&key);
      break;
    }
    int row = -1; /* where the value goes; -1: read past it */
    if (key.type == YAML_ALIAS_EVENT) {
      rc = alias_problem(ld, path, &key);
    } else if (key.type != YAML_SCALAR_EVENT) {
      char got[32];
      describe_node(&key, got, sizeof got);
      rc = problem(ld, key.start_mark, "a key%s must be a string, got %s", in, got);
      if (rc == 0)
        rc = skip_node(ld, &key);
    } else {
      const char *k = (const char *)key.data.scalar.value;
      size_t n = key.data.scalar.length;
      row = find_row(t, k, n);
      if (row < 0) {
        rc = unknown_key(ld, t, path, k, n, key.start_mark);
      } else if (seen[row]) {
        quote(k, n, q, sizeof q);
        rc = problem(ld, key.start_mark, "duplicate key %s%s (first at %zu:%zu)", q, in,
                     seen_at[row].line + 1, seen_at[row].column + 1);
        row = -1;
      } else {
        seen[row] = 1;
        seen_at[row] = key.start_mark;
      }
    }
    yaml_event_delete(&key);
    if (rc != 0)
      return rc;

    rc = next_event(ld, &value);
    if (rc != 0)
      return rc;
    if (row >= 0)
      rc = read_value(ld, &t->rows[row], base, path, &value);
    else
      rc = skip_node(ld, &value);
    yaml_event_delete(&value);
    if (rc != 0)
      return rc;
  }
  for (int i = 0; i < t->n; i++)
    if ((t->rows[i].flags & CFG_REQUIRED) && !seen[i]) {
      ld->missing_key = 1;
      int rc = problem(ld, start, "%s%smissing required key \"%s\" (%s)", path, path[0] ? ": " : "",
                       t->rows[i].key, t->rows[i].help);
      ld->missing_key = 0;
      if (rc != 0)
        return rc;
    }
  return 0;
}

/* A node that must be a mapping of table t. */
static int read_table(struct loader *ld, const struct cfg_table *t, char *base, const char *field,
                      const yaml_event_t *ev) {
  if (ev->type == YAML_ALIAS_EVENT)
    return alias_problem(ld, field, ev);
  if (ev->type != YAML_MAPPING_START_EVENT)
    return wrong_node(ld, field, "a mapping", ev);
  return read_mapping(ld, t, base, field, ev->start_mark);
}

/* Room for one more model in ld->cfg->models and ld->name_marks. */
static int grow_models(struct loader *ld) {
  struct tl_config *cfg = ld->cfg;
  if (cfg->n_models < ld->cap_models)
    return 0;
  if (ld->cap_models > INT_MAX / 2)
    return TL_ENOMEM;
  int cap = ld->cap_models ? ld->cap_models * 2 : 4;
  struct tl_config_model *m = cfg_reallocarray(cfg->models, (size_t)cap, sizeof *m);
  if (m == NULL)
    return TL_ENOMEM;
  cfg->models = m;
  yaml_mark_t *marks = cfg_reallocarray(ld->name_marks, (size_t)cap, sizeof *marks);
  if (marks == NULL)
    return TL_ENOMEM;
  ld->name_marks = marks;
  ld->cap_models = cap;
  return 0;
}

/* models: a sequence of model mappings, at least one. */
static int read_models(struct loader *ld, const struct cfg_row *r, const char *field,
                       const yaml_event_t *ev) {
  if (ev->type != YAML_SEQUENCE_START_EVENT)
    return wrong_type(ld, r, field, ev);
  for (;;) {
    yaml_event_t item;
    int rc = next_event(ld, &item);
    if (rc != 0)
      return rc;
    if (item.type == YAML_SEQUENCE_END_EVENT) {
      yaml_event_delete(&item);
      break;
    }
    rc = grow_models(ld);
    if (rc == 0) {
      struct tl_config *cfg = ld->cfg;
      struct tl_config_model *m = &cfg->models[cfg->n_models];
      memset(m, 0, sizeof *m);
      memset(&ld->name_marks[cfg->n_models], 0, sizeof ld->name_marks[0]);
      ld->model = cfg->n_models++;
      rc = apply_defaults(ld, r->sub, (char *)m);
    }
    if (rc == 0) {
      char sub[CFG_FIELD_MAX + 16];
      snprintf(sub, sizeof sub, "%s[%d]", field, ld->model);
      rc = read_table(ld, r->sub, (char *)&ld->cfg->models[ld->model], sub, &item);
    }
    yaml_event_delete(&item);
    if (rc != 0)
      return rc;
  }
  if (ld->cfg->n_models == 0)
    return problem(ld, ev->start_mark, "%s: no models; at least one is required", field);
  return 0;
}

/* A CFG_WIDTHS value: a sequence of 1..TL_CONFIG_MAX_WIDTHS numbers. */
static int read_widths(struct loader *ld, const struct cfg_row *r, char *base, const char *field,
                       const yaml_event_t *ev) {
  if (ev->type != YAML_SEQUENCE_START_EVENT)
    return wrong_type(ld, r, field, ev);
  struct tl_config_widths *w = (struct tl_config_widths *)(base + r->offset);
  double prev = NAN;
  int i = 0;
  for (;; i += i < INT_MAX) {
    yaml_event_t item;
    int rc = next_event(ld, &item);
    if (rc != 0)
      return rc;
    if (item.type == YAML_SEQUENCE_END_EVENT) {
      yaml_event_delete(&item);
      break;
    }
    char sub[CFG_FIELD_MAX + 16];
    snprintf(sub, sizeof sub, "%s[%d]", field, i);
    if (item.type == YAML_ALIAS_EVENT)
      rc = alias_problem(ld, sub, &item);
    else if (item.type != YAML_SCALAR_EVENT)
      rc = wrong_node(ld, sub, "a number", &item);
    else
      rc = add_width(ld, r, field, i, (const char *)item.data.scalar.value, item.data.scalar.length,
                     item.data.scalar.style, item.start_mark, w, &prev);
    yaml_event_delete(&item);
    if (rc != 0)
      return rc;
  }
  w->n = i < TL_CONFIG_MAX_WIDTHS ? i : TL_CONFIG_MAX_WIDTHS;
  if (i == 0)
    return problem(ld, ev->start_mark, "%s: no widths; at least one is required", field);
  if (i > TL_CONFIG_MAX_WIDTHS)
    return problem(ld, ev->start_mark, "%s: %d widths; at most %d are allowed", field, i,
                   TL_CONFIG_MAX_WIDTHS);
  return 0;
}

/* The value of row r (of the table at base, named path), whose first
 * event is ev. */
static int read_value(struct loader *ld, const struct cfg_row *r, char *base, const char *path,
                      const yaml_event_t *ev) {
  char field[CFG_FIELD_MAX];
  join_field(field, path, r->key);
  if (ev->type == YAML_ALIAS_EVENT)
    return alias_problem(ld, field, ev);
  switch (r->type) {
  case CFG_TABLE: return read_table(ld, r->sub, base + r->offset, field, ev);
  case CFG_MODELS: return read_models(ld, r, field, ev);
  case CFG_WIDTHS: return read_widths(ld, r, base, field, ev);
  default: break;
  }
  if (ev->type != YAML_SCALAR_EVENT)
    return wrong_type(ld, r, field, ev);
  return set_scalar(ld, r, base, field, (const char *)ev->data.scalar.value, ev->data.scalar.length,
                    ev->data.scalar.style, ev->start_mark, 1);
}

/* The whole stream: one document whose root is the top-level mapping.
 * An empty file or document is an empty mapping (and so lacks models). */
static int read_stream(struct loader *ld) {
  yaml_event_t ev;
  yaml_mark_t start = {0, 0, 0};
  int rc = next_event(ld, &ev); /* STREAM-START */
  if (rc != 0)
    return rc;
  yaml_event_delete(&ev);
  rc = next_event(ld, &ev); /* DOCUMENT-START or STREAM-END */
  if (rc != 0)
    return rc;
  int empty = ev.type == YAML_STREAM_END_EVENT;
  yaml_event_delete(&ev);
  const char *models_help = top_rows[find_row(&top_table, "models", 6)].help;
  if (empty)
    return problem(ld, start, "missing required key \"models\" (%s); the file is empty",
                   models_help);

  rc = next_event(ld, &ev); /* the root node */
  if (rc != 0)
    return rc;
  if (ev.type == YAML_MAPPING_START_EVENT)
    rc = read_mapping(ld, &top_table, (char *)ld->cfg, "", ev.start_mark);
  else if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0 &&
           ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
    rc = problem(ld, ev.start_mark, "missing required key \"models\" (%s); the document is empty",
                 models_help);
  else if (ev.type == YAML_ALIAS_EVENT)
    rc = alias_problem(ld, "", &ev);
  else
    rc = wrong_node(ld, "", "a mapping of keys at the top level", &ev);
  yaml_event_delete(&ev);
  if (rc != 0)
    return rc;

  rc = next_event(ld, &ev); /* DOCUMENT-END */
  if (rc != 0)
    return rc;
  yaml_event_delete(&ev);
  rc = next_event(ld, &ev); /* STREAM-END, or another document */
  if (rc != 0)
    return rc;
  if (ev.type == YAML_DOCUMENT_START_EVENT)
    rc = problem(ld, ev.start_mark, "a second YAML document; the config is one document");
  yaml_event_delete(&ev);
  return rc;
}

/* ------------------------------------------------------------- the file */

/* Reads the whole file into *out (malloc'd, *len bytes). */
static int read_file(struct loader *ld, char **out, size_t *len) {
  int fd = open(ld->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    int rc = problem_nowhere(ld, "cannot open: %s", strerror(e));
    return rc != 0 ? rc : e == ENOENT ? TL_ENOENT : TL_EIO;
  }
  size_t cap = 4096, n = 0;
  int rc = 0;
  char *buf = cfg_malloc(cap);
  if (buf == NULL) {
    rc = TL_ENOMEM;
    goto fail;
  }
  for (;;) {
    if (n == cap) {
      char *bigger = cfg_reallocarray(buf, cap, 2);
      if (bigger == NULL) {
        rc = TL_ENOMEM;
        goto fail;
      }
      buf = bigger;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      rc = problem_nowhere(ld, "cannot read: %s", strerror(errno));
      rc = rc != 0 ? rc : TL_EIO;
      goto fail;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n > CONFIG_MAX_BYTES) {
      rc = problem_nowhere(ld, "larger than %d bytes; a config is a few kilobytes",
                           CONFIG_MAX_BYTES);
      rc = rc != 0 ? rc : TL_EFORMAT;
      goto fail;
    }
  }
  if (close(fd) < 0) {
    fd = -1;
    rc = problem_nowhere(ld, "cannot close: %s", strerror(errno));
    rc = rc != 0 ? rc : TL_EIO;
    goto fail;
  }
  *out = buf;
  *len = n;
  return 0;

fail:
  free(buf);
  if (fd >= 0)
    close(fd);
  return rc;
}

/* ld->dir: the canonical directory the config file is in, as named. */
static int find_dir(struct loader *ld) {
  char d[PATH_MAX];
  const char *slash = strrchr(ld->file, '/');
  if (slash == NULL) {
    snprintf(d, sizeof d, ".");
  } else {
    size_t n = slash == ld->file ? 1 : (size_t)(slash - ld->file);
    if (n >= sizeof d) {
      int rc = problem_nowhere(ld, "the path is too long");
      return rc != 0 ? rc : TL_EIO;
    }
    memcpy(d, ld->file, n);
    d[n] = '\0';
  }
  if (realpath(d, ld->dir) == NULL) {
    int rc = problem_nowhere(ld, "cannot resolve its directory \"%s\": %s", d, strerror(errno));
    return rc != 0 ? rc : TL_EIO;
  }
  return 0;
}

/* Frees every string the rows of t hold in base, recursively. */
static void free_strings(const struct cfg_table *t, char *base) {
  for (int i = 0; i < t->n; i++) {
    const struct cfg_row *r = &t->rows[i];
    switch (r->type) {
    case CFG_NAME:
    case CFG_PATH:
    case CFG_SOCKET:
    case CFG_FILE:
    case CFG_DIR: free(*(char **)(base + r->offset)); break;
    case CFG_TABLE: free_strings(r->sub, base + r->offset); break;
    default: break;
    }
  }
}

void tl_config_free(struct tl_config *cfg) {
  if (cfg == NULL)
    return;
  for (int i = 0; i < cfg->n_models; i++)
    free_strings(&model_table, (char *)&cfg->models[i]);
  free(cfg->models);
  free_strings(&top_table, (char *)cfg);
  free(cfg->file);
  free(cfg);
}

/* Hands every recorded problem, in file order, to report, and the first
 * to err.  After a syntax error, missing keys are left out: a key that
 * seems missing was most often written where the error is (indented
 * wrongly, say), so it is the syntax error that needs fixing. */
static void report_all(struct loader *ld, int code, tl_config_report_fn *report, void *ctx,
                       struct tl_error *err) {
  if (ld->syntax_failed) {
    size_t kept = 0;
    for (size_t i = 0; i < ld->n_diags; i++) {
      if (ld->diags[i].missing_key)
        free(ld->diags[i].text);
      else
        ld->diags[kept++] = ld->diags[i];
    }
    ld->n_diags = kept;
  }
  qsort(ld->diags, ld->n_diags, sizeof ld->diags[0], diag_cmp);
  if (report != NULL)
    for (size_t i = 0; i < ld->n_diags; i++)
      report(ctx, ld->diags[i].text);
  if (ld->n_diags == 1) {
    tl_fail(err, code, "%s", ld->diags[0].text);
  } else {
    char more[64];
    snprintf(more, sizeof more, " (and %zu more error%s)", ld->n_diags - 1,
             ld->n_diags == 2 ? "" : "s");
    int room = (int)(TL_ERROR_MAX - 1 - strlen(more));
    tl_fail(err, code, "%.*s%s", room, ld->diags[0].text, more);
  }
}

int tl_config_load_report(const char *path, struct tl_config **out, tl_config_report_fn *report,
                          void *ctx, struct tl_error *err) {
  if (path == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_config_load: path and out must not be NULL");
  struct loader ld;
  memset(&ld, 0, sizeof ld);
  ld.file = path;
  char *text = NULL;
  int parser_ready = 0;

  int rc = read_file(&ld, &text, &ld.text_len);
  if (rc != 0)
    goto done;
  ld.text = text;
  rc = find_dir(&ld);
  if (rc != 0)
    goto done;
  ld.cfg = cfg_calloc(1, sizeof *ld.cfg);
  if (ld.cfg == NULL || (ld.cfg->file = cfg_strndup(path, strlen(path))) == NULL) {
    rc = TL_ENOMEM;
    goto done;
  }
  rc = apply_defaults(&ld, &top_table, (char *)ld.cfg);
  if (rc != 0)
    goto done;
  if (!yaml_parser_initialize(&ld.parser)) {
    rc = TL_ENOMEM;
    goto done;
  }
  parser_ready = 1;
  yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text, ld.text_len);
  rc = read_stream(&ld);
  if (rc == 0 && ld.n_diags > 0)
    rc = TL_EFORMAT;

done:
  if (rc != 0 && rc != TL_ENOMEM && ld.n_diags > 0) {
    report_all(&ld, rc, report, ctx, err);
  } else if (rc != 0) {
    /* nothing recorded, or no memory to have recorded it all */
    char line[TL_ERROR_MAX];
    snprintf(line, sizeof line, "%s: %s while loading the config", path,
             rc == TL_ENOMEM ? "out of memory" : tl_strerror(rc));
    if (report != NULL)
      report(ctx, line);
    tl_fail(err, rc, "%s", line);
  }
  if (parser_ready)
    yaml_parser_delete(&ld.parser);
  free(text);
  for (size_t i = 0; i < ld.n_diags; i++)
    free(ld.diags[i].text);
  free(ld.diags);
  free(ld.name_marks);
  if (rc != 0) {
    tl_config_free(ld.cfg);
    return rc;
  }
  *out = ld.cfg;
  return 0;
}

int tl_config_load(const char *path, struct tl_config **out, struct tl_error *err) {
  return tl_config_load_report(path, out, NULL, NULL, err);
}
