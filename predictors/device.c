/*
 * device.c - the device fingerprint (see device.h).
 */
#include "device.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first "model name" line of cpuinfo, trimmed, into out. */
static void read_cpu_model(const char *root, char *out, size_t size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/proc/cpuinfo", root);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return;
  char line[512];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "model name", 10) != 0)
      continue;
    char *v = strchr(line, ':');
    if (v == NULL)
      break;
    for (v++; *v == ' ' || *v == '\t'; v++)
      ;
    size_t n = strcspn(v, "\n");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
      n--;
    snprintf(out, size, "%.*s", (int)n, v);
    break;
  }
  fclose(f);
}

static long long read_number(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  long long v = 0;
  if (fscanf(f, "%lld", &v) != 1 || v < 0)
    v = 0;
  fclose(f);
  return v;
}

/* "0-3,6" -> 5 */
static int count_cpus(const char *list) {
  int n = 0;
  for (const char *p = list; *p;) {
    char *end;
    long a = strtol(p, &end, 10);
    if (end == p)
      break;
    long b = a;
    if (*end == '-') {
      p = end + 1;
      b = strtol(p, &end, 10);
      if (end == p)
        break;
    }
    if (b >= a && b - a < 65536)
      n += (int)(b - a + 1);
    p = *end == ',' ? end + 1 : end;
    if (*end != ',')
      break;
  }
  return n;
}

int tl_device_fingerprint(const char *root, int threads, struct tl_device_fp *fp,
                          struct tl_error *err) {
  struct stat st;
  if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
    return tl_fail(err, TL_ENOENT, "%s: not a directory (device root)", root);
  memset(fp, 0, sizeof *fp);
  read_cpu_model(root, fp->cpu_model, sizeof fp->cpu_model);

  char path[4096], buf[256] = "";
  snprintf(path, sizeof path, "%s/sys/devices/system/cpu/online", root);
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    if (fgets(buf, sizeof buf, f) != NULL)
      fp->cores = count_cpus(buf);
    fclose(f);
  }
  if (fp->cores <= 0 && strcmp(root, "/") == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    fp->cores = n > 0 ? (int)n : 0;
  }
  for (int cpu = 0; cpu < (fp->cores > 0 ? fp->cores : 1); cpu++) {
    snprintf(path, sizeof path, "%s/sys/devices/system/cpu/cpu%d/cpufreq/cpuinfo_max_freq", root,
             cpu);
    long long khz = read_number(path);
    if (khz > fp->max_freq_khz)
      fp->max_freq_khz = khz;
  }
  /* openblas_get_config() says version, build and core type, e.g.
   * "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64". */
  snprintf(fp->blas, sizeof fp->blas, "%s", openblas_get_config());
  fp->threads = threads > 0 ? threads : 1;
  return 0;
}
