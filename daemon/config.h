/*
 * config.h - tailord's configuration, read from a YAML file.
 *
 * configs/tailord.yaml is the documented default; every key, its type,
 * range and default live in one schema table in config_schema.c, against
 * which config_load.c and config_value.c read the file.  Loading either
 * yields a whole, valid struct tl_config (every optional key defaulted,
 * every relative path made absolute against the config file's directory,
 * every file the config names checked to be there) or fails and reports
 * EVERY problem in the file, each as one line with its place:
 *
 *   tailord.yaml:7:5: unknown key "latncy_ms" in models[0].budget
 *       (did you mean "latency_p95_ms"?)
 *
 * (one line, wrapped here), so an operator fixes a config in one round.
 * This is the only place in tailor that knows YAML.
 *
 * A loaded config is plain data: read it from any thread, free it once.
 * tl_config_load*() keep no state between calls; any number of threads may
 * load configs at once.
 */
#ifndef TL_CONFIG_H
#define TL_CONFIG_H

#include <stddef.h>

#include "error.h"

/* At most this many entries in a model's space.widths. */
#define TL_CONFIG_MAX_WIDTHS 16
/* A model name is 1 to this many characters of [A-Za-z0-9_.-]. */
#define TL_CONFIG_NAME_MAX 64

/* log_level, valued as syslog priorities, which are also journald's "<N>"
 * line prefixes: a message is logged when its priority <= log_level. */
enum tl_config_log_level {
  TL_CONFIG_LOG_ERROR = 3,
  TL_CONFIG_LOG_WARNING = 4,
  TL_CONFIG_LOG_INFO = 6,
  TL_CONFIG_LOG_DEBUG = 7,
};

struct tl_config_socket {
  char *path;    /* absolute; shorter than sockaddr_un's sun_path */
  unsigned mode; /* permission bits of the socket file, <= 0777 */
};

struct tl_config_monitor {
  int interval_ms; /* between two samples of the device state */
  char *root;      /* absolute; proc/ and sys/ are read under it */
};

struct tl_config_limits {
  int max_connections;     /* open client connections at once */
  size_t max_header_bytes; /* one request's HTTP header block */
  size_t max_body_bytes;   /* one request's body */
  int idle_timeout_ms;     /* a keep-alive connection with no request */
  int request_timeout_ms;  /* from a request's first byte (or the connection's
                              start) to its last */
  int queue_depth;         /* inference requests waiting for a worker */
};

/* Optional.  x == NULL (and y == NULL) when the block was not given;
 * otherwise x, and y when given, are absolute paths of readable regular
 * files. */
struct tl_config_calibration {
  char *x;      /* .npy images, N x C x H x W, float32 or uint8 */
  char *y;      /* .npy labels, N, int64 or int32; NULL: none (agreement) */
  double scale; /* multiplies uint8 pixels; > 0 */
};

struct tl_config_widths {
  int n;                          /* 1..TL_CONFIG_MAX_WIDTHS */
  double v[TL_CONFIG_MAX_WIDTHS]; /* (0, 1], strictly ascending */
};

struct tl_config_space {
  struct tl_config_widths widths; /* channel fractions subnets may use */
  int resolution_steps;           /* steps from 50 % to 100 % (0: native only) */
};

struct tl_config_search {
  int k;                /* frontier size */
  int images;           /* calibration images each candidate is measured on */
  int candidates;       /* subnets measured before the frontier is cut; 0: 4 * k */
  int threads;          /* subnets evaluated at once; 0: one per online CPU */
  double time_budget_s; /* the search's limit; 0: none */
};

struct tl_config_budget {
  double latency_p95_ms; /* > 0; always given */
  int memory_mib;        /* 0: no memory budget */
  double min_accuracy;   /* fraction, 0..1 */
  double margin;         /* fraction of the budget kept free, 0..0.9 */
  int hysteresis_ms;     /* stable time before moving up */
  double deadline_ms;    /* a request that would take longer is shed; 0: 10 x latency */
};

struct tl_config_model {
  char *name; /* [A-Za-z0-9_.-]{1,64}, unique in the config */
  char *path; /* absolute path of a readable regular file (ONNX) */
  struct tl_config_calibration calibration;
  struct tl_config_space space;
  struct tl_config_search search;
  struct tl_config_budget budget;
};

/* Every string is malloc'd and owned by the config; tl_config_free()
 * frees them all. */
struct tl_config {
  char *file; /* the path the config was loaded from, as given */
  struct tl_config_socket socket;
  char *database; /* absolute path of the SQLite cache */
  int workers;    /* inference worker threads */
  int threads;    /* engine threads per worker */
  enum tl_config_log_level log_level;
  struct tl_config_monitor monitor;
  struct tl_config_limits limits;
  int n_models;                   /* >= 1 */
  struct tl_config_model *models; /* (n_models), in file order */
};

/* Receives one problem found in a config: a whole line without a newline,
 * "FILE:LINE:COLUMN: sentence" (FILE as it was given to the loader, LINE
 * and COLUMN from 1, COLUMN counting characters) or "FILE: sentence" when
 * the problem has no place in the text (the file cannot be read).  line is
 * valid only during the call. */
typedef void tl_config_report_fn(void *ctx, const char *line);

/* Loads the config file at path into a new *out, owned by the caller, who
 * frees it with tl_config_free().  Relative paths in the file are taken
 * relative to the directory that holds it (as named by path: the file
 * itself may be a symlink), and stored absolute.
 *
 * On failure, report (when not NULL) is called once per problem, in file
 * order, before this returns, on the calling thread: every unknown key
 * (with the nearest known one when it is close), duplicate key, value of
 * the wrong type or out of range, missing required key, duplicate model
 * name, and file the config names that cannot be opened.  A YAML syntax
 * error ends the reading (libyaml cannot go on after one): it is reported
 * with the problems found before it, but without missing keys: the rest
 * of the file was never read, and a key that seems missing is most often
 * the one the syntax error is in.  err (may be NULL) gets the first
 * problem and, when there are more, " (and N more errors)".
 *
 * Returns 0, or TL_EFORMAT (the config has problems), TL_ENOENT (no file at
 * path), TL_EIO (path cannot be read, e.g. a directory), TL_ENOMEM (then
 * the one line reported says so) or TL_EINVAL (path or out is NULL; nothing
 * is reported).  On failure *out is untouched. */
int tl_config_load_report(const char *path, struct tl_config **out, tl_config_report_fn *report,
                          void *ctx, struct tl_error *err);

/* tl_config_load_report() without the report callback, for callers that
 * only show one line. */
int tl_config_load(const char *path, struct tl_config **out, struct tl_error *err);

/* Frees cfg and every string it holds.  NULL is harmless. */
void tl_config_free(struct tl_config *cfg);

/* For tests only: after n more successful allocations of the loader on the
 * calling thread, every further one fails, until the next call; n < 0
 * turns this off (the default).  Lets a test walk the loader through each
 * of its out-of-memory paths.  libyaml's own allocations are not
 * affected. */
void tl__config_fail_alloc_after(long n);

#endif
