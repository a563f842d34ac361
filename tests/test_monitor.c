/*
 * test_monitor.c - the device-state monitor: every field parsed from the
 * kernel's real file formats, the busy shares from two samples with known
 * tick deltas, the cgroup v1 and v2 limits, and that missing or malformed
 * files make fields unknown without an error or a crash.
 *
 * Each test builds a fake /proc and /sys tree of its own in a mkdtemp()
 * directory (fake_write() makes the parent directories as `mkdir -p` does)
 * and points the monitor at it; the contents were copied from Debian 12
 * machines and trimmed.  One test samples the real "/" and checks only what
 * holds on every Linux machine.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "monitor.h"
#include "testutil.h"

/* ------------------------------------------------------- the fake tree */

/* Each test's fake root is its own temporary directory, tu_tmpdir(). */
static void add_fake_root(TCase *tc) { tu_add_tmpdir(tc, "monitor"); }

/* root/rel in a static buffer (one at a time). */
static const char *fake_path(const char *rel) {
  static char p[PATH_MAX * 2];
  snprintf(p, sizeof p, "%s/%s", tu_tmpdir(), rel);
  return p;
}

/* Makes every directory on the way to the file root/rel, as mkdir -p. */
static void fake_mkdirs(const char *rel) {
  char p[PATH_MAX * 2];
  snprintf(p, sizeof p, "%s/%s", tu_tmpdir(), rel);
  for (char *s = p + strlen(tu_tmpdir()) + 1; (s = strchr(s, '/')) != NULL; s++) {
    *s = '\0';
    if (mkdir(p, 0755) < 0)
      ck_assert_int_eq(errno, EEXIST);
    *s = '/';
  }
}

/* Writes len bytes to root/rel, replacing what was there. */
static void fake_write_bytes(const char *rel, const void *buf, size_t len) {
  fake_mkdirs(rel);
  FILE *f = fopen(fake_path(rel), "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

static void fake_write(const char *rel, const char *text) {
  fake_write_bytes(rel, text, strlen(text));
}

static void fake_printf(const char *rel, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fake_printf(const char *rel, const char *fmt, ...) {
  char buf[32768];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  ck_assert(n >= 0 && (size_t)n < sizeof buf);
  fake_write_bytes(rel, buf, (size_t)n);
}

static void fake_remove(const char *rel) { ck_assert_int_eq(unlink(fake_path(rel)), 0); }

#define ONLINE "sys/devices/system/cpu/online"
#define CPUFREQ(n, file) "sys/devices/system/cpu/cpu" #n "/cpufreq/" file
#define CUR0 CPUFREQ(0, "scaling_cur_freq")
#define MAX0 CPUFREQ(0, "cpuinfo_max_freq")
#define CUR1 CPUFREQ(1, "scaling_cur_freq")
#define MAX1 CPUFREQ(1, "cpuinfo_max_freq")
#define STAT "proc/stat"
#define SELF_STAT "proc/self/stat"
#define SELF_CGROUP "proc/self/cgroup"
#define LOADAVG "proc/loadavg"
#define MEMINFO "proc/meminfo"
#define PSI_CPU "proc/pressure/cpu"
#define PSI_MEM "proc/pressure/memory"
#define CG "sys/fs/cgroup/"
#define SERVICE "system.slice/tailord.service/"

/* The aggregate counters of /proc/stat, in ticks. */
struct ticks {
  unsigned long long user, nice, system, idle, iowait, irq, softirq, steal, guest;
};

static const struct ticks stat_base = {10000, 200, 3000, 50000, 800, 100, 300, 40, 100};

/* Writes a /proc/stat as a 2-CPU kernel does, the aggregate line t split
 * evenly over cpu0 and cpu1, with an intr line of intr_irqs counters. */
static void write_stat_intr(struct ticks t, int intr_irqs) {
  static char intr[65536];
  size_t n = 0;
  for (int i = 0; i < intr_irqs && n + 8 < sizeof intr; i++)
    n += (size_t)snprintf(intr + n, sizeof intr - n, " %d", i % 7);
  intr[n] = '\0';
  char line0[256];
  snprintf(line0, sizeof line0,
           "%llu %llu %llu %llu %llu %llu %llu %llu "
           "%llu 0",
           t.user / 2, t.nice / 2, t.system / 2, t.idle / 2, t.iowait / 2, t.irq / 2, t.softirq / 2,
           t.steal / 2, t.guest / 2);
  char *buf = malloc(sizeof intr + 2048);
  ck_assert_ptr_nonnull(buf);
  int len = snprintf(buf, sizeof intr + 2048,
                     "cpu  %llu %llu %llu %llu %llu %llu %llu %llu %llu 0\n"
                     "cpu0 %s\n"
                     "cpu1 %s\n"
                     "intr 1234567%s\n"
                     "ctxt 98765432\n"
                     "btime 1700000000\n"
                     "processes 43210\n"
                     "procs_running 3\n"
                     "procs_blocked 1\n"
                     "softirq 765432 1 2345 6 7890 12 0 34 5678 9 1234\n",
                     t.user, t.nice, t.system, t.idle, t.iowait, t.irq, t.softirq, t.steal, t.guest,
                     line0, line0, intr);
  fake_write_bytes(STAT, buf, (size_t)len);
  free(buf);
}

static void write_stat(struct ticks t) { write_stat_intr(t, 40); }

/* Writes proc/self/stat of a process that has run utime + stime ticks. */
static void write_self_stat(unsigned long long utime, unsigned long long stime) {
  fake_printf(SELF_STAT,
              "4242 (tailord) S 1 4242 4242 0 -1 4194560 2000 0 0 0 %llu "
              "%llu 0 0 20 0 5 0 12345 123456789 4000 18446744073709551615 "
              "1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n",
              utime, stime);
}

/* stat_base plus 600 busy ticks (guest time inside user, as the kernel
 * counts it) and 200 idle ones: a busy share of exactly 600 / 800. */
static struct ticks stat_later(struct ticks t) {
  t.user += 400; /* of which guest: */
  t.guest += 100;
  t.system += 100;
  t.irq += 20;
  t.softirq += 30;
  t.steal += 50;
  t.idle += 150;
  t.iowait += 50;
  return t;
}

static const char meminfo[] = "MemTotal:       16303856 kB\n"
                              "MemFree:         8123456 kB\n"
                              "MemAvailable:    9876544 kB\n"
                              "Buffers:          234567 kB\n"
                              "Cached:          1876543 kB\n"
                              "SwapCached:            0 kB\n"
                              "Active:          4567890 kB\n"
                              "Inactive:        2345678 kB\n"
                              "SwapTotal:       1000444 kB\n"
                              "SwapFree:        1000444 kB\n"
                              "Dirty:               123 kB\n"
                              "Shmem:            345678 kB\n"
                              "HugePages_Total:       0\n"
                              "HugePages_Free:        0\n"
                              "Hugepagesize:       2048 kB\n"
                              "DirectMap4k:      345678 kB\n"
                              "DirectMap2M:    16384000 kB\n";

/* A whole tree as a 2-CPU Debian 12 box shows it to tailord running as a
 * systemd service with CPUQuota=50% and MemoryMax=256M. */
static void fake_default(void) {
  fake_write(ONLINE, "0-1\n");
  fake_write(CUR0, "1800000\n");
  fake_write(MAX0, "2400000\n");
  fake_write(CUR1, "1200000\n");
  fake_write(MAX1, "2400000\n");
  write_stat(stat_base);
  write_self_stat(150, 50);
  fake_write(LOADAVG, "2.11 1.17 0.49 3/93 7473\n");
  fake_write(MEMINFO, meminfo);
  fake_write(SELF_CGROUP, "0::/system.slice/tailord.service\n");
  fake_write(CG SERVICE "cpu.max", "50000 100000\n");
  fake_write(CG SERVICE "memory.max", "268435456\n");
  fake_write(CG SERVICE "memory.current", "73400320\n");
  fake_write(PSI_CPU, "some avg10=7.85 avg60=3.43 avg300=3.22 total=20773848\n"
                      "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  fake_write(PSI_MEM, "some avg10=0.25 avg60=0.10 avg300=0.02 total=123456\n"
                      "full avg10=0.12 avg60=0.05 avg300=0.01 total=65432\n");
}

static struct tl_monitor *open_fake(void) {
  struct tl_monitor *m = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_monitor_open(tu_tmpdir(), &m, &err) == 0, "%s", err.msg);
  ck_assert_ptr_nonnull(m);
  return m;
}

/* ---------------------------------------------------------------- open */

START_TEST(open_missing_root_fails_naming_it) {
  char missing[PATH_MAX + 16];
  snprintf(missing, sizeof missing, "%s/no-such-dir", tu_tmpdir());
  struct tl_monitor *m = (struct tl_monitor *)&m; /* must stay untouched */
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_monitor_open(missing, &m, &err), TL_ENOENT);
  ck_assert_ptr_eq(m, (struct tl_monitor *)&m);
  ck_assert_ptr_nonnull(strstr(err.msg, missing));
  ck_assert_ptr_nonnull(strstr(err.msg, "No such file or directory"));
}
END_TEST

START_TEST(open_file_as_root_fails_as_not_a_directory) {
  fake_write("file", "x\n");
  struct tl_monitor *m = NULL;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_monitor_open(fake_path("file"), &m, &err), TL_EINVAL);
  ck_assert_ptr_null(m);
  ck_assert_ptr_nonnull(strstr(err.msg, fake_path("file")));
  ck_assert_ptr_nonnull(strstr(err.msg, "not a directory"));
}
END_TEST

START_TEST(open_rejects_null_arguments) {
  struct tl_monitor *m = NULL;
  ck_assert_int_eq(tl_monitor_open(NULL, &m, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_monitor_open(tu_tmpdir(), NULL, NULL), TL_EINVAL);
  ck_assert_ptr_null(m);
}
END_TEST

START_TEST(set_threads_rejects_out_of_range) {
  struct tl_monitor *m = open_fake();
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_monitor_set_threads(m, 0, &err), TL_EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "0 threads"));
  ck_assert_int_eq(tl_monitor_set_threads(m, 8193, NULL), TL_EINVAL);
  ck_assert_int_eq(tl_monitor_set_threads(m, 8192, NULL), 0);
  ck_assert_int_eq(tl_monitor_set_threads(m, 1, NULL), 0);
  tl_monitor_close(m);
  tl_monitor_close(NULL);
}
END_TEST

/* -------------------------------------------------------------- fields */

START_TEST(sample_parses_every_field_of_a_realistic_tree) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);

  ck_assert_uint_gt(s.monotonic_ns, 0);
  ck_assert(s.has_online_cpus);
  ck_assert_int_eq(s.online_cpus, 2);
  ck_assert(s.has_freq);
  ck_assert_double_eq(s.freq_cur_khz, 1500000);
  ck_assert_double_eq(s.freq_max_khz, 2400000);
  ck_assert_double_eq(s.freq_ratio, 0.625);
  ck_assert(!s.has_cpu_busy); /* no previous sample yet */
  ck_assert(!s.has_cpu_self);
  ck_assert(!s.has_cpu_share);
  ck_assert(s.has_procs_running);
  ck_assert_uint_eq(s.procs_running, 3);
  ck_assert(s.has_load1);
  ck_assert_double_eq(s.load1, 2.11);
  ck_assert(s.has_mem_total);
  ck_assert_uint_eq(s.mem_total_bytes, 16303856ull * 1024);
  ck_assert(s.has_mem_available);
  ck_assert_uint_eq(s.mem_available_bytes, 9876544ull * 1024);
  ck_assert(s.has_cgroup_cpu);
  ck_assert(!s.cgroup_cpu_unlimited);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 0.5);
  ck_assert(s.has_cgroup_mem_max);
  ck_assert(!s.cgroup_mem_unlimited);
  ck_assert_uint_eq(s.cgroup_mem_max_bytes, 268435456);
  ck_assert(s.has_cgroup_mem_current);
  ck_assert_uint_eq(s.cgroup_mem_current_bytes, 73400320);
  ck_assert(s.has_psi_cpu);
  ck_assert_double_eq(s.psi_cpu_some_avg10, 7.85);
  ck_assert(s.has_psi_mem);
  ck_assert_double_eq(s.psi_mem_some_avg10, 0.25);

  /* The second sample measures the interval: 600 busy ticks of 800, 200 of
   * them ours; the 0.5-core quota for one thread bounds the share. */
  write_stat(stat_later(stat_base));
  write_self_stat(300, 100);
  struct tl_device_state t;
  tl_monitor_sample(m, &t);
  ck_assert_uint_ge(t.monotonic_ns, s.monotonic_ns);
  ck_assert(t.has_cpu_busy);
  ck_assert_double_eq(t.cpu_busy, 0.75);
  ck_assert(t.has_cpu_self);
  ck_assert_double_eq(t.cpu_self, 0.25);
  ck_assert(t.has_cpu_share);
  ck_assert_double_eq(t.cpu_share, 0.5);
  ck_assert_int_eq(t.cpu_share_threads, 1);
  tl_monitor_close(m);
}
END_TEST

START_TEST(busy_share_counts_guest_time_once) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_cpu_busy);
  /* Only guest ticks, which the kernel also adds to user: were they counted
   * twice the share would be 700 / 900. */
  write_stat(stat_later(stat_base));
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_busy);
  ck_assert_double_eq(s.cpu_busy, 600.0 / 800.0);
  /* A third sample measures from the second, not the first. */
  struct ticks t = stat_later(stat_base);
  t.idle += 300;
  t.system += 100;
  write_stat(t);
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_busy);
  ck_assert_double_eq(s.cpu_busy, 0.25);
  tl_monitor_close(m);
}
END_TEST

START_TEST(busy_share_unknown_when_no_tick_passed_or_counters_went_back) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  tl_monitor_sample(m, &s); /* same counters: no interval */
  ck_assert(!s.has_cpu_busy);
  ck_assert(!s.has_cpu_share);
  write_stat(stat_later(stat_base));
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_busy);
  write_stat(stat_base); /* backwards */
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_cpu_busy);
  write_stat(stat_later(stat_base)); /* measured from the one before */
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_busy);
  ck_assert_double_eq(s.cpu_busy, 0.75);
  tl_monitor_close(m);
}
END_TEST

START_TEST(busy_share_restarts_after_an_unreadable_stat) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  fake_remove(STAT);
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_cpu_busy);
  ck_assert(!s.has_procs_running);
  write_stat(stat_later(stat_base));
  tl_monitor_sample(m, &s); /* the sample before this one did not count */
  ck_assert(!s.has_cpu_busy);
  ck_assert(s.has_procs_running);
  tl_monitor_close(m);
}
END_TEST

START_TEST(long_intr_line_is_skipped_and_later_lines_read) {
  fake_default();
  /* 5000 counters make an intr line of 10 kB, as on big servers */
  write_stat_intr(stat_base, 5000);
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_procs_running);
  ck_assert_uint_eq(s.procs_running, 3);
  write_stat_intr(stat_later(stat_base), 5000);
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_busy);
  ck_assert_double_eq(s.cpu_busy, 0.75);
  tl_monitor_close(m);
}
END_TEST

START_TEST(files_without_trailing_newline_are_read) {
  fake_default();
  fake_write(ONLINE, "0-1");
  fake_write(CUR0, "1200000");
  fake_write(LOADAVG, "0.50 0.40 0.30 1/80 999");
  fake_write(MEMINFO, "MemTotal:  2048 kB\nMemAvailable:  1024 kB");
  fake_write(STAT, "cpu  1 2 3 4 5 6 7 8 0 0\nprocs_running 7");
  fake_write(CG SERVICE "cpu.max", "25000 100000");
  fake_write(CG SERVICE "memory.max", "max");
  fake_write(PSI_CPU, "some avg10=1.50 avg60=0.00 avg300=0.00 total=9");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_online_cpus);
  ck_assert_int_eq(s.online_cpus, 2);
  ck_assert(s.has_freq);
  ck_assert_double_eq(s.freq_ratio, (1200000.0 + 1200000) / 4800000);
  ck_assert(s.has_load1);
  ck_assert_double_eq(s.load1, 0.5);
  ck_assert(s.has_mem_total && s.has_mem_available);
  ck_assert_uint_eq(s.mem_total_bytes, 2048 * 1024);
  ck_assert_uint_eq(s.mem_available_bytes, 1024 * 1024);
  ck_assert(s.has_procs_running);
  ck_assert_uint_eq(s.procs_running, 7);
  ck_assert(s.has_cgroup_cpu);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 0.25);
  ck_assert(s.has_cgroup_mem_max && s.cgroup_mem_unlimited);
  ck_assert(s.has_psi_cpu);
  ck_assert_double_eq(s.psi_cpu_some_avg10, 1.5);
  tl_monitor_close(m);
}
END_TEST

START_TEST(command_name_with_spaces_and_parens_is_skipped) {
  fake_default();
  fake_write(SELF_STAT, "4242 (tai) lor (d) S 1 4242 4242 0 -1 4194560 2000 "
                        "0 0 0 150 50 0 0 20 0 5 0 12345 123456789 4000\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  write_stat(stat_later(stat_base));
  fake_write(SELF_STAT, "4242 (tai) lor (d) S 1 4242 4242 0 -1 4194560 2000 "
                        "0 0 0 250 150 0 0 20 0 5 0 12345 123456789 4000\n");
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_self);
  ck_assert_double_eq(s.cpu_self, 0.25);
  tl_monitor_close(m);
}
END_TEST

/* ----------------------------------------------------------- frequency */

START_TEST(halving_cur_freq_halves_freq_ratio) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_freq);
  double before = s.freq_ratio;
  fake_write(CUR0, "900000\n");
  fake_write(CUR1, "600000\n");
  tl_monitor_sample(m, &s);
  ck_assert(s.has_freq);
  ck_assert_double_eq(s.freq_ratio, before / 2);
  ck_assert_double_eq(s.freq_ratio, 0.3125);
  ck_assert_double_eq(s.freq_cur_khz, 750000);
  ck_assert_double_eq(s.freq_max_khz, 2400000);
  tl_monitor_close(m);
}
END_TEST

START_TEST(freq_averages_online_cpus_only) {
  fake_default();
  fake_write(ONLINE, "0-3,6\n");
  const int online[] = {0, 1, 2, 3, 6};
  for (int i = 0; i < 5; i++) {
    char rel[128];
    snprintf(rel, sizeof rel,
             "sys/devices/system/cpu/cpu%d/cpufreq/"
             "scaling_cur_freq",
             online[i]);
    fake_printf(rel, "%d\n", 1000000 + 100000 * i);
    snprintf(rel, sizeof rel,
             "sys/devices/system/cpu/cpu%d/cpufreq/"
             "cpuinfo_max_freq",
             online[i]);
    fake_write(rel, "2000000\n");
  }
  /* cpu4 is offline: its files must not count */
  fake_write(CPUFREQ(4, "scaling_cur_freq"), "9000000\n");
  fake_write(CPUFREQ(4, "cpuinfo_max_freq"), "9000000\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_online_cpus);
  ck_assert_int_eq(s.online_cpus, 5);
  ck_assert(s.has_freq);
  ck_assert_double_eq(s.freq_cur_khz, 1200000);
  ck_assert_double_eq(s.freq_max_khz, 2000000);
  ck_assert_double_eq(s.freq_ratio, 0.6);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cpu_without_cpufreq_is_left_out_of_the_mean) {
  fake_default();
  fake_remove(CUR1);
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_freq);
  ck_assert_int_eq(s.online_cpus, 2);
  ck_assert_double_eq(s.freq_ratio, 0.75); /* cpu0 alone */
  fake_remove(CUR0);
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_freq);
  tl_monitor_close(m);
}
END_TEST

/* ------------------------------------------------------------- cgroups */

START_TEST(cgroup_v2_half_core_quota_and_limits) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cgroup_cpu && !s.cgroup_cpu_unlimited);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 0.5);
  fake_write(CG SERVICE "cpu.max", "150000 100000\n");
  tl_monitor_sample(m, &s);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 1.5);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cgroup_v2_max_means_unlimited) {
  fake_default();
  fake_write(CG SERVICE "cpu.max", "max 100000\n");
  fake_write(CG SERVICE "memory.max", "max\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cgroup_cpu);
  ck_assert(s.cgroup_cpu_unlimited);
  ck_assert(s.has_cgroup_mem_max);
  ck_assert(s.cgroup_mem_unlimited);
  ck_assert(s.has_cgroup_mem_current);
  ck_assert_uint_eq(s.cgroup_mem_current_bytes, 73400320);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cgroup_v2_takes_tightest_limit_of_ancestors) {
  fake_default();
  fake_write(CG "system.slice/cpu.max", "25000 100000\n");
  fake_write(CG "system.slice/memory.max", "134217728\n");
  fake_write(CG "system.slice/memory.current", "999999999\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 0.25);
  ck_assert_uint_eq(s.cgroup_mem_max_bytes, 134217728);
  ck_assert_uint_eq(s.cgroup_mem_current_bytes, 73400320); /* ours */
  /* a looser parent does not loosen ours */
  fake_write(CG "system.slice/cpu.max", "max 100000\n");
  fake_write(CG "system.slice/memory.max", "max\n");
  tl_monitor_sample(m, &s);
  ck_assert(!s.cgroup_cpu_unlimited);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 0.5);
  ck_assert(!s.cgroup_mem_unlimited);
  ck_assert_uint_eq(s.cgroup_mem_max_bytes, 268435456);
  tl_monitor_close(m);
}
END_TEST

/* As systemd 247 on Debian 11 (hybrid) lays it out. */
static const char cgroup_v1[] = "12:pids:/system.slice/tailord.service\n"
                                "11:cpu,cpuacct:/system.slice/tailord.service\n"
                                "10:memory:/system.slice/tailord.service\n"
                                "9:cpuset:/\n"
                                "8:devices:/system.slice/tailord.service\n"
                                "1:name=systemd:/system.slice/tailord.service\n"
                                "0::/system.slice/tailord.service\n";

START_TEST(cgroup_v1_quota_and_memory_limit) {
  fake_write(SELF_CGROUP, cgroup_v1);
  fake_write(CG "cpu,cpuacct/" SERVICE "cpu.cfs_quota_us", "150000\n");
  fake_write(CG "cpu,cpuacct/" SERVICE "cpu.cfs_period_us", "100000\n");
  fake_write(CG "cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  fake_write(CG "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  fake_write(CG "memory/" SERVICE "memory.limit_in_bytes", "536870912\n");
  fake_write(CG "memory/" SERVICE "memory.usage_in_bytes", "104857600\n");
  fake_write(CG "memory/memory.limit_in_bytes", "9223372036854771712\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cgroup_cpu && !s.cgroup_cpu_unlimited);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 1.5);
  ck_assert(s.has_cgroup_mem_max && !s.cgroup_mem_unlimited);
  ck_assert_uint_eq(s.cgroup_mem_max_bytes, 536870912);
  ck_assert(s.has_cgroup_mem_current);
  ck_assert_uint_eq(s.cgroup_mem_current_bytes, 104857600);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cgroup_v1_no_quota_and_huge_limit_mean_unlimited) {
  fake_write(SELF_CGROUP, cgroup_v1);
  /* the "cpu" mount (a link on Debian) is tried first */
  fake_write(CG "cpu/" SERVICE "cpu.cfs_quota_us", "-1\n");
  fake_write(CG "cpu/" SERVICE "cpu.cfs_period_us", "100000\n");
  fake_write(CG "cpu,cpuacct/" SERVICE "cpu.cfs_quota_us", "10000\n");
  fake_write(CG "cpu,cpuacct/" SERVICE "cpu.cfs_period_us", "100000\n");
  fake_write(CG "memory/" SERVICE "memory.limit_in_bytes", "9223372036854771712\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cgroup_cpu && s.cgroup_cpu_unlimited);
  ck_assert(s.has_cgroup_mem_max && s.cgroup_mem_unlimited);
  ck_assert(!s.has_cgroup_mem_current);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cgroup_v1_container_without_own_path_reads_mount_root) {
  /* Inside a container without a cgroup namespace the path names the
   * host's cgroup, and the container's own is mounted at the root. */
  fake_write(SELF_CGROUP, "4:memory:/docker/0123abcd\n3:cpu,cpuacct:/docker/"
                          "0123abcd\n0::/docker/0123abcd\n");
  fake_write(CG "cpu,cpuacct/cpu.cfs_quota_us", "200000\n");
  fake_write(CG "cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  fake_write(CG "memory/memory.limit_in_bytes", "1073741824\n");
  fake_write(CG "memory/memory.usage_in_bytes", "52428800\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cgroup_cpu);
  ck_assert_double_eq(s.cgroup_cpu_quota_cores, 2);
  ck_assert(s.has_cgroup_mem_max);
  ck_assert_uint_eq(s.cgroup_mem_max_bytes, 1073741824);
  ck_assert(s.has_cgroup_mem_current);
  ck_assert_uint_eq(s.cgroup_mem_current_bytes, 52428800);
  tl_monitor_close(m);
}
END_TEST

/* ----------------------------------------------------------- cpu_share */

START_TEST(cpu_share_is_fair_share_of_cores_left_by_others) {
  fake_default();
  fake_write(CG SERVICE "cpu.max", "max 100000\n");
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  /* busy 0.75 of 2 CPUs, none of it ours: others keep 1.5 cores busy, so
   * one thread gets 2 / (1 + 1.5) of a core */
  write_stat(stat_later(stat_base));
  tl_monitor_sample(m, &s);
  ck_assert(s.has_cpu_self);
  ck_assert_double_eq(s.cpu_self, 0);
  ck_assert(s.has_cpu_share);
  ck_assert_double_eq_tol(s.cpu_share, 0.8, 1e-12);
  ck_assert_int_eq(s.cpu_share_threads, 1);

  /* 200 of the 600 ticks ours: others keep 1 core busy; one thread fits,
   * two get 2 / (2 + 1) */
  write_stat(stat_later(stat_later(stat_base)));
  write_self_stat(250, 150);
  tl_monitor_sample(m, &s);
  ck_assert_double_eq(s.cpu_self, 0.25);
  ck_assert_double_eq(s.cpu_share, 1);
  ck_assert_int_eq(tl_monitor_set_threads(m, 2, NULL), 0);
  write_stat(stat_later(stat_later(stat_later(stat_base))));
  write_self_stat(350, 250);
  tl_monitor_sample(m, &s);
  ck_assert_double_eq_tol(s.cpu_share, 2.0 / 3, 1e-12);
  ck_assert_int_eq(s.cpu_share_threads, 2);

  /* a 1-core quota shared by the two threads binds harder: 0.5 */
  fake_write(CG SERVICE "cpu.max", "100000 100000\n");
  write_stat(stat_later(stat_later(stat_later(stat_later(stat_base)))));
  write_self_stat(450, 350);
  tl_monitor_sample(m, &s);
  ck_assert_double_eq(s.cpu_share, 0.5);
  /* what the others leave is still 2 / (2 + 1): the quota is not load */
  ck_assert_double_eq_tol(s.cpu_share_load, 2.0 / 3, 1e-12);
  tl_monitor_close(m);
}
END_TEST

START_TEST(cpu_share_counts_all_busy_time_as_others_without_self_stat) {
  fake_default();
  fake_write(CG SERVICE "cpu.max", "max 100000\n");
  fake_remove(SELF_STAT);
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  write_stat(stat_later(stat_base));
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_cpu_self);
  ck_assert(s.has_cpu_share);
  ck_assert_double_eq_tol(s.cpu_share, 0.8, 1e-12);
  tl_monitor_close(m);
}
END_TEST

/* ------------------------------------------------- missing and malformed */

START_TEST(missing_files_leave_every_field_unknown) {
  struct tl_monitor *m = open_fake(); /* an empty root */
  struct tl_device_state s;
  for (int i = 0; i < 2; i++) {
    memset(&s, 0xa5, sizeof s);
    tl_monitor_sample(m, &s);
    ck_assert_uint_gt(s.monotonic_ns, 0);
    ck_assert(!s.has_online_cpus); /* no sysconf() for a fake root */
    ck_assert(!s.has_freq);
    ck_assert(!s.has_cpu_busy);
    ck_assert(!s.has_cpu_self);
    ck_assert(!s.has_procs_running);
    ck_assert(!s.has_load1);
    ck_assert(!s.has_mem_total);
    ck_assert(!s.has_mem_available);
    ck_assert(!s.has_cgroup_cpu);
    ck_assert(!s.has_cgroup_mem_max);
    ck_assert(!s.has_cgroup_mem_current);
    ck_assert(!s.has_psi_cpu);
    ck_assert(!s.has_psi_mem);
    ck_assert(!s.has_cpu_share);
  }
  char buf[TL_DEVICE_STATE_JSON_MAX], want[64];
  snprintf(want, sizeof want, "{\"monotonic_ns\":%llu}", (unsigned long long)s.monotonic_ns);
  ck_assert_uint_eq(tl_device_state_format(&s, buf, sizeof buf), strlen(want));
  ck_assert_str_eq(buf, want);
  tl_monitor_close(m);
}
END_TEST

START_TEST(directories_where_files_belong_are_unknown) {
  fake_default();
  ck_assert_int_eq(unlink(fake_path(LOADAVG)), 0);
  ck_assert_int_eq(mkdir(fake_path(LOADAVG), 0755), 0);
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  ck_assert(!s.has_load1);
  ck_assert(s.has_mem_total);
  tl_monitor_close(m);
}
END_TEST

/* One file made malformed, and the flag that must then be false. */
static const struct {
  const char *rel;
  const char *text;
  size_t len;  /* 0: strlen(text) */
  size_t flag; /* offsetof the has_ flag */
} malformed[] = {
#define F(field) offsetof(struct tl_device_state, field)
    {ONLINE, "", 0, F(has_online_cpus)},
    {ONLINE, "zero\n", 0, F(has_online_cpus)},
    {ONLINE, "1-0\n", 0, F(has_online_cpus)},
    {ONLINE, "0-8192\n", 0, F(has_online_cpus)},
    {ONLINE, "0,\n", 0, F(has_online_cpus)},
    {ONLINE, "0 junk\n", 0, F(has_online_cpus)},
    {CUR0, "1.2GHz\n", 0, F(has_freq)},
    {CUR0, "", 0, F(has_freq)},
    {CUR0, "\n", 0, F(has_freq)},
    {CUR0, "-1200000\n", 0, F(has_freq)},
    {CUR0, "99999999999999999999999\n", 0, F(has_freq)},
    {CUR0, "1200000 kHz\n", 0, F(has_freq)},
    {CUR0,
     "1200\0"
     "000\n",
     9, F(has_freq)},
    {MAX0, "0\n", 0, F(has_freq)},
    {MAX0, "max\n", 0, F(has_freq)},
    {STAT, "", 0, F(has_cpu_busy)},
    {STAT, "cpu  a b c d e f g h 0 0\n", 0, F(has_cpu_busy)},
    {STAT, "cpu  1 2 3\n", 0, F(has_cpu_busy)},
    {STAT, "cpu  -1 0 0 0\n", 0, F(has_cpu_busy)},
    {STAT, "cpu  99999999999999999999 0 0 0\n", 0, F(has_cpu_busy)},
    {STAT, "cpu  18446744073709551615 18446744073709551615 0 0\n", 0, F(has_cpu_busy)},
    {STAT, "cpu0 1 2 3 4 5 6 7 8 0 0\nintr 1 2 3\n", 0, F(has_cpu_busy)},
    {STAT, "cpu  1 2 3 4\nprocs_running lots\n", 0, F(has_procs_running)},
    {STAT, "cpu  1 2 3 4\nprocs_running -3\n", 0, F(has_procs_running)},
    {STAT, "cpu  1 2 3 4\nprocs_running\n", 0, F(has_procs_running)},
    {SELF_STAT, "4242 (tailord S 1 4242\n", 0, F(has_cpu_self)},
    {SELF_STAT, "4242 (tailord) S 1 4242 4242 0 -1\n", 0, F(has_cpu_self)},
    {SELF_STAT, "", 0, F(has_cpu_self)},
    {LOADAVG, "", 0, F(has_load1)},
    {LOADAVG, "high 1.17 0.49 3/93 7473\n", 0, F(has_load1)},
    {LOADAVG, "2. 1.17 0.49 3/93 7473\n", 0, F(has_load1)},
    {LOADAVG, "2,11 1.17 0.49 3/93 7473\n", 0, F(has_load1)},
    {LOADAVG, "-2.11 1.17 0.49 3/93 7473\n", 0, F(has_load1)},
    {MEMINFO, "MemTotal:  lots kB\nMemAvailable:  1 kB\n", 0, F(has_mem_total)},
    {MEMINFO, "MemTotal:  18014398509481984 kB\n", 0, F(has_mem_total)},
    {MEMINFO, "MemTotal:  16303856\n", 0, F(has_mem_total)},
    {MEMINFO, "MemTotal:  16303856 MB\n", 0, F(has_mem_total)},
    {MEMINFO, "MemTotal:  1 kB\nMemAvailable:  99999999999999999999 kB\n", 0, F(has_mem_available)},
    {MEMINFO, "MemTotal:  1 kB\nMemFree:  1 kB\n", 0, F(has_mem_available)},
    {CG SERVICE "cpu.max", "half 100000\n", 0, F(has_cgroup_cpu)},
    {CG SERVICE "cpu.max", "50000 0\n", 0, F(has_cgroup_cpu)},
    {CG SERVICE "cpu.max", "50000\n", 0, F(has_cgroup_cpu)},
    {CG SERVICE "cpu.max", "0 100000\n", 0, F(has_cgroup_cpu)},
    {CG SERVICE "cpu.max", "maximum 100000\n", 0, F(has_cgroup_cpu)},
    {CG SERVICE "cpu.max", "", 0, F(has_cgroup_cpu)},
    {CG SERVICE "memory.max", "1G\n", 0, F(has_cgroup_mem_max)},
    {CG SERVICE "memory.max", "max max\n", 0, F(has_cgroup_mem_max)},
    {CG SERVICE "memory.max", "", 0, F(has_cgroup_mem_max)},
    {CG SERVICE "memory.current", "\n", 0, F(has_cgroup_mem_current)},
    {CG SERVICE "memory.current", "-5\n", 0, F(has_cgroup_mem_current)},
    {SELF_CGROUP, "garbage\n", 0, F(has_cgroup_cpu)},
    {SELF_CGROUP, "0::system.slice/tailord.service\n", 0, F(has_cgroup_cpu)},
    {SELF_CGROUP, "", 0, F(has_cgroup_mem_max)},
    {PSI_CPU, "some avg10=x avg60=3.43 avg300=3.22 total=1\n", 0, F(has_psi_cpu)},
    {PSI_CPU, "", 0, F(has_psi_cpu)},
    {PSI_CPU, "full avg10=1.00 avg60=0.00 avg300=0.00 total=0\n", 0, F(has_psi_cpu)},
    {PSI_CPU, "some avg60=1.00 total=0\n", 0, F(has_psi_cpu)},
    {PSI_MEM, "some avg10=1.2.3 avg60=0.00\n", 0, F(has_psi_mem)},
#undef F
};

static bool flag_of(const struct tl_device_state *s, size_t offset) {
  bool b;
  memcpy(&b, (const char *)s + offset, sizeof b);
  return b;
}

START_TEST(malformed_file_makes_its_field_unknown) {
  fake_default();
  fake_write(ONLINE, "0\n"); /* one CPU, so a bad cpu0 file leaves none */
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  /* With the good tree moved on by one interval every field is known... */
  struct ticks t = stat_later(stat_base);
  write_stat(t);
  write_self_stat(300, 100);
  tl_monitor_sample(m, &s);
  ck_assert_msg(flag_of(&s, malformed[_i].flag), "row %d: known before the file is spoilt", _i);
  /* ...and on the next one, with the file spoilt, its field is not. */
  write_stat(stat_later(t));
  write_self_stat(450, 150);
  size_t len = malformed[_i].len ? malformed[_i].len : strlen(malformed[_i].text);
  fake_write_bytes(malformed[_i].rel, malformed[_i].text, len);
  tl_monitor_sample(m, &s);
  ck_assert_msg(!flag_of(&s, malformed[_i].flag), "row %d: %s holding \"%s\" gave a known value",
                _i, malformed[_i].rel, malformed[_i].text);
  ck_assert(s.has_load1 || strcmp(malformed[_i].rel, LOADAVG) == 0);
  tl_monitor_close(m);
}
END_TEST

/* ---------------------------------------------------------------- JSON */

START_TEST(format_writes_known_fields_only) {
  struct tl_device_state s;
  memset(&s, 0, sizeof s);
  s.monotonic_ns = 123456789;
  s.has_online_cpus = true;
  s.online_cpus = 2;
  s.has_freq = true;
  s.freq_cur_khz = 1500000;
  s.freq_max_khz = 2400000;
  s.freq_ratio = 0.625;
  s.has_cpu_busy = true;
  s.cpu_busy = 0.75;
  s.cpu_self = 0.5; /* has_cpu_self false: not written */
  s.has_procs_running = true;
  s.procs_running = 3;
  s.load1 = 9;
  s.has_mem_total = true;
  s.mem_total_bytes = 16303856ull * 1024;
  s.has_cgroup_cpu = true;
  s.cgroup_cpu_unlimited = true;
  s.has_cgroup_mem_max = true;
  s.cgroup_mem_max_bytes = 268435456;
  s.has_psi_cpu = true;
  s.psi_cpu_some_avg10 = 7.85;
  s.has_cpu_share = true;
  s.cpu_share = 2.0 / 3;
  s.cpu_share_load = 0.75;
  s.cpu_share_threads = 2;
  const char *want = "{\"monotonic_ns\":123456789,\"online_cpus\":2,"
                     "\"freq_cur_khz\":1500000,\"freq_max_khz\":2400000,"
                     "\"freq_ratio\":0.625,\"cpu_busy\":0.75,\"procs_running\":3,"
                     "\"mem_total_bytes\":16695148544,\"cgroup_cpu_quota_cores\":\"max\","
                     "\"cgroup_mem_max_bytes\":268435456,\"psi_cpu_some_avg10\":7.85,"
                     "\"cpu_share\":0.6666666667,\"cpu_share_load\":0.75,\"cpu_share_threads\":2}";
  char buf[TL_DEVICE_STATE_JSON_MAX];
  ck_assert_uint_eq(tl_device_state_format(&s, buf, sizeof buf), strlen(want));
  ck_assert_str_eq(buf, want);

  /* limited and unlimited the other way round */
  s.cgroup_cpu_unlimited = false;
  s.cgroup_cpu_quota_cores = 0.5;
  s.cgroup_mem_unlimited = true;
  tl_device_state_format(&s, buf, sizeof buf);
  ck_assert_ptr_nonnull(strstr(buf, "\"cgroup_cpu_quota_cores\":0.5,"));
  ck_assert_ptr_nonnull(strstr(buf, "\"cgroup_mem_max_bytes\":\"max\","));
}
END_TEST

START_TEST(format_reports_full_length_when_cut_short) {
  struct tl_device_state s;
  memset(&s, 0, sizeof s);
  s.monotonic_ns = 42;
  s.has_load1 = true;
  s.load1 = 2.11;
  const char *want = "{\"monotonic_ns\":42,\"load1\":2.11}";
  char buf[8];
  memset(buf, 'x', sizeof buf);
  ck_assert_uint_eq(tl_device_state_format(&s, buf, sizeof buf), strlen(want));
  ck_assert_str_eq(buf, "{\"monot");
  ck_assert_uint_eq(tl_device_state_format(&s, NULL, 0), strlen(want));
}
END_TEST

START_TEST(format_of_extreme_values_fits_the_documented_maximum) {
  struct tl_device_state s;
  memset(&s, 0, sizeof s);
  s.has_online_cpus = s.has_freq = s.has_cpu_busy = s.has_cpu_self = true;
  s.has_procs_running = s.has_load1 = s.has_mem_total = true;
  s.has_mem_available = s.has_cgroup_cpu = s.has_cgroup_mem_max = true;
  s.has_cgroup_mem_current = s.has_psi_cpu = s.has_psi_mem = true;
  s.has_cpu_share = true;
  s.monotonic_ns = s.procs_running = s.mem_total_bytes = UINT64_MAX;
  s.mem_available_bytes = s.cgroup_mem_max_bytes = UINT64_MAX;
  s.cgroup_mem_current_bytes = UINT64_MAX;
  s.online_cpus = s.cpu_share_threads = INT_MIN;
  s.freq_cur_khz = s.freq_max_khz = s.freq_ratio = -1.2345678912e307;
  s.cpu_busy = s.cpu_self = s.load1 = s.cgroup_cpu_quota_cores = -1.2345678901234567e-300;
  s.psi_cpu_some_avg10 = s.psi_mem_some_avg10 = s.cpu_share = s.cpu_share_load = -1e300;
  char buf[TL_DEVICE_STATE_JSON_MAX];
  size_t n = tl_device_state_format(&s, buf, sizeof buf);
  ck_assert_uint_lt(n, TL_DEVICE_STATE_JSON_MAX);
  json_error_t jerr; /* jansson's integers stop at INT64_MAX */
  json_t *j = json_loads(buf, JSON_DECODE_INT_AS_REAL, &jerr);
  ck_assert_msg(j != NULL, "%s: %s", jerr.text, buf);
  ck_assert_uint_eq(json_object_size(j), 19);
  json_decref(j);
}
END_TEST

START_TEST(format_of_a_sample_is_valid_json_with_its_values) {
  fake_default();
  struct tl_monitor *m = open_fake();
  struct tl_device_state s;
  tl_monitor_sample(m, &s);
  write_stat(stat_later(stat_base));
  write_self_stat(300, 100);
  tl_monitor_sample(m, &s);
  char buf[TL_DEVICE_STATE_JSON_MAX];
  ck_assert_uint_lt(tl_device_state_format(&s, buf, sizeof buf), sizeof buf);
  json_error_t jerr;
  json_t *j = json_loads(buf, 0, &jerr);
  ck_assert_msg(j != NULL, "%s: %s", jerr.text, buf);
  ck_assert_uint_eq(json_object_size(j), 19); /* every field is known */
  ck_assert_double_eq(json_number_value(json_object_get(j, "freq_ratio")), 0.625);
  ck_assert_double_eq(json_number_value(json_object_get(j, "cpu_busy")), 0.75);
  ck_assert_double_eq(json_number_value(json_object_get(j, "cgroup_cpu_quota_cores")), 0.5);
  ck_assert_int_eq(json_integer_value(json_object_get(j, "mem_available_bytes")), 9876544ll * 1024);
  ck_assert_double_eq(json_number_value(json_object_get(j, "psi_cpu_some_avg10")), 7.85);
  json_decref(j);
  tl_monitor_close(m);
}
END_TEST

/* ------------------------------------------------------------ real root */

START_TEST(real_root_samples_without_failing) {
  struct tl_monitor *m = NULL;
  struct tl_error err = {{0}};
  ck_assert_msg(tl_monitor_open("/", &m, &err) == 0, "%s", err.msg);
  struct tl_device_state a, b;
  tl_monitor_sample(m, &a);
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, NULL);
  tl_monitor_sample(m, &b);
  ck_assert_uint_ge(b.monotonic_ns, a.monotonic_ns);
  ck_assert(b.has_mem_total);
  ck_assert(b.has_mem_available);
  ck_assert_uint_gt(b.mem_total_bytes, 0);
  ck_assert_uint_le(b.mem_available_bytes, b.mem_total_bytes);
  ck_assert(b.has_online_cpus);
  ck_assert_int_eq(b.online_cpus, sysconf(_SC_NPROCESSORS_ONLN));
  /* Machines without a cpufreq driver (most VMs) have no frequency. */
  bool cpufreq = access("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", R_OK) == 0 &&
                 access("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", R_OK) == 0;
  ck_assert_int_eq(b.has_freq, cpufreq);
  if (b.has_freq)
    ck_assert(b.freq_ratio > 0);
  if (b.has_cpu_busy)
    ck_assert(b.cpu_busy >= 0 && b.cpu_busy <= 1);
  if (b.has_cpu_share)
    ck_assert(b.cpu_share > 0 && b.cpu_share <= 1);
  char buf[TL_DEVICE_STATE_JSON_MAX];
  ck_assert_uint_lt(tl_device_state_format(&b, buf, sizeof buf), sizeof buf);
  json_t *j = json_loads(buf, 0, NULL);
  ck_assert_msg(j != NULL, "%s", buf);
  json_decref(j);
  tl_monitor_close(m);
}
END_TEST

static Suite *monitor_suite(void) {
  Suite *s = suite_create("monitor");
  TCase *tc = tcase_create("open");
  add_fake_root(tc);
  tcase_add_test(tc, open_missing_root_fails_naming_it);
  tcase_add_test(tc, open_file_as_root_fails_as_not_a_directory);
  tcase_add_test(tc, open_rejects_null_arguments);
  tcase_add_test(tc, set_threads_rejects_out_of_range);
  suite_add_tcase(s, tc);

  tc = tcase_create("fields");
  add_fake_root(tc);
  tcase_add_test(tc, sample_parses_every_field_of_a_realistic_tree);
  tcase_add_test(tc, busy_share_counts_guest_time_once);
  tcase_add_test(tc, busy_share_unknown_when_no_tick_passed_or_counters_went_back);
  tcase_add_test(tc, busy_share_restarts_after_an_unreadable_stat);
  tcase_add_test(tc, long_intr_line_is_skipped_and_later_lines_read);
  tcase_add_test(tc, files_without_trailing_newline_are_read);
  tcase_add_test(tc, command_name_with_spaces_and_parens_is_skipped);
  suite_add_tcase(s, tc);

  tc = tcase_create("frequency");
  add_fake_root(tc);
  tcase_add_test(tc, halving_cur_freq_halves_freq_ratio);
  tcase_add_test(tc, freq_averages_online_cpus_only);
  tcase_add_test(tc, cpu_without_cpufreq_is_left_out_of_the_mean);
  suite_add_tcase(s, tc);

  tc = tcase_create("cgroup");
  add_fake_root(tc);
  tcase_add_test(tc, cgroup_v2_half_core_quota_and_limits);
  tcase_add_test(tc, cgroup_v2_max_means_unlimited);
  tcase_add_test(tc, cgroup_v2_takes_tightest_limit_of_ancestors);
  tcase_add_test(tc, cgroup_v1_quota_and_memory_limit);
  tcase_add_test(tc, cgroup_v1_no_quota_and_huge_limit_mean_unlimited);
  tcase_add_test(tc, cgroup_v1_container_without_own_path_reads_mount_root);
  suite_add_tcase(s, tc);

  tc = tcase_create("cpu_share");
  add_fake_root(tc);
  tcase_add_test(tc, cpu_share_is_fair_share_of_cores_left_by_others);
  tcase_add_test(tc, cpu_share_counts_all_busy_time_as_others_without_self_stat);
  suite_add_tcase(s, tc);

  tc = tcase_create("unknown");
  add_fake_root(tc);
  tcase_add_test(tc, missing_files_leave_every_field_unknown);
  tcase_add_test(tc, directories_where_files_belong_are_unknown);
  tcase_add_loop_test(tc, malformed_file_makes_its_field_unknown, 0,
                      (int)(sizeof malformed / sizeof malformed[0]));
  suite_add_tcase(s, tc);

  tc = tcase_create("format");
  add_fake_root(tc);
  tcase_add_test(tc, format_writes_known_fields_only);
  tcase_add_test(tc, format_reports_full_length_when_cut_short);
  tcase_add_test(tc, format_of_extreme_values_fits_the_documented_maximum);
  tcase_add_test(tc, format_of_a_sample_is_valid_json_with_its_values);
  tcase_add_test(tc, real_root_samples_without_failing);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  int failures = tu_run(monitor_suite());
  return failures ? 1 : 0;
}
