/*
 * monitor_read.c - reading and parsing the kernel's files, for every
 * sampler of the monitor.
 *
 * Every file is opened with openat() under the root directory held by the
 * monitor and read with read() into one of two fixed buffers inside it: a
 * single-value file (cpufreq, loadavg, cpu.max, ...) is read whole into
 * `small`; a multi-line file (/proc/stat, meminfo, ...) goes through a line
 * reader over `line` that hands out one NUL-terminated line at a time and
 * skips lines longer than the buffer (the "intr" line of /proc/stat runs to
 * tens of kilobytes on large machines, and nothing on it is needed).  Short
 * reads, EINTR and a last line without '\n' are all ordinary.
 */
#include "monitor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

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
void tl__monitor_close_fd(int fd) { (void)close(fd); }

/* Reads the file rel whole into m->small, NUL-terminated.  Returns false
 * when it cannot be opened or read, holds a NUL byte or is larger than
 * SMALL_BYTES. */
bool tl__monitor_read_small(struct tl_monitor *m, const char *rel) {
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
  tl__monitor_close_fd(fd);
  m->small[ok ? fill : 0] = '\0';
  return ok;
}

bool tl__monitor_reader_open(struct line_reader *r, struct tl_monitor *m, const char *rel) {
  r->fd = open_rel(m, rel);
  r->buf = m->line;
  r->fill = r->pos = 0;
  r->eof = r->skipping = false;
  return r->fd >= 0;
}

void tl__monitor_reader_close(struct line_reader *r) { tl__monitor_close_fd(r->fd); }

/* Returns 1 with *line the next line (NUL-terminated, without its '\n'), 0
 * at the end of the file, or -1 on a read error.  The line stays valid until
 * the next call.  Lines longer than LINE_BYTES and lines holding a NUL byte
 * are skipped. */
int tl__monitor_reader_next(struct line_reader *r, char **line) {
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

/* Parses the decimal digits at *s into *out and advances *s past them.
 * False, with *s unchanged, when there is no digit or the value does not fit
 * 64 bits. */
bool tl__monitor_parse_u64(const char **s, uint64_t *out) {
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
bool tl__monitor_parse_fixed(const char **s, double *out) {
  const char *p = *s;
  uint64_t ip;
  if (!tl__monitor_parse_u64(&p, &ip))
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

/* Reads a file that holds one unsigned number. */
bool tl__monitor_read_u64_file(struct tl_monitor *m, const char *rel, uint64_t *out) {
  if (!tl__monitor_read_small(m, rel))
    return false;
  const char *p = skip_blank(m->small);
  uint64_t v;
  if (!tl__monitor_parse_u64(&p, &v) || !at_end(p))
    return false;
  *out = v;
  return true;
}
