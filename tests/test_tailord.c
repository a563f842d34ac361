/*
 * test_tailord.c - the real tailord binary driven over its Unix socket,
 * and tailorctl against it.  The areas are in tests/tailord/, one TCase
 * each, over a shared harness (tests/tailord/harness.h):
 *
 *   serve.c      start-up, health, metadata, inference, refusals, metrics,
 *                pinning
 *   swap.c       hot swaps under load, pipelining, adaptation to the CPU's
 *                frequency
 *   lifecycle.c  reloads, limits, slow clients, SIGTERM, `tailord -n`
 *   tailorctl.c  tailorctl's commands against the routes they front
 *   control.c    events, the controller's feedback, infeasible budgets,
 *                shedding, a CPU quota
 *   faults.c     the cache's disk full or read-only under a serving daemon
 *                and at start
 *
 * Each test starts its own daemon in a directory of its own, with a config
 * written by the harness, a fake /proc and /sys tree (monitor.root) whose
 * CPU frequency the test sets, and a socket; the daemon dies with the test
 * (PR_SET_PDEATHSIG) if the test fails first.  All of them share one
 * cache, made here in main() by a first start that searches the frontier
 * (on 200 calibration images and a small space, so it takes seconds);
 * every later start finds the frontier there.
 *
 * Timing: nothing is asserted about how fast anything is, except generous
 * deadlines for things to happen at all.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"
#include "testutil.h"
#include "tailord/harness.h"

/* What harness.h declares; main() fills them before any test runs. */
char source_root[PATH_MAX], build_root[PATH_MAX], tailord_bin[PATH_MAX + 32];
char tailorctl_bin[PATH_MAX + 32];
char base_dir[PATH_MAX];
char calib_x[PATH_MAX + 32], calib_y[PATH_MAX + 32], shared_db[PATH_MAX + 32];
uint8_t images[N_IMAGES][784];
int64_t labels[N_IMAGES];
struct warm_start warm;

/* The first start: ready at once with a provisional frontier, then the
 * searched one; fills `warm` and the shared cache. */
static void warm_up(void) {
  struct opts o;
  opts_default(&o);
  struct daemon d;
  memset(&d, 0, sizeof d);
  snprintf(d.dir, sizeof d.dir, "%s/warm", base_dir);
  if (mkdir(d.dir, 0700) != 0) {
    snprintf(warm.why, sizeof warm.why, "%s: %s", d.dir, strerror(errno));
    return;
  }
  snprintf(d.sock, sizeof d.sock, "%s/s.sock", d.dir);
  snprintf(d.cfg, sizeof d.cfg, "%s/tailord.yaml", d.dir);
  snprintf(d.log, sizeof d.log, "%s/stderr.log", d.dir);
  snprintf(d.root, sizeof d.root, "%s/root", d.dir);
  char text[4096];
  config_text(&d, &o, shared_db, text, sizeof text);
  if (fake_tree(d.root) != 0 || write_file(d.cfg, text) != 0) {
    snprintf(warm.why, sizeof warm.why, "cannot write %s", d.cfg);
    return;
  }
  const char *argv[] = {tailord_bin, "--config", d.cfg, NULL};
  d.pid = spawn(d.log, argv);
  double t0 = now_s();
  for (;;) {
    int status = 0;
    json_t *s = get_json(d.sock, "/v2/models/fmnist/subnets", &status);
    if (status == 200) {
      int provisional = json_is_true(json_object_get(s, "provisional"));
      int partial = json_is_true(json_object_get(s, "partial"));
      json_t *list = json_object_get(s, "subnets");
      if (provisional) {
        warm.provisional_seen = json_array_size(list) == 2;
      } else if (partial) {
        warm.partial_seen = 1;
      } else {
        warm.n = (int)json_array_size(list);
        for (int i = 0; i < warm.n && i < 64; i++) {
          json_t *e = json_array_get(list, (size_t)i);
          warm.ms[i] = json_number_value(json_object_get(e, "predicted_ms"));
          warm.acc[i] = json_number_value(json_object_get(e, "accuracy"));
          snprintf(warm.spec[i], sizeof warm.spec[i], "%s",
                   json_string_value(json_object_get(e, "subnet")));
        }
        json_decref(s);
        break;
      }
    }
    json_decref(s);
    int st;
    if (waitpid(d.pid, &st, WNOHANG) == d.pid || now_s() - t0 > wait_s(SEARCH_DEADLINE_S)) {
      char *log = read_text(d.log);
      snprintf(warm.why, sizeof warm.why, "no searched frontier; log:\n%s", log);
      free(log);
      kill(d.pid, SIGKILL);
      waitpid(d.pid, &st, 0);
      return;
    }
    sleep_ms(100);
  }
  warm.search_wait_s = now_s() - t0;
  kill(d.pid, SIGTERM);
  int rc = wait_exit(d.pid, 120);
  if (rc != 0) {
    char *log = read_text(d.log);
    snprintf(warm.why, sizeof warm.why, "the first start exited with %d; log:\n%s", rc, log);
    free(log);
    return;
  }
  fprintf(stderr, "test_tailord: first start searched a frontier of %d subnets in %.1f s\n", warm.n,
          warm.search_wait_s);
  warm.ok = 1;
}

static Suite *tailord_suite(void) {
  Suite *s = suite_create("tailord");
  suite_add_tcase(s, tailord_serve_case());
  suite_add_tcase(s, tailord_swap_case());
  suite_add_tcase(s, tailord_lifecycle_case());
  suite_add_tcase(s, tailord_tailorctl_case());
  suite_add_tcase(s, tailord_control_case());
  suite_add_tcase(s, tailord_faults_case());
  return s;
}

/* The first n images and labels of the calibration data: the test's own
 * smaller calibration set, and the images the tests send. */
static int make_calibration(const char *full_x, const char *full_y) {
  struct tl_tensor x, y;
  struct tl_error err = {{0}};
  if (tl_npy_read(full_x, &x, &err) != 0 || tl_npy_read(full_y, &y, &err) != 0) {
    fprintf(stderr, "test_tailord: %s\n", err.msg);
    return -1;
  }
  if (x.dtype != TL_DTYPE_UINT8 || x.shape.ndim != 4 || x.shape.dims[0] < CALIB_IMAGES ||
      x.shape.dims[1] * x.shape.dims[2] * x.shape.dims[3] != 784 || y.dtype != TL_DTYPE_INT64) {
    fprintf(stderr, "test_tailord: %s is not the Fashion-MNIST calibration set\n", full_x);
    return -1;
  }
  memcpy(images, x.data, sizeof images);
  memcpy(labels, y.data, sizeof labels);
  x.shape.dims[0] = CALIB_IMAGES;
  y.shape.dims[0] = CALIB_IMAGES;
  int rc = tl_npy_write(calib_x, &x, &err) == 0 && tl_npy_write(calib_y, &y, &err) == 0 ? 0 : -1;
  if (rc != 0)
    fprintf(stderr, "test_tailord: %s\n", err.msg);
  free(x.data);
  free(y.data);
  return rc;
}

int main(void) {
  if (tu_roots("tailord", source_root, build_root) != 0)
    return 1;
  snprintf(tailord_bin, sizeof tailord_bin, "%s/daemon/tailord", build_root);
  snprintf(tailorctl_bin, sizeof tailorctl_bin, "%s/tailorctl/tailorctl", build_root);
  if (access(tailord_bin, X_OK) != 0) {
    fprintf(stderr, "test_tailord: %s: %s (build it first)\n", tailord_bin, strerror(errno));
    return 1;
  }
  char full_x[PATH_MAX + 64], full_y[PATH_MAX + 64];
  snprintf(full_x, sizeof full_x, "%s/data/fmnist-calib-x.npy", build_root);
  snprintf(full_y, sizeof full_y, "%s/data/fmnist-calib-y.npy", build_root);
  struct stat sb;
  if (stat(full_y, &sb) != 0) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/scripts/make-calib.py' '%s/data'", source_root,
             build_root);
    if (system(cmd) != 0) {
      fprintf(stderr, "test_tailord: `%s` failed\n", cmd);
      return 1;
    }
  }
  snprintf(base_dir, sizeof base_dir, "/tmp/test_tailord.XXXXXX");
  if (mkdtemp(base_dir) == NULL) {
    perror("test_tailord: mkdtemp");
    return 1;
  }
  snprintf(calib_x, sizeof calib_x, "%s/calib-x.npy", base_dir);
  snprintf(calib_y, sizeof calib_y, "%s/calib-y.npy", base_dir);
  snprintf(shared_db, sizeof shared_db, "%s/cache/cache.db", base_dir);
  int failed = 1;
  if (make_calibration(full_x, full_y) == 0) {
    warm_up();
    failed = tu_run(tailord_suite());
  }
  char cmd[PATH_MAX + 32];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "test_tailord: cannot remove %s\n", base_dir);
  return failed ? 1 : 0;
}
