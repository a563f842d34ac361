/*
 * monitor_mem.c - memory (/proc/meminfo) and pressure stall information
 * (/proc/pressure/cpu and memory).
 */
#include "monitor_internal.h"

#include <string.h>

/* ------------------------------------------------------------- memory */

/* Parses the rest of a meminfo line, "    16303856 kB", into bytes. */
static bool parse_kb(const char *p, uint64_t *bytes) {
  uint64_t kb;
  p = skip_blank(p);
  if (!tl__monitor_parse_u64(&p, &kb) || !is_blank(*p))
    return false;
  p = skip_blank(p);
  if (strncmp(p, "kB", 2) != 0 || !at_end(p + 2) || kb > UINT64_MAX / 1024)
    return false;
  *bytes = kb * 1024;
  return true;
}

void tl__monitor_sample_meminfo(struct tl_monitor *m, struct tl_device_state *s) {
  struct line_reader r;
  if (!tl__monitor_reader_open(&r, m, "proc/meminfo"))
    return;
  bool total_ok = false, avail_ok = false;
  uint64_t total = 0, avail = 0;
  char *line;
  int rc;
  while ((rc = tl__monitor_reader_next(&r, &line)) > 0) {
    if (strncmp(line, "MemTotal:", 9) == 0)
      total_ok = parse_kb(line + 9, &total);
    else if (strncmp(line, "MemAvailable:", 13) == 0)
      avail_ok = parse_kb(line + 13, &avail);
  }
  tl__monitor_reader_close(&r);
  if (rc < 0)
    return;
  s->has_mem_total = total_ok;
  s->mem_total_bytes = total_ok ? total : 0;
  s->has_mem_available = avail_ok;
  s->mem_available_bytes = avail_ok ? avail : 0;
}

/* ------------------------------------------------------------ pressure */

/* avg10 of the "some" line: "some avg10=7.85 avg60=3.43 avg300=3.22 ...". */
bool tl__monitor_read_psi(struct tl_monitor *m, const char *rel, double *avg10) {
  struct line_reader r;
  if (!tl__monitor_reader_open(&r, m, rel))
    return false;
  bool ok = false;
  char *line;
  int rc;
  while ((rc = tl__monitor_reader_next(&r, &line)) > 0) {
    if (strncmp(line, "some", 4) != 0 || !is_blank(line[4]))
      continue;
    for (const char *p = skip_blank(line + 4); *p != '\0';) {
      if (strncmp(p, "avg10=", 6) == 0) {
        p += 6;
        ok = tl__monitor_parse_fixed(&p, avg10) && at_separator(p);
        break;
      }
      while (!at_separator(p))
        p++;
      p = skip_blank(p);
    }
    break;
  }
  tl__monitor_reader_close(&r);
  return ok && rc >= 0;
}
