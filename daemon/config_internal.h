/*
 * config_internal.h - the config schema as the config module's files share
 * it (config_schema.c writes the tables, config_load.c and config_value.c
 * read them); nothing outside daemon/config_*.c includes it.  Names with
 * two underscores (tl__) are internal to the module.  Nothing here knows
 * YAML.
 */
#ifndef TL_CONFIG_INTERNAL_H
#define TL_CONFIG_INTERNAL_H

#include <stddef.h>

/* Rows in one schema table (the top level has the most, 8). */
#define CFG_MAX_ROWS 16

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

/* The top-level mapping of the file; its rows lead to every other table. */
extern const struct cfg_table tl__config_top_table;

#endif
