/*
 * config_schema.c - the schema of tailord.yaml: every key the config may
 * hold, as rows of tables.
 *
 * Every key is a row of a schema table below (key, type, range, default,
 * the field it fills, a few words of help); a mapping in the file is a
 * table, and the loader (config_load.c) walks the file table by table:
 * nothing there knows what "workers" means beyond its row.  Defaults are
 * written in the rows as YAML text and go through the same conversion and
 * range checks as the file's own values (config_value.c), so a default
 * cannot hold what the file could not.  Nothing here knows YAML.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "config.h"
#include "config_internal.h"

_Static_assert(sizeof(enum tl_config_log_level) == sizeof(int),
               "log_level is stored through an int");

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
const struct cfg_table tl__config_top_table = TABLE(top_rows);

#undef F

/* ------------------------------------------------------------- freeing */

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
  free_strings(&tl__config_top_table, (char *)cfg);
  free(cfg->file);
  free(cfg);
}
