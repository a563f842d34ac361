/*
 * test_config.c - tailord's config loader, driven by corpora of configs.
 *
 * Every tests/data/configs/bad/NAME.yaml must fail with TL_EFORMAT and
 * report exactly the lines of NAME.expect, in that order; every
 * tests/data/configs/good/NAME.yaml must load, and its values, one
 * "key = value" line each, must be exactly those of NAME.expect.  The
 * directories are listed when the suite is built, so adding a file adds a
 * test.  Configs are loaded by their bare name from inside their
 * directory, so messages read "NAME.yaml:7:5: ..."; in .expect files
 * "@DIR@" stands for the canonical path of that directory, which resolved
 * paths start with.
 *
 * Beside the corpora: the shipped configs/tailord.yaml (documented key by
 * key, loadable, holding the loader's defaults), configs that cannot be
 * read, symlinked configs, the one-line summary in struct tl_error, and an
 * allocation failure at each point of a load.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "testutil.h"

/* -------------------------------------------------------------- helpers */

static char src_root[PATH_MAX];
static char bad_dir[PATH_MAX];  /* canonical */
static char good_dir[PATH_MAX]; /* canonical */

/* The corpora: sorted names of the .yaml files in each directory. */
static char **bad_names, **good_names;
static int n_bad, n_good;

/* A growing string, for collected lines and dumps. */
struct text {
  char *s;
  size_t len, cap;
};

static void text_addf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_addf(struct text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  ck_assert_int_ge(n, 0);
  if (t->len + (size_t)n + 1 > t->cap) {
    t->cap = (t->len + (size_t)n + 1) * 2;
    t->s = realloc(t->s, t->cap);
    ck_assert_ptr_nonnull(t->s);
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  t->len += (size_t)n;
}

static const char *text_str(struct text *t) {
  if (t->s == NULL)
    text_addf(t, "%s", "");
  return t->s;
}

/* The report callback: each line, newline-terminated, into a struct text;
 * also checks that no line carries a newline of its own. */
static void collect(void *ctx, const char *line) {
  ck_assert_ptr_null(strchr(line, '\n'));
  text_addf(ctx, "%s\n", line);
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  struct text t = {0};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    text_addf(&t, "%.*s", (int)n, buf);
  fclose(f);
  text_str(&t);
  return t.s;
}

static void write_text(const char *path, const char *s) {
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  ck_assert_uint_eq(fwrite(s, 1, strlen(s), f), strlen(s));
  ck_assert_int_eq(fclose(f), 0);
}

/* s with every `from` replaced by `to`; malloc'd. */
static char *replace_all(const char *s, const char *from, const char *to) {
  struct text t = {0};
  size_t nf = strlen(from);
  const char *p;
  while ((p = strstr(s, from)) != NULL) {
    text_addf(&t, "%.*s%s", (int)(p - s), s, to);
    s = p + nf;
  }
  text_addf(&t, "%s", s);
  return t.s;
}

/* dir/NAME.expect for NAME.yaml, with @DIR@ replaced by dir; malloc'd. */
static char *read_expect(const char *dir, const char *yaml_name) {
  char path[PATH_MAX * 2];
  size_t n = strlen(yaml_name) - strlen(".yaml");
  snprintf(path, sizeof path, "%s/%.*s.expect", dir, (int)n, yaml_name);
  char *raw = read_text(path);
  char *s = replace_all(raw, "@DIR@", dir);
  free(raw);
  return s;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the *.yaml files in dir. */
static char **list_yaml(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    fprintf(stderr, "%s: %s\n", dir, strerror(errno));
    abort();
  }
  char **names = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len <= 5 || strcmp(e->d_name + len - 5, ".yaml") != 0)
      continue;
    names = realloc(names, (size_t)(n + 1) * sizeof *names);
    if (names == NULL || (names[n] = strdup(e->d_name)) == NULL)
      abort();
    n++;
  }
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_names);
  *count = n;
  return names;
}

/* The shortest decimal that reads back as v exactly, without an exponent
 * for the magnitudes a config holds ("1000", not "1e+03"). */
static void fmt_double(char *buf, size_t size, double v) {
  int plain = v == 0 || (fabs(v) >= 1e-4 && fabs(v) < 1e15);
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, v);
    if (strtod(buf, NULL) == v && !(plain && strchr(buf, 'e') != NULL))
      return;
  }
}

static const char *level_name(enum tl_config_log_level l) {
  switch (l) {
  case TL_CONFIG_LOG_ERROR: return "error";
  case TL_CONFIG_LOG_WARNING: return "warning";
  case TL_CONFIG_LOG_INFO: return "info";
  case TL_CONFIG_LOG_DEBUG: return "debug";
  }
  return "?";
}

/* Every value of cfg, "key = value" a line, in the order of
 * configs/tailord.yaml; absent strings read "(none)". */
static void dump(const struct tl_config *c, struct text *t) {
  char a[64];
#define STR(s) ((s) != NULL ? (s) : "(none)")
#define NUM(v) (fmt_double(a, sizeof a, (v)), a)
  text_addf(t, "socket.path = %s\n", STR(c->socket.path));
  text_addf(t, "socket.mode = 0%o\n", c->socket.mode);
  text_addf(t, "database = %s\n", STR(c->database));
  text_addf(t, "workers = %d\n", c->workers);
  text_addf(t, "threads = %d\n", c->threads);
  text_addf(t, "log_level = %s\n", level_name(c->log_level));
  text_addf(t, "monitor.interval_ms = %d\n", c->monitor.interval_ms);
  text_addf(t, "monitor.root = %s\n", STR(c->monitor.root));
  text_addf(t, "limits.max_connections = %d\n", c->limits.max_connections);
  text_addf(t, "limits.max_header_bytes = %zu\n", c->limits.max_header_bytes);
  text_addf(t, "limits.max_body_bytes = %zu\n", c->limits.max_body_bytes);
  text_addf(t, "limits.idle_timeout_ms = %d\n", c->limits.idle_timeout_ms);
  text_addf(t, "limits.request_timeout_ms = %d\n", c->limits.request_timeout_ms);
  text_addf(t, "limits.queue_depth = %d\n", c->limits.queue_depth);
  for (int i = 0; i < c->n_models; i++) {
    const struct tl_config_model *m = &c->models[i];
    text_addf(t, "models[%d].name = %s\n", i, STR(m->name));
    text_addf(t, "models[%d].path = %s\n", i, STR(m->path));
    text_addf(t, "models[%d].calibration.x = %s\n", i, STR(m->calibration.x));
    text_addf(t, "models[%d].calibration.y = %s\n", i, STR(m->calibration.y));
    text_addf(t, "models[%d].calibration.scale = %s\n", i, NUM(m->calibration.scale));
    text_addf(t, "models[%d].space.widths =", i);
    for (int k = 0; k < m->space.widths.n; k++)
      text_addf(t, " %s", NUM(m->space.widths.v[k]));
    text_addf(t, "\n");
    text_addf(t, "models[%d].space.resolution_steps = %d\n", i, m->space.resolution_steps);
    text_addf(t, "models[%d].search.k = %d\n", i, m->search.k);
    text_addf(t, "models[%d].search.threads = %d\n", i, m->search.threads);
    text_addf(t, "models[%d].search.time_budget_s = %s\n", i, NUM(m->search.time_budget_s));
    text_addf(t, "models[%d].budget.latency_p95_ms = %s\n", i, NUM(m->budget.latency_p95_ms));
    text_addf(t, "models[%d].budget.memory_mib = %d\n", i, m->budget.memory_mib);
    text_addf(t, "models[%d].budget.min_accuracy = %s\n", i, NUM(m->budget.min_accuracy));
    text_addf(t, "models[%d].budget.margin = %s\n", i, NUM(m->budget.margin));
    text_addf(t, "models[%d].budget.hysteresis_ms = %d\n", i, m->budget.hysteresis_ms);
  }
#undef STR
#undef NUM
}

/* A config pointer no load may write on failure. */
static struct tl_config sentinel_cfg;
#define SENTINEL (&sentinel_cfg)

/* ----------------------------------------------------------- tmp dirs */

/* ------------------------------------------------------------- corpora */

START_TEST(bad_config_reports_exactly_its_expected_errors) {
  const char *name = bad_names[_i];
  ck_assert_int_eq(chdir(bad_dir), 0);
  struct text got = {0};
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  int rc = tl_config_load_report(name, &cfg, collect, &got, &err);
  char *want = read_expect(bad_dir, name);
  ck_assert_msg(strcmp(text_str(&got), want) == 0, "%s reported:\n%s--- but expected:\n%s", name,
                text_str(&got), want);
  ck_assert_int_eq(rc, TL_EFORMAT);
  ck_assert_ptr_eq(cfg, SENTINEL);
  /* err starts with the first line */
  size_t first = strcspn(want, "\n");
  ck_assert_int_eq(strncmp(err.msg, want, first < TL_ERROR_MAX - 1 ? first : TL_ERROR_MAX - 1), 0);
  free(want);
  free(got.s);
}
END_TEST

START_TEST(good_config_loads_with_exactly_its_expected_values) {
  const char *name = good_names[_i];
  ck_assert_int_eq(chdir(good_dir), 0);
  struct text got = {0}, values = {0};
  struct tl_config *cfg = NULL;
  struct tl_error err = {{0}};
  int rc = tl_config_load_report(name, &cfg, collect, &got, &err);
  ck_assert_msg(rc == 0, "%s: %s\n%s", name, tl_strerror(rc), text_str(&got));
  ck_assert_ptr_null(got.s); /* nothing reported */
  ck_assert_str_eq(cfg->file, name);
  dump(cfg, &values);
  char *want = read_expect(good_dir, name);
  ck_assert_msg(strcmp(text_str(&values), want) == 0, "%s loaded as:\n%s--- but expected:\n%s",
                name, text_str(&values), want);

  /* the same file by its absolute path gives the same values */
  char abs[PATH_MAX * 2];
  snprintf(abs, sizeof abs, "%s/%s", good_dir, name);
  struct tl_config *again = NULL;
  ck_assert_int_eq(tl_config_load(abs, &again, &err), 0);
  struct text values2 = {0};
  dump(again, &values2);
  ck_assert_str_eq(text_str(&values2), text_str(&values));
  ck_assert_str_eq(again->file, abs);

  tl_config_free(again);
  tl_config_free(cfg);
  free(want);
  free(values.s);
  free(values2.s);
}
END_TEST

/* ------------------------------------------------------ tailord.yaml */

/* configs/tailord.yaml with its /usr/share/tailor/ files made in the
 * test's directory, loaded from there. */
static struct tl_config *load_shipped_config(void) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/configs/tailord.yaml", src_root);
  char *text = read_text(path);
  char prefix[PATH_MAX + 2];
  snprintf(prefix, sizeof prefix, "%s/", tu_tmpdir());
  char *moved = replace_all(text, "/usr/share/tailor/", prefix);
  ck_assert_int_eq(mkdir(tu_tmp_path("models"), 0700), 0);
  ck_assert_int_eq(mkdir(tu_tmp_path("data"), 0700), 0);
  write_text(tu_tmp_path("models/fmnist.onnx"), "");
  write_text(tu_tmp_path("data/fmnist-calib-x.npy"), "");
  write_text(tu_tmp_path("data/fmnist-calib-y.npy"), "");
  write_text(tu_tmp_path("tailord.yaml"), moved);
  struct text got = {0};
  struct tl_config *cfg = NULL;
  int rc = tl_config_load_report(tu_tmp_path("tailord.yaml"), &cfg, collect, &got, NULL);
  ck_assert_msg(rc == 0, "configs/tailord.yaml: %s\n%s", tl_strerror(rc), text_str(&got));
  free(text);
  free(moved);
  return cfg;
}

START_TEST(shipped_config_loads_with_its_example_model) {
  struct tl_config *cfg = load_shipped_config();
  ck_assert_int_eq(cfg->n_models, 1);
  const struct tl_config_model *m = &cfg->models[0];
  ck_assert_str_eq(m->name, "fmnist");
  char want[PATH_MAX * 2];
  snprintf(want, sizeof want, "%s/models/fmnist.onnx", tu_tmpdir());
  ck_assert_str_eq(m->path, want);
  snprintf(want, sizeof want, "%s/data/fmnist-calib-x.npy", tu_tmpdir());
  ck_assert_str_eq(m->calibration.x, want);
  snprintf(want, sizeof want, "%s/data/fmnist-calib-y.npy", tu_tmpdir());
  ck_assert_str_eq(m->calibration.y, want);
  ck_assert(m->calibration.scale == 1.0 / 255);
  ck_assert(m->budget.latency_p95_ms == 8.0);
  ck_assert_int_eq(m->budget.memory_mib, 64);
  ck_assert(m->budget.min_accuracy == 0.85);
  tl_config_free(cfg);
}
END_TEST

/* Every value the shipped config writes out, other than the example
 * model's own, is the loader's default: the comments' "Default:" and the
 * loader cannot drift apart. */
START_TEST(shipped_config_values_are_the_loader_defaults) {
  struct tl_config *cfg = load_shipped_config();
  struct tl_config *def = NULL;
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/minimal.yaml", good_dir);
  ck_assert_int_eq(tl_config_load(path, &def, NULL), 0);
  /* the example model's own values, set to the defaults' to compare */
  struct tl_config_model *m = &cfg->models[0], *d = &def->models[0];
  char *keep[4] = {m->name, m->path, m->calibration.x, m->calibration.y};
  m->name = d->name;
  m->path = d->path;
  m->calibration.x = d->calibration.x;
  m->calibration.y = d->calibration.y;
  m->budget.latency_p95_ms = d->budget.latency_p95_ms;
  m->budget.memory_mib = d->budget.memory_mib;
  m->budget.min_accuracy = d->budget.min_accuracy;
  struct text a = {0}, b = {0};
  dump(cfg, &a);
  dump(def, &b);
  ck_assert_str_eq(text_str(&a), text_str(&b));
  m->name = keep[0];
  m->path = keep[1];
  m->calibration.x = keep[2];
  m->calibration.y = keep[3];
  tl_config_free(cfg);
  tl_config_free(def);
  free(a.s);
  free(b.s);
}
END_TEST

/* Each key line of the shipped config follows a comment line, and every
 * key of the schema is there (39 of them). */
START_TEST(shipped_config_comments_every_key) {
  char path[PATH_MAX * 2];
  snprintf(path, sizeof path, "%s/configs/tailord.yaml", src_root);
  char *text = read_text(path);
  int keys = 0, line_no = 0, prev_comment = 0;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    line_no++;
    const char *p = line + strspn(line, " ");
    int comment = *p == '#';
    if (strncmp(p, "- ", 2) == 0)
      p += 2;
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
    if (n > 0 && p[n] == ':') {
      keys++;
      ck_assert_msg(prev_comment, "configs/tailord.yaml: key \"%.*s\" has no comment above it",
                    (int)n, p);
    }
    prev_comment = comment;
  }
  ck_assert_int_eq(keys, 39);
  free(text);
}
END_TEST

/* ------------------------------------------------------ reading files */

START_TEST(missing_config_file_is_enoent_reported_in_one_line) {
  struct text got = {0};
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  const char *path = tu_tmp_path("nothing-here.yaml");
  ck_assert_int_eq(tl_config_load_report(path, &cfg, collect, &got, &err), TL_ENOENT);
  char want[PATH_MAX * 3];
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
  ck_assert_str_eq(err.msg, want);
  strcat(want, "\n");
  ck_assert_str_eq(text_str(&got), want);
  ck_assert_ptr_eq(cfg, SENTINEL);
  free(got.s);
}
END_TEST

START_TEST(directory_as_config_file_is_eio) {
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_config_load(tu_tmpdir(), &cfg, &err), TL_EIO);
  char want[PATH_MAX * 2];
  snprintf(want, sizeof want, "%s: cannot read: Is a directory", tu_tmpdir());
  ck_assert_str_eq(err.msg, want);
  ck_assert_ptr_eq(cfg, SENTINEL);
}
END_TEST

START_TEST(config_over_one_mib_is_refused) {
  FILE *f = fopen(tu_tmp_path("big.yaml"), "wb");
  ck_assert_ptr_nonnull(f);
  for (int i = 0; i < (1 << 20) / 8 + 1; i++)
    fputs("#######\n", f);
  ck_assert_int_eq(fclose(f), 0);
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_config_load(tu_tmp_path("big.yaml"), &cfg, &err), TL_EFORMAT);
  char want[PATH_MAX * 2];
  snprintf(want, sizeof want, "%s: larger than 1048576 bytes; a config is a few kilobytes",
           tu_tmp_path("big.yaml"));
  ck_assert_str_eq(err.msg, want);
  ck_assert_ptr_eq(cfg, SENTINEL);
}
END_TEST

/* Relative paths follow the directory the config is named in, not the one
 * a symlink to it points into. */
START_TEST(relative_paths_resolve_against_the_symlinks_directory) {
  char target[PATH_MAX * 2];
  snprintf(target, sizeof target, "%s/minimal.yaml", good_dir);
  ck_assert_int_eq(symlink(target, tu_tmp_path("link.yaml")), 0);
  struct text got = {0};
  struct tl_config *cfg = SENTINEL;
  ck_assert_int_eq(tl_config_load_report(tu_tmp_path("link.yaml"), &cfg, collect, &got, NULL),
                   TL_EFORMAT);
  char want[PATH_MAX * 4];
  snprintf(want, sizeof want,
           "%s/link.yaml:5:11: models[0].path: cannot open \"%s/../files/model.onnx\": "
           "No such file or directory\n",
           tu_tmpdir(), tu_tmpdir());
  ck_assert_str_eq(text_str(&got), want);
  ck_assert_ptr_eq(cfg, SENTINEL);
  free(got.s);
}
END_TEST

/* A FIFO named as a model must be refused, not waited on. */
START_TEST(fifo_as_model_file_is_refused_without_blocking) {
  ck_assert_int_eq(mkfifo(tu_tmp_path("model.onnx"), 0600), 0);
  write_text(tu_tmp_path("c.yaml"), "models:\n"
                                    "  - name: m\n"
                                    "    path: model.onnx\n"
                                    "    budget: {latency_p95_ms: 1}\n");
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_config_load(tu_tmp_path("c.yaml"), &cfg, &err), TL_EFORMAT);
  char want[PATH_MAX * 4];
  snprintf(want, sizeof want,
           "%s/c.yaml:3:11: models[0].path: \"%s/model.onnx\" is not a "
           "regular file",
           tu_tmpdir(), tu_tmpdir());
  ck_assert_str_eq(err.msg, want);
  ck_assert_ptr_eq(cfg, SENTINEL);
}
END_TEST

/* ------------------------------------------------------------- the API */

START_TEST(error_summary_is_the_first_line_and_the_count_of_the_rest) {
  ck_assert_int_eq(chdir(bad_dir), 0);
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  /* one error: the line as it is */
  ck_assert_int_eq(tl_config_load("bad_unknown_key.yaml", &cfg, &err), TL_EFORMAT);
  ck_assert_str_eq(err.msg, "bad_unknown_key.yaml:7:5: unknown key \"latncy_ms\" in "
                            "models[0].budget (did you mean \"latency_p95_ms\"?)");
  /* several: the first and how many more, counted from the .expect */
  char *want = read_expect(bad_dir, "bad_types.yaml");
  int lines = 0;
  for (const char *p = want; *p != '\0'; p++)
    lines += *p == '\n';
  ck_assert_int_gt(lines, 2);
  char summary[TL_ERROR_MAX * 2];
  snprintf(summary, sizeof summary, "%.*s (and %d more errors)", (int)strcspn(want, "\n"), want,
           lines - 1);
  ck_assert_int_eq(tl_config_load("bad_types.yaml", &cfg, &err), TL_EFORMAT);
  ck_assert_str_eq(err.msg, summary);
  ck_assert_ptr_eq(cfg, SENTINEL);
  /* NULL err is allowed */
  ck_assert_int_eq(tl_config_load("bad_types.yaml", &cfg, NULL), TL_EFORMAT);
  free(want);
}
END_TEST

START_TEST(null_arguments_are_einval_and_report_nothing) {
  struct text got = {0};
  struct tl_config *cfg = SENTINEL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_config_load_report(NULL, &cfg, collect, &got, &err), TL_EINVAL);
  ck_assert_int_eq(tl_config_load_report("x.yaml", NULL, collect, &got, &err), TL_EINVAL);
  ck_assert_ptr_null(got.s);
  ck_assert_ptr_eq(cfg, SENTINEL);
  ck_assert_str_eq(err.msg, "tl_config_load: path and out must not be NULL");
  tl_config_free(NULL);
}
END_TEST

/* Makes the n-th allocation of a load fail, for n = 0, 1, ... until the
 * load gets through: each failing load must return TL_ENOMEM, say so in
 * one line and leave *out alone (and leak nothing: the sanitizer and
 * valgrind runs check that); the load that gets through must give the
 * normal result. */
static void walk_allocation_failures(const char *dir, const char *name, int want_rc) {
  ck_assert_int_eq(chdir(dir), 0);
  char *want = read_expect(dir, name);
  char oom[PATH_MAX];
  snprintf(oom, sizeof oom, "%s: out of memory while loading the config\n", name);
  long n = 0;
  for (;; n++) {
    ck_assert_int_lt(n, 100000);
    struct text got = {0};
    struct tl_config *cfg = SENTINEL;
    tl__config_fail_alloc_after(n);
    int rc = tl_config_load_report(name, &cfg, collect, &got, NULL);
    tl__config_fail_alloc_after(-1);
    if (rc == TL_ENOMEM) {
      ck_assert_ptr_eq(cfg, SENTINEL);
      ck_assert_str_eq(text_str(&got), oom);
      free(got.s);
      continue;
    }
    ck_assert_int_eq(rc, want_rc);
    if (rc == 0) {
      struct text values = {0};
      dump(cfg, &values);
      ck_assert_str_eq(text_str(&values), want);
      free(values.s);
      tl_config_free(cfg);
    } else {
      ck_assert_ptr_eq(cfg, SENTINEL);
      ck_assert_str_eq(text_str(&got), want);
    }
    free(got.s);
    break;
  }
  /* the walk went through many allocation points, not just the first */
  ck_assert_int_gt(n, 10);
  free(want);
}

START_TEST(allocation_failures_in_a_good_load_are_enomem) {
  walk_allocation_failures(good_dir, "full.yaml", 0);
}
END_TEST

START_TEST(allocation_failures_in_a_bad_load_are_enomem) {
  walk_allocation_failures(bad_dir, "bad_many.yaml", TL_EFORMAT);
}
END_TEST

/* ---------------------------------------------------------------- main */

static Suite *config_suite(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("corpus");
  tcase_add_loop_test(tc, bad_config_reports_exactly_its_expected_errors, 0, n_bad);
  tcase_add_loop_test(tc, good_config_loads_with_exactly_its_expected_values, 0, n_good);
  suite_add_tcase(s, tc);

  tc = tcase_create("shipped");
  tu_add_tmpdir(tc, "config");
  tcase_add_test(tc, shipped_config_loads_with_its_example_model);
  tcase_add_test(tc, shipped_config_values_are_the_loader_defaults);
  tcase_add_test(tc, shipped_config_comments_every_key);
  suite_add_tcase(s, tc);

  tc = tcase_create("files");
  tu_add_tmpdir(tc, "config");
  tcase_add_test(tc, missing_config_file_is_enoent_reported_in_one_line);
  tcase_add_test(tc, directory_as_config_file_is_eio);
  tcase_add_test(tc, config_over_one_mib_is_refused);
  tcase_add_test(tc, relative_paths_resolve_against_the_symlinks_directory);
  tcase_add_test(tc, fifo_as_model_file_is_refused_without_blocking);
  suite_add_tcase(s, tc);

  tc = tcase_create("api");
  tcase_add_test(tc, error_summary_is_the_first_line_and_the_count_of_the_rest);
  tcase_add_test(tc, null_arguments_are_einval_and_report_nothing);
  tcase_add_test(tc, allocation_failures_in_a_good_load_are_enomem);
  tcase_add_test(tc, allocation_failures_in_a_bad_load_are_enomem);
  suite_add_tcase(s, tc);
  return s;
}

/* The canonical form of src_root/rel into out; aborts when missing. */
static void corpus_dir(const char *rel, char *out) {
  char p[PATH_MAX * 2];
  snprintf(p, sizeof p, "%s/%s", src_root, rel);
  if (realpath(p, out) == NULL) {
    fprintf(stderr, "%s: %s\n", p, strerror(errno));
    abort();
  }
}

int main(void) {
  /* absolute, since tests chdir() into the corpora */
  const char *src = getenv("TAILOR_SOURCE_ROOT");
  if (realpath(src != NULL ? src : ".", src_root) == NULL) {
    fprintf(stderr, "%s: %s\n", src != NULL ? src : ".", strerror(errno));
    return 1;
  }
  corpus_dir("tests/data/configs/bad", bad_dir);
  corpus_dir("tests/data/configs/good", good_dir);
  bad_names = list_yaml(bad_dir, &n_bad);
  good_names = list_yaml(good_dir, &n_good);
  if (n_bad == 0 || n_good == 0) {
    fprintf(stderr, "test_config: empty corpus under %s\n", src_root);
    return 1;
  }
  int failed = tu_run(config_suite());
  for (int i = 0; i < n_bad; i++)
    free(bad_names[i]);
  for (int i = 0; i < n_good; i++)
    free(good_names[i]);
  free(bad_names);
  free(good_names);
  return failed ? 1 : 0;
}
