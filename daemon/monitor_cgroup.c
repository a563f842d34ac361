/*
 * monitor_cgroup.c - the service's cgroup, v2 or v1: its path from
 * /proc/self/cgroup, the tightest CPU quota and memory limit up to the
 * root, and its memory use.
 */
#include "monitor_internal.h"

#include <stdio.h>
#include <string.h>

/* v1 reports "no memory limit" as the largest page-aligned signed 64-bit
 * value (0x7ffffffffffff000 with 4 KiB pages); anything this large is it. */
#define V1_NO_LIMIT_BYTES (UINT64_C(1) << 62)

/* ------------------------------------------------------------- cgroups */

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
  if (!tl__monitor_reader_open(&r, m, "proc/self/cgroup"))
    return;
  char *line;
  int rc;
  while ((rc = tl__monitor_reader_next(&r, &line)) > 0) {
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
  tl__monitor_reader_close(&r);
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
    if (!cgroup_rel(m, "", path, len, "cpu.max") || !tl__monitor_read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    bool none = strncmp(p, "max", 3) == 0;
    if (none)
      p += 3;
    else if (!tl__monitor_parse_u64(&p, &quota) || quota == 0)
      return LIMIT_UNKNOWN;
    if (!is_blank(*p))
      return LIMIT_UNKNOWN;
    p = skip_blank(p);
    if (!tl__monitor_parse_u64(&p, &period) || period == 0 || !at_end(p))
      return LIMIT_UNKNOWN;
    if (none)
      return LIMIT_NONE;
  } else {
    if (!cgroup_rel(m, mount, path, len, "cpu.cfs_quota_us") || !tl__monitor_read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    if (p[0] == '-' && p[1] == '1' && at_end(p + 2))
      return LIMIT_NONE;
    if (!tl__monitor_parse_u64(&p, &quota) || quota == 0 || !at_end(p))
      return LIMIT_UNKNOWN;
    if (!cgroup_rel(m, mount, path, len, "cpu.cfs_period_us") ||
        !tl__monitor_read_u64_file(m, m->rel, &period) || period == 0)
      return LIMIT_UNKNOWN;
  }
  *cores = (double)quota / (double)period;
  return LIMIT_SET;
}

/* Memory limit of one cgroup in bytes: v2 memory.max ("max" or bytes),
 * or v1 memory.limit_in_bytes under mount.  A double, as the CPU quota
 * is, so that one walk serves both (exact up to 8 PiB). */
static enum limit mem_limit_at(struct tl_monitor *m, const char *mount, const char *path,
                               size_t len, double *bytes) {
  uint64_t b;
  if (mount == NULL) {
    if (!cgroup_rel(m, "", path, len, "memory.max") || !tl__monitor_read_small(m, m->rel))
      return LIMIT_UNKNOWN;
    const char *p = skip_blank(m->small);
    if (strncmp(p, "max", 3) == 0 && at_end(p + 3))
      return LIMIT_NONE;
    if (!tl__monitor_parse_u64(&p, &b) || !at_end(p))
      return LIMIT_UNKNOWN;
    *bytes = (double)b;
    return LIMIT_SET;
  }
  if (!cgroup_rel(m, mount, path, len, "memory.limit_in_bytes") ||
      !tl__monitor_read_u64_file(m, m->rel, &b))
    return LIMIT_UNKNOWN;
  *bytes = (double)b;
  return b >= V1_NO_LIMIT_BYTES ? LIMIT_NONE : LIMIT_SET;
}

/* One cgroup's limit of some kind (cpu_quota_at, mem_limit_at). */
typedef enum limit (*limit_at_fn)(struct tl_monitor *m, const char *mount, const char *path,
                                  size_t len, double *value);

/* The tightest limit from the cgroup at path up to its root: SET with the
 * smallest value any level sets, else NONE if a level says unlimited. */
static enum limit walk_limit(struct tl_monitor *m, const char *mount, const char *path,
                             limit_at_fn limit_at, double *value) {
  enum limit result = LIMIT_UNKNOWN;
  size_t len = strlen(path);
  while (len > 0 && path[len - 1] == '/')
    len--;
  for (;;) {
    double v;
    enum limit l = limit_at(m, mount, path, len, &v);
    if (l == LIMIT_SET && (result != LIMIT_SET || v < *value)) {
      *value = v;
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
        tl__monitor_read_u64_file(m, m->rel, bytes))
      return true;
    if (len == 0)
      return false;
    len = parent_len(path, len);
  }
}

void tl__monitor_sample_cgroup(struct tl_monitor *m, struct tl_device_state *s) {
  bool v2, v1_cpu, v1_mem;
  read_cgroup_paths(m, &v2, &v1_cpu, &v1_mem);

  /* On a hybrid system the "0::" line is there too, but its files are not
   * under sys/fs/cgroup, so v1 is tried whenever v2 found nothing.  v1's cpu
   * controller is mounted as "cpu" (often a link) or "cpu,cpuacct". */
  double cores = 0;
  enum limit cpu = LIMIT_UNKNOWN;
  if (v2)
    cpu = walk_limit(m, NULL, m->cgroup_v2, cpu_quota_at, &cores);
  static const char *const cpu_mounts[] = {"cpu", "cpu,cpuacct"};
  for (size_t i = 0; i < 2 && cpu == LIMIT_UNKNOWN && v1_cpu; i++)
    cpu = walk_limit(m, cpu_mounts[i], m->cgroup_cpu, cpu_quota_at, &cores);
  if (cpu != LIMIT_UNKNOWN) {
    s->has_cgroup_cpu = true;
    s->cgroup_cpu_unlimited = cpu == LIMIT_NONE;
    s->cgroup_cpu_quota_cores = cpu == LIMIT_SET ? cores : 0;
  }

  double max_bytes = 0;
  enum limit mem = LIMIT_UNKNOWN;
  const char *mem_mount = NULL; /* where usage is read: v2, or v1 below */
  if (v2)
    mem = walk_limit(m, NULL, m->cgroup_v2, mem_limit_at, &max_bytes);
  if (mem == LIMIT_UNKNOWN && v1_mem) {
    mem = walk_limit(m, "memory", m->cgroup_mem, mem_limit_at, &max_bytes);
    mem_mount = "memory";
  }
  if (mem != LIMIT_UNKNOWN) {
    s->has_cgroup_mem_max = true;
    s->cgroup_mem_unlimited = mem == LIMIT_NONE;
    s->cgroup_mem_max_bytes = mem == LIMIT_SET ? (uint64_t)max_bytes : 0;
  }
  uint64_t bytes = 0;
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
