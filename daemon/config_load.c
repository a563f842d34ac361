/*
 * config_load.c - reading tailord.yaml: the file, the walk over libyaml's
 * events, and the problems found on the way.
 *
 * The file is read whole into memory and walked event by event (libyaml's
 * parser API, not its document API), because events carry the line and
 * column a message needs.  The walk is table driven (config_schema.c):
 * each mapping is read against its table, and each scalar handed to
 * config_value.c with its row.  The invariant of the walk: a problem in a
 * value never stops it.  Each problem is recorded with its place and the
 * walk goes on with the next key, so one load finds everything wrong with
 * a file; only a YAML syntax error ends it, because libyaml cannot go on
 * after one.  Problems are found out of file order (a missing key is only
 * known at the end of its mapping) and are sorted by place before they are
 * reported.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "config_internal.h"
#include "config_load.h"

/* A config is a few kilobytes; this bounds what a wrong path (a log, a
 * disk image) makes the loader read. */
#define CONFIG_MAX_BYTES (1 << 20)

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

void *tl__config_malloc(size_t n) { return alloc_allowed() ? malloc(n == 0 ? 1 : n) : NULL; }

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

char *tl__config_strndup(const char *s, size_t n) {
  char *d = tl__config_malloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* ------------------------------------------------------------ problems */

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
  d->text = tl__config_malloc((size_t)p + (size_t)n + 1);
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

int tl__config_problem(struct loader *ld, yaml_mark_t mark, const char *fmt, ...) {
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

/* -------------------------------------------------------------- fields */

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
  return tl__config_problem(ld, ev->start_mark, "%s%saliases are not supported (*%.64s)", field,
                            field[0] ? ": " : "", (const char *)ev->data.alias.anchor);
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
      rc = tl__config_problem(ld, mark, "syntax error: %s (0x%02X)", what,
                              (unsigned)p->problem_value);
    else
      rc = tl__config_problem(ld, mark, "syntax error: %s", what);
  } else if (p->context != NULL) {
    rc = tl__config_problem(ld, p->problem_mark, "syntax error: %s (%s at %zu:%zu)", what,
                            p->context, p->context_mark.line + 1, p->context_mark.column + 1);
  } else {
    rc = tl__config_problem(ld, p->problem_mark, "syntax error: %s", what);
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
  tl__config_describe_node(ev, got, sizeof got);
  int rc = tl__config_problem(ld, ev->start_mark, "%s%sexpected %s, got %s", field,
                              field[0] ? ": " : "", want, got);
  return rc != 0 ? rc : skip_node(ld, ev);
}

static int wrong_type(struct loader *ld, const struct cfg_row *r, const char *field,
                      const yaml_event_t *ev) {
  char want[96];
  tl__config_expected_text(r, want, sizeof want);
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
      rc = tl__config_default_widths(ld, r, base);
    else if (r->def != NULL)
      rc = tl__config_set_scalar(ld, r, base, r->key, r->def, strlen(r->def),
                                 YAML_PLAIN_SCALAR_STYLE, none, 0);
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

/* Reports key (n bytes) as unknown in table t at path, with what it most
 * likely should be: a key of a nested table spelt exactly so (it is in
 * the wrong place), else a close key of t, else the list of t's keys. */
static int unknown_key(struct loader *ld, const struct cfg_table *t, const char *path,
                       const char *key, size_t n, yaml_mark_t mark) {
  char q[QUOTE_BUF], in[CFG_FIELD_MAX + 8];
  tl__config_quote(key, n, q, sizeof q);
  in_text(path, in, sizeof in);
  for (int i = 0; i < t->n; i++) {
    const struct cfg_row *r = &t->rows[i];
    if (r->type != CFG_TABLE)
      continue;
    for (int j = 0; j < r->sub->n; j++)
      if (strlen(r->sub->rows[j].key) == n && memcmp(r->sub->rows[j].key, key, n) == 0)
        return tl__config_problem(ld, mark, "unknown key %s%s (did you mean \"%s.%s\"?)", q, in,
                                  r->key, r->sub->rows[j].key);
  }
  const char *near = tl__config_nearest(key, n, &t->rows[0].key, sizeof t->rows[0], t->n);
  if (near != NULL)
    return tl__config_problem(ld, mark, "unknown key %s%s (did you mean \"%s\"?)", q, in, near);
  char known[512];
  size_t o = 0;
  for (int i = 0; i < t->n && o < sizeof known; i++)
    o += (size_t)snprintf(known + o, sizeof known - o, "%s%s", i ? ", " : "", t->rows[i].key);
  return tl__config_problem(ld, mark, "unknown key %s%s (known keys: %s)", q, in, known);
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
      tl__config_describe_node(&key, got, sizeof got);
      rc = tl__config_problem(ld, key.start_mark, "a key%s must be a string, got %s", in, got);
      if (rc == 0)
        rc = skip_node(ld, &key);
    } else {
      const char *k = (const char *)key.data.scalar.value;
      size_t n = key.data.scalar.length;
      row = find_row(t, k, n);
      if (row < 0) {
        rc = unknown_key(ld, t, path, k, n, key.start_mark);
      } else if (seen[row]) {
        tl__config_quote(k, n, q, sizeof q);
        rc = tl__config_problem(ld, key.start_mark, "duplicate key %s%s (first at %zu:%zu)", q, in,
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
      int rc = tl__config_problem(ld, start, "%s%smissing required key \"%s\" (%s)", path,
                                  path[0] ? ": " : "", t->rows[i].key, t->rows[i].help);
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
    return tl__config_problem(ld, ev->start_mark, "%s: no models; at least one is required", field);
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
      rc = tl__config_add_width(ld, r, field, i, (const char *)item.data.scalar.value,
                                item.data.scalar.length, item.data.scalar.style, item.start_mark, w,
                                &prev);
    yaml_event_delete(&item);
    if (rc != 0)
      return rc;
  }
  w->n = i < TL_CONFIG_MAX_WIDTHS ? i : TL_CONFIG_MAX_WIDTHS;
  if (i == 0)
    return tl__config_problem(ld, ev->start_mark, "%s: no widths; at least one is required", field);
  if (i > TL_CONFIG_MAX_WIDTHS)
    return tl__config_problem(ld, ev->start_mark, "%s: %d widths; at most %d are allowed", field, i,
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
  return tl__config_set_scalar(ld, r, base, field, (const char *)ev->data.scalar.value,
                               ev->data.scalar.length, ev->data.scalar.style, ev->start_mark, 1);
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
  const char *models_help =
      tl__config_top_table.rows[find_row(&tl__config_top_table, "models", 6)].help;
  if (empty)
    return tl__config_problem(ld, start, "missing required key \"models\" (%s); the file is empty",
                              models_help);

  rc = next_event(ld, &ev); /* the root node */
  if (rc != 0)
    return rc;
  if (ev.type == YAML_MAPPING_START_EVENT)
    rc = read_mapping(ld, &tl__config_top_table, (char *)ld->cfg, "", ev.start_mark);
  else if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0 &&
           ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
    rc = tl__config_problem(ld, ev.start_mark,
                            "missing required key \"models\" (%s); the document is empty",
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
    rc =
        tl__config_problem(ld, ev.start_mark, "a second YAML document; the config is one document");
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
  char *buf = tl__config_malloc(cap);
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
  if (ld.cfg == NULL || (ld.cfg->file = tl__config_strndup(path, strlen(path))) == NULL) {
    rc = TL_ENOMEM;
    goto done;
  }
  rc = apply_defaults(&ld, &tl__config_top_table, (char *)ld.cfg);
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
