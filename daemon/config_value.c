/*
 * config_value.c - the value of one key: a YAML scalar checked against its
 * schema row and converted into the field the row names.
 *
 * Integers, octal modes, numbers, enums, names, paths (made absolute
 * against the config's directory, and for files and directories checked
 * to be there) and the widths of a model's space.  Each value that cannot
 * be taken is recorded as a problem with its place, worded as an operator
 * reads it ("expected an integer, got ..."), and the walk goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
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

#include "config.h"
#include "config_internal.h"
#include "config_load.h"

/* Keys longer than this get no "did you mean". */
#define SUGGEST_MAX_LEN 64
/* The longest path a Unix socket address holds (sun_path less its NUL). */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* ------------------------------------------------------------ wording */

/* Writes s (n bytes) into buf in double quotes, escaped so that a message
 * stays one printable line, and cut after QUOTE_MAX_BYTES bytes (at a
 * character boundary) with "...". */
void tl__config_quote(const char *s, size_t n, char *buf, size_t size) {
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
  tl__config_quote(s, n, q, sizeof q);
  if (style == YAML_PLAIN_SCALAR_STYLE)
    snprintf(buf, size, "%s", q);
  else if (style == YAML_SINGLE_QUOTED_SCALAR_STYLE || style == YAML_DOUBLE_QUOTED_SCALAR_STYLE)
    snprintf(buf, size, "the quoted string %s", q);
  else
    snprintf(buf, size, "the block scalar %s", q);
}

/* How any node reads in "expected X, got Y". */
void tl__config_describe_node(const yaml_event_t *ev, char *buf, size_t size) {
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
void tl__config_expected_text(const struct cfg_row *r, char *buf, size_t size) {
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
const char *tl__config_nearest(const char *s, size_t n, const void *names, size_t stride,
                               int count) {
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
  tl__config_quote(s, n, q, sizeof q);
  if (status == NUM_LEADING_ZERO)
    return tl__config_problem(ld, mark, "%s: %s has a leading zero; write the number without it",
                              field, q);
  if (status == NUM_RANGE) {
    range_text(r, range, sizeof range);
    return tl__config_problem(ld, mark, "%s: %.*s is out of range (%s)", field,
                              (int)(strlen(q) - 2), q + 1, range);
  }
  char got[QUOTE_BUF + 32];
  describe_scalar(s, n, style, got, sizeof got);
  tl__config_expected_text(r, want, sizeof want);
  return tl__config_problem(ld, mark, "%s: expected %s, got %s", field, want, got);
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
  char *p = tl__config_malloc(dn + n + 1);
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
    return tl__config_problem(ld, mark, "%s: cannot open \"%s\": %s", field, path, strerror(errno));
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) < 0)
    rc = tl__config_problem(ld, mark, "%s: cannot stat \"%s\": %s", field, path, strerror(errno));
  else if (r->type == CFG_FILE && !S_ISREG(st.st_mode))
    rc = tl__config_problem(ld, mark, "%s: \"%s\" is not a regular file", field, path);
  close(fd);
  return rc;
}

/* ------------------------------------------------------------- scalars */

/* Takes the scalar s (n bytes, written in style at mark) as the value of
 * row r in the struct at base.  from_file is 0 for defaults: no files are
 * checked and names are not compared.  Problems are recorded; returns 0 or
 * TL_ENOMEM. */
int tl__config_set_scalar(struct loader *ld, const struct cfg_row *r, char *base, const char *field,
                          const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                          int from_file) {
  void *slot = base + r->offset;
  char want[96], got[QUOTE_BUF + 32], q[QUOTE_BUF];
  /* what no row takes: null and NUL */
  if (is_null(s, n, style)) {
    tl__config_expected_text(r, want, sizeof want);
    describe_scalar(s, n, style, got, sizeof got);
    return tl__config_problem(ld, mark, "%s: expected %s, got %s", field, want, got);
  }
  if (memchr(s, '\0', n) != NULL) {
    tl__config_quote(s, n, q, sizeof q);
    return tl__config_problem(ld, mark, "%s: %s holds a NUL character", field, q);
  }
  int plain = style == YAML_PLAIN_SCALAR_STYLE;
  long long i = 0;
  double d = 0;
  int status;

  /* by the row's type: converted, checked, stored in slot */
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
    tl__config_quote(s, n, q, sizeof q);
    choices_text(r, want, sizeof want);
    const char *near = tl__config_nearest(s, n, &r->choices[0].name, sizeof r->choices[0], count);
    if (near != NULL)
      return tl__config_problem(ld, mark, "%s: %s is not %s (did you mean \"%s\"?)", field, q, want,
                                near);
    return tl__config_problem(ld, mark, "%s: %s is not %s", field, q, want);
  }

  case CFG_NAME: {
    int ok = n >= (size_t)r->min && n <= (size_t)r->max;
    for (size_t k = 0; k < n && ok; k++)
      ok = (s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
           (s[k] >= '0' && s[k] <= '9') || s[k] == '_' || s[k] == '.' || s[k] == '-';
    tl__config_quote(s, n, q, sizeof q);
    if (!ok)
      return tl__config_problem(
          ld, mark, "%s: %s is not a valid name (1 to %d characters from A-Z a-z 0-9 _ . -)", field,
          q, (int)r->max);
    if (from_file && (r->flags & CFG_UNIQUE)) {
      for (int k = 0; k < ld->model; k++) {
        const char *other = ld->cfg->models[k].name;
        if (other != NULL && strlen(other) == n && memcmp(other, s, n) == 0)
          return tl__config_problem(ld, mark, "%s: duplicate model name %s (first at %zu:%zu)",
                                    field, q, ld->name_marks[k].line + 1,
                                    ld->name_marks[k].column + 1);
      }
      ld->name_marks[ld->model] = mark;
    }
    char *v = tl__config_strndup(s, n);
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
      return tl__config_problem(ld, mark, "%s: the path is empty", field);
    char *v = resolve(ld, s, n);
    if (v == NULL)
      return TL_ENOMEM;
    size_t len = strlen(v);
    int rc = 0;
    if (r->type == CFG_SOCKET && len > SOCKET_PATH_MAX)
      rc = tl__config_problem(ld, mark,
                              "%s: \"%s\" is %zu bytes long; a Unix socket path holds at most %zu",
                              field, v, len, (size_t)SOCKET_PATH_MAX);
    else if (len >= PATH_MAX)
      rc = tl__config_problem(ld, mark, "%s: the path is %zu bytes long; at most %d are allowed",
                              field, len, PATH_MAX - 1);
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
int tl__config_add_width(struct loader *ld, const struct cfg_row *r, const char *field, int i,
                         const char *s, size_t n, yaml_scalar_style_t style, yaml_mark_t mark,
                         struct tl_config_widths *w, double *prev) {
  char item[CFG_FIELD_MAX + 16], got[QUOTE_BUF + 32], q[QUOTE_BUF];
  snprintf(item, sizeof item, "%s[%d]", field, i);
  double v = 0;
  int status =
      style == YAML_PLAIN_SCALAR_STYLE && !is_null(s, n, style) ? parse_number(s, n, &v) : NUM_BAD;
  if (status == NUM_BAD) {
    describe_scalar(s, n, style, got, sizeof got);
    return tl__config_problem(ld, mark, "%s: expected a number, got %s", item, got);
  }
  if (status == NUM_OK && !in_range(r, v))
    status = NUM_RANGE;
  if (status != NUM_OK)
    return bad_number(ld, r, item, status, s, n, style, mark);
  int rc = 0;
  if (!isnan(*prev) && v <= *prev) {
    tl__config_quote(s, n, q, sizeof q);
    rc = tl__config_problem(ld, mark, "%s: widths must ascend, but %.*s follows %.15g", item,
                            (int)(strlen(q) - 2), q + 1, *prev);
  }
  *prev = v;
  if (i < TL_CONFIG_MAX_WIDTHS)
    w->v[i] = v;
  return rc;
}

/* The default of a CFG_WIDTHS row: its def is "0.25, 0.5, ...". */
int tl__config_default_widths(struct loader *ld, const struct cfg_row *r, char *base) {
  struct tl_config_widths *w = (struct tl_config_widths *)(base + r->offset);
  yaml_mark_t none = {0, 0, 0};
  double prev = NAN;
  int i = 0;
  for (const char *p = r->def; *p != '\0'; i++) {
    while (*p == ' ')
      p++;
    size_t n = strcspn(p, ",");
    int rc = tl__config_add_width(ld, r, r->key, i, p, n, YAML_PLAIN_SCALAR_STYLE, none, w, &prev);
    if (rc != 0)
      return rc;
    p += n + (p[n] == ',');
  }
  w->n = i;
  return 0;
}
