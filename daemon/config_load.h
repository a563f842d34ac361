/*
 * config_load.h - what the loader's two files share: config_load.c walks
 * the file and records problems, config_value.c turns each scalar into
 * its field.  Private to daemon/config_*.c; with them, the only place in
 * tailor that knows YAML.
 *
 * Every function that records a problem returns 0 when it was recorded
 * (the walk goes on) or a negative TL_E* code that ends the load
 * (TL_ENOMEM, or TL_EFORMAT after a syntax error).
 */
#ifndef TL_CONFIG_LOAD_H
#define TL_CONFIG_LOAD_H

#include <limits.h>
#include <stddef.h>
#include <yaml.h>

#include "config.h"
#include "config_internal.h"

/* "models[123].calibration.scale" and the like, with room to spare. */
#define CFG_FIELD_MAX 128
/* Quoted values in messages show at most this many bytes of the value. */
#define QUOTE_MAX_BYTES 60
#define QUOTE_BUF (QUOTE_MAX_BYTES * 4 + 32)

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

/* ---------------------------------------------------- config_load.c */

/* The loader's allocations, which a test can make fail
 * (tl__config_fail_alloc_after).  tl__config_strndup: s's first n bytes
 * and a NUL. */
void *tl__config_malloc(size_t n);
char *tl__config_strndup(const char *s, size_t n);

/* Records a problem at mark: "FILE:LINE:COLUMN: " and the formatted
 * sentence. */
int tl__config_problem(struct loader *ld, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --------------------------------------------------- config_value.c */

/* s (n bytes) in double quotes, escaped and cut to stay one short line. */
void tl__config_quote(const char *s, size_t n, char *buf, size_t size);
/* How a node reads in "expected X, got Y". */
void tl__config_describe_node(const yaml_event_t *ev, char *buf, size_t size);
/* What row r's value must be, for "expected X". */
void tl__config_expected_text(const struct cfg_row *r, char *buf, size_t size);
/* The name among names[0..count) (stride bytes apart) that s (n bytes)
 * was most likely meant to be, or NULL when none is close. */
const char *tl__config_nearest(const char *s, size_t n, const void *names, size_t stride,
                               int count);
/* Takes the scalar s (n bytes) as the value of row r in the struct at
 * base; from_file is 0 for defaults (no files checked, names not
 * compared). */
int tl__config_set_scalar(struct loader *ld, const struct cfg_row *r, char *base, const char *field,
                          const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                          int from_file);
/* Takes the scalar s (n bytes) as width i of w; *prev is the width before
 * it (NAN for the first). */
int tl__config_add_width(struct loader *ld, const struct cfg_row *r, const char *field, int i,
                         const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                         struct tl_config_widths *w, double *prev);
/* Sets the default of a CFG_WIDTHS row in the struct at base. */
int tl__config_default_widths(struct loader *ld, const struct cfg_row *r, char *base);

#endif
