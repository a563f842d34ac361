/*
 * monitor.c - reading the device state from /proc and /sys: opening the
 * monitor, one sample made of what each room reads, and the sample as
 * JSON.  The rooms: monitor_read.c reads and parses files,
 * monitor_cpu.c the CPUs and load, monitor_mem.c memory and pressure,
 * monitor_cgroup.c the service's cgroup.
 *
 * The invariant of the parsers: a field is set, and its has_ flag raised,
 * only after its whole file has been read and its text matched the kernel's
 * format exactly; anything else leaves it unknown.  Nothing here allocates
 * after tl_monitor_open().
 */
#include "monitor_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"

/* ------------------------------------------------------------- derived */

/* cpu_share, by the formula in monitor.h. */
static void derive_cpu_share(const struct tl_monitor *m, struct tl_device_state *s) {
  if (!s->has_online_cpus || !s->has_cpu_busy)
    return;
  double n = s->online_cpus, threads = m->threads;
  double others = s->cpu_busy - (s->has_cpu_self ? s->cpu_self : 0);
  others = others > 0 ? others * n : 0;
  double share = fmin(1.0, n / (threads + others));
  s->cpu_share_load = share;
  if (s->has_cgroup_cpu && !s->cgroup_cpu_unlimited)
    share = fmin(share, s->cgroup_cpu_quota_cores / threads);
  s->has_cpu_share = true;
  s->cpu_share = share;
  s->cpu_share_threads = m->threads;
}

/* ----------------------------------------------------------------- API */

int tl_monitor_open(const char *root, struct tl_monitor **out, struct tl_error *err) {
  if (root == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "monitor: root and out must not be NULL");
  int rc;
  struct tl_monitor *m = calloc(1, sizeof *m);
  if (m == NULL)
    return tl_fail(err, TL_ENOMEM, "monitor root \"%s\": out of memory", root);
  m->root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (m->root_fd < 0) {
    int e = errno;
    rc = e == ENOENT ? TL_ENOENT : e == ENOTDIR ? TL_EINVAL : TL_EIO;
    tl_fail(err, rc, "monitor root \"%s\": %s", root,
            e == ENOTDIR ? "not a directory" : strerror(e));
    goto fail;
  }
  struct stat st, slash;
  if (fstat(m->root_fd, &st) < 0) {
    rc = tl_fail(err, TL_EIO, "monitor root \"%s\": %s", root, strerror(errno));
    goto fail_fd;
  }
  /* Comparing inodes also recognises "//" or "/proc/.." as the real root. */
  m->real_root = stat("/", &slash) == 0 && st.st_dev == slash.st_dev && st.st_ino == slash.st_ino;
  m->threads = 1;
  *out = m;
  return 0;

fail_fd:
  tl__monitor_close_fd(m->root_fd);
fail:
  free(m);
  return rc;
}

int tl_monitor_set_threads(struct tl_monitor *m, int threads, struct tl_error *err) {
  assert(m != NULL);
  if (threads < 1 || threads > MAX_CPUS)
    return tl_fail(err, TL_EINVAL, "monitor: %d threads; the number must be 1 to %d", threads,
                   MAX_CPUS);
  m->threads = threads;
  return 0;
}

void tl_monitor_sample(struct tl_monitor *m, struct tl_device_state *out) {
  assert(m != NULL && out != NULL);
  struct tl_device_state s;
  memset(&s, 0, sizeof s);
  s.monotonic_ns = tl_now_ns();

  tl__monitor_sample_online(m, &s);
  tl__monitor_sample_freq(m, &s);
  tl__monitor_sample_stat(m, &s);
  tl__monitor_sample_loadavg(m, &s);
  tl__monitor_sample_meminfo(m, &s);
  tl__monitor_sample_cgroup(m, &s);
  s.has_psi_cpu = tl__monitor_read_psi(m, "proc/pressure/cpu", &s.psi_cpu_some_avg10);
  s.has_psi_mem = tl__monitor_read_psi(m, "proc/pressure/memory", &s.psi_mem_some_avg10);
  if (!s.has_psi_cpu)
    s.psi_cpu_some_avg10 = 0;
  if (!s.has_psi_mem)
    s.psi_mem_some_avg10 = 0;
  tl__monitor_sample_run_delay(m, &s);
  derive_cpu_share(m, &s);
  *out = s;
}

void tl_monitor_close(struct tl_monitor *m) {
  if (m == NULL)
    return;
  tl__monitor_close_fd(m->root_fd);
  free(m);
}

/* ---------------------------------------------------------------- JSON */

struct json_out {
  char *buf;
  size_t len;
  size_t pos; /* length so far, also past len */
};

static void json_printf(struct json_out *j, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void json_printf(struct json_out *j, const char *fmt, ...) {
  char *dst = j->pos < j->len ? j->buf + j->pos : NULL;
  size_t room = j->pos < j->len ? j->len - j->pos : 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(dst, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    j->pos += (size_t)n;
}

/* %.10g keeps kHz whole ("2400000") and shares short ("0.625"); a number
 * JSON cannot hold (inf, nan) is left out rather than written. */
static void json_double(struct json_out *j, bool known, const char *key, double v) {
  if (known && isfinite(v))
    json_printf(j, ",\"%s\":%.10g", key, v);
}

static void json_u64(struct json_out *j, bool known, const char *key, uint64_t v) {
  if (known)
    json_printf(j, ",\"%s\":%llu", key, (unsigned long long)v);
}

size_t tl_device_state_format(const struct tl_device_state *s, char *buf, size_t len) {
  assert(s != NULL && (buf != NULL || len == 0));
  struct json_out j = {buf, len, 0};
  json_printf(&j, "{\"monotonic_ns\":%llu", (unsigned long long)s->monotonic_ns);
  if (s->has_online_cpus)
    json_printf(&j, ",\"online_cpus\":%d", s->online_cpus);
  json_double(&j, s->has_freq, "freq_cur_khz", s->freq_cur_khz);
  json_double(&j, s->has_freq, "freq_max_khz", s->freq_max_khz);
  json_double(&j, s->has_freq, "freq_ratio", s->freq_ratio);
  json_double(&j, s->has_cpu_busy, "cpu_busy", s->cpu_busy);
  json_double(&j, s->has_cpu_self, "cpu_self", s->cpu_self);
  json_u64(&j, s->has_procs_running, "procs_running", s->procs_running);
  json_double(&j, s->has_load1, "load1", s->load1);
  json_u64(&j, s->has_mem_total, "mem_total_bytes", s->mem_total_bytes);
  json_u64(&j, s->has_mem_available, "mem_available_bytes", s->mem_available_bytes);
  if (s->has_cgroup_cpu && s->cgroup_cpu_unlimited)
    json_printf(&j, ",\"cgroup_cpu_quota_cores\":\"max\"");
  else
    json_double(&j, s->has_cgroup_cpu, "cgroup_cpu_quota_cores", s->cgroup_cpu_quota_cores);
  if (s->has_cgroup_mem_max && s->cgroup_mem_unlimited)
    json_printf(&j, ",\"cgroup_mem_max_bytes\":\"max\"");
  else
    json_u64(&j, s->has_cgroup_mem_max, "cgroup_mem_max_bytes", s->cgroup_mem_max_bytes);
  json_u64(&j, s->has_cgroup_mem_current, "cgroup_mem_current_bytes", s->cgroup_mem_current_bytes);
  json_double(&j, s->has_psi_cpu, "psi_cpu_some_avg10", s->psi_cpu_some_avg10);
  json_double(&j, s->has_psi_mem, "psi_mem_some_avg10", s->psi_mem_some_avg10);
  json_u64(&j, s->has_run_delay, "run_delay_ns", s->run_delay_ns);
  json_double(&j, s->has_cpu_share, "cpu_share", s->cpu_share);
  json_double(&j, s->has_cpu_share, "cpu_share_load", s->cpu_share_load);
  if (s->has_cpu_share)
    json_printf(&j, ",\"cpu_share_threads\":%d", s->cpu_share_threads);
  json_printf(&j, "}");
  return j.pos;
}
