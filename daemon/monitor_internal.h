/*
 * monitor_internal.h - what the monitor's files share: the monitor itself,
 * the reading and parsing of the kernel's files (monitor_read.c), and the
 * samplers of CPUs and load (monitor_cpu.c), memory and pressure
 * (monitor_mem.c) and the service's cgroup (monitor_cgroup.c) that
 * tl_monitor_sample() in monitor.c calls in turn.  Private to daemon/;
 * monitor.h is the API.
 */
#ifndef TL_MONITOR_INTERNAL_H
#define TL_MONITOR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "monitor.h"

/* The longest line the line reader hands out; longer ones are skipped. */
#define LINE_BYTES 4096
/* The largest single-value file; a larger one is unknown. */
#define SMALL_BYTES 4096
/* CPU numbers at or past this make the online list malformed (the largest
 * NR_CPUS a Linux kernel is built with). */
#define MAX_CPUS 8192
/* Longest cgroup path kept from proc/self/cgroup. */
#define CGROUP_PATH_BYTES 4096

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

/* ---------------------------------------------------- monitor_read.c */

/* A close() error on a descriptor that was only read from loses nothing,
 * so it is not acted on. */
void tl__monitor_close_fd(int fd);

/* Reads the file rel whole into m->small, NUL-terminated.  Returns false
 * when it cannot be opened or read, holds a NUL byte or is larger than
 * SMALL_BYTES. */
bool tl__monitor_read_small(struct tl_monitor *m, const char *rel);

struct line_reader {
  int fd;
  char *buf;        /* LINE_BYTES + 1 */
  size_t fill, pos; /* bytes in buf; start of the next line */
  bool eof;
  bool skipping; /* inside a line longer than the buffer */
};

/* Opens rel under the root for reading line by line over m->line. */
bool tl__monitor_reader_open(struct line_reader *r, struct tl_monitor *m, const char *rel);

void tl__monitor_reader_close(struct line_reader *r);

/* Returns 1 with *line the next line (NUL-terminated, without its '\n'), 0
 * at the end of the file, or -1 on a read error.  The line stays valid until
 * the next call.  Lines longer than LINE_BYTES and lines holding a NUL byte
 * are skipped. */
int tl__monitor_reader_next(struct line_reader *r, char **line);

/* The parsers' character classes. */
static inline bool is_blank(char c) { return c == ' ' || c == '\t'; }

static inline const char *skip_blank(const char *s) {
  while (is_blank(*s))
    s++;
  return s;
}

/* True when nothing but blanks and newlines is left. */
static inline bool at_end(const char *s) {
  while (is_blank(*s) || *s == '\n')
    s++;
  return *s == '\0';
}

/* True when s is at a separator: a blank, a newline or the end. */
static inline bool at_separator(const char *s) { return *s == '\0' || *s == '\n' || is_blank(*s); }

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Parses the decimal digits at *s into *out and advances *s past them.
 * False, with *s unchanged, when there is no digit or the value does not fit
 * 64 bits. */
bool tl__monitor_parse_u64(const char **s, uint64_t *out);

/* Parses "digits[.digits]", the kernel's fixed-point format (loadavg and
 * PSI print "%lu.%02lu"). */
bool tl__monitor_parse_fixed(const char **s, double *out);

/* Reads a file that holds one unsigned number. */
bool tl__monitor_read_u64_file(struct tl_monitor *m, const char *rel, uint64_t *out);

/* ------------------------------------------------------------ samplers */

/* Each reads its files and sets the fields of *s they give, with their
 * has_ flags; tl_monitor_sample() hands them *s zeroed. */

/* monitor_cpu.c: the online CPUs (kept in m->online, which
 * tl__monitor_sample_freq reads), their frequency, busy shares from /proc/stat, the load average,
 * and our threads' run-queue delay. */
void tl__monitor_sample_online(struct tl_monitor *m, struct tl_device_state *s);
void tl__monitor_sample_freq(struct tl_monitor *m, struct tl_device_state *s);
void tl__monitor_sample_stat(struct tl_monitor *m, struct tl_device_state *s);
void tl__monitor_sample_loadavg(struct tl_monitor *m, struct tl_device_state *s);
void tl__monitor_sample_run_delay(struct tl_monitor *m, struct tl_device_state *s);

/* monitor_mem.c: memory from /proc/meminfo; avg10 of the "some" line of a
 * pressure file (false when unknown). */
void tl__monitor_sample_meminfo(struct tl_monitor *m, struct tl_device_state *s);
bool tl__monitor_read_psi(struct tl_monitor *m, const char *rel, double *avg10);

/* monitor_cgroup.c: the CPU quota and memory limit and use of the cgroup
 * we run in. */
void tl__monitor_sample_cgroup(struct tl_monitor *m, struct tl_device_state *s);

#endif
