/*
 * monitor_cpu.c - the CPUs: which are online, their frequency, how busy
 * they are and we are (/proc/stat), the load average, and the time our
 * threads wait to run.
 */
#include "monitor_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- CPUs */

static void cpu_set(uint64_t *bits, unsigned cpu) { bits[cpu / 64] |= UINT64_C(1) << (cpu % 64); }

static bool cpu_isset(const uint64_t *bits, unsigned cpu) {
  return (bits[cpu / 64] >> (cpu % 64)) & 1;
}

/* Parses a kernel CPU list ("0-3,6\n") into bits; returns how many CPUs it
 * names, or -1 (bits then cleared) when it is empty or malformed. */
static int parse_cpu_list(const char *s, uint64_t *bits) {
  memset(bits, 0, MAX_CPUS / 8);
  int count = 0;
  const char *p = s;
  for (;;) {
    uint64_t first, last;
    if (!tl__monitor_parse_u64(&p, &first))
      goto fail;
    last = first;
    if (*p == '-') {
      p++;
      if (!tl__monitor_parse_u64(&p, &last))
        goto fail;
    }
    if (first > last || last >= MAX_CPUS)
      goto fail;
    for (unsigned c = (unsigned)first; c <= (unsigned)last; c++) {
      if (!cpu_isset(bits, c))
        count++;
      cpu_set(bits, c);
    }
    if (*p != ',')
      break;
    p++;
  }
  if (!at_end(p))
    goto fail;
  return count;
fail:
  memset(bits, 0, MAX_CPUS / 8);
  return -1;
}

void tl__monitor_sample_online(struct tl_monitor *m, struct tl_device_state *s) {
  int n = -1;
  if (tl__monitor_read_small(m, "sys/devices/system/cpu/online"))
    n = parse_cpu_list(m->small, m->online);
  else
    memset(m->online, 0, sizeof m->online);
  /* Without the file, assume CPUs 0..n-1 as glibc does; only for the real
   * root, since a fake tree's CPUs are not this machine's. */
  if (n < 0 && m->real_root) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    if (c >= 1 && c <= MAX_CPUS) {
      n = (int)c;
      for (unsigned i = 0; i < (unsigned)c; i++)
        cpu_set(m->online, i);
    }
  }
  if (n >= 1) {
    s->has_online_cpus = true;
    s->online_cpus = n;
  }
}

/* Means over the online CPUs that have both cpufreq files; a CPU without
 * them (no cpufreq driver, as in most VMs) is left out. */
void tl__monitor_sample_freq(struct tl_monitor *m, struct tl_device_state *s) {
  double sum_cur = 0, sum_max = 0;
  int n = 0;
  for (unsigned c = 0; c < MAX_CPUS; c++) {
    if (!cpu_isset(m->online, c))
      continue;
    uint64_t cur, max;
    snprintf(m->rel, sizeof m->rel, "sys/devices/system/cpu/cpu%u/cpufreq/scaling_cur_freq", c);
    if (!tl__monitor_read_u64_file(m, m->rel, &cur))
      continue;
    snprintf(m->rel, sizeof m->rel, "sys/devices/system/cpu/cpu%u/cpufreq/cpuinfo_max_freq", c);
    if (!tl__monitor_read_u64_file(m, m->rel, &max) || max == 0)
      continue;
    sum_cur += (double)cur;
    sum_max += (double)max;
    n++;
  }
  if (n == 0)
    return;
  s->has_freq = true;
  s->freq_cur_khz = sum_cur / n;
  s->freq_max_khz = sum_max / n;
  s->freq_ratio = sum_cur / sum_max;
}

/* Parses the numbers after "cpu" on the aggregate line of /proc/stat into
 * busy and idle ticks.  Kernels since 2.6.33 print ten; at least the first
 * four (user nice system idle) must be there, and any beyond ten are
 * ignored. */
static bool parse_cpu_line(const char *p, uint64_t *busy, uint64_t *idle) {
  uint64_t v[10] = {0};
  int n = 0;
  for (;;) {
    p = skip_blank(p);
    if (*p == '\0')
      break;
    uint64_t x;
    if (!tl__monitor_parse_u64(&p, &x) || !at_separator(p))
      return false;
    if (n < 10)
      v[n] = x;
    n++;
  }
  if (n < 4)
    return false;
  /* user nice system idle iowait irq softirq steal guest guest_nice */
  uint64_t b = 0, i = 0;
  const int busy_fields[] = {0, 1, 2, 5, 6, 7};
  for (size_t k = 0; k < sizeof busy_fields / sizeof busy_fields[0]; k++)
    if (__builtin_add_overflow(b, v[busy_fields[k]], &b))
      return false;
  uint64_t total; /* checked here so that busy + idle never wraps later */
  if (__builtin_add_overflow(v[3], v[4], &i) || __builtin_add_overflow(b, i, &total))
    return false;
  *busy = b;
  *idle = i;
  return true;
}

/* Our own utime + stime from proc/self/stat.  The command name (field 2)
 * is in parentheses and may hold spaces and ')', so fields are counted from
 * the last ')': state is the first after it, utime the twelfth. */
static bool read_self_ticks(struct tl_monitor *m, uint64_t *ticks) {
  if (!tl__monitor_read_small(m, "proc/self/stat"))
    return false;
  const char *p = strrchr(m->small, ')');
  if (p == NULL)
    return false;
  p++;
  for (int field = 3; field < 14; field++) {
    if (!is_blank(*p))
      return false;
    p = skip_blank(p);
    if (at_separator(p))
      return false;
    while (!at_separator(p))
      p++;
  }
  uint64_t utime, stime;
  p = skip_blank(p);
  if (!tl__monitor_parse_u64(&p, &utime) || !is_blank(*p))
    return false;
  p = skip_blank(p);
  if (!tl__monitor_parse_u64(&p, &stime) || !at_separator(p))
    return false;
  return !__builtin_add_overflow(utime, stime, ticks);
}

void tl__monitor_sample_stat(struct tl_monitor *m, struct tl_device_state *s) {
  struct line_reader r;
  bool cpu_ok = false, running_ok = false;
  uint64_t busy = 0, idle = 0, running = 0;
  int rc = -1;
  if (tl__monitor_reader_open(&r, m, "proc/stat")) {
    char *line;
    while ((rc = tl__monitor_reader_next(&r, &line)) > 0) {
      if (strncmp(line, "cpu", 3) == 0 && is_blank(line[3])) {
        cpu_ok = parse_cpu_line(line + 3, &busy, &idle);
      } else if (strncmp(line, "procs_running", 13) == 0 && is_blank(line[13])) {
        const char *p = skip_blank(line + 13);
        running_ok = tl__monitor_parse_u64(&p, &running) && at_end(p);
      }
    }
    tl__monitor_reader_close(&r);
  }
  if (rc < 0) /* unreadable, or failed part way through */
    cpu_ok = running_ok = false;
  if (running_ok) {
    s->has_procs_running = true;
    s->procs_running = running;
  }
  if (!cpu_ok) {
    m->prev_valid = false;
    return;
  }

  uint64_t self = 0;
  bool self_ok = read_self_ticks(m, &self);
  /* Counters only grow; if one went back (a CPU went offline and took its
   * ticks with it) or no tick passed, there is no interval to measure. */
  if (m->prev_valid && busy >= m->prev_busy && idle >= m->prev_idle &&
      busy + idle > m->prev_busy + m->prev_idle) {
    double total = (double)((busy - m->prev_busy) + (idle - m->prev_idle));
    s->has_cpu_busy = true;
    s->cpu_busy = (double)(busy - m->prev_busy) / total;
    if (self_ok && m->prev_self_valid && self >= m->prev_self) {
      s->has_cpu_self = true;
      s->cpu_self = fmin(1.0, (double)(self - m->prev_self) / total);
    }
  }
  m->prev_valid = true;
  m->prev_busy = busy;
  m->prev_idle = idle;
  m->prev_self_valid = self_ok;
  m->prev_self = self;
}

void tl__monitor_sample_loadavg(struct tl_monitor *m, struct tl_device_state *s) {
  if (!tl__monitor_read_small(m, "proc/loadavg"))
    return;
  const char *p = skip_blank(m->small);
  double v;
  if (tl__monitor_parse_fixed(&p, &v) && at_separator(p)) {
    s->has_load1 = true;
    s->load1 = v;
  }
}

/* Our threads' run-queue delay: the second field of every
 * proc/self/task/TID/schedstat ("cpu_ns run_delay_ns timeslices"). */
void tl__monitor_sample_run_delay(struct tl_monitor *m, struct tl_device_state *s) {
  int fd = openat(m->root_fd, "proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    tl__monitor_close_fd(fd);
    return;
  }
  uint64_t total = 0;
  bool any = false;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (!is_digit(e->d_name[0]) || strlen(e->d_name) > 20)
      continue;
    snprintf(m->rel, sizeof m->rel, "proc/self/task/%s/schedstat", e->d_name);
    uint64_t cpu, delay;
    const char *p = m->small;
    if (!tl__monitor_read_small(m, m->rel) || !tl__monitor_parse_u64(&p, &cpu) || !is_blank(*p))
      continue;
    p = skip_blank(p);
    if (!tl__monitor_parse_u64(&p, &delay) || __builtin_add_overflow(total, delay, &total))
      continue;
    any = true;
  }
  closedir(dir);
  s->has_run_delay = any;
  s->run_delay_ns = any ? total : 0;
}
