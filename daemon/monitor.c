/*
 * monitor.c - reading the device state from /proc and /sys.
 *
 * Every file is opened with openat() under the root directory held by the
 * monitor and read with read() into one of two fixed buffers inside it: a
 * single-value file (cpufreq, loadavg, cpu.max, ...) is read whole into
 * `small`; a multi-line file (/proc/stat, meminfo, ...) goes through a line
 * reader over `line` that hands out one NUL-terminated line at a time and
 * skips lines longer than the buffer (the "intr" line of /proc/stat runs to
 * tens of kilobytes on large machines, and nothing on it is needed).  Short
 * reads, EINTR and a last line without '\n' are all ordinary.
 *
 * The invariant of the parsers: a field is set, and its has_ flag raised,
 * only after its whole file has been read and its text matched the kernel's
 * format exactly; anything else leaves it unknown.  Nothing here allocates
 * after tl_monitor_open().
 */
#include "monitor.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* The longest line the line reader hands out; longer ones are skipped. */
#define LINE_BYTES 4096
/* The largest single-value file; a larger one is unknown. */
#define SMALL_BYTES 4096
/* CPU numbers at or past this make the online list malformed (the largest
 * NR_CPUS a Linux kernel is built with). */
#define MAX_CPUS 8192
/* Longest cgroup path kept from proc/self/cgroup. */
#define CGROUP_PATH_BYTES 4096
/* v1 reports "no memory limit" as the largest page-aligned signed 64-bit
 * value (0x7ffffffffffff000 with 4 KiB pages); anything this large is it. */
#define V1_NO_LIMIT_BYTES (UINT64_C(1) << 62)

struct tl_monitor {
  int root_fd;    /* O_PATH directory every file is opened under */
  bool real_root; /* root is the system's "/", so sysconf() may stand in */
  int threads;    /* what cpu_share is computed for */

  /* The previous /proc/stat sample, for the busy shares. */
  bool prev_valid;
  uint64_t prev_busy, prev_idle; /* ticks summed over all CPUs */
  bool prev_self_valid;
  uint64_t prev_self; /* our utime + stime, ticks */

  uint64_t online[MAX_CPUS / 64]; /* bit i: cpu i is online */

  char cgroup_v2[CGROUP_PATH_BYTES];  /* "/a/b" from "0::/a/b" */
  char cgroup_cpu[CGROUP_PATH_BYTES]; /* from the v1 line with "cpu" */
  char cgroup_mem[CGROUP_PATH_BYTES]; /* from the v1 line with "memory" */

  char rel[CGROUP_PATH_BYTES + 128]; /* the relative path being opened */
  char line[LINE_BYTES + 1];         /* line reader, + room for a NUL */
  char small[SMALL_BYTES + 2];       /* whole file, + one byte to see that
                                        it is too large, + a NUL */
};

/* ------------------------------------------------------------- reading */

/* Opens rel under the root for reading, or returns -1.  O_NONBLOCK keeps a
 * FIFO in a fake tree from stalling the daemon's loop; it changes nothing
 * for the kernel's files. */
static int open_rel(const struct tl_monitor *m, const char *rel) {
  int fd;
  do
    fd = openat(m->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  while (fd < 0 && errno == EINTR);
  return fd;
}

/* A close() error on a descriptor that was only read from loses nothing,
 * so it is not acted on. */
static void close_fd(int fd) { (void)close(fd); }

/* Reads the file rel whole into m->small, NUL-terminated.  Returns false
 * when it cannot be opened or read, holds a NUL byte or is larger than
 * SMALL_BYTES. */
static bool read_small(struct tl_monitor *m, const char *rel) {
  int fd = open_rel(m, rel);
  if (fd < 0)
    return false;
  size_t fill = 0;
  bool ok = false;
  for (;;) {
    ssize_t n = read(fd, m->small + fill, SMALL_BYTES + 1 - fill);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break;
    if (n == 0) {
      ok = memchr(m->small, '\0', fill) == NULL;
      break;
    }
    fill += (size_t)n;
    if (fill > SMALL_BYTES)
      break;
  }
  close_fd(fd);
  m->small[ok ? fill : 0] = '\0';
  return ok;
}

struct line_reader {
  int fd;
  char *buf;        /* LINE_BYTES + 1 */
  size_t fill, pos; /* bytes in buf; start of the next line */
  bool eof;
  bool skipping; /* inside a line longer than the buffer */
};

static bool reader_open(struct line_reader *r, struct tl_monitor *m, const char *rel) {
  r->fd = open_rel(m, rel);
  r->buf = m->line;
  r->fill = r->pos = 0;
  r->eof = r->skipping = false;
  return r->fd >= 0;
}

static void reader_close(struct line_reader *r) { close_fd(r->fd); }

/* Returns 1 with *line the next line (NUL-terminated, without its '\n'), 0
 * at the end of the file, or -1 on a read error.  The line stays valid until
 * the next call.  Lines longer than LINE_BYTES and lines holding a NUL byte
 * are skipped. */
static int reader_next(struct line_reader *r, char **line) {
  for (;;) {
    char *start = r->buf + r->pos;
    size_t avail = r->fill - r->pos;
    char *nl = avail > 0 ? memchr(start, '\n', avail) : NULL;
    if (nl != NULL || (r->eof && avail > 0)) {
      size_t len = nl != NULL ? (size_t)(nl - start) : avail;
      r->pos += nl != NULL ? len + 1 : len;
      bool skip = r->skipping || memchr(start, '\0', len) != NULL;
      r->skipping = false;
      if (skip)
        continue;
      start[len] = '\0'; /* buf has a byte past LINE_BYTES for this */
      *line = start;
      return 1;
    }
    if (r->eof)
      return 0;
    memmove(r->buf, start, avail);
    r->fill = avail;
    r->pos = 0;
    if (r->fill == LINE_BYTES) { /* no '\n' in a full buffer */
      r->fill = 0;
      r->skipping = true;
    }
    ssize_t n = read(r->fd, r->buf + r->fill, LINE_BYTES - r->fill);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0)
      r->eof = true;
    r->fill += (size_t)n;
  }
}

/* ------------------------------------------------------------- parsing */

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

static const char *skip_blank(const char *s) {
  while (is_blank(*s))
    s++;
  return s;
}

/* True when nothing but blanks and newlines is left. */
static bool at_end(const char *s) {
  while (is_blank(*s) || *s == '\n')
    s++;
  return *s == '\0';
}

/* True when s is at a separator: a blank, a newline or the end. */
static bool at_separator(const char *s) { return *s == '\0' || *s == '\n' || is_blank(*s); }

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Parses the decimal digits at *s into *out and advances *s past them.
 * False, with *s unchanged, when there is no digit or the value does not fit
 * 64 bits. */
static bool parse_u64(const char **s, uint64_t *out) {
  const char *p = *s;
  uint64_t v = 0;
  if (!is_digit(*p))
    return false;
  for (; is_digit(*p); p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *s = p;
  *out = v;
  return true;
}

/* Parses "digits[.digits]", the kernel's fixed-point format (loadavg and
 * PSI print "%lu.%02lu").  The value is computed as one integer over a power
 * of ten, which makes "7.85" the same double as the literal 7.85. */
static bool parse_fixed(const char **s, double *out) {
  const char *p = *s;
  uint64_t ip;
  if (!parse_u64(&p, &ip))
    return false;
  uint64_t mant = ip, scale = 1;
  bool exact = ip < (UINT64_C(1) << 53);
  double frac = 0, unit = 1;
  if (*p == '.') {
    p++;
    if (!is_digit(*p))
      return false;
    for (; is_digit(*p); p++) {
      unsigned d = (unsigned)(*p - '0');
      unit /= 10;
      frac += d * unit;
      if (exact && mant <= ((UINT64_C(1) << 53) - d) / 10 && scale <= UINT64_C(100000000000000)) {
        mant = mant * 10 + d;
        scale *= 10;
      } else {
        exact = false;
      }
    }
  }
  *out = exact ? (double)mant / (double)scale : (double)ip + frac;
  *s = p;
  return true;
}

/* True when the comma-separated list holds the name: "cpu,cpuacct" holds
 * "cpu" but "cpuset" does not. */
static bool list_has(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0)
      return true;
    if (comma == NULL)
      return false;
    p = comma + 1;
  }
}

/* Reads a file that holds one unsigned number. */
static bool read_u64_file(struct tl_monitor *m, const char *rel, uint64_t *out) {
  if (!read_small(m, rel))
    return false;
  const char *p = skip_blank(m->small);
  uint64_t v;
  if (!parse_u64(&p, &v) || !at_end(p))
    return false;
  *out = v;
  return true;
}

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
    if (!parse_u64(&p, &first))
      goto fail;
    last = first;
    if (*p == '-') {
      p++;
      if (!parse_u64(&p, &last))
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

static void sample_online(struct tl_monitor *m, struct tl_device_state *s) {
  int n = -1;
  if (read_small(m, "sys/devices/system/cpu/online"))
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
static void sample_freq(struct tl_monitor *m, struct tl_device_state *s) {
  double sum_cur = 0, sum_max = 0;
  int n = 0;
  for (unsigned c = 0; c < MAX_CPUS; c++) {
    if (!cpu_isset(m->online, c))
      continue;
    uint64_t cur, max;
    snprintf(m->rel, sizeof m->rel, "sys/devices/system/cpu/cpu%u/cpufreq/scaling_cur_freq", c);
    if (!read_u64_file(m, m->rel, &cur))
      continue;
    snprintf(m->rel, sizeof m->rel, "sys/devices/system/cpu/cpu%u/cpufreq/cpuinfo_max_freq", c);
    if (!read_u64_file(m, m->rel, &max) || max == 0)
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
    if (!parse_u64(&p, &x) || !at_separator(p))
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
  if (!read_small(m, "proc/self/stat"))
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
  if (!parse_u64(&p, &utime) || !is_blank(*p))
    return false;
  p = skip_blank(p);
  if (!parse_u64(&p, &stime) || !at_separator(p))
    return false;
  return !__builtin_add_overflow(utime, stime, ticks);
}

static void sample_stat(struct tl_monitor *m, struct tl_device_state *s) {
  struct line_reader r;
  bool cpu_ok = false, running_ok = false;
  uint64_t busy = 0, idle = 0, running = 0;
  int rc = -1;
  if (reader_open(&r, m, "proc/stat")) {
    char *line;
    while ((rc = reader_next(&r, &line)) > 0) {
      if (strncmp(line, "cpu", 3) == 0 && is_blank(line[3])) {
        cpu_ok = parse_cpu_line(line + 3, &busy, &idle);
      } else if (strncmp(line, "procs_running", 13) == 0 && is_blank(line[13])) {
        const char *p = skip_blank(line + 13);
        running_ok = parse_u64(&p, &running) && at_end(p);
      }
    }
    reader_close(&r);
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

static void sample_loadavg(struct tl_monitor *m, struct tl_device_state *s) {
  if (!read_small(m, "proc/loadavg"))
    return;
  const char *p = skip_blank(m->small);
  double v;
  if (parse_fixed(&p, &v) && at_separator(p)) {
    s->has_load1 = true;
    s->load1 = v;
  }
}

/* ------------------------------------------------------------- memory */

/* Parses the rest of a meminfo line, "    16303856 kB", into bytes. */
static bool parse_kb(const char *p, uint64_t *bytes) {
  uint64_t kb;
  p = skip_blank(p);
  if (!parse_u64(&p, &kb) || !is_blank(*p))
    return false;
  p = skip_blank(p);
  if (strncmp(p, "kB", 2) != 0 || !at_end(p + 2) || kb > UINT64_MAX / 1024)
    return false;
  *bytes = kb * 1024;
  return true;
}

static void sample_meminfo(struct tl_monitor *m, struct tl_device_state *s) {
  struct line_reader r;
  if (!reader_open(&r, m, "proc/meminfo"))
    return;
  bool total_ok = false, avail_ok = false;
  uint64_t total = 0, avail = 0;
  char *line;
  int rc;
  while ((rc = reader_next(&r, &line)) > 0) {
    if (strncmp(line, "MemTotal:", 9) == 0)
      total_ok = parse_kb(line + 9, &total);
    else if (strncmp(line, "MemAvailable:", 13) == 0)
      avail_ok = parse_kb(line + 13, &avail);
  }
  reader_close(&r);
  if (rc < 0)
    return;
  s->has_mem_total = total_ok;
  s->mem_total_bytes = total_ok ? total : 0;
  s->has_mem_available = avail_ok;
  s->mem_available_bytes = avail_ok ? avail : 0;
}

/* ------------------------------------------------------------- cgroups */

/* Copies path into dst (CGROUP_PATH_BYTES) when it is absolute and fits. */
static bool keep_path(char *dst, const char *path) {
  size_t n = strlen(path);
  if (path[0] != '/' || n >= CGROUP_PATH_BYTES)
    return false;
  memcpy(dst, path, n + 1);
  return true;
}

/* Reads proc/self/cgroup: "0::/path" for v2, "N:ctrl,ctrl:/path" for v1
 * (the path may itself hold ':'). */
static void read_cgroup_paths(struct tl_monitor *m, bool *v2, bool *v1_cpu, bool *v1_mem) {
  *v2 = *v1_cpu = *v1_mem = false;
  struct line_reader r;
  if (!reader_open(&r, m, "proc/self/cgroup"))
    return;
  char *line;
  int rc;
  while ((rc = reader_next(&r, &line)) > 0) {
    char *c1 = strchr(line, ':');
    char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
    if (c2 == NULL)
      continue;
    *c1 = *c2 = '\0';
    const char *hier = line, *ctrls = c1 + 1, *path = c2 + 1;
    if (strcmp(hier, "0") == 0 && ctrls[0] == '\0') {
      *v2 = keep_path(m->cgroup_v2, path);
      continue;
    }
    if (list_has(ctrls, "cpu"))
      *v1_cpu = keep_path(m->cgroup_cpu, path);
    if (list_has(ctrls, "memory"))
      *v1_mem = keep_path(m->cgroup_mem, path);
  }
  reader_close(&r);
  if (rc < 0)
    *v2 = *v1_cpu = *v1_mem = false;
}

/* Builds "sys/fs/cgroup[/mount]<first len bytes of path>/file" in m->rel;
 * mount is "" for v2.  False when it does not fit. */
static bool cgroup_rel(struct tl_monitor *m, const char *mount, const char *path, size_t len,
                       const char *file) {
  int n = snprintf(m->rel, sizeof m->rel, "sys/fs/cgroup%s%s%.*s/%s", mount[0] != '\0' ? "/" : "",
                   mount, (int)len, path, file);
  return n > 0 && (size_t)n < sizeof m->rel;
}

/* The length of the parent of the first len bytes of a cgroup path: "/a/b"
 * gives "/a", "/a" gives "" (the root). */
static size_t parent_len(const char *path, size_t len) {
  while (len > 0 && path[len - 1] != '/')
    len--;
  return len > 0 ? len - 1 : 0;
}

/* A limit read at one level: */
enum limit { LIMIT_UNKNOWN, LIMIT_NONE, LIMIT_SET };

/* CPU quota of one cgroup, in cores; mount NULL for v2 ("max 100000" or
 * "50000 100000" in cpu.max), else the v1 mount (cpu.cfs_quota_us, -1 for
 * none, and cpu.cfs_period_us). */
static enum limit cpu_quota_at(struct tl_monitor *m, const char *mount, const char *path,
                               size_t len, double *cores) {
  uint64_t quota = 0, period = 0;
  if (mount == NULL) {
    if (!cgroup_rel(m, "", path, len, "cpu.max") || !read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    bool none = strncmp(p, "max", 3) == 0;
    if (none)
      p += 3;
    else if (!parse_u64(&p, &quota) || quota == 0)
      return LIMIT_UNKNOWN;
    if (!is_blank(*p))
      return LIMIT_UNKNOWN;
    p = skip_blank(p);
    if (!parse_u64(&p, &period) || period == 0 || !at_end(p))
      return LIMIT_UNKNOWN;
    if (none)
      return LIMIT_NONE;
  } else {
    if (!cgroup_rel(m, mount, path, len, "cpu.cfs_quota_us") || !read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    if (p[0] == '-' && p[1] == '1' && at_end(p + 2))
      return LIMIT_NONE;
    if (!parse_u64(&p, &quota) || quota == 0 || !at_end(p))
      return LIMIT_UNKNOWN;
    if (!cgroup_rel(m, mount, path, len, "cpu.cfs_period_us") ||
        !read_u64_file(m, m->rel, &period) || period == 0)
      return LIMIT_UNKNOWN;
  }
  *cores = (double)quota / (double)period;
  return LIMIT_SET;
}

/* Memory limit of one cgroup: v2 memory.max ("max" or bytes), or v1
 * memory.limit_in_bytes under mount. */
static enum limit mem_limit_at(struct tl_monitor *m, const char *mount, const char *path,
                               size_t len, uint64_t *bytes) {
  if (mount == NULL) {
    if (!cgroup_rel(m, "", path, len, "memory.max") || !read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    if (strncmp(p, "max", 3) == 0 && at_end(p + 3))
      return LIMIT_NONE;
    if (!parse_u64(&p, bytes) || !at_end(p))
      return LIMIT_UNKNOWN;
    return LIMIT_SET;
  }
  if (!cgroup_rel(m, mount, path, len, "memory.limit_in_bytes") || !read_u64_file(m, m->rel, bytes))
    return LIMIT_UNKNOWN;
  return *bytes >= V1_NO_LIMIT_BYTES ? LIMIT_NONE : LIMIT_SET;
}

/* The tightest CPU quota from the cgroup at path up to its root. */
static enum limit walk_cpu_quota(struct tl_monitor *m, const char *mount, const char *path,
                                 double *cores) {
  enum limit result = LIMIT_UNKNOWN;
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/')
    len--;
  for (;;) {
    double c;
    enum limit l = cpu_quota_at(m, mount, path, len, &c);
    if (l == LIMIT_SET && (result != LIMIT_SET || c < *cores)) {
      *cores = c;
      result = LIMIT_SET;
    } else if (l == LIMIT_NONE && result == LIMIT_UNKNOWN) {
      result = LIMIT_NONE;
    }
    if (len == 0)
      return result;
    len = parent_len(path, len);
  }
}

/* The tightest memory limit from the cgroup at path up to its root. */
static enum limit walk_mem_limit(struct tl_monitor *m, const char *mount, const char *path,
                                 uint64_t *bytes) {
  enum limit result = LIMIT_UNKNOWN;
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/')
    len--;
  for (;;) {
    uint64_t b;
    enum limit l = mem_limit_at(m, mount, path, len, &b);
    if (l == LIMIT_SET && (result != LIMIT_SET || b < *bytes)) {
      *bytes = b;
      result = LIMIT_SET;
    } else if (l == LIMIT_NONE && result == LIMIT_UNKNOWN) {
      result = LIMIT_NONE;
    }
    if (len == 0)
      return result;
    len = parent_len(path, len);
  }
}

/* Memory use of the deepest cgroup from path upwards that reports it. */
static bool walk_mem_current(struct tl_monitor *m, const char *mount, const char *path,
                             uint64_t *bytes) {
  const char *file = mount == NULL ? "memory.current" : "memory.usage_in_bytes";
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/')
    len--;
  for (;;) {
    if (cgroup_rel(m, mount != NULL ? mount : "", path, len, file) &&
        read_u64_file(m, m->rel, bytes))
      return true;
    if (len == 0)
      return false;
    len = parent_len(path, len);
  }
}

static void sample_cgroup(struct tl_monitor *m, struct tl_device_state *s) {
  bool v2, v1_cpu, v1_mem;
  read_cgroup_paths(m, &v2, &v1_cpu, &v1_mem);

  /* On a hybrid system the "0::" line is there too, but its files are not
   * under sys/fs/cgroup, so v1 is tried whenever v2 found nothing.  v1's cpu
   * controller is mounted as "cpu" (often a link) or "cpu,cpuacct". */
  double cores = 0;
  enum limit cpu = LIMIT_UNKNOWN;
  if (v2)
    cpu = walk_cpu_quota(m, NULL, m->cgroup_v2, &cores);
  static const char *const cpu_mounts[] = {"cpu", "cpu,cpuacct"};
  for (size_t i = 0; i < 2 && cpu == LIMIT_UNKNOWN && v1_cpu; i++)
    cpu = walk_cpu_quota(m, cpu_mounts[i], m->cgroup_cpu, &cores);
  if (cpu != LIMIT_UNKNOWN) {
    s->has_cgroup_cpu = true;
    s->cgroup_cpu_unlimited = cpu == LIMIT_NONE;
    s->cgroup_cpu_quota_cores = cpu == LIMIT_SET ? cores : 0;
  }

  uint64_t bytes = 0;
  enum limit mem = LIMIT_UNKNOWN;
  const char *mem_mount = NULL; /* where usage is read: v2, or v1 below */
  if (v2)
    mem = walk_mem_limit(m, NULL, m->cgroup_v2, &bytes);
  if (mem == LIMIT_UNKNOWN && v1_mem) {
    mem = walk_mem_limit(m, "memory", m->cgroup_mem, &bytes);
    mem_mount = "memory";
  }
  if (mem != LIMIT_UNKNOWN) {
    s->has_cgroup_mem_max = true;
    s->cgroup_mem_unlimited = mem == LIMIT_NONE;
    s->cgroup_mem_max_bytes = mem == LIMIT_SET ? bytes : 0;
  }
  bool cur = false;
  if (v2 && mem_mount == NULL)
    cur = walk_mem_current(m, NULL, m->cgroup_v2, &bytes);
  if (!cur && v1_mem)
    cur = walk_mem_current(m, "memory", m->cgroup_mem, &bytes);
  if (cur) {
    s->has_cgroup_mem_current = true;
    s->cgroup_mem_current_bytes = bytes;
  }
}

/* ------------------------------------------------------------ pressure */

/* avg10 of the "some" line: "some avg10=7.85 avg60=3.43 avg300=3.22 ...". */
static bool read_psi(struct tl_monitor *m, const char *rel, double *avg10) {
  struct line_reader r;
  if (!reader_open(&r, m, rel))
    return false;
  bool ok = false;
  char *line;
  int rc;
  while ((rc = reader_next(&r, &line)) > 0) {
    if (strncmp(line, "some", 4) != 0 || !is_blank(line[4]))
      continue;
    for (const char *p = skip_blank(line + 4); *p != '\0';) {
      if (strncmp(p, "avg10=", 6) == 0) {
        p += 6;
        ok = parse_fixed(&p, avg10) && at_separator(p);
        break;
      }
      while (!at_separator(p))
        p++;
      p = skip_blank(p);
    }
    break;
  }
  reader_close(&r);
  return ok && rc >= 0;
}

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
  close_fd(m->root_fd);
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

/* Our threads' run-queue delay: the second field of every
 * proc/self/task/TID/schedstat ("cpu_ns run_delay_ns timeslices"). */
static void sample_run_delay(struct tl_monitor *m, struct tl_device_state *s) {
  int fd = openat(m->root_fd, "proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return;
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    close_fd(fd);
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
    if (!read_small(m, m->rel) || !parse_u64(&p, &cpu) || !is_blank(*p))
      continue;
    p = skip_blank(p);
    if (!parse_u64(&p, &delay) || __builtin_add_overflow(total, delay, &total))
      continue;
    any = true;
  }
  closedir(dir);
  s->has_run_delay = any;
  s->run_delay_ns = any ? total : 0;
}

void tl_monitor_sample(struct tl_monitor *m, struct tl_device_state *out) {
  assert(m != NULL && out != NULL);
  struct tl_device_state s;
  memset(&s, 0, sizeof s);
  s.monotonic_ns = tl_now_ns();

  sample_online(m, &s);
  sample_freq(m, &s);
  sample_stat(m, &s);
  sample_loadavg(m, &s);
  sample_meminfo(m, &s);
  sample_cgroup(m, &s);
  s.has_psi_cpu = read_psi(m, "proc/pressure/cpu", &s.psi_cpu_some_avg10);
  s.has_psi_mem = read_psi(m, "proc/pressure/memory", &s.psi_mem_some_avg10);
  if (!s.has_psi_cpu)
    s.psi_cpu_some_avg10 = 0;
  if (!s.has_psi_mem)
    s.psi_mem_some_avg10 = 0;
  sample_run_delay(m, &s);
  derive_cpu_share(m, &s);
  *out = s;
}

void tl_monitor_close(struct tl_monitor *m) {
  if (m == NULL)
    return;
  close_fd(m->root_fd);
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
