/*
 * test_systemd.c - systemd/tailord.service as systemd itself reads it:
 * `systemd-analyze verify` finds nothing wrong with the unit, and
 * `systemd-analyze security --offline=yes` rates its exposure at most 1.0.
 *
 * verify loads the unit with its dependencies and checks that every
 * command of ExecStartPre=, ExecStart= and ExecReload= is an executable
 * file; it does not look at their arguments (the config path).  So the
 * tests check a copy in a directory of their own whose /usr/bin/tailord is
 * the binary just built ($TAILOR_BUILD_ROOT/daemon/tailord); nothing else
 * differs from the source.  verify exits 0 after mere warnings (an unknown
 * key, a bad value: "tailord.service:12: Unknown key ..., ignoring"), so
 * its output is read too.  Each check is also run on a broken copy, to show
 * it would see the fault.
 *
 * systemd-analyze comes with Debian's `systemd` package (scripts/setup
 * installs it); the child runs it natively even under valgrind, which does
 * not follow exec.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* The rating the unit must keep (systemd-analyze says "OK" below 5.0,
 * "SAFE" below 2.0 on its 0-10 scale). */
#define EXPOSURE_MAX 1.0

static char source_unit[PATH_MAX + 32], tailord_bin[PATH_MAX + 32];

/* ------------------------------------------------------------- helpers */

static char *read_text(const char *path) { return (char *)tu_read_bytes(path, NULL); }

/* Text with every `from` replaced by `to`; malloc'd. */
static char *replace_all(const char *text, const char *from, const char *to) {
  size_t fl = strlen(from), tl = strlen(to), n = 0;
  for (const char *p = text; (p = strstr(p, from)) != NULL; p += fl)
    n++;
  char *out = malloc(strlen(text) + n * tl + 1);
  ck_assert_ptr_nonnull(out);
  char *o = out;
  for (const char *p = text, *q; *p != '\0'; p = q + fl) {
    q = strstr(p, from);
    if (q == NULL) {
      strcpy(o, p);
      return out;
    }
    memcpy(o, p, (size_t)(q - p));
    o += q - p;
    memcpy(o, to, tl);
    o += tl;
  }
  *o = '\0';
  return out;
}

/* Writes text as <the test's directory>/<sub>/tailord.service (the file's name is the
 * unit's name) and returns that path in path. */
static void write_unit(const char *sub, const char *text, char *path, size_t size) {
  char dir[PATH_MAX + 64];
  snprintf(dir, sizeof dir, "%s/%s", tu_tmpdir(), sub);
  ck_assert_msg(mkdir(dir, 0700) == 0 || errno == EEXIST, "%s: %s", dir, strerror(errno));
  snprintf(path, size, "%s/tailord.service", dir);
  FILE *f = fopen(path, "w");
  ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
  ck_assert_int_ge(fputs(text, f), 0);
  ck_assert_int_eq(fclose(f), 0);
}

/* The source unit with /usr/bin/tailord made the built binary; malloc'd. */
static char *unit_text(void) {
  char *src = read_text(source_unit);
  ck_assert_msg(strstr(src, "ExecStart=/usr/bin/tailord ") != NULL,
                "%s does not start /usr/bin/tailord", source_unit);
  char *text = replace_all(src, "/usr/bin/tailord", tailord_bin);
  free(src);
  return text;
}

struct result {
  int status;      /* exit status, or -1 if killed */
  char out[65536]; /* stdout and stderr together */
};

/* Runs systemd-analyze with args (NULL-terminated), without colours or a
 * pager, and captures what it prints. */
static void analyze(struct result *r, const char *const *args) {
  char out_path[PATH_MAX + 16];
  snprintf(out_path, sizeof out_path, "%s/output", tu_tmpdir());
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || dup2(o, 1) < 0 || dup2(o, 2) < 0)
      _exit(127);
    setenv("SYSTEMD_COLORS", "0", 1);
    setenv("SYSTEMD_PAGER", "", 1);
    const char *argv[16] = {"systemd-analyze"};
    for (int i = 0; args[i] != NULL && i < 14; i++)
      argv[i + 1] = args[i];
    execvp(argv[0], (char *const *)argv);
    dprintf(2, "systemd-analyze: %s (install the Debian package systemd)\n", strerror(errno));
    _exit(127);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  char *text = read_text(out_path);
  snprintf(r->out, sizeof r->out, "%s", text);
  free(text);
}

/* The first line of text that holds needle, or NULL. */
static const char *line_with(const char *text, const char *needle) {
  const char *p = strstr(text, needle);
  if (p == NULL)
    return NULL;
  while (p > text && p[-1] != '\n')
    p--;
  return p;
}

/* "Overall exposure level for tailord.service: X.Y ..." as X.Y, or -1. */
static double exposure(const char *text) {
  static const char key[] = "Overall exposure level for tailord.service: ";
  const char *p = strstr(text, key);
  if (p == NULL)
    return -1;
  char *end;
  double v = strtod(p + sizeof key - 1, &end);
  return end == p + sizeof key - 1 ? -1 : v;
}

/* --------------------------------------------------------------- tests */

START_TEST(verify_finds_nothing_wrong_with_the_unit) {
  char *text = unit_text();
  char path[PATH_MAX + 96];
  write_unit("good", text, path, sizeof path);
  free(text);
  struct result r;
  analyze(&r, (const char *[]){"verify", path, NULL});
  ck_assert_msg(r.status == 0, "systemd-analyze verify exited %d:\n%s", r.status, r.out);
  /* warnings do not change the exit status: none may name the unit */
  ck_assert_msg(line_with(r.out, "tailord.service") == NULL,
                "systemd-analyze verify warns about the unit:\n%s", r.out);
}
END_TEST

START_TEST(verify_sees_a_misspelt_key_and_a_missing_command) {
  /* what the test above would catch: a warning with exit status 0 ... */
  char *text = unit_text();
  char *typo = replace_all(text, "ProtectSystem=strict", "ProtectSytem=strict");
  char path[PATH_MAX + 96];
  write_unit("typo", typo, path, sizeof path);
  free(typo);
  struct result r;
  analyze(&r, (const char *[]){"verify", path, NULL});
  ck_assert_msg(r.status == 0, "exit status %d:\n%s", r.status, r.out);
  const char *l = line_with(r.out, "tailord.service");
  ck_assert_msg(l != NULL && strstr(l, "ProtectSytem") != NULL, "no warning in:\n%s", r.out);
  /* ... and the error of the source unit on a machine without tailord */
  char *missing = replace_all(text, tailord_bin, "/nonexistent/bin/tailord");
  write_unit("missing", missing, path, sizeof path);
  free(missing);
  analyze(&r, (const char *[]){"verify", path, NULL});
  ck_assert_msg(r.status != 0, "exit status 0:\n%s", r.out);
  l = line_with(r.out, "/nonexistent/bin/tailord");
  ck_assert_msg(l != NULL && strstr(l, "tailord.service") != NULL, "no error in:\n%s", r.out);
  free(text);
}
END_TEST

START_TEST(security_rates_the_unit_at_most_1_0) {
  char *text = unit_text();
  char path[PATH_MAX + 96];
  write_unit("good", text, path, sizeof path);
  free(text);
  struct result r;
  analyze(&r, (const char *[]){"security", "--offline=yes", "--no-pager", path, NULL});
  ck_assert_msg(r.status == 0, "systemd-analyze security exited %d:\n%s", r.status, r.out);
  double level = exposure(r.out);
  ck_assert_msg(level >= 0, "no overall exposure level in:\n%s", r.out);
  printf("systemd-analyze security --offline=yes: exposure %.1f (at most %.1f)\n", level,
         EXPOSURE_MAX);
  fflush(stdout);
  ck_assert_msg(level <= EXPOSURE_MAX, "exposure %.1f > %.1f:\n%s", level, EXPOSURE_MAX, r.out);
}
END_TEST

START_TEST(security_rates_an_unhardened_unit_above_1_0) {
  /* the same service without a line of hardening: the rating must see it */
  char text[PATH_MAX + 256];
  snprintf(text, sizeof text,
           "[Unit]\nDescription=tailor, unhardened\n\n[Service]\nType=notify\n"
           "ExecStart=%s --config /etc/tailor/tailord.yaml\n",
           tailord_bin);
  char path[PATH_MAX + 96];
  write_unit("bare", text, path, sizeof path);
  struct result r;
  analyze(&r, (const char *[]){"security", "--offline=yes", "--no-pager", path, NULL});
  ck_assert_msg(r.status == 0, "systemd-analyze security exited %d:\n%s", r.status, r.out);
  double level = exposure(r.out);
  ck_assert_msg(level > EXPOSURE_MAX, "exposure %.1f:\n%s", level, r.out);
}
END_TEST

/* --------------------------------------------------------------- main */

static Suite *systemd_suite(void) {
  Suite *s = suite_create("systemd");
  TCase *tc = tcase_create("unit");
  tu_add_tmpdir(tc, "systemd");
  tcase_add_test(tc, verify_finds_nothing_wrong_with_the_unit);
  tcase_add_test(tc, verify_sees_a_misspelt_key_and_a_missing_command);
  tcase_add_test(tc, security_rates_the_unit_at_most_1_0);
  tcase_add_test(tc, security_rates_an_unhardened_unit_above_1_0);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  char source_root[PATH_MAX], build_root[PATH_MAX];
  /* absolute paths: systemd wants an absolute ExecStart= */
  if (tu_roots("systemd", source_root, build_root) != 0)
    return 1;
  snprintf(source_unit, sizeof source_unit, "%s/systemd/tailord.service", source_root);
  snprintf(tailord_bin, sizeof tailord_bin, "%s/daemon/tailord", build_root);
  if (access(tailord_bin, X_OK) != 0) {
    fprintf(stderr, "test_systemd: %s: %s (build it first)\n", tailord_bin, strerror(errno));
    return 1;
  }
  int failures = tu_run(systemd_suite());
  return failures ? 1 : 0;
}
